//! Peer aggregation (`--peer`): the links that pull jobs from other job
//! servers for this server's workers.
//!
//! One manager task decides which links exist (one per peer and wanted
//! function) and owns each peer's health and backoff. One task per link
//! (`link`) does its I/O and times its GRABs and probes. Which GRAB goes
//! where is the engine's decision (`engine::peering`): the engine writes
//! GRABs and results straight to the links' queues, and the links hand the
//! peers' answers straight to the engine, so a pulled job crosses no
//! manager. No peer I/O runs under the engine lock, and a dead, silent or
//! hung peer costs only its own links.

mod link;
mod status;

pub use status::{PeerRow, PeerTable};

use crate::dispatch::Dispatch;
use crate::engine::{LinkId, LinkMsg, PeerCmd, Wanted};
use bytes::{Bytes, BytesMut};
use gearbox_client::{Backoff, BackoffPolicy, Health, ServerAddr};
use gearbox_proto::packet::encode_req;
use gearbox_proto::PacketType;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::task::JoinHandle;

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

/// What a link task reports.
pub(crate) enum LinkEvent {
    /// Probed; with the peer's server id if it is a gearboxd.
    Up(LinkId, Option<Bytes>),
    /// The peer handed over its first job on this link.
    Proven(LinkId),
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
    last_error: String,
    /// Its server id, learnt when a link connects (gearboxd only).
    server_id: Option<Bytes>,
}

impl PeerState {
    /// Whether `wanted` may be pulled from this peer: not if every worker
    /// of it is a link whose demand came through this peer (the cycle rule).
    fn pulls(&self, wanted: &Wanted) -> bool {
        self.server_id
            .as_ref()
            .is_none_or(|id| !wanted.exclude.contains(id))
    }
}

struct LinkState {
    peer: usize,
    wanted: Wanted,
    tx: UnboundedSender<LinkMsg>,
    /// Probed and known to the engine.
    up: bool,
    task: JoinHandle<()>,
}

impl LinkState {
    fn send(&self, kind: PacketType, fields: &[&[u8]]) {
        let mut buf = BytesMut::new();
        encode_req(&mut buf, kind, fields);
        let _ = self.tx.send(LinkMsg::Send(buf.freeze()));
    }
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
                last_error: String::new(),
                server_id: None,
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
            let next_retry = self.next_retry();
            let sleep = async {
                match next_retry {
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
                _ = sleep => {}
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
            .filter(|(_, l)| {
                !self
                    .wanted
                    .iter()
                    .any(|w| w.registers_as(&l.wanted) && self.peers[l.peer].pulls(w))
            })
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
                if !self.peers[peer].pulls(&wanted) {
                    continue;
                }
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
        let (tx, rx) = mpsc::unbounded_channel();
        let spec = link::LinkSpec {
            id,
            peer,
            addr: self.peers[peer].addr.clone(),
            wanted: wanted.clone(),
            client_id: self.client_id.clone(),
            connect_timeout: self.options.connect_timeout,
            response_timeout: self.options.response_timeout,
            dispatch: self.dispatch.clone(),
            tx: tx.clone(),
        };
        let task = tokio::spawn(link::run(spec, self.events_tx.clone(), rx));
        self.links.insert(
            id,
            LinkState {
                peer,
                wanted,
                tx,
                up: false,
                task,
            },
        );
    }

    /// A clean close: the link writes what is queued, then closes. The peer
    /// re-queues any job still assigned on it.
    fn close_link(&mut self, id: LinkId) {
        if let Some(link) = self.links.remove(&id) {
            let _ = link.tx.send(LinkMsg::Close);
            self.dispatch.with(|engine| engine.link_down(id));
        }
    }

    fn command(&mut self, cmd: PeerCmd) {
        match cmd {
            PeerCmd::Wanted(wanted) => {
                let filter = &self.options.functions;
                self.wanted = wanted
                    .into_iter()
                    .filter(|w| filter.is_empty() || filter.iter().any(|f| f.as_bytes() == w.name))
                    .collect();
            }
            PeerCmd::ClientId(client_id) => {
                for link in self.links.values() {
                    link.send(PacketType::SET_CLIENT_ID, &[&client_id]);
                }
                self.client_id = client_id;
            }
        }
    }

    fn event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Up(id, server_id) => {
                let Some(link) = self.links.get_mut(&id) else {
                    // Closed meanwhile: the engine learnt of it, so forget it.
                    self.dispatch.with(|engine| engine.link_down(id));
                    return;
                };
                link.up = true;
                let peer = link.peer;
                self.peers[peer].server_id = server_id;
                self.set_health(peer, Health::Up);
                // The next reconcile closes it if the cycle rule says so.
            }
            LinkEvent::Proven(id) => {
                if let Some(peer) = self.links.get(&id).map(|l| l.peer) {
                    self.peers[peer].backoff.succeed();
                }
            }
            LinkEvent::Failed(id, reason) => {
                if let Some(peer) = self.links.get(&id).map(|l| l.peer) {
                    self.peer_failed(peer, reason);
                }
            }
            LinkEvent::Closed => {}
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
        for id in &ids {
            if let Some(link) = self.links.remove(id) {
                link.task.abort();
            }
        }
        self.dispatch.with(|engine| {
            for id in ids {
                engine.link_down(id);
            }
        });
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

    /// When the first cooling peer may be tried again (only matters while
    /// there is something to pull).
    fn next_retry(&self) -> Option<Instant> {
        if self.wanted.is_empty() {
            return None;
        }
        self.peers
            .iter()
            .filter_map(|p| match p.health {
                Health::CoolingDown { until, .. } => Some(until),
                _ => None,
            })
            .min()
    }

    /// Writes the table that `peers` prints (the engine adds its counters).
    fn publish(&self) {
        let rows = self
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut links = self.links.values().filter(|l| l.peer == i).peekable();
                let state = match &p.health {
                    Health::CoolingDown { .. } => "cooling",
                    _ if links.peek().is_none() => "idle",
                    _ if links.any(|l| l.up) => "up",
                    _ => "connecting",
                };
                PeerRow {
                    addr: p.addr.to_string(),
                    state,
                    failures: p.backoff.failures(),
                    last_error: p.last_error.clone(),
                }
            })
            .collect();
        self.table.set(rows);
    }

    /// Asks every link to write what it has and close, and waits for them.
    /// Links still connecting have nothing to write: they are cut off.
    async fn close_all(&mut self) {
        let links: Vec<LinkState> = self.links.drain().map(|(_, l)| l).collect();
        let mut tasks = Vec::new();
        for link in links {
            if link.up {
                let _ = link.tx.send(LinkMsg::Close);
                tasks.push(link.task);
            } else {
                link.task.abort();
            }
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}
