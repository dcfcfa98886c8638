//! GET_STATUS, GET_STATUS_UNIQUE, ECHO, OPTION_REQ, SET_CLIENT_ID, and the
//! packet types a server must refuse.

mod support;

use support::*;

fn zeros(n: usize) -> Vec<&'static [u8]> {
    vec![&b"0"[..]; n]
}

// ----- GET_STATUS ------------------------------------------------------------------

#[tokio::test]
async fn get_status_of_a_queued_job() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB_BG, "f", "", "d").await;
    client.send(T::GET_STATUS, &[&h]).await;
    client
        .expect_packet(T::STATUS_RES, &[&h, b"1", b"0", b"0", b"0"])
        .await;
}

#[tokio::test]
async fn get_status_of_a_running_job_with_progress() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "", "d").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab().await;
    client.send(T::GET_STATUS, &[&h]).await;
    client
        .expect_packet(T::STATUS_RES, &[&h, b"1", b"1", b"0", b"0"])
        .await;
    worker.send(T::WORK_STATUS, &[&h, b"25", b"100"]).await;
    client.expect(T::WORK_STATUS).await;
    client.send(T::GET_STATUS, &[&h]).await;
    client
        .expect_packet(T::STATUS_RES, &[&h, b"1", b"1", b"25", b"100"])
        .await;
}

#[tokio::test]
async fn get_status_needs_no_ownership() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "", "d").await;
    let mut stranger = server.conn().await;
    stranger.send(T::GET_STATUS, &[&h]).await;
    stranger
        .expect_packet(T::STATUS_RES, &[&h, b"1", b"0", b"0", b"0"])
        .await;
}

#[tokio::test]
async fn get_status_of_an_unknown_handle_gives_four_zeros() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    for h in [&b"H:test:9"[..], b"H:x:9", b"garbage", b""] {
        client.send(T::GET_STATUS, &[h]).await;
        let mut expected = vec![h];
        expected.extend(zeros(4));
        client.expect_packet(T::STATUS_RES, &expected).await;
    }
}

// ----- GET_STATUS_UNIQUE -------------------------------------------------------------

#[tokio::test]
async fn get_status_unique_of_a_known_job_counts_its_clients() {
    let server = TestServer::start().await;
    let mut c1 = server.conn().await;
    let mut c2 = server.conn().await;
    let h = c1.submit(T::SUBMIT_JOB, "f", "uq", "d").await;
    c2.submit(T::SUBMIT_JOB, "f", "uq", "d").await;
    c1.send(T::GET_STATUS_UNIQUE, &[b"uq"]).await;
    c1.expect_packet(T::STATUS_RES_UNIQUE, &[b"uq", b"1", b"0", b"0", b"0", b"2"])
        .await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab().await;
    worker.send(T::WORK_STATUS, &[&h, b"1", b"4"]).await;
    c1.expect(T::WORK_STATUS).await;
    c1.send(T::GET_STATUS_UNIQUE, &[b"uq"]).await;
    c1.expect_packet(T::STATUS_RES_UNIQUE, &[b"uq", b"1", b"1", b"1", b"4", b"2"])
        .await;
}

#[tokio::test]
async fn get_status_unique_of_a_background_job_has_no_clients() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "f", "bq", "d").await;
    client.send(T::GET_STATUS_UNIQUE, &[b"bq"]).await;
    client
        .expect_packet(T::STATUS_RES_UNIQUE, &[b"bq", b"1", b"0", b"0", b"0", b"0"])
        .await;
}

#[tokio::test]
async fn get_status_unique_matches_under_any_function() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "other", "anyfn", "d").await;
    client.send(T::GET_STATUS_UNIQUE, &[b"anyfn"]).await;
    client
        .expect_packet(
            T::STATUS_RES_UNIQUE,
            &[b"anyfn", b"1", b"0", b"0", b"0", b"0"],
        )
        .await;
}

#[tokio::test]
async fn get_status_unique_of_an_unknown_unique_gives_five_zeros() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.send(T::GET_STATUS_UNIQUE, &[b"nope"]).await;
    let mut expected: Vec<&[u8]> = vec![b"nope"];
    expected.extend(zeros(5));
    client.expect_packet(T::STATUS_RES_UNIQUE, &expected).await;
}

/// A `-` job is stored with unique `-`, but looked up by neither `-` nor its
/// data (verified against gearmand 1.1.20).
#[tokio::test]
async fn get_status_unique_does_not_find_dash_jobs() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "f", "-", "payload").await;
    for unique in [&b"-"[..], b"payload"] {
        client.send(T::GET_STATUS_UNIQUE, &[unique]).await;
        let mut expected = vec![unique];
        expected.extend(zeros(5));
        client.expect_packet(T::STATUS_RES_UNIQUE, &expected).await;
    }
}

/// With a `-`/"abc" job and a job with the literal unique "abc" (different
/// jobs in gearmand), GET_STATUS_UNIQUE("abc") finds the literal one.
#[tokio::test]
async fn get_status_unique_finds_a_literal_unique_next_to_a_dash_job_with_that_data() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "f", "-", "abc").await;
    client.submit(T::SUBMIT_JOB, "f", "abc", "zzz").await;
    client.send(T::GET_STATUS_UNIQUE, &[b"abc"]).await;
    client
        .expect_packet(
            T::STATUS_RES_UNIQUE,
            &[b"abc", b"1", b"0", b"0", b"0", b"1"],
        )
        .await;
}

// ----- ECHO --------------------------------------------------------------------------

#[tokio::test]
async fn echo_req_gets_identical_echo_res() {
    let server = TestServer::start().await;
    let mut conn = server.conn().await;
    for body in [&b"hello"[..], b"", b"\0", b"a\0b\0\0c\0"] {
        conn.send(T::ECHO_REQ, &[body]).await;
        conn.expect_packet(T::ECHO_RES, &[body]).await;
    }
}

#[tokio::test]
async fn echo_of_a_megabyte() {
    let server = TestServer::start().await;
    let mut conn = server.conn().await;
    let body: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    conn.send(T::ECHO_REQ, &[&body]).await;
    conn.expect_packet(T::ECHO_RES, &[&body]).await;
}

// ----- OPTION_REQ --------------------------------------------------------------------

#[tokio::test]
async fn option_req_exceptions_is_echoed() {
    let server = TestServer::start().await;
    let mut conn = server.conn().await;
    conn.send(T::OPTION_REQ, &[b"exceptions"]).await;
    conn.expect_packet(T::OPTION_RES, &[b"exceptions"]).await;
}

#[tokio::test]
async fn option_req_is_case_insensitive_and_echoes_the_exact_body() {
    let server = TestServer::start().await;
    let mut conn = server.conn().await;
    conn.send(T::OPTION_REQ, &[b"EXCEPTIONS"]).await;
    conn.expect_packet(T::OPTION_RES, &[b"EXCEPTIONS"]).await;
    conn.send(T::OPTION_REQ, &[b"Exceptions"]).await;
    conn.expect_packet(T::OPTION_RES, &[b"Exceptions"]).await;
}

#[tokio::test]
async fn option_req_unknown_gets_unknown_option_and_the_connection_stays_usable() {
    let server = TestServer::start().await;
    let mut conn = server.conn().await;
    for name in [&b"foo"[..], b"", b"exception", b"exceptionsx"] {
        conn.send(T::OPTION_REQ, &[name]).await;
        conn.expect_error("UNKNOWN_OPTION", "Server does not recognize given option")
            .await;
    }
    conn.sync().await;
}

// ----- SET_CLIENT_ID -----------------------------------------------------------------

#[tokio::test]
async fn set_client_id_has_no_reply_and_shows_in_workers() {
    let server = TestServer::start().await;
    let mut worker = server.conn().await;
    worker.send(T::SET_CLIENT_ID, &[b"my worker id"]).await;
    worker.expect_nothing().await;
    worker.can_do("f").await;
    let mut admin = server.conn().await;
    let workers = admin.listing("workers").await;
    assert!(
        workers
            .lines()
            .any(|l| l.ends_with(" 127.0.0.1 my worker id : f")),
        "{workers:?}"
    );
}

#[tokio::test]
async fn set_client_id_is_truncated_to_127_bytes() {
    let server = TestServer::start().await;
    let mut worker = server.conn().await;
    let id = "i".repeat(200);
    worker.send(T::SET_CLIENT_ID, &[id.as_bytes()]).await;
    worker.sync().await;
    let mut admin = server.conn().await;
    let workers = admin.listing("workers").await;
    let expected = format!(" 127.0.0.1 {} :", "i".repeat(127));
    assert!(
        workers.lines().any(|l| l.ends_with(&expected)),
        "{workers:?}"
    );
}

// ----- magic and refused types -------------------------------------------------------

#[tokio::test]
async fn res_magic_gets_invalid_magic_and_the_connection_stays_usable() {
    let server = TestServer::start().await;
    let mut conn = server.conn().await;
    conn.send_with(*b"\0RES", T::ECHO_REQ as u32, b"hi").await;
    conn.expect_error("INVALID_MAGIC", "Request magic expected")
        .await;
    conn.send(T::ECHO_REQ, &[b"after"]).await;
    conn.expect_packet(T::ECHO_RES, &[b"after"]).await;
    // A RES-magic submit creates nothing.
    conn.send_raw(&raw_packet(*b"\0RES", T::SUBMIT_JOB_BG as u32, b"f\0\0d"))
        .await;
    conn.expect_error("INVALID_MAGIC", "Request magic expected")
        .await;
    let mut admin = server.conn().await;
    assert!(!parse_status(&admin.listing("status").await).contains_key("f"));
}

/// Sends `kind` with a well-formed body (as many fields as the type has)
/// and checks ERROR INVALID_COMMAND, then that the connection still works.
async fn refused(kind: T) {
    let server = TestServer::start().await;
    let mut conn = server.conn().await;
    let fields: Vec<Vec<u8>> = (0..kind.field_count())
        .map(|i| format!("x{i}").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = fields.iter().map(|f| f.as_slice()).collect();
    conn.send(kind, &refs).await;
    conn.expect_error("INVALID_COMMAND", "Command not expected")
        .await;
    conn.send(T::ECHO_REQ, &[b"still here"]).await;
    conn.expect_packet(T::ECHO_RES, &[b"still here"]).await;
    // And once more with an empty body where that is well formed.
    if kind.field_count() <= 1 {
        conn.send(kind, &[]).await;
        conn.expect_error("INVALID_COMMAND", "Command not expected")
            .await;
        conn.sync().await;
    }
}

macro_rules! refused_types {
    ($($test:ident => $kind:ident;)*) => {
        $(
            #[tokio::test]
            async fn $test() {
                refused(T::$kind).await;
            }
        )*
    };
}

refused_types! {
    type_5_unused_is_refused => UNUSED;
    type_6_noop_is_refused => NOOP;
    type_8_job_created_is_refused => JOB_CREATED;
    type_10_no_job_is_refused => NO_JOB;
    type_11_job_assign_is_refused => JOB_ASSIGN;
    type_17_echo_res_is_refused => ECHO_RES;
    type_19_error_is_refused => ERROR;
    type_20_status_res_is_refused => STATUS_RES;
    type_24_all_yours_is_refused => ALL_YOURS;
    type_27_option_res_is_refused => OPTION_RES;
    type_31_job_assign_uniq_is_refused => JOB_ASSIGN_UNIQ;
    type_35_submit_job_sched_is_refused => SUBMIT_JOB_SCHED;
    type_40_job_assign_all_is_refused => JOB_ASSIGN_ALL;
    type_42_status_res_unique_is_refused => STATUS_RES_UNIQUE;
}

#[tokio::test]
async fn submit_job_sched_creates_no_job() {
    let server = TestServer::start().await;
    let mut conn = server.conn().await;
    conn.send(
        T::SUBMIT_JOB_SCHED,
        &[b"f", b"u", b"*", b"*", b"*", b"*", b"*", b"d"],
    )
    .await;
    conn.expect_error("INVALID_COMMAND", "Command not expected")
        .await;
    let mut admin = server.conn().await;
    let status = parse_status(&admin.listing("status").await);
    assert_eq!(status.get("f").map(|r| r.0).unwrap_or(0), 0);
}

/// Handles are compared as strings in gearmand: `H:test:01` is not `H:test:1`
/// (verified against gearmand 1.1.20 for GET_STATUS, WORK_COMPLETE and
/// `cancel job`).
#[tokio::test]
async fn a_handle_with_a_leading_zero_is_another_handle() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "", "d").await;
    assert_eq!(h, handle(1));
    let zero = b"H:test:01".to_vec();
    client.send(T::GET_STATUS, &[&zero]).await;
    client
        .expect_packet(T::STATUS_RES, &[&zero, b"0", b"0", b"0", b"0"])
        .await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin("cancel job H:test:01").await,
        "ERR UNKNOWN_JOB\r\n"
    );
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    assert_eq!(worker.grab().await.0, h);
    worker.send(T::WORK_COMPLETE, &[&zero, b"r"]).await;
    worker
        .expect_error("JOB_NOT_FOUND", "Job given in work result not found")
        .await;
    client.expect_nothing().await;
}
