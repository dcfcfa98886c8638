//! Submit scenarios: pipelined or one-at-a-time background submits, and the
//! latency of single submits.

use super::{
    cleanup, client_anomalies, cpu_figures, expect_queued, latency_figures, rate, submit_phase, Ctx,
};
use crate::report::Report;
use crate::Result;
use std::time::Duration;

pub(super) async fn submit_bg(ctx: &Ctx<'_>, report: &mut Report) -> Result<()> {
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

pub(super) async fn latency(ctx: &Ctx<'_>, report: &mut Report) -> Result<()> {
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
