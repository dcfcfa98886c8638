//! CAN_DO_TIMEOUT and SUBMIT_JOB_EPOCH: the two things that happen by the
//! clock. Timing assertions are loose on purpose.

mod support;

use std::time::{Duration, Instant};
use support::*;

/// Polls GRAB_JOB on `worker` until a job comes, for at most `limit`.
/// Returns the JOB_ASSIGN handle and the time it took.
async fn grab_when_ready(worker: &mut Conn, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    for _ in 0..1000 {
        worker.send(T::GRAB_JOB, &[]).await;
        let p = worker.recv().await;
        match p.kind {
            T::JOB_ASSIGN => return (p.arg(0).to_vec(), started.elapsed()),
            T::NO_JOB => {}
            _ => panic!("unexpected {p:?}"),
        }
        assert!(started.elapsed() < limit, "no job within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!("bounded by the time limit")
}

async fn can_do_timeout(worker: &mut Conn, func: &str, ms: &str) {
    worker
        .send(T::CAN_DO_TIMEOUT, &[func.as_bytes(), ms.as_bytes()])
        .await;
    worker.sync().await;
}

// ----- CAN_DO_TIMEOUT ----------------------------------------------------------------

#[tokio::test]
async fn can_do_timeout_requeues_the_job_after_about_one_second() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "", "d").await;
    let mut w1 = server.conn().await;
    // "1" ms is raised to 1000 ms.
    can_do_timeout(&mut w1, "f", "1").await;
    let mut admin = server.conn().await;
    assert_eq!(parse_status(&admin.listing("status").await)["f"], (1, 0, 1));
    assert_eq!(w1.grab().await.0, h);
    let mut w2 = server.conn().await;
    w2.can_do("f").await;
    let (h2, took) = grab_when_ready(&mut w2, Duration::from_secs(3)).await;
    assert_eq!(h2, h);
    assert!(
        took >= Duration::from_millis(800),
        "re-queued after {took:?}"
    );
    // Neither client nor worker was told.
    client.expect_nothing().await;
    w1.expect_nothing().await;
    assert_eq!(
        parse_show_jobs(&admin.listing("show jobs").await)[&s(&h)],
        (1, 0, 0)
    );
    // The old worker's late result is refused; the new one's goes through.
    w1.send(T::WORK_COMPLETE, &[&h, b"late"]).await;
    w1.expect_error("JOB_NOT_FOUND", "Job given in work result not found")
        .await;
    w2.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    client.expect_packet(T::WORK_COMPLETE, &[&h, b"r"]).await;
}

/// Intended deviation: in gearmand PRE_SLEEP cancels the timer even while a
/// job is held.
#[tokio::test]
async fn can_do_timeout_is_not_cancelled_by_pre_sleep() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB_BG, "f", "", "d").await;
    let mut w1 = server.conn().await;
    can_do_timeout(&mut w1, "f", "1000").await;
    assert_eq!(w1.grab().await.0, h);
    w1.sleep().await;
    let mut w2 = server.conn().await;
    w2.can_do("f").await;
    let (h2, took) = grab_when_ready(&mut w2, Duration::from_secs(3)).await;
    assert_eq!(h2, h);
    assert!(
        took >= Duration::from_millis(700),
        "re-queued after {took:?}"
    );
}

#[tokio::test]
async fn can_do_timeout_of_a_finished_job_does_not_touch_the_next_one() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h1 = client.submit(T::SUBMIT_JOB_BG, "f", "", "1").await;
    let h2 = client.submit(T::SUBMIT_JOB_BG, "f", "", "2").await;
    let mut worker = server.conn().await;
    can_do_timeout(&mut worker, "f", "1000").await;
    let started = Instant::now();
    assert_eq!(worker.grab().await.0, h1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.send(T::WORK_COMPLETE, &[&h1, b""]).await;
    assert_eq!(worker.grab().await.0, h2);
    // Past the first job's deadline, before the second's.
    let first_deadline = started + Duration::from_millis(1200);
    tokio::time::sleep(first_deadline.saturating_duration_since(Instant::now())).await;
    let mut admin = server.conn().await;
    assert_eq!(parse_status(&admin.listing("status").await)["f"], (1, 1, 1));
    worker.send(T::WORK_STATUS, &[&h2, b"1", b"2"]).await;
    worker.sync().await;
    assert_eq!(
        admin.get_status(&h2).await,
        ["1", "1", "1", "2"].map(String::from)
    );
}

#[tokio::test]
async fn can_do_timeout_zero_or_garbage_means_no_timeout() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h0 = client.submit(T::SUBMIT_JOB_BG, "zero", "", "").await;
    let hg = client.submit(T::SUBMIT_JOB_BG, "garbage", "", "").await;
    let mut w1 = server.conn().await;
    can_do_timeout(&mut w1, "zero", "0").await;
    assert_eq!(w1.grab().await.0, h0);
    let mut w2 = server.conn().await;
    can_do_timeout(&mut w2, "garbage", "abc").await;
    assert_eq!(w2.grab().await.0, hg);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut admin = server.conn().await;
    let status = parse_status(&admin.listing("status").await);
    assert_eq!(status["zero"], (1, 1, 1));
    assert_eq!(status["garbage"], (1, 1, 1));
}

#[tokio::test]
async fn can_do_timeout_with_job_retries_one_fails_the_job() {
    let server = TestServer::with(|c| c.job_retries = 1).await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "", "d").await;
    let mut worker = server.conn().await;
    can_do_timeout(&mut worker, "f", "1000").await;
    worker.grab().await;
    let p = client
        .try_recv(Duration::from_secs(3))
        .await
        .expect("WORK_FAIL after the timeout");
    assert_eq!(p.kind, T::WORK_FAIL, "{p:?}");
    assert_eq!(p.arg(0).as_ref(), h.as_slice());
    worker.send(T::WORK_COMPLETE, &[&h, b"late"]).await;
    worker
        .expect_error("JOB_NOT_FOUND", "Job given in work result not found")
        .await;
}

#[tokio::test]
async fn can_do_timeout_requeue_wakes_a_sleeping_worker() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB_BG, "f", "", "d").await;
    let mut w1 = server.conn().await;
    can_do_timeout(&mut w1, "f", "1000").await;
    w1.grab().await;
    let mut w2 = server.conn().await;
    w2.can_do("f").await;
    w2.sleep().await;
    let p = w2
        .try_recv(Duration::from_secs(3))
        .await
        .expect("NOOP after the timeout");
    assert_eq!(p.kind, T::NOOP);
    assert_eq!(w2.grab().await.0, h);
}

// ----- SUBMIT_JOB_EPOCH --------------------------------------------------------------

#[tokio::test]
async fn epoch_in_the_past_runs_now() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let past = (now_epoch() - 100).to_string();
    let h = client.submit_epoch("f", "", &past, "d").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    assert_eq!(worker.grab().await.0, h);
}

#[tokio::test]
async fn epoch_garbage_runs_now() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h1 = client.submit_epoch("f", "", "garbage", "1").await;
    let h2 = client.submit_epoch("f", "", "", "2").await;
    let h3 = client.submit_epoch("f", "", "0", "3").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    assert_eq!(worker.grab().await.0, h1);
    assert_eq!(worker.grab().await.0, h2);
    assert_eq!(worker.grab().await.0, h3);
}

#[tokio::test]
async fn epoch_job_is_background_normal() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let future = (now_epoch() + 100).to_string();
    let h = client.submit_epoch("f", "", &future, "d").await;
    let mut admin = server.conn().await;
    assert_eq!(parse_status(&admin.listing("status").await)["f"], (1, 0, 0));
    assert_eq!(
        parse_priority_status(&admin.listing("prioritystatus").await)["f"],
        (0, 1, 0, 0)
    );
    assert_eq!(
        parse_show_jobs(&admin.listing("show jobs").await)[&s(&h)],
        (0, 0, 1)
    );
    assert_eq!(
        admin.get_status(&h).await,
        ["1", "0", "0", "0"].map(String::from)
    );
}

#[tokio::test]
async fn epoch_in_the_future_is_not_grabbed_before_it_is_due_but_is_after() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let started = Instant::now();
    let due = (now_epoch() + 2).to_string();
    let h = client.submit_epoch("f", "", &due, "d").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab_none().await;
    let (got, _) = grab_when_ready(&mut worker, Duration::from_secs(4)).await;
    assert_eq!(got, h);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "ran after {took:?}");
}

/// Intended deviation: gearmand sends no NOOP when an epoch job falls due.
#[tokio::test]
async fn a_sleeping_worker_gets_a_noop_when_an_epoch_job_falls_due() {
    let server = TestServer::start().await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.sleep().await;
    let mut client = server.conn().await;
    let due = (now_epoch() + 2).to_string();
    let h = client.submit_epoch("f", "", &due, "d").await;
    let p = worker
        .try_recv(Duration::from_secs(4))
        .await
        .expect("NOOP when the epoch job falls due");
    assert_eq!(p.kind, T::NOOP);
    assert_eq!(worker.grab().await.0, h);
}

/// Intended deviation: in gearmand a future epoch job in the NORMAL list
/// stops the scan, so LOW jobs of that function starve.
#[tokio::test]
async fn a_future_epoch_job_does_not_hide_low_jobs() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let future = (now_epoch() + 100).to_string();
    client.submit_epoch("f", "", &future, "later").await;
    let low = client.submit(T::SUBMIT_JOB_LOW_BG, "f", "", "low").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.send(T::PRE_SLEEP, &[]).await;
    worker.expect(T::NOOP).await;
    assert_eq!(worker.grab().await.0, low);
    worker.grab_none().await;
}

#[tokio::test]
async fn epoch_out_of_range_is_refused() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client
        .send(
            T::SUBMIT_JOB_EPOCH,
            &[b"f", b"", b"99999999999999999999999", b"d"],
        )
        .await;
    client.expect(T::ERROR).await;
    client.sync().await;
    let mut admin = server.conn().await;
    let status = parse_status(&admin.listing("status").await);
    assert_eq!(status.get("f").map(|r| r.0).unwrap_or(0), 0);
}

#[tokio::test]
async fn cancelling_a_future_epoch_job_removes_it() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let future = (now_epoch() + 100).to_string();
    let h = client.submit_epoch("f", "", &future, "d").await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin(&format!("cancel job {}", s(&h))).await,
        "OK\r\n"
    );
    assert_eq!(parse_status(&admin.listing("status").await)["f"], (0, 0, 0));
    assert_eq!(admin.listing("show jobs").await, ".\n");
}

#[tokio::test]
async fn maxqueue_counts_future_epoch_jobs() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(admin.admin("maxqueue f 1").await, "OK\r\n");
    let mut client = server.conn().await;
    let future = (now_epoch() + 100).to_string();
    client.submit_epoch("f", "", &future, "d").await;
    client.send(T::SUBMIT_JOB_BG, &[b"f", b"", b"x"]).await;
    client
        .expect_error("QUEUE_ERROR", "Job queue is full")
        .await;
}

#[tokio::test]
async fn epoch_job_coalesces_on_its_unique() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let future = (now_epoch() + 100).to_string();
    let h = client.submit_epoch("f", "eu", &future, "d").await;
    assert_eq!(client.submit(T::SUBMIT_JOB_BG, "f", "eu", "x").await, h);
}

#[tokio::test]
async fn pre_sleep_with_only_a_future_epoch_job_gets_no_noop() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let future = (now_epoch() + 100).to_string();
    client.submit_epoch("f", "", &future, "d").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.send(T::PRE_SLEEP, &[]).await;
    worker.expect_nothing().await;
}
