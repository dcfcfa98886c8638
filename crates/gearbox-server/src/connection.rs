//! One client, worker or admin connection.
//!
//! The task decodes everything it has read and hands the frames to the engine
//! as one batch, so a pipelining client costs one lock and one write per read
//! instead of one per packet. It also writes: whatever the engine queued for
//! this connection, its own replies and packets pushed by others, several
//! buffers per write when they pile up.

use crate::dispatch::{Batch, Dispatch, HandOff};
use crate::engine::{Backlog, ConnId, Peer};
use bytes::{Bytes, BytesMut};
use gearbox_proto::Codec;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::Decoder;

/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// How many bytes of queued buffers are joined into one write, at most.
const WRITE_BATCH: usize = 256 * 1024;
/// How long a closing connection may take to send its last bytes (an ERROR).
const LINGER: Duration = Duration::from_secs(5);

/// A connection known to the engine, with the receiving end of its outbox.
pub struct Registration {
    id: ConnId,
    rx: mpsc::UnboundedReceiver<Bytes>,
    backlog: Arc<Backlog>,
}

/// Adds a connection to the engine. The accept loop calls this before it
/// spawns the connection's task, so connection ids (and `workers` lines) follow
/// accept order rather than the order in which tasks first get to run.
pub fn register(dispatch: &Dispatch, peer: Peer) -> Registration {
    let (tx, rx) = mpsc::unbounded_channel();
    let backlog = Arc::new(Backlog::default());
    let id = dispatch.with(|engine| engine.connect(tx, backlog.clone(), peer));
    Registration { id, rx, backlog }
}

/// Serves one connection until the peer closes it, it sends something
/// unframeable, or the server stops.
///
/// One task both reads and writes, so the replies to a batch go out from the
/// same task right after it instead of waking a separate writer. Reading and
/// writing stay independent inside the `select!`: a peer that stops reading its
/// replies does not stop its requests from being read.
pub async fn serve<R, W>(
    dispatch: Arc<Dispatch>,
    registration: Registration,
    mut reader: R,
    mut writer: W,
    max_packet_size: u32,
    mut stop: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Registration {
        id,
        mut rx,
        backlog,
    } = registration;
    let mut cut = false;
    let mut codec = Codec::new(max_packet_size);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = Outgoing::default();
    let hand_off = Arc::new(HandOff::default());
    loop {
        out.refill(&mut rx);
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = backlog.cut.notified() => {
                cut = true;
                break;
            }
            written = writer.write(out.pending()), if out.has_pending() => match written {
                Ok(n) if n > 0 => {
                    out.advance(n);
                    backlog.queued.fetch_sub(n, Relaxed);
                }
                _ => break,
            },
            queued = rx.recv(), if !out.has_pending() => match queued {
                Some(bytes) => out.push(bytes),
                None => break,
            },
            // Reads wait while the last batch is queued for the engine, so a
            // connection never has two batches queued and never blocks a
            // thread on the engine lock.
            _ = hand_off.ran(), if hand_off.is_queued() => {}
            read = reader.read_buf(&mut buf), if !hand_off.is_queued() => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let batch = decode(id, &mut codec, &mut buf, &hand_off);
                    let framed = batch.error.is_none();
                    dispatch.handle(batch);
                    if !framed {
                        break;
                    }
                }
            },
        }
    }
    dispatch.with(|engine| engine.disconnect(id));
    if cut {
        return;
    }
    // The engine dropped our sender: send what is left, bounded in time.
    let _ = tokio::time::timeout(LINGER, async {
        loop {
            out.refill(&mut rx);
            if !out.has_pending() {
                match rx.recv().await {
                    Some(bytes) => out.push(bytes),
                    None => break,
                }
            }
            match writer.write(out.pending()).await {
                Ok(n) if n > 0 => out.advance(n),
                _ => return,
            }
        }
        let _ = writer.shutdown().await;
    })
    .await;
}

/// Decodes every complete frame buffered, outside the engine lock. A framing
/// error ends the batch: the connection closes after the engine reports it.
fn decode(id: ConnId, codec: &mut Codec, buf: &mut BytesMut, owner: &Arc<HandOff>) -> Batch {
    let mut frames = Vec::new();
    let error = loop {
        match codec.decode(buf) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    Batch {
        conn: id,
        frames,
        error,
        owner: owner.clone(),
    }
}

/// Bytes waiting to be written: the buffer being written, joined from as many
/// queued buffers as are ready (up to [`WRITE_BATCH`]), so a burst of replies
/// and pushed packets leaves in one write.
#[derive(Default)]
struct Outgoing {
    current: Bytes,
    joined: BytesMut,
}

impl Outgoing {
    fn has_pending(&self) -> bool {
        !self.current.is_empty()
    }

    fn pending(&self) -> &[u8] {
        &self.current
    }

    fn advance(&mut self, n: usize) {
        let _ = self.current.split_to(n);
    }

    fn push(&mut self, bytes: Bytes) {
        if self.current.is_empty() {
            self.current = bytes;
        } else {
            self.joined.extend_from_slice(&self.current);
            self.joined.extend_from_slice(&bytes);
            self.current = self.joined.split().freeze();
        }
    }

    /// Takes whatever is queued without waiting.
    fn refill(&mut self, rx: &mut mpsc::UnboundedReceiver<Bytes>) {
        while self.current.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(bytes) => self.push(bytes),
                Err(_) => break,
            }
        }
    }
}
