//! WORK_* packets from workers: forwarding to clients, ownership checks,
//! progress, and the `exceptions` option.

mod support;

use support::*;

/// A server, a foreground client with a job of "f", and a worker holding it.
async fn running_job(server: &TestServer) -> (Conn, Conn, Vec<u8>) {
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "", "d").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    assert_eq!(worker.grab().await.0, h);
    (client, worker, h)
}

#[tokio::test]
async fn work_data_is_forwarded_to_the_client() {
    let server = TestServer::start().await;
    let (mut client, mut worker, h) = running_job(&server).await;
    worker.send(T::WORK_DATA, &[&h, b"chunk\0with nul"]).await;
    client
        .expect_packet(T::WORK_DATA, &[&h, b"chunk\0with nul"])
        .await;
    worker.expect_nothing().await;
}

#[tokio::test]
async fn work_warning_is_forwarded_to_the_client() {
    let server = TestServer::start().await;
    let (mut client, mut worker, h) = running_job(&server).await;
    worker.send(T::WORK_WARNING, &[&h, b"careful"]).await;
    client
        .expect_packet(T::WORK_WARNING, &[&h, b"careful"])
        .await;
    worker.expect_nothing().await;
}

#[tokio::test]
async fn work_status_is_forwarded_raw_and_stored_as_atoi() {
    let server = TestServer::start().await;
    let (mut client, mut worker, h) = running_job(&server).await;
    worker.send(T::WORK_STATUS, &[&h, b"abc", b"12x"]).await;
    client
        .expect_packet(T::WORK_STATUS, &[&h, b"abc", b"12x"])
        .await;
    assert_eq!(
        client.get_status(&h).await,
        ["1", "1", "0", "12"].map(String::from)
    );
    worker.send(T::WORK_STATUS, &[&h, b"7", b"9"]).await;
    client
        .expect_packet(T::WORK_STATUS, &[&h, b"7", b"9"])
        .await;
    assert_eq!(
        client.get_status(&h).await,
        ["1", "1", "7", "9"].map(String::from)
    );
}

#[tokio::test]
async fn work_complete_is_forwarded_and_ends_the_job() {
    let server = TestServer::start().await;
    let (mut client, mut worker, h) = running_job(&server).await;
    worker.send(T::WORK_COMPLETE, &[&h, b"result\0bytes"]).await;
    client
        .expect_packet(T::WORK_COMPLETE, &[&h, b"result\0bytes"])
        .await;
    assert_eq!(
        client.get_status(&h).await,
        ["0", "0", "0", "0"].map(String::from)
    );
    let mut admin = server.conn().await;
    assert_eq!(parse_status(&admin.listing("status").await)["f"], (0, 0, 1));
    worker.grab_none().await;
}

#[tokio::test]
async fn work_complete_with_empty_result() {
    let server = TestServer::start().await;
    let (mut client, mut worker, h) = running_job(&server).await;
    worker.send(T::WORK_COMPLETE, &[&h, b""]).await;
    client.expect_packet(T::WORK_COMPLETE, &[&h, b""]).await;
}

#[tokio::test]
async fn work_fail_is_forwarded_as_the_bare_handle_and_ends_the_job() {
    let server = TestServer::start().await;
    let (mut client, mut worker, h) = running_job(&server).await;
    worker.send(T::WORK_FAIL, &[&h]).await;
    // WORK_FAIL has one field: the whole body, so this also checks there is
    // no trailing NUL.
    client.expect_packet(T::WORK_FAIL, &[&h]).await;
    assert_eq!(
        client.get_status(&h).await,
        ["0", "0", "0", "0"].map(String::from)
    );
}

#[tokio::test]
async fn second_work_complete_gets_job_not_found() {
    let server = TestServer::start().await;
    let (mut client, mut worker, h) = running_job(&server).await;
    worker.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    worker.sync().await;
    worker.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    worker
        .expect_error("JOB_NOT_FOUND", "Job given in work result not found")
        .await;
    client.expect_packet(T::WORK_COMPLETE, &[&h, b"r"]).await;
    client.expect_nothing().await;
}

// ----- ownership ---------------------------------------------------------------------

/// Sends `kind` for the running job from a connection that does not hold it.
async fn from_non_owner(kind: T, args: &[&[u8]], text: &str) {
    let server = TestServer::start().await;
    let (mut client, mut worker, h) = running_job(&server).await;
    let mut other = server.conn().await;
    other.can_do("f").await;
    let mut full: Vec<&[u8]> = vec![&h];
    full.extend_from_slice(args);
    other.send(kind, &full).await;
    other.expect_error("JOB_NOT_FOUND", text).await;
    other.sync().await;
    // Nothing reached the client, and the job is still the owner's.
    client.expect_nothing().await;
    worker.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    client.expect_packet(T::WORK_COMPLETE, &[&h, b"r"]).await;
}

#[tokio::test]
async fn work_data_from_a_non_owner_gets_job_not_found() {
    from_non_owner(T::WORK_DATA, &[b"x"], "Job does not exist on server").await;
}

#[tokio::test]
async fn work_warning_from_a_non_owner_gets_job_not_found() {
    from_non_owner(T::WORK_WARNING, &[b"x"], "Job does not exist on server").await;
}

#[tokio::test]
async fn work_exception_from_a_non_owner_gets_job_not_found() {
    from_non_owner(
        T::WORK_EXCEPTION,
        &[b"x"],
        "An exception was received for a job that does not exist",
    )
    .await;
}

#[tokio::test]
async fn work_status_from_a_non_owner_gets_job_not_found() {
    from_non_owner(
        T::WORK_STATUS,
        &[b"1", b"2"],
        "Job given in work result not found",
    )
    .await;
}

#[tokio::test]
async fn work_complete_from_a_non_owner_gets_job_not_found() {
    from_non_owner(
        T::WORK_COMPLETE,
        &[b"x"],
        "Job given in work result not found",
    )
    .await;
}

#[tokio::test]
async fn work_fail_from_a_non_owner_gets_job_not_found() {
    from_non_owner(T::WORK_FAIL, &[], "Job given in work result not found").await;
}

#[tokio::test]
async fn work_result_for_an_unknown_handle_gets_job_not_found() {
    let server = TestServer::start().await;
    let mut worker = server.conn().await;
    worker.send(T::WORK_COMPLETE, &[b"H:test:99", b"r"]).await;
    worker
        .expect_error("JOB_NOT_FOUND", "Job given in work result not found")
        .await;
    worker.send(T::WORK_DATA, &[b"nonsense", b"r"]).await;
    worker
        .expect_error("JOB_NOT_FOUND", "Job does not exist on server")
        .await;
    worker.sync().await;
}

#[tokio::test]
async fn work_result_for_a_queued_job_gets_job_not_found() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "", "d").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    worker
        .expect_error("JOB_NOT_FOUND", "Job given in work result not found")
        .await;
    client.expect_nothing().await;
    assert_eq!(worker.grab().await.0, h);
}

// ----- background jobs -------------------------------------------------------------

#[tokio::test]
async fn results_of_a_background_job_go_nowhere_and_status_is_stored() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB_BG, "f", "", "d").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab().await;
    worker.send(T::WORK_DATA, &[&h, b"x"]).await;
    worker.send(T::WORK_WARNING, &[&h, b"x"]).await;
    worker.send(T::WORK_STATUS, &[&h, b"5", b"10"]).await;
    worker.sync().await;
    client.expect_nothing().await;
    assert_eq!(
        client.get_status(&h).await,
        ["1", "1", "5", "10"].map(String::from)
    );
    worker.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    worker.sync().await;
    client.expect_nothing().await;
    assert_eq!(
        client.get_status(&h).await,
        ["0", "0", "0", "0"].map(String::from)
    );
}

// ----- exceptions ------------------------------------------------------------------

#[tokio::test]
async fn work_exception_reaches_a_client_with_the_exceptions_option() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.send(T::OPTION_REQ, &[b"exceptions"]).await;
    client.expect_packet(T::OPTION_RES, &[b"exceptions"]).await;
    let h = client.submit(T::SUBMIT_JOB, "f", "", "d").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab().await;
    worker.send(T::WORK_EXCEPTION, &[&h, b"boom\0x"]).await;
    client
        .expect_packet(T::WORK_EXCEPTION, &[&h, b"boom\0x"])
        .await;
    // The job is over.
    assert_eq!(
        client.get_status(&h).await,
        ["0", "0", "0", "0"].map(String::from)
    );
    worker.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    worker
        .expect_error("JOB_NOT_FOUND", "Job given in work result not found")
        .await;
}

/// Intended deviation: gearmand sends `handle\0`.
#[tokio::test]
async fn work_exception_becomes_work_fail_with_the_bare_handle_without_the_option() {
    let server = TestServer::start().await;
    let (mut client, mut worker, h) = running_job(&server).await;
    worker.send(T::WORK_EXCEPTION, &[&h, b"boom"]).await;
    client.expect_packet(T::WORK_FAIL, &[&h]).await;
    client.expect_nothing().await;
    assert_eq!(
        client.get_status(&h).await,
        ["0", "0", "0", "0"].map(String::from)
    );
}

#[tokio::test]
async fn work_exception_is_delivered_per_client_option() {
    let server = TestServer::start().await;
    let mut plain = server.conn().await;
    let mut opted = server.conn().await;
    opted.send(T::OPTION_REQ, &[b"exceptions"]).await;
    opted.expect(T::OPTION_RES).await;
    let h = plain.submit(T::SUBMIT_JOB, "f", "u", "d").await;
    assert_eq!(opted.submit(T::SUBMIT_JOB, "f", "u", "d").await, h);
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab().await;
    worker.send(T::WORK_EXCEPTION, &[&h, b"boom"]).await;
    plain.expect_packet(T::WORK_FAIL, &[&h]).await;
    opted.expect_packet(T::WORK_EXCEPTION, &[&h, b"boom"]).await;
}

#[tokio::test]
async fn config_exceptions_turns_the_option_on_for_every_connection() {
    let server = TestServer::with(|c| c.exceptions = true).await;
    let (mut client, mut worker, h) = running_job(&server).await;
    worker.send(T::WORK_EXCEPTION, &[&h, b"boom"]).await;
    client
        .expect_packet(T::WORK_EXCEPTION, &[&h, b"boom"])
        .await;
}

#[tokio::test]
async fn work_exception_on_a_background_job_ends_it_quietly() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB_BG, "f", "", "d").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab().await;
    worker.send(T::WORK_EXCEPTION, &[&h, b"boom"]).await;
    worker.sync().await;
    client.expect_nothing().await;
    let mut admin = server.conn().await;
    assert_eq!(parse_status(&admin.listing("status").await)["f"], (0, 0, 1));
}

#[tokio::test]
async fn large_payloads_go_through_whole() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let data: Vec<u8> = (0..2 << 20).map(|i| (i % 253) as u8).collect();
    let h = client.submit_bytes(T::SUBMIT_JOB, b"f", b"", &data).await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    let (wh, _, got) = worker.grab().await;
    assert_eq!(wh, h);
    assert!(got == data, "JOB_ASSIGN data differs");
    let chunk: Vec<u8> = data.iter().rev().copied().collect();
    worker.send(T::WORK_DATA, &[&h, &chunk]).await;
    worker.send(T::WORK_COMPLETE, &[&h, &data]).await;
    let p = client.expect(T::WORK_DATA).await;
    assert!(p.arg(1).as_ref() == chunk.as_slice(), "WORK_DATA differs");
    let p = client.expect(T::WORK_COMPLETE).await;
    assert!(
        p.arg(1).as_ref() == data.as_slice(),
        "WORK_COMPLETE differs"
    );
}
