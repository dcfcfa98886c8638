//! The Markdown report of `durable`: submit throughput, CPU per job and
//! latency per scenario and server, the two targets, the disk's floor, and
//! the restart part.

use super::disk::{self, SyncTimes};
use super::replay::{Filled, Probe, ReplayRun};
use super::{cpu_us_per_job, figure, Args, Kind, Runs, Scenario, KINDS};
use crate::harness::{
    command_output, fmt_num, median, outside_load_summary, run_log_section, RunLog,
};
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Duration;

pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
        _ => "—".into(),
    }
}

pub fn show(v: Option<f64>, decimals: usize) -> String {
    v.map_or("—".into(), |v| fmt_num(v, decimals))
}

pub fn med_of(runs: &Runs, i: usize, kind: Kind, f: impl Fn(&Value) -> Option<f64>) -> Option<f64> {
    let mut v: Vec<f64> = runs
        .get(&(i, kind))
        .map(|l| l.iter().filter_map(&f).collect())
        .unwrap_or_default();
    median(&mut v)
}

pub fn secs(v: Option<f64>) -> String {
    v.map_or("—".into(), |s| format!("{s:.2}"))
}

pub struct ReportInput<'a> {
    pub args: &'a Args,
    pub scenarios: &'a [Scenario],
    pub runs: &'a Runs,
    pub filled: Option<&'a Filled>,
    pub replays: &'a [ReplayRun],
    pub problems: &'a [String],
    pub facts: &'a [(&'static str, String)],
    pub wall: Duration,
    pub n_runs: usize,
    pub duration: f64,
    pub log: &'a [RunLog],
    /// The disk's sync time before and after the submit runs.
    pub disk: [Option<SyncTimes>; 2],
}

pub fn report(r: &ReportInput<'_>) -> String {
    let mut md = String::new();
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let _ = writeln!(
        md,
        "# Durable background jobs: gearbox SQLite vs in-memory vs gearmand libsqlite3\n"
    );
    let _ = writeln!(
        md,
        "Produced by `benches/durable{}` on {date}; wall time {}m{:02}s. Submit figures are the median of {} run(s) per server; see benches/README.md.\n",
        if r.args.quick { " --quick" } else { "" },
        r.wall.as_secs() / 60,
        r.wall.as_secs() % 60,
        r.n_runs
    );
    let _ = writeln!(md, "## Machine\n\n| | |\n|---|---|");
    for (k, v) in r.facts {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let _ = writeln!(md, "\n## Setup\n");
    for kind in KINDS {
        let _ = writeln!(md, "- {}: `{}`", kind.title(), kind.command());
    }
    let _ = writeln!(
        md,
        "- Every submit run starts a fresh server with a temp dir and SQLite file of its own, on a free loopback port, and stops it afterwards. The four servers take turns; the order rotates from run to run.\n\
         - Each run submits SUBMIT_JOB_BG with 100-byte data until its job count is reached or {} s have passed, whichever comes first, then waits for the replies in flight; the rate is jobs created over that time. A JOB_CREATED from gearbox with SQLite means the row is committed (group commit); gearmand commits each row on its own.\n\
         - The load generator (`target/release/loadgen`, 2 threads) shares the {} cores with the server. Server CPU is utime+stime of the server process (every thread, the SQLite writer included) over the submit phase, from /proc/PID/stat.\n\
         - The machine was shared with other engineers' compilations while this ran; see the outside-load line and the run log. The CPU-per-job rows are less sensitive to that than the rates.\n",
        r.duration,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(md, "{}", outside_load_summary(r.log));

    if !r.scenarios.is_empty() {
        let mem = |i| med_of(r.runs, i, Kind::Memory, |j| figure(j, "jobs_per_s"));
        let rate = |i, k| med_of(r.runs, i, k, |j| figure(j, "jobs_per_s"));
        let _ = writeln!(
            md,
            "## Submit throughput, jobs/s\n\n| Scenario | gearbox in-memory | gearbox SQLite full | gearbox SQLite normal | gearmand libsqlite3 | full ÷ in-memory | normal ÷ in-memory | gearbox full ÷ gearmand | gearbox normal ÷ gearmand |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|"
        );
        for (i, s) in r.scenarios.iter().enumerate() {
            let (m, f, n, g) = (
                mem(i),
                rate(i, Kind::SqliteFull),
                rate(i, Kind::SqliteNormal),
                rate(i, Kind::Gearmand),
            );
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.id,
                show(m, 0),
                show(f, 0),
                show(n, 0),
                show(g, 0),
                ratio(f, m),
                ratio(n, m),
                ratio(f, g),
                ratio(n, g)
            );
        }
        let _ = writeln!(
            md,
            "\n## Server CPU per job, µs (lower is better)\n\n| Scenario | gearbox in-memory | gearbox SQLite full | gearbox SQLite normal | gearmand libsqlite3 | full ÷ in-memory | gearbox full ÷ gearmand |\n|---|--:|--:|--:|--:|--:|--:|"
        );
        for (i, s) in r.scenarios.iter().enumerate() {
            let c = |k| med_of(r.runs, i, k, cpu_us_per_job);
            let (m, f, n, g) = (
                c(Kind::Memory),
                c(Kind::SqliteFull),
                c(Kind::SqliteNormal),
                c(Kind::Gearmand),
            );
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                s.id,
                show(m, 1),
                show(f, 1),
                show(n, 1),
                show(g, 0),
                ratio(f, m),
                ratio(f, g)
            );
        }
        let _ = writeln!(
            md,
            "\n## Submit → JOB_CREATED latency, p50 / p99 in µs\n\n| Scenario | gearbox in-memory | gearbox SQLite full | gearbox SQLite normal | gearmand libsqlite3 |\n|---|--:|--:|--:|--:|"
        );
        for (i, s) in r.scenarios.iter().enumerate() {
            let cell = |k| {
                format!(
                    "{} / {}",
                    show(med_of(r.runs, i, k, |j| figure(j, "p50_us")), 0),
                    show(med_of(r.runs, i, k, |j| figure(j, "p99_us")), 0)
                )
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                s.id,
                cell(Kind::Memory),
                cell(Kind::SqliteFull),
                cell(Kind::SqliteNormal),
                cell(Kind::Gearmand)
            );
        }
        // The two conditions, scenario by scenario.
        let mut half = Vec::new();
        let mut beat = Vec::new();
        for (i, s) in r.scenarios.iter().enumerate() {
            let (m, f, g) = (mem(i), rate(i, Kind::SqliteFull), rate(i, Kind::Gearmand));
            if let (Some(m), Some(f)) = (m, f) {
                half.push((s.id, f / m >= 0.5, f / m));
            }
            if let (Some(f), Some(g)) = (f, g) {
                beat.push((s.id, f >= g, f / g));
            }
        }
        let list = |v: &[(&str, bool, f64)]| {
            v.iter()
                .map(|(id, ok, x)| format!("{id} {x:.2}{}", if *ok { "" } else { " ✗" }))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            md,
            "\n## The two targets (gearbox SQLite with sync full, the default)\n\n\
             - At least half the in-memory rate: met in {} of {} scenarios ({}).\n\
             - At least gearmand's libsqlite3 rate: met in {} of {} scenarios ({}).\n",
            half.iter().filter(|x| x.1).count(),
            half.len(),
            list(&half),
            beat.iter().filter(|x| x.1).count(),
            beat.len(),
            list(&beat)
        );
    }

    if !r.scenarios.is_empty() {
        let [before, after] = r.disk;
        md.push_str(&disk::section(before, after, r.scenarios, |i| {
            med_of(r.runs, i, Kind::Memory, |j| figure(j, "jobs_per_s"))
        }));
    }

    if let Some(filled) = r.filled {
        replay_section(&mut md, r, filled);
    }

    let _ = writeln!(md, "## Scenarios\n");
    for s in r.scenarios {
        let _ = writeln!(
            md,
            "- **{}**: {}. `loadgen {}`",
            s.id,
            s.title,
            s.args.join(" ")
        );
    }
    let _ = writeln!(md, "\n## Problems observed\n");
    if r.problems.is_empty() {
        let _ = writeln!(
            md,
            "None: every run finished, every admin `status` count matched the jobs created, and every replay showed the whole queue."
        );
    } else {
        for p in r.problems {
            let _ = writeln!(md, "- {p}");
        }
    }
    if !r.scenarios.is_empty() {
        let _ = writeln!(
            md,
            "\n<details><summary>Every submit run: jobs/s (jobs created; * = stopped by the time limit)</summary>\n\n| Scenario | Server | runs |\n|---|---|---|"
        );
        for (i, s) in r.scenarios.iter().enumerate() {
            for kind in KINDS {
                let cells: Vec<String> = r
                    .runs
                    .get(&(i, kind))
                    .map(|l| {
                        l.iter()
                            .map(|j| {
                                format!(
                                    "{} ({}{})",
                                    show(figure(j, "jobs_per_s"), 0),
                                    show(figure(j, "jobs_created"), 0),
                                    if figure(j, "stopped_by_duration") == Some(1.0) {
                                        "*"
                                    } else {
                                        ""
                                    }
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let _ = writeln!(md, "| {} | {} | {} |", s.id, kind.title(), cells.join(", "));
            }
        }
        let _ = writeln!(md, "\n</details>");
    }
    run_log_section(&mut md, r.log);
    md
}

pub fn replay_section(md: &mut String, r: &ReportInput<'_>, filled: &Filled) {
    let jobs = fmt_num(filled.jobs as f64, 0);
    let _ = writeln!(md, "## Restart with {jobs} queued jobs\n");
    let fill = filled.json.as_ref();
    let _ = writeln!(
        md,
        "The queue file was filled through gearboxd (SQLite, sync full): {jobs} SUBMIT_JOB_BG over 8 connections × window 100, 100-byte data, 36-byte uuid uniques, one function; {} jobs/s, {} µs server CPU per job, server RSS {} MiB with the queue full. SIGTERM stopped it in {} s; the file is {} MiB. \
         Each restart below runs on a fresh copy of that file (gearmand reads gearbox's file as is: same table layout, the uniques as keys; the file stays in WAL mode).\n",
        show(fill.and_then(|j| figure(j, "jobs_per_s")), 0),
        show(fill.and_then(cpu_us_per_job), 1),
        show(
            fill.and_then(|j| figure(j, "server_rss_queued_kib"))
                .map(|k| k / 1024.0),
            0
        ),
        secs(filled.stop_s),
        fmt_num(filled.bytes as f64 / 1024.0 / 1024.0, 0)
    );
    let _ = writeln!(
        md,
        "While the server starts, a probe tries a TCP connect every 5 ms, then sends admin `status` every 100 ms (a new connection each time) until it shows all {jobs} jobs, and on one other connection a SUBMIT_JOB_BG of another function every 100 ms (one at a time). Times are seconds from the server's start; latencies in ms. \"During replay\" means a `status` reply showing part of the queue, or a submit answered before the last `status` request that still got a partial count was sent (so the server was certainly still replaying). Cap: {} s.\n",
        r.args.replay_cap
    );
    let kinds: Vec<Kind> = [Kind::SqliteFull, Kind::Gearmand]
        .into_iter()
        .filter(|k| r.replays.iter().any(|x| x.kind == Some(*k)))
        .collect();
    let runs_of =
        |k: Kind| -> Vec<&ReplayRun> { r.replays.iter().filter(|x| x.kind == Some(k)).collect() };
    let med = |k: Kind, f: &dyn Fn(&ReplayRun) -> Option<f64>| {
        let mut v: Vec<f64> = runs_of(k).iter().filter_map(|x| f(x)).collect();
        median(&mut v)
    };
    let mut head = String::from("| Figure |");
    let mut rule = String::from("|---|");
    for k in &kinds {
        let n = runs_of(*k).len();
        let _ = write!(
            head,
            " {} (median of {n}) | {} per run |",
            k.title(),
            k.title()
        );
        rule.push_str("--:|---|");
    }
    let _ = writeln!(md, "{head}\n{rule}");
    let queued = filled.jobs as f64;
    let rows: Vec<(&str, Getter<'_>, usize, f64)> = vec![
        ("TCP connect accepted, s", Box::new(|x| x.accept_s), 3, 1.0),
        (
            "first admin `status` reply, s",
            Box::new(|x| x.first_status_s),
            2,
            1.0,
        ),
        (
            "`status` shows the whole queue, s",
            Box::new(|x| x.full_s),
            2,
            1.0,
        ),
        (
            "replay rate, jobs/s (queue ÷ time until `status` shows it)",
            Box::new(move |x| x.full_s.map(|t| queued / t)),
            0,
            1.0,
        ),
        (
            "replay time in gearboxd's log, s",
            Box::new(|x| x.log_replay_s),
            2,
            1.0,
        ),
        (
            "`status` replies during replay",
            Box::new(|x| Some(x.status_during().len() as f64)),
            0,
            1.0,
        ),
        latency_row(
            "… their median latency, ms",
            |x| x.status_during(),
            median_latency,
        ),
        latency_row(
            "… their max latency, ms",
            |x| x.status_during(),
            max_latency,
        ),
        (
            "SUBMIT_JOB_BG answered during replay",
            Box::new(|x| Some(x.submits_during().len() as f64)),
            0,
            1.0,
        ),
        latency_row(
            "… their median latency, ms",
            |x| x.submits_during(),
            median_latency,
        ),
        latency_row(
            "… their max latency, ms",
            |x| x.submits_during(),
            max_latency,
        ),
        (
            "first SUBMIT_JOB_BG: sent at, s",
            Box::new(|x| x.submits.first().map(|p| p.sent_s)),
            2,
            1.0,
        ),
        (
            "first SUBMIT_JOB_BG: latency, ms",
            Box::new(|x| x.submits.first().and_then(|p| p.latency_s)),
            1,
            1000.0,
        ),
        (
            "server CPU-s until the queue was back",
            Box::new(|x| x.cpu_s),
            2,
            1.0,
        ),
        (
            "RSS with the queue back, MiB",
            Box::new(|x| x.rss_kib.map(|k| k as f64 / 1024.0)),
            0,
            1.0,
        ),
        ("SIGTERM → exit, s", Box::new(|x| x.stop_s), 2, 1.0),
    ];
    for (label, get, decimals, scale) in &rows {
        let mut line = format!("| {label} |");
        for k in &kinds {
            let m = med(*k, &|x| get(x).map(|v| v * scale));
            let per: Vec<String> = runs_of(*k)
                .iter()
                .map(|x| get(x).map_or("—".into(), |v| fmt_num(v * scale, *decimals)))
                .collect();
            let _ = write!(line, " {} | {} |", show(m, *decimals), per.join(", "));
        }
        let _ = writeln!(md, "{line}");
    }
    let notes: Vec<String> = r
        .replays
        .iter()
        .filter_map(|x| {
            x.note
                .as_ref()
                .map(|n| format!("- {}: {n}", x.kind.map_or("?", Kind::title)))
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(md, "\n{}", notes.join("\n"));
    }
    // The status timeline of the first run of each server.
    for k in &kinds {
        if let Some(x) = runs_of(*k).first() {
            let points: Vec<String> = x
                .status
                .iter()
                .map(|p| match (p.answered_s(), p.count) {
                    (Some(a), Some(c)) => format!("{a:.2} s: {}", fmt_num(c as f64, 0)),
                    _ => format!(
                        "{:.2} s: {}",
                        p.sent_s,
                        p.error.as_deref().unwrap_or("no reply")
                    ),
                })
                .collect();
            let shown: Vec<String> = if points.len() > 24 {
                let step = points.len().div_ceil(24);
                let mut v: Vec<String> = points.iter().step_by(step).cloned().collect();
                if let Some(last) = points.last() {
                    if v.last() != Some(last) {
                        v.push(last.clone());
                    }
                }
                v
            } else {
                points
            };
            let _ = writeln!(
                md,
                "\n{} run 1, jobs shown by `status` (reply time: count): {}",
                k.title(),
                shown.join(" · ")
            );
        }
    }
    let _ = writeln!(md);
}

type Getter<'a> = Box<dyn Fn(&ReplayRun) -> Option<f64> + 'a>;

/// A row of the replay table over the latencies (ms) of some probes of a run.
fn latency_row<'a>(
    label: &'a str,
    probes: fn(&ReplayRun) -> Vec<&Probe>,
    reduce: fn(&[&Probe]) -> Option<f64>,
) -> (&'a str, Getter<'a>, usize, f64) {
    (label, Box::new(move |x| reduce(&probes(x))), 1, 1000.0)
}

fn median_latency(probes: &[&Probe]) -> Option<f64> {
    let mut v: Vec<f64> = probes.iter().filter_map(|p| p.latency_s).collect();
    median(&mut v)
}

fn max_latency(probes: &[&Probe]) -> Option<f64> {
    probes.iter().filter_map(|p| p.latency_s).reduce(f64::max)
}
