//! Helpers for `tests/durability/store_safety.rs` (issue #15): a queue file that
//! another server owns, that vanishes, is replaced or turns read-only under a
//! running server, or that is unusable at start.
//!
//! * [`Immutable`]: `chattr +i` on paths (refuses writes even to root, even
//!   through descriptors already open), undone on drop.
//! * [`Spawned`]: a gearboxd started once, without [`TestServer`]'s retries,
//!   for servers that are meant to refuse to start.
//! * [`submit_with_echo`] / [`EchoLoad`]: background submits with an ECHO_REQ
//!   right behind each on the same connection, every answer timed.
//! * [`recover_jobs`]: a new server on the file, its replay, and every job
//!   drained.
//! * [`write_damaged_queue_file`]: a gearmand-layout queue file with a damaged
//!   b-tree page (`PRAGMA quick_check` fails, the header is intact).

use super::*;
use std::process::{Child, ExitStatus, Stdio};

pub const ECHO_REQ: u32 = 16;
pub const ECHO_RES: u32 = 17;

/// The longest a client may wait for any answer: the server's bound on a held
/// JOB_CREATED (5 s, `persistence::ACK_BOUND`) plus slack.
pub const ANSWER_BOUND: Duration = Duration::from_secs(8);

// ---------------------------------------------------------------------------------------
// chattr +i
// ---------------------------------------------------------------------------------------

/// Paths made immutable with `chattr +i`; `chattr -i` again on drop, so temp
/// dirs can be removed whatever happened.
pub struct Immutable {
    paths: Vec<PathBuf>,
}

fn chattr(flag: &str, paths: &[PathBuf]) -> Result<(), String> {
    let mut cmd = Command::new("chattr");
    cmd.arg(flag).args(paths);
    let out = try_run_command(cmd, None, Duration::from_secs(10))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "chattr {flag} {paths:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

impl Immutable {
    /// `chattr +i` on each of `paths` (all must exist); panics if that fails.
    pub fn set(paths: &[PathBuf]) -> Immutable {
        let mut done = Immutable { paths: Vec::new() };
        for path in paths {
            chattr("+i", std::slice::from_ref(path)).unwrap_or_else(|e| panic!("{e}"));
            done.paths.push(path.clone());
        }
        done
    }

    /// `chattr -i` on every path set; panics if that fails.
    pub fn clear(&mut self) {
        let paths = std::mem::take(&mut self.paths);
        if !paths.is_empty() {
            chattr("-i", &paths).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for path in std::mem::take(&mut self.paths) {
            let _ = chattr("-i", &[path]);
        }
    }
}

// ---------------------------------------------------------------------------------------
// A gearboxd started once
// ---------------------------------------------------------------------------------------

/// A gearboxd started by [`Spawned::start`]. Killed (SIGKILL) on drop if it
/// still runs; its log is printed if the test failed.
pub struct Spawned {
    child: Child,
    dir: PathBuf,
    port: u16,
    status: Option<ExitStatus>,
    pub started: Instant,
}

impl Spawned {
    /// Starts gearboxd under `prefix` (may be empty) on a free port with
    /// `--verbose INFO -l stderr` and `args`, without waiting for it.
    pub fn start(prefix: &[String], args: &[String]) -> Spawned {
        let dir = unique_temp_dir("gearboxd-once");
        let port = free_port();
        let stderr = fs::File::create(dir.join("server.stderr")).expect("create stderr file");
        let child = crate::command_under(prefix, crate::gearboxd_path())
            .args(["-p", &port.to_string(), "-L", HOST, "-l", "stderr"])
            .args(["--verbose", "INFO"])
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start gearboxd: {e}"));
        Spawned {
            child,
            dir,
            port,
            status: None,
            started: Instant::now(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        crate::read_file(&self.dir.join("server.stderr"))
    }

    /// Its exit status, once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits at most `timeout` for it to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether it runs and accepts connections now.
    pub fn accepting(&mut self) -> bool {
        let addr = self.addr().parse().expect("socket address");
        self.exited().is_none()
            && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            && self.exited().is_none()
    }

    /// Waits at most `timeout` until it accepts connections; panics with its
    /// log if it exits first or does not.
    pub fn wait_accepting(&mut self, timeout: Duration) {
        wait_until("gearboxd to accept connections", timeout, || {
            match (self.accepting(), self.exited()) {
                (true, _) => Ok(()),
                (false, Some(status)) => {
                    panic!("gearboxd exited with {status}:\n{}", self.stderr())
                }
                (false, None) => Err(self.stderr()),
            }
        })
    }

    /// Panics, with its exit status and log, if it is no longer running.
    pub fn assert_running(&mut self, when: &str) {
        if let Some(status) = self.exited() {
            panic!("gearboxd died {when}: {status}\n{}", self.stderr());
        }
    }

    /// SIGTERM, then waits at most 30 s for it to exit.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        if self.exited().is_none() {
            let mut cmd = Command::new("kill");
            cmd.args(["-s", "TERM", &self.pid().to_string()]);
            let _ = try_run_command(cmd, None, Duration::from_secs(10));
        }
        self.wait_exit(Duration::from_secs(30))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let running = self.exited().is_none();
        if running {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "---- gearboxd pid {} on port {} ({}) ----\n{}",
                self.pid(),
                self.port,
                match running {
                    true => "killed at the end of the test".to_owned(),
                    false => format!("exited with {:?}", self.status),
                },
                self.stderr()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Starts gearboxd on `args` and waits at most `timeout` for it to exit by
/// itself: its exit status (`None`: still running, then killed), stderr, and
/// how long it ran.
pub fn start_expecting_exit(
    prefix: &[String],
    args: &[String],
    timeout: Duration,
) -> (Option<ExitStatus>, String, Duration) {
    let mut server = Spawned::start(prefix, args);
    let status = server.wait_exit(timeout);
    let ran = server.started.elapsed();
    (status, server.stderr(), ran)
}

// ---------------------------------------------------------------------------------------
// Submits with an ECHO behind them
// ---------------------------------------------------------------------------------------

/// The answer to one background submit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Created,
    /// ERROR, as text (`QUEUE_ERROR\0...`).
    Refused(String),
    /// No answer in time, or the connection failed: why.
    Missing(String),
}

/// One submit and the ECHO_REQ sent right behind it, in one write.
#[derive(Clone, Debug)]
pub struct Answered {
    pub payload: String,
    pub sent: Instant,
    pub reply: Reply,
    /// From sending to the submit's answer (or to giving up).
    pub reply_after: Duration,
    /// From sending to the ECHO_RES, or what went wrong.
    pub echo: Result<Duration, String>,
}

impl Answered {
    pub fn acked(&self) -> bool {
        self.reply == Reply::Created
    }
    pub fn refused(&self) -> bool {
        matches!(self.reply, Reply::Refused(_))
    }
    /// Both answers arrived, each within `bound` of sending.
    pub fn answered_within(&self, bound: Duration) -> bool {
        !matches!(self.reply, Reply::Missing(_))
            && self.reply_after <= bound
            && matches!(self.echo, Ok(after) if after <= bound)
    }
}

/// Sends SUBMIT_JOB_BG (unique = data = `payload`) and ECHO_REQ(`payload`) in
/// one write on `conn`, and reads both answers, in that order, within `bound`
/// of sending.
pub fn submit_with_echo(
    conn: &mut Conn,
    function: &str,
    payload: &str,
    bound: Duration,
) -> Answered {
    let p = payload.as_bytes().to_vec();
    let mut out = encode_request(
        SUBMIT_JOB_BG,
        &[function.as_bytes().to_vec(), p.clone(), p.clone()],
    );
    out.extend(encode_request(ECHO_REQ, std::slice::from_ref(&p)));
    let sent = Instant::now();
    let left = |now: Instant| (sent + bound).saturating_duration_since(now);
    let missing = |why: String| Answered {
        payload: payload.to_owned(),
        sent,
        reply: Reply::Missing(why.clone()),
        reply_after: sent.elapsed(),
        echo: Err(why),
    };
    if let Err(e) = conn.send_raw(&out) {
        return missing(format!("write: {e}"));
    }
    let reply = match conn.recv(left(Instant::now())) {
        Ok(r) if r.ptype == JOB_CREATED => Reply::Created,
        Ok(r) if r.ptype == ERROR => Reply::Refused(text(&r.body)),
        Ok(r) => return missing(format!("unexpected reply {}", r.describe())),
        Err(e) => return missing(format!("submit: {e}")),
    };
    let reply_after = sent.elapsed();
    let echo = match conn.recv(left(Instant::now())) {
        Ok(r) if r.ptype == ECHO_RES && r.body == p => Ok(sent.elapsed()),
        Ok(r) => Err(format!("expected ECHO_RES {payload}, got {}", r.describe())),
        Err(e) => Err(format!("echo: {e}")),
    };
    Answered {
        payload: payload.to_owned(),
        sent,
        reply,
        reply_after,
        echo,
    }
}

/// Clients that each submit with an ECHO behind ([`submit_with_echo`]) on a
/// connection of their own, one at a time with a pause between, until told to
/// stop. A client whose answer did not come stops (its connection is out of
/// step); every client stops after two minutes.
pub struct EchoLoad {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Answered>>>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoLoad {
    pub fn start(
        addr: &str,
        function: &str,
        label: &str,
        clients: usize,
        pause: Duration,
    ) -> EchoLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|c| {
                let (addr, function) = (addr.to_owned(), function.to_owned());
                let prefix = format!("{label}-c{c}");
                let (stop, log) = (stop.clone(), log.clone());
                thread::spawn(move || {
                    let until = Instant::now() + Duration::from_secs(120);
                    let mut conn = match Conn::connect(&addr) {
                        Ok(conn) => conn,
                        Err(e) => {
                            log.lock().unwrap().push(Answered {
                                payload: format!("{prefix}-connect"),
                                sent: Instant::now(),
                                reply: Reply::Missing(format!("connect: {e}")),
                                reply_after: Duration::ZERO,
                                echo: Err("no connection".into()),
                            });
                            return;
                        }
                    };
                    for n in 0.. {
                        if stop.load(Ordering::SeqCst) || Instant::now() >= until {
                            return;
                        }
                        let payload = format!("{prefix}-{n}");
                        let answer = submit_with_echo(&mut conn, &function, &payload, ANSWER_BOUND);
                        let broken = answer.echo.is_err();
                        log.lock().unwrap().push(answer);
                        if broken {
                            return;
                        }
                        thread::sleep(pause);
                    }
                })
            })
            .collect();
        EchoLoad { stop, log, threads }
    }

    /// Every answer so far.
    pub fn answers(&self) -> Vec<Answered> {
        self.log.lock().unwrap().clone()
    }

    /// Stops the clients, waits for them, and returns every answer.
    pub fn finish(self) -> Vec<Answered> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        let log = self.log.lock().unwrap();
        log.clone()
    }
}

// ---------------------------------------------------------------------------------------
// Restart and drain
// ---------------------------------------------------------------------------------------

/// Starts gearboxd on `file` again, waits for its replay to finish, and runs
/// every queued job of `function` once: their payloads, in the order run.
/// Panics if the file does not take a server, or jobs are left over.
pub fn recover_jobs(file: &SqliteFile, function: &str) -> Vec<String> {
    let mut args = file.server_args();
    args.extend(["--verbose".to_owned(), "INFO".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = TestServer::start_with_args(ServerKind::Gearboxd, &args);
    let addr = server.addr();
    wait_until(
        "the replay to finish",
        Duration::from_secs(60),
        || match server.logs().contains("replay finished") {
            true => Ok(()),
            false => Err(server.logs()),
        },
    );
    let total = status_total(&addr, function).expect("admin status after the replay") as usize;
    let ran = drain_in_order(&addr, &[function], total, Duration::from_secs(60));
    assert_eq!(ran.len(), total, "admin status showed {total} jobs");
    wait_until(
        "no job left",
        Duration::from_secs(10),
        || match status_total(&addr, function) {
            Ok(0) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    ran.iter().map(|r| text(&r.data)).collect()
}

/// What a restart found, compared with what clients were told.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Acknowledged and run once after the restart.
    pub recovered: usize,
    /// Acknowledged, not run.
    pub lost: Vec<String>,
    /// Run more than once.
    pub duplicated: Vec<String>,
    /// Refused, yet run.
    pub refused_ran: Vec<String>,
    /// Run, but never submitted by the test.
    pub unknown: Vec<String>,
}

impl Verdict {
    pub fn of(acked: &[String], refused: &[String], ran: &[String]) -> Verdict {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for r in ran {
            *counts.entry(r).or_default() += 1;
        }
        let acked_set: BTreeSet<&str> = acked.iter().map(String::as_str).collect();
        let refused_set: BTreeSet<&str> = refused.iter().map(String::as_str).collect();
        Verdict {
            recovered: acked_set.iter().filter(|p| counts.contains_key(*p)).count(),
            lost: acked_set
                .iter()
                .filter(|p| !counts.contains_key(*p))
                .map(|p| p.to_string())
                .collect(),
            duplicated: counts
                .iter()
                .filter(|(_, &n)| n > 1)
                .map(|(p, _)| p.to_string())
                .collect(),
            refused_ran: counts
                .keys()
                .filter(|p| refused_set.contains(*p))
                .map(|p| p.to_string())
                .collect(),
            unknown: counts
                .keys()
                .filter(|p| !acked_set.contains(*p) && !refused_set.contains(*p))
                .map(|p| p.to_string())
                .collect(),
        }
    }

    pub fn clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.refused_ran.is_empty()
            && self.unknown.is_empty()
    }
}

// ---------------------------------------------------------------------------------------
// A damaged queue file
// ---------------------------------------------------------------------------------------

/// Writes a queue file in gearmand's layout with `rows` jobs of `function`
/// at `path` (python3's sqlite3), then overwrites the cell pointer array of
/// one b-tree page in the middle of the file with 0xFF bytes, leaving the
/// database header and the page's own header byte alone. Returns the
/// `PRAGMA quick_check` verdict on the result (not "ok", or this panics).
pub fn write_damaged_queue_file(path: &Path, function: &str, rows: usize) -> String {
    const DAMAGE: &str = "import sqlite3, sys\n\
        path, function, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])\n\
        c = sqlite3.connect(path)\n\
        c.execute('CREATE TABLE gearman_queue (unique_key TEXT, function_name TEXT, priority INTEGER, data BLOB, when_to_run INTEGER, PRIMARY KEY (unique_key, function_name))')\n\
        for i in range(rows):\n\
        \x20   c.execute('INSERT INTO gearman_queue VALUES (?, ?, 1, ?, 0)', ('u%d' % i, function, b'x' * 200))\n\
        c.commit()\n\
        size = c.execute('PRAGMA page_size').fetchone()[0]\n\
        pages = c.execute('PRAGMA page_count').fetchone()[0]\n\
        c.close()\n\
        verdict = 'ok'\n\
        for page in [pages // 2] + list(range(2, pages + 1)):\n\
        \x20   with open(path, 'r+b') as f:\n\
        \x20       f.seek((page - 1) * size + 12)\n\
        \x20       f.write(b'\\xff' * 48)\n\
        \x20   try:\n\
        \x20       verdict = sqlite3.connect(path).execute('PRAGMA quick_check').fetchone()[0]\n\
        \x20   except sqlite3.DatabaseError as e:\n\
        \x20       verdict = 'error: %s' % e\n\
        \x20   if verdict != 'ok':\n\
        \x20       break\n\
        print(verdict)\n";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", DAMAGE])
        .arg(path)
        .args([function, &rows.to_string()]);
    let out = try_run_command(cmd, None, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "python3 could not write the damaged file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        !verdict.is_empty() && verdict != "ok",
        "the damaged file passes quick_check"
    );
    let header = fs::read(path).expect("read the damaged file");
    assert!(
        header.starts_with(b"SQLite format 3\0"),
        "the damage reached the header"
    );
    verdict
}
