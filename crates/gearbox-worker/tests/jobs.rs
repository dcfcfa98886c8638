//! Jobs end-to-end against real servers: fairness, handler endings, progress
//! packets, panics, back-pressure, timeouts, shutdown, no over-grab.

mod common;

use bytes::Bytes;
use common::*;
use gearbox_proto::PacketType;
use gearbox_worker::{BackpressurePolicy, JobError, Worker};
use protocol_tests::ServerKind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Two servers with deep backlogs, concurrency 1: grabs rotate, so each server
/// supplies half of the first 400 jobs (the issue allows 45–55 %).
async fn fairness(kind: ServerKind) {
    let a = start(kind).await;
    let b = start(kind).await;
    submit_bg(a.port(), "fair", "a", 600).await;
    submit_bg(b.port(), "fair", "b", 600).await;

    // Both connections must be up before jobs count: otherwise the server that
    // connected first would be the only one in the rotation for a moment.
    let (gate_tx, gate_rx) = watch::channel(false);
    let taken: Arc<Mutex<Vec<String>>> = Arc::default();
    let (done_tx, done_rx) = watch::channel(false);
    let seen = taken.clone();
    let worker = Worker::builder()
        .server(a.addr())
        .server(b.addr())
        .concurrency(1)
        .function("fair", move |job| {
            let seen = seen.clone();
            let mut gate = gate_rx.clone();
            let done_tx = done_tx.clone();
            async move {
                gate.wait_for(|open| *open).await.unwrap();
                let mut seen = seen.lock().unwrap();
                if seen.len() < 400 {
                    seen.push(String::from_utf8_lossy(job.payload()).into_owned());
                    if seen.len() == 400 {
                        let _ = done_tx.send(true);
                    }
                }
                Ok::<_, JobError>(Bytes::new())
            }
        })
        .build()
        .unwrap();
    let handle = worker.handle();
    let running = worker.spawn();
    wait_for("both servers up", || {
        handle
            .health()
            .iter()
            .all(|(_, h)| *h == gearbox_worker::Health::Up)
    })
    .await;
    gate_tx.send(true).unwrap();
    let mut done = done_rx;
    within("400 jobs", done.wait_for(|d| *d)).await.unwrap();
    running.shutdown(Duration::from_secs(10)).await;
    let seen = taken.lock().unwrap();
    let from_a = seen.iter().filter(|p| p.starts_with("a-")).count();
    let from_b = seen.len() - from_a;
    assert!(
        (180..=220).contains(&from_a),
        "{}: {from_a} jobs from A, {from_b} from B (want 45-55 % each)",
        kind.name()
    );
    // Each server's own FIFO order is kept.
    let a_order: Vec<usize> = seen
        .iter()
        .filter_map(|p| p.strip_prefix("a-")?.parse().ok())
        .collect();
    assert!(a_order.windows(2).all(|w| w[0] < w[1]), "{a_order:?}");
}
both_servers!(fairness_two_backlogged_servers, fairness);

/// A handler panic becomes WORK_FAIL for the client, and the worker goes on
/// with the next job.
async fn panic_is_fail(kind: ServerKind) {
    let server = start(kind).await;
    let worker = Worker::builder()
        .server(server.addr())
        .function("boom", |job| async move {
            if job.payload().as_ref() == b"panic" {
                panic!("handler panics on purpose");
            }
            Ok::<_, JobError>(job.payload().clone())
        })
        .blocking_function("boom_blocking", |job| {
            if job.payload().as_ref() == b"panic" {
                panic!("blocking handler panics on purpose");
            }
            Ok::<_, JobError>(job.payload().clone())
        })
        .build()
        .unwrap();
    let handle = worker.handle();
    let running = worker.spawn();
    let mut client = Raw::connect(server.port()).await;
    for function in ["boom", "boom_blocking"] {
        let h = client.submit(function, b"panic").await;
        let seen = client.until_done().await;
        let last = seen.last().unwrap();
        assert_eq!(last.kind, PacketType::WORK_FAIL, "{function}: {seen:?}");
        assert_eq!(last.arg(0), &h);
        let h = client.submit(function, b"fine").await;
        let seen = client.until_done().await;
        let last = seen.last().unwrap();
        assert_eq!(last.kind, PacketType::WORK_COMPLETE, "{function}: {seen:?}");
        assert_eq!(last.arg(0), &h);
        assert_eq!(last.arg(1).as_ref(), b"fine");
    }
    let stats = handle.stats();
    assert_eq!(stats.panics, 2, "{stats:?}");
    assert_eq!(stats.completed, 2, "{stats:?}");
    running.shutdown(Duration::from_secs(10)).await;
}
both_servers!(handler_panic_becomes_work_fail, panic_is_fail);

/// WORK_DATA, WORK_WARNING, WORK_STATUS and WORK_EXCEPTION reach a foreground
/// client that asked for exceptions, in order; Fail gives WORK_FAIL.
async fn progress_packets(kind: ServerKind) {
    let server = start(kind).await;
    let worker = Worker::builder()
        .server(server.addr())
        .function("talk", |job| async move {
            job.data(b"chunk-1").unwrap();
            job.warning(b"careful").unwrap();
            job.status(1, 2).unwrap();
            job.data(b"chunk-2").unwrap();
            job.status(2, 2).unwrap();
            match job.payload().as_ref() {
                b"exception" => Err(JobError::exception("it broke")),
                b"fail" => Err(JobError::fail("no luck")),
                _ => Ok(Bytes::from_static(b"result")),
            }
        })
        .build()
        .unwrap();
    let running = worker.spawn();
    let mut client = Raw::connect(server.port()).await;
    client.enable_exceptions().await;
    for (payload, end, end_data) in [
        (&b"complete"[..], PacketType::WORK_COMPLETE, &b"result"[..]),
        (b"exception", PacketType::WORK_EXCEPTION, b"it broke"),
        (b"fail", PacketType::WORK_FAIL, b""),
    ] {
        let h = client.submit("talk", payload).await;
        let seen = client.until_done().await;
        let summary: Vec<(PacketType, Vec<Vec<u8>>)> = seen
            .iter()
            .map(|p| {
                assert_eq!(p.arg(0), &h, "{p:?}");
                (p.kind, p.args()[1..].iter().map(|a| a.to_vec()).collect())
            })
            .collect();
        let mut expected = vec![
            (PacketType::WORK_DATA, vec![b"chunk-1".to_vec()]),
            (PacketType::WORK_WARNING, vec![b"careful".to_vec()]),
            (PacketType::WORK_STATUS, vec![b"1".to_vec(), b"2".to_vec()]),
            (PacketType::WORK_DATA, vec![b"chunk-2".to_vec()]),
            (PacketType::WORK_STATUS, vec![b"2".to_vec(), b"2".to_vec()]),
        ];
        expected.push(if end == PacketType::WORK_FAIL {
            (end, vec![])
        } else {
            (end, vec![end_data.to_vec()])
        });
        assert_eq!(summary, expected, "{}", String::from_utf8_lossy(payload));
    }
    running.shutdown(Duration::from_secs(10)).await;
}
both_servers!(data_warning_status_exception_reach_client, progress_packets);

/// Concurrency 2 over two servers with slow handlers: the servers together
/// never show more than 2 jobs running for this worker while a backlog waits.
/// Handlers are held by the test, so each sample is taken in a still state.
async fn no_over_grab(kind: ServerKind) {
    let a = start(kind).await;
    let b = start(kind).await;
    submit_bg(a.port(), "slow", "a", 6).await;
    submit_bg(b.port(), "slow", "b", 6).await;
    let release = Arc::new(Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let (r, s) = (release.clone(), started.clone());
    let worker = Worker::builder()
        .server(a.addr())
        .server(b.addr())
        .concurrency(2)
        .function("slow", move |_job| {
            let (r, s) = (r.clone(), s.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                r.acquire().await.unwrap().forget();
                Ok::<_, JobError>(Bytes::new())
            }
        })
        .build()
        .unwrap();
    let handle = worker.handle();
    let running = worker.spawn();
    for round in 0..6 {
        // Two more jobs start each round (the first round starts two).
        let want = 2 * (round + 1);
        wait_for("two jobs running", || {
            started.load(Ordering::SeqCst) == want && handle.running() == 2
        })
        .await;
        // Give a would-be over-grab time to show (this sleep can only make
        // the test stricter, never flaky).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (total_a, running_a, _) = fn_status(a.port(), "slow").await;
        let (total_b, running_b, _) = fn_status(b.port(), "slow").await;
        assert_eq!(
            running_a + running_b,
            2,
            "round {round}: A runs {running_a}, B runs {running_b}"
        );
        assert_eq!(total_a + total_b, 12 - 2 * round as u64, "round {round}");
        assert_eq!(started.load(Ordering::SeqCst), want);
        release.add_permits(2);
    }
    wait_for("all done", || handle.stats().completed == 12).await;
    running.shutdown(Duration::from_secs(10)).await;
}
both_servers!(no_over_grab_concurrency_2, no_over_grab);

/// Graceful shutdown: the running job finishes and its result reaches the
/// client; a job queued after shutdown began is never grabbed; the worker
/// unregisters.
async fn graceful_shutdown(kind: ServerKind) {
    let server = start(kind).await;
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(Semaphore::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (r, c) = (release.clone(), calls.clone());
    let worker = Worker::builder()
        .server(server.addr())
        .concurrency(1)
        .function("work", move |job| {
            let (r, c, tx) = (r.clone(), c.clone(), started_tx.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(());
                r.acquire().await.unwrap().forget();
                Ok::<_, JobError>(job.payload().clone())
            }
        })
        .build()
        .unwrap();
    let handle = worker.handle();
    let running = worker.spawn();
    let mut client = Raw::connect(server.port()).await;
    let h = client.submit("work", b"first").await;
    within("job start", started_rx.recv()).await.unwrap();
    handle.begin_shutdown(Duration::from_secs(20));
    let join = tokio::spawn(running.join());
    submit_bg(server.port(), "work", "after-shutdown", 1).await;
    release.add_permits(1);
    let seen = client.until_done().await;
    let last = seen.last().unwrap();
    assert_eq!(last.kind, PacketType::WORK_COMPLETE, "{seen:?}");
    assert_eq!(last.arg(0), &h);
    assert_eq!(last.arg(1).as_ref(), b"first");
    let report = within("shutdown", join).await.unwrap();
    assert_eq!(report.finished, 1, "{report:?}");
    assert_eq!(report.abandoned, 0, "{report:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The second job is still queued and nobody can do the function.
    let mut st = (0, 0, 1);
    for _ in 0..200 {
        st = fn_status(server.port(), "work").await;
        if st.2 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(st, (1, 0, 0), "status of `work` (total, running, workers)");
}
both_servers!(graceful_shutdown_finishes_running_job, graceful_shutdown);

/// A shutdown deadline that passes abandons the job; the server gets it back.
async fn shutdown_deadline(kind: ServerKind) {
    let server = start(kind).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let worker = Worker::builder()
        .server(server.addr())
        .function("stuck", move |_job| {
            c.fetch_add(1, Ordering::SeqCst);
            async move {
                std::future::pending::<()>().await;
                Ok::<_, JobError>(Bytes::new())
            }
        })
        .build()
        .unwrap();
    let handle = worker.handle();
    let running = worker.spawn();
    submit_bg(server.port(), "stuck", "x", 1).await;
    wait_for("job running", || handle.running() == 1).await;
    let report = within(
        "shutdown with a deadline",
        running.shutdown(Duration::from_millis(200)),
    )
    .await;
    assert_eq!(report.abandoned, 1, "{report:?}");
    // The server re-queued it: queued, not running, no worker.
    let mut st = (0, 0, 0);
    for _ in 0..500 {
        st = fn_status(server.port(), "stuck").await;
        if st == (1, 0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(st, (1, 0, 0));
}
both_servers!(shutdown_deadline_abandons_job, shutdown_deadline);

/// Overloaded: the job ends with WORK_FAIL, the grab delay grows, and it
/// shrinks back to zero as jobs succeed; with overload_retries the job is run
/// again in place and succeeds.
async fn backpressure(kind: ServerKind) {
    let server = start(kind).await;
    let overloaded = Arc::new(AtomicUsize::new(0));
    let o = overloaded.clone();
    let worker = Worker::builder()
        .server(server.addr())
        .backpressure(BackpressurePolicy {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
        })
        .function("index", move |job| {
            let o = o.clone();
            async move {
                if job.payload().starts_with(b"reject") {
                    o.fetch_add(1, Ordering::SeqCst);
                    return Err(JobError::overloaded("sink is full"));
                }
                Ok(Bytes::from_static(b"indexed"))
            }
        })
        .build()
        .unwrap();
    let handle = worker.handle();
    let running = worker.spawn();
    let mut client = Raw::connect(server.port()).await;
    for i in 0..3 {
        client
            .submit("index", format!("reject-{i}").as_bytes())
            .await;
        let seen = client.until_done().await;
        assert_eq!(seen.last().unwrap().kind, PacketType::WORK_FAIL);
    }
    let delay = handle.backpressure_delay();
    assert!(delay >= Duration::from_millis(20), "{delay:?}");
    assert_eq!(handle.stats().overloaded, 3);
    let mut successes = 0;
    while !handle.backpressure_delay().is_zero() {
        client.submit("index", b"ok").await;
        let seen = client.until_done().await;
        assert_eq!(seen.last().unwrap().kind, PacketType::WORK_COMPLETE);
        successes += 1;
        assert!(successes < 1000, "delay never recovered");
        // Recovery is one halving per delay period: pace the jobs so that
        // each success can count.
        tokio::time::sleep(handle.backpressure_delay()).await;
    }
    running.shutdown(Duration::from_secs(10)).await;

    // In-place retries: rejected twice, then accepted.
    let tries = Arc::new(AtomicUsize::new(0));
    let t = tries.clone();
    let worker = Worker::builder()
        .server(server.addr())
        .overload_retries(3)
        .backpressure(BackpressurePolicy {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
        })
        .function("index2", move |_job| {
            let t = t.clone();
            async move {
                if t.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Err(JobError::overloaded("sink is full"));
                }
                Ok(Bytes::from_static(b"indexed"))
            }
        })
        .build()
        .unwrap();
    let running = worker.spawn();
    client.submit("index2", b"doc").await;
    let seen = client.until_done().await;
    let last = seen.last().unwrap();
    assert_eq!(last.kind, PacketType::WORK_COMPLETE, "{seen:?}");
    assert_eq!(tries.load(Ordering::SeqCst), 3);
    running.shutdown(Duration::from_secs(10)).await;
}
both_servers!(backpressure_grows_and_recovers, backpressure);

/// CAN_DO_TIMEOUT: the function is registered with its timeout. gearboxd
/// re-queues the job when the first attempt overruns, and the worker's second
/// attempt completes it. gearmand loses its timer when the worker sends
/// PRE_SLEEP while holding a job (docs/compat.md C2), so there the worker's own
/// deadline ends the job with WORK_FAIL; either way the client is not left
/// waiting forever.
async fn can_do_timeout(kind: ServerKind) {
    let server = start(kind).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let worker = Worker::builder()
        .server(server.addr())
        .concurrency(2)
        .client_id("timeout-worker")
        .function_with_timeout("t", Duration::from_millis(1000), move |_job| {
            let first = c.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    std::future::pending::<()>().await;
                }
                Ok::<_, JobError>(Bytes::from_static(b"second"))
            }
        })
        .build()
        .unwrap();
    let handle = worker.handle();
    let running = worker.spawn();
    let mut client = Raw::connect(server.port()).await;
    client.submit("t", b"x").await;
    let seen = client.until_done().await;
    let last = seen.last().unwrap();
    match kind {
        ServerKind::Gearboxd => {
            assert_eq!(last.kind, PacketType::WORK_COMPLETE, "{seen:?}");
            assert_eq!(last.arg(1).as_ref(), b"second");
            assert_eq!(calls.load(Ordering::SeqCst), 2);
        }
        ServerKind::Gearmand => assert!(
            matches!(last.kind, PacketType::WORK_COMPLETE | PacketType::WORK_FAIL),
            "{seen:?}"
        ),
    }
    // The first attempt is given up (and counted) one grace second after its
    // timeout.
    wait_for("the first attempt to time out", || {
        handle.stats().timed_out == 1
    })
    .await;
    running.shutdown(Duration::from_secs(10)).await;
}
both_servers!(can_do_timeout_requeues_or_fails, can_do_timeout);
