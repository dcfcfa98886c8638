//! The engine: the one place that owns the dispatch state.
//!
//! Every table (functions, jobs, uniques, workers) lives in one [`Engine`] behind
//! one mutex, as gearmand keeps them on one processing thread. A connection task
//! decodes everything it has read, locks once, hands the engine the whole batch,
//! and unlocks after [`Engine::flush`]. Replies and the packets pushed to other
//! connections (NOOP, WORK_*) are appended to per-connection outboxes while the
//! lock is held, so their order is the order of events, and each outbox leaves
//! as one buffer: one write per batch instead of one per packet.
//!
//! Command families live in submodules: `submit`, `grab` (workers asking for
//! work), `work` (results and job loss), `status` (small request/reply
//! commands), `admin` (the text protocol), `timers` (epoch and
//! CAN_DO_TIMEOUT deadlines), `store` (held acknowledgements and replay), and
//! for `--peer`: `peering` (which source serves a GRAB, and the links' state),
//! `pulled` (jobs pulled from peers) and `peer_registration` (what the links
//! register upstream).

mod admin;
mod arena;
mod functions;
mod grab;
mod held;
mod job_pages;
mod jobs;
mod peer_registration;
mod peering;
mod pulled;
mod status;
mod store;
mod submit;
mod timers;
mod work;

use crate::config::Config;
use crate::store::{InMemory, QueueStore};
use bytes::{Bytes, BytesMut};
use functions::Functions;
use gearbox_proto::packet::encode_res;
use gearbox_proto::{DecodeError, Frame, Magic, Packet, PacketType};
use jobs::{FuncId, JobId, JobTable};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use timers::Timers;
use tokio::sync::{mpsc, watch, Notify};

pub use peering::{LinkId, LinkMsg, PeerCmd, PeerCounters, Wanted, PEER_CLIENT_ID};
pub use timers::Deadline;

/// A connection's id: a counter, never reused (unlike fds).
pub type ConnId = u64;

/// Hashes the engine's own ids (connection and job numbers) with one multiply.
/// They are counters the server hands out, never chosen by a peer, so SipHash's
/// protection buys nothing here and its cost showed in profiles.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = fold(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = fold(self.0 ^ n);
    }
}

/// A multiply-fold: spreads sequential ids over all 64 bits.
pub fn fold(n: u64) -> u64 {
    let product = u128::from(n) * 0x9E37_79B9_7F4A_7C15;
    (product as u64) ^ ((product >> 64) as u64)
}

type IdBuildHasher = std::hash::BuildHasherDefault<IdHasher>;

/// What the admin `shutdown` command or a signal asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownRequest {
    None,
    Graceful,
    Immediate,
}

/// Ways the engine reaches the tasks around it.
pub struct Signals {
    /// Woken when a deadline earlier than the timer task's sleep is added.
    pub timers: Notify,
    /// Woken when the last running job ends during a graceful shutdown.
    pub idle: Notify,
    pub shutdown: watch::Sender<ShutdownRequest>,
}

impl Default for Signals {
    fn default() -> Self {
        Signals {
            timers: Notify::new(),
            idle: Notify::new(),
            shutdown: watch::channel(ShutdownRequest::None).0,
        }
    }
}

/// What the engine and a connection's task share about its unsent bytes.
///
/// A peer that sends requests but never reads the replies (or a client that
/// stops reading a job's WORK_DATA) would make the server buffer without limit
/// and, in the end, hurt every other connection. The engine counts what it hands
/// the connection, the task subtracts what it writes, and past the limit the
/// engine cuts the connection off.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Bytes handed to the connection and not yet written to its socket.
    pub queued: std::sync::atomic::AtomicUsize,
    /// Woken when the engine has cut the connection off: stop without writing.
    pub cut: Notify,
}

/// Who is at the other end of a connection, for `workers` and for checks.
#[derive(Debug, Clone)]
pub struct Peer {
    pub fd: i32,
    /// The IP address, or `unix` for a unix-socket peer.
    pub host: String,
    /// Loopback or unix socket: trusted with `shutdown`.
    pub local: bool,
}

/// One registered function of a worker connection.
#[derive(Debug, Clone, Copy)]
struct Ability {
    func: FuncId,
    timeout: Option<Duration>,
}

struct Conn {
    tx: mpsc::UnboundedSender<Bytes>,
    backlog: Arc<Backlog>,
    outbox: BytesMut,
    peer: Peer,
    client_id: Bytes,
    exceptions: bool,
    /// Registered functions in the order a grab checks them: newest first.
    abilities: Vec<Ability>,
    /// Between PRE_SLEEP and the next GRAB.
    sleeping: bool,
    /// The function whose new job a NOOP woke this connection for, until its
    /// next GRAB. If the worker takes another function's job instead, or leaves,
    /// that wake-up is passed on so the job does not wait beside a sleeper.
    woken_for: Option<FuncId>,
    /// Counts PRE_SLEEPs, so a sleeper entry from an earlier sleep is recognised.
    sleep_generation: u64,
    /// Jobs assigned to this connection as a worker.
    holding: Vec<JobId>,
    /// Jobs this connection waits on as a foreground client.
    attached: HashSet<JobId, IdBuildHasher>,
    /// The store commit this connection's replies wait for (0: none). Set by
    /// a JOB_CREATED whose row is not yet committed; everything queued after
    /// it waits too, so replies keep their order.
    hold_until: u64,
    /// The JOB_CREATEDs in `outbox` that wait for it, and since when the
    /// connection's replies wait (see `held`).
    held_acks: Vec<held::HeldAck>,
    held_since: Option<std::time::Instant>,
    /// For another aggregator's link: the servers its demand comes from
    /// (its `gearbox-peer:` client id), see `peering`.
    downstream: Option<Vec<Bytes>>,
    /// Woken for a job a link is fetching for it (see `peering`), and the
    /// job once it has come, until this worker's next GRAB.
    reservation: Option<LinkId>,
    reserved_job: Option<JobId>,
}

/// Connections and their outboxes, kept apart from the job tables so that a
/// reply can borrow a job's bytes while it is written.
#[derive(Default)]
struct Conns {
    map: HashMap<ConnId, Conn, IdBuildHasher>,
    /// Connections whose outbox has bytes to flush.
    dirty: Vec<ConnId>,
}

impl Conns {
    fn outbox(&mut self, id: ConnId) -> Option<&mut BytesMut> {
        let conn = self.map.get_mut(&id)?;
        if conn.outbox.is_empty() {
            self.dirty.push(id);
        }
        Some(&mut conn.outbox)
    }

    /// Appends a response packet for `id`. A connection that has gone is skipped.
    fn send(&mut self, id: ConnId, kind: PacketType, fields: &[&[u8]]) {
        if let Some(out) = self.outbox(id) {
            encode_res(out, kind, fields);
        }
    }

    fn send_text(&mut self, id: ConnId, text: &[u8]) {
        if let Some(out) = self.outbox(id) {
            out.extend_from_slice(text);
        }
    }

    fn error(&mut self, id: ConnId, code: &str, text: &str) {
        self.send(id, PacketType::ERROR, &[code.as_bytes(), text.as_bytes()]);
    }
}

/// Settings the engine consults while dispatching.
struct Settings {
    handle_prefix: Vec<u8>,
    job_retries: u32,
    worker_wakeup: u32,
    round_robin: bool,
    exceptions: bool,
    verbose: String,
    allow_remote_shutdown: bool,
    max_queued_output: usize,
}

pub struct Engine {
    settings: Settings,
    conns: Conns,
    next_conn: ConnId,
    functions: Functions,
    jobs: JobTable,
    timers: Timers,
    store: Box<dyn QueueStore>,
    next_assignment: u32,
    /// Jobs held by workers right now, across functions.
    running: u64,
    /// Graceful shutdown: no new assignments; exit once `running` is 0.
    draining: bool,
    signals: Arc<Signals>,
    /// The last store commit the engine has heard of.
    committed: u64,
    /// Connections whose replies wait for a store commit.
    held: Vec<ConnId>,
    submitters: held::Submitters,
    /// Background submits the store refused, for the log.
    refusals: store::Refusals,
    /// Links to peer job servers (`--peer`), when there are any.
    peering: peering::Peering,
}

impl Engine {
    pub fn new(config: &Config, signals: Arc<Signals>) -> Engine {
        Engine::with_store(config, signals, Box::new(InMemory))
    }

    pub fn with_store(
        config: &Config,
        signals: Arc<Signals>,
        store: Box<dyn QueueStore>,
    ) -> Engine {
        Engine {
            settings: Settings {
                handle_prefix: config.handle_prefix.as_bytes()
                    [..config.handle_prefix.len().min(MAX_HANDLE_PREFIX)]
                    .to_vec(),
                job_retries: config.job_retries,
                worker_wakeup: config.worker_wakeup,
                round_robin: config.round_robin,
                exceptions: config.exceptions,
                verbose: config.verbose.clone(),
                allow_remote_shutdown: config.allow_remote_shutdown,
                max_queued_output: config.max_queued_output,
            },
            conns: Conns::default(),
            next_conn: 0,
            functions: Functions::default(),
            jobs: JobTable::default(),
            timers: Timers::default(),
            store,
            next_assignment: 0,
            running: 0,
            draining: false,
            signals,
            committed: 0,
            held: Vec::new(),
            submitters: held::Submitters::default(),
            refusals: store::Refusals::default(),
            peering: peering::Peering::with_server_id(&config.server_id),
        }
    }

    /// Adds a connection whose outgoing bytes go to `tx`.
    pub fn connect(
        &mut self,
        tx: mpsc::UnboundedSender<Bytes>,
        backlog: Arc<Backlog>,
        peer: Peer,
    ) -> ConnId {
        self.next_conn += 1;
        let id = self.next_conn;
        self.conns.map.insert(
            id,
            Conn {
                tx,
                backlog,
                outbox: BytesMut::new(),
                peer,
                client_id: Bytes::from_static(b"-"),
                exceptions: self.settings.exceptions,
                abilities: Vec::new(),
                sleeping: false,
                woken_for: None,
                sleep_generation: 0,
                holding: Vec::new(),
                attached: HashSet::default(),
                hold_until: 0,
                held_acks: Vec::new(),
                held_since: None,
                downstream: None,
                reservation: None,
                reserved_job: None,
            },
        );
        id
    }

    /// Sends every outbox that has bytes, one buffer per connection.
    /// A connection whose unsent bytes pass `max_queued_output` is cut off.
    pub fn flush(&mut self) {
        self.update_peering();
        loop {
            let mut overflowing = Vec::new();
            for id in self.conns.dirty.drain(..) {
                let Some(conn) = self.conns.map.get_mut(&id) else {
                    continue;
                };
                if conn.outbox.is_empty() {
                    continue;
                }
                if conn.hold_until > self.committed {
                    // Waiting for the store: the bytes stay here, under the
                    // same limit (a client may keep submitting in an outage).
                    if conn.outbox.len() > self.settings.max_queued_output {
                        overflowing.push((id, conn.outbox.len()));
                    }
                    continue;
                }
                let bytes = conn.outbox.split().freeze();
                let queued = conn.backlog.queued.fetch_add(bytes.len(), Relaxed) + bytes.len();
                let _ = conn.tx.send(bytes);
                if queued > self.settings.max_queued_output {
                    overflowing.push((id, queued));
                }
            }
            if overflowing.is_empty() {
                return;
            }
            // Cutting a worker off re-queues its jobs, which can queue NOOPs
            // for others: hence the loop.
            for (id, queued) in overflowing {
                tracing::warn!(
                    conn = id,
                    queued,
                    "closing a connection that does not read its replies"
                );
                if let Some(conn) = self.conns.map.get(&id) {
                    conn.backlog.cut.notify_one();
                }
                self.disconnect(id);
            }
        }
    }

    /// Handles one frame from `conn`.
    pub fn handle(&mut self, conn: ConnId, frame: &Frame) {
        match frame {
            Frame::Text(line) => self.admin(conn, line),
            Frame::Packet(p) if p.magic == Magic::Res => {
                self.conns
                    .error(conn, "INVALID_MAGIC", "Request magic expected")
            }
            Frame::Packet(p) => self.packet(conn, p),
        }
    }

    /// Reports a framing error to the peer before its connection is closed.
    pub fn protocol_error(&mut self, conn: ConnId, error: &DecodeError) {
        let text = error.to_string();
        tracing::warn!(conn, %text, "closing connection after a malformed packet");
        match error {
            DecodeError::LineTooLong => self.conns.send_text(
                conn,
                b"ERR ARGUMENT_TOO_LARGE Text+lines+are+limited+to+8192+bytes\r\n",
            ),
            _ => self.conns.error(conn, error.error_code(), &text),
        }
    }

    fn packet(&mut self, conn: ConnId, p: &Packet) {
        use PacketType::*;
        match p.kind {
            CAN_DO => self.can_do(conn, p.arg(0), None),
            CAN_DO_TIMEOUT => self.can_do(conn, p.arg(0), grab::parse_timeout(p.arg(1))),
            CANT_DO => self.cant_do(conn, p.arg(0)),
            RESET_ABILITIES => self.reset_abilities(conn),
            PRE_SLEEP => self.pre_sleep(conn),
            GRAB_JOB => self.grab(conn, grab::Assign::Plain),
            GRAB_JOB_UNIQ => self.grab(conn, grab::Assign::Unique),
            GRAB_JOB_ALL => self.grab(conn, grab::Assign::All),
            SUBMIT_JOB
            | SUBMIT_JOB_BG
            | SUBMIT_JOB_HIGH
            | SUBMIT_JOB_HIGH_BG
            | SUBMIT_JOB_LOW
            | SUBMIT_JOB_LOW_BG
            | SUBMIT_JOB_EPOCH
            | SUBMIT_REDUCE_JOB
            | SUBMIT_REDUCE_JOB_BACKGROUND => self.submit_packet(conn, p),
            WORK_STATUS | WORK_DATA | WORK_WARNING | WORK_COMPLETE | WORK_FAIL | WORK_EXCEPTION => {
                self.work(conn, p)
            }
            GET_STATUS => self.get_status(conn, p.arg(0)),
            GET_STATUS_UNIQUE => self.get_status_unique(conn, p.arg(0)),
            ECHO_REQ => self.conns.send(conn, ECHO_RES, &[p.arg(0)]),
            OPTION_REQ => self.option(conn, p.arg(0)),
            SET_CLIENT_ID => self.set_client_id(conn, p.arg(0)),
            UNUSED | NOOP | JOB_CREATED | NO_JOB | JOB_ASSIGN | ECHO_RES | ERROR | STATUS_RES
            | ALL_YOURS | OPTION_RES | JOB_ASSIGN_UNIQ | SUBMIT_JOB_SCHED | JOB_ASSIGN_ALL
            | STATUS_RES_UNIQUE => {
                self.conns
                    .error(conn, "INVALID_COMMAND", "Command not expected")
            }
        }
    }

    /// Forgets a connection: its held jobs are re-queued, its waits dropped.
    pub fn disconnect(&mut self, conn: ConnId) {
        let Some(mut c) = self.conns.map.remove(&conn) else {
            return;
        };
        for ability in &c.abilities {
            self.functions.get_mut(ability.func).workers -= 1;
        }
        if !c.abilities.is_empty() || c.downstream.is_some() {
            self.peering.mark_wanted_dirty();
        }
        for id in std::mem::take(&mut c.holding) {
            self.requeue(id);
        }
        for id in c.attached.drain() {
            self.detach_client(id, conn);
        }
        if let Some(func) = c.woken_for {
            self.pass_wakeup_on(func);
        }
    }

    /// Number of jobs held by workers.
    pub fn running_jobs(&self) -> u64 {
        self.running
    }

    /// Number of jobs known to the server, queued, delayed or running.
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// Graceful shutdown: hand out no more jobs and signal once none run.
    pub fn begin_drain(&mut self) {
        self.draining = true;
        if self.running == 0 {
            self.signals.idle.notify_one();
        }
    }

    fn handle_bytes(&self, id: JobId) -> HandleBuf {
        HandleBuf::new(&self.settings.handle_prefix, id)
    }

    /// The job number in a handle of ours, or `None` for anything else.
    fn parse_handle(&self, handle: &[u8]) -> Option<JobId> {
        let rest = handle.strip_prefix(self.settings.handle_prefix.as_slice())?;
        let digits = rest.strip_prefix(b":")?;
        // Handles are strings to clients: `H:x:01` is not `H:x:1`.
        let canonical = !digits.is_empty()
            && digits.len() <= 19
            && digits.iter().all(u8::is_ascii_digit)
            && (digits[0] != b'0' || digits.len() == 1);
        if !canonical {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    }
}

/// Longest handle prefix accepted; gearmand refuses to start with 64 or more.
pub const MAX_HANDLE_PREFIX: usize = 63;

/// A job handle, formatted on the stack: `<prefix>:<n>`. Handles go out with
/// every JOB_CREATED, JOB_ASSIGN and WORK_* packet, so no allocation here.
struct HandleBuf {
    buf: [u8; MAX_HANDLE_PREFIX + 21],
    len: usize,
}

impl HandleBuf {
    fn new(prefix: &[u8], id: JobId) -> HandleBuf {
        let prefix = &prefix[..prefix.len().min(MAX_HANDLE_PREFIX)];
        let mut buf = [0u8; MAX_HANDLE_PREFIX + 21];
        buf[..prefix.len()].copy_from_slice(prefix);
        buf[prefix.len()] = b':';
        let mut digits = [0u8; 20];
        let mut n = id;
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let len = prefix.len() + 1 + (digits.len() - start);
        buf[prefix.len() + 1..len].copy_from_slice(&digits[start..]);
        HandleBuf { buf, len }
    }
}

impl std::ops::Deref for HandleBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}
