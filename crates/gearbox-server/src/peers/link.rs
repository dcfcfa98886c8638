//! One link: a connection to one peer for one function. Connect (bounded),
//! register, answer an ECHO probe (bounded); then write what the engine
//! queues and hand what the peer answers to the engine, batch by batch. The
//! link times its own GRABs and probes, because it is the one that sends
//! and receives them: a GRAB past the hold bound is served elsewhere, and
//! one past the timeout fails the link. Any failure goes to the manager,
//! which owns the peer's health.

use super::LinkEvent;
use crate::dispatch::Dispatch;
use crate::engine::{LinkId, LinkMsg, Wanted};
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use gearbox_client::ServerAddr;
use gearbox_proto::packet::encode_req;
use gearbox_proto::{Codec, Frame, Packet, PacketType};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

/// The probe's payload, so that a reply is recognisable in a capture.
const PROBE: &[u8] = b"gearbox-peer-probe";

/// How often a link that has heard nothing is probed with ECHO, so that a
/// peer that vanished without a FIN (a partition, a frozen VM) is found even
/// while nothing is queued anywhere.
const IDLE_PROBE: Duration = Duration::from_secs(10);

/// How long a local worker's GRAB waits on an upstream GRAB before it is
/// served by another source. A healthy peer answers in well under a
/// millisecond; a hung one would otherwise hold a local worker for the whole
/// timeout.
const HOLD_BOUND: Duration = Duration::from_millis(100);

/// Packets handed to the engine under one lock, at most.
const BATCH: usize = 64;

pub(super) struct LinkSpec {
    pub id: LinkId,
    pub peer: usize,
    pub addr: ServerAddr,
    pub wanted: Wanted,
    pub client_id: Bytes,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub dispatch: Arc<Dispatch>,
    /// The link's own queue, for the engine.
    pub tx: UnboundedSender<LinkMsg>,
}

pub(super) async fn run(
    spec: LinkSpec,
    events: UnboundedSender<LinkEvent>,
    rx: UnboundedReceiver<LinkMsg>,
) {
    let event = match serve(&spec, &events, rx).await {
        Ok(()) => LinkEvent::Closed,
        Err(reason) => LinkEvent::Failed(spec.id, reason),
    };
    let _ = events.send(event);
}

/// The packets a new link sends: its client id, its one function, a probe.
fn hello(wanted: &Wanted, client_id: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_req(&mut buf, PacketType::SET_CLIENT_ID, &[client_id]);
    match wanted.timeout {
        Some(t) => {
            let ms = t.as_millis().to_string();
            let fields: [&[u8]; 2] = [&wanted.name, ms.as_bytes()];
            encode_req(&mut buf, PacketType::CAN_DO_TIMEOUT, &fields);
        }
        None => encode_req(&mut buf, PacketType::CAN_DO, &[&wanted.name]),
    }
    encode_req(&mut buf, PacketType::ECHO_REQ, &[PROBE]);
    // gearboxd answers `OK <id>`; gearmand, ERR UNKNOWN_COMMAND.
    buf.extend_from_slice(b"serverid\n");
    buf
}

/// The peer's server id from its answer to `serverid`.
fn server_id(line: &[u8]) -> Option<Bytes> {
    let id = line.strip_prefix(b"OK ")?;
    (!id.is_empty()).then(|| Bytes::copy_from_slice(id))
}

/// What the link is waiting for, with when it started waiting.
#[derive(Default)]
struct Timing {
    grabs: VecDeque<Instant>,
    probe_since: Option<Instant>,
    reported_slow: bool,
}

impl Timing {
    fn next_deadline(&self, last_heard: Instant, timeout: Duration) -> Instant {
        let mut at = match self.probe_since {
            Some(t) => t + timeout,
            None => last_heard + IDLE_PROBE,
        };
        if let Some(&oldest) = self.grabs.front() {
            let grab = if self.reported_slow {
                oldest + timeout
            } else {
                oldest + HOLD_BOUND.min(timeout)
            };
            at = at.min(grab);
        }
        at
    }
}

async fn serve(
    spec: &LinkSpec,
    events: &UnboundedSender<LinkEvent>,
    mut rx: UnboundedReceiver<LinkMsg>,
) -> Result<(), String> {
    let stream = spec
        .addr
        .connect(spec.connect_timeout)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = FramedRead::new(read, Codec::default());
    let probe = async {
        write
            .write_all(&hello(&spec.wanted, &spec.client_id))
            .await
            .map_err(|e| format!("register: {e}"))?;
        // The ECHO reply comes first, then the answer to `serverid`.
        let mut echoed = false;
        loop {
            match reader.next().await {
                Some(Ok(Frame::Packet(p))) if p.kind == PacketType::ECHO_RES => echoed = true,
                Some(Ok(Frame::Text(line))) if echoed => return Ok(server_id(&line)),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("bad reply: {e}")),
                None => return Err("closed by the peer during the probe".to_string()),
            }
        }
    };
    let upstream_id = match tokio::time::timeout(spec.response_timeout, probe).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(format!(
                "ECHO probe unanswered for {:?}",
                spec.response_timeout
            ))
        }
    };
    let name = spec.wanted.name.clone();
    let id = upstream_id.clone();
    spec.dispatch
        .with(|engine| engine.link_up(spec.id, spec.peer, &name, id, spec.tx.clone()));
    if events.send(LinkEvent::Up(spec.id, upstream_id)).is_err() {
        return Ok(());
    }

    let timeout = spec.response_timeout;
    let mut timing = Timing::default();
    let mut last_heard = Instant::now();
    let mut out = BytesMut::new();
    let mut batch: Vec<Packet> = Vec::new();
    let mut proven = false;
    loop {
        let deadline = timing.next_deadline(last_heard, timeout);
        tokio::select! {
            msg = rx.recv() => {
                let mut closing = !queue(msg, &mut out, &mut timing);
                while !closing {
                    match rx.try_recv() {
                        Ok(msg) => closing = !queue(Some(msg), &mut out, &mut timing),
                        Err(_) => break,
                    }
                }
                write.write_all(&out).await.map_err(|e| format!("write: {e}"))?;
                out.clear();
                if closing {
                    let _ = write.shutdown().await;
                    return Ok(());
                }
            }
            frame = reader.next() => {
                batch.clear();
                collect(frame, &mut batch)?;
                while batch.len() < BATCH {
                    match reader.next().now_or_never() {
                        Some(frame) => collect(frame, &mut batch)?,
                        None => break,
                    }
                }
                last_heard = Instant::now();
                deliver(spec, &batch, &mut timing);
                if !proven && batch.iter().any(|p| matches!(p.kind, PacketType::JOB_ASSIGN | PacketType::JOB_ASSIGN_UNIQ)) {
                    proven = true;
                    let _ = events.send(LinkEvent::Proven(spec.id));
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                if let Some(&oldest) = timing.grabs.front() {
                    if oldest + timeout <= now {
                        return Err(format!("GRAB unanswered for {timeout:?}"));
                    }
                    if !timing.reported_slow && oldest + HOLD_BOUND <= now {
                        timing.reported_slow = true;
                        spec.dispatch.with(|engine| engine.link_slow(spec.id));
                    }
                }
                match timing.probe_since {
                    Some(t) if t + timeout <= now => {
                        return Err(format!("ECHO unanswered for {timeout:?}"));
                    }
                    None if last_heard + IDLE_PROBE <= now => {
                        timing.probe_since = Some(now);
                        let mut probe = BytesMut::new();
                        encode_req(&mut probe, PacketType::ECHO_REQ, &[PROBE]);
                        write.write_all(&probe).await.map_err(|e| format!("write: {e}"))?;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Encodes one message into `out`; false for Close (or a closed queue).
fn queue(msg: Option<LinkMsg>, out: &mut BytesMut, timing: &mut Timing) -> bool {
    match msg {
        Some(LinkMsg::Grab) => {
            timing.grabs.push_back(Instant::now());
            encode_req(out, PacketType::GRAB_JOB_UNIQ, &[]);
        }
        Some(LinkMsg::PreSleep) => encode_req(out, PacketType::PRE_SLEEP, &[]),
        Some(LinkMsg::Send(bytes)) => out.extend_from_slice(&bytes),
        Some(LinkMsg::Close) | None => return false,
    }
    true
}

fn collect(
    frame: Option<Result<Frame, gearbox_proto::DecodeError>>,
    batch: &mut Vec<Packet>,
) -> Result<(), String> {
    match frame {
        Some(Ok(Frame::Packet(packet))) => {
            batch.push(packet);
            Ok(())
        }
        Some(Ok(Frame::Text(_))) => Ok(()),
        Some(Err(e)) => Err(format!("bad packet: {e}")),
        None => Err("closed by the peer".to_string()),
    }
}

/// Hands a batch of the peer's packets to the engine under one lock.
fn deliver(spec: &LinkSpec, batch: &[Packet], timing: &mut Timing) {
    for p in batch {
        match p.kind {
            PacketType::NO_JOB | PacketType::JOB_ASSIGN | PacketType::JOB_ASSIGN_UNIQ => {
                timing.grabs.pop_front();
                timing.reported_slow = false;
            }
            PacketType::ECHO_RES => timing.probe_since = None,
            _ => {}
        }
    }
    let id = spec.id;
    spec.dispatch.with(|engine| {
        for p in batch {
            match p.kind {
                PacketType::NOOP => engine.link_awake(id),
                PacketType::NO_JOB => engine.link_no_job(id),
                PacketType::JOB_ASSIGN_UNIQ => {
                    engine.link_job(id, p.arg(0), p.arg(1), p.arg(2), p.arg(3))
                }
                PacketType::JOB_ASSIGN => engine.link_job(id, p.arg(0), p.arg(1), b"", p.arg(2)),
                // A late result after the peer's CAN_DO_TIMEOUT re-queued the
                // job gets ERROR JOB_NOT_FOUND: worth a line, not a failure.
                PacketType::ERROR => tracing::debug!(
                    peer = %spec.addr,
                    code = %String::from_utf8_lossy(p.arg(0)),
                    text = %String::from_utf8_lossy(p.arg(1)),
                    "peer answered a relayed packet with ERROR"
                ),
                _ => {}
            }
        }
    });
}
