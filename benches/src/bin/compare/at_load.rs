//! `compare --at-load`: latency at fixed offered load.
//!
//! For each scenario it first measures gearmand's best closed-loop rate
//! (`-t 1` and `-t 4`, the higher of the two medians), then runs
//! `loadgen --rate` at shares of that rate (25, 50, 75 and 90 % by default)
//! against gearmand `-t 1`, gearmand `-t 4` and gearboxd, each run on a
//! freshly started server, the servers taking turns in an order that
//! rotates. The report gives, per offered rate, gearbox's latency
//! percentiles against those of the better gearmand at that rate.

use super::{run_program, Args, Server, PIN_CPU};
use gearbox_benches::compare_specs::{at_load_specs, AtLoadSpec, Kind, Program};
use gearbox_benches::harness::{
    command_output, fmt_num, machine_facts, median, outside_load_summary, run_log_section, Meter,
    RunLog,
};
use gearbox_benches::openloop::{MAX_LAG_P99_US, MIN_SEND_SHARE};
use gearbox_benches::runner::{binaries_present, scratch_dir, Finish};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Closed-loop runs: (scenario, gearmand kind) → achieved rates.
type Calibration = BTreeMap<(usize, Kind), Vec<f64>>;
/// Open-loop runs: (scenario, share, server) → JSON lines.
type OpenRuns = BTreeMap<(usize, usize, Kind), Vec<Value>>;

const GEARMANDS: [Kind; 2] = [Kind::GearmandT1, Kind::Gearmand];

fn label_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Gearbox => "gearboxd -q builtin",
        Kind::GearboxSqlite => "gearboxd -q libsqlite3",
        Kind::Gearmand => "gearmand -t 4",
        Kind::GearmandT1 => "gearmand -t 1",
    }
}

/// Everything one scenario needs to be run: the shared state of the mode.
struct Driver<'a> {
    args: &'a Args,
    dir: std::path::PathBuf,
    started: Instant,
    seq: usize,
    problems: Vec<String>,
    /// Runs whose only anomaly is "not valid".
    not_valid: Vec<String>,
    raw: String,
    log: Vec<RunLog>,
}

impl Driver<'_> {
    /// One loadgen run on a fresh server of `kind`; the JSON of a run that
    /// finished.
    fn run(
        &mut self,
        kind: Kind,
        load_args: &[String],
        label: &str,
        deadline_s: u64,
    ) -> Option<Value> {
        self.seq += 1;
        eprintln!("[{:>4.0}s] {label}", self.started.elapsed().as_secs_f64());
        let meter = Meter::start();
        let start_s = self.started.elapsed().as_secs_f64();
        let server = match Server::start(kind, self.args, &self.dir, self.seq) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("    {e}");
                self.problems.push(format!("{label}: {e}"));
                return None;
            }
        };
        let target = server.target(false);
        let mut outcome = run_program(
            self.args,
            Program::Loadgen,
            load_args,
            &target,
            &server,
            &self.dir,
            label,
            deadline_s,
        );
        drop(server);
        if kind == Kind::GearboxSqlite {
            // Its SQLite file holds every job of the run; not needed any more.
            let _ = std::fs::remove_dir_all(self.dir.join(format!("gearbox-{}", self.seq)));
        }
        self.log
            .push(meter.log(label.to_string(), start_s, outcome.json.is_some()));
        if outcome.json.as_ref().is_some_and(only_not_valid) {
            // Data, not a problem: the tables show it.
            self.not_valid.push(label.to_string());
            outcome.problem = None;
        }
        outcome.record(&mut self.problems, &mut self.raw)
    }
}

/// A run that finished whose only anomaly is that the generator did not
/// keep its schedule.
fn only_not_valid(j: &Value) -> bool {
    let anomalies = j["anomalies"].as_array().map_or(&[][..], |a| a.as_slice());
    j["ok"] == Value::Bool(true)
        && j["error"].is_null()
        && !anomalies.is_empty()
        && anomalies
            .iter()
            .all(|a| a.as_str().is_some_and(|s| s.starts_with("not valid:")))
}

pub fn run(args: &Args) -> ExitCode {
    let started = Instant::now();
    let n_runs = args.runs.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let secs = args
        .rate_secs
        .unwrap_or(if args.quick { 1.0 } else { 3.0 })
        .max(0.1);
    let shares: Vec<f64> = args.shares.iter().copied().filter(|p| *p > 0.0).collect();
    let specs: Vec<AtLoadSpec> = at_load_specs(args.quick)
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| s.id.contains(o.as_str())))
        .collect();
    if !binaries_present("compare", &args.bin_dir) {
        return ExitCode::FAILURE;
    }
    let Some(dir) = scratch_dir("compare-at-load") else {
        return ExitCode::FAILURE;
    };
    let mut facts = machine_facts(&args.gearmand, &args.bin_dir);
    facts.push(("load generator", pin_fact(args)));
    let per_round: usize = specs
        .iter()
        .map(|s| shares.len() * (s.gearboxes.len() + GEARMANDS.len()))
        .sum();
    eprintln!(
        "compare --at-load: {} scenarios; {} closed-loop runs, then {} open-loop runs of {secs} s; scratch dir {}",
        specs.len(),
        specs.len() * GEARMANDS.len() * n_runs,
        per_round * n_runs,
        dir.display()
    );
    let mut d = Driver {
        args,
        dir: dir.clone(),
        started,
        seq: 0,
        problems: Vec::new(),
        not_valid: Vec::new(),
        raw: String::new(),
        log: Vec::new(),
    };

    // 1. gearmand's best closed-loop rate per scenario.
    let mut calibration: Calibration = BTreeMap::new();
    for run in 0..n_runs {
        for (i, spec) in specs.iter().enumerate() {
            let mut order = GEARMANDS.to_vec();
            order.rotate_left(run % GEARMANDS.len());
            for kind in order {
                let label = format!("{}-closed-{}-run{}", spec.id, kind.name(), run + 1);
                if let Some(j) = d.run(kind, &spec.closed, &label, 120) {
                    if let Some(r) = j["figures"][spec.rate_key].as_f64() {
                        calibration.entry((i, kind)).or_default().push(r);
                    }
                }
            }
        }
    }
    let best: Vec<Option<(f64, Kind)>> = (0..specs.len())
        .map(|i| best_closed(&calibration, i))
        .collect();
    let rates: Vec<Vec<f64>> = best
        .iter()
        .map(|b| match b {
            Some((r, _)) => shares.iter().map(|p| (r * p / 100.0).round()).collect(),
            None => Vec::new(),
        })
        .collect();
    for (spec, b) in specs.iter().zip(&best) {
        match b {
            Some((r, k)) => eprintln!(
                "compare --at-load: {}: best closed loop {} {} ({})",
                spec.id,
                fmt_num(*r, 0),
                unit(spec),
                label_of(*k)
            ),
            None => {
                let p = format!(
                    "{}: no closed-loop gearmand run finished, so no rate to offer; scenario skipped",
                    spec.id
                );
                eprintln!("compare --at-load: {p}");
                d.problems.push(p);
            }
        }
    }

    // 2. The open loop at each share of that rate.
    let mut runs: OpenRuns = BTreeMap::new();
    let deadline = (secs + 5.0 + 60.0).ceil() as u64;
    for run in 0..n_runs {
        for (i, spec) in specs.iter().enumerate() {
            for (j, rate) in rates[i].iter().enumerate() {
                let mut order: Vec<Kind> = spec.gearboxes.clone();
                order.extend(GEARMANDS);
                let shift = (run + j) % order.len();
                order.rotate_left(shift);
                let mut load_args = spec.open.clone();
                load_args.extend([
                    "--rate".to_string(),
                    format!("{rate}"),
                    "--duration".to_string(),
                    format!("{secs}"),
                ]);
                for kind in order {
                    let label = format!(
                        "{}-{:.0}pct-{}-run{}",
                        spec.id,
                        shares[j],
                        kind.name(),
                        run + 1
                    );
                    if let Some(v) = d.run(kind, &load_args, &label, deadline) {
                        runs.entry((i, j, kind)).or_default().push(v);
                    }
                }
            }
        }
    }
    let _ = std::fs::write(dir.join("runs.jsonl"), &d.raw);
    let md = report(&Report {
        args,
        specs: &specs,
        shares: &shares,
        rates: &rates,
        best: &best,
        calibration: &calibration,
        runs: &runs,
        problems: &d.problems,
        not_valid: &d.not_valid,
        facts: &facts,
        wall: started.elapsed(),
        n_runs,
        secs,
        log: &d.log,
    });
    Finish {
        program: "compare",
        md: &md,
        out: args.out.clone(),
        default_out: "benches/RESULTS-at-load.md",
        quick: args.quick,
        keep: args.keep,
        started,
        problems: d.problems.len(),
        dir: &dir,
    }
    .run()
}

pub fn pin_fact(args: &Args) -> String {
    if args.pin {
        format!(
            "pinned to CPU {PIN_CPU} (`taskset -c {PIN_CPU} loadgen …`); the servers are not pinned"
        )
    } else {
        "not pinned (the scheduler places it and the servers)".to_string()
    }
}

/// gearmand's best closed-loop rate for scenario `i`: the higher median of
/// `-t 1` and `-t 4`.
fn best_closed(cal: &Calibration, i: usize) -> Option<(f64, Kind)> {
    GEARMANDS
        .iter()
        .filter_map(|&k| {
            let mut v = cal.get(&(i, k))?.clone();
            median(&mut v).map(|m| (m, k))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// Medians of one server's runs at one rate.
#[derive(Debug, Clone, Default, PartialEq)]
struct Cell {
    runs: usize,
    valid: usize,
    achieved: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    max: Option<f64>,
    lag_p99: Option<f64>,
    lag_max: Option<f64>,
}

impl Cell {
    fn of(list: Option<&Vec<Value>>, rate_key: &str) -> Cell {
        let list: &[Value] = list.map_or(&[], |v| v.as_slice());
        let med = |key: &str| {
            let mut v: Vec<f64> = list
                .iter()
                .filter_map(|j| j["figures"][key].as_f64())
                .collect();
            median(&mut v)
        };
        Cell {
            runs: list.len(),
            valid: list
                .iter()
                .filter(|j| j["figures"]["valid"].as_f64() == Some(1.0))
                .count(),
            achieved: med(rate_key),
            p50: med("p50_us"),
            p99: med("p99_us"),
            p999: med("p999_us"),
            max: med("max_us"),
            lag_p99: med("send_lag_p99_us"),
            lag_max: med("send_lag_max_us"),
        }
    }

    fn figures(&self) -> [Option<f64>; 4] {
        [self.p50, self.p99, self.p999, self.max]
    }

    fn valid_runs(&self) -> String {
        format!("{}/{}", self.valid, self.runs)
    }
}

/// The better gearmand at one rate: the one with more valid runs, then the
/// lower median p99.
fn better_gearmand(t1: &Cell, t4: &Cell) -> Kind {
    let score = |c: &Cell| (c.runs > 0, c.valid, c.p99.map(|p| -p));
    let (a, b) = (score(t1), score(t4));
    let t1_wins = match a.0.cmp(&b.0).then(a.1.cmp(&b.1)) {
        std::cmp::Ordering::Equal => match (a.2, b.2) {
            (Some(x), Some(y)) => x > y,
            (Some(_), None) => true,
            _ => false,
        },
        o => o == std::cmp::Ordering::Greater,
    };
    if t1_wins {
        Kind::GearmandT1
    } else {
        Kind::Gearmand
    }
}

fn us(v: Option<f64>) -> String {
    match v {
        Some(v) if v < 100.0 => fmt_num(v, 1),
        Some(v) => fmt_num(v, 0),
        None => "—".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "—".into(),
    }
}

struct Report<'a> {
    args: &'a Args,
    specs: &'a [AtLoadSpec],
    shares: &'a [f64],
    rates: &'a [Vec<f64>],
    best: &'a [Option<(f64, Kind)>],
    calibration: &'a Calibration,
    runs: &'a OpenRuns,
    problems: &'a [String],
    not_valid: &'a [String],
    facts: &'a [(&'a str, String)],
    wall: Duration,
    n_runs: usize,
    secs: f64,
    log: &'a [RunLog],
}

fn report(r: &Report) -> String {
    let mut md = String::new();
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(md, "# gearbox vs gearmand: latency at fixed offered load\n");
    let _ = writeln!(
        md,
        "Produced by `benches/compare --at-load{}{}` on {date}; wall time {}m{:02}s. Each figure is the median of {} run(s) of {} s per server and rate; see benches/README.md.\n",
        if r.args.quick { " --quick" } else { "" },
        if r.args.pin { " --pin" } else { "" },
        r.wall.as_secs() / 60,
        r.wall.as_secs() % 60,
        r.n_runs,
        r.secs
    );
    let _ = writeln!(md, "## Machine\n\n| | |\n|---|---|");
    for (k, v) in r.facts {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let _ = writeln!(
        md,
        "\n## Setup\n\n\
         - Servers, each started fresh for every run on a free loopback port and stopped afterwards; they take turns, in an order that rotates between rates and runs:\n\
         \x20 - gearmand -t 1 and -t 4: `gearmand -t N --hashtable-buckets 1000003 -p PORT -L 127.0.0.1 -l LOG -P PIDFILE` (in memory).\n\
         \x20 - gearboxd -q builtin: `target/release/gearboxd -p PORT -L 127.0.0.1 --unix SOCK -l stderr -q builtin` (in memory, as gearmand).\n\
         \x20 - gearboxd -q libsqlite3 (background submit only): the same with its durable SQLite store instead of `-q builtin`, started in a new directory per run, so `./gearboxd-queue.sqlite3` starts empty.\n\
         - The offered rate: first gearmand's best closed-loop rate for the scenario is measured (the closed-loop command below, against `-t 1` and `-t 4`, {} run(s) each; the higher median). Each open-loop run then offers {} of it.\n\
         - Open loop (`loadgen --rate N --duration {}`): job k is due at start + k/N and goes on connection k mod C; a pacer thread sends it then, whatever the server does, and never waits for replies. Latency is from the job's *due* time to its reply, so a stall of the server cannot hide (no coordinated omission). HDR histograms, 3 significant digits.\n\
         - Valid run: the generator kept its schedule: achieved send rate ≥ {:.0}% of N, p99 send lag (write attempt − due time) ≤ {:.0} µs, the in-flight cap (100,000 per connection) never hit, every job written. Send lag p99 and max are in the detail tables; a max latency close to the max send lag is the generator's, not the server's.\n\
         - The better gearmand at a rate is the one with more valid runs there, then the lower median p99. gearbox/gearmand below 1 is better for gearbox.\n\
         - The load generator (`target/release/loadgen`, 2 runtime threads plus the pacer thread) shares the {cores} cores with the server: {}.\n",
        r.n_runs,
        r.shares
            .iter()
            .map(|p| format!("{p}%"))
            .collect::<Vec<_>>()
            .join(", "),
        r.secs,
        100.0 * MIN_SEND_SHARE,
        MAX_LAG_P99_US,
        pin_fact(r.args)
    );
    let _ = writeln!(md, "{}", outside_load_summary(r.log));
    let _ = writeln!(md, "## Results\n");
    for (i, spec) in r.specs.iter().enumerate() {
        for &gb in &spec.gearboxes {
            results_table(&mut md, r, i, spec, gb);
        }
    }
    let _ = writeln!(md, "## Every server at every rate\n");
    for (i, spec) in r.specs.iter().enumerate() {
        detail_table(&mut md, r, i, spec);
    }
    let _ = writeln!(
        md,
        "## gearmand's closed-loop rate\n\n| Scenario | gearmand -t 1 | gearmand -t 4 | best (sets the offered rates) | offered rates |\n|---|--:|--:|--:|---|"
    );
    for (i, spec) in r.specs.iter().enumerate() {
        let runs = |k: Kind| {
            let v = r.calibration.get(&(i, k)).cloned().unwrap_or_default();
            let mut m = v.clone();
            match median(&mut m) {
                Some(m) => format!(
                    "{} ({})",
                    fmt_num(m, 0),
                    v.iter()
                        .map(|x| fmt_num(*x, 0))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => "—".into(),
            }
        };
        let best = r.best[i].map_or("—".into(), |(v, k)| {
            format!("{} ({})", fmt_num(v, 0), label_of(k))
        });
        let offered: Vec<String> = r.rates[i].iter().map(|x| fmt_num(*x, 0)).collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {best} | {} |",
            spec.id,
            runs(Kind::GearmandT1),
            runs(Kind::Gearmand),
            offered.join(", ")
        );
    }
    let _ = writeln!(md, "\n## Scenarios\n");
    for spec in r.specs {
        let _ = writeln!(
            md,
            "- **{}**: {}.\n  - closed loop: `loadgen {}`\n  - open loop: `loadgen {} --rate N --duration {}`",
            spec.id,
            spec.title,
            spec.closed.join(" "),
            spec.open.join(" "),
            r.secs
        );
    }
    let _ = writeln!(md, "\n## Problems observed\n");
    let open_runs: usize = r.runs.values().map(Vec::len).sum();
    if !r.not_valid.is_empty() {
        let _ = writeln!(
            md,
            "- {} of {open_runs} open-loop runs were not valid (the generator fell behind its schedule; nothing else was wrong): {}. Their figures are in the tables, counted in the valid-runs columns.",
            r.not_valid.len(),
            r.not_valid.join(", ")
        );
    }
    if r.problems.is_empty() {
        let _ = writeln!(
            md,
            "{}very run finished, and every count checked was as expected.",
            if r.not_valid.is_empty() {
                "None: e"
            } else {
                "- Otherwise e"
            }
        );
    } else {
        for p in r.problems {
            let _ = writeln!(md, "- {p}");
        }
    }
    every_run(&mut md, r);
    run_log_section(&mut md, r.log);
    md
}

/// The unit of a scenario's rate.
fn unit(spec: &AtLoadSpec) -> &'static str {
    if spec.rate_key == "submits_per_s" {
        "submits/s"
    } else {
        "jobs/s"
    }
}

fn results_table(md: &mut String, r: &Report, i: usize, spec: &AtLoadSpec, gb: Kind) {
    let unit = unit(spec);
    let _ = writeln!(
        md,
        "### {}: {} against the better gearmand\n\n{}; latency {}, µs.\n\n\
         | Offered, {unit} | Share | gearbox p50 | p99 | p99.9 | max | gearmand | p50 | p99 | p99.9 | max | ÷ p50 | ÷ p99 | ÷ p99.9 | ÷ max | valid runs: gearbox, gearmand |\n\
         |--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
        spec.id,
        label_of(gb),
        spec.title,
        spec.latency_of
    );
    for (j, rate) in r.rates[i].iter().enumerate() {
        let g = Cell::of(r.runs.get(&(i, j, gb)), spec.rate_key);
        let t1 = Cell::of(r.runs.get(&(i, j, Kind::GearmandT1)), spec.rate_key);
        let t4 = Cell::of(r.runs.get(&(i, j, Kind::Gearmand)), spec.rate_key);
        let which = better_gearmand(&t1, &t4);
        let m = if which == Kind::GearmandT1 { &t1 } else { &t4 };
        let (gf, mf) = (g.figures(), m.figures());
        let _ = writeln!(
            md,
            "| {} | {:.0}% | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}, {} |",
            fmt_num(*rate, 0),
            r.shares[j],
            us(gf[0]),
            us(gf[1]),
            us(gf[2]),
            us(gf[3]),
            if which == Kind::GearmandT1 { "-t 1" } else { "-t 4" },
            us(mf[0]),
            us(mf[1]),
            us(mf[2]),
            us(mf[3]),
            ratio(gf[0], mf[0]),
            ratio(gf[1], mf[1]),
            ratio(gf[2], mf[2]),
            ratio(gf[3], mf[3]),
            g.valid_runs(),
            m.valid_runs()
        );
    }
    let _ = writeln!(md);
}

fn detail_table(md: &mut String, r: &Report, i: usize, spec: &AtLoadSpec) {
    let _ = writeln!(
        md,
        "### {}\n\n| Offered, {unit} | Server | achieved, {unit} | p50, µs | p99 | p99.9 | max | send lag p99, µs | send lag max, µs | valid runs |\n|--:|---|--:|--:|--:|--:|--:|--:|--:|---|",
        spec.id,
        unit = unit(spec)
    );
    for (j, rate) in r.rates[i].iter().enumerate() {
        let mut kinds = spec.gearboxes.clone();
        kinds.extend(GEARMANDS);
        for k in kinds {
            let c = Cell::of(r.runs.get(&(i, j, k)), spec.rate_key);
            let _ = writeln!(
                md,
                "| {} ({:.0}%) | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                fmt_num(*rate, 0),
                r.shares[j],
                label_of(k),
                c.achieved.map_or("—".into(), |v| fmt_num(v, 0)),
                us(c.p50),
                us(c.p99),
                us(c.p999),
                us(c.max),
                us(c.lag_p99),
                us(c.lag_max),
                c.valid_runs()
            );
        }
    }
    let _ = writeln!(md);
}

fn every_run(md: &mut String, r: &Report) {
    let _ = writeln!(
        md,
        "\n<details><summary>Every open-loop run</summary>\n\n| Scenario | Offered | Server | Run | achieved | p50, µs | p99 | p99.9 | max | send lag p99 | send lag max | valid |\n|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|---|"
    );
    for ((i, j, k), list) in r.runs {
        let spec = &r.specs[*i];
        for (n, v) in list.iter().enumerate() {
            let f = |key: &str| v["figures"][key].as_f64();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                spec.id,
                fmt_num(r.rates[*i][*j], 0),
                label_of(*k),
                n + 1,
                f(spec.rate_key).map_or("—".into(), |x| fmt_num(x, 0)),
                us(f("p50_us")),
                us(f("p99_us")),
                us(f("p999_us")),
                us(f("max_us")),
                us(f("send_lag_p99_us")),
                us(f("send_lag_max_us")),
                if f("valid") == Some(1.0) { "yes" } else { "no" }
            );
        }
    }
    let _ = writeln!(md, "\n</details>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(valid: bool, p99: f64) -> Value {
        json!({"figures": {"valid": if valid { 1.0 } else { 0.0 }, "p50_us": 10.0, "p99_us": p99,
                "p999_us": 2.0 * p99, "max_us": 3.0 * p99, "jobs_per_s": 1000.0}})
    }

    #[test]
    fn cells_take_medians_and_count_valid_runs() {
        let runs = vec![run(true, 100.0), run(false, 300.0), run(true, 200.0)];
        let c = Cell::of(Some(&runs), "jobs_per_s");
        assert_eq!(c.runs, 3);
        assert_eq!(c.valid, 2);
        assert_eq!(c.p99, Some(200.0));
        assert_eq!(c.max, Some(600.0));
        assert_eq!(c.valid_runs(), "2/3");
        assert_eq!(Cell::of(None, "jobs_per_s").runs, 0);
    }

    #[test]
    fn better_gearmand_prefers_valid_runs_then_lower_p99() {
        let cell = |valid, p99| Cell {
            runs: 3,
            valid,
            p99: Some(p99),
            ..Cell::default()
        };
        assert_eq!(
            better_gearmand(&cell(3, 100.0), &cell(3, 200.0)),
            Kind::GearmandT1
        );
        assert_eq!(
            better_gearmand(&cell(3, 300.0), &cell(3, 200.0)),
            Kind::Gearmand
        );
        assert_eq!(
            better_gearmand(&cell(2, 100.0), &cell(3, 200.0)),
            Kind::Gearmand
        );
        assert_eq!(
            better_gearmand(&Cell::default(), &cell(0, 200.0)),
            Kind::Gearmand
        );
        assert_eq!(
            better_gearmand(&cell(1, 100.0), &Cell::default()),
            Kind::GearmandT1
        );
    }

    #[test]
    fn best_closed_takes_the_higher_median() {
        let mut cal = Calibration::new();
        cal.insert((0, Kind::GearmandT1), vec![100.0, 300.0, 200.0]);
        cal.insert((0, Kind::Gearmand), vec![250.0, 350.0]);
        assert_eq!(best_closed(&cal, 0), Some((300.0, Kind::Gearmand)));
        assert_eq!(best_closed(&cal, 1), None);
    }

    #[test]
    fn only_the_not_valid_anomaly_is_not_a_problem() {
        let j = |ok: bool, anomalies: Vec<&str>| json!({"ok": ok, "error": null, "anomalies": anomalies});
        assert!(only_not_valid(&j(true, vec!["not valid: the generator …"])));
        assert!(!only_not_valid(&j(true, vec![])));
        assert!(!only_not_valid(&j(false, vec!["not valid: x"])));
        assert!(!only_not_valid(&j(
            true,
            vec!["not valid: x", "admin status after submitting: 3 jobs"]
        )));
    }

    #[test]
    fn formats() {
        assert_eq!(us(Some(12.34)), "12.3");
        assert_eq!(us(Some(1234.6)), "1,235");
        assert_eq!(us(None), "—");
        assert_eq!(ratio(Some(1.0), Some(4.0)), "0.25");
        assert_eq!(ratio(Some(1.0), Some(0.0)), "—");
    }
}
