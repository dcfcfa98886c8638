//! Harness for the peer aggregation tests (`tests/peers/`): `gearboxd --peer`
//! in front of real gearmand and gearboxd servers, driven by real clients and
//! workers.
//!
//! What [`crate::TestServer`] does not do and these tests need: start a server
//! on a given port (a peer restarted in place, a dead port brought back),
//! kill -9, SIGSTOP / SIGCONT and graceful stops of one server among several;
//! read `status` and `peers` over the admin text protocol (also several
//! servers at nearly the same instant); a "silent" peer that accepts
//! connections and never answers. Everything is bounded in time, and every
//! process is one we started, killed by its own pid.

use crate::{
    client_script, free_port, gearboxd_path, run, unique_temp_dir, BackgroundProcess, OutputExt,
    ServerKind, HOST,
};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long one admin request may take (connect, write, read the reply).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------

/// One job server process (gearmand or gearboxd) on a known loopback port.
/// SIGKILLed and reaped on drop (after a SIGCONT if we stopped it). If the
/// test panicked, its log is printed and its directory kept.
pub struct Node {
    label: String,
    kind: ServerKind,
    port: u16,
    child: Option<Child>,
    dir: PathBuf,
    stopped: bool,
}

impl Node {
    /// A gearmand on a free port.
    pub fn gearmand(label: &str) -> Node {
        Node::start(ServerKind::Gearmand, label, None, &[])
    }

    /// A gearmand on `port` (retried while the port is still busy).
    pub fn gearmand_on(label: &str, port: u16) -> Node {
        Node::start(ServerKind::Gearmand, label, Some(port), &[])
    }

    /// A gearboxd on a free port, with `args` appended (`--peer …`).
    pub fn gearboxd(label: &str, args: &[String]) -> Node {
        Node::start(ServerKind::Gearboxd, label, None, args)
    }

    /// A gearboxd on `port`, with `args` appended.
    pub fn gearboxd_on(label: &str, port: u16, args: &[String]) -> Node {
        Node::start(ServerKind::Gearboxd, label, Some(port), args)
    }

    /// Starts a server and waits until it accepts connections. Without a
    /// port, each attempt takes a new free one; with one, attempts wait for
    /// it to be free (a killed server's port in use by its last connections).
    pub fn start(kind: ServerKind, label: &str, port: Option<u16>, extra: &[String]) -> Node {
        let program = match kind {
            ServerKind::Gearmand => PathBuf::from("gearmand"),
            ServerKind::Gearboxd => gearboxd_path(),
        };
        let dir = unique_temp_dir(&format!("peers-{label}"));
        let mut failures = Vec::new();
        let attempts = if port.is_some() { 25 } else { 4 };
        for attempt in 1..=attempts {
            let port = port.unwrap_or_else(free_port);
            let mut args: Vec<String> =
                vec!["-p".into(), port.to_string(), "-L".into(), HOST.into()];
            match kind {
                ServerKind::Gearmand => args.extend([
                    "-l".into(),
                    dir.join("gearmand.log").to_string_lossy().into_owned(),
                    "--verbose".into(),
                    "INFO".into(),
                ]),
                ServerKind::Gearboxd => args.extend([
                    "-l".into(),
                    "stderr".into(),
                    "--verbose".into(),
                    "INFO".into(),
                ]),
            }
            args.extend(extra.iter().cloned());
            let stdout = fs::File::create(dir.join("server.stdout")).expect("create stdout file");
            let stderr = fs::File::create(dir.join("server.stderr")).expect("create stderr file");
            let mut child = Command::new(&program)
                .args(&args)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start {} ({}): {e}; run protocol-tests/install-deps.sh",
                        kind.name(),
                        program.display()
                    )
                });
            match crate::wait_until_accepting(&mut child, port) {
                Ok(()) => {
                    return Node {
                        label: label.to_owned(),
                        kind,
                        port,
                        child: Some(child),
                        dir,
                        stopped: false,
                    }
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(format!(
                        "attempt {attempt}: {} {}: {why}\n{}",
                        program.display(),
                        args.join(" "),
                        crate::server_logs(&dir)
                    ));
                    thread::sleep(Duration::from_millis(200));
                }
            }
        }
        panic!(
            "{label} ({}) did not start after {attempts} attempts:\n{}",
            kind.name(),
            failures.join("\n")
        );
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn port_str(&self) -> String {
        self.port.to_string()
    }

    /// `127.0.0.1:PORT`, as given to `--peer`.
    pub fn addr(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// `--peer 127.0.0.1:PORT`
    pub fn peer_arg(&self) -> [String; 2] {
        ["--peer".to_owned(), self.addr()]
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("{} is not running", self.label))
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends `signal` (`-STOP`, `-CONT`, `-USR1`) to our own child, by pid.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().to_string();
        run("kill", &[signal, &pid], None, Duration::from_secs(5))
            .assert_success(&format!("kill {signal} {pid} ({})", self.label));
    }

    /// SIGSTOP: the process stops reading, writing and accepting; its
    /// listening socket still completes TCP handshakes.
    pub fn freeze(&mut self) {
        self.signal("-STOP");
        self.stopped = true;
    }

    pub fn thaw(&mut self) {
        self.signal("-CONT");
        self.stopped = false;
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stopped = false;
    }

    /// Waits at most `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Some(status);
                }
                Ok(None) if Instant::now() >= deadline => return None,
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(_) => return None,
            }
        }
    }

    /// Everything the server logged so far (tails of long logs).
    pub fn logs(&self) -> String {
        crate::server_logs(&self.dir)
    }

    /// The whole log (gearboxd: stderr; gearmand: its log file).
    pub fn full_log(&self) -> String {
        let mut out = String::new();
        for name in ["gearmand.log", "server.stdout", "server.stderr"] {
            out.push_str(&crate::read_file(&self.dir.join(name)));
        }
        out
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.stopped {
            if let Some(child) = &self.child {
                let _ = Command::new("kill")
                    .args(["-CONT", &child.id().to_string()])
                    .status();
            }
        }
        self.kill9();
        if thread::panicking() {
            eprintln!(
                "---- {} ({} on port {}, files kept in {}) ----\n{}",
                self.label,
                self.kind.name(),
                self.port,
                self.dir.display(),
                self.logs()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// `--peer A --peer B …` for the given nodes, in order.
pub fn peer_args(nodes: &[&Node]) -> Vec<String> {
    nodes.iter().flat_map(|n| n.peer_arg()).collect()
}

// ---------------------------------------------------------------------------------------
// A peer that accepts and never answers
// ---------------------------------------------------------------------------------------

/// A TcpListener on a loopback port that accepts every connection and never
/// reads or writes: what a wedged server looks like from outside. Stops (and
/// closes every connection it accepted) on [`SilentPeer::stop`] or drop, or
/// after two minutes at the latest.
pub struct SilentPeer {
    port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl SilentPeer {
    pub fn start() -> SilentPeer {
        let listener = TcpListener::bind((HOST, 0)).expect("bind silent peer");
        listener
            .set_nonblocking(true)
            .expect("nonblocking silent peer");
        let port = listener.local_addr().expect("local_addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
        let thread = thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        accepted2.fetch_add(1, Ordering::SeqCst);
                        held.push(stream);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
            drop(listener);
            drop(held);
        });
        SilentPeer {
            port,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes the listener and every connection it accepted.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SilentPeer {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------
// Admin text protocol
// ---------------------------------------------------------------------------------------

fn admin_connect(port: u16) -> Result<TcpStream, String> {
    let addr: SocketAddr = format!("{HOST}:{port}").parse().expect("socket addr");
    let stream = TcpStream::connect_timeout(&addr, ADMIN_TIMEOUT)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(ADMIN_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(ADMIN_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Reads lines until a line that is exactly `.`; returns the lines before it.
fn read_listing(reader: &mut impl BufRead, what: &str) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return Err(format!("{what}: connection closed after {lines:?}")),
            Ok(_) => {}
            Err(e) => return Err(format!("{what}: {e} after {lines:?}")),
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line == "." {
            return Ok(lines);
        }
        if line.starts_with("ERR ") && lines.is_empty() {
            return Err(format!("{what}: {line}"));
        }
        lines.push(line);
        if Instant::now() >= deadline || lines.len() > 100_000 {
            return Err(format!("{what}: no end of listing"));
        }
    }
}

/// An admin command whose reply is a listing ending in `.` (`status`,
/// `workers`, `peers`): the lines before the `.`.
pub fn admin_listing(port: u16, command: &str) -> Result<Vec<String>, String> {
    let mut stream = admin_connect(port)?;
    stream
        .write_all(format!("{command}\n").as_bytes())
        .map_err(|e| format!("write {command}: {e}"))?;
    let mut reader = BufReader::new(stream);
    read_listing(&mut reader, &format!("{command} on port {port}"))
}

/// An admin command with a one-line reply (`shutdown graceful` → `OK`).
pub fn admin_line(port: u16, command: &str) -> Result<String, String> {
    let mut stream = admin_connect(port)?;
    stream
        .write_all(format!("{command}\n").as_bytes())
        .map_err(|e| format!("write {command}: {e}"))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("{command} on port {port}: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// One `status` row: `fn TOTAL RUNNING WORKERS`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FnStatus {
    pub total: u64,
    pub running: u64,
    pub workers: u64,
}

fn parse_status(lines: &[String]) -> Result<BTreeMap<String, FnStatus>, String> {
    let mut map = BTreeMap::new();
    for line in lines {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() != 4 {
            return Err(format!("bad status row {line:?}"));
        }
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("bad number in status row {line:?}"))
        };
        map.insert(
            cols[0].to_owned(),
            FnStatus {
                total: num(cols[1])?,
                running: num(cols[2])?,
                workers: num(cols[3])?,
            },
        );
    }
    Ok(map)
}

/// `status`, as a map from function to its row.
pub fn status(port: u16) -> Result<BTreeMap<String, FnStatus>, String> {
    parse_status(&admin_listing(port, "status")?)
}

/// The `status` row of `function` (all zero if the server does not list it).
pub fn fn_status(port: u16, function: &str) -> Result<FnStatus, String> {
    Ok(status(port)?.get(function).copied().unwrap_or_default())
}

/// One row of the aggregator's `peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRow {
    pub addr: String,
    pub state: String,
    pub failures: u64,
    pub pulled: u64,
    pub in_flight: u64,
    /// `None` for `-`.
    pub idle_s: Option<u64>,
    /// `-` when there was none.
    pub last_error: String,
}

/// `peers`, one row per `--peer` in order. Checks every row's shape.
pub fn peers(port: u16) -> Result<Vec<PeerRow>, String> {
    let lines = admin_listing(port, "peers")?;
    lines
        .iter()
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() != 7 {
                return Err(format!(
                    "peers row {line:?} has {} columns, not 7",
                    cols.len()
                ));
            }
            let num = |s: &str| {
                s.parse::<u64>()
                    .map_err(|_| format!("bad number {s:?} in peers row {line:?}"))
            };
            let state = cols[1].to_owned();
            if !["up", "connecting", "cooling", "idle"].contains(&state.as_str()) {
                return Err(format!("unknown state in peers row {line:?}"));
            }
            let idle_s = if cols[5] == "-" {
                None
            } else {
                Some(num(cols[5])?)
            };
            if cols[6].is_empty() {
                return Err(format!("empty LAST_ERROR in peers row {line:?}"));
            }
            Ok(PeerRow {
                addr: cols[0].to_owned(),
                state,
                failures: num(cols[2])?,
                pulled: num(cols[3])?,
                in_flight: num(cols[4])?,
                idle_s,
                last_error: cols[6].to_owned(),
            })
        })
        .collect()
}

/// The `peers` row for `addr`.
pub fn peer_row(port: u16, addr: &str) -> Result<PeerRow, String> {
    let rows = peers(port)?;
    rows.iter()
        .find(|r| r.addr == addr)
        .cloned()
        .ok_or_else(|| format!("no peers row for {addr}: {rows:?}"))
}

/// Persistent admin connections to several servers, to read their `status`
/// at nearly the same instant: the requests are all written before any reply
/// is read.
pub struct StatusPoller {
    conns: Vec<(u16, TcpStream, BufReader<TcpStream>)>,
}

impl StatusPoller {
    pub fn new(ports: &[u16]) -> Result<StatusPoller, String> {
        let mut conns = Vec::new();
        for &port in ports {
            let stream = admin_connect(port)?;
            let reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
            conns.push((port, stream, reader));
        }
        Ok(StatusPoller { conns })
    }

    /// Each server's row for `function`, in the order of `ports`.
    pub fn poll(&mut self, function: &str) -> Result<Vec<FnStatus>, String> {
        for (port, stream, _) in &mut self.conns {
            stream
                .write_all(b"status\n")
                .map_err(|e| format!("status to {port}: {e}"))?;
        }
        let mut out = Vec::new();
        for (port, _, reader) in &mut self.conns {
            let lines = read_listing(reader, &format!("status on port {port}"))?;
            out.push(
                parse_status(&lines)?
                    .get(function)
                    .copied()
                    .unwrap_or_default(),
            );
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------
// Clients and workers
// ---------------------------------------------------------------------------------------

/// Submits one background job per payload to `port` with the gearman CLI
/// (`gearman -N -b`, one job per stdin line). Payloads must not contain
/// newlines.
pub fn submit_background(port: u16, function: &str, payloads: &[String]) {
    let mut input = String::new();
    for p in payloads {
        assert!(!p.contains('\n'), "payload {p:?} has a newline");
        input.push_str(p);
        input.push('\n');
    }
    let port_s = port.to_string();
    let out = run(
        "gearman",
        &["-h", HOST, "-p", &port_s, "-N", "-b", "-f", function],
        Some(input.as_bytes()),
        Duration::from_secs(30),
    );
    out.assert_success(&format!(
        "gearman -N -b -f {function} ({} jobs) on port {port}",
        payloads.len()
    ));
}

/// `PREFIX-1` … `PREFIX-N`
pub fn payloads(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}-{i}")).collect()
}

/// A `gear` worker (clients/gear_peer_worker.py, TCP_NODELAY) on `port` for
/// `function`. COUNT 0: no limit, until `timeout_secs`.
#[allow(clippy::too_many_arguments)]
pub fn gear_worker(
    dir: &Path,
    label: &str,
    port: u16,
    function: &str,
    mode: &str,
    count: usize,
    timeout_secs: u64,
    outfile: Option<&Path>,
) -> BackgroundProcess {
    let script = client_script("gear_peer_worker.py");
    let port = port.to_string();
    let count = count.to_string();
    let timeout = timeout_secs.to_string();
    let mut args = vec![
        script.as_str(),
        HOST,
        &port,
        function,
        mode,
        &count,
        &timeout,
    ];
    let out = outfile.map(|p| p.to_string_lossy().into_owned());
    if let Some(out) = &out {
        args.push(out);
    }
    BackgroundProcess::spawn(label, "python3", &args, dir)
}

/// The payloads of the `job <handle> <payload>` lines a worker printed, in order.
pub fn jobs_run(worker: &BackgroundProcess) -> Vec<String> {
    job_lines(&worker.stdout())
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// `(handle, payload)` of each `job <handle> <payload>` line.
pub fn job_lines(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("job "))
        .filter_map(|rest| {
            let (handle, payload) = rest.split_once(' ')?;
            Some((handle.to_owned(), payload.to_owned()))
        })
        .collect()
}

/// How many times each payload occurs.
pub fn tally<'a>(items: impl IntoIterator<Item = &'a String>) -> BTreeMap<String, usize> {
    let mut map = BTreeMap::new();
    for i in items {
        *map.entry(i.clone()).or_insert(0) += 1;
    }
    map
}

/// Waits until `worker` has printed `ready` (its function is registered).
pub fn wait_ready(worker: &mut BackgroundProcess) {
    worker.wait_for_line("ready", Duration::from_secs(15));
}
