//! Jobs against real servers (gearmand and gearboxd): results and events,
//! failures, background status, many jobs in flight, coalescing, priorities,
//! epoch jobs and unix sockets.

mod common;

use bytes::Bytes;
use common::*;
use gearbox_client::{Admin, Client, Error, JobEvent, JobHandle, JobRequest, Priority, ServerAddr};
use protocol_tests::{ServerKind, TestServer};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

against_both!(
    foreground_events_arrive_in_order,
    fail_and_exception_end_the_job,
    background_status_known_running_unknown,
    status_unique_reports_clients,
    hundred_jobs_in_flight_on_one_connection,
    coalesced_submits_on_one_client_both_complete,
    priorities_are_honoured,
    epoch_job_runs_after_its_time,
    job_deadline_ends_the_wait_and_the_connection_stays_usable,
);

fn client_for(server: &TestServer) -> Client {
    Client::builder()
        .server(server.addr())
        .client_id("gearbox-test-client")
        .response_timeout(WAIT)
        .job_timeout(Some(WAIT))
        .build()
        .unwrap()
}

async fn foreground_events_arrive_in_order(kind: ServerKind) {
    let server = TestServer::start(kind);
    let handler: Handler = Arc::new(|job, out| {
        Box::pin(async move {
            let h = &job.handle;
            out.send(data(h, b"d1")).unwrap();
            out.send(warning(h, b"w1")).unwrap();
            out.send(status(h, 1, 2)).unwrap();
            out.send(data(h, b"d2\0with nul")).unwrap();
            out.send(status(h, 2, 2)).unwrap();
            out.send(complete(h, &reversed(&job.payload))).unwrap();
        })
    });
    let _worker = RawWorker::start(server.port(), &["steps"], Idle::Sleep, handler).await;
    let client = client_for(&server);

    let mut job = client
        .submit(JobRequest::new("steps", "payload"))
        .await
        .unwrap();
    assert_eq!(job.server(), &addr(server.port()));
    let mut events = Vec::new();
    while let Some(e) = job.next_event().await.unwrap() {
        events.push(e);
    }
    assert_eq!(
        events,
        vec![
            JobEvent::Data(Bytes::from_static(b"d1")),
            JobEvent::Warning(Bytes::from_static(b"w1")),
            JobEvent::Status {
                numerator: 1,
                denominator: 2
            },
            JobEvent::Data(Bytes::from_static(b"d2\0with nul")),
            JobEvent::Status {
                numerator: 2,
                denominator: 2
            },
            JobEvent::Complete(Bytes::from_static(b"daolyap")),
        ]
    );
    assert_eq!(job.next_event().await.unwrap(), None);

    // The same through call(): result plus the events before it.
    let out = client
        .call(JobRequest::new("steps", "abc").priority(Priority::High))
        .await
        .unwrap();
    assert_eq!(out.result.as_ref(), b"cba");
    assert_eq!(out.events.len(), 5);
    let chunks: Vec<&[u8]> = out.data_chunks().map(|b| b.as_ref()).collect();
    assert_eq!(chunks, vec![&b"d1"[..], &b"d2\0with nul"[..]]);
}

async fn fail_and_exception_end_the_job(kind: ServerKind) {
    let server = TestServer::start(kind);
    let handler: Handler = Arc::new(|job, out| {
        Box::pin(async move {
            let h = &job.handle;
            match job.function.as_ref() {
                b"fails" => {
                    out.send(data(h, b"partial")).unwrap();
                    out.send(fail(h)).unwrap();
                }
                _ => out.send(exception(h, b"boom")).unwrap(),
            }
        })
    });
    let _worker = RawWorker::start(server.port(), &["fails", "throws"], Idle::Sleep, handler).await;
    let client = client_for(&server);

    match client.call(JobRequest::new("fails", "x")).await {
        Err(Error::JobFailed { handle }) => assert!(!handle.is_empty()),
        other => panic!("expected JobFailed, got {other:?}"),
    }
    // Exceptions arrive as such because the client sends OPTION_REQ
    // exceptions on connect (otherwise gearmand would send WORK_FAIL).
    match client.call(JobRequest::new("throws", "x")).await {
        Err(Error::JobException { data, .. }) => assert_eq!(data.as_ref(), b"boom"),
        other => panic!("expected JobException, got {other:?}"),
    }
    let mut job = client.submit(JobRequest::new("fails", "y")).await.unwrap();
    assert_eq!(
        job.next_event().await.unwrap(),
        Some(JobEvent::Data(Bytes::from_static(b"partial")))
    );
    assert_eq!(job.next_event().await.unwrap(), Some(JobEvent::Fail));
    assert_eq!(job.next_event().await.unwrap(), None);
}

async fn background_status_known_running_unknown(kind: ServerKind) {
    let server = TestServer::start(kind);
    let client = client_for(&server);
    let handle = client
        .submit_background(JobRequest::new("hold", "bg").unique("bg-1"))
        .await
        .unwrap();
    assert_eq!(handle.server, addr(server.port()));

    let st = client.status(&handle).await.unwrap();
    assert!(st.known && !st.running, "{st:?}");

    let release = Arc::new(Notify::new());
    let r = release.clone();
    let handler: Handler = Arc::new(move |job, out| {
        let r = r.clone();
        Box::pin(async move {
            out.send(status(&job.handle, 3, 7)).unwrap();
            r.notified().await;
            out.send(complete(&job.handle, b"done")).unwrap();
        })
    });
    let _worker = RawWorker::start(server.port(), &["hold"], Idle::Sleep, handler).await;

    let st = eventually("status 3/7 while running", || async {
        let st = client.status(&handle).await.unwrap();
        (st.numerator == 3).then_some(st)
    })
    .await;
    assert!(st.known && st.running && st.denominator == 7, "{st:?}");

    release.notify_one();
    eventually("the job to finish", || async {
        let st = client.status(&handle).await.unwrap();
        (!st.known).then_some(())
    })
    .await;

    let unknown = JobHandle::new(addr(server.port()), "H:nowhere:424242");
    let st = client.status(&unknown).await.unwrap();
    assert!(!st.known && !st.running && st.numerator == 0, "{st:?}");

    let elsewhere: ServerAddr = "127.0.0.1:1".parse().unwrap();
    assert!(matches!(
        client.status(&JobHandle::new(elsewhere, "H:x:1")).await,
        Err(Error::UnknownServer(_))
    ));
}

async fn status_unique_reports_clients(kind: ServerKind) {
    let server = TestServer::start(kind);
    let client = client_for(&server);
    client
        .submit_background(JobRequest::new("su", "first").unique("su-1"))
        .await
        .unwrap();
    let st = client.status_unique("su-1").await.unwrap();
    assert!(st.known && !st.running && st.clients == 0, "{st:?}");
    assert_eq!(st.unique.as_ref(), b"su-1");
    assert_eq!(st.server, addr(server.port()));

    // A foreground submit with the same unique joins the background job.
    let job = client
        .submit(JobRequest::new("su", "second").unique("su-1"))
        .await
        .unwrap();
    let st = client.status_unique("su-1").await.unwrap();
    assert!(st.known && st.clients == 1, "{st:?}");

    let _worker = RawWorker::echoing(server.port(), &["su"], reversed).await;
    let out = job.result().await.unwrap();
    // The job keeps the first submission's payload.
    assert_eq!(out.result.as_ref(), b"tsrif");
    eventually("the unique to be forgotten", || async {
        let st = client.status_unique("su-1").await.unwrap();
        (!st.known).then_some(())
    })
    .await;
    let st = client.status_unique("never-seen").await.unwrap();
    assert!(!st.known && st.clients == 0, "{st:?}");
}

async fn hundred_jobs_in_flight_on_one_connection(kind: ServerKind) {
    let server = TestServer::start(kind);
    let handler: Handler = Arc::new(|job, out| {
        Box::pin(async move {
            out.send(data(&job.handle, &job.payload)).unwrap();
            out.send(complete(&job.handle, &reversed(&job.payload)))
                .unwrap();
        })
    });
    // Two workers, so that results come back interleaved.
    let _w1 = RawWorker::start(server.port(), &["rev"], Idle::Sleep, handler.clone()).await;
    let _w2 = RawWorker::start(server.port(), &["rev"], Idle::Sleep, handler).await;
    let client = client_for(&server);

    let calls = (0..100).map(|i| {
        let client = client.clone();
        let priority = [Priority::High, Priority::Normal, Priority::Low][i % 3];
        async move {
            let payload = format!("job-{i:03}-payload");
            let out = client
                .call(JobRequest::new("rev", payload.clone()).priority(priority))
                .await
                .unwrap();
            (payload, out)
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let mut handles = std::collections::HashSet::new();
    for (payload, out) in results {
        assert_eq!(out.result.as_ref(), reversed(payload.as_bytes()).as_slice());
        assert_eq!(
            out.events,
            vec![JobEvent::Data(Bytes::from(payload.clone()))],
            "events of {payload}"
        );
        assert!(handles.insert(out.handle.handle.clone()), "handle reused");
    }

    // All of it went over one client connection.
    let mut admin = Admin::connect(&addr(server.port()), WAIT).await.unwrap();
    let workers = admin.listing("workers").await.unwrap();
    let ours = workers
        .iter()
        .filter(|l| String::from_utf8_lossy(l).contains("gearbox-test-client"))
        .count();
    assert_eq!(ours, 1, "{workers:?}");
}

async fn coalesced_submits_on_one_client_both_complete(kind: ServerKind) {
    let server = TestServer::start(kind);
    let client = client_for(&server);
    let first = client
        .submit(JobRequest::new("co", "p1").unique("co-1"))
        .await
        .unwrap();
    let second = client
        .submit(JobRequest::new("co", "p2").unique("co-1"))
        .await
        .unwrap();
    assert_eq!(first.handle(), second.handle(), "the server coalesced them");
    let other = client
        .submit(JobRequest::new("co", "p3").unique("co-2"))
        .await
        .unwrap();
    assert_ne!(first.handle(), other.handle());

    let handler: Handler = Arc::new(|job, out| {
        Box::pin(async move {
            out.send(data(&job.handle, b"chunk")).unwrap();
            out.send(status(&job.handle, 1, 1)).unwrap();
            out.send(complete(&job.handle, &reversed(&job.payload)))
                .unwrap();
        })
    });
    let worker = RawWorker::start(server.port(), &["co"], Idle::Sleep, handler).await;
    let (a, b, c) = tokio::join!(first.result(), second.result(), other.result());
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    let expected_events = vec![
        JobEvent::Data(Bytes::from_static(b"chunk")),
        JobEvent::Status {
            numerator: 1,
            denominator: 1,
        },
    ];
    for out in [&a, &b] {
        assert_eq!(out.result.as_ref(), b"1p", "the first submission's payload");
        assert_eq!(
            out.events, expected_events,
            "each submit sees each event once"
        );
    }
    assert_eq!(c.result.as_ref(), b"3p");
    assert_eq!(worker.jobs().len(), 2, "two jobs ran for three submits");
}

async fn priorities_are_honoured(kind: ServerKind) {
    let server = TestServer::start(kind);
    let client = client_for(&server);
    let plan = [
        ("L1", Priority::Low),
        ("N1", Priority::Normal),
        ("H1", Priority::High),
        ("L2", Priority::Low),
        ("N2", Priority::Normal),
        ("H2", Priority::High),
    ];
    for (payload, priority) in plan {
        client
            .submit_background(JobRequest::new("prio", payload).priority(priority))
            .await
            .unwrap();
    }
    // And foreground jobs of each priority are accepted too.
    let fg = client
        .submit(JobRequest::new("prio", "L3").priority(Priority::Low))
        .await
        .unwrap();
    let worker = RawWorker::echoing(server.port(), &["prio"], reversed).await;
    assert_eq!(fg.result().await.unwrap().result.as_ref(), b"3L");
    let order: Vec<String> = worker
        .jobs()
        .iter()
        .map(|j| String::from_utf8_lossy(&j.payload).into_owned())
        .collect();
    assert_eq!(order, ["H1", "H2", "N1", "N2", "L1", "L2", "L3"]);
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn epoch_job_runs_after_its_time(kind: ServerKind) {
    let server = TestServer::start(kind);
    let client = client_for(&server);
    let when = unix_now() + 2;
    let handle = client
        .submit_epoch(
            JobRequest::new("later", "tick").unique("epoch-1"),
            UNIX_EPOCH + Duration::from_secs(when),
        )
        .await
        .unwrap();
    let st = client.status(&handle).await.unwrap();
    assert!(st.known && !st.running, "{st:?}");

    let started_at = Arc::new(std::sync::Mutex::new(None));
    let s = started_at.clone();
    let handler: Handler = Arc::new(move |job, out| {
        *s.lock().unwrap() = Some(unix_now());
        Box::pin(async move { out.send(complete(&job.handle, b"")).unwrap() })
    });
    // Polling: gearmand sends no NOOP when an epoch job falls due.
    let worker = RawWorker::start(
        server.port(),
        &["later"],
        Idle::Poll(Duration::from_millis(100)),
        handler,
    )
    .await;
    // The handler records the time; the worker's log is written just before
    // the handler runs, so wait for the time itself.
    let ran = eventually("the epoch job to run", || async {
        *started_at.lock().unwrap()
    })
    .await;
    assert!(ran >= when, "ran at {ran}, due at {when}");
    assert_eq!(worker.jobs()[0].unique.as_ref(), b"epoch-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_submit_to_gearboxd() {
    let dir = protocol_tests::unique_temp_dir("client-unix");
    let path = dir.join("gearbox.sock");
    let server =
        TestServer::start_with_args(ServerKind::Gearboxd, &["--unix", path.to_str().unwrap()]);
    let _worker = RawWorker::echoing(server.port(), &["rev"], reversed).await;
    let client = Client::builder()
        .server(format!("unix:{}", path.display()))
        .response_timeout(WAIT)
        .job_timeout(Some(WAIT))
        .build()
        .unwrap();
    let out = client
        .call(JobRequest::new("rev", "over unix"))
        .await
        .unwrap();
    assert_eq!(out.result.as_ref(), b"xinu revo");
    assert_eq!(
        out.handle.server.to_string(),
        format!("unix:{}", path.display())
    );
    let bg = client
        .submit_background(JobRequest::new("rev", "bg over unix"))
        .await
        .unwrap();
    let _ = client.status(&bg).await.unwrap();
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

async fn job_deadline_ends_the_wait_and_the_connection_stays_usable(kind: ServerKind) {
    let server = TestServer::start(kind);
    let client = client_for(&server);
    // Nobody does `nobody`.
    let err = client
        .call(JobRequest::new("nobody", "x").timeout(Duration::from_millis(300)))
        .await
        .unwrap_err();
    match &err {
        Error::Timeout { what, .. } => assert_eq!(*what, "the job to finish"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(err.is_timeout());
    // The server answered JOB_CREATED in time, so it is healthy and the same
    // connection serves the next job.
    let _worker = RawWorker::echoing(server.port(), &["rev"], reversed).await;
    let out = client.call(JobRequest::new("rev", "ok")).await.unwrap();
    assert_eq!(out.result.as_ref(), b"ko");
    assert_eq!(client.health()[0].1, gearbox_client::Health::Up);
}
