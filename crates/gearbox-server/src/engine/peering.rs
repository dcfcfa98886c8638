//! Peer links: jobs pulled from other job servers (`--peer`) for this
//! server's own workers. The links' I/O lives in [`crate::peers`]; every
//! decision about them is made here, under the engine lock, because it is
//! a dispatch decision: which source a worker's GRAB is served from.
//!
//! The rules, and why:
//!
//! * **A pull is a worker's GRAB.** A local worker's GRAB is served either
//!   from the local queue or by sending one GRAB upstream on a link for one of
//!   its functions and holding the worker's GRAB until the answer comes. So
//!   the jobs pulled and not finished never outnumber the local workers
//!   waiting for them, and a pulled job goes straight to the worker that asked
//!   (no NO_JOB → PRE_SLEEP → NOOP → GRAB round trips).
//! * **Fair across sources.** The local queue and each awake link of a
//!   function are sources; each GRAB takes the next one in turn, so a deep
//!   backlog on one server gets its share and no more.
//! * **Links sleep as workers do.** A link that answered NO_JOB sends
//!   PRE_SLEEP and is not asked again until its peer sends NOOP, which wakes
//!   one local sleeper. An idle aggregator sends nothing.
//! * **No cycles.** A link names, in its client id, every server its demand
//!   can come from (`gearbox-peer:ID,ID...`). A GRAB from a link whose list
//!   holds this server's own id is served from the local queue only, and such
//!   a link's functions are not pulled upstream. See docs/peers.md.

use super::grab::Assign;
use super::jobs::{Job, JobId, JobState, HIGH};
use super::{ConnId, Engine};
use crate::peers::PeerTable;
use bytes::Bytes;
use gearbox_proto::PacketType;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// One connection to one peer for one function. A new connection is a new
/// link: job handles from an old connection mean nothing on a new one.
pub type LinkId = u64;

/// The client id prefix that marks a connection as another aggregator's link.
pub const PEER_CLIENT_ID: &[u8] = b"gearbox-peer:";

/// GRABs one link may have in flight once it has answered one. Until then
/// one: a peer that hangs on GRAB then holds one local worker, not several.
const MAX_GRABS_PER_LINK: usize = 4;

/// What the engine asks of the peer manager. Sent while the engine is
/// locked, so these are channel sends only.
#[derive(Debug)]
pub enum PeerCmd {
    /// The functions to pull: every function a relayable local worker does.
    Wanted(Vec<Wanted>),
    /// The client id links must carry (see the module doc).
    ClientId(Bytes),
}

/// What a link's task is asked to send. The engine writes GRABs, PRE_SLEEPs
/// and results straight to the link, without a hop through the manager: a
/// pulled job costs no more thread wake-ups than it must.
#[derive(Debug)]
pub enum LinkMsg {
    /// GRAB_JOB_UNIQ; the link times it.
    Grab,
    PreSleep,
    /// An encoded packet: a relayed WORK_*, or SET_CLIENT_ID.
    Send(Bytes),
    /// Write what is queued and close.
    Close,
}

/// A function to pull, with the timeout to register it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub name: Bytes,
    /// `CAN_DO_TIMEOUT`: the longest of the local workers' timeouts, or
    /// `None` (plain CAN_DO) as soon as one worker has none.
    pub timeout: Option<Duration>,
    /// Server ids not to pull it from: every connection doing it is a link
    /// whose demand came through that server.
    pub exclude: Vec<Bytes>,
}

impl Wanted {
    /// The same registration (a link need not reconnect for `other`).
    pub fn registers_as(&self, other: &Wanted) -> bool {
        self.name == other.name && self.timeout == other.timeout
    }
}

pub(super) struct Link {
    pub(super) name: Bytes,
    /// The peer's server id (`serverid`), if it is a gearboxd.
    pub(super) upstream_id: Option<Bytes>,
    /// Index of the peer in `--peer` order.
    pub(super) peer: usize,
    pub(super) tx: UnboundedSender<LinkMsg>,
    /// May have work: not answered NO_JOB since it last sent NOOP.
    pub(super) awake: bool,
    /// Has answered a GRAB with a job.
    pub(super) proven: bool,
    /// One entry per GRAB in flight upstream, oldest first: who its answer
    /// is for.
    pub(super) waiting: VecDeque<Waiter>,
    pub(super) pre_sleep_sent: bool,
    /// A GRAB has been in flight longer than the hold bound: ask it nothing
    /// more until it answers.
    pub(super) slow: bool,
}

impl Link {
    fn eligible(&self) -> bool {
        let limit = if self.proven { MAX_GRABS_PER_LINK } else { 1 };
        // A closed queue is a link whose task has gone and whose link_down
        // has not arrived yet: ask it nothing.
        self.awake && !self.slow && self.waiting.len() < limit && !self.tx.is_closed()
    }

    pub(super) fn send(&self, msg: LinkMsg) {
        let _ = self.tx.send(msg);
    }
}

/// GRABs one source serves in a row before the next source's turn.
const TURN: u32 = 4;

/// A function's rotation over its sources.
#[derive(Default)]
pub(super) struct Turn {
    index: usize,
    served: u32,
}

/// Who an upstream GRAB's answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiter {
    /// A local GRAB, held until the answer comes.
    Grab(ConnId, Assign),
    /// A sleeping worker woken (NOOP) when the peer said it has work. The
    /// upstream GRAB goes at once, in parallel with the worker's NOOP → GRAB
    /// round trip, instead of after it: one loopback round trip less per
    /// job that finds its worker asleep.
    Reserved(ConnId),
    /// Served elsewhere meanwhile (the link was slow). A job it brings
    /// waits at the head of the local queue for the next local GRAB.
    Gone,
}

/// What `peers` shows per peer that only the engine knows.
#[derive(Debug, Default, Clone, Copy)]
pub struct PeerCounters {
    pub pulled: u64,
    /// When a job was last pulled from it or its result relayed.
    pub last_moved: Option<std::time::Instant>,
}

/// A job pulled from a peer: where its results go. `link` is `None` once
/// that connection has gone: the peer has re-queued the job, so its result
/// is dropped and the job is not run again here.
pub(super) struct Pulled {
    pub(super) link: Option<LinkId>,
    pub(super) handle: Bytes,
}

#[derive(Default)]
pub(super) struct Peering {
    pub(super) tx: Option<UnboundedSender<PeerCmd>>,
    pub(super) table: PeerTable,
    pub(super) server_id: Bytes,
    pub(super) links: BTreeMap<LinkId, Link>,
    /// Per function: whose turn it is, counting the local queue.
    pub(super) cursor: HashMap<Bytes, Turn>,
    pub(super) pulled: HashMap<JobId, Pulled, super::IdBuildHasher>,
    pub(super) grabs_in_flight: usize,
    pub(super) counters: Vec<PeerCounters>,
    pub(super) wanted_dirty: bool,
    pub(super) wanted_sent: Vec<Wanted>,
    pub(super) client_id_sent: Bytes,
}

impl Peering {
    pub(super) fn send(&self, cmd: PeerCmd) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(cmd);
        }
    }

    pub(super) fn counters(&mut self, peer: usize) -> &mut PeerCounters {
        if self.counters.len() <= peer {
            self.counters.resize(peer + 1, PeerCounters::default());
        }
        &mut self.counters[peer]
    }

    pub(super) fn with_server_id(id: &str) -> Peering {
        Peering {
            server_id: Bytes::copy_from_slice(id.as_bytes()),
            ..Peering::default()
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub(super) fn mark_wanted_dirty(&mut self) {
        if self.enabled() {
            self.wanted_dirty = true;
        }
    }
}

impl Engine {
    /// Turns peering on: commands go to `tx`, and links name this server `id`.
    pub fn enable_peering(
        &mut self,
        tx: UnboundedSender<PeerCmd>,
        server_id: &str,
        table: PeerTable,
    ) {
        self.peering.tx = Some(tx);
        self.peering.table = table;
        self.peering.server_id = Bytes::copy_from_slice(server_id.as_bytes());
        self.peering.wanted_dirty = true;
        self.update_client_id();
    }

    /// Whether `conn`'s GRABs may be served from peers, and its functions
    /// pulled: any client but a link whose demand already passed through here.
    pub(super) fn relayable(&self, conn: ConnId) -> bool {
        let Some(c) = self.conns.map.get(&conn) else {
            return false;
        };
        c.downstream
            .as_ref()
            .is_none_or(|ids| !ids.contains(&self.peering.server_id))
    }

    /// The links that may serve a GRAB of `conn` for function `name` now.
    pub(super) fn eligible_links(&self, conn: ConnId, name: &[u8]) -> Vec<LinkId> {
        if self.peering.links.is_empty() || !self.relayable(conn) {
            return Vec::new();
        }
        let downstream = self
            .conns
            .map
            .get(&conn)
            .and_then(|c| c.downstream.as_ref());
        // Never back to a server the demand came through.
        let came_through = |l: &Link| {
            l.upstream_id
                .as_ref()
                .is_some_and(|up| downstream.is_some_and(|d| d.contains(up)))
        };
        self.peering
            .links
            .iter()
            .filter(|(_, l)| l.name == name && l.eligible() && !came_through(l))
            .map(|(&id, _)| id)
            .collect()
    }

    /// Picks the next source for function `name` in turn: `None` is the local
    /// queue (when `local` says it has work), `Some` a link. Each source
    /// serves [`TURN`] GRABs in a row, so that a worker's result and its next
    /// GRAB usually go to the same peer in one write, and several workers'
    /// GRABs to one link leave together: one wake-up where strict
    /// alternation costs two.
    pub(super) fn next_source(
        &mut self,
        name: &Bytes,
        local: bool,
        links: &[LinkId],
    ) -> Option<LinkId> {
        if links.is_empty() {
            return None;
        }
        let sources = links.len() + usize::from(local);
        let turn = self.peering.cursor.entry(name.clone()).or_default();
        let pick = turn.index % sources;
        turn.served += 1;
        if turn.served >= TURN {
            turn.served = 0;
            turn.index = turn.index.wrapping_add(1);
        }
        if local && pick == 0 {
            None
        } else {
            Some(links[pick - usize::from(local)])
        }
    }

    /// Serves `conn`'s GRAB from `link`: holds it and asks the peer.
    pub(super) fn hold_grab(&mut self, conn: ConnId, assign: Assign, link: LinkId) {
        let Some(l) = self.peering.links.get_mut(&link) else {
            return;
        };
        l.waiting.push_back(Waiter::Grab(conn, assign));
        l.pre_sleep_sent = false;
        l.send(LinkMsg::Grab);
        self.peering.grabs_in_flight += 1;
    }

    /// Upstream GRABs in flight: a graceful shutdown waits for them too.
    pub fn peer_grabs_in_flight(&self) -> usize {
        self.peering.grabs_in_flight
    }

    /// A link has connected, registered and answered its probe. It starts
    /// asleep with PRE_SLEEP sent, which the peer answers with NOOP at once
    /// if it has work.
    pub fn link_up(
        &mut self,
        link: LinkId,
        peer: usize,
        name: &[u8],
        upstream_id: Option<Bytes>,
        tx: UnboundedSender<LinkMsg>,
    ) {
        let l = Link {
            name: Bytes::copy_from_slice(name),
            upstream_id,
            peer,
            tx,
            awake: false,
            proven: false,
            waiting: VecDeque::new(),
            pre_sleep_sent: true,
            slow: false,
        };
        if l.tx.is_closed() {
            return;
        }
        l.send(LinkMsg::PreSleep);
        self.peering.links.insert(link, l);
    }

    /// The link's oldest GRAB has waited longer than the hold bound: serve
    /// the local GRABs it holds from other sources now, and ask it nothing
    /// more until it answers. (If it never does, the link fails at its
    /// timeout; if it does, the job waits here for the next local GRAB.)
    pub fn link_slow(&mut self, link: LinkId) {
        let Some(l) = self.peering.links.get_mut(&link) else {
            return;
        };
        l.slow = true;
        let held: Vec<Waiter> = l
            .waiting
            .iter_mut()
            .map(|w| std::mem::replace(w, Waiter::Gone))
            .collect();
        for waiter in held {
            self.release_waiter(link, waiter);
        }
    }

    /// An upstream GRAB's answer will not reach `waiter`: a held GRAB is
    /// served by another source, a reservation is dropped.
    fn release_waiter(&mut self, link: LinkId, waiter: Waiter) {
        match waiter {
            Waiter::Grab(conn, assign) => self.regrab(conn, assign),
            Waiter::Reserved(conn) => {
                if let Some(c) = self.conns.map.get_mut(&conn) {
                    if c.reservation == Some(link) {
                        c.reservation = None;
                    }
                }
            }
            Waiter::Gone => {}
        }
    }

    /// NOOP from the peer: it has work. Wake one sleeper that can take it,
    /// and ask the peer for its job at once.
    pub fn link_awake(&mut self, link: LinkId) {
        let Some(l) = self.peering.links.get_mut(&link) else {
            return;
        };
        l.awake = true;
        l.pre_sleep_sent = false;
        self.reserve_sleeper(link);
    }

    /// Wakes the oldest sleeping worker that can take `link`'s function and
    /// sends one upstream GRAB reserved for it (see [`Waiter::Reserved`]).
    fn reserve_sleeper(&mut self, link: LinkId) {
        let Some(l) = self.peering.links.get(&link) else {
            return;
        };
        let Some(func) = self.functions.id(&l.name) else {
            return;
        };
        if !l.eligible() {
            return;
        }
        // Sleepers that may not be served from peers (another aggregator's
        // link back to us) stay asleep, in their place.
        let mut skipped = Vec::new();
        let mut chosen = None;
        while let Some((conn, generation)) = self.functions.get_mut(func).sleepers.pop_front() {
            let Some(c) = self.conns.map.get(&conn) else {
                continue;
            };
            let asleep = c.sleeping
                && c.woken_for.is_none()
                && c.sleep_generation == generation
                && c.reservation.is_none()
                && c.abilities.iter().any(|a| a.func == func);
            if !asleep {
                continue;
            }
            if self.relayable(conn) {
                chosen = Some(conn);
                break;
            }
            skipped.push((conn, generation));
        }
        let sleepers = &mut self.functions.get_mut(func).sleepers;
        for entry in skipped.into_iter().rev() {
            sleepers.push_front(entry);
        }
        let Some(conn) = chosen else {
            return;
        };
        let c = self.conns.map.get_mut(&conn).expect("checked above");
        c.woken_for = Some(func);
        c.reservation = Some(link);
        self.conns.send(conn, PacketType::NOOP, &[]);
        let l = self.peering.links.get_mut(&link).expect("checked above");
        l.waiting.push_back(Waiter::Reserved(conn));
        l.send(LinkMsg::Grab);
        self.peering.grabs_in_flight += 1;
    }

    /// A GRAB from a worker woken with a reservation: the job that came for
    /// it, or the upstream GRAB already on its way. Returns false if `conn`
    /// holds no reservation.
    pub(super) fn take_reservation(&mut self, conn: ConnId, assign: Assign) -> bool {
        let Some(c) = self.conns.map.get_mut(&conn) else {
            return false;
        };
        if let Some(id) = c.reserved_job.take() {
            c.reservation = None;
            let ours = self.jobs.get(id).is_some_and(
                |j| matches!(j.state, JobState::Running { worker, .. } if worker == conn),
            );
            if ours {
                self.send_assignment(conn, id, assign);
                return true;
            }
            return false;
        }
        let Some(link) = c.reservation.take() else {
            return false;
        };
        let Some(l) = self.peering.links.get_mut(&link) else {
            return false;
        };
        match l.waiting.iter_mut().find(|w| **w == Waiter::Reserved(conn)) {
            Some(waiter) => {
                *waiter = Waiter::Grab(conn, assign);
                true
            }
            None => false,
        }
    }

    /// Whether `conn` was woken for a job that is coming or has come.
    pub(super) fn has_reservation(&self, conn: ConnId) -> bool {
        self.conns
            .map
            .get(&conn)
            .is_some_and(|c| c.reservation.is_some() || c.reserved_job.is_some())
    }

    /// NO_JOB from the peer: the oldest waiting GRAB goes to another source.
    pub fn link_no_job(&mut self, link: LinkId) {
        let Some(l) = self.peering.links.get_mut(&link) else {
            return;
        };
        l.awake = false;
        l.slow = false;
        let Some(waiter) = l.waiting.pop_front() else {
            return;
        };
        self.peering.grabs_in_flight -= 1;
        self.sleep_link_if_idle(link);
        self.release_waiter(link, waiter);
        self.notify_if_drained();
    }

    fn sleep_link_if_idle(&mut self, link: LinkId) {
        let Some(l) = self.peering.links.get_mut(&link) else {
            return;
        };
        if !l.awake && l.waiting.is_empty() && !l.pre_sleep_sent {
            l.pre_sleep_sent = true;
            l.send(LinkMsg::PreSleep);
        }
    }

    /// JOB_ASSIGN_UNIQ from the peer: a job for the oldest waiting GRAB. It
    /// becomes a local job (so that if its worker dies another local worker
    /// gets it), never stored and never coalesced with local jobs: the peer
    /// holds it, and re-queues it if this server goes.
    pub fn link_job(
        &mut self,
        link: LinkId,
        handle: &[u8],
        name: &[u8],
        unique: &[u8],
        data: &[u8],
    ) {
        let Some(l) = self.peering.links.get_mut(&link) else {
            return;
        };
        l.proven = true;
        l.slow = false;
        let (peer, awake) = (l.peer, l.awake);
        let waiter = match l.waiting.pop_front() {
            Some(waiter) => {
                self.peering.grabs_in_flight -= 1;
                waiter
            }
            None => Waiter::Gone,
        };
        let counters = self.peering.counters(peer);
        counters.pulled += 1;
        counters.last_moved = Some(std::time::Instant::now());
        let func = self.functions.get_or_create(name);
        let mut job = Job::new(func, HIGH, JobState::Queued, true, unique, b"", data);
        job.pulled = true;
        let id = self.jobs.insert_unindexed(job);
        self.peering.pulled.insert(
            id,
            Pulled {
                link: Some(link),
                handle: Bytes::copy_from_slice(handle),
            },
        );
        let (conn, assign) = match waiter {
            Waiter::Grab(conn, assign) => (Some(conn), Some(assign)),
            Waiter::Reserved(conn) => {
                let still = self
                    .conns
                    .map
                    .get(&conn)
                    .is_some_and(|c| c.reservation == Some(link));
                (still.then_some(conn), None)
            }
            Waiter::Gone => (None, None),
        };
        let ability = conn.and_then(|conn| {
            let c = self.conns.map.get(&conn)?;
            let ability = *c.abilities.iter().find(|a| a.func == func)?;
            Some((conn, ability))
        });
        match ability {
            Some((conn, ability)) => {
                self.start(conn, id, ability);
                match assign {
                    Some(assign) => self.send_assignment(conn, id, assign),
                    None => {
                        // Its GRAB is on the way: answered with this job.
                        let c = self.conns.map.get_mut(&conn).expect("checked above");
                        c.reservation = None;
                        c.reserved_job = Some(id);
                    }
                }
            }
            None => {
                // Its worker left or dropped the function meanwhile: the
                // next local GRAB takes it, before anything else.
                self.functions.get_mut(func).push_front(HIGH, id);
                self.wake(func, 1);
            }
        }
        if awake {
            // The peer may have more: another sleeper may take it.
            self.reserve_sleeper(link);
        } else {
            self.sleep_link_if_idle(link);
        }
        self.notify_if_drained();
    }

    /// The link's connection has gone. Its waiting GRABs go to other sources;
    /// its pulled jobs are orphans: the peer re-queued them.
    pub fn link_down(&mut self, link: LinkId) {
        let Some(l) = self.peering.links.remove(&link) else {
            return;
        };
        for pulled in self.peering.pulled.values_mut() {
            if pulled.link == Some(link) {
                pulled.link = None;
            }
        }
        for waiter in l.waiting {
            self.peering.grabs_in_flight -= 1;
            self.release_waiter(link, waiter);
        }
        self.notify_if_drained();
    }

    /// Serves a GRAB again after its link could not.
    fn regrab(&mut self, conn: ConnId, assign: Assign) {
        if !self.conns.map.contains_key(&conn) {
            return;
        }
        if self.draining {
            // A graceful shutdown starts no new pull.
            return self.conns.send(conn, PacketType::NO_JOB, &[]);
        }
        self.route_grab(conn, assign, None);
    }

    fn notify_if_drained(&self) {
        if self.draining && self.running == 0 && self.peering.grabs_in_flight == 0 {
            self.signals.idle.notify_one();
        }
    }
}
