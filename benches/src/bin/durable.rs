//! durable: background submit throughput of gearboxd with its SQLite store,
//! against its in-memory store and against gearmand with `-q libsqlite3`, and
//! how fast a restarted gearboxd (and gearmand) brings back a large queue.
//! Writes one Markdown report (benches/RESULTS-durable.md).
//!
//! Started by the `benches/durable` script, which builds the binaries first.
//! Every submit run gets a freshly started server with a temp dir (and SQLite
//! file) of its own; the servers take turns, in an order that rotates from
//! run to run. Each run is bounded by a job count and by time (`--duration`),
//! so a slow server is measured over the same few seconds as a fast one.

use clap::Parser;
use gearbox_benches::durable::replay::{fill_replay_file, replay_once};
use gearbox_benches::durable::report::{report, secs, show, ReportInput};
use gearbox_benches::durable::{
    bundled_sqlite, disk, remove_db, run_loadgen, scenarios, Args, Kind, Runs, Scenario, Server,
    KINDS,
};
use gearbox_benches::harness::{command_output, machine_facts, Meter};
use gearbox_benches::runner::{binaries_present, scratch_dir, Finish, LoadOutcome};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let mut args = Args::parse();
    // Servers run in their own directories: make the binaries' path absolute.
    if let Ok(abs) = std::fs::canonicalize(&args.bin_dir) {
        args.bin_dir = abs;
    }
    let started = Instant::now();
    let n_runs = args.runs.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let duration = args
        .duration
        .unwrap_or(if args.quick { 1.0 } else { 3.0 })
        .max(0.1);
    let replay_jobs = args
        .replay_jobs
        .unwrap_or(if args.quick { 100_000 } else { 1_000_000 })
        .max(1);
    let scenarios: Vec<Scenario> = scenarios(args.quick, duration)
        .into_iter()
        .filter(|s| args.wants(s.id))
        .collect();
    let want_replay = args.wants("replay");
    let loadgen = args.bin_dir.join("loadgen");
    if !binaries_present("durable", &args.bin_dir) {
        return ExitCode::FAILURE;
    }
    let Some(dir) = scratch_dir("durable") else {
        return ExitCode::FAILURE;
    };
    let mut facts = machine_facts(&args.gearmand, &args.bin_dir);
    facts.push(("SQLite in gearboxd", bundled_sqlite()));
    facts.push((
        "SQLite on the system (gearmand's)",
        command_output("sqlite3", &["--version"])
            .split_whitespace()
            .next()
            .unwrap_or("unknown")
            .to_string(),
    ));
    facts.push((
        "scratch file system",
        command_output(
            "findmnt",
            &[
                "-n",
                "-o",
                "SOURCE,FSTYPE,OPTIONS",
                "--target",
                &dir.to_string_lossy(),
            ],
        ),
    ));
    eprintln!(
        "durable: {} scenarios × {n_runs} run(s) × 4 servers{}; scratch dir {}",
        scenarios.len(),
        if want_replay {
            format!(", then a {replay_jobs}-job replay")
        } else {
            String::new()
        },
        dir.display()
    );
    let probe_disk = |when: &str| {
        if scenarios.is_empty() {
            return None;
        }
        disk::measure(&dir)
            .map_err(|e| eprintln!("durable: disk probe {when} the runs failed: {e}"))
            .ok()
    };
    let disk_before = probe_disk("before");
    let mut runs: Runs = BTreeMap::new();
    let mut problems = Vec::new();
    let mut raw = String::new();
    let mut log = Vec::new();
    let mut seq = 0;
    for run in 0..n_runs {
        for (i, s) in scenarios.iter().enumerate() {
            // Rotate which server goes first.
            let shift = (run + i) % KINDS.len();
            let order: Vec<Kind> = (0..KINDS.len())
                .map(|k| KINDS[(k + shift) % KINDS.len()])
                .collect();
            for kind in order {
                seq += 1;
                let label = format!("{}-{}-run{}", s.id, kind.id(), run + 1);
                eprintln!("[{:>4.0}s] {label}", started.elapsed().as_secs_f64());
                let sdir = dir.join(format!("{seq:03}-{}", kind.id()));
                let db = sdir.join("queue.sqlite3");
                let meter = Meter::start();
                let start_s = started.elapsed().as_secs_f64();
                let mut server = match Server::spawn(kind, &args, &sdir, &db, false) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("    {e}");
                        problems.push(format!("{label}: {e}"));
                        continue;
                    }
                };
                let outcome = match server.wait_ready() {
                    Ok(()) => run_loadgen(&loadgen, &s.args, &server, &sdir, &label, 60),
                    Err(e) => LoadOutcome {
                        json: None,
                        problem: Some(format!("{label}: {e}")),
                    },
                };
                drop(server);
                remove_db(&db);
                log.push(meter.log(label.clone(), start_s, outcome.json.is_some()));
                if let Some(j) = outcome.record(&mut problems, &mut raw) {
                    runs.entry((i, kind)).or_default().push(j);
                }
            }
        }
    }
    let disk_after = probe_disk("after");
    let mut replays = Vec::new();
    let filled = if want_replay {
        fill_replay_file(
            &args,
            &loadgen,
            &dir,
            replay_jobs,
            &mut problems,
            &mut log,
            started,
        )
    } else {
        None
    };
    if let Some(filled) = &filled {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("durable: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut gearmand_gave_up = false;
        for run in 0..n_runs {
            let order = if run % 2 == 0 {
                [Kind::SqliteFull, Kind::Gearmand]
            } else {
                [Kind::Gearmand, Kind::SqliteFull]
            };
            for kind in order {
                if kind == Kind::Gearmand && gearmand_gave_up {
                    continue;
                }
                let x = replay_once(
                    &args,
                    kind,
                    filled,
                    &dir,
                    run + 1,
                    &runtime,
                    &mut problems,
                    &mut log,
                    started,
                );
                eprintln!(
                    "    accept {} s, first status {} s, whole queue {} s, status during replay {}, submits during replay {}, RSS {} MiB{}",
                    secs(x.accept_s),
                    secs(x.first_status_s),
                    secs(x.full_s),
                    x.status_during().len(),
                    x.submits_during().len(),
                    show(x.rss_kib.map(|k| k as f64 / 1024.0), 0),
                    x.note.as_ref().map_or(String::new(), |n| format!("; {n}"))
                );
                // A gearmand that cannot replay within the cap will not on a second try.
                if kind == Kind::Gearmand && x.full_s.is_none() {
                    gearmand_gave_up = true;
                }
                replays.push(x);
            }
        }
        remove_db(&filled.db);
    }
    let _ = std::fs::write(dir.join("runs.jsonl"), &raw);
    let md = report(&ReportInput {
        args: &args,
        scenarios: &scenarios,
        runs: &runs,
        filled: filled.as_ref(),
        replays: &replays,
        problems: &problems,
        facts: &facts,
        wall: started.elapsed(),
        n_runs,
        duration,
        log: &log,
        disk: [disk_before, disk_after],
    });
    Finish {
        program: "durable",
        md: &md,
        out: args.out.clone(),
        default_out: "benches/RESULTS-durable.md",
        quick: args.quick,
        keep: args.keep,
        started,
        problems: problems.len(),
        dir: &dir,
    }
    .run()
}
