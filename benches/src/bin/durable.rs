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
use gearbox_benches::conn::{admin_status_within, Conn, Target};
use gearbox_benches::harness::{
    command_output, fmt_num, free_port, machine_facts, median, outside_load_summary, tail, Meter,
    RunLog,
};
use gearbox_benches::procstat;
use gearbox_proto::PacketType;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "durable",
    about = "Background submit throughput and restart replay: gearboxd SQLite vs in-memory vs gearmand libsqlite3"
)]
struct Args {
    /// Small counts, one run, a 100,000-job replay: a smoke test (about two minutes).
    #[arg(long)]
    quick: bool,
    /// Runs per scenario and server, and restarts per server in the replay part [default: 3, or 1 with --quick].
    #[arg(long)]
    runs: Option<usize>,
    /// Where to write the Markdown report [default: benches/RESULTS-durable.md; none with --quick].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Directory holding the release binaries gearboxd and loadgen.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// The gearmand to compare with.
    #[arg(long, default_value = "gearmand")]
    gearmand: String,
    /// Seconds each submit run may send for [default: 3, or 1 with --quick].
    #[arg(long)]
    duration: Option<f64>,
    /// Jobs queued for the replay part [default: 1000000, or 100000 with --quick].
    #[arg(long)]
    replay_jobs: Option<u64>,
    /// Longest wait for a restarted server to show its whole queue, in seconds.
    #[arg(long, default_value_t = 120)]
    replay_cap: u64,
    /// Only the parts whose id contains one of these words (comma-separated):
    /// scenario ids such as `pipelined`, `w1x32-uuid`, or `replay`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Keep the scratch directory (server logs, raw JSON) even on success.
    #[arg(long)]
    keep: bool,
}

impl Args {
    fn wants(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| id.contains(o.as_str()))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    /// gearboxd -q builtin
    Memory,
    /// gearboxd -q libsqlite3 --libsqlite3-sync full (the default)
    SqliteFull,
    /// gearboxd -q libsqlite3 --libsqlite3-sync normal
    SqliteNormal,
    /// gearmand -q libsqlite3
    Gearmand,
}

const KINDS: [Kind; 4] = [
    Kind::Memory,
    Kind::SqliteFull,
    Kind::SqliteNormal,
    Kind::Gearmand,
];

impl Kind {
    fn id(self) -> &'static str {
        match self {
            Kind::Memory => "gearbox-memory",
            Kind::SqliteFull => "gearbox-sqlite-full",
            Kind::SqliteNormal => "gearbox-sqlite-normal",
            Kind::Gearmand => "gearmand-sqlite",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::Memory => "gearbox in-memory",
            Kind::SqliteFull => "gearbox SQLite full",
            Kind::SqliteNormal => "gearbox SQLite normal",
            Kind::Gearmand => "gearmand libsqlite3",
        }
    }

    fn command(self) -> &'static str {
        match self {
            Kind::Memory => "gearboxd -p PORT -L 127.0.0.1 -l stderr -q builtin",
            Kind::SqliteFull => {
                "gearboxd -p PORT -L 127.0.0.1 -l stderr -q libsqlite3 --libsqlite3-db DIR/queue.sqlite3 --libsqlite3-sync full"
            }
            Kind::SqliteNormal => {
                "gearboxd -p PORT -L 127.0.0.1 -l stderr -q libsqlite3 --libsqlite3-db DIR/queue.sqlite3 --libsqlite3-sync normal"
            }
            Kind::Gearmand => {
                "gearmand -t 4 --hashtable-buckets 1000003 -p PORT -L 127.0.0.1 -l LOG -P PIDFILE -q libsqlite3 --libsqlite3-db DIR/queue.sqlite3"
            }
        }
    }
}

/// One submit scenario: the loadgen options it runs with.
struct Scenario {
    id: &'static str,
    title: String,
    args: Vec<String>,
}

fn scenarios(quick: bool, duration: f64) -> Vec<Scenario> {
    let n = |full: u64, small: u64| if quick { small } else { full };
    let mut out = Vec::new();
    let shapes = [
        (
            "pipelined",
            "(a) 4 conns × window 100",
            4,
            100,
            n(300_000, 30_000),
        ),
        ("w1x4", "(b) 4 conns × window 1", 4, 1, n(60_000, 6_000)),
        ("w1x32", "(c) 32 conns × window 1", 32, 1, n(90_000, 9_000)),
    ];
    for (shape, label, conns, window, jobs) in shapes {
        for (unique, what) in [("uuid", "36-byte uuid uniques"), ("none", "empty uniques")] {
            let id: &'static str = match (shape, unique) {
                ("pipelined", "uuid") => "pipelined-uuid",
                ("pipelined", _) => "pipelined-empty",
                ("w1x4", "uuid") => "w1x4-uuid",
                ("w1x4", _) => "w1x4-empty",
                ("w1x32", "uuid") => "w1x32-uuid",
                _ => "w1x32-empty",
            };
            out.push(Scenario {
                id,
                title: format!(
                    "{label}, {what}, 100 B, up to {} jobs or {duration} s",
                    fmt_num(jobs as f64, 0)
                ),
                args: format!(
                    "--scenario submit-bg --connections {conns} --window {window} --jobs {jobs} \
                     --duration {duration} --payload 100 --unique {unique} --latency --no-cleanup"
                )
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            });
        }
    }
    out
}

/// A server this program started, with a directory of its own; stopped
/// (SIGTERM, then SIGKILL) on drop.
struct Server {
    kind: Kind,
    child: Child,
    tcp: String,
    log: PathBuf,
    started: Instant,
}

impl Server {
    /// Starts `kind` in `dir`, on the SQLite file `db` (unused by the
    /// in-memory server). `info` raises gearboxd's log level to INFO, which
    /// logs how long a replay took.
    fn spawn(kind: Kind, args: &Args, dir: &Path, db: &Path, info: bool) -> Result<Server, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let port = free_port()?;
        let log = dir.join("server.log");
        let mut cmd;
        match kind {
            Kind::Gearmand => {
                cmd = Command::new(&args.gearmand);
                cmd.args(["-t", "4", "--hashtable-buckets", "1000003", "-p"])
                    .arg(port.to_string())
                    .args(["-L", "127.0.0.1", "-l"])
                    .arg(&log)
                    .arg("-P")
                    .arg(dir.join("gearmand.pid"))
                    .args(["-q", "libsqlite3", "--libsqlite3-db"])
                    .arg(db);
                let out = File::create(dir.join("gearmand.out"))
                    .map_err(|e| format!("cannot create a log file in {}: {e}", dir.display()))?;
                cmd.stdout(out.try_clone().map_err(|e| e.to_string())?)
                    .stderr(out);
            }
            _ => {
                cmd = Command::new(args.bin_dir.join("gearboxd"));
                cmd.arg("-p")
                    .arg(port.to_string())
                    .args(["-L", "127.0.0.1", "-l", "stderr"]);
                if info {
                    cmd.args(["--verbose", "INFO"]);
                }
                match kind {
                    Kind::Memory => {
                        cmd.args(["-q", "builtin"]);
                    }
                    _ => {
                        cmd.args(["-q", "libsqlite3", "--libsqlite3-db"])
                            .arg(db)
                            .arg("--libsqlite3-sync")
                            .arg(if kind == Kind::SqliteNormal {
                                "normal"
                            } else {
                                "full"
                            });
                    }
                }
                let out = File::create(&log)
                    .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
                cmd.stdout(out.try_clone().map_err(|e| e.to_string())?)
                    .stderr(out);
            }
        }
        cmd.current_dir(dir).stdin(Stdio::null());
        let started = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", kind.id()))?;
        Ok(Server {
            kind,
            child,
            tcp: format!("127.0.0.1:{port}"),
            log,
            started,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the server's TCP port accepts a connection.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited during startup ({status}); log {}:\n{}",
                    self.kind.id(),
                    self.log.display(),
                    tail(&self.log)
                ));
            }
            if std::net::TcpStream::connect(&self.tcp).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} not accepting connections on {} after 15 s",
                    self.kind.id(),
                    self.tcp
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then SIGKILL after `grace`. Returns how long the server took
    /// to exit after SIGTERM, or `None` if it had to be killed (or was gone).
    fn terminate(&mut self, grace: Duration) -> Option<Duration> {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return None;
        }
        let pid = self.child.id() as libc::pid_t;
        let at = Instant::now();
        // SAFETY: plain kill(2) of our own child, which has not been reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        while at.elapsed() < grace {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Some(at.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        eprintln!(
            "durable: {} (pid {pid}) ignored SIGTERM for {} s; killing it",
            self.kind.id(),
            grace.as_secs()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(30));
    }
}

/// Removes a SQLite file with its -wal and -shm companions.
fn remove_db(db: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Size of a SQLite file with its -wal, in bytes.
fn db_bytes(db: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|suffix| {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(PathBuf::from(p)).ok().map(|m| m.len())
        })
        .sum()
}

struct LoadgenOutcome {
    json: Option<Value>,
    problems: Vec<String>,
}

/// Runs loadgen once against `server`; kills it if it outlives its own
/// deadline by 30 s.
fn run_loadgen(
    loadgen: &Path,
    extra: &[String],
    server: &Server,
    dir: &Path,
    label: &str,
    deadline_s: u64,
) -> LoadgenOutcome {
    let out_path = dir.join(format!("{label}.out"));
    let err_path = dir.join(format!("{label}.err"));
    let command_line = format!(
        "loadgen {} --server {} --server-pid {} --deadline {deadline_s} --json",
        extra.join(" "),
        server.tcp,
        server.pid()
    );
    let (Ok(out), Ok(err)) = (File::create(&out_path), File::create(&err_path)) else {
        return LoadgenOutcome {
            json: None,
            problems: vec![format!("cannot create output files in {}", dir.display())],
        };
    };
    let mut cmd = Command::new(loadgen);
    cmd.args(extra)
        .args(["--server", &server.tcp, "--server-pid"])
        .arg(server.pid().to_string())
        .args([
            "--deadline",
            &deadline_s.to_string(),
            "--json",
            "--label",
            label,
        ])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return LoadgenOutcome {
                json: None,
                problems: vec![format!("cannot start {}: {e}", loadgen.display())],
            }
        }
    };
    let limit = Instant::now() + Duration::from_secs(deadline_s + 30);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let mut stdout = String::new();
    let _ = File::open(&out_path).and_then(|mut f| f.read_to_string(&mut stdout));
    let json = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str::<Value>(l).ok());
    if let Some(human) = stdout.lines().find(|l| !l.starts_with('{')) {
        eprintln!("    {human}");
    }
    let mut problems = Vec::new();
    match status {
        None => problems.push(format!(
            "loadgen did not exit within {} s and was killed",
            deadline_s + 30
        )),
        Some(s) if !s.success() => problems.push(format!(
            "loadgen exited with {s}; stderr: {}",
            tail(&err_path)
        )),
        _ => {}
    }
    match &json {
        Some(j) => {
            if let Some(e) = j["error"].as_str() {
                problems.push(format!("error: {e}"));
            }
            for a in j["anomalies"].as_array().into_iter().flatten() {
                problems.push(format!("anomaly: {}", a.as_str().unwrap_or("?")));
            }
        }
        None => problems.push("no JSON line in loadgen's output".to_string()),
    }
    let failed = json.as_ref().is_none_or(|j| j["ok"] != Value::Bool(true));
    let problems = if problems.is_empty() {
        problems
    } else {
        vec![format!(
            "{label}: {} (server log: {}; command: `{command_line}`)",
            problems.join("; "),
            server.log.display()
        )]
    };
    LoadgenOutcome {
        json: if failed { None } else { json },
        problems,
    }
}

fn figure(j: &Value, key: &str) -> Option<f64> {
    j["figures"][key].as_f64()
}

/// Server CPU microseconds per job created in one run.
fn cpu_us_per_job(j: &Value) -> Option<f64> {
    let cpu = figure(j, "server_cpu_s")?;
    let jobs = figure(j, "jobs_created")?;
    (jobs > 0.0).then(|| cpu * 1e6 / jobs)
}

type Runs = BTreeMap<(usize, Kind), Vec<Value>>;

// ---------------------------------------------------------------------------
// Replay

/// One probe sent to a restarting server.
#[derive(Debug, Clone)]
struct Probe {
    /// Seconds after the server was started.
    sent_s: f64,
    /// Seconds until the reply; `None` if none came.
    latency_s: Option<f64>,
    /// Admin `status`: the count shown for the replayed function.
    count: Option<u64>,
    error: Option<String>,
}

impl Probe {
    fn answered_s(&self) -> Option<f64> {
        self.latency_s.map(|l| self.sent_s + l)
    }
}

/// What one restart on the full queue file showed.
#[derive(Debug, Default)]
struct ReplayRun {
    kind: Option<Kind>,
    /// Jobs of the replayed function in the file.
    expected: u64,
    /// The TCP connect first succeeded (the kernel accepts once the server listens).
    accept_s: Option<f64>,
    /// The first admin `status` reply arrived.
    first_status_s: Option<f64>,
    /// The first `status` reply showing every queued job arrived.
    full_s: Option<f64>,
    status: Vec<Probe>,
    submits: Vec<Probe>,
    rss_kib: Option<u64>,
    cpu_s: Option<f64>,
    /// gearboxd's own log: "replay finished ... seconds=X".
    log_replay_s: Option<f64>,
    stop_s: Option<f64>,
    note: Option<String>,
}

impl ReplayRun {
    /// Status replies that showed part of the queue: answered while replaying.
    fn status_during(&self) -> Vec<&Probe> {
        self.status
            .iter()
            .filter(|p| p.count.is_some_and(|c| c < self.expected))
            .collect()
    }

    /// Submit probes answered before the last `status` request that still
    /// got a partial count was sent: the server was certainly replaying
    /// when it answered them.
    fn submits_during(&self) -> Vec<&Probe> {
        let Some(last_partial) = self
            .status_during()
            .iter()
            .map(|p| p.sent_s)
            .reduce(f64::max)
        else {
            return Vec::new();
        };
        self.submits
            .iter()
            .filter(|p| p.answered_s().is_some_and(|a| a <= last_partial))
            .collect()
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.get(s.rfind(')')? + 1..)?;
            after.split_whitespace().next().map(|st| st != "Z")
        })
        .unwrap_or(false)
}

/// Watches a server that was just started on a full queue file: when it
/// accepts, when `status` first answers and when it shows `expected` jobs of
/// `function`; meanwhile a `status` every 100 ms and a SUBMIT_JOB_BG (of
/// another function) every 100 ms, each with its latency.
async fn watch_replay(
    target: Target,
    pid: u32,
    t0: Instant,
    function: String,
    expected: u64,
    cap: Duration,
) -> ReplayRun {
    let mut run = ReplayRun {
        expected,
        ..Default::default()
    };
    let end = t0 + cap;
    let since = move |t: Instant| t.duration_since(t0).as_secs_f64();
    let addr = match &target {
        Target::Tcp(a) => a.clone(),
        Target::Unix(_) => unreachable!("replay runs over TCP"),
    };
    // 1. The listener.
    loop {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            run.accept_s = Some(since(Instant::now()));
            break;
        }
        if Instant::now() > end || !alive(pid) {
            run.note = Some(if alive(pid) {
                format!("not accepting connections within {} s", cap.as_secs())
            } else {
                "exited before accepting connections".into()
            });
            return run;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // 2. Submits of a new job, one at a time, every 100 ms, until the queue is back.
    let done = Arc::new(AtomicBool::new(false));
    let submitter = {
        let done = done.clone();
        let target = target.clone();
        tokio::spawn(async move {
            let mut probes = Vec::new();
            let mut conn = match Conn::connect(&target).await {
                Ok(c) => c,
                Err(e) => {
                    probes.push(Probe {
                        sent_s: since(Instant::now()),
                        latency_s: None,
                        count: None,
                        error: Some(e.to_string()),
                    });
                    return probes;
                }
            };
            let function = format!("durable-probe-{}", std::process::id());
            let payload = vec![b'p'; 100];
            let mut replies = Vec::new();
            for i in 0u64.. {
                if done.load(Ordering::SeqCst) || Instant::now() > end {
                    break;
                }
                let unique = format!("probe-{:08x}-{i:027}", std::process::id());
                let sent = Instant::now();
                conn.push(
                    PacketType::SUBMIT_JOB_BG,
                    &[function.as_bytes(), unique.as_bytes(), &payload],
                );
                let reply = async {
                    conn.flush().await?;
                    replies.clear();
                    conn.read_some(&mut replies).await
                };
                let outcome = tokio::time::timeout_at(end.into(), reply).await;
                let mut probe = Probe {
                    sent_s: since(sent),
                    latency_s: None,
                    count: None,
                    error: None,
                };
                match outcome {
                    Ok(Ok(())) => match replies.first().map(|p| p.kind) {
                        Some(PacketType::JOB_CREATED) => {
                            probe.latency_s = Some(sent.elapsed().as_secs_f64())
                        }
                        other => probe.error = Some(format!("reply {other:?}")),
                    },
                    Ok(Err(e)) => probe.error = Some(e.to_string()),
                    Err(_) => probe.error = Some("no reply before the time limit".into()),
                }
                let failed = probe.error.is_some();
                probes.push(probe);
                if failed {
                    break;
                }
                tokio::time::sleep_until((sent + Duration::from_millis(100)).into()).await;
            }
            probes
        })
    };
    // 3. Admin status every 100 ms until it shows the whole queue.
    loop {
        let sent = Instant::now();
        if sent > end {
            break;
        }
        let limit = end
            .saturating_duration_since(sent)
            .max(Duration::from_millis(1));
        let mut probe = Probe {
            sent_s: since(sent),
            latency_s: None,
            count: None,
            error: None,
        };
        match admin_status_within(&target, &function, limit).await {
            Ok(status) => {
                let at = Instant::now();
                probe.latency_s = Some(at.duration_since(sent).as_secs_f64());
                let count = status.map_or(0, |s| s.total);
                probe.count = Some(count);
                run.first_status_s.get_or_insert(since(at));
                if count >= expected {
                    run.full_s = Some(since(at));
                    run.rss_kib = procstat::rss_kib(pid).ok();
                    run.cpu_s = procstat::cpu_seconds(pid).ok();
                    run.status.push(probe);
                    break;
                }
            }
            Err(e) => probe.error = Some(e.to_string()),
        }
        run.status.push(probe);
        if !alive(pid) {
            run.note = Some("the server exited during the replay".into());
            break;
        }
        tokio::time::sleep_until((sent + Duration::from_millis(100)).into()).await;
    }
    done.store(true, Ordering::SeqCst);
    run.submits = submitter.await.unwrap_or_default();
    if run.full_s.is_none() && run.note.is_none() {
        run.note = Some(format!(
            "did not finish: `status` never showed all {} jobs within {} s",
            fmt_num(expected as f64, 0),
            cap.as_secs()
        ));
    }
    run
}

/// "replay finished jobs=N seconds=X" in a gearboxd log.
fn logged_replay_seconds(log: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains("replay finished"))?;
    let v = line.split("seconds=").nth(1)?;
    v.split_whitespace().next()?.parse().ok()
}

/// The queue file of the replay part, filled once through gearboxd.
struct Filled {
    db: PathBuf,
    function: String,
    jobs: u64,
    json: Option<Value>,
    stop_s: Option<f64>,
    bytes: u64,
}

/// Queues `jobs` background jobs (100 B, uuid uniques) through gearboxd with
/// the SQLite store (sync full), then stops it with SIGTERM.
fn fill_replay_file(
    args: &Args,
    loadgen: &Path,
    dir: &Path,
    jobs: u64,
    problems: &mut Vec<String>,
    log: &mut Vec<RunLog>,
    started: Instant,
) -> Option<Filled> {
    let sdir = dir.join("replay-fill");
    let db = sdir.join("queue.sqlite3");
    let function = format!("durable-replay-{:08x}", std::process::id());
    let label = "replay-fill".to_string();
    eprintln!("[{:>4.0}s] {label}", started.elapsed().as_secs_f64());
    let meter = Meter::start();
    let start_s = started.elapsed().as_secs_f64();
    let mut server = match Server::spawn(Kind::SqliteFull, args, &sdir, &db, false) {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("{label}: {e}"));
            return None;
        }
    };
    if let Err(e) = server.wait_ready() {
        problems.push(format!("{label}: {e}"));
        return None;
    }
    let extra: Vec<String> = format!(
        "--scenario submit-bg --connections 8 --window 100 --jobs {jobs} --payload 100 \
         --unique uuid --function {function} --no-cleanup"
    )
    .split_whitespace()
    .map(str::to_string)
    .collect();
    let outcome = run_loadgen(loadgen, &extra, &server, &sdir, &label, 300);
    problems.extend(outcome.problems);
    let stop = server.terminate(Duration::from_secs(60));
    drop(server);
    let (wall_s, foreign_cpu_s) = meter.stop();
    log.push(RunLog {
        label,
        start_s,
        wall_s,
        load1: meter.load1,
        foreign_cpu_s,
        ok: outcome.json.is_some(),
    });
    let created = outcome
        .json
        .as_ref()
        .and_then(|j| figure(j, "jobs_created"))
        .unwrap_or(0.0) as u64;
    if created == 0 {
        problems.push("replay-fill: no job was queued; the replay part is skipped".into());
        return None;
    }
    Some(Filled {
        bytes: db_bytes(&db),
        db,
        function,
        jobs: created,
        json: outcome.json,
        stop_s: stop.map(|d| d.as_secs_f64()),
    })
}

/// Copies the filled file (and its -wal, if any) to `to`.
fn copy_db(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to)?;
    let mut wal = from.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    if wal.exists() {
        let mut dst = to.as_os_str().to_owned();
        dst.push("-wal");
        std::fs::copy(&wal, PathBuf::from(dst))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn replay_once(
    args: &Args,
    kind: Kind,
    filled: &Filled,
    dir: &Path,
    seq: usize,
    runtime: &tokio::runtime::Runtime,
    problems: &mut Vec<String>,
    log: &mut Vec<RunLog>,
    started: Instant,
) -> ReplayRun {
    let label = format!("replay-{}-{seq}", kind.id());
    eprintln!("[{:>4.0}s] {label}", started.elapsed().as_secs_f64());
    let sdir = dir.join(&label);
    let db = sdir.join("queue.sqlite3");
    let fail = |note: String| ReplayRun {
        kind: Some(kind),
        note: Some(note),
        ..Default::default()
    };
    if let Err(e) = std::fs::create_dir_all(&sdir).and_then(|_| copy_db(&filled.db, &db)) {
        problems.push(format!("{label}: cannot copy the queue file: {e}"));
        return fail(format!("cannot copy the queue file: {e}"));
    }
    let meter = Meter::start();
    let start_s = started.elapsed().as_secs_f64();
    let mut server = match Server::spawn(kind, args, &sdir, &db, true) {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("{label}: {e}"));
            remove_db(&db);
            return fail(e);
        }
    };
    let target = Target::Tcp(server.tcp.clone());
    let mut run = runtime.block_on(watch_replay(
        target,
        server.pid(),
        server.started,
        filled.function.clone(),
        filled.jobs,
        Duration::from_secs(args.replay_cap),
    ));
    run.kind = Some(kind);
    run.stop_s = server
        .terminate(Duration::from_secs(60))
        .map(|d| d.as_secs_f64());
    run.log_replay_s = logged_replay_seconds(&server.log);
    if let Some(note) = &run.note {
        problems.push(format!(
            "{label}: {note} (server log: {})",
            server.log.display()
        ));
    }
    drop(server);
    let (wall_s, foreign_cpu_s) = meter.stop();
    log.push(RunLog {
        label,
        start_s,
        wall_s,
        load1: meter.load1,
        foreign_cpu_s,
        ok: run.full_s.is_some(),
    });
    remove_db(&db);
    run
}

// ---------------------------------------------------------------------------
// Report

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
        _ => "—".into(),
    }
}

fn show(v: Option<f64>, decimals: usize) -> String {
    v.map_or("—".into(), |v| fmt_num(v, decimals))
}

fn med_of(runs: &Runs, i: usize, kind: Kind, f: impl Fn(&Value) -> Option<f64>) -> Option<f64> {
    let mut v: Vec<f64> = runs
        .get(&(i, kind))
        .map(|l| l.iter().filter_map(&f).collect())
        .unwrap_or_default();
    median(&mut v)
}

fn secs(v: Option<f64>) -> String {
    v.map_or("—".into(), |s| format!("{s:.2}"))
}

struct ReportInput<'a> {
    args: &'a Args,
    scenarios: &'a [Scenario],
    runs: &'a Runs,
    filled: Option<&'a Filled>,
    replays: &'a [ReplayRun],
    problems: &'a [String],
    facts: &'a [(&'static str, String)],
    wall: Duration,
    n_runs: usize,
    duration: f64,
    log: &'a [RunLog],
}

fn report(r: &ReportInput<'_>) -> String {
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
    let _ = writeln!(
        md,
        "\n<details><summary>Run log</summary>\n\n| Run | Started at, s | Wall, s | Load average (1 min) at start | CPU-s used by other processes (user+system+steal) | OK |\n|---|--:|--:|--:|--:|---|"
    );
    for l in r.log {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.1} | {:.2} | {:.2} | {} |",
            l.label,
            l.start_s,
            l.wall_s,
            l.load1,
            l.foreign_cpu_s,
            if l.ok { "yes" } else { "no" }
        );
    }
    let _ = writeln!(md, "\n</details>");
    md
}

fn replay_section(md: &mut String, r: &ReportInput<'_>, filled: &Filled) {
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
    type Getter<'a> = Box<dyn Fn(&ReplayRun) -> Option<f64> + 'a>;
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
        (
            "… their median latency, ms",
            Box::new(|x| {
                let mut v: Vec<f64> = x
                    .status_during()
                    .iter()
                    .filter_map(|p| p.latency_s)
                    .collect();
                median(&mut v)
            }),
            1,
            1000.0,
        ),
        (
            "… their max latency, ms",
            Box::new(|x| {
                x.status_during()
                    .iter()
                    .filter_map(|p| p.latency_s)
                    .reduce(f64::max)
            }),
            1,
            1000.0,
        ),
        (
            "SUBMIT_JOB_BG answered during replay",
            Box::new(|x| Some(x.submits_during().len() as f64)),
            0,
            1.0,
        ),
        (
            "… their median latency, ms",
            Box::new(|x| {
                let mut v: Vec<f64> = x
                    .submits_during()
                    .iter()
                    .filter_map(|p| p.latency_s)
                    .collect();
                median(&mut v)
            }),
            1,
            1000.0,
        ),
        (
            "… their max latency, ms",
            Box::new(|x| {
                x.submits_during()
                    .iter()
                    .filter_map(|p| p.latency_s)
                    .reduce(f64::max)
            }),
            1,
            1000.0,
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
    for bin in [&loadgen, &args.bin_dir.join("gearboxd")] {
        if !bin.exists() {
            eprintln!(
                "durable: {} not found; build with `cargo build --release -p gearboxd -p gearbox-benches`",
                bin.display()
            );
            return ExitCode::FAILURE;
        }
    }
    let dir = std::env::temp_dir().join(format!("gearbox-durable-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("durable: cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
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
                    Err(e) => LoadgenOutcome {
                        json: None,
                        problems: vec![format!("{label}: {e}")],
                    },
                };
                drop(server);
                remove_db(&db);
                let (wall_s, foreign_cpu_s) = meter.stop();
                log.push(RunLog {
                    label: label.clone(),
                    start_s,
                    wall_s,
                    load1: meter.load1,
                    foreign_cpu_s,
                    ok: outcome.json.is_some(),
                });
                for p in outcome.problems {
                    eprintln!("    PROBLEM: {p}");
                    problems.push(p);
                }
                if let Some(j) = outcome.json {
                    raw.push_str(&j.to_string());
                    raw.push('\n');
                    runs.entry((i, kind)).or_default().push(j);
                }
            }
        }
    }
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
    });
    println!("{md}");
    let out = args
        .out
        .clone()
        .or_else(|| (!args.quick).then(|| PathBuf::from("benches/RESULTS-durable.md")));
    if let Some(out) = out {
        match std::fs::write(&out, &md) {
            Ok(()) => eprintln!("durable: wrote {}", out.display()),
            Err(e) => {
                eprintln!("durable: cannot write {}: {e}", out.display());
                return ExitCode::FAILURE;
            }
        }
    }
    eprintln!(
        "durable: finished in {:.0} s{}",
        started.elapsed().as_secs_f64(),
        if problems.is_empty() {
            String::new()
        } else {
            format!(", {} problem(s) noted in the report", problems.len())
        }
    );
    if problems.is_empty() && !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("durable: logs and raw JSON kept in {}", dir.display());
    }
    ExitCode::SUCCESS
}

/// The SQLite that gearboxd bundles: the libsqlite3-sys version in Cargo.lock.
fn bundled_sqlite() -> String {
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "name = \"libsqlite3-sys\"" {
            if let Some(v) = lines
                .next()
                .and_then(|v| v.trim().strip_prefix("version = "))
            {
                return format!(
                    "bundled by libsqlite3-sys {} (rusqlite, feature `bundled`)",
                    v.trim_matches('"')
                );
            }
        }
    }
    "bundled (rusqlite)".into()
}
