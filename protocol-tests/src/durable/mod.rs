//! Helpers for `tests/durability/`: durable queue stores under crash and restart.
//!
//! * [`Conn`]: one blocking Gearman connection (binary packets and admin text),
//!   built on [`crate::diff::wire`].
//! * [`Workers`]: worker threads that GRAB_JOB_UNIQ, record what they got and
//!   complete it.
//! * [`QueueStore`]: where a server keeps its queue ([`SqliteFile`],
//!   [`PostgresInstance`], [`RedisInstance`]): the server flags, and a count of the
//!   rows in it, read straight from the database.
//! * [`kill_server`] / [`terminate_server`]: SIGKILL / SIGTERM to a [`TestServer`]'s
//!   own child.
//! * [`launch`]: a gearboxd that may refuse to start (a store another server owns).
//!
//! Every wait is bounded; every process started here is ours and is stopped on drop.

mod full_disk;
mod owner;
mod paused;
mod safety;
mod stores;

pub use full_disk::*;
pub use owner::*;
pub use paused::*;
pub use safety::*;
pub use stores::*;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::diff::wire::{encode_request, parse_frames, Frame};
use crate::{
    free_port, try_run_command, unique_temp_dir, wait_until, ServerKind, TestServer, HOST,
};

pub const CAN_DO: u32 = 1;
pub const NOOP: u32 = 6;
pub const SUBMIT_JOB: u32 = 7;
pub const JOB_CREATED: u32 = 8;
pub const NO_JOB: u32 = 10;
pub const WORK_COMPLETE: u32 = 13;
pub const SUBMIT_JOB_BG: u32 = 18;
pub const ERROR: u32 = 19;
pub const GRAB_JOB_UNIQ: u32 = 30;
pub const JOB_ASSIGN_UNIQ: u32 = 31;
pub const SUBMIT_JOB_HIGH_BG: u32 = 32;
pub const SUBMIT_JOB_LOW_BG: u32 = 34;
pub const SUBMIT_JOB_EPOCH: u32 = 36;

/// How long one reply may take before a connection counts as dead.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// Job priority, numbered as in gearmand's queue tables (0 = HIGH).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Prio {
    High = 0,
    Normal = 1,
    Low = 2,
}

impl Prio {
    pub const ALL: [Prio; 3] = [Prio::High, Prio::Normal, Prio::Low];

    /// The background submit packet for this priority.
    pub fn bg_packet(self) -> u32 {
        match self {
            Prio::High => SUBMIT_JOB_HIGH_BG,
            Prio::Normal => SUBMIT_JOB_BG,
            Prio::Low => SUBMIT_JOB_LOW_BG,
        }
    }
}

/// Seconds since the epoch, now.
pub fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// One binary packet from the server.
#[derive(Clone, Debug)]
pub struct Packet {
    pub ptype: u32,
    pub body: Vec<u8>,
}

impl Packet {
    /// The body split into `n` arguments at the first `n - 1` NULs (the last one
    /// keeps any further NULs, as opaque data does).
    pub fn args(&self, n: usize) -> Vec<Vec<u8>> {
        self.body
            .splitn(n, |&b| b == 0)
            .map(<[u8]>::to_vec)
            .collect()
    }

    pub fn describe(&self) -> String {
        crate::diff::wire::render_frame(&Frame::Packet {
            magic: *b"\0RES",
            ptype: self.ptype,
            body: self.body.clone(),
        })
    }
}

/// A blocking connection to a job server on loopback.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    frames: Vec<Frame>,
}

impl Conn {
    pub fn connect(addr: &str) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            frames: Vec::new(),
        })
    }

    /// Sends one request packet.
    pub fn send(&mut self, ptype: u32, args: &[&[u8]]) -> io::Result<()> {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
        self.stream.write_all(&encode_request(ptype, &args))
    }

    /// Sends bytes as they are (several encoded requests at once, say).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next frame, waiting at most `timeout`. EOF and timeouts are errors.
    fn next_frame(&mut self, timeout: Duration) -> io::Result<Frame> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.frames.is_empty() {
                return Ok(self.frames.remove(0));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no reply in time"));
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
            self.frames = parse_frames(&mut self.buf);
        }
    }

    /// The next binary packet (a text line here is a protocol error).
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Packet> {
        match self.next_frame(timeout)? {
            Frame::Packet { ptype, body, .. } => Ok(Packet { ptype, body }),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected a packet, got {other:?}"),
            )),
        }
    }

    /// Sends an admin command and returns the lines of a listing reply (up to,
    /// not including, the `.` line), without line ends.
    pub fn admin_listing(&mut self, command: &str) -> io::Result<Vec<String>> {
        self.send_raw(format!("{command}\r\n").as_bytes())?;
        let mut lines = Vec::new();
        loop {
            match self.next_frame(REPLY_TIMEOUT)? {
                Frame::Text(line) => {
                    let line = String::from_utf8_lossy(&line)
                        .trim_end_matches(['\r', '\n'])
                        .to_owned();
                    if line == "." {
                        return Ok(lines);
                    }
                    lines.push(line);
                }
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("expected admin text, got {other:?}"),
                    ))
                }
            }
        }
    }
}

/// Submits a background job and waits for its reply: the handle, or the ERROR text.
pub fn submit_bg(
    conn: &mut Conn,
    prio: Prio,
    function: &str,
    unique: &[u8],
    data: &[u8],
) -> Result<Vec<u8>, String> {
    conn.send(prio.bg_packet(), &[function.as_bytes(), unique, data])
        .map_err(|e| e.to_string())?;
    created(conn)
}

/// Reads the reply to a submit: JOB_CREATED's handle, or the ERROR as text.
pub fn created(conn: &mut Conn) -> Result<Vec<u8>, String> {
    let p = conn.recv(REPLY_TIMEOUT).map_err(|e| e.to_string())?;
    match p.ptype {
        JOB_CREATED => Ok(p.body),
        _ => Err(p.describe()),
    }
}

/// `fn -> (total, running, workers)` from admin `status` (a fresh connection).
pub fn status(addr: &str) -> Result<BTreeMap<String, [u64; 3]>, String> {
    table::<3>(addr, "status")
}

/// `fn -> [high, normal, low]` queued jobs from admin `prioritystatus`.
pub fn priority_status(addr: &str) -> Result<BTreeMap<String, [u64; 3]>, String> {
    table::<4>(addr, "prioritystatus").map(|t| {
        t.into_iter()
            .map(|(f, v)| (f, [v[0], v[1], v[2]]))
            .collect()
    })
}

/// The `total` column of admin `status` for `function`; 0 if it is not listed.
pub fn status_total(addr: &str, function: &str) -> Result<u64, String> {
    Ok(status(addr)?.get(function).map_or(0, |v| v[0]))
}

/// Number of job lines in admin `show jobs`.
pub fn show_jobs_count(addr: &str) -> Result<usize, String> {
    let mut conn = Conn::connect(addr).map_err(|e| e.to_string())?;
    Ok(conn
        .admin_listing("show jobs")
        .map_err(|e| e.to_string())?
        .len())
}

fn table<const N: usize>(addr: &str, command: &str) -> Result<BTreeMap<String, [u64; N]>, String> {
    let mut conn = Conn::connect(addr).map_err(|e| format!("{command}: {e}"))?;
    let lines = conn
        .admin_listing(command)
        .map_err(|e| format!("{command}: {e}"))?;
    let mut out = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split('\t').collect();
        let parse = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        let mut values = [0u64; N];
        for (i, v) in values.iter_mut().enumerate() {
            *v = parse(i + 1).ok_or_else(|| format!("{command}: bad line {line:?}"))?;
        }
        out.insert(fields[0].to_owned(), values);
    }
    Ok(out)
}

/// Bytes as (lossy) UTF-8, for comparisons and messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A server of `kind` keeping its queue in `store`.
pub fn start(kind: ServerKind, store: &dyn QueueStore) -> TestServer {
    let args = store.server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestServer::start_under(&store.command_prefix(), kind, &args)
}

/// Waits (at most a minute) until admin `status` shows `total` jobs of `function`,
/// e.g. once a replay has brought them all back.
pub fn wait_status_total(addr: &str, function: &str, total: u64) {
    let what = format!("status to show {total} jobs of {function}");
    wait_until(&what, Duration::from_secs(60), || {
        match status_total(addr, function) {
            Ok(n) if n == total => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

/// Waits until `store` holds `rows` rows.
pub fn wait_rows(store: &dyn QueueStore, rows: u64, timeout: Duration) {
    let what = format!("the {} store to hold {rows} rows", store.name());
    wait_until(&what, timeout, || match store.rows() {
        Ok(n) if n == rows => Ok(()),
        other => Err(format!("{other:?}")),
    });
}

/// One background NORMAL submit (unique = data = `payload`) on a fresh connection,
/// waiting `wait` for the reply: `Ok(Ok)` JOB_CREATED, `Ok(Err(body))` ERROR,
/// `Err(conn)` no reply yet (a server holds JOB_CREATED until the row is
/// committed): the connection, to read the reply later.
pub fn try_submit(
    addr: &str,
    function: &str,
    payload: &str,
    wait: Duration,
) -> Result<Result<(), String>, Conn> {
    let mut conn = Conn::connect(addr).expect("the server accepts connections");
    let args: [&[u8]; 3] = [function.as_bytes(), payload.as_bytes(), payload.as_bytes()];
    conn.send(SUBMIT_JOB_BG, &args).expect("send");
    match conn.recv(wait) {
        Ok(p) if p.ptype == JOB_CREATED => Ok(Ok(())),
        Ok(p) if p.ptype == ERROR => Ok(Err(text(&p.body))),
        Ok(p) => panic!("unexpected reply {}", p.describe()),
        Err(_) => Err(conn),
    }
}

// ---------------------------------------------------------------------------------------
// Signals to our own server process
// ---------------------------------------------------------------------------------------

fn signal(server: &TestServer, sig: &str) {
    // The child is not reaped before this (nothing here calls is_running first),
    // so the pid is still ours.
    let pid = server.pid().to_string();
    let mut cmd = Command::new("kill");
    cmd.args(["-s", sig, &pid]);
    let out = try_run_command(cmd, None, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "kill -s {sig} {pid} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_exited(server: &mut TestServer, timeout: Duration, what: &str) {
    wait_until(what, timeout, || {
        if server.is_running() {
            Err(format!(
                "{} pid {} still running",
                server.kind().name(),
                server.pid()
            ))
        } else {
            Ok(())
        }
    });
}

/// SIGKILL to the server (a crash), then waits until it is gone.
pub fn kill_server(server: &mut TestServer) {
    signal(server, "KILL");
    wait_exited(server, Duration::from_secs(10), "the killed server to exit");
}

/// SIGTERM to the server (a clean stop), then waits until it has exited.
pub fn terminate_server(server: &mut TestServer) {
    signal(server, "TERM");
    wait_exited(
        server,
        Duration::from_secs(30),
        "the server to exit after SIGTERM",
    );
}

// ---------------------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------------------

/// A job a worker was given.
#[derive(Clone, Debug)]
pub struct Ran {
    pub function: Vec<u8>,
    pub unique: Vec<u8>,
    pub data: Vec<u8>,
    /// Epoch seconds when the assignment arrived.
    pub at: u64,
}

/// Worker threads on one server: each registers `functions`, grabs with
/// GRAB_JOB_UNIQ, records the job and completes it. A worker ends when told to,
/// at its deadline, or when the server goes away (a crash).
pub struct Workers {
    stop: Arc<AtomicBool>,
    ran: Arc<Mutex<Vec<Ran>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    pub fn start(addr: &str, functions: &[&str], count: usize, deadline: Duration) -> Workers {
        let stop = Arc::new(AtomicBool::new(false));
        let ran = Arc::new(Mutex::new(Vec::new()));
        let functions: Vec<String> = functions.iter().map(|f| f.to_string()).collect();
        let threads = (0..count)
            .map(|_| {
                let (addr, functions) = (addr.to_owned(), functions.clone());
                let (stop, ran) = (stop.clone(), ran.clone());
                let until = Instant::now() + deadline;
                thread::spawn(move || {
                    let _ = work(&addr, &functions, &stop, &ran, until);
                })
            })
            .collect();
        Workers { stop, ran, threads }
    }

    /// What has run so far.
    pub fn ran(&self) -> Vec<Ran> {
        self.ran.lock().unwrap().clone()
    }

    /// How many jobs have run so far.
    pub fn count(&self) -> usize {
        self.ran.lock().unwrap().len()
    }

    /// Stops the workers, waits for them, and returns everything they ran.
    pub fn finish(self) -> Vec<Ran> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        let ran = self.ran.lock().unwrap();
        ran.clone()
    }
}

fn work(
    addr: &str,
    functions: &[String],
    stop: &AtomicBool,
    ran: &Mutex<Vec<Ran>>,
    until: Instant,
) -> io::Result<()> {
    let mut conn = Conn::connect(addr)?;
    for f in functions {
        conn.send(CAN_DO, &[f.as_bytes()])?;
    }
    conn.send(GRAB_JOB_UNIQ, &[])?;
    while !stop.load(Ordering::SeqCst) && Instant::now() < until {
        let p = conn.recv(REPLY_TIMEOUT)?;
        match p.ptype {
            JOB_ASSIGN_UNIQ => {
                let a = p.args(4);
                ran.lock().unwrap().push(Ran {
                    function: a[1].clone(),
                    unique: a[2].clone(),
                    data: a[3].clone(),
                    at: now_epoch(),
                });
                // Complete and ask for the next job in one write.
                let mut out = encode_request(WORK_COMPLETE, &[a[0].clone(), Vec::new()]);
                out.extend(encode_request(GRAB_JOB_UNIQ, &[]));
                conn.send_raw(&out)?;
            }
            NO_JOB => {
                thread::sleep(Duration::from_millis(20));
                conn.send(GRAB_JOB_UNIQ, &[])?;
            }
            NOOP => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("worker got {}", p.describe()),
                ))
            }
        }
    }
    Ok(())
}

/// One worker that takes jobs one at a time, in the order the server hands them
/// out, until it has `count` of them or `timeout` passes.
pub fn drain_in_order(addr: &str, functions: &[&str], count: usize, timeout: Duration) -> Vec<Ran> {
    let mut conn = Conn::connect(addr).expect("worker connects");
    for f in functions {
        conn.send(CAN_DO, &[f.as_bytes()]).expect("CAN_DO");
    }
    let deadline = Instant::now() + timeout;
    let mut ran = Vec::new();
    while ran.len() < count && Instant::now() < deadline {
        conn.send(GRAB_JOB_UNIQ, &[]).expect("GRAB_JOB_UNIQ");
        let p = conn.recv(REPLY_TIMEOUT).expect("reply to GRAB_JOB_UNIQ");
        match p.ptype {
            JOB_ASSIGN_UNIQ => {
                let a = p.args(4);
                ran.push(Ran {
                    function: a[1].clone(),
                    unique: a[2].clone(),
                    data: a[3].clone(),
                    at: now_epoch(),
                });
                conn.send(WORK_COMPLETE, &[&a[0], b""])
                    .expect("WORK_COMPLETE");
            }
            NO_JOB => thread::sleep(Duration::from_millis(50)),
            _ => panic!("worker got {}", p.describe()),
        }
    }
    ran
}

// ---------------------------------------------------------------------------------------
// Load: clients that submit background jobs until the server dies
// ---------------------------------------------------------------------------------------

/// The `n`th job of client `c`: payload (distinct across all jobs), unique, priority.
pub type JobOf = fn(usize, usize) -> (String, Vec<u8>, Prio);

/// What one loading client saw.
#[derive(Default)]
pub struct ClientLog {
    /// Submits written (answered or not).
    pub sent: usize,
    /// Payloads whose JOB_CREATED arrived.
    pub acked: Vec<String>,
    /// ERROR replies, as text.
    pub refused: Vec<String>,
    /// Why the client stopped (normally: the server was killed).
    pub end: String,
}

/// Submits `job(client, 0..)` to `function` in pipelined batches of `batch`,
/// reading each batch's replies (in request order) before the next, until `stop`,
/// `until`, `cap` submits, or the connection dies. Counts acknowledgements in `acks`.
#[allow(clippy::too_many_arguments)]
pub fn load_client(
    addr: &str,
    function: &str,
    job: JobOf,
    client: usize,
    (batch, cap): (usize, usize),
    acks: &AtomicUsize,
    stop: &AtomicBool,
    until: Instant,
) -> ClientLog {
    let mut log = ClientLog::default();
    let mut conn = match Conn::connect(addr) {
        Ok(c) => c,
        Err(e) => {
            log.end = format!("connect: {e}");
            return log;
        }
    };
    'load: while !stop.load(Ordering::SeqCst) && Instant::now() < until && log.sent < cap {
        let mut out = Vec::new();
        let mut payloads = Vec::new();
        for n in log.sent..log.sent + batch {
            let (payload, unique, prio) = job(client, n);
            let args = [
                function.as_bytes().to_vec(),
                unique,
                payload.clone().into_bytes(),
            ];
            out.extend(encode_request(prio.bg_packet(), &args));
            payloads.push(payload);
        }
        log.sent += batch;
        if let Err(e) = conn.send_raw(&out) {
            log.end = format!("write: {e}");
            break;
        }
        for payload in payloads {
            match conn.recv(REPLY_TIMEOUT) {
                Ok(p) if p.ptype == JOB_CREATED => {
                    log.acked.push(payload);
                    acks.fetch_add(1, Ordering::SeqCst);
                }
                Ok(p) if p.ptype == ERROR => log.refused.push(p.describe()),
                Ok(p) => panic!("client {client}: unexpected reply {}", p.describe()),
                Err(e) => {
                    log.end = format!("read: {e}");
                    break 'load;
                }
            }
        }
    }
    if log.end.is_empty() {
        log.end = "stopped".into();
    }
    log
}

/// What [`load_and_crash`] saw.
pub struct CrashLoad {
    /// One log per client, in client order.
    pub logs: Vec<ClientLog>,
    /// Clients still submitting when the server was killed.
    pub submitting: usize,
}

/// Runs `clients` [`load_client`]s against `server` and kills it (SIGKILL) once
/// `target` submits were acknowledged (or `time` passed, or every client stopped),
/// while the clients are still submitting. Each client stops after `target`
/// submits of its own at most.
pub fn load_and_crash(
    server: &mut TestServer,
    function: &'static str,
    job: JobOf,
    (clients, batch, target): (usize, usize, usize),
    time: Duration,
) -> CrashLoad {
    let acks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let until = Instant::now() + time;
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (addr, acks, stop) = (server.addr(), acks.clone(), stop.clone());
            let limits = (batch, target);
            thread::spawn(move || load_client(&addr, function, job, c, limits, &acks, &stop, until))
        })
        .collect();
    while acks.load(Ordering::SeqCst) < target
        && Instant::now() < until
        && threads.iter().any(|c| !c.is_finished())
    {
        thread::sleep(Duration::from_millis(5));
    }
    let submitting = threads.iter().filter(|c| !c.is_finished()).count();
    kill_server(server);
    stop.store(true, Ordering::SeqCst);
    let logs = threads
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();
    CrashLoad { logs, submitting }
}

/// Runs `workers` workers for `function` until every payload in `must_run` has
/// run (here or in `ran_before`), admin `status` shows no job of `function` and
/// `store` holds no row, or `timeout` passes. Returns what they ran and, if the
/// end was not reached, the last state seen.
pub fn drain_until_empty(
    addr: &str,
    store: &dyn QueueStore,
    function: &str,
    (must_run, ran_before): (&BTreeSet<String>, &[Ran]),
    workers: usize,
    timeout: Duration,
) -> (Vec<Ran>, String) {
    let workers = Workers::start(addr, &[function], workers, timeout);
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let ran: BTreeSet<String> = ran_before
            .iter()
            .chain(&workers.ran())
            .map(|r| text(&r.data))
            .collect();
        let missing = must_run.iter().filter(|p| !ran.contains(*p)).count();
        let total = status_total(addr, function);
        let rows = store.rows();
        if missing == 0 && total == Ok(0) && rows == Ok(0) {
            last.clear();
            break;
        }
        last = format!("{missing} jobs not run yet, status total {total:?}, rows {rows:?}");
        if Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    (workers.finish(), last)
}
