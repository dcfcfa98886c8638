//! Client loops: background submits, foreground round trips, coalescing submits.
//!
//! Every loop keeps up to `window` requests in flight on its connection: it
//! tops the window up, sends the whole batch in one write, then handles every
//! reply that has arrived. A window of 1 is one request at a time.

use crate::conn::{Conn, Target};
use crate::stats::Samples;
use crate::{err, Result};
use bytes::Bytes;
use gearbox_proto::{Packet, PacketType};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How each job's unique is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueMode {
    /// An empty unique: never coalesced (what Perl and Python clients send).
    None,
    /// A 36-character UUID-shaped unique, different for every job (what
    /// libgearman sends).
    Uuid,
}

impl std::str::FromStr for UniqueMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(UniqueMode::None),
            "uuid" => Ok(UniqueMode::Uuid),
            _ => Err(format!("--unique is none or uuid, not `{s}`")),
        }
    }
}

impl std::fmt::Display for UniqueMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UniqueMode::None => "none",
            UniqueMode::Uuid => "uuid",
        })
    }
}

/// What every job of a run looks like.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub function: String,
    pub payload: Bytes,
    pub unique: UniqueMode,
    /// Differs between runs, so uniques of one run never meet another's.
    pub nonce: u32,
}

impl JobSpec {
    /// Writes job `idx`'s unique into `buf` (cleared first).
    pub fn unique_for(&self, idx: u64, buf: &mut String) {
        buf.clear();
        if self.unique == UniqueMode::Uuid {
            write_uuid(self.nonce, idx, buf);
        }
    }
}

/// A 36-character unique in UUID layout: 8-4-4-4-12 hex digits.
pub fn write_uuid(nonce: u32, idx: u64, buf: &mut String) {
    let _ = write!(
        buf,
        "{nonce:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (idx >> 48) & 0xffff,
        (idx >> 36) & 0xfff,
        (idx >> 24) & 0xfff,
        idx & 0xffff_ffff_ffff
    );
}

/// How far a phase has got; read by the deadline handler and by the memory
/// scenario's per-slice rates.
#[derive(Debug)]
pub struct Progress {
    pub done: AtomicU64,
    pub total: u64,
    /// When the count reached each tenth of `total` (index 0 = 10%).
    tenths: Mutex<[Option<Instant>; 10]>,
}

impl Progress {
    pub fn new(total: u64) -> Progress {
        Progress {
            done: AtomicU64::new(0),
            total,
            tenths: Mutex::new([None; 10]),
        }
    }

    /// Counts `n` more done; returns the new total.
    pub fn add(&self, n: u64) -> u64 {
        if n == 0 {
            return self.done();
        }
        let before = self.done.fetch_add(n, Ordering::Relaxed);
        let after = before + n;
        let now = Instant::now();
        let mut tenths = None;
        for i in 0..10 {
            let mark = self.total * (i as u64 + 1) / 10;
            if before < mark && mark <= after {
                let t = tenths.get_or_insert_with(|| self.tenths.lock().expect("progress lock"));
                t[i] = Some(now);
            }
        }
        after
    }

    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub fn tenths(&self) -> [Option<Instant>; 10] {
        *self.tenths.lock().expect("progress lock")
    }
}

/// Replies a client loop saw that it did not expect.
#[derive(Debug, Default, Clone)]
pub struct ClientStats {
    /// Jobs accepted (JOB_CREATED).
    pub created: u64,
    /// Jobs finished (foreground loops only).
    pub completed: u64,
    /// ERROR replies to submits.
    pub errors: u64,
    pub first_error: Option<String>,
    /// WORK_FAIL / WORK_EXCEPTION.
    pub failed: u64,
    /// WORK_COMPLETE whose data was not the payload sent.
    pub bad_data: u64,
    /// WORK_COMPLETE for a handle with no submit waiting on this connection.
    pub unmatched_completes: u64,
    /// Other packet types.
    pub unexpected: Vec<String>,
    pub latency: Samples,
    pub handles: HashSet<Bytes>,
}

impl ClientStats {
    /// The stats of several connections as one.
    pub fn merged(parts: impl IntoIterator<Item = ClientStats>) -> ClientStats {
        let mut total = ClientStats::default();
        for part in parts {
            total.merge(part);
        }
        total
    }

    pub fn merge(&mut self, o: ClientStats) {
        self.created += o.created;
        self.completed += o.completed;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.failed += o.failed;
        self.bad_data += o.bad_data;
        self.unmatched_completes += o.unmatched_completes;
        for u in o.unexpected {
            if self.unexpected.len() < 10 {
                self.unexpected.push(u);
            }
        }
        self.latency.merge(o.latency);
        self.handles.extend(o.handles);
    }

    pub(crate) fn error(&mut self, p: &Packet) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!(
                "ERROR {} {}",
                String::from_utf8_lossy(p.arg(0)),
                String::from_utf8_lossy(p.arg(1))
            ));
        }
    }

    pub(crate) fn unexpected(&mut self, p: &Packet) {
        if self.unexpected.len() < 10 {
            self.unexpected.push(format!("{:?}", p));
        }
    }
}

/// Splits `total` jobs over `n` connections; returns (first index, count) each.
pub fn shares(total: u64, n: usize) -> Vec<(u64, u64)> {
    let n = n.max(1) as u64;
    let mut first = 0;
    (0..n)
        .map(|i| {
            let count = total / n + u64::from(i < total % n);
            let share = (first, count);
            first += count;
            share
        })
        .collect()
}

/// Opens `n` connections.
pub async fn connect_all(target: &Target, n: usize) -> Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(Conn::connect(target).await?);
    }
    Ok(conns)
}

/// One connection's share of a background submit phase.
#[derive(Debug, Clone, Copy)]
pub struct SubmitPlan {
    pub kind: PacketType,
    /// Index of the connection's first job (for uniques).
    pub first: u64,
    pub count: u64,
    pub window: u64,
    /// Record each submit→JOB_CREATED time.
    pub latency: bool,
    /// Send no new submit from this moment on; the replies to those in
    /// flight are still awaited.
    pub stop_at: Option<Instant>,
}

/// Submits `plan.count` background jobs on one connection with up to
/// `plan.window` in flight, or fewer if `plan.stop_at` comes first.
pub async fn submit_bg_loop(
    mut conn: Conn,
    spec: Arc<JobSpec>,
    plan: SubmitPlan,
    progress: Arc<Progress>,
) -> Result<ClientStats> {
    let SubmitPlan {
        kind,
        first,
        mut count,
        window,
        latency,
        stop_at,
    } = plan;
    let mut stats = ClientStats::default();
    let mut sent_at: VecDeque<Instant> = VecDeque::new();
    if latency {
        stats.latency = Samples::with_capacity(count as usize);
    }
    let (mut sent, mut answered) = (0u64, 0u64);
    let mut unique = String::with_capacity(36);
    let mut replies = Vec::with_capacity(256);
    while answered < count {
        if stop_at.is_some_and(|t| Instant::now() >= t) {
            // Time is up: what was sent is all there will be.
            count = sent;
            if answered >= count {
                break;
            }
        }
        while sent < count && sent - answered < window {
            spec.unique_for(first + sent, &mut unique);
            conn.push(
                kind,
                &[spec.function.as_bytes(), unique.as_bytes(), &spec.payload],
            );
            sent += 1;
        }
        if latency && conn.pending_write() {
            let now = Instant::now();
            while (sent_at.len() as u64) < sent - answered {
                sent_at.push_back(now);
            }
        }
        conn.flush().await?;
        conn.read_some(&mut replies).await?;
        let before = answered;
        for p in replies.drain(..) {
            match p.kind {
                PacketType::JOB_CREATED => {
                    answered += 1;
                    stats.created += 1;
                    if latency {
                        if let Some(t) = sent_at.pop_front() {
                            stats.latency.record(t.elapsed());
                        }
                    }
                }
                PacketType::ERROR => {
                    answered += 1;
                    sent_at.pop_front();
                    stats.error(&p);
                }
                _ => stats.unexpected(&p),
            }
        }
        if answered > sent {
            return Err(err!(
                "server sent {answered} replies for {sent} submits on one connection"
            ));
        }
        progress.add(answered - before);
    }
    Ok(stats)
}

/// Submits foreground jobs on one connection, up to `window` unfinished at a
/// time, and waits for each WORK_COMPLETE.
///
/// `unique_of(i)` gives the unique of the connection's `i`-th submit. When
/// several submits on the connection share a handle (coalescing), the first
/// WORK_COMPLETE for that handle finishes all of them; further WORK_COMPLETEs
/// for a handle nobody waits on are counted in `unmatched_completes` (gearmand
/// sends one per attachment).
pub async fn foreground_loop(
    mut conn: Conn,
    spec: Arc<JobSpec>,
    count: u64,
    window: u64,
    unique_of: impl Fn(u64, &mut String),
    progress: Arc<Progress>,
) -> Result<ClientStats> {
    let mut stats = ClientStats {
        latency: Samples::with_capacity(count as usize),
        ..Default::default()
    };
    // Submits sent but not yet answered with JOB_CREATED, oldest first.
    let mut awaiting_handle: VecDeque<Instant> = VecDeque::new();
    // Submits with a handle, waiting for WORK_COMPLETE.
    let mut by_handle: HashMap<Bytes, Vec<Instant>> = HashMap::new();
    let (mut sent, mut finished) = (0u64, 0u64);
    let mut unique = String::with_capacity(64);
    let mut replies = Vec::with_capacity(256);
    while finished < count {
        let mut new = 0;
        while sent < count && sent - finished < window {
            unique_of(sent, &mut unique);
            conn.push(
                PacketType::SUBMIT_JOB,
                &[spec.function.as_bytes(), unique.as_bytes(), &spec.payload],
            );
            sent += 1;
            new += 1;
        }
        if new > 0 {
            let now = Instant::now();
            awaiting_handle.extend(std::iter::repeat_n(now, new));
        }
        conn.flush().await?;
        conn.read_some(&mut replies).await?;
        let before = finished;
        for p in replies.drain(..) {
            match p.kind {
                PacketType::JOB_CREATED => {
                    stats.created += 1;
                    let Some(t) = awaiting_handle.pop_front() else {
                        return Err(err!("JOB_CREATED with no submit waiting for it"));
                    };
                    let handle = p.arg(0).clone();
                    stats.handles.insert(handle.clone());
                    by_handle.entry(handle).or_default().push(t);
                }
                PacketType::WORK_COMPLETE => match by_handle.remove(p.arg(0)) {
                    Some(waiting) => {
                        if p.arg(1).len() != spec.payload.len() {
                            stats.bad_data += 1;
                        }
                        for t in waiting {
                            stats.latency.record(t.elapsed());
                            finished += 1;
                            stats.completed += 1;
                        }
                    }
                    None => stats.unmatched_completes += 1,
                },
                PacketType::WORK_FAIL | PacketType::WORK_EXCEPTION => {
                    if let Some(waiting) = by_handle.remove(p.arg(0)) {
                        finished += waiting.len() as u64;
                        stats.failed += waiting.len() as u64;
                    }
                }
                PacketType::WORK_STATUS | PacketType::WORK_DATA | PacketType::WORK_WARNING => {}
                PacketType::ERROR => {
                    awaiting_handle.pop_front();
                    finished += 1;
                    stats.error(&p);
                }
                _ => stats.unexpected(&p),
            }
        }
        progress.add(finished - before);
    }
    Ok(stats)
}
