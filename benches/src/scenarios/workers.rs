//! Scenarios with workers: draining a backlog, the foreground round trip and
//! unique coalescing under concurrency.

use super::{
    client_anomalies, cpu_figures, drain_phase, expect_queued, join_all, latency_figures, rate,
    submit_phase, worker_anomalies, Ctx,
};
use crate::client::{connect_all, foreground_loop, shares, ClientStats, Progress};
use crate::report::Report;
use crate::worker::{Pool, WorkerConfig};
use crate::Result;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

pub(super) async fn drain(ctx: &Ctx<'_>, report: &mut Report) -> Result<()> {
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

pub(super) async fn roundtrip(ctx: &Ctx<'_>, report: &mut Report) -> Result<()> {
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
    let mut stats = ClientStats::merged(results);
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

pub(super) async fn coalesce(ctx: &Ctx<'_>, report: &mut Report) -> Result<()> {
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
    let mut stats = ClientStats::merged(results);
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
