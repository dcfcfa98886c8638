//! The driver: one task that owns the job slots and decides where the next
//! GRAB goes. Server tasks ([`crate::conn`]) report connections and packets to
//! it; job tasks report their endings. Keeping every scheduling decision in one
//! place is what makes the global limit and the rotation exact.

use crate::backpressure::Backpressure;
use crate::conn::{self, Conn, Outgoing};
use crate::run::{run_job, JobTag};
use crate::{Config, Function, Job, Shared, ShutdownReport};
use bytes::Bytes;
use gearbox_proto::{Packet, PacketType};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// GRABs that may be outstanding on one connection at once. More than one lets
/// a worker with a high limit fill its slots from one server without waiting a
/// round trip per job; replies come back in order, so they match their GRABs.
const MAX_GRABS_PER_SERVER: usize = 4;

// Events are moved once, from a task to the driver: boxing the packet variant
// would cost an allocation per packet for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Event {
    Up {
        server: usize,
        conn: Conn,
    },
    Down {
        server: usize,
        gen: u64,
    },
    Packet {
        server: usize,
        gen: u64,
        packet: Packet,
    },
    /// A job ended; `packet` (WORK_COMPLETE, WORK_FAIL or WORK_EXCEPTION)
    /// still has to be sent, and `permit` is the slot it held.
    JobDone {
        id: u64,
        server: usize,
        gen: u64,
        outcome: Outcome,
        packet: Packet,
        permit: OwnedSemaphorePermit,
        handle: Bytes,
    },
    /// `Job::overloaded()`, or an overloaded attempt that will be retried.
    Overloaded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Complete,
    Fail,
    Exception,
    Panic,
    Overloaded,
    TimedOut,
}

/// The driver's view of one server.
struct Slot {
    conn: Option<Conn>,
    /// May have work: not answered NO_JOB since its last NOOP or job.
    awake: bool,
    pre_sleep_sent: bool,
    /// Outstanding GRABs, oldest first, each holding the slot its job will use.
    grabs: VecDeque<(OwnedSemaphorePermit, Instant)>,
    echo_since: Option<Instant>,
    last_heard: Instant,
    /// Jobs from the current connection still running.
    running: usize,
    /// RESET_ABILITIES and close sent (shutdown).
    closing: bool,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            conn: None,
            awake: false,
            pre_sleep_sent: false,
            grabs: VecDeque::new(),
            echo_since: None,
            last_heard: Instant::now(),
            running: 0,
            closing: false,
        }
    }

    fn eligible(&self) -> bool {
        let Some(conn) = &self.conn else { return false };
        // One GRAB at a time until the server has answered one: a server that
        // hangs on GRAB then holds one slot, not several.
        let limit = if conn.is_proven() {
            MAX_GRABS_PER_SERVER
        } else {
            1
        };
        !self.closing && self.awake && self.grabs.len() < limit
    }

    /// Forgets the connection. Dropping the GRAB permits frees their slots at
    /// once: the server re-queues anything it assigned on a closed connection.
    fn lost(&mut self) {
        self.conn = None;
        self.awake = false;
        self.pre_sleep_sent = false;
        self.grabs.clear();
        self.echo_since = None;
        self.running = 0;
    }
}

struct RunningJob {
    server: usize,
    abort: AbortHandle,
    /// Running when shutdown began.
    before_shutdown: bool,
}

struct Driver {
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    cursor: usize,
    permits: Arc<Semaphore>,
    events_tx: UnboundedSender<Event>,
    backpressure: Backpressure,
    last_grab: Option<Instant>,
    functions: HashMap<Bytes, Function>,
    jobs: HashMap<u64, RunningJob>,
    next_job: u64,
    draining: bool,
    report: ShutdownReport,
}

pub(crate) async fn run(cfg: Arc<Config>, shared: Arc<Shared>) -> ShutdownReport {
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let mut server_tasks: Vec<JoinHandle<()>> = Vec::new();
    for (i, s) in shared.servers.iter().enumerate() {
        server_tasks.push(tokio::spawn(conn::server_task(
            cfg.clone(),
            i,
            s.clone(),
            events_tx.clone(),
            stop.clone(),
        )));
    }
    let n = shared.servers.len();
    let mut driver = Driver {
        functions: cfg
            .functions
            .iter()
            .map(|f| (Bytes::from(f.name.clone()), f.clone()))
            .collect(),
        permits: Arc::new(Semaphore::new(cfg.concurrency)),
        backpressure: Backpressure::new(cfg.backpressure),
        // A random start, so that a fleet of workers does not all begin with
        // the first server in its list.
        cursor: fastrand::usize(..n),
        slots: (0..n).map(|_| Slot::new()).collect(),
        cfg,
        shared,
        events_tx,
        last_grab: None,
        jobs: HashMap::new(),
        next_job: 0,
        draining: false,
        report: ShutdownReport::default(),
    };
    driver.main_loop(&mut events_rx, &stop).await;
    stop.cancel();
    // Server tasks end once their connection is closed; a server that does not
    // let us flush the goodbye gets a moment, then is cut off.
    let wait_all = futures_util::future::join_all(server_tasks.iter_mut());
    if tokio::time::timeout(Duration::from_secs(2), wait_all)
        .await
        .is_err()
    {
        for t in &server_tasks {
            t.abort();
        }
    }
    driver.report
}

impl Driver {
    async fn main_loop(&mut self, events: &mut UnboundedReceiver<Event>, stop: &CancellationToken) {
        let shutdown = self.shared.shutdown.clone();
        let mut drain_deadline: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let timer = self.check_connections(now);
            if self.draining {
                self.close_idle_connections();
                if self.jobs.is_empty() && self.slots.iter().all(|s| s.conn.is_none() || s.closing)
                {
                    return;
                }
            }
            let can_grab = !self.draining && self.slots.iter().any(Slot::eligible);
            let grab_at = match self.last_grab {
                Some(t) if !self.backpressure.delay().is_zero() => {
                    Some(t + self.backpressure.delay())
                }
                _ => None,
            };
            let grab_now = can_grab && grab_at.is_none_or(|t| t <= now);
            let grab_later = can_grab && !grab_now;
            tokio::select! {
                // Shutdown first: once it is signalled, no GRAB may win a race
                // against it.
                biased;
                _ = shutdown.cancelled(), if !self.draining => {
                    let deadline = self.shared.deadline.lock().unwrap().unwrap_or(self.cfg.shutdown_timeout);
                    tracing::info!(running = self.jobs.len(), ?deadline, "shutting down: no more grabs");
                    self.draining = true;
                    stop.cancel();
                    for job in self.jobs.values_mut() {
                        job.before_shutdown = true;
                    }
                    drain_deadline = Some(Instant::now() + deadline);
                }
                permit = self.permits.clone().acquire_owned(), if grab_now => {
                    self.grab(permit.expect("the semaphore is never closed"));
                }
                _ = tokio::time::sleep_until(grab_at.unwrap_or(now)), if grab_later => {}
                ev = events.recv() => match ev {
                    Some(ev) => self.on_event(ev),
                    None => return,
                },
                _ = tokio::time::sleep_until(timer.unwrap_or(now)), if timer.is_some() => {}
                _ = tokio::time::sleep_until(drain_deadline.unwrap_or(now)), if drain_deadline.is_some() => {
                    self.abandon_jobs();
                    drain_deadline = None;
                }
            }
        }
    }

    /// The server the next GRAB goes to: the next one after the cursor that
    /// may have work.
    fn next_server(&self) -> Option<usize> {
        let n = self.slots.len();
        (1..=n)
            .map(|k| (self.cursor + k) % n)
            .find(|&i| self.slots[i].eligible())
    }

    /// Sends one GRAB, on the next server in the rotation that may have work.
    fn grab(&mut self, permit: OwnedSemaphorePermit) {
        // None is unreachable in practice (grab() runs right after eligibility
        // was checked); dropping the permit gives the slot back.
        if let Some(i) = self.next_server() {
            self.grab_from(i, permit);
        }
    }

    fn grab_from(&mut self, i: usize, permit: OwnedSemaphorePermit) {
        self.cursor = i;
        let slot = &mut self.slots[i];
        let conn = slot.conn.as_ref().expect("eligible means connected");
        conn.send(Packet::req(PacketType::GRAB_JOB_UNIQ, &[]));
        let now = Instant::now();
        slot.grabs.push_back((permit, now));
        self.last_grab = Some(now);
    }

    /// Sends a job's final packet on the connection the job came on.
    ///
    /// The slot is normally released only once the packet is written. When
    /// the rotation's next GRAB would go to this same server anyway, the slot
    /// passes straight to that GRAB, queued right behind the result: one write
    /// carries both, and the server still sees the result before the GRAB.
    fn send_result(
        &mut self,
        server: usize,
        gen: u64,
        packet: Packet,
        permit: OwnedSemaphorePermit,
        handle: &[u8],
    ) {
        let slot = &mut self.slots[server];
        let conn = match &slot.conn {
            Some(c) if c.gen == gen => c.clone(),
            _ => return self.result_dropped(server, handle),
        };
        slot.running = slot.running.saturating_sub(1);
        let grab_due = self
            .last_grab
            .is_none_or(|t| t + self.backpressure.delay() <= Instant::now());
        if !self.draining && grab_due && self.next_server() == Some(server) {
            if conn.tx.send(Outgoing::Packet(packet, None)).is_err() {
                return self.result_dropped(server, handle);
            }
            self.grab_from(server, permit);
        } else if conn
            .tx
            .send(Outgoing::Packet(packet, Some(permit)))
            .is_err()
        {
            self.result_dropped(server, handle);
        }
    }

    fn result_dropped(&self, server: usize, handle: &[u8]) {
        self.shared
            .stats
            .results_dropped
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            handle = %String::from_utf8_lossy(handle),
            server = %self.shared.servers[server].addr,
            "result dropped: the connection the job came on is gone (the server re-queues the job)"
        );
    }

    /// Response timeouts, idle probes; returns when to look again.
    fn check_connections(&mut self, now: Instant) -> Option<Instant> {
        let rt = self.cfg.response_timeout;
        let mut next: Option<Instant> = None;
        let mut soonest = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            let Some(conn) = slot.conn.clone() else {
                continue;
            };
            if slot.closing {
                continue;
            }
            if let Some((_, sent)) = slot.grabs.front() {
                if now >= *sent + rt {
                    self.kill(i, format!("no answer to GRAB_JOB_UNIQ within {rt:?}"));
                    continue;
                }
                soonest(*sent + rt);
            }
            if let Some(since) = slot.echo_since {
                if now >= since + rt {
                    self.kill(i, format!("no answer to the ECHO_REQ probe within {rt:?}"));
                    continue;
                }
                soonest(since + rt);
            } else if slot.grabs.is_empty() {
                let due = slot.last_heard + self.cfg.idle_probe;
                if now >= due {
                    conn.send(Packet::req(
                        PacketType::ECHO_REQ,
                        &[b"gearbox-worker probe"],
                    ));
                    if slot.pre_sleep_sent {
                        // If a NOOP was lost, a job is waiting: the server
                        // answers this PRE_SLEEP with a NOOP at once.
                        conn.send(Packet::req(PacketType::PRE_SLEEP, &[]));
                    }
                    slot.echo_since = Some(now);
                    soonest(now + rt);
                } else {
                    soonest(due);
                }
            }
        }
        next
    }

    fn kill(&mut self, server: usize, reason: String) {
        let slot = &mut self.slots[server];
        if let Some(conn) = &slot.conn {
            tracing::warn!(server = %self.shared.servers[server].addr, %reason, "dropping connection");
            conn.kill(reason);
        }
        slot.lost();
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Up { server, conn } => {
                let slot = &mut self.slots[server];
                slot.lost();
                slot.conn = Some(conn);
                slot.awake = true;
                slot.closing = false;
                slot.last_heard = Instant::now();
            }
            Event::Down { server, gen } => {
                let slot = &mut self.slots[server];
                if slot.conn.as_ref().is_some_and(|c| c.gen == gen) {
                    slot.lost();
                }
            }
            Event::Packet {
                server,
                gen,
                packet,
            } => {
                let slot = &mut self.slots[server];
                if slot.conn.as_ref().is_none_or(|c| c.gen != gen) {
                    return;
                }
                slot.last_heard = Instant::now();
                self.on_packet(server, packet);
            }
            Event::JobDone {
                id,
                server,
                gen,
                outcome,
                packet,
                permit,
                handle,
            } => {
                if let Some(job) = self.jobs.remove(&id) {
                    debug_assert_eq!(job.server, server);
                    if job.before_shutdown {
                        self.report.finished += 1;
                    }
                }
                self.shared
                    .running
                    .store(self.jobs.len(), Ordering::Relaxed);
                let now = std::time::Instant::now();
                match outcome {
                    Outcome::Overloaded => self.backpressure.overloaded(now),
                    Outcome::Complete => self.backpressure.succeeded(now),
                    _ => {}
                }
                self.publish_backpressure();
                self.send_result(server, gen, packet, permit, &handle);
            }
            Event::Overloaded => {
                self.backpressure.overloaded(std::time::Instant::now());
                self.publish_backpressure();
            }
        }
    }

    fn publish_backpressure(&self) {
        self.shared.backpressure_us.store(
            self.backpressure.delay().as_micros() as u64,
            Ordering::Relaxed,
        );
    }

    fn on_packet(&mut self, server: usize, packet: Packet) {
        let addr = &self.shared.servers[server].addr;
        let slot = &mut self.slots[server];
        match packet.kind {
            PacketType::JOB_ASSIGN_UNIQ | PacketType::JOB_ASSIGN | PacketType::JOB_ASSIGN_ALL => {
                let Some((permit, _)) = slot.grabs.pop_front() else {
                    // Holding it would break the limit; closing the connection
                    // makes the server re-queue it.
                    self.kill(server, "JOB_ASSIGN without an outstanding GRAB".into());
                    return;
                };
                slot.awake = true;
                slot.pre_sleep_sent = false;
                if let Some(conn) = &slot.conn {
                    conn.mark_proven();
                }
                let (handle, function, unique, payload) = match packet.kind {
                    PacketType::JOB_ASSIGN => (
                        packet.arg(0).clone(),
                        packet.arg(1).clone(),
                        Bytes::new(),
                        packet.arg(2).clone(),
                    ),
                    // JOB_ASSIGN_ALL: handle, fn, unique, reducer, data.
                    PacketType::JOB_ASSIGN_ALL => (
                        packet.arg(0).clone(),
                        packet.arg(1).clone(),
                        packet.arg(2).clone(),
                        packet.arg(4).clone(),
                    ),
                    _ => (
                        packet.arg(0).clone(),
                        packet.arg(1).clone(),
                        packet.arg(2).clone(),
                        packet.arg(3).clone(),
                    ),
                };
                self.start_job(server, permit, handle, function, unique, payload);
            }
            PacketType::NO_JOB => {
                if slot.grabs.pop_front().is_none() {
                    tracing::debug!(server = %addr, "NO_JOB without an outstanding GRAB");
                }
                slot.awake = false;
                if let Some(conn) = &slot.conn {
                    conn.mark_proven();
                }
                if slot.grabs.is_empty() && !slot.pre_sleep_sent && !self.draining {
                    if let Some(conn) = &slot.conn {
                        conn.send(Packet::req(PacketType::PRE_SLEEP, &[]));
                        slot.pre_sleep_sent = true;
                    }
                }
            }
            PacketType::NOOP => {
                slot.awake = true;
                slot.pre_sleep_sent = false;
            }
            PacketType::ECHO_RES => slot.echo_since = None,
            PacketType::ERROR => {
                tracing::warn!(
                    server = %addr,
                    code = %String::from_utf8_lossy(packet.arg(0)),
                    text = %String::from_utf8_lossy(packet.arg(1)),
                    "server sent ERROR"
                );
            }
            other => {
                tracing::debug!(server = %addr, packet = other.name(), "ignoring unexpected packet");
            }
        }
    }

    fn start_job(
        &mut self,
        server: usize,
        permit: OwnedSemaphorePermit,
        handle: Bytes,
        function: Bytes,
        unique: Bytes,
        payload: Bytes,
    ) {
        let shared_server = &self.shared.servers[server];
        shared_server.jobs.fetch_add(1, Ordering::Relaxed);
        let slot = &mut self.slots[server];
        let conn = slot
            .conn
            .clone()
            .expect("a job arrives on a live connection");
        slot.running += 1;
        let id = self.next_job;
        self.next_job += 1;
        let Some(func) = self.functions.get(&function).cloned() else {
            // A server should only assign registered functions; WORK_FAIL is
            // the only answer that does not leave the job stuck here.
            tracing::warn!(server = %shared_server.addr, function = %String::from_utf8_lossy(&function),
                "assigned a function this worker did not register; failing it");
            let _ = conn.tx.send(Outgoing::Packet(
                Packet::req(PacketType::WORK_FAIL, &[&handle]),
                Some(permit),
            ));
            slot.running -= 1;
            return;
        };
        let job = Job::new(
            handle,
            function,
            unique,
            payload,
            shared_server.addr.clone(),
            conn.tx.clone(),
            self.events_tx.clone(),
        );
        let task = tokio::spawn(run_job(
            job,
            func,
            permit,
            self.cfg.clone(),
            self.shared.clone(),
            self.events_tx.clone(),
            JobTag {
                id,
                server,
                gen: conn.gen,
            },
        ));
        self.jobs.insert(
            id,
            RunningJob {
                server,
                abort: task.abort_handle(),
                before_shutdown: false,
            },
        );
        self.shared
            .running
            .store(self.jobs.len(), Ordering::Relaxed);
    }

    /// Shutdown: a connection with no GRAB outstanding and no job running gets
    /// RESET_ABILITIES and is closed. Not before: gearmand re-queues the jobs a
    /// connection holds when it sends RESET_ABILITIES.
    fn close_idle_connections(&mut self) {
        for slot in &mut self.slots {
            if slot.closing || !slot.grabs.is_empty() || slot.running > 0 {
                continue;
            }
            if let Some(conn) = &slot.conn {
                conn.send(Packet::req(PacketType::RESET_ABILITIES, &[]));
                let _ = conn.tx.send(Outgoing::Close);
                slot.closing = true;
            }
        }
    }

    fn abandon_jobs(&mut self) {
        if self.jobs.is_empty() {
            return;
        }
        tracing::warn!(
            jobs = self.jobs.len(),
            "shutdown deadline passed; abandoning running jobs (their servers re-queue them)"
        );
        for (_, job) in self.jobs.drain() {
            job.abort.abort();
            self.report.abandoned += 1;
        }
        self.shared.running.store(0, Ordering::Relaxed);
        for slot in &mut self.slots {
            slot.running = 0;
            slot.grabs.clear();
        }
        self.close_idle_connections();
    }
}
