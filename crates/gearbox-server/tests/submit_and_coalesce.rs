//! SUBMIT_* of every kind, dispatch order, unique-key coalescing, what happens
//! to a job when its clients go, and maxqueue refusals.

mod support;

use support::*;

// ----- every submit kind ---------------------------------------------------------

/// Submits one job with `kind` and checks JOB_CREATED, the priority column of
/// `prioritystatus`, the background flag in `show jobs`, and whether the
/// submitter receives the result.
async fn check_submit(kind: T, column: usize, background: bool) {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let mut admin = server.conn().await;
    let h = client.submit(kind, "f", "", "payload").await;
    assert_eq!(h, handle(1));

    let prio = parse_priority_status(&admin.listing("prioritystatus").await)["f"];
    let mut counts = [0; 3];
    counts[column] = 1;
    assert_eq!((prio.0, prio.1, prio.2), (counts[0], counts[1], counts[2]));

    let jobs = parse_show_jobs(&admin.listing("show jobs").await);
    assert_eq!(jobs[&s(&h)], (0, 0, u32::from(background)));

    let mut worker = server.conn().await;
    worker.can_do("f").await;
    let (wh, func, data) = worker.grab().await;
    assert_eq!(
        (wh.clone(), func.as_str(), data.as_slice()),
        (h.clone(), "f", &b"payload"[..])
    );
    worker.send(T::WORK_COMPLETE, &[&wh, b"result"]).await;
    worker.sync().await;
    if background {
        client.expect_nothing().await;
    } else {
        client
            .expect_packet(T::WORK_COMPLETE, &[&h, b"result"])
            .await;
    }
}

#[tokio::test]
async fn submit_job_is_foreground_normal() {
    check_submit(T::SUBMIT_JOB, 1, false).await;
}

#[tokio::test]
async fn submit_job_high_is_foreground_high() {
    check_submit(T::SUBMIT_JOB_HIGH, 0, false).await;
}

#[tokio::test]
async fn submit_job_low_is_foreground_low() {
    check_submit(T::SUBMIT_JOB_LOW, 2, false).await;
}

#[tokio::test]
async fn submit_job_bg_is_background_normal() {
    check_submit(T::SUBMIT_JOB_BG, 1, true).await;
}

#[tokio::test]
async fn submit_job_high_bg_is_background_high() {
    check_submit(T::SUBMIT_JOB_HIGH_BG, 0, true).await;
}

#[tokio::test]
async fn submit_job_low_bg_is_background_low() {
    check_submit(T::SUBMIT_JOB_LOW_BG, 2, true).await;
}

#[tokio::test]
async fn submit_data_may_contain_nul_bytes() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client
        .submit_bytes(T::SUBMIT_JOB, b"f", b"", b"a\0b\0\0c")
        .await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    let (wh, _, data) = worker.grab().await;
    assert_eq!(wh, h);
    assert_eq!(data, b"a\0b\0\0c");
}

#[tokio::test]
async fn handles_count_up_and_coalesced_submits_use_no_number() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    assert_eq!(
        client.submit(T::SUBMIT_JOB_BG, "f", "u1", "").await,
        handle(1)
    );
    assert_eq!(
        client.submit(T::SUBMIT_JOB_BG, "f", "u1", "").await,
        handle(1)
    );
    assert_eq!(
        client.submit(T::SUBMIT_JOB_BG, "g", "u1", "").await,
        handle(2)
    );
    assert_eq!(client.submit(T::SUBMIT_JOB, "f", "", "").await, handle(3));
}

// ----- dispatch order ------------------------------------------------------------

#[tokio::test]
async fn priority_order_is_high_normal_low_and_fifo_within_a_priority() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    for (kind, data) in [
        (T::SUBMIT_JOB_LOW_BG, "L1"),
        (T::SUBMIT_JOB_BG, "N1"),
        (T::SUBMIT_JOB_HIGH_BG, "H1"),
        (T::SUBMIT_JOB_LOW, "L2"),
        (T::SUBMIT_JOB, "N2"),
        (T::SUBMIT_JOB_HIGH, "H2"),
    ] {
        client.submit(kind, "f", "", data).await;
    }
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    let mut order = Vec::new();
    for _ in 0..6 {
        order.push(s(&worker.grab().await.2));
    }
    assert_eq!(order, ["H1", "H2", "N1", "N2", "L1", "L2"]);
    worker.grab_none().await;
}

#[tokio::test]
async fn grab_checks_functions_lifo_most_recent_can_do_first() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "A", "", "a").await;
    client.submit(T::SUBMIT_JOB_BG, "B", "", "b").await;
    let mut worker = server.conn().await;
    worker.can_do("A").await;
    worker.can_do("B").await;
    assert_eq!(worker.grab().await.1, "B");
    assert_eq!(worker.grab().await.1, "A");
}

#[tokio::test]
async fn priority_is_not_compared_across_functions() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_HIGH_BG, "A", "", "high").await;
    client.submit(T::SUBMIT_JOB_LOW_BG, "B", "", "low").await;
    let mut worker = server.conn().await;
    worker.can_do("A").await;
    worker.can_do("B").await;
    assert_eq!(worker.grab().await.2, b"low");
    assert_eq!(worker.grab().await.2, b"high");
}

async fn grab_order_three_functions(server: &TestServer) -> Vec<String> {
    let mut client = server.conn().await;
    for func in ["A", "B", "C"] {
        for i in 0..3 {
            client
                .submit(T::SUBMIT_JOB_BG, func, "", &format!("{func}{i}"))
                .await;
        }
    }
    let mut worker = server.conn().await;
    for func in ["A", "B", "C"] {
        worker.can_do(func).await;
    }
    let mut order = Vec::new();
    for _ in 0..9 {
        order.push(worker.grab().await.1);
    }
    worker.grab_none().await;
    order
}

#[tokio::test]
async fn without_round_robin_a_function_is_drained_first() {
    let server = TestServer::start().await;
    let order = grab_order_three_functions(&server).await;
    assert_eq!(order, ["C", "C", "C", "B", "B", "B", "A", "A", "A"]);
}

#[tokio::test]
async fn round_robin_rotates_functions_after_each_grab() {
    let server = TestServer::with(|c| c.round_robin = true).await;
    let order = grab_order_three_functions(&server).await;
    assert_eq!(order, ["C", "B", "A", "C", "B", "A", "C", "B", "A"]);
}

// ----- coalescing ------------------------------------------------------------------

#[tokio::test]
async fn empty_unique_never_coalesces() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let a = client.submit(T::SUBMIT_JOB_BG, "f", "", "same").await;
    let b = client.submit(T::SUBMIT_JOB_BG, "f", "", "same").await;
    assert_ne!(a, b);
    let mut admin = server.conn().await;
    assert_eq!(parse_status(&admin.listing("status").await)["f"], (2, 0, 0));
}

#[tokio::test]
async fn dash_unique_coalesces_on_the_data() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let a = client.submit(T::SUBMIT_JOB_BG, "f", "-", "data1").await;
    let b = client.submit(T::SUBMIT_JOB_BG, "f", "-", "data1").await;
    let c = client.submit(T::SUBMIT_JOB_BG, "f", "-", "data2").await;
    assert_eq!(a, b);
    assert_ne!(a, c);
    // The stored unique stays "-".
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.send(T::GRAB_JOB_UNIQ, &[]).await;
    worker
        .expect_packet(T::JOB_ASSIGN_UNIQ, &[&a, b"f", b"-", b"data1"])
        .await;
}

#[tokio::test]
async fn dash_unique_with_empty_data_never_coalesces() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let a = client.submit(T::SUBMIT_JOB_BG, "f", "-", "").await;
    let b = client.submit(T::SUBMIT_JOB_BG, "f", "-", "").await;
    assert_ne!(a, b);
}

/// gearmand keys a `-` submit by its data but compares it with other jobs'
/// stored uniques, so `-`/"abc" and a literal unique "abc" are different jobs,
/// in either order (verified against gearmand 1.1.20).
#[tokio::test]
async fn dash_unique_does_not_coalesce_with_a_literal_unique_equal_to_its_data() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let dash = client.submit(T::SUBMIT_JOB_BG, "f", "-", "abc").await;
    let literal = client.submit(T::SUBMIT_JOB_BG, "f", "abc", "zzz").await;
    assert_ne!(dash, literal, "'-'/abc then unique abc");
    let literal2 = client.submit(T::SUBMIT_JOB_BG, "g", "def", "zzz").await;
    let dash2 = client.submit(T::SUBMIT_JOB_BG, "g", "-", "def").await;
    assert_ne!(literal2, dash2, "unique def then '-'/def");
}

#[tokio::test]
async fn same_function_and_unique_coalesce_whatever_priority_type_or_data() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let first = client.submit(T::SUBMIT_JOB, "f", "u", "first").await;
    for kind in [
        T::SUBMIT_JOB_HIGH,
        T::SUBMIT_JOB_LOW,
        T::SUBMIT_JOB_BG,
        T::SUBMIT_JOB_HIGH_BG,
        T::SUBMIT_JOB_LOW_BG,
    ] {
        assert_eq!(client.submit(kind, "f", "u", "other").await, first);
    }
    let mut admin = server.conn().await;
    // One job, which keeps the first submission's priority and data.
    assert_eq!(
        parse_priority_status(&admin.listing("prioritystatus").await)["f"],
        (0, 1, 0, 0)
    );
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    assert_eq!(worker.grab().await.2, b"first");
    worker.grab_none().await;
}

#[tokio::test]
async fn same_unique_under_another_function_is_another_job() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let a = client.submit(T::SUBMIT_JOB_BG, "f", "u", "").await;
    let b = client.submit(T::SUBMIT_JOB_BG, "g", "u", "").await;
    assert_ne!(a, b);
}

#[tokio::test]
async fn unique_of_65_bytes_is_refused() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let unique = "u".repeat(65);
    client
        .send(T::SUBMIT_JOB, &[b"f", unique.as_bytes(), b"d"])
        .await;
    client
        .expect_error("ARGUMENT_TOO_LARGE", "Unique value too large")
        .await;
    // The connection stays usable and no job was made.
    client.sync().await;
    let mut admin = server.conn().await;
    let status = parse_status(&admin.listing("status").await);
    assert_eq!(status.get("f").map(|r| r.0).unwrap_or(0), 0);
}

/// Intended deviation: gearmand truncates a 64-byte unique to 63 bytes, so it
/// never coalesces with itself; gearbox stores it whole.
#[tokio::test]
async fn unique_of_64_bytes_is_stored_whole_and_coalesces() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let unique = "u".repeat(64);
    let a = client.submit(T::SUBMIT_JOB_BG, "f", &unique, "d").await;
    let b = client.submit(T::SUBMIT_JOB_BG, "f", &unique, "d").await;
    assert_eq!(a, b);
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.send(T::GRAB_JOB_UNIQ, &[]).await;
    worker
        .expect_packet(T::JOB_ASSIGN_UNIQ, &[&a, b"f", unique.as_bytes(), b"d"])
        .await;
}

#[tokio::test]
async fn foreground_submit_joins_a_queued_background_job_and_gets_its_results() {
    let server = TestServer::start().await;
    let mut bg = server.conn().await;
    let mut fg = server.conn().await;
    let h = bg.submit(T::SUBMIT_JOB_BG, "f", "u", "d").await;
    assert_eq!(fg.submit(T::SUBMIT_JOB, "f", "u", "other").await, h);
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    let (wh, _, data) = worker.grab().await;
    assert_eq!((wh.as_slice(), data.as_slice()), (h.as_slice(), &b"d"[..]));
    worker.send(T::WORK_DATA, &[&h, b"chunk"]).await;
    worker.send(T::WORK_STATUS, &[&h, b"1", b"2"]).await;
    worker.send(T::WORK_COMPLETE, &[&h, b"done"]).await;
    worker.sync().await;
    fg.expect_packet(T::WORK_DATA, &[&h, b"chunk"]).await;
    fg.expect_packet(T::WORK_STATUS, &[&h, b"1", b"2"]).await;
    fg.expect_packet(T::WORK_COMPLETE, &[&h, b"done"]).await;
    bg.expect_nothing().await;
}

#[tokio::test]
async fn same_connection_submitting_twice_receives_every_result_twice() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "u", "d").await;
    assert_eq!(client.submit(T::SUBMIT_JOB, "f", "u", "d").await, h);
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab().await;
    worker.send(T::WORK_DATA, &[&h, b"x"]).await;
    worker.send(T::WORK_WARNING, &[&h, b"w"]).await;
    worker.send(T::WORK_STATUS, &[&h, b"1", b"3"]).await;
    worker.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    worker.sync().await;
    for (kind, args) in [
        (T::WORK_DATA, vec![&h[..], b"x"]),
        (T::WORK_WARNING, vec![&h[..], b"w"]),
        (T::WORK_STATUS, vec![&h[..], b"1", b"3"]),
        (T::WORK_COMPLETE, vec![&h[..], b"r"]),
    ] {
        client.expect_packet(kind, &args).await;
        client.expect_packet(kind, &args).await;
    }
    client.expect_nothing().await;
}

#[tokio::test]
async fn two_foreground_clients_of_one_job_both_get_results() {
    let server = TestServer::start().await;
    let mut c1 = server.conn().await;
    let mut c2 = server.conn().await;
    let h = c1.submit(T::SUBMIT_JOB, "f", "u", "d").await;
    assert_eq!(c2.submit(T::SUBMIT_JOB_HIGH, "f", "u", "d").await, h);
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab().await;
    worker.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    worker.sync().await;
    c1.expect_packet(T::WORK_COMPLETE, &[&h, b"r"]).await;
    c2.expect_packet(T::WORK_COMPLETE, &[&h, b"r"]).await;
}

// ----- clients going away ----------------------------------------------------------

/// Intended deviation: gearmand drops a coalesced job when its only
/// foreground client leaves, even though a background submitter asked for it.
#[tokio::test]
async fn background_then_foreground_job_survives_the_foreground_disconnect() {
    let server = TestServer::start().await;
    let mut bg = server.conn().await;
    let h = bg.submit(T::SUBMIT_JOB_BG, "f", "u", "d").await;
    let mut fg = server.conn().await;
    assert_eq!(fg.submit(T::SUBMIT_JOB, "f", "u", "d").await, h);
    fg.close().await;
    let mut admin = server.conn().await;
    // Give the server time to see the close, then check the job is still there.
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        wait_status(&mut admin, "f", |r| r.is_some()).await,
        Some((1, 0, 0))
    );
    assert_eq!(
        bg.get_status(&h).await,
        ["1", "0", "0", "0"].map(String::from)
    );
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    assert_eq!(worker.grab().await.0, h);
}

/// Intended deviation, the other order: foreground first, background joins.
#[tokio::test]
async fn foreground_then_background_job_survives_the_foreground_disconnect() {
    let server = TestServer::start().await;
    let mut fg = server.conn().await;
    let h = fg.submit(T::SUBMIT_JOB, "f", "u", "d").await;
    let mut bg = server.conn().await;
    assert_eq!(bg.submit(T::SUBMIT_JOB_BG, "f", "u", "d").await, h);
    fg.close().await;
    tokio::time::sleep(QUIET).await;
    let mut admin = server.conn().await;
    assert_eq!(parse_status(&admin.listing("status").await)["f"], (1, 0, 0));
    // It is now a background job.
    assert_eq!(
        parse_show_jobs(&admin.listing("show jobs").await)[&s(&h)],
        (0, 0, 1)
    );
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    assert_eq!(worker.grab().await.0, h);
}

#[tokio::test]
async fn foreground_job_is_dropped_when_its_only_client_leaves_while_queued() {
    let server = TestServer::start().await;
    let mut fg = server.conn().await;
    let h = fg.submit(T::SUBMIT_JOB, "f", "u", "d").await;
    fg.close().await;
    let mut admin = server.conn().await;
    wait_status(&mut admin, "f", |r| r == Some((0, 0, 0))).await;
    assert_eq!(
        admin.get_status(&h).await,
        ["0", "0", "0", "0"].map(String::from)
    );
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab_none().await;
    // The unique is free again: a new submit makes a new job.
    let mut again = server.conn().await;
    assert_ne!(again.submit(T::SUBMIT_JOB, "f", "u", "d").await, h);
}

#[tokio::test]
async fn foreground_job_stays_while_another_client_is_attached() {
    let server = TestServer::start().await;
    let mut c1 = server.conn().await;
    let mut c2 = server.conn().await;
    let h = c1.submit(T::SUBMIT_JOB, "f", "u", "d").await;
    assert_eq!(c2.submit(T::SUBMIT_JOB, "f", "u", "d").await, h);
    c1.close().await;
    tokio::time::sleep(QUIET).await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    assert_eq!(worker.grab().await.0, h);
    worker.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    worker.sync().await;
    c2.expect_packet(T::WORK_COMPLETE, &[&h, b"r"]).await;
}

#[tokio::test]
async fn client_leaving_while_its_job_runs_lets_the_worker_finish_quietly() {
    let server = TestServer::start().await;
    let mut fg = server.conn().await;
    let h = fg.submit(T::SUBMIT_JOB, "f", "", "d").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab().await;
    fg.close().await;
    tokio::time::sleep(QUIET).await;
    worker.send(T::WORK_DATA, &[&h, b"x"]).await;
    worker.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    worker.sync().await;
    let mut admin = server.conn().await;
    assert_eq!(parse_status(&admin.listing("status").await)["f"], (0, 0, 1));
}

// ----- maxqueue --------------------------------------------------------------------

#[tokio::test]
async fn maxqueue_refuses_a_new_job_once_full() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "1").await;
    assert_eq!(admin.admin("maxqueue f 1").await, "OK\r\n");
    client.send(T::SUBMIT_JOB_BG, &[b"f", b"", b"2"]).await;
    client
        .expect_error("QUEUE_ERROR", "Job queue is full")
        .await;
    // Foreground too, and the connection stays usable.
    client.send(T::SUBMIT_JOB, &[b"f", b"", b"3"]).await;
    client
        .expect_error("QUEUE_ERROR", "Job queue is full")
        .await;
    client.sync().await;
    assert_eq!(parse_status(&admin.listing("status").await)["f"], (1, 0, 0));
}

#[tokio::test]
async fn maxqueue_still_accepts_a_coalesced_submit() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    let mut client = server.conn().await;
    assert_eq!(admin.admin("maxqueue f 1").await, "OK\r\n");
    let h = client.submit(T::SUBMIT_JOB_BG, "f", "u", "1").await;
    assert_eq!(client.submit(T::SUBMIT_JOB, "f", "u", "1").await, h);
    client.send(T::SUBMIT_JOB_BG, &[b"f", b"v", b"2"]).await;
    client
        .expect_error("QUEUE_ERROR", "Job queue is full")
        .await;
}

#[tokio::test]
async fn maxqueue_counts_running_jobs_too() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    let mut client = server.conn().await;
    assert_eq!(admin.admin("maxqueue f 1").await, "OK\r\n");
    client.submit(T::SUBMIT_JOB_BG, "f", "", "1").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab().await;
    client.send(T::SUBMIT_JOB_BG, &[b"f", b"", b"2"]).await;
    client
        .expect_error("QUEUE_ERROR", "Job queue is full")
        .await;
}

#[tokio::test]
async fn maxqueue_per_priority_limits_apply_per_submit_priority() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    let mut client = server.conn().await;
    // HIGH unlimited, NORMAL 1, LOW 2.
    assert_eq!(admin.admin("maxqueue f 0 1 2").await, "OK\r\n");
    client.submit(T::SUBMIT_JOB_BG, "f", "", "n1").await;
    client.send(T::SUBMIT_JOB_BG, &[b"f", b"", b"n2"]).await;
    client
        .expect_error("QUEUE_ERROR", "Job queue is full")
        .await;
    client.submit(T::SUBMIT_JOB_LOW_BG, "f", "", "l1").await;
    client.send(T::SUBMIT_JOB_LOW_BG, &[b"f", b"", b"l2"]).await;
    client
        .expect_error("QUEUE_ERROR", "Job queue is full")
        .await;
    for i in 0..3 {
        client
            .submit(T::SUBMIT_JOB_HIGH_BG, "f", "", &format!("h{i}"))
            .await;
    }
    // Two numbers: HIGH and NORMAL set, LOW reset to unlimited.
    assert_eq!(admin.admin("maxqueue f 1 1").await, "OK\r\n");
    client
        .send(T::SUBMIT_JOB_HIGH_BG, &[b"f", b"", b"h9"])
        .await;
    client
        .expect_error("QUEUE_ERROR", "Job queue is full")
        .await;
    client.submit(T::SUBMIT_JOB_LOW_BG, "f", "", "l9").await;
    // No number: all limits back to unlimited.
    assert_eq!(admin.admin("maxqueue f").await, "OK\r\n");
    client.submit(T::SUBMIT_JOB_BG, "f", "", "n9").await;
    client.submit(T::SUBMIT_JOB_HIGH_BG, "f", "", "h10").await;
}

#[tokio::test]
async fn maxqueue_negative_limit_means_unlimited() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    let mut client = server.conn().await;
    assert_eq!(admin.admin("maxqueue f -3").await, "OK\r\n");
    for i in 0..3 {
        client
            .submit(T::SUBMIT_JOB_BG, "f", "", &format!("{i}"))
            .await;
    }
}

/// Intended deviation: gearmand ignores `maxqueue` for a function it does
/// not know yet; gearbox creates the function with the limit.
#[tokio::test]
async fn maxqueue_on_an_unknown_function_creates_it_with_the_limit() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(admin.admin("maxqueue newfn 1").await, "OK\r\n");
    assert_eq!(
        parse_status(&admin.listing("status").await)["newfn"],
        (0, 0, 0)
    );
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "newfn", "", "1").await;
    client.send(T::SUBMIT_JOB_BG, &[b"newfn", b"", b"2"]).await;
    client
        .expect_error("QUEUE_ERROR", "Job queue is full")
        .await;
}

#[tokio::test]
async fn the_empty_function_name_is_a_function_like_any_other() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB_BG, "", "", "d").await;
    let mut admin = server.conn().await;
    assert_eq!(admin.listing("status").await, "\t1\t0\t0\n.\n");
    let mut worker = server.conn().await;
    worker.can_do("").await;
    assert_eq!(worker.grab().await, (h, String::new(), b"d".to_vec()));
}

#[tokio::test]
async fn function_names_are_case_sensitive() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "F", "", "d").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab_none().await;
}

#[tokio::test]
async fn a_unique_is_free_again_once_its_job_has_ended() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    let mut last = client.submit(T::SUBMIT_JOB_BG, "f", "u", "d").await;
    for end in [T::WORK_COMPLETE, T::WORK_FAIL, T::WORK_EXCEPTION] {
        assert_eq!(worker.grab().await.0, last);
        if end == T::WORK_FAIL {
            worker.send(end, &[&last]).await;
        } else {
            worker.send(end, &[&last, b"r"]).await;
        }
        worker.sync().await;
        let next = client.submit(T::SUBMIT_JOB_BG, "f", "u", "d").await;
        assert_ne!(next, last, "after {}", end.name());
        last = next;
    }
}

/// Thousands of uniques, submitted twice in pipelined bursts, half of them
/// completed in between: the index must keep finding the live ones and forget
/// the finished ones while it grows and shrinks.
#[tokio::test]
async fn coalescing_holds_across_thousands_of_uniques() {
    const N: usize = 3000;
    let server = TestServer::start().await;
    let mut client = server.conn().await;

    async fn burst(client: &mut Conn, from: usize, to: usize, tag: &str) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for i in from..to {
            let unique = format!("k{i}");
            let data = format!("{tag}{i}");
            out.extend(req_bytes(
                T::SUBMIT_JOB_BG,
                &[b"f", unique.as_bytes(), data.as_bytes()],
            ));
            // A `-` job whose data equals the unique: never the same job.
            out.extend(req_bytes(
                T::SUBMIT_JOB_BG,
                &[b"f", b"-", unique.as_bytes()],
            ));
        }
        client.send_raw(&out).await;
        let mut handles = Vec::new();
        for _ in from..to {
            handles.push(client.created().await);
            client.created().await;
        }
        handles
    }

    let first = burst(&mut client, 0, N, "a").await;
    let again = burst(&mut client, 0, N, "b").await;
    assert_eq!(first, again);
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    // Complete the first half of the literal-unique jobs (they were queued
    // first, interleaved with the `-` jobs; complete whatever comes and keep
    // count of literal ones).
    let literal: std::collections::HashSet<Vec<u8>> = first.iter().cloned().collect();
    let mut done = std::collections::HashSet::new();
    let mut grabs = 0;
    while done.len() < N / 2 {
        grabs += 1;
        assert!(grabs <= 2 * N, "ran out of jobs");
        let (h, _, _) = worker.grab().await;
        worker.send(T::WORK_COMPLETE, &[&h, b""]).await;
        if literal.contains(&h) {
            done.insert(h);
        }
    }
    worker.sync().await;
    let third = burst(&mut client, 0, N, "c").await;
    for (i, (before, now)) in first.iter().zip(&third).enumerate() {
        if done.contains(before) {
            assert_ne!(before, now, "k{i} ended; a new job is expected");
        } else {
            assert_eq!(before, now, "k{i} is still queued");
        }
    }
}
