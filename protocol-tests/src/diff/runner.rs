//! Runs cases against gearmand and gearboxd (or an external target), compares the
//! normalised transcripts and gives each case a verdict.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::case::Case;
use super::cases::KNOWN_BUGS;
use super::normalise::{canonicalise_handles, issued_handles, normalise_with, Normalised};
use super::session::{Session, Transcript};
use crate::{manifest_dir, ServerKind, TestServer};

/// What happened to one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Identical,
    /// Differs exactly as declared under this compat.md id.
    IntendedDeviation(String),
    Failed(String),
    /// Failed, but listed in [`KNOWN_BUGS`] (with that explanation).
    KnownBug(String),
    /// Not run (e.g. needs server flags in `--target` mode).
    Skipped(String),
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Identical => "identical",
            Verdict::IntendedDeviation(_) => "intended deviation",
            Verdict::Failed(_) => "FAILED",
            Verdict::KnownBug(_) => "known bug",
            Verdict::Skipped(_) => "skipped",
        }
    }
}

/// The result of one case, with both normalised transcripts.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub name: String,
    pub category: &'static str,
    pub verdict: Verdict,
    pub reference: Vec<String>,
    pub other: Vec<String>,
    /// What gearboxd was expected to produce, for deviation cases.
    pub expected: Option<Vec<String>>,
    pub steps: Vec<String>,
    pub other_name: String,
    pub elapsed: Duration,
    /// Set when a KNOWN_BUGS case no longer fails.
    pub note: Option<String>,
}

/// The uname nodename (gearmand's default handle prefix is `H:` + this).
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// gearmand's default job handle prefix on this machine.
pub fn default_prefix() -> String {
    format!("H:{}", hostname())
}

fn compat_ids() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let path = manifest_dir().join("..").join("docs").join("compat.md");
        fs::read_to_string(&path).unwrap_or_default()
    })
}

/// Does docs/compat.md have a paragraph `**<id>.`?
pub fn compat_id_exists(id: &str) -> bool {
    compat_ids().contains(&format!("**{id}."))
}

/// Where the "other" side of a comparison comes from.
#[derive(Clone, Debug)]
pub enum Mode {
    /// A fresh gearboxd per case (the cargo test).
    Gearboxd,
    /// An already running server (`protocol-diff --target`). With `reset`, every job
    /// is cancelled and every function dropped on it before each case.
    Target { addr: SocketAddr, reset: bool },
}

/// Resolves `HOST:PORT`.
pub fn parse_target(s: &str) -> Result<SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s} resolves to no address"))
}

fn run_on(kind: ServerKind, case: &Case, prefix: &str) -> Transcript {
    let mut args: Vec<String> = Vec::new();
    if kind == ServerKind::Gearboxd {
        args.extend(
            ["--job-handle-prefix", prefix, "--verbose", "INFO"]
                .iter()
                .map(|s| s.to_string()),
        );
    }
    args.extend(case.flags.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = start_verified(kind, &refs);
    let addr: SocketAddr = server.addr().parse().expect("server address");
    let transcript = Session::new(addr, prefix).run(case);
    drop(server);
    transcript
}

/// Starts a server and makes sure the one answering on its port is our child: two
/// servers started at once can be handed the same "free" port, and then the loser's
/// readiness probe may have reached the winner. Retries up to 4 times.
fn start_verified(kind: ServerKind, args: &[&str]) -> TestServer {
    let mut last = String::new();
    for _ in 0..4 {
        let mut server = TestServer::start_with_args(kind, args);
        let addr: SocketAddr = server.addr().parse().expect("server address");
        prepare(kind, addr);
        let pid = admin_exchange(addr, &["getpid".to_owned()]);
        let expected = format!("OK {}\n", server.pid());
        match pid {
            Ok(replies) if replies[0] == expected && server.is_running() => {
                if kind == ServerKind::Gearmand {
                    align_gearmand_threads(addr);
                }
                // The getpid connection must be gone before the case starts.
                thread::sleep(Duration::from_millis(100));
                return server;
            }
            other => last = format!("{other:?}, expected {expected:?}"),
        }
    }
    panic!("{} on a verified port did not start: {last}", kind.name());
}

fn prepare(kind: ServerKind, addr: SocketAddr) {
    if kind == ServerKind::Gearmand {
        warm_up(addr);
    }
    quiesce(addr, Duration::from_secs(10));
}

/// gearmand's I/O threads, which it hands accepted connections to in turn.
const GEARMAND_THREADS: usize = 4;

/// Makes the next connection gearmand accepts land on its first I/O thread.
/// `workers` lists connections thread by thread, so a case's first 4
/// connections are then listed in connect order, as gearboxd lists them (C16).
/// Counting the connections made before (the readiness probe, the warm-up, the
/// quiesce and getpid checks) is not enough: a retried probe shifts the turn,
/// and the case then fails on a `workers` listing in another order. So this
/// asks: 4 probes name themselves with SET_CLIENT_ID, `workers` shows which
/// of them is on the first thread, and as many connections as it takes to
/// come round to it again are made and closed. Best effort: a listing it
/// cannot read leaves the turn as it is.
fn align_gearmand_threads(addr: SocketAddr) {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    let connect = |id: &str| -> Option<TcpStream> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut req = super::wire::encode_request(22, &[id.as_bytes().to_vec()]);
        req.extend(super::wire::encode_request(16, &[b"x".to_vec()]));
        s.write_all(&req).ok()?;
        // ECHO_RES: the SET_CLIENT_ID before it has been handled.
        let mut echo = [0u8; 13];
        s.read_exact(&mut echo).ok()?;
        Some(s)
    };
    let probes: Option<Vec<TcpStream>> = (0..GEARMAND_THREADS)
        .map(|i| connect(&format!("align-{i}")))
        .collect();
    let Some(mut probes) = probes else { return };
    if probes[0].write_all(b"workers\r\n").is_err() {
        return;
    }
    let Ok(reader) = probes[0].try_clone() else {
        return;
    };
    let mut first_listed = None;
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { return };
        if line == "." {
            break;
        }
        if first_listed.is_none() {
            first_listed = (0..GEARMAND_THREADS).find(|i| line.contains(&format!(" align-{i} ")));
        }
    }
    let Some(first) = first_listed else { return };
    // Probe `first` is on thread 0, so probe 0 is on thread (4 - first) % 4,
    // and so is the next connection.
    let on_thread = (GEARMAND_THREADS - first) % GEARMAND_THREADS;
    drop(probes);
    for _ in 0..(GEARMAND_THREADS - on_thread) % GEARMAND_THREADS {
        drop(connect("align-turn"));
    }
}

/// Accepting a TCP connection only shows the listener exists; wait until the server
/// actually answers an ECHO_REQ on a new connection (at most 10 s) so the first step of
/// a case is not slowed down by the server's start-up.
fn warm_up(addr: SocketAddr) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = super::wire::encode_request(16, &[b"warm-up".to_vec()]);
            let mut buf = [0u8; 19];
            if s.write_all(&req).is_ok() && s.read_exact(&mut buf).is_ok() {
                return;
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sends admin lines one at a time and returns each reply (a listing up to its `.`
/// line, or one line), with a 5 s timeout per reply.
fn admin_exchange(addr: SocketAddr, lines: &[String]) -> Result<Vec<String>, String> {
    use std::io::{BufRead, BufReader, Write};
    let lines: Vec<&String> = lines.iter().filter(|l| !l.contains('\u{fffd}')).collect();
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut replies = Vec::new();
    for line in lines {
        writer
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| format!("{line}: {e}"))?;
        let listing = matches!(line.as_str(), "status" | "show jobs");
        let mut reply = String::new();
        loop {
            let mut raw = Vec::new();
            let n = reader
                .read_until(b'\n', &mut raw)
                .map_err(|e| format!("{line}: {e}"))?;
            if n == 0 {
                return Err(format!("{line}: connection closed"));
            }
            // Lossy: a function name that is not UTF-8 cannot be dropped, which is fine.
            let l = String::from_utf8_lossy(&raw);
            let done = !listing || l == ".\n" || l.starts_with("ERR ");
            reply.push_str(&l);
            if done {
                break;
            }
        }
        replies.push(reply);
    }
    Ok(replies)
}

/// Cancels every job and drops every function on an external server, so a case
/// starts from an empty server (`protocol-diff --target … --reset`).
pub fn reset_target(addr: SocketAddr) -> Result<(), String> {
    let replies = admin_exchange(addr, &["show jobs".to_owned()])?;
    let cancels: Vec<String> = replies[0]
        .lines()
        .filter_map(|l| l.split('\t').next())
        .filter(|h| !h.is_empty() && *h != ".")
        .map(|h| format!("cancel job {h}"))
        .collect();
    admin_exchange(addr, &cancels)?;
    let replies = admin_exchange(addr, &["status".to_owned()])?;
    let functions: Vec<String> = replies[0]
        .lines()
        .filter_map(|l| l.split('\t').next())
        .filter(|f| !f.is_empty() && *f != "." && !f.contains(' '))
        .map(str::to_owned)
        .collect();
    reap_jobs(addr, &functions)?;
    quiesce(addr, Duration::from_secs(2));
    let drops: Vec<String> = functions
        .iter()
        .map(|f| format!("drop function {f}"))
        .collect();
    admin_exchange(addr, &drops)?;
    Ok(())
}

/// gearmand keeps cancelled jobs until a worker's GRAB reaches them (and a dropped
/// function's orphans confuse a re-created one), so: register every function and
/// GRAB until NO_JOB, failing whatever is handed out. At most 10 000 grabs.
fn reap_jobs(addr: SocketAddr, functions: &[String]) -> Result<(), String> {
    use super::wire::encode_request;
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let read_packet = |s: &mut std::net::TcpStream| -> Result<(u32, Vec<u8>), String> {
        let mut header = [0u8; 12];
        s.read_exact(&mut header)
            .map_err(|e| format!("reaping: {e}"))?;
        let ptype = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let size = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        let mut body = vec![0u8; size as usize];
        s.read_exact(&mut body)
            .map_err(|e| format!("reaping: {e}"))?;
        Ok((ptype, body))
    };
    let mut grabs = 0;
    for f in functions {
        let mut out = encode_request(3, &[]);
        out.extend(encode_request(1, &[f.as_bytes().to_vec()]));
        s.write_all(&out).map_err(|e| e.to_string())?;
        loop {
            grabs += 1;
            if grabs > 10_000 {
                return Err("more than 10 000 jobs to reap".to_owned());
            }
            s.write_all(&encode_request(9, &[]))
                .map_err(|e| e.to_string())?;
            let (ptype, body) = read_packet(&mut s)?;
            match ptype {
                11 => {
                    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                    let fail = encode_request(14, &[body[..end].to_vec()]);
                    s.write_all(&fail).map_err(|e| e.to_string())?;
                }
                10 => break,
                other => return Err(format!("reaping: unexpected packet type {other}")),
            }
        }
    }
    Ok(())
}

/// Waits (at most `limit`) until `workers` lists only the asking connection, i.e. the
/// server has forgotten the probe and warm-up connections.
fn quiesce(addr: SocketAddr, limit: Duration) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + limit;
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    while Instant::now() < deadline {
        if s.write_all(b"workers\r\n").is_err() {
            break;
        }
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        while !reply.ends_with(b"\n.\n") && !reply.starts_with(b".\n") {
            match s.read(&mut buf) {
                Ok(n) if n > 0 => reply.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        if reply.iter().filter(|&&b| b == b'\n').count() <= 2 {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs one case and judges it.
pub fn run_case(case: &Case, mode: &Mode) -> Outcome {
    let started = Instant::now();
    let prefix = default_prefix();
    let mut block = 0;
    let mut steps: Vec<String> = Vec::new();
    for s in &case.steps {
        if let super::case::Step::Settle { .. } = s {
            block += 1;
            steps.push(format!("{} -> end of block {block}", s.describe()));
        } else {
            steps.push(s.describe());
        }
    }
    steps.push(format!("(final settle) -> end of block {}", block + 1));
    let other_name = match mode {
        Mode::Gearboxd => "gearboxd".to_owned(),
        Mode::Target { addr, .. } => format!("target {addr}"),
    };
    let mut outcome = Outcome {
        name: case.name.clone(),
        category: case.category,
        verdict: Verdict::Identical,
        reference: Vec::new(),
        other: Vec::new(),
        expected: None,
        steps,
        other_name,
        elapsed: Duration::ZERO,
        note: None,
    };
    if let Mode::Target { .. } = mode {
        if let Some(why) = &case.local_only {
            outcome.verdict = Verdict::Skipped(why.clone());
            return outcome;
        }
        if !case.flags.is_empty() {
            outcome.verdict = Verdict::Skipped(format!(
                "needs server flags {:?}, which cannot be given to an external server",
                case.flags
            ));
            return outcome;
        }
    }
    if let Some(dev) = &case.deviation {
        if !compat_id_exists(&dev.id) {
            outcome.verdict = Verdict::Failed(format!(
                "deviation id {} is not a paragraph (**{}.) of docs/compat.md",
                dev.id, dev.id
            ));
            return outcome;
        }
        if dev.overrides.is_empty() {
            outcome.verdict = Verdict::Failed(format!(
                "deviation {} declares no expected gearboxd frames",
                dev.id
            ));
            return outcome;
        }
    }

    let canonical = matches!(mode, Mode::Target { .. });
    if let Mode::Target { addr, reset: true } = mode {
        if let Err(e) = reset_target(*addr) {
            outcome.verdict = Verdict::Failed(format!("could not reset the target: {e}"));
            return outcome;
        }
        // Let the target forget the reset connections (bounded: other clients of the
        // target may keep connections open).
        quiesce(*addr, Duration::from_secs(2));
    }
    let (reference, other) = thread::scope(|s| {
        let gm = s.spawn(|| run_on(ServerKind::Gearmand, case, &prefix));
        let other = match mode {
            Mode::Gearboxd => run_on(ServerKind::Gearboxd, case, &prefix),
            Mode::Target { addr, .. } => Session::new(*addr, &prefix).run(case),
        };
        (gm.join().expect("gearmand session panicked"), other)
    });
    let mut ref_n = normalise_with(&reference, canonical);
    let mut other_n = normalise_with(&other, canonical);
    let ref_handles = issued_handles(&reference);
    if canonical {
        canonicalise_handles(&ref_handles, &mut ref_n);
        canonicalise_handles(&issued_handles(&other), &mut other_n);
    }
    outcome.reference = ref_n.lines();
    outcome.other = other_n.lines();

    let mut problems: Vec<String> = Vec::new();
    for note in &reference.notes {
        problems.push(format!("gearmand: {note}"));
    }
    for note in &other.notes {
        problems.push(format!("{}: {note}", outcome.other_name));
    }

    let mut verdict = if !problems.is_empty() {
        Verdict::Failed(problems.join("; "))
    } else {
        match &case.deviation {
            None if ref_n == other_n => Verdict::Identical,
            None => Verdict::Failed("transcripts differ".to_owned()),
            Some(dev) => {
                // Overrides name gearmand's handles (`$H:n`): build the expectation
                // on gearmand's own handles, then rename like gearmand's transcript.
                let mut expected =
                    apply_overrides(&normalise_with(&reference, canonical), case, &prefix);
                if canonical {
                    // Handles only the overrides mention come after gearmand's own.
                    let mut handles = ref_handles.clone();
                    for line in expected.lines() {
                        for h in prefixed_handles(&line, &prefix) {
                            if !handles.contains(&h) {
                                handles.push(h);
                            }
                        }
                    }
                    canonicalise_handles(&handles, &mut expected);
                }
                outcome.expected = Some(expected.lines());
                if other_n == expected && expected != ref_n {
                    Verdict::IntendedDeviation(dev.id.clone())
                } else if canonical && other_n == ref_n {
                    // An external server may be gearmand itself.
                    Verdict::Identical
                } else if other_n == ref_n {
                    Verdict::Failed(format!(
                        "declared deviation {} not observed: gearboxd behaved like gearmand",
                        dev.id
                    ))
                } else if expected == ref_n {
                    Verdict::Failed(format!(
                        "deviation {} overrides do not change gearmand's transcript",
                        dev.id
                    ))
                } else {
                    Verdict::Failed(format!(
                        "gearboxd differs from gearmand other than as declared under {}",
                        dev.id
                    ))
                }
            }
        }
    };
    if let Some((_, why)) = KNOWN_BUGS.iter().find(|(n, _)| *n == case.name) {
        match verdict {
            Verdict::Failed(_) => verdict = Verdict::KnownBug(why.to_string()),
            // An external target may be gearmand itself: no advice then.
            _ if canonical => {}
            _ => {
                outcome.note = Some(format!(
                    "listed in KNOWN_BUGS ({why}) but did not fail: remove it from the list"
                ))
            }
        }
    }
    outcome.verdict = verdict;
    outcome.elapsed = started.elapsed();
    outcome
}

/// Every `<prefix>:<digits>` in `line`, in order.
fn prefixed_handles(line: &str, prefix: &str) -> Vec<String> {
    let needle = format!("{prefix}:");
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(pos) = rest.find(&needle) {
        let after = &rest[pos + needle.len()..];
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            out.push(format!("{needle}{digits}"));
        }
        rest = after;
    }
    out
}

fn apply_overrides(reference: &Normalised, case: &Case, prefix: &str) -> Normalised {
    let mut expected = reference.clone();
    let dev = case.deviation.as_ref().expect("deviation");
    for o in &dev.overrides {
        let block = &mut expected.blocks[o.block - 1];
        let frames: Vec<String> = o.frames.iter().map(|f| f.replace("$H", prefix)).collect();
        if frames.is_empty() {
            block.remove(&o.conn);
        } else {
            block.insert(o.conn, frames);
        }
    }
    expected
}

/// Runs `cases` on `jobs` threads (each case itself runs both servers at once) and
/// returns the outcomes in case order. `progress` is called as each case finishes.
pub fn run_cases(
    cases: &[Case],
    mode: &Mode,
    jobs: usize,
    progress: &(dyn Fn(&Outcome) + Sync),
) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; cases.len()]);
    thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = cases.get(i) else { break };
                let outcome = run_case(case, mode);
                progress(&outcome);
                results.lock().expect("results lock")[i] = Some(outcome);
            });
        }
    });
    results
        .into_inner()
        .expect("results lock")
        .into_iter()
        .map(|o| o.expect("every case ran"))
        .collect()
}

/// Number of parallel cases: `$PROTOCOL_DIFF_JOBS`, else 4.
pub fn default_jobs() -> usize {
    std::env::var("PROTOCOL_DIFF_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(4)
}

/// A line diff (longest common subsequence): ` ` common, `-` only in `a`, `+` only in `b`.
pub fn diff_lines(a: &[String], b: &[String]) -> Vec<String> {
    let n = a.len();
    let m = b.len();
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(format!("  {}", a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+ {}", b[j]));
            j += 1;
        } else {
            out.push(format!("- {}", a[i]));
            i += 1;
        }
    }
    out
}

/// Everything about one outcome: steps, both transcripts, and the diff.
pub fn describe_outcome(o: &Outcome) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "=== case {} [{}]: {} ===",
        o.name,
        o.category,
        o.verdict.label()
    );
    match &o.verdict {
        Verdict::Failed(why) | Verdict::KnownBug(why) | Verdict::Skipped(why) => {
            let _ = writeln!(s, "reason: {why}");
        }
        Verdict::IntendedDeviation(id) => {
            let _ = writeln!(s, "compat id: {id}");
        }
        Verdict::Identical => {}
    }
    let _ = writeln!(s, "--- steps ---");
    for st in &o.steps {
        let _ = writeln!(s, "  {st}");
    }
    let _ = writeln!(s, "--- gearmand ---");
    for l in &o.reference {
        let _ = writeln!(s, "  {l}");
    }
    let _ = writeln!(s, "--- {} ---", o.other_name);
    for l in &o.other {
        let _ = writeln!(s, "  {l}");
    }
    let (label, base) = match &o.expected {
        Some(exp) => ("expected for gearboxd (-) vs observed (+)", exp),
        None => ("gearmand (-) vs other (+)", &o.reference),
    };
    if *base != o.other {
        let _ = writeln!(s, "--- diff: {label} ---");
        for l in diff_lines(base, &o.other) {
            let _ = writeln!(s, "{l}");
        }
    }
    s
}

/// The summary table: totals, per verdict and per category.
pub fn summary(outcomes: &[Outcome], wall: Duration) -> String {
    let mut s = String::new();
    let count = |f: &dyn Fn(&Verdict) -> bool| outcomes.iter().filter(|o| f(&o.verdict)).count();
    let identical = count(&|v| matches!(v, Verdict::Identical));
    let deviation = count(&|v| matches!(v, Verdict::IntendedDeviation(_)));
    let failed = count(&|v| matches!(v, Verdict::Failed(_)));
    let known = count(&|v| matches!(v, Verdict::KnownBug(_)));
    let skipped = count(&|v| matches!(v, Verdict::Skipped(_)));
    let _ = writeln!(
        s,
        "differential conformance summary ({:.1} s)",
        wall.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "cases run: {}  identical: {identical}  intended deviation: {deviation}  failed: {failed}  known bug: {known}  skipped: {skipped}",
        outcomes.len() - skipped
    );
    let mut cats: BTreeMap<&str, [usize; 5]> = BTreeMap::new();
    for o in outcomes {
        let e = cats.entry(o.category).or_default();
        let idx = match o.verdict {
            Verdict::Identical => 0,
            Verdict::IntendedDeviation(_) => 1,
            Verdict::Failed(_) => 2,
            Verdict::KnownBug(_) => 3,
            Verdict::Skipped(_) => 4,
        };
        e[idx] += 1;
    }
    let _ = writeln!(
        s,
        "{:<14} {:>5} {:>9} {:>9} {:>6} {:>9} {:>7}",
        "category", "cases", "identical", "deviation", "failed", "known-bug", "skipped"
    );
    for (cat, c) in &cats {
        let _ = writeln!(
            s,
            "{:<14} {:>5} {:>9} {:>9} {:>6} {:>9} {:>7}",
            cat,
            c.iter().sum::<usize>(),
            c[0],
            c[1],
            c[2],
            c[3],
            c[4]
        );
    }
    // Ordered by the number of the compat id (C2 before C11), then case name.
    let ids: BTreeSet<(u32, String, String)> = outcomes
        .iter()
        .filter_map(|o| match &o.verdict {
            Verdict::IntendedDeviation(id) => {
                let n = id.trim_start_matches('C').parse().unwrap_or(u32::MAX);
                Some((n, id.clone(), o.name.clone()))
            }
            _ => None,
        })
        .collect();
    if !ids.is_empty() {
        let _ = writeln!(s, "intended deviations exercised:");
        for (_, id, name) in ids {
            let _ = writeln!(s, "  {id}: {name}");
        }
    }
    for o in outcomes {
        match &o.verdict {
            Verdict::KnownBug(why) => {
                let _ = writeln!(s, "known bug: {} ({why})", o.name);
            }
            Verdict::Failed(why) => {
                let _ = writeln!(s, "FAILED: {} ({why})", o.name);
            }
            _ => {}
        }
        if let Some(note) = &o.note {
            let _ = writeln!(s, "note: {}: {note}", o.name);
        }
    }
    s
}
