//! One link: a connection to one peer for one function. Connect (bounded),
//! register, answer an ECHO probe (bounded), then shuttle bytes: what the
//! manager queues goes out, every packet that comes in goes to the manager.
//! The task decides nothing; it ends when the manager drops its queue (a
//! clean close, after writing what was queued) or when the connection fails.

use super::LinkEvent;
use crate::engine::{LinkId, Wanted};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use gearbox_client::ServerAddr;
use gearbox_proto::packet::encode_req;
use gearbox_proto::{Codec, Frame, PacketType};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio_util::codec::FramedRead;

/// The probe's payload, so that a reply is recognisable in a capture.
const PROBE: &[u8] = b"gearbox-peer-probe";

pub(super) struct LinkSpec {
    pub id: LinkId,
    pub addr: ServerAddr,
    pub wanted: Wanted,
    pub client_id: Bytes,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

pub(super) async fn run(
    spec: LinkSpec,
    events: UnboundedSender<LinkEvent>,
    out: UnboundedReceiver<Bytes>,
) {
    let event = match serve(&spec, &events, out).await {
        Ok(()) => LinkEvent::Closed,
        Err(reason) => LinkEvent::Failed(spec.id, reason),
    };
    let _ = events.send(event);
}

/// The packets a new link sends: its client id, its one function, a probe.
pub(super) fn hello(wanted: &Wanted, client_id: &[u8]) -> BytesMut {
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
    buf
}

async fn serve(
    spec: &LinkSpec,
    events: &UnboundedSender<LinkEvent>,
    mut out: UnboundedReceiver<Bytes>,
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
        loop {
            match reader.next().await {
                Some(Ok(Frame::Packet(p))) if p.kind == PacketType::ECHO_RES => return Ok(()),
                Some(Ok(Frame::Packet(p))) if p.kind == PacketType::ERROR => {
                    return Err(format!("ERROR {}", String::from_utf8_lossy(p.arg(0))))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("bad reply: {e}")),
                None => return Err("closed by the peer during the probe".to_string()),
            }
        }
    };
    match tokio::time::timeout(spec.response_timeout, probe).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(format!(
                "ECHO probe unanswered for {:?}",
                spec.response_timeout
            ))
        }
    }
    if events.send(LinkEvent::Up(spec.id)).is_err() {
        return Ok(());
    }
    let mut pending = BytesMut::new();
    loop {
        tokio::select! {
            queued = out.recv() => {
                let Some(bytes) = queued else {
                    let _ = write.shutdown().await;
                    return Ok(());
                };
                pending.extend_from_slice(&bytes);
                while let Ok(more) = out.try_recv() {
                    pending.extend_from_slice(&more);
                }
                write.write_all(&pending).await.map_err(|e| format!("write: {e}"))?;
                pending.clear();
            }
            frame = reader.next() => match frame {
                Some(Ok(Frame::Packet(packet))) => {
                    if events.send(LinkEvent::Packet(spec.id, packet)).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(Frame::Text(_))) => {}
                Some(Err(e)) => return Err(format!("bad packet: {e}")),
                None => return Err("closed by the peer".to_string()),
            },
        }
    }
}
