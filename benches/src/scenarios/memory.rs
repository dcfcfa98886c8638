//! The memory scenario: queue a large backlog, measure RSS and the submit rate
//! as the queue grows and once it is full, drain it, and watch RSS come back.

use super::{
    client_anomalies, cpu_figures, drain_phase, expect_queued, rate, submit_phase,
    submit_phase_from, worker_anomalies, Ctx,
};
use crate::report::Report;
use crate::{err, Result};
use std::time::{Duration, Instant};

pub(super) async fn memory(ctx: &Ctx<'_>, report: &mut Report) -> Result<()> {
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
