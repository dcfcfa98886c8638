//! The scenarios `loadgen --scenario NAME` runs, and their options.

use crate::client::{
    connect_all, foreground_loop, shares, submit_bg_loop, write_uuid, ClientStats, JobSpec,
    Progress, SubmitPlan, UniqueMode,
};
use crate::conn::{admin_status, Target};
use crate::procstat::{Monitor, ProcSample};
use crate::report::Report;
use crate::worker::{Pool, WorkerConfig, WorkerStats};
use crate::{err, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use gearbox_proto::PacketType;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Background submits; reports jobs/s.
    SubmitBg,
    /// Queue background jobs, then drain them with workers; reports drain jobs/s.
    Drain,
    /// Foreground submits completed by echo workers; jobs/s and latency.
    Roundtrip,
    /// Foreground submits sharing a few uniques; submits/s and handles created.
    Coalesce,
    /// One connection, one background submit at a time; submit→JOB_CREATED latency.
    Latency,
    /// Queue a million background jobs; server RSS and rates as the queue grows.
    Memory,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::SubmitBg => "submit-bg",
            Scenario::Drain => "drain",
            Scenario::Roundtrip => "roundtrip",
            Scenario::Coalesce => "coalesce",
            Scenario::Latency => "latency",
            Scenario::Memory => "memory",
        }
    }

    fn default_jobs(self) -> u64 {
        match self {
            Scenario::SubmitBg | Scenario::Drain => 100_000,
            Scenario::Roundtrip | Scenario::Coalesce => 50_000,
            Scenario::Latency => 20_000,
            Scenario::Memory => 1_000_000,
        }
    }
}

/// Load generator for Gearman job servers (gearbox, gearmand, or any other).
#[derive(Parser, Debug, Clone)]
#[command(name = "loadgen", version)]
pub struct Options {
    /// Server address: HOST:PORT or unix:/path/to/socket.
    #[arg(long, default_value = "127.0.0.1:4730")]
    pub server: Target,
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// Client connections submitting jobs (submit-bg, drain's fill, coalesce, memory's fill).
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Requests in flight per connection (1 = one at a time).
    #[arg(long, default_value_t = 32)]
    pub window: u64,
    /// Jobs in total [default: submit-bg, drain 100000; roundtrip, coalesce 50000;
    /// latency 20000; memory 1000000].
    #[arg(long)]
    pub jobs: Option<u64>,
    /// Bytes of job data.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Unique per job: `none` (empty) or `uuid` (36 characters, one per job).
    #[arg(long, default_value = "none")]
    pub unique: UniqueMode,
    /// Worker connections (drain, roundtrip, coalesce, memory, and the cleanup
    /// after submit-bg and latency).
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Client connections for roundtrip.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// GRAB_JOB_UNIQ requests each worker keeps outstanding.
    #[arg(long, default_value_t = 2)]
    pub grab_window: usize,
    /// Distinct uniques the coalesce clients share.
    #[arg(long, default_value_t = 100)]
    pub uniques: u64,
    /// Function name [default: bench-SCENARIO-RANDOM, new for every run].
    #[arg(long)]
    pub function: Option<String>,
    /// The server's pid, to report its RSS and CPU time (from /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Hard limit on the whole run, in seconds; the run fails when it is hit.
    #[arg(long, default_value_t = 300)]
    pub deadline: u64,
    /// memory: seconds to sample RSS (once a second) after the drain.
    #[arg(long, default_value_t = 10)]
    pub settle: u64,
    /// submit-bg: stop sending new submits after this many seconds, even if
    /// fewer than --jobs were sent; the rate is over the jobs created.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// submit-bg: also report the submit→JOB_CREATED percentiles.
    #[arg(long)]
    pub latency: bool,
    /// Leave background jobs queued after submit-bg and latency (no cleanup drain).
    #[arg(long)]
    pub no_cleanup: bool,
    /// Also print one JSON line with every figure.
    #[arg(long)]
    pub json: bool,
    /// Threads of the load generator's runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Free text copied into the output (e.g. the server's name).
    #[arg(long)]
    pub label: Option<String>,
}

impl Options {
    pub fn jobs(&self) -> u64 {
        self.jobs.unwrap_or(self.scenario.default_jobs())
    }
}

/// What the run is doing, for the message when the deadline is hit.
#[derive(Debug, Default)]
pub struct Tracker {
    phase: Mutex<Option<(String, Arc<Progress>)>>,
}

impl Tracker {
    fn enter(&self, phase: &str, progress: Arc<Progress>) {
        *self.phase.lock().expect("tracker lock") = Some((phase.to_string(), progress));
    }

    pub fn describe(&self) -> String {
        match &*self.phase.lock().expect("tracker lock") {
            Some((phase, p)) => format!("phase `{phase}`, {} of {} done", p.done(), p.total),
            None => "setup (connecting)".to_string(),
        }
    }
}

struct Ctx<'a> {
    opts: &'a Options,
    tracker: &'a Tracker,
    monitor: Monitor,
    spec: Arc<JobSpec>,
}

fn nonce() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_nanos() as u32) ^ std::process::id().rotate_left(16)
}

/// Runs the scenario, writing figures into `report` as they become known, so
/// a run cut short by the deadline still reports what it measured.
pub async fn run(opts: &Options, tracker: &Tracker, report: &mut Report) -> Result<()> {
    let nonce = nonce();
    let function = opts
        .function
        .clone()
        .unwrap_or_else(|| format!("bench-{}-{nonce:08x}", opts.scenario.name()));
    let spec = Arc::new(JobSpec {
        function: function.clone(),
        payload: Bytes::from(vec![b'x'; opts.payload]),
        unique: opts.unique,
        nonce,
    });
    report.scenario = opts.scenario.name().to_string();
    report.target = opts.server.to_string();
    report.transport = opts.server.transport().to_string();
    report.label = opts.label.clone();
    report.param("function", function);
    report.param("jobs", opts.jobs());
    report.param("payload", opts.payload as u64);
    let ctx = Ctx {
        opts,
        tracker,
        monitor: Monitor {
            pid: opts.server_pid,
        },
        spec,
    };
    if opts.server_pid.is_none() {
        report.param("server_pid", "none (no RSS/CPU figures)");
    }
    let start = ctx.monitor.sample()?;
    if let Some(s) = start {
        report.fig("server_rss_start_kib", s.rss_kib as f64);
    }
    match opts.scenario {
        Scenario::SubmitBg => submit_bg(&ctx, report).await?,
        Scenario::Drain => drain(&ctx, report).await?,
        Scenario::Roundtrip => roundtrip(&ctx, report).await?,
        Scenario::Coalesce => coalesce(&ctx, report).await?,
        Scenario::Latency => latency(&ctx, report).await?,
        Scenario::Memory => memory(&ctx, report).await?,
    }
    if let Some(s) = ctx.monitor.sample()? {
        report.fig("server_rss_end_kib", s.rss_kib as f64);
    }
    Ok(())
}

/// Records the server's CPU time over a phase and the jobs done per CPU second.
fn cpu_figures(
    report: &mut Report,
    prefix: &str,
    before: Option<ProcSample>,
    after: Option<ProcSample>,
    jobs: u64,
) {
    if let (Some(b), Some(a)) = (before, after) {
        let cpu = a.cpu_s - b.cpu_s;
        report.fig(&format!("{prefix}server_cpu_s"), cpu);
        if cpu > 0.0 {
            report.fig(&format!("{prefix}jobs_per_server_cpu_s"), jobs as f64 / cpu);
        }
    }
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// Joins every task; on the first failure the others are aborted.
async fn join_all<T: Send + 'static>(
    futures: Vec<impl Future<Output = Result<T>> + Send + 'static>,
) -> Result<Vec<T>> {
    let mut set = JoinSet::new();
    for (i, f) in futures.into_iter().enumerate() {
        set.spawn(async move { (i, f.await) });
    }
    let mut out: Vec<Option<T>> = (0..set.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, r) = joined.map_err(|e| err!("task panicked: {e}"))?;
        out[i] = Some(r?);
    }
    Ok(out
        .into_iter()
        .map(|o| o.expect("every task joined"))
        .collect())
}

fn client_anomalies(report: &mut Report, what: &str, s: &ClientStats) {
    if s.errors > 0 {
        report.anomaly(format!(
            "{what}: {} ERROR replies, first: {}",
            s.errors,
            s.first_error.as_deref().unwrap_or("?")
        ));
    }
    if s.failed > 0 {
        report.anomaly(format!("{what}: {} jobs failed (WORK_FAIL)", s.failed));
    }
    if s.bad_data > 0 {
        report.anomaly(format!(
            "{what}: {} WORK_COMPLETE with wrong data",
            s.bad_data
        ));
    }
    if !s.unexpected.is_empty() {
        report.anomaly(format!(
            "{what}: unexpected packets, e.g. {}",
            s.unexpected[0]
        ));
    }
}

fn worker_anomalies(report: &mut Report, what: &str, s: &WorkerStats) {
    if s.errors > 0 {
        report.anomaly(format!(
            "{what} workers: {} ERROR replies, first: {}",
            s.errors,
            s.first_error.as_deref().unwrap_or("?")
        ));
    }
    if !s.unexpected.is_empty() {
        report.anomaly(format!(
            "{what} workers: unexpected packets, e.g. {}",
            s.unexpected[0]
        ));
    }
    if s.late_jobs > 0 {
        report.anomaly(format!(
            "{what} workers: {} jobs assigned after all expected jobs were done",
            s.late_jobs
        ));
    }
}

struct Submitted {
    stats: ClientStats,
    elapsed: Duration,
    start: Instant,
    progress: Arc<Progress>,
}

/// Submits `jobs` background jobs over `conns` connections.
async fn submit_phase(
    ctx: &Ctx<'_>,
    phase: &str,
    jobs: u64,
    conns: usize,
    window: u64,
    latency: bool,
    stop_after: Option<Duration>,
) -> Result<Submitted> {
    submit_phase_from(ctx, phase, 0, jobs, conns, window, latency, stop_after).await
}

/// [`submit_phase`] for job indexes `first..first + jobs`, so that a second
/// phase of the same run gets uniques of its own.
#[allow(clippy::too_many_arguments)]
async fn submit_phase_from(
    ctx: &Ctx<'_>,
    phase: &str,
    first_index: u64,
    jobs: u64,
    conns: usize,
    window: u64,
    latency: bool,
    stop_after: Option<Duration>,
) -> Result<Submitted> {
    let connections = connect_all(&ctx.opts.server, conns).await?;
    let progress = Arc::new(Progress::new(jobs));
    ctx.tracker.enter(phase, progress.clone());
    let start = Instant::now();
    let stop_at = stop_after.map(|d| start + d);
    let loops: Vec<_> = connections
        .into_iter()
        .zip(shares(jobs, conns))
        .map(|(conn, (first, count))| {
            let plan = SubmitPlan {
                kind: PacketType::SUBMIT_JOB_BG,
                first: first_index + first,
                count,
                window: window.max(1),
                latency,
                stop_at,
            };
            submit_bg_loop(conn, ctx.spec.clone(), plan, progress.clone())
        })
        .collect();
    let results = join_all(loops).await?;
    let elapsed = start.elapsed();
    let mut stats = ClientStats::default();
    for r in results {
        stats.merge(r);
    }
    Ok(Submitted {
        stats,
        elapsed,
        start,
        progress,
    })
}

/// Runs `workers` workers until `jobs` jobs have been executed.
async fn drain_phase(
    ctx: &Ctx<'_>,
    phase: &str,
    jobs: u64,
    workers: usize,
) -> Result<(WorkerStats, Duration)> {
    let progress = Arc::new(Progress::new(jobs));
    ctx.tracker.enter(phase, progress.clone());
    let cfg = WorkerConfig {
        function: ctx.spec.function.clone(),
        grab_window: ctx.opts.grab_window,
        echo: false,
    };
    let start = Instant::now();
    let pool = Pool::start(&ctx.opts.server, &cfg, workers.max(1), Some(jobs), progress).await?;
    if jobs > 0 {
        pool.reached_goal().await;
    }
    let stats = pool.finish().await?;
    Ok((stats, start.elapsed()))
}

/// Checks the admin `status` count of queued+running jobs for the function.
async fn expect_queued(
    ctx: &Ctx<'_>,
    report: &mut Report,
    expected: u64,
    when: &str,
) -> Result<()> {
    let status = admin_status(&ctx.opts.server, &ctx.spec.function).await?;
    let total = status.map_or(0, |s| s.total);
    if total != expected {
        report.anomaly(format!(
            "admin status {when}: {total} jobs for the function, expected {expected}"
        ));
    }
    Ok(())
}

/// Drains what a submit scenario left queued, so the server ends empty.
async fn cleanup(ctx: &Ctx<'_>, report: &mut Report, queued: u64) -> Result<()> {
    if ctx.opts.no_cleanup || queued == 0 {
        return Ok(());
    }
    let (w, elapsed) = drain_phase(ctx, "cleanup drain", queued, ctx.opts.workers).await?;
    worker_anomalies(report, "cleanup", &w);
    report.fig("cleanup_drain_jobs_per_s", rate(w.executed, elapsed));
    expect_queued(ctx, report, 0, "after the cleanup drain").await
}

async fn submit_bg(ctx: &Ctx<'_>, report: &mut Report) -> Result<()> {
    let o = ctx.opts;
    let jobs = o.jobs();
    report.param("connections", o.connections as u64);
    report.param("window", o.window);
    report.param("unique", o.unique.to_string());
    let stop_after = o.duration.map(|d| Duration::from_secs_f64(d.max(0.001)));
    if let Some(d) = o.duration {
        report.param("duration_s", d);
    }
    let before = ctx.monitor.sample()?;
    let s = submit_phase(
        ctx,
        "submit",
        jobs,
        o.connections,
        o.window,
        o.latency,
        stop_after,
    )
    .await?;
    let after = ctx.monitor.sample()?;
    let mut stats = s.stats;
    report.fig("jobs_per_s", rate(stats.created, s.elapsed));
    report.fig("elapsed_s", s.elapsed.as_secs_f64());
    report.fig("jobs_created", stats.created as f64);
    if o.duration.is_some() {
        // 1 when the time limit, not the job count, ended the run.
        let answered = stats.created + stats.errors;
        report.fig("stopped_by_duration", f64::from(u8::from(answered < jobs)));
    }
    if o.latency {
        latency_figures(report, &mut stats);
    }
    cpu_figures(report, "", before, after, stats.created);
    if let Some(a) = after {
        report.fig("server_rss_queued_kib", a.rss_kib as f64);
    }
    client_anomalies(report, "submit", &stats);
    expect_queued(ctx, report, stats.created, "after submitting").await?;
    cleanup(ctx, report, stats.created).await
}

async fn drain(ctx: &Ctx<'_>, report: &mut Report) -> Result<()> {
    let o = ctx.opts;
    let jobs = o.jobs();
    report.param("connections", o.connections as u64);
    report.param("window", o.window);
    report.param("unique", o.unique.to_string());
    report.param("workers", o.workers as u64);
    report.param("grab_window", o.grab_window as u64);
    let s = submit_phase(ctx, "fill", jobs, o.connections, o.window, false, None).await?;
    report.fig("fill_jobs_per_s", rate(s.stats.created, s.elapsed));
    client_anomalies(report, "fill", &s.stats);
    expect_queued(ctx, report, s.stats.created, "after filling").await?;
    let before = ctx.monitor.sample()?;
    let (w, elapsed) = drain_phase(ctx, "drain", s.stats.created, o.workers).await?;
    let after = ctx.monitor.sample()?;
    report.fig("drain_jobs_per_s", rate(w.executed, elapsed));
    report.fig("drain_elapsed_s", elapsed.as_secs_f64());
    cpu_figures(report, "", before, after, w.executed);
    report.fig("no_job_replies", w.no_jobs as f64);
    worker_anomalies(report, "drain", &w);
    expect_queued(ctx, report, 0, "after the drain").await
}

async fn roundtrip(ctx: &Ctx<'_>, report: &mut Report) -> Result<()> {
    let o = ctx.opts;
    let jobs = o.jobs();
    report.param("clients", o.clients as u64);
    report.param("workers", o.workers as u64);
    report.param("window", o.window);
    report.param("unique", o.unique.to_string());
    report.param("grab_window", o.grab_window as u64);
    let cfg = WorkerConfig {
        function: ctx.spec.function.clone(),
        grab_window: o.grab_window,
        echo: true,
    };
    let executed = Arc::new(Progress::new(jobs));
    let pool = Pool::start(&o.server, &cfg, o.workers.max(1), None, executed).await?;
    let clients = connect_all(&o.server, o.clients.max(1)).await?;
    let progress = Arc::new(Progress::new(jobs));
    ctx.tracker.enter("roundtrip", progress.clone());
    let before = ctx.monitor.sample()?;
    let start = Instant::now();
    let loops: Vec<_> = clients
        .into_iter()
        .zip(shares(jobs, o.clients.max(1)))
        .map(|(conn, (first, count))| {
            let spec = ctx.spec.clone();
            let unique_of = {
                let spec = spec.clone();
                move |i: u64, buf: &mut String| spec.unique_for(first + i, buf)
            };
            foreground_loop(
                conn,
                spec,
                count,
                o.window.max(1),
                unique_of,
                progress.clone(),
            )
        })
        .collect();
    let results = join_all(loops).await?;
    let elapsed = start.elapsed();
    let after = ctx.monitor.sample()?;
    let w = pool.finish().await?;
    let mut stats = ClientStats::default();
    for r in results {
        stats.merge(r);
    }
    report.fig("jobs_per_s", rate(stats.completed, elapsed));
    latency_figures(report, &mut stats);
    cpu_figures(report, "", before, after, stats.completed);
    client_anomalies(report, "roundtrip clients", &stats);
    if stats.unmatched_completes > 0 {
        report.anomaly(format!(
            "{} WORK_COMPLETE for handles no submit was waiting on",
            stats.unmatched_completes
        ));
    }
    worker_anomalies(report, "roundtrip", &w);
    if w.executed != jobs {
        report.anomaly(format!(
            "workers executed {} jobs for {jobs} submits",
            w.executed
        ));
    }
    expect_queued(ctx, report, 0, "after the round trips").await
}

fn latency_figures(report: &mut Report, stats: &mut ClientStats) {
    let l = &mut stats.latency;
    report.fig_opt("p50_us", l.percentile_us(0.50));
    report.fig_opt("p99_us", l.percentile_us(0.99));
    report.fig_opt("p999_us", l.percentile_us(0.999));
    report.fig_opt("mean_us", l.mean_us());
    report.fig_opt("max_us", l.max_us());
}

async fn coalesce(ctx: &Ctx<'_>, report: &mut Report) -> Result<()> {
    let o = ctx.opts;
    let jobs = o.jobs();
    let keys = o.uniques.max(1);
    report.param("connections", o.connections as u64);
    report.param("workers", o.workers as u64);
    report.param("window", o.window);
    report.param("uniques", keys);
    let cfg = WorkerConfig {
        function: ctx.spec.function.clone(),
        grab_window: o.grab_window,
        echo: true,
    };
    let executed = Arc::new(Progress::new(jobs));
    let pool = Pool::start(&o.server, &cfg, o.workers.max(1), None, executed).await?;
    let clients = connect_all(&o.server, o.connections.max(1)).await?;
    let progress = Arc::new(Progress::new(jobs));
    ctx.tracker.enter("coalesce", progress.clone());
    let before = ctx.monitor.sample()?;
    let start = Instant::now();
    let nonce = ctx.spec.nonce;
    let loops: Vec<_> = clients
        .into_iter()
        .zip(shares(jobs, o.connections.max(1)))
        .map(|(conn, (_, count))| {
            // Every connection walks the same keys in the same order, so
            // submits of one key from several connections meet in the server.
            let unique_of = move |i: u64, buf: &mut String| {
                buf.clear();
                let _ = write!(buf, "{nonce:08x}-key-{}", i % keys);
            };
            foreground_loop(
                conn,
                ctx.spec.clone(),
                count,
                o.window.max(1),
                unique_of,
                progress.clone(),
            )
        })
        .collect();
    let results = join_all(loops).await?;
    let elapsed = start.elapsed();
    let after = ctx.monitor.sample()?;
    let w = pool.finish().await?;
    let mut stats = ClientStats::default();
    for r in results {
        stats.merge(r);
    }
    let handles = stats.handles.len() as u64;
    report.fig("submits_per_s", rate(stats.completed, elapsed));
    report.fig("submits", stats.created as f64);
    report.fig("distinct_handles", handles as f64);
    report.fig("jobs_executed", w.executed as f64);
    if handles > 0 {
        report.fig("submits_per_handle", stats.created as f64 / handles as f64);
    }
    report.fig(
        "extra_work_complete_packets",
        stats.unmatched_completes as f64,
    );
    latency_figures(report, &mut stats);
    cpu_figures(report, "", before, after, stats.completed);
    client_anomalies(report, "coalesce clients", &stats);
    worker_anomalies(report, "coalesce", &w);
    if w.executed != handles {
        report.anomaly(format!(
            "workers executed {} jobs but {handles} distinct handles were created",
            w.executed
        ));
    }
    expect_queued(ctx, report, 0, "after coalescing").await
}

async fn latency(ctx: &Ctx<'_>, report: &mut Report) -> Result<()> {
    let o = ctx.opts;
    let jobs = o.jobs();
    report.param("connections", 1u64);
    report.param("window", 1u64);
    report.param("unique", o.unique.to_string());
    let before = ctx.monitor.sample()?;
    let s = submit_phase(ctx, "latency", jobs, 1, 1, true, None).await?;
    let after = ctx.monitor.sample()?;
    let mut stats = s.stats;
    report.fig("jobs_per_s", rate(stats.created, s.elapsed));
    latency_figures(report, &mut stats);
    cpu_figures(report, "", before, after, stats.created);
    client_anomalies(report, "latency", &stats);
    expect_queued(ctx, report, stats.created, "after submitting").await?;
    cleanup(ctx, report, stats.created).await
}

async fn memory(ctx: &Ctx<'_>, report: &mut Report) -> Result<()> {
    let o = ctx.opts;
    let jobs = o.jobs();
    report.param("connections", o.connections as u64);
    report.param("window", o.window);
    report.param("unique", o.unique.to_string());
    report.param("workers", o.workers as u64);
    report.param("settle_s", o.settle);
    if o.server_pid.is_none() {
        report.anomaly("memory without --server-pid: no RSS figures");
    }
    let rss_before = ctx.monitor.rss()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let monitor = ctx.monitor;
    let sampler = tokio::spawn(async move {
        monitor
            .peak_rss_until(Duration::from_millis(100), stop_rx)
            .await
    });
    let cpu0 = ctx.monitor.sample()?;
    let s = submit_phase(ctx, "fill", jobs, o.connections, o.window, false, None).await?;
    let cpu1 = ctx.monitor.sample()?;
    client_anomalies(report, "fill", &s.stats);
    expect_queued(ctx, report, s.stats.created, "with the queue full").await?;
    // The submit rate with the whole backlog already queued, for a tenth as
    // many jobs again, against the fill's first tenth on an empty queue.
    let probe_jobs = (jobs / 10).max(1);
    let probe = submit_phase_from(
        ctx,
        "full-queue submit",
        jobs,
        probe_jobs,
        o.connections,
        o.window,
        false,
        None,
    )
    .await?;
    client_anomalies(report, "full-queue submit", &probe.stats);
    let _ = stop_tx.send(());
    let sampled_peak = sampler.await.map_err(|e| err!("sampler panicked: {e}"))?;
    let rss_full = ctx.monitor.rss()?;
    let created = s.stats.created + probe.stats.created;
    if let (Some(before), Some(full)) = (rss_before, rss_full) {
        let peak = sampled_peak.unwrap_or(full).max(full);
        report.fig("rss_before_kib", before as f64);
        report.fig("rss_peak_kib", peak as f64);
        report.fig("rss_full_queue_kib", full as f64);
        if created > 0 {
            report.fig(
                "rss_per_job_bytes",
                (peak.saturating_sub(before) * 1024) as f64 / created as f64,
            );
        }
    }
    report.fig("fill_jobs_per_s", rate(s.stats.created, s.elapsed));
    cpu_figures(report, "fill_", cpu0, cpu1, s.stats.created);
    let full_queue_rate = rate(probe.stats.created, probe.elapsed);
    report.fig("full_queue_submit_jobs_per_s", full_queue_rate);
    let tenths = s.progress.tenths();
    let mut prev_t = s.start;
    let mut prev_n = 0;
    for (i, t) in tenths.iter().enumerate() {
        let mark = jobs * (i as u64 + 1) / 10;
        if let Some(t) = t {
            let slice_rate = rate(mark - prev_n, t.duration_since(prev_t));
            report.fig(&format!("fill_slice_{:02}_jobs_per_s", i + 1), slice_rate);
            if i == 0 && slice_rate > 0.0 {
                report.fig("full_queue_vs_empty_submit", full_queue_rate / slice_rate);
            }
            prev_t = *t;
        }
        prev_n = mark;
    }
    expect_queued(ctx, report, created, "after the full-queue submit").await?;

    let cpu2 = ctx.monitor.sample()?;
    let (w, elapsed) = drain_phase(ctx, "drain", created, o.workers).await?;
    let cpu3 = ctx.monitor.sample()?;
    report.fig("drain_jobs_per_s", rate(w.executed, elapsed));
    cpu_figures(report, "drain_", cpu2, cpu3, w.executed);
    worker_anomalies(report, "drain", &w);
    expect_queued(ctx, report, 0, "after the drain").await?;

    if o.server_pid.is_some() {
        let drained = Instant::now();
        let mut series = Vec::new();
        for second in 0..=o.settle {
            tokio::time::sleep_until((drained + Duration::from_secs(second)).into()).await;
            if let Some(r) = ctx.monitor.rss()? {
                series.push(r as f64);
            }
        }
        if let Some(last) = series.last() {
            report.fig("rss_after_drain_kib", *last);
        }
        report.series("rss_after_drain_kib", series);
    }
    Ok(())
}

/// Formats a unique for tests and docs.
pub fn example_uuid() -> String {
    let mut s = String::new();
    write_uuid(0x1234_abcd, 42, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_36_chars_and_distinct() {
        let mut a = String::new();
        let mut b = String::new();
        write_uuid(7, 1, &mut a);
        write_uuid(7, 2, &mut b);
        assert_eq!(a.len(), 36);
        assert_ne!(a, b);
        assert_eq!(example_uuid().matches('-').count(), 4);
    }

    #[test]
    fn shares_add_up() {
        let s = shares(10, 3);
        assert_eq!(s, vec![(0, 4), (4, 3), (7, 3)]);
    }

    #[test]
    fn progress_marks_tenths() {
        let p = Progress::new(100);
        p.add(5);
        assert!(p.tenths()[0].is_none());
        p.add(50);
        let t = p.tenths();
        assert!(t[0].is_some() && t[4].is_some() && t[5].is_none());
        p.add(45);
        assert!(p.tenths().iter().all(Option::is_some));
    }
}
