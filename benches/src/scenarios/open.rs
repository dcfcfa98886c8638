//! Open-loop runs of submit-bg, roundtrip and coalesce (`--rate N`): jobs
//! sent on a fixed schedule, latency from each job's scheduled time (see
//! [`crate::openloop`]).

use super::{
    cleanup, client_anomalies, cpu_figures, expect_queued, join_all, rate, worker_anomalies, Ctx,
    Scenario,
};
use crate::client::Progress;
use crate::conn::Conn;
use crate::openloop::{
    judge, max_us, mean_us, mono_ns, quantile_us, CancelOnDrop, OpenClient, PacePlan, Pacer,
    ReadPlan, Schedule, Shared, UniqueFn,
};
use crate::report::Report;
use crate::worker::{Pool, WorkerConfig};
use crate::{err, Result};
use gearbox_proto::PacketType;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn open_loop(ctx: &Ctx<'_>, report: &mut Report) -> Result<()> {
    let o = ctx.opts;
    let offered = o.rate.unwrap_or(0.0);
    if !(offered.is_finite() && offered > 0.0) {
        return Err(err!("--rate must be a positive number of jobs per second"));
    }
    let scenario = o.scenario;
    let foreground = scenario != Scenario::SubmitBg;
    let lanes = match scenario {
        Scenario::Roundtrip => o.clients,
        _ => o.connections,
    }
    .max(1);
    let duration = o.duration.unwrap_or(5.0).max(0.001);
    let total = ((offered * duration).round() as u64)
        .min(o.jobs.unwrap_or(u64::MAX))
        .max(1);
    let keys = o.uniques.max(1);
    report.param("rate", offered);
    report.param("jobs", total);
    report.param("duration_s", total as f64 / offered);
    report.param(
        if scenario == Scenario::Roundtrip {
            "clients"
        } else {
            "connections"
        },
        lanes as u64,
    );
    if foreground {
        report.param("workers", o.workers as u64);
        report.param("grab_window", o.grab_window as u64);
    }
    if scenario == Scenario::Coalesce {
        report.param("uniques", keys);
    } else {
        report.param("unique", o.unique.to_string());
    }
    report.param("in_flight_cap", o.in_flight_cap);
    report.param("spin_us", o.spin_us);

    let pool = if foreground {
        let cfg = WorkerConfig {
            function: ctx.spec.function.clone(),
            grab_window: o.grab_window,
            echo: true,
        };
        let executed = Arc::new(Progress::new(total));
        Some(Pool::start(&o.server, &cfg, o.workers.max(1), None, executed).await?)
    } else {
        None
    };
    let mut conns = Vec::with_capacity(lanes);
    let mut writers = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        let (c, w) = Conn::connect_split(&o.server).await?;
        conns.push(c);
        writers.push(w);
    }
    let shared = Arc::new(Shared::new(lanes));
    let _cancel = CancelOnDrop(shared.clone());
    let progress = Arc::new(Progress::new(total));
    ctx.tracker.enter("open loop", progress.clone());
    let spec = ctx.spec.clone();
    let unique_of: UniqueFn = match scenario {
        // Every connection walks the same keys in the same order (its i-th
        // submit has key i mod K), as in the closed loop: the C submits of a
        // key are due one after the other and meet in the server.
        Scenario::Coalesce => {
            let (nonce, c) = (spec.nonce, lanes as u64);
            Box::new(move |k, buf: &mut String| {
                buf.clear();
                let _ = write!(buf, "{nonce:08x}-key-{}", (k / c) % keys);
            })
        }
        _ => {
            let spec = spec.clone();
            Box::new(move |k, buf: &mut String| spec.unique_for(k, buf))
        }
    };
    let before = ctx.monitor.sample()?;
    // A few ms to spawn the readers before the first job is due.
    let schedule = Schedule::new(mono_ns() + 5_000_000, offered, total);
    let plan = PacePlan {
        kind: if foreground {
            PacketType::SUBMIT_JOB
        } else {
            PacketType::SUBMIT_JOB_BG
        },
        function: spec.function.clone(),
        payload: spec.payload.clone(),
        unique_of,
        schedule,
        cap: o.in_flight_cap.max(1),
        spin_ns: o.spin_us * 1000,
        flush_limit_ns: (o.drain_timeout.max(0.0) * 1e9) as u64,
    };
    let pacer = Pacer::spawn(plan, writers, shared.clone())?;
    let readers: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(lane, conn)| {
            let plan = ReadPlan {
                lane,
                lanes,
                schedule,
                foreground,
                payload_len: spec.payload.len(),
                drain_limit: Duration::from_secs_f64(o.drain_timeout.max(0.0)),
            };
            crate::openloop::read_lane(conn, plan, shared.clone(), progress.clone())
        })
        .collect();
    let results = join_all(readers).await?;
    let pace = pacer.finish().await?;
    let after = ctx.monitor.sample()?;
    let workers = match pool {
        Some(p) => Some(p.finish().await?),
        None => None,
    };
    if let Some(e) = &pace.error {
        return Err(err!("pacer: {e}"));
    }
    let OpenClient {
        mut stats,
        latency,
        unanswered,
        last_reply_ns,
    } = OpenClient::merged(results);
    let finished = if foreground {
        stats.completed
    } else {
        stats.created
    };

    // The rates: asked for, sent, answered.
    let interval_s = schedule.interval_ns / 1e9;
    let send_span_s = (pace.last_attempt_ns.saturating_sub(schedule.start_ns)) as f64 / 1e9;
    let sent_per_s = pace.enqueued as f64 / (send_span_s + interval_s);
    report.fig("offered_per_s", offered);
    report.fig("sent_per_s", sent_per_s);
    let reply_span = Duration::from_nanos(last_reply_ns.saturating_sub(schedule.start_ns));
    let rate_key = if scenario == Scenario::Coalesce {
        "submits_per_s"
    } else {
        "jobs_per_s"
    };
    report.fig(rate_key, rate(finished, reply_span));
    // Latency from the scheduled time.
    report.fig_opt("p50_us", quantile_us(&latency, 0.50));
    report.fig_opt("p99_us", quantile_us(&latency, 0.99));
    report.fig_opt("p999_us", quantile_us(&latency, 0.999));
    report.fig_opt("max_us", max_us(&latency));
    report.fig_opt("mean_us", mean_us(&latency));
    // How well the pacer kept its schedule.
    let lag = &pace.lag;
    let lag_p99 = quantile_us(lag, 0.99).unwrap_or(0.0);
    let lag_max = max_us(lag).unwrap_or(0.0);
    report.fig_opt("send_lag_p50_us", quantile_us(lag, 0.50));
    report.fig("send_lag_p99_us", lag_p99);
    report.fig_opt("send_lag_p999_us", quantile_us(lag, 0.999));
    report.fig("send_lag_max_us", lag_max);
    report.fig(
        "jobs_per_wake",
        pace.enqueued as f64 / pace.wakes.max(1) as f64,
    );
    report.fig("held_by_full_socket_jobs", pace.held_jobs as f64);
    report.fig("socket_full_ms", pace.socket_full_ns as f64 / 1e6);
    report.fig("peak_in_flight", pace.peak_in_flight as f64);
    report.fig("in_flight_cap_hits", pace.cap_hits as f64);
    if unanswered > 0 {
        report.fig("unanswered_jobs", unanswered as f64);
    }
    let verdict = judge(offered, sent_per_s, lag_p99, pace.cap_hits, pace.unwritten);
    report.fig("valid", f64::from(u8::from(verdict.valid)));
    if !verdict.valid {
        report.anomaly(format!(
            "not valid: the generator did not keep its schedule: {}",
            verdict.reasons.join(", ")
        ));
    }
    if unanswered > 0 {
        report.anomaly(format!(
            "{unanswered} jobs unanswered {:.1} s after the last was written (latency recorded as at least that wait)",
            o.drain_timeout
        ));
    }
    cpu_figures(report, "", before, after, finished);
    if scenario == Scenario::Coalesce {
        let handles = stats.handles.len() as u64;
        report.fig("submits", stats.created as f64);
        report.fig("distinct_handles", handles as f64);
        if let Some(w) = &workers {
            report.fig("jobs_executed", w.executed as f64);
            if w.executed != handles {
                report.anomaly(format!(
                    "workers executed {} jobs but {handles} distinct handles were created",
                    w.executed
                ));
            }
        }
        if handles > 0 {
            report.fig("submits_per_handle", stats.created as f64 / handles as f64);
        }
        report.fig(
            "extra_work_complete_packets",
            stats.unmatched_completes as f64,
        );
    } else if stats.unmatched_completes > 0 {
        report.anomaly(format!(
            "{} WORK_COMPLETE for handles no submit was waiting on",
            stats.unmatched_completes
        ));
    }
    stats.latency = Default::default();
    client_anomalies(report, "open-loop clients", &stats);
    if let Some(w) = &workers {
        worker_anomalies(report, scenario.name(), w);
        if scenario == Scenario::Roundtrip && w.executed != pace.written {
            report.anomaly(format!(
                "workers executed {} jobs for {} submits",
                w.executed, pace.written
            ));
        }
        expect_queued(ctx, report, 0, "after the open loop").await
    } else {
        if let Some(a) = after {
            report.fig("server_rss_queued_kib", a.rss_kib as f64);
        }
        expect_queued(ctx, report, stats.created, "after submitting").await?;
        cleanup(ctx, report, stats.created).await
    }
}
