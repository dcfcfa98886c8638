//! Worker side: CAN_DO and friends, the three GRABs, PRE_SLEEP/NOOP wake-ups,
//! and jobs going back to the queue when a worker lets go of them.

mod support;

use support::*;

// ----- registering -----------------------------------------------------------------

#[tokio::test]
async fn can_do_registers_the_function_and_counts_a_worker() {
    let server = TestServer::start().await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    let mut admin = server.conn().await;
    assert_eq!(parse_status(&admin.listing("status").await)["f"], (0, 0, 1));
}

#[tokio::test]
async fn can_do_name_is_the_whole_body_including_a_trailing_nul() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "d").await;
    let mut worker = server.conn().await;
    worker.send(T::CAN_DO, &[b"f\0"]).await;
    worker.sync().await;
    worker.grab_none().await;
}

#[tokio::test]
async fn can_do_duplicates_count_twice_in_status_and_show_twice_in_workers() {
    let server = TestServer::start().await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.can_do("f").await;
    let mut admin = server.conn().await;
    assert_eq!(parse_status(&admin.listing("status").await)["f"], (0, 0, 2));
    let workers = admin.listing("workers").await;
    assert!(
        workers.lines().any(|l| l.ends_with(" - : f f")),
        "{workers:?}"
    );
}

#[tokio::test]
async fn cant_do_removes_every_entry_of_the_function() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "d").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.can_do("f").await;
    worker.can_do("g").await;
    worker.send(T::CANT_DO, &[b"f"]).await;
    worker.sync().await;
    let mut admin = server.conn().await;
    let status = parse_status(&admin.listing("status").await);
    assert_eq!(status["f"], (1, 0, 0));
    assert_eq!(status["g"], (0, 0, 1));
    worker.grab_none().await;
}

#[tokio::test]
async fn cant_do_requeues_a_held_job_for_another_worker() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "", "d").await;
    let mut w1 = server.conn().await;
    w1.can_do("f").await;
    assert_eq!(w1.grab().await.0, h);
    w1.send(T::CANT_DO, &[b"f"]).await;
    w1.sync().await;
    let mut admin = server.conn().await;
    assert_eq!(
        parse_show_jobs(&admin.listing("show jobs").await)[&s(&h)],
        (1, 0, 0)
    );
    let mut w2 = server.conn().await;
    w2.can_do("f").await;
    assert_eq!(w2.grab().await.0, h);
    w1.send(T::WORK_COMPLETE, &[&h, b"late"]).await;
    w1.expect_error("JOB_NOT_FOUND", "Job given in work result not found")
        .await;
    w2.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    w2.sync().await;
    client.expect_packet(T::WORK_COMPLETE, &[&h, b"r"]).await;
    client.expect_nothing().await;
}

#[tokio::test]
async fn reset_abilities_removes_all_functions_and_requeues_held_jobs() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "", "d").await;
    let mut w1 = server.conn().await;
    w1.can_do("f").await;
    w1.can_do("g").await;
    assert_eq!(w1.grab().await.0, h);
    w1.send(T::RESET_ABILITIES, &[]).await;
    w1.sync().await;
    let mut admin = server.conn().await;
    let status = parse_status(&admin.listing("status").await);
    assert_eq!(status["f"], (1, 0, 0));
    assert_eq!(status["g"], (0, 0, 0));
    assert!(
        admin
            .listing("workers")
            .await
            .lines()
            .all(|l| !l.contains(" : ")),
        "no connection lists a function"
    );
    let mut w2 = server.conn().await;
    w2.can_do("f").await;
    assert_eq!(w2.grab().await.0, h);
    w1.send(T::WORK_COMPLETE, &[&h, b"late"]).await;
    w1.expect_error("JOB_NOT_FOUND", "Job given in work result not found")
        .await;
}

// ----- grabbing --------------------------------------------------------------------

#[tokio::test]
async fn grab_job_with_nothing_queued_gets_no_job() {
    let server = TestServer::start().await;
    let mut worker = server.conn().await;
    worker.grab_none().await;
    worker.can_do("f").await;
    worker.grab_none().await;
}

#[tokio::test]
async fn grab_job_gets_job_assign_handle_function_data() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "uniq", "d\0ata").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.send(T::GRAB_JOB, &[]).await;
    worker
        .expect_packet(T::JOB_ASSIGN, &[&h, b"f", b"d\0ata"])
        .await;
}

#[tokio::test]
async fn grab_job_uniq_gets_job_assign_uniq_with_the_unique() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "uniq", "data").await;
    let e = client.submit(T::SUBMIT_JOB, "f", "", "empty").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.send(T::GRAB_JOB_UNIQ, &[]).await;
    worker
        .expect_packet(T::JOB_ASSIGN_UNIQ, &[&h, b"f", b"uniq", b"data"])
        .await;
    worker.send(T::GRAB_JOB_UNIQ, &[]).await;
    worker
        .expect_packet(T::JOB_ASSIGN_UNIQ, &[&e, b"f", b"", b"empty"])
        .await;
    worker.send(T::GRAB_JOB_UNIQ, &[]).await;
    worker.expect(T::NO_JOB).await;
}

#[tokio::test]
async fn grab_job_all_gets_job_assign_uniq_for_an_ordinary_job() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "uniq", "data").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.send(T::GRAB_JOB_ALL, &[]).await;
    worker
        .expect_packet(T::JOB_ASSIGN_UNIQ, &[&h, b"f", b"uniq", b"data"])
        .await;
    worker.send(T::GRAB_JOB_ALL, &[]).await;
    worker.expect(T::NO_JOB).await;
}

async fn submit_reduce(client: &mut Conn, kind: T, reducer: &str) -> Vec<u8> {
    client
        .send(kind, &[b"f", b"ru", reducer.as_bytes(), b"", b"rdata"])
        .await;
    client.created().await
}

#[tokio::test]
async fn submit_reduce_job_grab_job_all_gets_job_assign_all() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = submit_reduce(&mut client, T::SUBMIT_REDUCE_JOB, "red").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.send(T::GRAB_JOB_ALL, &[]).await;
    worker
        .expect_packet(T::JOB_ASSIGN_ALL, &[&h, b"f", b"ru", b"red", b"rdata"])
        .await;
    // Foreground: the submitter gets the result.
    worker.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    worker.sync().await;
    client.expect_packet(T::WORK_COMPLETE, &[&h, b"r"]).await;
}

#[tokio::test]
async fn submit_reduce_job_background_grab_job_all_gets_job_assign_all() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = submit_reduce(&mut client, T::SUBMIT_REDUCE_JOB_BACKGROUND, "red").await;
    let mut admin = server.conn().await;
    assert_eq!(
        parse_show_jobs(&admin.listing("show jobs").await)[&s(&h)],
        (0, 0, 1)
    );
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.send(T::GRAB_JOB_ALL, &[]).await;
    worker
        .expect_packet(T::JOB_ASSIGN_ALL, &[&h, b"f", b"ru", b"red", b"rdata"])
        .await;
    worker.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    worker.sync().await;
    client.expect_nothing().await;
}

#[tokio::test]
async fn reduce_job_with_empty_reducer_gets_job_assign_uniq_from_grab_job_all() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = submit_reduce(&mut client, T::SUBMIT_REDUCE_JOB, "").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.send(T::GRAB_JOB_ALL, &[]).await;
    worker
        .expect_packet(T::JOB_ASSIGN_UNIQ, &[&h, b"f", b"ru", b"rdata"])
        .await;
}

#[tokio::test]
async fn reduce_jobs_can_be_taken_with_grab_job_and_grab_job_uniq() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h1 = submit_reduce(&mut client, T::SUBMIT_REDUCE_JOB_BACKGROUND, "red").await;
    client
        .send(
            T::SUBMIT_REDUCE_JOB_BACKGROUND,
            &[b"f", b"ru2", b"red", b"", b"d2"],
        )
        .await;
    let h2 = client.created().await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.send(T::GRAB_JOB, &[]).await;
    worker
        .expect_packet(T::JOB_ASSIGN, &[&h1, b"f", b"rdata"])
        .await;
    worker.send(T::GRAB_JOB_UNIQ, &[]).await;
    worker
        .expect_packet(T::JOB_ASSIGN_UNIQ, &[&h2, b"f", b"ru2", b"d2"])
        .await;
}

#[tokio::test]
async fn a_worker_can_hold_several_jobs() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h1 = client.submit(T::SUBMIT_JOB, "f", "", "1").await;
    let h2 = client.submit(T::SUBMIT_JOB, "f", "", "2").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    assert_eq!(worker.grab().await.0, h1);
    assert_eq!(worker.grab().await.0, h2);
    let mut admin = server.conn().await;
    assert_eq!(parse_status(&admin.listing("status").await)["f"], (2, 2, 1));
    worker.send(T::WORK_COMPLETE, &[&h2, b"r2"]).await;
    worker.send(T::WORK_COMPLETE, &[&h1, b"r1"]).await;
    worker.sync().await;
    client.expect_packet(T::WORK_COMPLETE, &[&h2, b"r2"]).await;
    client.expect_packet(T::WORK_COMPLETE, &[&h1, b"r1"]).await;
}

// ----- sleeping and waking ---------------------------------------------------------

#[tokio::test]
async fn pre_sleep_with_work_pending_gets_an_immediate_noop_every_time() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "d").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.send(T::PRE_SLEEP, &[]).await;
    worker.expect(T::NOOP).await;
    worker.send(T::PRE_SLEEP, &[]).await;
    worker.expect(T::NOOP).await;
    worker.sync().await;
}

#[tokio::test]
async fn pre_sleep_without_work_gets_no_reply() {
    let server = TestServer::start().await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.send(T::PRE_SLEEP, &[]).await;
    worker.expect_nothing().await;
}

#[tokio::test]
async fn sleeping_worker_gets_noop_when_a_job_arrives() {
    let server = TestServer::start().await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.sleep().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "", "d").await;
    worker.expect(T::NOOP).await;
    assert_eq!(worker.grab().await.0, h);
}

#[tokio::test]
async fn sleeping_worker_is_woken_only_by_its_own_functions() {
    let server = TestServer::start().await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.sleep().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "g", "", "d").await;
    worker.expect_nothing().await;
}

#[tokio::test]
async fn a_second_job_before_the_grab_sends_no_second_noop() {
    let server = TestServer::start().await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.sleep().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "1").await;
    worker.expect(T::NOOP).await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "2").await;
    worker.expect_nothing().await;
}

#[tokio::test]
async fn workers_that_never_sent_pre_sleep_get_no_noop() {
    let server = TestServer::start().await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "d").await;
    worker.expect_nothing().await;
}

#[tokio::test]
async fn a_worker_that_grabbed_is_awake_and_gets_no_noop() {
    let server = TestServer::start().await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.sleep().await;
    worker.grab_none().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "d").await;
    worker.expect_nothing().await;
}

/// Returns which of `sleepers` got a NOOP (each checked for QUIET).
async fn noop_pattern(sleepers: &mut [Conn]) -> Vec<bool> {
    let mut woken = Vec::new();
    for w in sleepers.iter_mut() {
        match w.try_recv(QUIET).await {
            None => woken.push(false),
            Some(p) => {
                assert_eq!(p.kind, T::NOOP, "only NOOP may arrive: {p:?}");
                woken.push(true);
            }
        }
    }
    woken
}

/// Intended deviation: gearmand's default `-w 0` wakes every sleeper.
#[tokio::test]
async fn one_new_job_wakes_exactly_one_of_three_sleepers_rotating() {
    let server = TestServer::start().await;
    let mut sleepers = Vec::new();
    for _ in 0..3 {
        let mut w = server.conn().await;
        w.can_do("f").await;
        w.sleep().await;
        sleepers.push(w);
    }
    let mut client = server.conn().await;
    let mut who = Vec::new();
    for round in 0..3 {
        let h = client
            .submit(T::SUBMIT_JOB_BG, "f", "", &format!("{round}"))
            .await;
        let pattern = noop_pattern(&mut sleepers).await;
        assert_eq!(
            pattern.iter().filter(|&&b| b).count(),
            1,
            "round {round}: {pattern:?}"
        );
        let i = pattern.iter().position(|&b| b).unwrap();
        who.push(i);
        // The woken one takes the job, then sleeps again.
        let w = &mut sleepers[i];
        assert_eq!(w.grab().await.0, h);
        w.send(T::WORK_COMPLETE, &[&h, b""]).await;
        w.grab_none().await;
        w.sleep().await;
    }
    let mut sorted = who.clone();
    sorted.sort();
    assert_eq!(sorted, [0, 1, 2], "the wake-up rotates: {who:?}");
}

#[tokio::test]
async fn worker_wakeup_two_wakes_two_sleepers_per_job() {
    let server = TestServer::with(|c| c.worker_wakeup = 2).await;
    let mut sleepers = Vec::new();
    for _ in 0..3 {
        let mut w = server.conn().await;
        w.can_do("f").await;
        w.sleep().await;
        sleepers.push(w);
    }
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "d").await;
    let pattern = noop_pattern(&mut sleepers).await;
    assert_eq!(pattern.iter().filter(|&&b| b).count(), 2, "{pattern:?}");
}

#[tokio::test]
async fn a_woken_worker_that_loses_the_race_gets_no_job() {
    let server = TestServer::start().await;
    let mut sleeper = server.conn().await;
    sleeper.can_do("f").await;
    sleeper.sleep().await;
    let mut awake = server.conn().await;
    awake.can_do("f").await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB_BG, "f", "", "d").await;
    sleeper.expect(T::NOOP).await;
    assert_eq!(awake.grab().await.0, h);
    sleeper.grab_none().await;
}

#[tokio::test]
async fn woken_sleeper_that_disconnects_passes_the_wakeup_on() {
    let server = TestServer::start().await;
    let mut w1 = server.conn().await;
    w1.can_do("f").await;
    w1.sleep().await;
    let mut w2 = server.conn().await;
    w2.can_do("f").await;
    w2.sleep().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB_BG, "f", "", "d").await;
    let mut both = [w1, w2];
    let pattern = noop_pattern(&mut both).await;
    assert_eq!(pattern.iter().filter(|&&b| b).count(), 1, "{pattern:?}");
    let [w1, w2] = both;
    let (mut gone, mut other) = if pattern[0] { (w1, w2) } else { (w2, w1) };
    gone.sync().await;
    gone.close().await;
    other.expect(T::NOOP).await;
    assert_eq!(other.grab().await.0, h);
}

#[tokio::test]
async fn can_do_while_sleeping_makes_the_new_function_wake_the_worker() {
    let server = TestServer::start().await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.sleep().await;
    worker.can_do("g").await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "g", "", "d").await;
    worker.expect(T::NOOP).await;
}

// ----- losing workers --------------------------------------------------------------

#[tokio::test]
async fn worker_disconnect_requeues_its_job_at_the_tail_with_one_more_retry() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h1 = client.submit(T::SUBMIT_JOB, "f", "", "1").await;
    let h2 = client.submit(T::SUBMIT_JOB, "f", "", "2").await;
    let mut w1 = server.conn().await;
    w1.can_do("f").await;
    assert_eq!(w1.grab().await.0, h1);
    w1.close().await;
    let mut admin = server.conn().await;
    wait_status(&mut admin, "f", |r| r == Some((2, 0, 0))).await;
    let jobs = parse_show_jobs(&admin.listing("show jobs").await);
    assert_eq!(jobs[&s(&h1)], (1, 0, 0));
    assert_eq!(jobs[&s(&h2)], (0, 0, 0));
    // The client is not told.
    client.expect_nothing().await;
    let mut w2 = server.conn().await;
    w2.can_do("f").await;
    assert_eq!(w2.grab().await.0, h2);
    assert_eq!(w2.grab().await.0, h1);
}

#[tokio::test]
async fn requeue_resets_progress() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB_BG, "f", "", "1").await;
    let mut w1 = server.conn().await;
    w1.can_do("f").await;
    w1.grab().await;
    w1.send(T::WORK_STATUS, &[&h, b"3", b"4"]).await;
    w1.sync().await;
    assert_eq!(
        client.get_status(&h).await,
        ["1", "1", "3", "4"].map(String::from)
    );
    w1.close().await;
    let mut admin = server.conn().await;
    wait_status(&mut admin, "f", |r| r == Some((1, 0, 0))).await;
    assert_eq!(
        client.get_status(&h).await,
        ["1", "0", "0", "0"].map(String::from)
    );
}

#[tokio::test]
async fn worker_disconnect_wakes_a_sleeping_worker_for_the_requeued_job() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB_BG, "f", "", "1").await;
    let mut w1 = server.conn().await;
    w1.can_do("f").await;
    w1.grab().await;
    let mut w2 = server.conn().await;
    w2.can_do("f").await;
    w2.sleep().await;
    w1.close().await;
    w2.expect(T::NOOP).await;
    assert_eq!(w2.grab().await.0, h);
}

#[tokio::test]
async fn job_retries_two_drops_the_job_after_the_second_lost_worker() {
    let server = TestServer::with(|c| c.job_retries = 2).await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "", "d").await;
    let mut admin = server.conn().await;

    let mut w1 = server.conn().await;
    w1.can_do("f").await;
    assert_eq!(w1.grab().await.0, h);
    w1.close().await;
    wait_status(&mut admin, "f", |r| r == Some((1, 0, 0))).await;
    assert_eq!(
        parse_show_jobs(&admin.listing("show jobs").await)[&s(&h)],
        (1, 0, 0)
    );
    client.expect_nothing().await;

    let mut w2 = server.conn().await;
    w2.can_do("f").await;
    assert_eq!(w2.grab().await.0, h);
    w2.close().await;
    client.expect_packet(T::WORK_FAIL, &[&h]).await;
    wait_status(&mut admin, "f", |r| r == Some((0, 0, 0))).await;
    assert!(!admin.listing("show jobs").await.contains(&s(&h)));
}

/// W1 (f, g) and W2 (f) sleep. A job for f wakes W1 only; a job for g then
/// wakes nobody, because W1 is already awake. W1 grabs the g job (LIFO), and
/// the f job is left waiting while W2, which could run it, sleeps on: with
/// one wake-up per job, a woken worker that takes another job must pass its
/// wake-up on.
#[tokio::test]
async fn a_job_does_not_wait_while_a_capable_worker_sleeps() {
    let server = TestServer::start().await;
    let mut w1 = server.conn().await;
    w1.can_do("f").await;
    w1.can_do("g").await;
    w1.sleep().await;
    let mut w2 = server.conn().await;
    w2.can_do("f").await;
    w2.sleep().await;
    let mut client = server.conn().await;
    let hf = client.submit(T::SUBMIT_JOB_BG, "f", "", "f").await;
    w1.expect(T::NOOP).await;
    let hg = client.submit(T::SUBMIT_JOB_BG, "g", "", "g").await;
    assert_eq!(w1.grab().await.0, hg);
    // W1 is busy with g; the f job must reach W2.
    w2.expect(T::NOOP).await;
    assert_eq!(w2.grab().await.0, hf);
}

/// W1 and W2 sleep on f; W1 then gives f up (still asleep). A job for f must
/// wake W2: spending the one wake-up on W1, which cannot take the job, leaves
/// the job waiting while W2 sleeps.
#[tokio::test]
async fn a_sleeper_that_dropped_the_function_does_not_use_up_its_wakeup() {
    let server = TestServer::start().await;
    let mut w1 = server.conn().await;
    w1.can_do("f").await;
    w1.can_do("g").await;
    w1.sleep().await;
    let mut w2 = server.conn().await;
    w2.can_do("f").await;
    w2.sleep().await;
    w1.send(T::CANT_DO, &[b"f"]).await;
    w1.sync().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB_BG, "f", "", "d").await;
    w2.expect(T::NOOP).await;
    assert_eq!(w2.grab().await.0, h);
}

/// The same with RESET_ABILITIES.
#[tokio::test]
async fn a_sleeper_that_reset_its_abilities_does_not_use_up_the_wakeup() {
    let server = TestServer::start().await;
    let mut w1 = server.conn().await;
    w1.can_do("f").await;
    w1.sleep().await;
    let mut w2 = server.conn().await;
    w2.can_do("f").await;
    w2.sleep().await;
    w1.send(T::RESET_ABILITIES, &[]).await;
    w1.sync().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB_BG, "f", "", "d").await;
    w2.expect(T::NOOP).await;
    assert_eq!(w2.grab().await.0, h);
    // W1 cannot do f any more: it must not have been woken for it.
    w1.expect_nothing().await;
}
