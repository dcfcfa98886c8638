//! The parts of the `durable` binary: its options, the four servers it
//! compares and how one is started and stopped, the submit scenarios, and one
//! loadgen run; the restart on a full queue file is in [`replay`], the
//! Markdown report in [`report`].

pub mod disk;
pub mod replay;
pub mod report;

use crate::harness::{fmt_num, free_port};
use crate::runner::{gearmand_command, log_to, terminate, wait_ready, LoadOutcome, LoadRun};
use clap::Parser;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "durable",
    about = "Background submit throughput and restart replay: gearboxd SQLite vs in-memory vs gearmand libsqlite3"
)]
pub struct Args {
    /// Small counts, one run, a 100,000-job replay: a smoke test (about two minutes).
    #[arg(long)]
    pub quick: bool,
    /// Runs per scenario and server, and restarts per server in the replay part [default: 3, or 1 with --quick].
    #[arg(long)]
    pub runs: Option<usize>,
    /// Where to write the Markdown report [default: benches/RESULTS-durable.md; none with --quick].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Directory holding the release binaries gearboxd and loadgen.
    #[arg(long, default_value = "target/release")]
    pub bin_dir: PathBuf,
    /// The gearmand to compare with.
    #[arg(long, default_value = "gearmand")]
    pub gearmand: String,
    /// Seconds each submit run may send for [default: 3, or 1 with --quick].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Jobs queued for the replay part [default: 1000000, or 100000 with --quick].
    #[arg(long)]
    pub replay_jobs: Option<u64>,
    /// Longest wait for a restarted server to show its whole queue, in seconds.
    #[arg(long, default_value_t = 120)]
    pub replay_cap: u64,
    /// Only the parts whose id contains one of these words (comma-separated):
    /// scenario ids such as `pipelined`, `w1x32-uuid`, or `replay`.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Keep the scratch directory (server logs, raw JSON) even on success.
    #[arg(long)]
    pub keep: bool,
}

impl Args {
    pub fn wants(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| id.contains(o.as_str()))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Kind {
    /// gearboxd -q builtin
    Memory,
    /// gearboxd -q libsqlite3 --libsqlite3-sync full (the default)
    SqliteFull,
    /// gearboxd -q libsqlite3 --libsqlite3-sync normal
    SqliteNormal,
    /// gearmand -q libsqlite3
    Gearmand,
}

pub const KINDS: [Kind; 4] = [
    Kind::Memory,
    Kind::SqliteFull,
    Kind::SqliteNormal,
    Kind::Gearmand,
];

impl Kind {
    pub fn id(self) -> &'static str {
        match self {
            Kind::Memory => "gearbox-memory",
            Kind::SqliteFull => "gearbox-sqlite-full",
            Kind::SqliteNormal => "gearbox-sqlite-normal",
            Kind::Gearmand => "gearmand-sqlite",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Kind::Memory => "gearbox in-memory",
            Kind::SqliteFull => "gearbox SQLite full",
            Kind::SqliteNormal => "gearbox SQLite normal",
            Kind::Gearmand => "gearmand libsqlite3",
        }
    }

    pub fn command(self) -> &'static str {
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
pub struct Scenario {
    pub id: &'static str,
    pub title: String,
    pub args: Vec<String>,
    /// Connections, and submits each keeps in flight.
    pub conns: u32,
    pub window: u32,
}

pub fn scenarios(quick: bool, duration: f64) -> Vec<Scenario> {
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
        // Enough in flight that the rate is what the server can do, not what
        // one round of acknowledgements allows (window 100 leaves the SQLite
        // server waiting on its syncs with CPU to spare).
        (
            "capacity",
            "(d) 4 conns × window 400",
            4,
            400,
            n(600_000, 60_000),
        ),
    ];
    for (shape, label, conns, window, jobs) in shapes {
        for (unique, what) in [("uuid", "36-byte uuid uniques"), ("none", "empty uniques")] {
            let id: &'static str = match (shape, unique) {
                ("pipelined", "uuid") => "pipelined-uuid",
                ("pipelined", _) => "pipelined-empty",
                ("w1x4", "uuid") => "w1x4-uuid",
                ("w1x4", _) => "w1x4-empty",
                ("w1x32", "uuid") => "w1x32-uuid",
                ("w1x32", _) => "w1x32-empty",
                ("capacity", "uuid") => "capacity-uuid",
                _ => "capacity-empty",
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
                conns,
                window,
            });
        }
    }
    out
}

/// A server this program started, with a directory of its own; stopped
/// (SIGTERM, then SIGKILL) on drop.
pub struct Server {
    pub kind: Kind,
    pub child: Child,
    pub tcp: String,
    pub log: PathBuf,
    pub started: Instant,
}

impl Server {
    /// Starts `kind` in `dir`, on the SQLite file `db` (unused by the
    /// in-memory server). `info` raises gearboxd's log level to INFO, which
    /// logs how long a replay took.
    pub fn spawn(
        kind: Kind,
        args: &Args,
        dir: &Path,
        db: &Path,
        info: bool,
    ) -> Result<Server, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let port = free_port()?;
        let log = dir.join("server.log");
        let mut cmd;
        match kind {
            Kind::Gearmand => {
                cmd = gearmand_command(
                    &args.gearmand,
                    4,
                    port,
                    &log,
                    &dir.join("gearmand.pid"),
                    &dir.join("gearmand.out"),
                )?;
                cmd.args(["-q", "libsqlite3", "--libsqlite3-db"]).arg(db);
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
                log_to(&mut cmd, &log)?;
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the server's TCP port accepts a connection.
    pub fn wait_ready(&mut self) -> Result<(), String> {
        wait_ready(
            &mut self.child,
            self.kind.id(),
            &self.log,
            &self.tcp,
            None,
            Duration::from_millis(10),
        )
    }

    /// SIGTERM, then SIGKILL after `grace`. Returns how long the server took
    /// to exit after SIGTERM, or `None` if it had to be killed (or was gone).
    pub fn terminate(&mut self, grace: Duration) -> Option<Duration> {
        let who = format!("durable: {}", self.kind.id());
        terminate(&mut self.child, grace, Duration::from_millis(5), &who)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(30));
    }
}

/// Removes a SQLite file with its -wal and -shm companions.
pub fn remove_db(db: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Size of a SQLite file with its -wal, in bytes.
pub fn db_bytes(db: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|suffix| {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(PathBuf::from(p)).ok().map(|m| m.len())
        })
        .sum()
}

/// Runs loadgen once against `server`; kills it if it outlives its own
/// deadline by 30 s.
pub fn run_loadgen(
    loadgen: &Path,
    extra: &[String],
    server: &Server,
    dir: &Path,
    label: &str,
    deadline_s: u64,
) -> LoadOutcome {
    LoadRun {
        program: loadgen,
        name: "loadgen",
        args: extra,
        target: &server.tcp,
        server_pid: server.pid(),
        server_log: &server.log,
        dir,
        label,
        deadline_s,
        poll: Duration::from_millis(20),
    }
    .run()
}

pub fn figure(j: &Value, key: &str) -> Option<f64> {
    j["figures"][key].as_f64()
}

/// Server CPU microseconds per job created in one run.
pub fn cpu_us_per_job(j: &Value) -> Option<f64> {
    let cpu = figure(j, "server_cpu_s")?;
    let jobs = figure(j, "jobs_created")?;
    (jobs > 0.0).then(|| cpu * 1e6 / jobs)
}

pub type Runs = BTreeMap<(usize, Kind), Vec<Value>>;

/// The SQLite that gearboxd bundles: the libsqlite3-sys version in Cargo.lock.
pub fn bundled_sqlite() -> String {
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
