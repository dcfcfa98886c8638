//! Peer aggregation (`--peer`): the links that pull jobs from other job
//! servers for this server's workers.
//!
//! One manager task owns every link's connection state, its peer's health
//! and backoff, and the deadlines; one small task per link does the I/O
//! ([`link`]). Which GRAB goes where is the engine's decision
//! (`engine::peering`): the engine sends [`PeerCmd`]s, the manager reports
//! what the peers said by calling the engine. No peer I/O runs under the
//! engine lock, and a dead, silent or hung peer costs only its own links.

mod link;
mod status;

pub use status::{PeerRow, PeerTable};

use crate::dispatch::Dispatch;
use crate::engine::{LinkId, PeerCmd, Wanted};
use bytes::{Bytes, BytesMut};
use gearbox_client::{Backoff, BackoffPolicy, Health, ServerAddr};
use gearbox_proto::packet::encode_req;
use gearbox_proto::{Packet, PacketType};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often a link that has heard nothing is probed with ECHO, so that a
/// peer that vanished without a FIN (a partition, a frozen VM) is found even
/// while nothing is queued anywhere.
const IDLE_PROBE: Duration = Duration::from_secs(10);

/// How the links connect and when they give up.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    pub addrs: Vec<ServerAddr>,
    /// Pull only these functions (`--peer-function`); empty: every function
    /// a local worker does.
    pub functions: Vec<String>,
    pub connect_timeout: Duration,
    /// An ECHO or GRAB unanswered this long fails the peer.
    pub response_timeout: Duration,
    pub backoff: BackoffPolicy,
}

impl PeerOptions {
    pub fn new(addrs: Vec<ServerAddr>) -> PeerOptions {
        PeerOptions {
            addrs,
            functions: Vec::new(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            backoff: BackoffPolicy {
                min: Duration::from_millis(250),
                max: Duration::from_secs(30),
                jitter: 0.25,
            },
        }
    }
}

/// What a link task reports. (Moved once, into the manager: the packet
/// stays inline rather than costing an allocation.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum LinkEvent {
    Up(LinkId),
    Packet(LinkId, Packet),
    Failed(LinkId, String),
    Closed,
}

/// The running manager.
pub struct Peers {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Peers {
    /// Turns peering on in the engine and starts the manager.
    pub(crate) fn start(dispatch: Arc<Dispatch>, options: PeerOptions, server_id: &str) -> Peers {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let table = PeerTable::new(&options.addrs);
        dispatch.with(|engine| engine.enable_peering(cmd_tx, server_id, table.clone()));
        let (stop, stop_rx) = watch::channel(false);
        let manager = Manager::new(dispatch, options, table);
        let task = tokio::spawn(manager.run(cmd_rx, stop_rx));
        Peers { stop, task }
    }

    /// Closes every link after writing what is queued on it (the results of
    /// jobs that finished during a graceful shutdown), within `limit`.
    pub async fn close(self, limit: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            tracing::warn!("peer links did not close in time");
            task.abort();
        }
    }
}

struct PeerState {
    addr: ServerAddr,
    backoff: Backoff,
    health: Health,
    pulled: u64,
    last_moved: Option<Instant>,
    last_error: String,
}

struct LinkState {
    peer: usize,
    wanted: Wanted,
    out: UnboundedSender<Bytes>,
    /// Probed and known to the engine.
    up: bool,
    /// When each GRAB in flight was sent, oldest first.
    grabs: VecDeque<Instant>,
    /// Jobs assigned on this connection whose result is not yet relayed.
    holding: usize,
    probe_since: Option<Instant>,
    last_heard: Instant,
    task: JoinHandle<()>,
}

struct Manager {
    dispatch: Arc<Dispatch>,
    options: PeerOptions,
    table: PeerTable,
    peers: Vec<PeerState>,
    links: HashMap<LinkId, LinkState>,
    wanted: Vec<Wanted>,
    client_id: Bytes,
    next_link: LinkId,
    events_tx: UnboundedSender<LinkEvent>,
    events_rx: UnboundedReceiver<LinkEvent>,
}

impl Manager {
    fn new(dispatch: Arc<Dispatch>, options: PeerOptions, table: PeerTable) -> Manager {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let peers = options
            .addrs
            .iter()
            .map(|addr| PeerState {
                addr: addr.clone(),
                backoff: Backoff::new(options.backoff),
                health: Health::Connecting,
                pulled: 0,
                last_moved: None,
                last_error: String::new(),
            })
            .collect();
        Manager {
            dispatch,
            options,
            table,
            peers,
            links: HashMap::new(),
            wanted: Vec::new(),
            client_id: Bytes::new(),
            next_link: 0,
            events_tx,
            events_rx,
        }
    }

    async fn run(mut self, mut cmds: UnboundedReceiver<PeerCmd>, mut stop: watch::Receiver<bool>) {
        loop {
            self.reconcile();
            self.publish();
            let deadline = self.next_deadline();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => {
                        self.command(cmd);
                        while let Ok(cmd) = cmds.try_recv() {
                            self.command(cmd);
                        }
                    }
                    None => break,
                },
                Some(event) = self.events_rx.recv() => self.event(event),
                _ = sleep => self.check_deadlines(),
                _ = stop.changed() => break,
            }
        }
        self.close_all().await;
    }

    /// Starts the links that should exist and closes those that should not:
    /// one per (peer not cooling down, wanted function).
    fn reconcile(&mut self) {
        let now = Instant::now();
        let stale: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| !self.wanted.contains(&l.wanted))
            .map(|(&id, _)| id)
            .collect();
        for id in stale {
            self.close_link(id);
        }
        for peer in 0..self.peers.len() {
            if let Health::CoolingDown { until, .. } = self.peers[peer].health {
                if until > now {
                    continue;
                }
                self.set_health(peer, Health::Connecting);
            }
            for wanted in self.wanted.clone() {
                let present = self
                    .links
                    .values()
                    .any(|l| l.peer == peer && l.wanted.name == wanted.name);
                if !present {
                    self.start_link(peer, wanted);
                }
            }
        }
    }

    fn start_link(&mut self, peer: usize, wanted: Wanted) {
        self.next_link += 1;
        let id = self.next_link;
        let (out, out_rx) = mpsc::unbounded_channel();
        let spec = link::LinkSpec {
            id,
            addr: self.peers[peer].addr.clone(),
            wanted: wanted.clone(),
            client_id: self.client_id.clone(),
            connect_timeout: self.options.connect_timeout,
            response_timeout: self.options.response_timeout,
        };
        let task = tokio::spawn(link::run(spec, self.events_tx.clone(), out_rx));
        self.links.insert(
            id,
            LinkState {
                peer,
                wanted,
                out,
                up: false,
                grabs: VecDeque::new(),
                holding: 0,
                probe_since: None,
                last_heard: Instant::now(),
                task,
            },
        );
    }

    /// A clean close: the link writes what is queued, then closes. The peer
    /// re-queues any job still assigned on it.
    fn close_link(&mut self, id: LinkId) {
        if let Some(link) = self.links.remove(&id) {
            if link.up {
                self.dispatch.with(|engine| engine.link_down(id));
            }
        }
    }

    fn command(&mut self, cmd: PeerCmd) {
        match cmd {
            PeerCmd::Grab(id) => {
                if let Some(link) = self.links.get_mut(&id) {
                    link.grabs.push_back(Instant::now());
                    send(link, PacketType::GRAB_JOB_UNIQ, &[]);
                }
            }
            PeerCmd::PreSleep(id) => {
                if let Some(link) = self.links.get_mut(&id) {
                    send(link, PacketType::PRE_SLEEP, &[]);
                }
            }
            PeerCmd::Relay {
                link: id,
                packet,
                finished,
            } => match self.links.get_mut(&id) {
                Some(link) => {
                    let _ = link.out.send(packet);
                    if finished {
                        link.holding = link.holding.saturating_sub(1);
                    }
                    self.peers[link.peer].last_moved = Some(Instant::now());
                }
                None => tracing::info!(
                    link = id,
                    "result of a pulled job dropped: its peer connection has gone and the peer has re-queued it"
                ),
            },
            PeerCmd::Wanted(wanted) => {
                let filter = &self.options.functions;
                self.wanted = wanted
                    .into_iter()
                    .filter(|w| filter.is_empty() || filter.iter().any(|f| f.as_bytes() == w.name))
                    .collect();
            }
            PeerCmd::ClientId(client_id) => {
                for link in self.links.values_mut() {
                    send(link, PacketType::SET_CLIENT_ID, &[&client_id]);
                }
                self.client_id = client_id;
            }
        }
    }

    fn event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Up(id) => {
                let Some(link) = self.links.get_mut(&id) else {
                    return;
                };
                link.up = true;
                link.last_heard = Instant::now();
                let (peer, name) = (link.peer, link.wanted.name.clone());
                self.set_health(peer, Health::Up);
                self.dispatch.with(|engine| engine.link_up(id, &name));
            }
            LinkEvent::Packet(id, packet) => self.packet(id, packet),
            LinkEvent::Failed(id, reason) => {
                if let Some(peer) = self.links.get(&id).map(|l| l.peer) {
                    self.peer_failed(peer, reason);
                }
            }
            LinkEvent::Closed => {}
        }
    }

    fn packet(&mut self, id: LinkId, p: Packet) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        let now = Instant::now();
        link.last_heard = now;
        let peer = link.peer;
        match p.kind {
            PacketType::NOOP => self.dispatch.with(|engine| engine.link_awake(id)),
            PacketType::NO_JOB => {
                link.grabs.pop_front();
                self.dispatch.with(|engine| engine.link_no_job(id));
            }
            PacketType::JOB_ASSIGN_UNIQ | PacketType::JOB_ASSIGN => {
                link.grabs.pop_front();
                link.holding += 1;
                let state = &mut self.peers[peer];
                state.pulled += 1;
                state.last_moved = Some(now);
                state.backoff.succeed();
                let (unique, data) = if p.kind == PacketType::JOB_ASSIGN_UNIQ {
                    (p.arg(2).clone(), p.arg(3).clone())
                } else {
                    (Bytes::new(), p.arg(2).clone())
                };
                self.dispatch
                    .with(|engine| engine.link_job(id, p.arg(0), p.arg(1), &unique, &data));
            }
            PacketType::ECHO_RES => link.probe_since = None,
            PacketType::ERROR => {
                let reason = format!(
                    "ERROR {} {}",
                    String::from_utf8_lossy(p.arg(0)),
                    String::from_utf8_lossy(p.arg(1))
                );
                self.peer_failed(peer, reason);
            }
            _ => {}
        }
    }

    /// Any failure of any of a peer's links fails the peer: every link to it
    /// closes at once (the peer re-queues what they held), and it is left
    /// alone for its backoff.
    fn peer_failed(&mut self, peer: usize, reason: String) {
        let ids: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.peer == peer)
            .map(|(&id, _)| id)
            .collect();
        let mut down = Vec::new();
        for id in ids {
            if let Some(link) = self.links.remove(&id) {
                link.task.abort();
                if link.up {
                    down.push(id);
                }
            }
        }
        if !down.is_empty() {
            self.dispatch.with(|engine| {
                for id in down {
                    engine.link_down(id);
                }
            });
        }
        let state = &mut self.peers[peer];
        let delay = state.backoff.fail();
        state.last_error = reason.clone();
        let health = Health::CoolingDown {
            until: Instant::now() + delay,
            failures: state.backoff.failures(),
            error: reason,
        };
        self.set_health(peer, health);
    }

    fn set_health(&mut self, peer: usize, health: Health) {
        let state = &mut self.peers[peer];
        health.log_change(&state.health, &format_args!("peer {}", state.addr));
        state.health = health;
    }

    fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.options.response_timeout;
        let links = self.links.values().filter(|l| l.up).flat_map(|l| {
            let grab = l.grabs.front().map(|&t| t + timeout);
            let probe = match l.probe_since {
                Some(t) => t + timeout,
                None => l.last_heard + IDLE_PROBE,
            };
            grab.into_iter().chain([probe])
        });
        let cooling = self.peers.iter().filter_map(|p| match p.health {
            Health::CoolingDown { until, .. } if !self.wanted.is_empty() => Some(until),
            _ => None,
        });
        links.chain(cooling).min()
    }

    fn check_deadlines(&mut self) {
        let now = Instant::now();
        let timeout = self.options.response_timeout;
        let mut failed: Vec<(usize, String)> = Vec::new();
        for link in self.links.values_mut().filter(|l| l.up) {
            if link.grabs.front().is_some_and(|&t| t + timeout <= now) {
                failed.push((link.peer, format!("GRAB unanswered for {timeout:?}")));
            } else if link.probe_since.is_some_and(|t| t + timeout <= now) {
                failed.push((link.peer, format!("ECHO unanswered for {timeout:?}")));
            } else if link.probe_since.is_none() && link.last_heard + IDLE_PROBE <= now {
                link.probe_since = Some(now);
                send(link, PacketType::ECHO_REQ, &[b"gearbox-peer-idle-probe"]);
            }
        }
        for (peer, reason) in failed {
            if self.links.values().any(|l| l.peer == peer) {
                self.peer_failed(peer, reason);
            }
        }
    }

    /// Writes the table that `peers` prints.
    fn publish(&self) {
        let now = Instant::now();
        let rows = self
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let links: Vec<&LinkState> = self.links.values().filter(|l| l.peer == i).collect();
                let state = match &p.health {
                    Health::CoolingDown { .. } => "cooling",
                    _ if links.is_empty() => "idle",
                    _ if links.iter().any(|l| l.up) => "up",
                    _ => "connecting",
                };
                PeerRow {
                    addr: p.addr.to_string(),
                    state,
                    failures: p.backoff.failures(),
                    pulled: p.pulled,
                    in_flight: links.iter().map(|l| l.grabs.len() + l.holding).sum(),
                    idle_s: p.last_moved.map(|t| now.duration_since(t).as_secs()),
                    last_error: p.last_error.clone(),
                }
            })
            .collect();
        self.table.set(rows);
    }

    /// Drops every link's queue, so each writes what it has and closes, and
    /// waits for them.
    async fn close_all(&mut self) {
        let links: Vec<LinkState> = self.links.drain().map(|(_, l)| l).collect();
        let tasks: Vec<JoinHandle<()>> = links.into_iter().map(|l| l.task).collect();
        for task in tasks {
            let _ = task.await;
        }
    }
}

fn send(link: &LinkState, kind: PacketType, fields: &[&[u8]]) {
    let mut buf = BytesMut::new();
    encode_req(&mut buf, kind, fields);
    let _ = link.out.send(buf.freeze());
}
