//! A peer that never reads its replies must not grow the server without bound:
//! once its unread bytes pass `max_queued_output` it is closed, and nobody else
//! notices.

mod support;

use bytes::BytesMut;
use gearbox_proto::packet::encode_req;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Pipelines background submits without reading any JOB_CREATED, until the
/// server stops taking them or a bound is hit. Returns how many were written.
async fn submit_without_reading(stream: &mut TcpStream, total: usize) -> usize {
    let mut batch = BytesMut::new();
    for _ in 0..1000 {
        encode_req(&mut batch, T::SUBMIT_JOB_BG, &[b"hog", b"", &[b'x'; 64]]);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    while sent < total && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(2), stream.write_all(&batch)).await {
            Ok(Ok(())) => sent += 1000,
            // Closed by the server (reset or broken pipe), or it stopped reading.
            _ => break,
        }
    }
    sent
}

#[tokio::test]
async fn a_peer_that_never_reads_is_cut_off_alone() {
    let server = TestServer::with(|c| c.max_queued_output = 64 * 1024).await;
    let mut bystander = server.conn().await;
    let queued = bystander
        .submit(T::SUBMIT_JOB_BG, "other", "", "keep")
        .await;

    let mut hog = TcpStream::connect(server.addr.unwrap()).await.unwrap();
    // 400k JOB_CREATED replies are ~9 MB: far past the 64 KiB allowance plus
    // what the kernel's socket buffers can hold.
    let sent = submit_without_reading(&mut hog, 400_000).await;
    assert!(sent > 0);

    // The hog's connection ends: reading now drains what the kernel held and
    // then sees the close (or a reset), never blocks for ever.
    let mut sink = vec![0u8; 1 << 16];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match hog.read(&mut sink).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(closed, "the non-reading connection was not closed");

    // The bystander is served, and its job and the hog's accepted jobs are intact.
    let status = bystander.listing("status").await;
    assert!(status.contains("other\t1\t0\t0\n"), "{status}");
    let hog_row = status
        .lines()
        .find(|l| l.starts_with("hog\t"))
        .expect("hog row");
    let hog_jobs: usize = hog_row.split('\t').nth(1).unwrap().parse().unwrap();
    assert!(hog_jobs > 0, "{hog_row}");
    assert_eq!(bystander.get_status(&queued).await[0], "1");
}

#[tokio::test]
async fn a_peer_that_reads_slowly_but_keeps_up_is_not_cut_off() {
    let server = TestServer::with(|c| c.max_queued_output = 64 * 1024).await;
    let mut client = server.conn().await;
    // 2000 submits sent in bursts of 100, each burst's replies read before the
    // next: never more than ~2.5 KB unread.
    for _ in 0..20 {
        let mut burst = BytesMut::new();
        for _ in 0..100 {
            encode_req(&mut burst, T::SUBMIT_JOB_BG, &[b"f", b"", b"x"]);
        }
        client.send_raw(&burst).await;
        for _ in 0..100 {
            client.expect(T::JOB_CREATED).await;
        }
    }
    let status = client.listing("status").await;
    assert!(status.contains("f\t2000\t0\t0\n"), "{status}");
}
