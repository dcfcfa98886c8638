//! gearbox-worker connected only to an aggregator (gearboxd `--peer`) works
//! unchanged: a serial worker drains three gearmand front ends in fair
//! shares, and a foreground client on a front end gets the worker's data,
//! status and result through it.

mod common;

use bytes::Bytes;
use common::*;
use gearbox_proto::PacketType;
use gearbox_worker::{JobError, Worker};
use protocol_tests::{ServerKind, TestServer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

async fn aggregator_of(front_ends: &[TestServer]) -> TestServer {
    let mut args = Vec::new();
    for fe in front_ends {
        args.extend(["--peer".to_string(), fe.addr()]);
    }
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        TestServer::start_with_args(ServerKind::Gearboxd, &refs)
    })
    .await
    .expect("start aggregator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_worker_behind_an_aggregator_drains_front_ends_fairly() {
    init_tracing();
    let mut front_ends = Vec::new();
    for _ in 0..3 {
        front_ends.push(start(ServerKind::Gearmand).await);
    }
    let backlogs = [240, 120, 90];
    for (i, fe) in front_ends.iter().enumerate() {
        submit_bg(fe.port(), "pool", &format!("fe{i}"), backlogs[i]).await;
    }
    let aggregator = aggregator_of(&front_ends).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = order.clone();
    let worker = Worker::builder()
        .server(aggregator.addr())
        .concurrency(1)
        .function("pool", move |job| {
            let seen = seen.clone();
            async move {
                let source = job.payload().split(|&b| b == b'-').next().unwrap_or(b"");
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(source).into_owned());
                Ok::<_, JobError>(Bytes::new())
            }
        })
        .build()
        .unwrap();
    let handle = worker.handle();
    let running = worker.spawn();
    let total: usize = backlogs.iter().sum();
    wait_for("every front-end job runs", || {
        order.lock().unwrap().len() >= total
    })
    .await;
    running.shutdown(std::time::Duration::from_secs(5)).await;

    let order = order.lock().unwrap().clone();
    assert_eq!(order.len(), total, "each job runs once");
    // The smallest backlog is 90: over the first 270 jobs each front end
    // still has work, so each gets a third, give or take a turn of 4.
    let mut shares: HashMap<&str, usize> = HashMap::new();
    for source in &order[..270] {
        *shares.entry(source.as_str()).or_default() += 1;
    }
    for fe in ["fe0", "fe1", "fe2"] {
        let got = shares.get(fe).copied().unwrap_or(0);
        assert!(
            (82..=98).contains(&got),
            "{fe} got {got} of the first 270 jobs: {shares:?}"
        );
    }
    for fe in &front_ends {
        let (total, running, _) = fn_status(fe.port(), "pool").await;
        assert_eq!((total, running), (0, 0), "front end {} drained", fe.addr());
    }
    let stats = handle.stats();
    assert_eq!(
        stats.jobs_by_server.len(),
        1,
        "the worker only knows the aggregator: {:?}",
        stats.jobs_by_server
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_client_on_a_front_end_gets_data_status_and_result() {
    init_tracing();
    let front_end = start(ServerKind::Gearmand).await;
    let aggregator = aggregator_of(std::slice::from_ref(&front_end)).await;
    let worker = Worker::builder()
        .server(aggregator.addr())
        .function("shout", |job| async move {
            job.status(1, 2).expect("status");
            job.data(b"partial").expect("data");
            job.warning(b"careful").expect("warning");
            Ok::<_, JobError>(job.payload().to_ascii_uppercase())
        })
        .build()
        .unwrap();
    let running = worker.spawn();
    // Wait until the aggregator's link is registered on the front end.
    wait_for("the aggregator registers `shout` upstream", || {
        front_end_lists_shout(&front_end)
    })
    .await;
    let mut client = Raw::connect(front_end.port()).await;
    let job = client.submit("shout", b"hello").await;
    let packets = client.until_done().await;
    let seen: Vec<(PacketType, Vec<Bytes>)> = packets
        .iter()
        .map(|p| (p.kind, p.args()[1..].to_vec()))
        .collect();
    assert!(packets.iter().all(|p| p.arg(0) == &job), "{packets:?}");
    assert_eq!(
        seen,
        vec![
            (
                PacketType::WORK_STATUS,
                vec![Bytes::from("1"), Bytes::from("2")]
            ),
            (PacketType::WORK_DATA, vec![Bytes::from("partial")]),
            (PacketType::WORK_WARNING, vec![Bytes::from("careful")]),
            (PacketType::WORK_COMPLETE, vec![Bytes::from("HELLO")]),
        ]
    );
    running.shutdown(std::time::Duration::from_secs(5)).await;
}

/// Whether the front end lists a worker for `shout` (blocking admin query).
fn front_end_lists_shout(front_end: &TestServer) -> bool {
    let out = protocol_tests::run(
        "gearadmin",
        &["-h", "127.0.0.1", "-p", &front_end.port_str(), "--status"],
        None,
        protocol_tests::RUN_TIMEOUT,
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("shout\t") && !l.ends_with("\t0"))
}
