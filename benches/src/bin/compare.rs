//! compare: runs every loadgen scenario against gearboxd and gearmand and writes
//! one Markdown table of medians and ratios.
//!
//! Started by the `benches/compare` script, which builds the binaries first.
//! Each run gets a freshly started server (so memory figures start from an
//! empty server and no run inherits another's queue); the two servers
//! alternate, and which goes first alternates between runs.

use clap::Parser;
use gearbox_benches::compare_specs::{defaults_specs, specs, Better, Kind, Program, Spec};
use gearbox_benches::harness::{
    command_output, fmt_num, free_port, machine_facts, median, outside_load_summary,
    run_log_section, Meter, RunLog,
};
use gearbox_benches::runner::{
    binaries_present, gearmand_command, gearmand_default_command, log_to, scratch_dir, terminate,
    wait_ready, Finish, LoadOutcome, LoadRun,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[path = "compare/at_load.rs"]
mod at_load;

#[derive(Parser, Debug)]
#[command(name = "compare", about = "Benchmark gearboxd against gearmand")]
struct Args {
    /// Small job counts and one run per scenario, for a smoke test (about a minute).
    #[arg(long)]
    quick: bool,
    /// Runs per scenario and server [default: 3, or 1 with --quick].
    #[arg(long)]
    runs: Option<usize>,
    /// Where to write the Markdown report [default: benches/RESULTS.md; none with --quick].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Directory holding the release binaries gearboxd and loadgen.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// The gearmand to compare with.
    #[arg(long, default_value = "gearmand")]
    gearmand: String,
    /// Only run scenarios whose id contains one of these words (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Do not start a uuidd for the libgearman scenarios (submit-bg-libgearman
    /// and the drains' fill). libuuid then tries to
    /// connect to /run/uuidd/request for every uuid libgearman generates (a
    /// socket, a failed connect and a close per job), and the client, not the
    /// server, limits the rate. A uuidd already running is used either way.
    #[arg(long)]
    no_uuidd: bool,
    /// Both servers as a site starts them, with no flags beyond where they
    /// listen and log: gearmand with its 4 threads, both in memory (their
    /// default). Runs the submit scenarios only and writes
    /// benches/RESULTS-defaults.md.
    #[arg(long)]
    defaults: bool,
    /// Keep the scratch directory (server logs, raw JSON) even on success.
    #[arg(long)]
    keep: bool,
    /// Latency at fixed offered load: measure gearmand's best closed-loop
    /// rate (-t 1 or -t 4), then run loadgen --rate at 25, 50, 75 and 90 %
    /// of it against gearmand -t 1, -t 4 and gearboxd; writes
    /// benches/RESULTS-at-load.md.
    #[arg(long, conflicts_with = "defaults")]
    at_load: bool,
    /// --at-load: seconds of each open-loop run [default: 3, or 1 with --quick].
    #[arg(long, value_name = "SECS")]
    rate_secs: Option<f64>,
    /// --at-load: the shares of gearmand's best rate to run at, in percent.
    #[arg(long, value_delimiter = ',', default_value = "25,50,75,90")]
    shares: Vec<f64>,
    /// Pin the load generator to CPU 1 (`taskset -c 1`); the servers stay
    /// unpinned.
    #[arg(long)]
    pin: bool,
}

/// Where libuuid (util-linux) asks uuidd for time-based uuids.
const UUIDD_SOCKET: &str = "/run/uuidd/request";

fn uuidd_running() -> bool {
    std::os::unix::net::UnixStream::connect(UUIDD_SOCKET).is_ok()
}

/// A uuidd this program started for one libgearman run (so its CPU time is
/// reaped, and counted as the run's, before the run's meter stops); stopped on
/// drop.
struct Uuidd {
    child: Child,
}

impl Uuidd {
    /// `Ok(None)` when a uuidd (the system's) already answers.
    fn start(dir: &Path) -> Result<Option<Uuidd>, String> {
        if uuidd_running() {
            return Ok(None);
        }
        let bin = ["/usr/sbin/uuidd", "/sbin/uuidd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("uuidd");
        std::fs::create_dir_all("/run/uuidd")
            .map_err(|e| format!("cannot create /run/uuidd for uuidd: {e}"))?;
        let out = File::create(dir.join("uuidd.out")).map_err(|e| e.to_string())?;
        // -F -P: stay a foreground child without a pid file; -T: exit after
        // 600 s without requests should it ever outlive us.
        let child = Command::new(bin)
            .args(["-F", "-P", "-q", "-T", "600", "-s", UUIDD_SOCKET])
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("cannot start {bin} (Debian: uuid-runtime): {e}"))?;
        let mut u = Uuidd { child };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !uuidd_running() {
            if let Ok(Some(status)) = u.child.try_wait() {
                return Err(format!("uuidd exited at startup ({status})"));
            }
            if Instant::now() > deadline {
                return Err(format!("uuidd not answering on {UUIDD_SOCKET} after 5 s"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Some(u))
    }
}

impl Drop for Uuidd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: plain kill(2) of our own child, which has not been reaped.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A server this program started; stopped (SIGTERM, then SIGKILL) on drop.
struct Server {
    kind: Kind,
    child: Child,
    tcp: String,
    unix: Option<PathBuf>,
    log: PathBuf,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn start(kind: Kind, args: &Args, dir: &Path, seq: usize) -> Result<Server, String> {
        let port = free_port()?;
        let log = dir.join(format!("{}-{seq}.log", kind.name()));
        let mut cmd;
        let mut unix = None;
        match kind {
            Kind::Gearmand if args.defaults => {
                cmd = gearmand_default_command(
                    &args.gearmand,
                    port,
                    &log,
                    &dir.join(format!("gearmand-{seq}.pid")),
                    &dir.join(format!("gearmand-{seq}.out")),
                )?;
            }
            Kind::Gearmand | Kind::GearmandT1 => {
                cmd = gearmand_command(
                    &args.gearmand,
                    kind.gearmand_threads().unwrap_or(4),
                    port,
                    &log,
                    &dir.join(format!("gearmand-{seq}.pid")),
                    &dir.join(format!("gearmand-{seq}.out")),
                )?;
            }
            Kind::Gearbox | Kind::GearboxSqlite => {
                let sock = dir.join(format!("gearbox-{seq}.sock"));
                // Absolute: the SQLite store runs it in a directory of its own.
                let bin = std::path::absolute(args.bin_dir.join("gearboxd"))
                    .map_err(|e| format!("cannot resolve {}: {e}", args.bin_dir.display()))?;
                cmd = Command::new(bin);
                cmd.arg("-p")
                    .arg(port.to_string())
                    .args(["-L", "127.0.0.1", "--unix"])
                    .arg(&sock)
                    .args(["-l", "stderr"]);
                if kind == Kind::GearboxSqlite {
                    // The durable store: ./gearboxd-queue.sqlite3, new each run.
                    let home = dir.join(format!("gearbox-{seq}"));
                    std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
                    cmd.current_dir(home).args(["-q", "libsqlite3"]);
                } else if !args.defaults {
                    // In memory, as gearmand runs here (and gearboxd's default).
                    cmd.args(["-q", "builtin"]);
                }
                log_to(&mut cmd, &log)?;
                unix = Some(sock);
            }
        }
        cmd.stdin(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", kind.name()))?;
        let mut server = Server {
            kind,
            child,
            tcp: format!("127.0.0.1:{port}"),
            unix,
            log,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        wait_ready(
            &mut self.child,
            self.kind.name(),
            &self.log,
            &self.tcp,
            self.unix.as_deref(),
            Duration::from_millis(20),
        )
    }

    fn target(&self, unix: bool) -> String {
        match (&self.unix, unix) {
            (Some(p), true) => format!("unix:{}", p.display()),
            _ => self.tcp.clone(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let who = format!("compare: {}", self.kind.name());
        terminate(
            &mut self.child,
            Duration::from_secs(10),
            Duration::from_millis(20),
            &who,
        );
        if let Some(sock) = &self.unix {
            let _ = std::fs::remove_file(sock);
        }
    }
}

/// Runs the scenario's load program once against `server`.
fn run_loadgen(args: &Args, spec: &Spec, server: &Server, dir: &Path, label: &str) -> LoadOutcome {
    let target = server.target(spec.gearbox_unix && server.kind == Kind::Gearbox);
    run_program(
        args,
        spec.program,
        &spec.args,
        &target,
        server,
        dir,
        label,
        spec.deadline_s,
    )
}

/// Runs a load program once against `server`; with `--pin`, under
/// `taskset -c 1`.
#[allow(clippy::too_many_arguments)]
fn run_program(
    args: &Args,
    program: Program,
    load_args: &[String],
    target: &str,
    server: &Server,
    dir: &Path,
    label: &str,
    deadline_s: u64,
) -> LoadOutcome {
    let bin = args.bin_dir.join(program.bin());
    let (exe, name, all_args) = if args.pin {
        let mut a: Vec<String> = vec!["-c".into(), PIN_CPU.into(), bin.display().to_string()];
        a.extend(load_args.iter().cloned());
        (
            PathBuf::from("taskset"),
            format!("taskset -c {PIN_CPU} {}", program.bin()),
            a,
        )
    } else {
        (bin, program.bin().to_string(), load_args.to_vec())
    };
    LoadRun {
        program: &exe,
        name: &name,
        args: &all_args,
        target,
        server_pid: server.pid(),
        server_log: &server.log,
        dir,
        label,
        deadline_s,
        poll: Duration::from_millis(50),
    }
    .run()
}

/// The CPU `--pin` runs the load program on.
const PIN_CPU: &str = "1";

type Runs = BTreeMap<(usize, Kind), Vec<Value>>;

fn figure(j: &Value, key: &str) -> Option<f64> {
    j["figures"][key].as_f64()
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    specs: &[Spec],
    runs: &Runs,
    problems: &[String],
    facts: &[(&str, String)],
    wall: Duration,
    n_runs: usize,
    log: &[RunLog],
) -> String {
    let mut md = String::new();
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let title = match args.defaults {
        true => "# gearbox vs gearmand as they start with no flags: submits\n",
        false => "# gearbox vs gearmand: load benchmarks\n",
    };
    let _ = writeln!(md, "{title}");
    let _ = writeln!(
        md,
        "Produced by `benches/compare{}{}` on {date}; wall time {}m{:02}s. Each figure is the median of {n_runs} run(s) per server; see benches/README.md for what each scenario measures.\n",
        if args.defaults { " --defaults" } else { "" },
        if args.quick { " --quick" } else { "" },
        wall.as_secs() / 60,
        wall.as_secs() % 60
    );
    let _ = writeln!(md, "## Machine\n\n| | |\n|---|---|");
    for (k, v) in facts {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    if args.defaults {
        let _ = writeln!(
            md,
            "\n## Setup\n\n\
             - gearmand: `gearmand -p PORT -L 127.0.0.1 -l LOG -P PIDFILE`: its defaults, 4 threads and the in-memory queue.\n\
             - gearboxd: `target/release/gearboxd -p PORT -L 127.0.0.1 --unix SOCK -l stderr`: its defaults, the in-memory queue as gearmand's (`-q builtin`) and 2 runtime threads here (4 capped at the CPU count). Its durable store, `-q libsqlite3`, is measured by `benches/configs` (one submit at a time) and `benches/durable` (throughput).\n\
             - Every run starts a fresh server on a free loopback port; the servers take turns, and which goes first rotates between runs. The load generator shares the {} cores with the server.\n\
             - Latency is from the send of a submit to its JOB_CREATED; for libgearman, of a batch (100 × add_task_background, then run_tasks until every JOB_CREATED is in).\n",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
    } else {
        let _ = writeln!(
        md,
        "\n## Setup\n\n\
         - gearmand: `gearmand -t 4 --hashtable-buckets 1000003 -p PORT -L 127.0.0.1 -l LOG -P PIDFILE` (foreground child). The targets are set against it.\n\
         - gearmand -t 1: the same with `-t 1`, gearmand's best setting for latency, in the scenarios of the second table only.\n\
         - gearboxd: `target/release/gearboxd -p PORT -L 127.0.0.1 --unix SOCK -l stderr -q builtin` (release build, default 4 threads).\n\
         - Every run starts a fresh server on a free loopback port and stops it afterwards; the servers take turns, and which goes first rotates between runs.\n\
         - The load generator (`target/release/loadgen`, 2 threads) runs on the same {} cores as the server, so figures are for server and client sharing the machine.\n\
         - submit-bg-libgearman runs `target/release/libgearman_submit` instead (benches/c/libgearman_submit.c, built with `cc -O2 ... -lgearman -lpthread` against the system libgearman): real libgearman client code, whose own CPU cost per job (uuid generation, task bookkeeping) is reported as an info row; it also runs on the same cores. libgearman makes each job's unique with libuuid's uuid_generate_time_safe, which asks uuidd; compare starts a uuidd for each of these runs (see the machine facts), because without one libuuid tries to connect to /run/uuidd/request for every job and that client cost, not the server, sets the rate.\n\
         - drain-libgearman, drain-1m-libgearman and roundtrip-libgearman run `target/release/libgearman_worker` (benches/c/libgearman_worker.c, built the same way): real libgearman workers, one `gearman_worker_st` per thread looping `gearman_worker_work` (GRAB_JOB_ALL, one packet per write, PRE_SLEEP after every NO_JOB), as PHP's GearmanWorker and the `gearman -w` CLI run them. The drains first queue their backlog through libgearman (background submits batched as in submit-bg-libgearman, with uuidd as there; the fill rate is a row of its own), then measure from the workers' start to the last WORK_COMPLETE; server CPU and the workers' own CPU (getrusage, an info row) cover the drain only. The round trip runs `gearman_client_do`, one job at a time, in 4 client threads against 4 echo workers, with exact latency percentiles.\n\
         - Server RSS is VmRSS from /proc/PID/status; server CPU is utime+stime from /proc/PID/stat over the measured phase.\n\
         - gearbox/gearmand above 1 is better for gearbox where higher is better (rates) and worse where lower is better (latency, memory).\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    }
    let _ = writeln!(md, "{}", outside_load_summary(log));
    let _ = writeln!(
        md,
        "## Results\n\n| Scenario | Figure | Better | gearbox | gearmand | gearbox/gearmand |\n|---|---|---|--:|--:|--:|"
    );
    results_rows(&mut md, specs, runs, Kind::Gearmand);
    if specs.iter().any(|s| s.vs_gearmand_t1) {
        let _ = writeln!(
            md,
            "\n## Latency scenarios against gearmand `-t 1`\n\n\
             gearmand's best setting for latency (the issue's own measurements use it for these rows); \
             the targets are set against `-t 4` above.\n\n\
             | Scenario | Figure | Better | gearbox | gearmand -t 1 | gearbox/gearmand -t 1 |\n|---|---|---|--:|--:|--:|"
        );
        results_rows(&mut md, specs, runs, Kind::GearmandT1);
    }
    // RSS series after the drain, median per second.
    let mut series_md = String::new();
    for (i, spec) in specs.iter().enumerate() {
        for kind in [Kind::Gearbox, Kind::Gearmand] {
            let Some(list) = runs.get(&(i, kind)) else {
                continue;
            };
            let all: Vec<Vec<f64>> = list
                .iter()
                .filter_map(|j| j["series"]["rss_after_drain_kib"].as_array())
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .collect();
            if all.is_empty() {
                continue;
            }
            let len = all.iter().map(Vec::len).min().unwrap_or(0);
            let cells: Vec<String> = (0..len)
                .map(|s| {
                    let mut v: Vec<f64> = all.iter().map(|x| x[s]).collect();
                    median(&mut v).map_or("—".into(), |m| fmt_num(m / 1024.0, 1))
                })
                .collect();
            if series_md.is_empty() {
                let heads: Vec<String> = (0..len).map(|s| format!("{s} s")).collect();
                let _ = writeln!(
                    series_md,
                    "\n## RSS after the drain (MiB, sampled every second, median per sample)\n\n| Scenario | Server | {} |\n|---|---|{}",
                    heads.join(" | "),
                    "--:|".repeat(len)
                );
            }
            let _ = writeln!(
                series_md,
                "| {} | {} | {} |",
                spec.id,
                kind.name(),
                cells.join(" | ")
            );
        }
    }
    md.push_str(&series_md);
    md.push_str(&fill_dips(specs, runs));
    let _ = writeln!(md, "\n## Scenarios\n");
    for spec in specs {
        let _ = writeln!(
            md,
            "- **{}**: {}. `{} {}`{}",
            spec.id,
            spec.title,
            spec.program.bin(),
            spec.args.join(" "),
            if spec.gearbox_unix {
                " (gearbox over `--server unix:SOCK`, gearmand over TCP)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(md, "\n## Problems observed\n");
    if problems.is_empty() {
        let _ = writeln!(
            md,
            "None: every run finished, and every count checked (replies, jobs executed, admin `status` before and after draining) was as expected."
        );
    } else {
        for p in problems {
            let _ = writeln!(md, "- {p}");
        }
    }
    let _ = writeln!(
        md,
        "\n<details><summary>Every run's value</summary>\n\n| Scenario | Figure | gearbox runs | gearmand runs | gearmand -t 1 runs |\n|---|---|---|---|---|"
    );
    for (i, spec) in specs.iter().enumerate() {
        for r in &spec.rows {
            let list = |kind| {
                runs.get(&(i, kind))
                    .map(|v| {
                        v.iter()
                            .map(|j| {
                                figure(j, r.key)
                                    .map_or("—".into(), |x| fmt_num(x * r.scale, r.decimals))
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                spec.id,
                r.label,
                list(Kind::Gearbox),
                list(Kind::Gearmand),
                list(Kind::GearmandT1)
            );
        }
    }
    let _ = writeln!(md, "\n</details>");
    run_log_section(&mut md, log);
    md
}

/// One table row per figure: gearbox's median, `other`'s, and their ratio;
/// only the scenarios run against `other`.
fn results_rows(md: &mut String, specs: &[Spec], runs: &Runs, other: Kind) {
    for (i, spec) in specs.iter().enumerate() {
        if other == Kind::GearmandT1 && !spec.vs_gearmand_t1 {
            continue;
        }
        for r in &spec.rows {
            let med = |kind| {
                let mut vals: Vec<f64> = runs
                    .get(&(i, kind))
                    .map(|v| v.iter().filter_map(|j| figure(j, r.key)).collect())
                    .unwrap_or_default();
                median(&mut vals).map(|m| m * r.scale)
            };
            let (gb, gm) = (med(Kind::Gearbox), med(other));
            let show = |v: Option<f64>| v.map_or("—".to_string(), |v| fmt_num(v, r.decimals));
            let ratio = match (gb, gm) {
                (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
                _ => "—".to_string(),
            };
            let better = match r.better {
                Better::Higher => "higher",
                Better::Lower => "lower",
                Better::Info => "",
            };
            let _ = writeln!(
                md,
                "| {} | {} | {better} | {} | {} | {ratio} |",
                spec.id,
                r.label,
                show(gb),
                show(gm)
            );
        }
    }
}

/// Flags 10% slices of a memory fill whose median rate is under half the
/// median of all ten slices for that server: a sign of stalls as the queue grows.
fn fill_dips(specs: &[Spec], runs: &Runs) -> String {
    let mut notes = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        for kind in [Kind::Gearbox, Kind::Gearmand] {
            let Some(list) = runs.get(&(i, kind)) else {
                continue;
            };
            let slices: Vec<Option<f64>> = (1..=10)
                .map(|s| {
                    let key = format!("fill_slice_{s:02}_jobs_per_s");
                    let mut v: Vec<f64> = list.iter().filter_map(|j| figure(j, &key)).collect();
                    median(&mut v)
                })
                .collect();
            let mut known: Vec<f64> = slices.iter().flatten().copied().collect();
            if known.len() < 10 {
                continue;
            }
            let typical = median(&mut known).unwrap_or(0.0);
            for (s, v) in slices.iter().enumerate() {
                let v = v.unwrap_or(0.0);
                if v < typical / 2.0 {
                    let per_run: Vec<String> = list
                        .iter()
                        .filter_map(|j| figure(j, &format!("fill_slice_{:02}_jobs_per_s", s + 1)))
                        .map(|x| fmt_num(x, 0))
                        .collect();
                    notes.push(format!(
                        "- {} / {}: the {}–{}% slice ran at {} jobs/s, {:.2}× the median slice ({}); runs: {}.",
                        spec.id,
                        kind.name(),
                        s * 10,
                        s * 10 + 10,
                        fmt_num(v, 0),
                        v / typical,
                        fmt_num(typical, 0),
                        per_run.join(", ")
                    ));
                }
            }
        }
    }
    if notes.is_empty() {
        "\n## Fill-rate dips\n\nNo 10% slice of a memory fill ran at under half its server's median slice rate.\n".to_string()
    } else {
        format!(
            "\n## Fill-rate dips\n\nSlices of a memory fill whose median rate is under half the median of that server's ten slices:\n\n{}\n",
            notes.join("\n")
        )
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.at_load {
        return at_load::run(&args);
    }
    let started = Instant::now();
    let n_runs = args.runs.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let mut problems = Vec::new();
    let all = match args.defaults {
        true => defaults_specs(args.quick),
        false => specs(args.quick),
    };
    let specs: Vec<Spec> = all
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| s.id.contains(o.as_str())))
        .filter(|s| {
            // The C program needs libgearman-dev to build; without it the
            // scenario is skipped and the report says why.
            let bin = args.bin_dir.join(s.program.bin());
            let present = s.program == Program::Loadgen || bin.exists();
            if !present {
                let p = format!(
                    "{}: skipped, {} not found (benches/compare builds it from {} with `cc ... -lgearman`; Debian needs libgearman-dev)",
                    s.id,
                    bin.display(),
                    s.program.c_source().unwrap_or("?")
                );
                eprintln!("compare: {p}");
                problems.push(p);
            }
            present
        })
        .collect();
    if !binaries_present("compare", &args.bin_dir) {
        return ExitCode::FAILURE;
    }
    let Some(dir) = scratch_dir("compare") else {
        return ExitCode::FAILURE;
    };
    let mut facts = machine_facts(&args.gearmand, &args.bin_dir);
    facts.push(("load generator", at_load::pin_fact(&args)));
    let libgearman = specs.iter().any(|s| s.program != Program::Loadgen);
    if libgearman {
        let libuuid = command_output("dpkg-query", &["-W", "-f", "${Version}", "libuuid1"]);
        facts.push((
            "uuidd (for libgearman's uuids)",
            if uuidd_running() {
                format!("already running on {UUIDD_SOCKET}; used by the libgearman scenarios")
            } else if args.no_uuidd {
                format!("none (--no-uuidd): libuuid {libuuid} tries {UUIDD_SOCKET} for every uuid")
            } else {
                format!("started by compare for each libgearman run (`uuidd -F -P -q -T 600 -s {UUIDD_SOCKET}`), libuuid {libuuid}")
            },
        ));
    }
    eprintln!(
        "compare: {} scenarios × {n_runs} run(s) × 2 servers (3 for the latency scenarios); scratch dir {}",
        specs.len(),
        dir.display()
    );
    let mut runs: Runs = BTreeMap::new();
    let mut raw = String::new();
    let mut seq = 0;
    let mut log = Vec::new();
    // Run-major order: the runs of one scenario are spread over the whole
    // comparison, so a burst of outside load spoils at most one of them.
    for run in 0..n_runs {
        for (i, spec) in specs.iter().enumerate() {
            // Which server goes first rotates from run to run.
            let mut order = vec![Kind::Gearbox, Kind::Gearmand];
            if spec.vs_gearmand_t1 {
                order.push(Kind::GearmandT1);
            }
            let shift = run % order.len();
            order.rotate_left(shift);
            for kind in order {
                seq += 1;
                let label = format!("{}-{}-run{}", spec.id, kind.name(), run + 1);
                eprintln!("[{:>4.0}s] {label}", started.elapsed().as_secs_f64());
                let meter = Meter::start();
                let start_s = started.elapsed().as_secs_f64();
                // libgearman_worker's drains queue their backlog with
                // libgearman's uuids too.
                let uuidd = if spec.program != Program::Loadgen && !args.no_uuidd {
                    match Uuidd::start(&dir) {
                        Ok(u) => u,
                        Err(e) => {
                            let p = format!("{label}: {e}; running without uuidd (client-bound)");
                            eprintln!("    {p}");
                            problems.push(p);
                            None
                        }
                    }
                } else {
                    None
                };
                let server = match Server::start(kind, &args, &dir, seq) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("    {e}");
                        problems.push(format!("{label}: {e}"));
                        continue;
                    }
                };
                let outcome = run_loadgen(&args, spec, &server, &dir, &label);
                drop(server);
                drop(uuidd);
                log.push(meter.log(label.clone(), start_s, outcome.json.is_some()));
                if let Some(j) = outcome.record(&mut problems, &mut raw) {
                    runs.entry((i, kind)).or_default().push(j);
                }
            }
        }
    }
    let _ = std::fs::write(dir.join("runs.jsonl"), &raw);
    let md = report(
        &args,
        &specs,
        &runs,
        &problems,
        &facts,
        started.elapsed(),
        n_runs,
        &log,
    );
    Finish {
        program: "compare",
        md: &md,
        out: args.out.clone(),
        default_out: match args.defaults {
            true => "benches/RESULTS-defaults.md",
            false => "benches/RESULTS.md",
        },
        quick: args.quick,
        keep: args.keep,
        started,
        problems: problems.len(),
        dir: &dir,
    }
    .run()
}
