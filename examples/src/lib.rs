//! Shared bits of the gearbox examples (see README.md). The programs are in
//! `src/bin/`.
//!
//! The examples submit their demo jobs with raw packets (gearbox-proto over a
//! `transport` connection) so that each one is self-contained; real
//! applications would use gearbox-client or any Gearman client.

use futures_util::{SinkExt, StreamExt};
use gearbox_client::ServerAddr;
use gearbox_proto::{Codec, Frame, Packet, PacketType};
use std::io;
use std::time::Duration;
use tokio_util::codec::Framed;

/// Submits one background job per payload (SUBMIT_JOB_BG, empty unique),
/// pipelined 100 at a time, and waits for every JOB_CREATED.
pub async fn submit_background<I, P>(
    addr: &ServerAddr,
    function: &str,
    payloads: I,
) -> io::Result<usize>
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    let stream = addr.connect(Duration::from_secs(5)).await?;
    let mut framed = Framed::new(stream, Codec::default());
    let mut it = payloads.into_iter().peekable();
    let mut total = 0;
    while it.peek().is_some() {
        let mut n = 0;
        for p in it.by_ref().take(100) {
            framed
                .feed(Packet::req(
                    PacketType::SUBMIT_JOB_BG,
                    &[function.as_bytes(), b"", p.as_ref()],
                ))
                .await?;
            n += 1;
        }
        SinkExt::<Packet>::flush(&mut framed).await?;
        for _ in 0..n {
            match tokio::time::timeout(Duration::from_secs(20), framed.next()).await {
                Ok(Some(Ok(Frame::Packet(p)))) if p.kind == PacketType::JOB_CREATED => {}
                Ok(Some(Ok(Frame::Packet(p)))) => {
                    return Err(io::Error::other(format!("server answered {p:?}")))
                }
                Ok(other) => return Err(io::Error::other(format!("server answered {other:?}"))),
                Err(_) => return Err(io::Error::other("no JOB_CREATED within 20 s")),
            }
        }
        total += n;
    }
    Ok(total)
}

/// Logs to stderr; `RUST_LOG` overrides the default level `info`.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
