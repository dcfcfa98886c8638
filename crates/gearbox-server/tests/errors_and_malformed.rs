//! Malformed input. Each case must end only the connection that sent it: a
//! bystander connection and a queued job are checked afterwards every time.

mod support;

use std::time::{Duration, Instant};
use support::*;

/// A bystander connection and a queued background job, made before the bad
/// input, checked after it.
struct Witness {
    bystander: Conn,
    job: Vec<u8>,
}

impl Witness {
    async fn new(server: &TestServer) -> Witness {
        let mut bystander = server.conn().await;
        let job = bystander
            .submit(T::SUBMIT_JOB_BG, "witness", "w", "wd")
            .await;
        Witness { bystander, job }
    }

    async fn check(mut self, server: &TestServer) {
        self.bystander.send(T::ECHO_REQ, &[b"alive"]).await;
        self.bystander.expect_packet(T::ECHO_RES, &[b"alive"]).await;
        self.bystander.expect_nothing().await;
        let status = parse_status(&self.bystander.listing("status").await);
        assert_eq!(status["witness"], (1, 0, 0), "{status:?}");
        let mut worker = server.conn().await;
        worker.can_do("witness").await;
        let (h, _, data) = worker.grab().await;
        assert_eq!((h, data), (self.job, b"wd".to_vec()));
    }
}

/// Functions other than the witness's, as `status` lists them.
async fn other_functions(server: &TestServer) -> Vec<String> {
    let mut admin = server.conn().await;
    parse_status(&admin.listing("status").await)
        .into_keys()
        .filter(|f| f != "witness")
        .collect()
}

#[tokio::test]
async fn bad_magic_gets_invalid_magic_then_close() {
    let server = TestServer::start().await;
    let witness = Witness::new(&server).await;
    let mut bad = server.conn().await;
    bad.sync().await;
    bad.send_with(*b"\0XYZ", T::ECHO_REQ as u32, b"hello").await;
    bad.expect_error_code("INVALID_MAGIC").await;
    bad.expect_closed().await;
    witness.check(&server).await;
}

async fn unknown_type(kind: u32) {
    let server = TestServer::start().await;
    let witness = Witness::new(&server).await;
    let mut bad = server.conn().await;
    bad.send_with(*b"\0REQ", kind, b"").await;
    bad.expect_error_code("INVALID_COMMAND").await;
    bad.expect_closed().await;
    witness.check(&server).await;
}

#[tokio::test]
async fn type_0_gets_invalid_command_then_close() {
    unknown_type(0).await;
}

#[tokio::test]
async fn type_43_gets_invalid_command_then_close() {
    unknown_type(43).await;
}

#[tokio::test]
async fn type_1000_gets_invalid_command_then_close() {
    unknown_type(1000).await;
}

/// gearmand searches past the body for the missing NUL and eats the next
/// packet; gearbox answers ERROR and closes, and the next packet's bytes never
/// become part of a job.
#[tokio::test]
async fn body_with_too_few_nuls_gets_an_error_then_close() {
    let server = TestServer::start().await;
    let witness = Witness::new(&server).await;
    let mut bad = server.conn().await;
    let mut burst = raw_packet(*b"\0REQ", T::SUBMIT_JOB as u32, b"short\0data");
    burst.extend(req_bytes(T::SUBMIT_JOB_BG, &[b"next", b"", b"x"]));
    bad.send_raw(&burst).await;
    let p = bad.recv().await;
    assert_eq!(p.kind, T::ERROR, "{p:?}");
    assert!(!p.arg(0).is_empty(), "ERROR has a code: {p:?}");
    bad.expect_closed().await;
    assert_eq!(other_functions(&server).await, Vec::<String>::new());
    witness.check(&server).await;
}

#[tokio::test]
async fn work_packet_with_too_few_nuls_gets_an_error_then_close() {
    let server = TestServer::start().await;
    let witness = Witness::new(&server).await;
    let mut bad = server.conn().await;
    // WORK_STATUS needs handle\0num\0den.
    bad.send_with(*b"\0REQ", T::WORK_STATUS as u32, b"H:test:1\x0050")
        .await;
    bad.expect(T::ERROR).await;
    bad.expect_closed().await;
    witness.check(&server).await;
}

#[tokio::test]
async fn size_above_max_packet_size_gets_argument_too_large_then_close() {
    let server = TestServer::with(|c| c.max_packet_size = 1024).await;
    let witness = Witness::new(&server).await;
    let mut bad = server.conn().await;
    // Exactly the limit is fine.
    let body = vec![b'e'; 1024];
    bad.send(T::ECHO_REQ, &[&body]).await;
    bad.expect_packet(T::ECHO_RES, &[&body]).await;
    // One byte more is not; only the header and a little of the body are sent.
    let mut header = raw_packet(*b"\0REQ", T::ECHO_REQ as u32, &[]);
    header[8..12].copy_from_slice(&1025u32.to_be_bytes());
    header.extend_from_slice(b"abc");
    bad.send_raw(&header).await;
    bad.expect_error_code("ARGUMENT_TOO_LARGE").await;
    bad.expect_closed().await;
    witness.check(&server).await;
}

fn vm_size_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmSize:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn four_gib_size_field_is_refused_without_allocating() {
    let server = TestServer::start().await;
    let witness = Witness::new(&server).await;
    let before = vm_size_kib();
    let started = Instant::now();
    let mut bad = server.conn().await;
    let mut header = raw_packet(*b"\0REQ", T::SUBMIT_JOB as u32, &[]);
    header[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    header.extend_from_slice(b"f\0\0");
    bad.send_raw(&header).await;
    bad.expect_error_code("ARGUMENT_TOO_LARGE").await;
    bad.expect_closed().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    if let (Some(before), Some(after)) = (before, vm_size_kib()) {
        assert!(
            after.saturating_sub(before) < 1 << 20,
            "virtual size grew by {} KiB",
            after - before
        );
    }
    witness.check(&server).await;
}

#[tokio::test]
async fn text_line_longer_than_8192_bytes_gets_err_then_close() {
    let server = TestServer::start().await;
    let witness = Witness::new(&server).await;
    let mut bad = server.conn().await;
    bad.send_raw(&[b'x'; 9000]).await;
    let reply = bad.line().await;
    assert!(
        reply.starts_with("ERR ") && reply.ends_with("\r\n"),
        "{reply:?}"
    );
    bad.expect_closed().await;
    witness.check(&server).await;
}

#[tokio::test]
async fn text_line_of_exactly_8192_bytes_is_accepted() {
    let server = TestServer::start().await;
    let mut conn = server.conn().await;
    let mut line = vec![b'x'; 8191];
    line.push(b'\n');
    conn.send_raw(&line).await;
    let reply = conn.line().await;
    assert_eq!(
        reply,
        format!(
            "ERR UNKNOWN_COMMAND Unknown+server+command{}\r\n",
            "x".repeat(8191)
        )
    );
    assert!(conn.admin("getpid").await.starts_with("OK "));
}

#[tokio::test]
async fn truncated_packet_then_peer_close_leaves_the_server_fine() {
    let server = TestServer::start().await;
    let witness = Witness::new(&server).await;
    let mut bad = server.conn().await;
    let full = req_bytes(T::SUBMIT_JOB_BG, &[b"trunc", b"", &[b'd'; 100]]);
    bad.send_raw(&full[..30]).await;
    bad.close().await;
    let mut header_only = server.conn().await;
    header_only.send_raw(&full[..7]).await;
    header_only.close().await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(other_functions(&server).await, Vec::<String>::new());
    witness.check(&server).await;
}

#[tokio::test]
async fn truncated_packet_is_completed_by_a_later_write() {
    let server = TestServer::start().await;
    let mut conn = server.conn().await;
    let full = req_bytes(T::ECHO_REQ, &[b"split across writes"]);
    for chunk in full.chunks(5) {
        conn.send_raw(chunk).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    conn.expect_packet(T::ECHO_RES, &[b"split across writes"])
        .await;
}

#[tokio::test]
async fn garbage_binary_after_a_valid_packet_still_gets_the_valid_reply() {
    let server = TestServer::start().await;
    let witness = Witness::new(&server).await;
    let mut bad = server.conn().await;
    let mut burst = req_bytes(T::ECHO_REQ, &[b"before"]);
    burst.extend(raw_packet(*b"\0BAD", 16, b""));
    bad.send_raw(&burst).await;
    bad.expect_packet(T::ECHO_RES, &[b"before"]).await;
    bad.expect_error_code("INVALID_MAGIC").await;
    bad.expect_closed().await;
    witness.check(&server).await;
}

#[tokio::test]
async fn a_malformed_worker_connection_requeues_its_job() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "", "d").await;
    let mut bad = server.conn().await;
    bad.can_do("f").await;
    bad.grab().await;
    bad.send_with(*b"\0REQ", 0, b"").await;
    bad.expect_error_code("INVALID_COMMAND").await;
    bad.expect_closed().await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    let mut admin = server.conn().await;
    wait_status(&mut admin, "f", |r| r == Some((1, 0, 1))).await;
    assert_eq!(worker.grab().await.0, h);
}
