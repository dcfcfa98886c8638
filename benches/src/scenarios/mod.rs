//! The scenarios `loadgen --scenario NAME` runs, and their options.

use crate::client::{
    connect_all, shares, submit_bg_loop, write_uuid, ClientStats, JobSpec, Progress, SubmitPlan,
    UniqueMode,
};
use crate::conn::{admin_status, Target};
use crate::procstat::{Monitor, ProcSample};
use crate::report::Report;
use crate::worker::{Pool, WorkerConfig, WorkerStats};
use crate::{err, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use gearbox_proto::PacketType;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

mod memory;
mod open;
mod submit;
mod workers;

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
    /// fewer than --jobs were sent; the rate is over the jobs created. With
    /// --rate: the length of the schedule [default 5 s], i.e. RATE × SECS
    /// jobs (fewer if --jobs is given and smaller).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Open loop (submit-bg, roundtrip, coalesce): send N jobs/s in total
    /// across the connections, each at its scheduled time whatever the
    /// server does, and measure latency from that time (--window is not
    /// used).
    #[arg(long, value_name = "N")]
    pub rate: Option<f64>,
    /// With --rate: jobs one connection may have unanswered before the
    /// pacer waits (a safety cap; hitting it makes the run not valid).
    #[arg(long, default_value_t = 100_000)]
    pub in_flight_cap: u64,
    /// With --rate: the last stretch before a job's time that the pacer
    /// spends yielding the CPU instead of asleep, in µs.
    #[arg(long, default_value_t = 20)]
    pub spin_us: u64,
    /// With --rate: how long to wait for replies after the last job was
    /// written, in seconds; jobs still unanswered then are counted and their
    /// latency recorded as at least the time waited.
    #[arg(long, default_value_t = 30.0)]
    pub drain_timeout: f64,
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
    if opts.rate.is_none() {
        report.param("jobs", opts.jobs());
    }
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
        Scenario::SubmitBg | Scenario::Roundtrip | Scenario::Coalesce if opts.rate.is_some() => {
            open::open_loop(&ctx, report).await?
        }
        _ if opts.rate.is_some() => {
            return Err(err!(
                "--rate is for the scenarios submit-bg, roundtrip and coalesce, not {}",
                opts.scenario.name()
            ))
        }
        Scenario::SubmitBg => submit::submit_bg(&ctx, report).await?,
        Scenario::Drain => workers::drain(&ctx, report).await?,
        Scenario::Roundtrip => workers::roundtrip(&ctx, report).await?,
        Scenario::Coalesce => workers::coalesce(&ctx, report).await?,
        Scenario::Latency => submit::latency(&ctx, report).await?,
        Scenario::Memory => memory::memory(&ctx, report).await?,
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
    let stats = ClientStats::merged(results);
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

fn latency_figures(report: &mut Report, stats: &mut ClientStats) {
    let l = &mut stats.latency;
    report.fig_opt("p50_us", l.percentile_us(0.50));
    report.fig_opt("p99_us", l.percentile_us(0.99));
    report.fig_opt("p999_us", l.percentile_us(0.999));
    report.fig_opt("mean_us", l.mean_us());
    report.fig_opt("max_us", l.max_us());
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
