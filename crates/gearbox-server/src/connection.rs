//! One client, worker or admin connection.
//!
//! The reader decodes everything it has read, then takes the engine lock once
//! for the whole batch, so a pipelining client costs one lock and one write per
//! read instead of one per packet. The writer task owns the write half and
//! sends whatever the engine queued for it, several buffers per write when they
//! pile up.

use crate::engine::{ConnId, Engine, Peer};
use bytes::{Bytes, BytesMut};
use gearbox_proto::{Codec, Frame};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::Decoder;

/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// How many queued buffers the writer joins into one write, at most.
const WRITE_BATCH: usize = 256 * 1024;
/// How long a closing connection may take to send its last bytes (an ERROR).
const LINGER: Duration = Duration::from_secs(5);

/// Locks the engine. A panic while it was held is logged and the state used as
/// it is: one bad command must not stop every other connection.
pub fn lock(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    engine.lock().unwrap_or_else(|poisoned| {
        tracing::error!("engine lock poisoned by a panic; continuing");
        poisoned.into_inner()
    })
}

/// Serves one connection until the peer closes it, it sends something
/// unframeable, or the server stops.
pub async fn serve<R, W>(
    engine: Arc<Mutex<Engine>>,
    mut reader: R,
    writer: W,
    peer: Peer,
    max_packet_size: u32,
    mut stop: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let id = lock(&engine).connect(tx, peer);
    let writer_task = tokio::spawn(write_loop(writer, rx));
    let mut codec = Codec::new(max_packet_size);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut frames: Vec<Frame> = Vec::new();
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
        }
        let mut failure = None;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        {
            let mut engine = lock(&engine);
            for frame in frames.drain(..) {
                engine.handle(id, frame);
            }
            if let Some(e) = &failure {
                engine.protocol_error(id, e);
            }
            engine.flush();
        }
        if failure.is_some() {
            break;
        }
    }
    close(&engine, id);
    // The engine dropped our sender: the writer sends what is left, then ends.
    let _ = tokio::time::timeout(LINGER, writer_task).await;
}

fn close(engine: &Mutex<Engine>, id: ConnId) {
    let mut engine = lock(engine);
    engine.disconnect(id);
    engine.flush();
}

async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, mut rx: mpsc::UnboundedReceiver<Bytes>) {
    let mut batch = BytesMut::new();
    while let Some(first) = rx.recv().await {
        let mut out = first;
        if let Ok(next) = rx.try_recv() {
            batch.extend_from_slice(&out);
            batch.extend_from_slice(&next);
            while batch.len() < WRITE_BATCH {
                match rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            out = batch.split().freeze();
        }
        if writer.write_all(&out).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}
