//! One task per server: connect (bounded), register, probe, then shuttle packets
//! between the socket and the driver until the connection ends; then cool down
//! with backoff and try again. This task is the only writer of its server's
//! [`Health`], so every transition is logged exactly once.

use crate::driver::Event;
use crate::Config;
use futures_util::{SinkExt, StreamExt};
use gearbox_client::{Backoff, Health, ServerAddr, Stream};
use gearbox_proto::{Codec, Frame, Packet, PacketType};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// Something to write on a connection. (Moved once, into the writer: the
/// packet stays inline rather than costing an allocation.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum Outgoing {
    /// A packet; the permit, if any, is the job slot the packet finishes, and is
    /// released only once the packet is written (or the connection is gone), so
    /// the server never sees this worker hold more jobs than its limit.
    Packet(Packet, Option<OwnedSemaphorePermit>),
    /// Flush and close: graceful shutdown.
    Close,
}

pub(crate) type ConnTx = UnboundedSender<Outgoing>;

/// The driver's side of one live connection.
#[derive(Clone)]
pub(crate) struct Conn {
    pub gen: u64,
    pub tx: ConnTx,
    kill: Arc<Kill>,
    /// Set by the driver once the server has answered a GRAB on this
    /// connection. Only then is the server's backoff reset: a server that
    /// answers the ECHO probe and then hangs on GRAB keeps its failure count
    /// growing instead of flapping at the minimum cooldown.
    proven: Arc<AtomicBool>,
}

#[derive(Default)]
struct Kill {
    token: CancellationToken,
    reason: Mutex<Option<String>>,
}

impl Conn {
    pub fn mark_proven(&self) {
        self.proven.store(true, Ordering::Relaxed);
    }

    pub fn is_proven(&self) -> bool {
        self.proven.load(Ordering::Relaxed)
    }

    /// Drops the connection at once (the server re-queues whatever this
    /// connection held), recording why for the health record.
    pub fn kill(&self, reason: String) {
        let mut slot = self.kill.reason.lock().unwrap();
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.kill.token.cancel();
    }

    pub fn send(&self, packet: Packet) {
        let _ = self.tx.send(Outgoing::Packet(packet, None));
    }
}

/// Per-server state shared with [`crate::WorkerHandle`].
pub(crate) struct ServerShared {
    pub addr: ServerAddr,
    pub health: Mutex<Health>,
    pub jobs: std::sync::atomic::AtomicU64,
}

impl ServerShared {
    pub fn new(addr: ServerAddr) -> ServerShared {
        ServerShared {
            addr,
            health: Mutex::new(Health::Connecting),
            jobs: Default::default(),
        }
    }

    fn set_health(&self, health: Health) {
        let mut cur = self.health.lock().unwrap();
        health.log_change(&cur, &self.addr);
        *cur = health;
    }
}

enum Ended {
    /// Closed on request (graceful shutdown): do not reconnect.
    Closed,
    Failed(String),
}

/// Runs until `stop` is cancelled (between connections) or a graceful close.
pub(crate) async fn server_task(
    cfg: Arc<Config>,
    index: usize,
    shared: Arc<ServerShared>,
    events: UnboundedSender<Event>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(cfg.backoff);
    let mut gen = 0u64;
    loop {
        if stop.is_cancelled() {
            return;
        }
        shared.set_health(Health::Connecting);
        let established = tokio::select! {
            _ = stop.cancelled() => return,
            r = establish(&cfg, &shared.addr) => r,
        };
        let error = match established {
            Ok(framed) => {
                gen += 1;
                shared.set_health(Health::Up);
                let (tx, rx) = mpsc::unbounded_channel();
                let kill = Arc::new(Kill::default());
                let proven = Arc::new(AtomicBool::new(false));
                let conn = Conn {
                    gen,
                    tx,
                    kill: kill.clone(),
                    proven: proven.clone(),
                };
                if events
                    .send(Event::Up {
                        server: index,
                        conn,
                    })
                    .is_err()
                {
                    return;
                }
                let ended = serve(framed, rx, &kill, &events, index, gen).await;
                let _ = events.send(Event::Down { server: index, gen });
                if proven.load(Ordering::Relaxed) {
                    backoff.succeed();
                }
                match ended {
                    Ended::Closed => {
                        tracing::debug!(server = %shared.addr, "connection closed");
                        return;
                    }
                    Ended::Failed(e) => e,
                }
            }
            Err(e) => e,
        };
        let delay = backoff.fail();
        shared.set_health(Health::CoolingDown {
            until: Instant::now() + delay,
            failures: backoff.failures(),
            error,
        });
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Connects within `connect_timeout`, registers the client id and functions, and
/// waits (within `response_timeout`) for the answer to an ECHO probe. Only a
/// server that answers is put into the grab rotation, so a server that accepts
/// and then says nothing never holds one of the worker's job slots.
async fn establish(cfg: &Config, addr: &ServerAddr) -> Result<Framed<Stream, Codec>, String> {
    let stream = addr
        .connect(cfg.connect_timeout)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut framed = Framed::new(stream, Codec::default());
    let probe = async {
        if let Some(id) = &cfg.client_id {
            framed
                .feed(Packet::req(PacketType::SET_CLIENT_ID, &[id.as_bytes()]))
                .await?;
        }
        for f in &cfg.functions {
            let packet = match f.timeout {
                Some(t) => {
                    let ms = t.as_millis().max(1).to_string();
                    Packet::req(
                        PacketType::CAN_DO_TIMEOUT,
                        &[f.name.as_bytes(), ms.as_bytes()],
                    )
                }
                None => Packet::req(PacketType::CAN_DO, &[f.name.as_bytes()]),
            };
            framed.feed(packet).await?;
        }
        framed
            .send(Packet::req(
                PacketType::ECHO_REQ,
                &[b"gearbox-worker probe"],
            ))
            .await?;
        loop {
            match framed.next().await {
                Some(Ok(Frame::Packet(p))) if p.kind == PacketType::ECHO_RES => return Ok(()),
                Some(Ok(Frame::Packet(p))) if p.kind == PacketType::ERROR => {
                    return Err(std::io::Error::other(format!(
                        "server answered the registration with ERROR {} {}",
                        String::from_utf8_lossy(p.arg(0)),
                        String::from_utf8_lossy(p.arg(1))
                    )))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(std::io::Error::other(e.to_string())),
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "server closed the connection",
                    ))
                }
            }
        }
    };
    match tokio::time::timeout(cfg.response_timeout, probe).await {
        Ok(Ok(())) => Ok(framed),
        Ok(Err(e)) => Err(format!("registration: {e}")),
        Err(_) => Err(format!(
            "no answer to ECHO_REQ within {:?}",
            cfg.response_timeout
        )),
    }
}

/// How many queued packets are written before one flush.
const WRITE_BATCH: usize = 64;

async fn serve(
    mut framed: Framed<Stream, Codec>,
    mut rx: UnboundedReceiver<Outgoing>,
    kill: &Kill,
    events: &UnboundedSender<Event>,
    server: usize,
    gen: u64,
) -> Ended {
    let killed = || Ended::Failed(kill.reason.lock().unwrap().clone().unwrap_or_default());
    let mut permits: Vec<OwnedSemaphorePermit> = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = kill.token.cancelled() => return killed(),
            msg = rx.recv() => {
                if msg.is_none() {
                    // The driver is gone without a graceful close.
                    return Ended::Closed;
                }
                let mut msg = msg;
                let mut close = false;
                let mut n = 0;
                while let Some(m) = msg.take() {
                    match m {
                        Outgoing::Close => { close = true; break; }
                        Outgoing::Packet(p, permit) => {
                            if let Err(e) = framed.feed(p).await {
                                return Ended::Failed(format!("write: {e}"));
                            }
                            permits.extend(permit);
                        }
                    }
                    n += 1;
                    if n < WRITE_BATCH {
                        msg = rx.try_recv().ok();
                    }
                }
                let flushed = tokio::select! {
                    _ = kill.token.cancelled() => return killed(),
                    r = SinkExt::<Packet>::flush(&mut framed) => r,
                };
                // Written: the slots these results held are free now.
                permits.clear();
                if let Err(e) = flushed {
                    return Ended::Failed(format!("write: {e}"));
                }
                if close {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        framed.get_mut().shutdown(),
                    )
                    .await;
                    return Ended::Closed;
                }
            }
            frame = framed.next() => match frame {
                Some(Ok(Frame::Packet(packet))) => {
                    if events.send(Event::Packet { server, gen, packet }).is_err() {
                        return Ended::Closed;
                    }
                }
                Some(Ok(Frame::Text(line))) => {
                    tracing::debug!(line = %String::from_utf8_lossy(&line), "ignoring a text line from the server");
                }
                Some(Err(e)) => return Ended::Failed(format!("bad data from server: {e}")),
                None => return Ended::Failed("server closed the connection".into()),
            }
        }
    }
}
