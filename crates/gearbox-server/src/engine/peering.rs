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
use bytes::{Bytes, BytesMut};
use gearbox_proto::packet::encode_req;
use gearbox_proto::{Packet, PacketType};
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

/// What the engine asks of the links' task. Sent while the engine is locked,
/// so these are channel sends only; the task does the I/O.
#[derive(Debug)]
pub enum PeerCmd {
    /// Send GRAB_JOB_UNIQ.
    Grab(LinkId),
    /// Send PRE_SLEEP: the link answered NO_JOB and has nothing in flight.
    PreSleep(LinkId),
    /// Send this encoded WORK_* packet, already under the peer's handle;
    /// `finished` for WORK_COMPLETE, WORK_FAIL and WORK_EXCEPTION.
    Relay {
        link: LinkId,
        packet: Bytes,
        finished: bool,
    },
    /// The functions to pull: every function a relayable local worker does.
    Wanted(Vec<Wanted>),
    /// The client id links must carry (see the module doc).
    ClientId(Bytes),
}

/// A function to pull, with the timeout to register it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub name: Bytes,
    /// `CAN_DO_TIMEOUT`: the longest of the local workers' timeouts, or
    /// `None` (plain CAN_DO) as soon as one worker has none.
    pub timeout: Option<Duration>,
}

struct Link {
    name: Bytes,
    /// May have work: not answered NO_JOB since it last sent NOOP.
    awake: bool,
    /// Has answered a GRAB with a job.
    proven: bool,
    /// Local GRABs waiting for this link's answers, oldest first.
    waiting: VecDeque<(ConnId, Assign)>,
    pre_sleep_sent: bool,
}

impl Link {
    fn eligible(&self) -> bool {
        let limit = if self.proven { MAX_GRABS_PER_LINK } else { 1 };
        self.awake && self.waiting.len() < limit
    }
}

/// A job pulled from a peer: where its results go. `link` is `None` once
/// that connection has gone: the peer has re-queued the job, so its result
/// is dropped and the job is not run again here.
struct Pulled {
    link: Option<LinkId>,
    handle: Bytes,
}

#[derive(Default)]
pub(super) struct Peering {
    tx: Option<UnboundedSender<PeerCmd>>,
    pub(super) table: PeerTable,
    server_id: Bytes,
    links: BTreeMap<LinkId, Link>,
    /// Per function: the next source to serve, counting the local queue.
    cursor: HashMap<Bytes, usize>,
    pulled: HashMap<JobId, Pulled>,
    grabs_in_flight: usize,
    wanted_dirty: bool,
    wanted_sent: Vec<Wanted>,
    client_id_sent: Bytes,
    /// Results that had nowhere to go because their link had gone.
    pub(super) results_dropped: u64,
}

impl Peering {
    fn send(&self, cmd: PeerCmd) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(cmd);
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

/// The ids in a `gearbox-peer:` client id, or `None` for any other client.
pub(super) fn downstream_ids(client_id: &[u8]) -> Option<Vec<Bytes>> {
    let list = client_id.strip_prefix(PEER_CLIENT_ID)?;
    Some(
        list.split(|&b| b == b',')
            .filter(|id| !id.is_empty())
            .map(Bytes::copy_from_slice)
            .collect(),
    )
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
        self.peering
            .links
            .iter()
            .filter(|(_, l)| l.name == name && l.eligible())
            .map(|(&id, _)| id)
            .collect()
    }

    /// Picks the next source for function `name` in turn: `None` is the local
    /// queue (when `local` says it has work), `Some` a link.
    pub(super) fn next_source(
        &mut self,
        name: &Bytes,
        local: bool,
        links: &[LinkId],
    ) -> Option<LinkId> {
        let sources = links.len() + usize::from(local);
        if links.is_empty() {
            return None;
        }
        let cursor = self.peering.cursor.entry(name.clone()).or_insert(0);
        let pick = *cursor % sources;
        *cursor = cursor.wrapping_add(1);
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
        l.waiting.push_back((conn, assign));
        l.pre_sleep_sent = false;
        self.peering.grabs_in_flight += 1;
        self.peering.send(PeerCmd::Grab(link));
    }

    /// Upstream GRABs in flight: a graceful shutdown waits for them too.
    pub fn peer_grabs_in_flight(&self) -> usize {
        self.peering.grabs_in_flight
    }

    /// A link has connected, registered and answered its probe. It starts
    /// asleep with PRE_SLEEP sent, which the peer answers with NOOP at once
    /// if it has work.
    pub fn link_up(&mut self, link: LinkId, name: &[u8]) {
        self.peering.links.insert(
            link,
            Link {
                name: Bytes::copy_from_slice(name),
                awake: false,
                proven: false,
                waiting: VecDeque::new(),
                pre_sleep_sent: true,
            },
        );
        self.peering.send(PeerCmd::PreSleep(link));
    }

    /// NOOP from the peer: it has work. Wake one sleeper that can take it.
    pub fn link_awake(&mut self, link: LinkId) {
        let Some(l) = self.peering.links.get_mut(&link) else {
            return;
        };
        l.awake = true;
        l.pre_sleep_sent = false;
        let name = l.name.clone();
        self.wake_for_link(&name);
    }

    fn wake_for_link(&mut self, name: &[u8]) {
        if let Some(func) = self.functions.id(name) {
            self.wake(func, 1);
        }
    }

    /// NO_JOB from the peer: the oldest waiting GRAB goes to another source.
    pub fn link_no_job(&mut self, link: LinkId) {
        let Some(l) = self.peering.links.get_mut(&link) else {
            return;
        };
        l.awake = false;
        let waiter = l.waiting.pop_front();
        self.sleep_link_if_idle(link);
        if let Some((conn, assign)) = waiter {
            self.peering.grabs_in_flight -= 1;
            self.regrab(conn, assign);
            self.notify_if_drained();
        }
    }

    fn sleep_link_if_idle(&mut self, link: LinkId) {
        let Some(l) = self.peering.links.get_mut(&link) else {
            return;
        };
        if !l.awake && l.waiting.is_empty() && !l.pre_sleep_sent {
            l.pre_sleep_sent = true;
            self.peering.send(PeerCmd::PreSleep(link));
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
        let waiter = l.waiting.pop_front();
        let awake = l.awake;
        if waiter.is_some() {
            self.peering.grabs_in_flight -= 1;
        }
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
        let ability = waiter.and_then(|(conn, assign)| {
            let c = self.conns.map.get(&conn)?;
            let ability = *c.abilities.iter().find(|a| a.func == func)?;
            Some((conn, assign, ability))
        });
        match ability {
            Some((conn, assign, ability)) => {
                self.start(conn, id, ability);
                self.send_assignment(conn, id, assign);
            }
            None => {
                // Its worker left or dropped the function meanwhile: the
                // next local GRAB takes it, before anything else.
                self.functions.get_mut(func).push_front(HIGH, id);
                self.wake(func, 1);
            }
        }
        if awake {
            // The peer may have more: let another sleeper ask.
            self.wake_for_link(name);
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
        for (conn, assign) in l.waiting {
            self.peering.grabs_in_flight -= 1;
            self.regrab(conn, assign);
        }
        self.notify_if_drained();
    }

    /// Serves a GRAB again after its link could not.
    fn regrab(&mut self, conn: ConnId, assign: Assign) {
        if self.conns.map.contains_key(&conn) {
            self.route_grab(conn, assign, None);
        }
    }

    fn notify_if_drained(&self) {
        if self.draining && self.running == 0 && self.peering.grabs_in_flight == 0 {
            self.signals.idle.notify_one();
        }
    }

    /// Sends a pulled job's WORK_* packet home under the peer's handle.
    /// Returns false if `id` is not a pulled job.
    pub(super) fn relay_work(&mut self, id: JobId, p: &Packet) -> bool {
        let Some(pulled) = self.peering.pulled.get(&id) else {
            return false;
        };
        let Some(link) = pulled.link else {
            if is_final(p.kind) {
                self.peering.results_dropped += 1;
                tracing::info!(
                    handle = %String::from_utf8_lossy(&pulled.handle),
                    "result of a pulled job dropped: its peer connection has gone and the peer has re-queued it"
                );
            }
            return true;
        };
        let mut fields: Vec<&[u8]> = vec![&pulled.handle];
        fields.extend(p.args().iter().skip(1).map(|a| &a[..]));
        let mut buf = BytesMut::new();
        encode_req(&mut buf, p.kind, &fields);
        self.peering.send(PeerCmd::Relay {
            link,
            packet: buf.freeze(),
            finished: is_final(p.kind),
        });
        true
    }

    /// A pulled job leaves the tables.
    pub(super) fn forget_pulled(&mut self, id: JobId) {
        self.peering.pulled.remove(&id);
    }

    /// A pulled job whose worker gave it up: back to the front of the local
    /// queue (it is already out of its peer), or dropped if its link has gone.
    /// Returns false if `id` is not a pulled job.
    pub(super) fn requeue_pulled(&mut self, id: JobId) -> bool {
        let Some(pulled) = self.peering.pulled.get(&id) else {
            return false;
        };
        if pulled.link.is_none() {
            self.remove_job(id);
            return true;
        }
        let job = self.jobs.get_mut(id).expect("pulled jobs are live");
        let JobState::Running { worker, .. } = job.state else {
            return true;
        };
        job.retries += 1;
        job.numerator = 0;
        job.denominator = 0;
        job.state = JobState::Queued;
        let func = job.func;
        self.stopped_running(worker, id, func);
        self.functions.get_mut(func).push_front(HIGH, id);
        self.wake(func, 1);
        true
    }

    /// Sends the links' registrations and client id if they changed. Called
    /// on every flush; does nothing unless a worker or link came or went.
    pub(super) fn update_peering(&mut self) {
        if !self.peering.wanted_dirty {
            return;
        }
        self.peering.wanted_dirty = false;
        self.update_client_id();
        // Per function: whether some worker registered it without a timeout,
        // and the longest timeout of the others.
        let mut functions: BTreeMap<Bytes, (bool, Duration)> = BTreeMap::new();
        for (&id, c) in &self.conns.map {
            if c.abilities.is_empty() || !self.relayable(id) {
                continue;
            }
            for a in &c.abilities {
                let name = self.functions.get(a.func).name.clone();
                let entry = functions.entry(name).or_insert((false, Duration::ZERO));
                match a.timeout {
                    None => entry.0 = true,
                    Some(t) => entry.1 = entry.1.max(t),
                }
            }
        }
        let wanted: Vec<Wanted> = functions
            .into_iter()
            .map(|(name, (untimed, longest))| Wanted {
                name,
                timeout: (!untimed).then_some(longest),
            })
            .collect();
        if wanted != self.peering.wanted_sent {
            self.peering.wanted_sent = wanted.clone();
            self.peering.send(PeerCmd::Wanted(wanted));
        }
    }

    /// This server's id and every id named by a link connected here.
    fn update_client_id(&mut self) {
        let mut ids = vec![self.peering.server_id.clone()];
        for c in self.conns.map.values() {
            for id in c.downstream.iter().flatten() {
                if !ids.contains(id) {
                    ids.push(id.clone());
                }
            }
        }
        ids[1..].sort();
        let mut value = PEER_CLIENT_ID.to_vec();
        value.extend_from_slice(&ids.join(&b","[..]));
        let value = Bytes::from(value);
        if value != self.peering.client_id_sent {
            self.peering.client_id_sent = value.clone();
            self.peering.send(PeerCmd::ClientId(value));
        }
    }
}

fn is_final(kind: PacketType) -> bool {
    matches!(
        kind,
        PacketType::WORK_COMPLETE | PacketType::WORK_FAIL | PacketType::WORK_EXCEPTION
    )
}
