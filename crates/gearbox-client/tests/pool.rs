//! Several servers: consistent hashing of uniques, failover past a dead
//! server, a hung server, cooldown recorded in Health.

mod common;

use common::*;
use gearbox_client::{Admin, BackoffPolicy, Client, Error, Health, JobRequest};
use protocol_tests::{ServerKind, TestServer};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

against_both!(
    same_unique_same_server_and_uniques_spread,
    failover_past_a_dead_server_with_cooldown,
    hung_server_times_out_then_next_submit_is_served,
    server_dying_mid_job_is_reported,
);

/// A cooldown long enough never to expire during a test.
fn long_cooldown() -> BackoffPolicy {
    BackoffPolicy {
        min: Duration::from_secs(600),
        max: Duration::from_secs(600),
        jitter: 0.0,
    }
}

async fn same_unique_same_server_and_uniques_spread(kind: ServerKind) {
    let servers: Vec<TestServer> = (0..3).map(|_| TestServer::start(kind)).collect();
    let addrs: Vec<String> = servers.iter().map(|s| s.addr()).collect();
    let client = Client::builder()
        .servers(&addrs)
        .response_timeout(WAIT)
        .build()
        .unwrap();
    // Another client (another process, say) listing the servers in another
    // order must route every unique the same way.
    let reversed_list: Vec<String> = addrs.iter().rev().cloned().collect();
    let other = Client::builder()
        .servers(&reversed_list)
        .response_timeout(WAIT)
        .build()
        .unwrap();

    let mut placed: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0..90 {
        let unique = format!("spread-{i}");
        let first = client
            .submit_background(JobRequest::new("hash", "x").unique(&unique))
            .await
            .unwrap();
        assert_eq!(first.server, client.route(&unique)[0], "{unique}");
        assert_eq!(client.route(&unique), other.route(&unique), "{unique}");
        for again in [&client, &other] {
            let h = again
                .submit_background(JobRequest::new("hash", "y").unique(&unique))
                .await
                .unwrap();
            assert_eq!(
                h, first,
                "{unique}: same server and, coalesced, same handle"
            );
        }
        placed
            .entry(first.server.to_string())
            .or_default()
            .push(unique);
    }
    assert_eq!(
        placed.len(),
        3,
        "uniques reached all three servers: {placed:?}"
    );
    // Each server holds exactly the uniques routed to it.
    for addr in &addrs {
        let mut admin = Admin::connect(&addr.parse().unwrap(), WAIT).await.unwrap();
        let held: HashSet<String> = admin
            .unique_jobs()
            .await
            .unwrap()
            .iter()
            .map(|u| String::from_utf8_lossy(u).into_owned())
            .collect();
        let expected: HashSet<String> = placed[addr].iter().cloned().collect();
        assert_eq!(held, expected, "{addr}");
    }
    // Jobs without a unique go round-robin over all three.
    let mut seen = HashSet::new();
    for _ in 0..3 {
        let h = client
            .submit_background(JobRequest::new("rr", "z"))
            .await
            .unwrap();
        seen.insert(h.server);
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (_, health) in client.health() {
        assert_eq!(health, Health::Up);
    }
}

async fn failover_past_a_dead_server_with_cooldown(kind: ServerKind) {
    let server = TestServer::start(kind);
    let (_reserved, port) = dead_port();
    let dead = addr(port);
    let live = addr(server.port());
    let client = Client::builder()
        .server(server.addr())
        .server_addr(dead.clone())
        .response_timeout(WAIT)
        .job_timeout(Some(WAIT))
        .backoff(long_cooldown())
        .build()
        .unwrap();
    let _worker = RawWorker::echoing(server.port(), &["rev"], reversed).await;
    assert_eq!(client.health()[1], (dead.clone(), Health::Connecting));

    let u1 = unique_routed_to(&client, &dead, "fo");
    let out = client
        .call(JobRequest::new("rev", "abc").unique(&u1))
        .await
        .unwrap();
    assert_eq!(out.result.as_ref(), b"cba");
    assert_eq!(
        out.handle.server, live,
        "went to the next server in hash order"
    );
    match &client.health()[1].1 {
        Health::CoolingDown {
            failures, error, ..
        } => {
            assert_eq!(*failures, 1);
            assert!(error.contains("connect"), "{error}");
        }
        other => panic!("dead server should cool down, is {other:?}"),
    }
    assert_eq!(client.health()[0].1, Health::Up);

    // While it cools down the dead server is skipped without another try.
    let u2 = unique_routed_to(&client, &dead, "fo2");
    let h = client
        .submit_background(JobRequest::new("rev", "def").unique(&u2))
        .await
        .unwrap();
    assert_eq!(h.server, live);
    let st = client.status_unique(&u2).await.unwrap();
    assert_eq!(st.server, live, "status_unique follows the failover order");
    match &client.health()[1].1 {
        Health::CoolingDown { failures, .. } => assert_eq!(*failures, 1),
        other => panic!("{other:?}"),
    }

    // A client whose only server is dead fails at once, then refuses
    // without I/O while the server cools down.
    let lonely = Client::builder()
        .server_addr(dead.clone())
        .backoff(long_cooldown())
        .build()
        .unwrap();
    for expect in ["connect", "cooling down"] {
        match lonely.call(JobRequest::new("rev", "x")).await {
            Err(Error::NoServerAvailable { reasons }) => {
                assert_eq!(reasons.len(), 1);
                assert!(reasons[0].1.contains(expect), "{reasons:?}");
            }
            other => panic!("expected NoServerAvailable, got {other:?}"),
        }
    }
}

async fn hung_server_times_out_then_next_submit_is_served(kind: ServerKind) {
    let server = TestServer::start(kind);
    let hung = HungServer::start().await;
    let hung_addr = addr(hung.port);
    let live = addr(server.port());
    // Short enough to keep the test quick, long enough that a loaded machine
    // never makes the healthy server miss it.
    let response_timeout = Duration::from_secs(2);
    let client = Client::builder()
        .server_addr(hung_addr.clone())
        .server(server.addr())
        .response_timeout(response_timeout)
        .job_timeout(Some(WAIT))
        .backoff(long_cooldown())
        .build()
        .unwrap();
    let _worker = RawWorker::echoing(server.port(), &["rev"], reversed).await;
    let unique = unique_routed_to(&client, &hung_addr, "hung");

    let started = Instant::now();
    let err = client
        .call(JobRequest::new("rev", "abc").unique(&unique))
        .await
        .unwrap_err();
    match &err {
        Error::Timeout { server, what, .. } => {
            assert_eq!(server.as_ref(), Some(&hung_addr));
            assert_eq!(*what, "JOB_CREATED");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    // An upper bound only: the wait ended, well before the job deadline.
    assert!(started.elapsed() < WAIT, "{:?}", started.elapsed());
    match &client.health()[0].1 {
        Health::CoolingDown {
            failures, error, ..
        } => {
            assert_eq!(*failures, 1);
            assert!(error.contains("timed out"), "{error}");
        }
        other => panic!("hung server should cool down, is {other:?}"),
    }

    // The same unique now goes to the healthy server.
    let out = client
        .call(JobRequest::new("rev", "abc").unique(&unique))
        .await
        .unwrap();
    assert_eq!(out.result.as_ref(), b"cba");
    assert_eq!(out.handle.server, live);
    assert_eq!(client.health()[1].1, Health::Up);
}

async fn server_dying_mid_job_is_reported(kind: ServerKind) {
    let server = TestServer::start(kind);
    let client = Client::builder()
        .server(server.addr())
        .response_timeout(WAIT)
        .job_timeout(Some(WAIT))
        .backoff(long_cooldown())
        .build()
        .unwrap();
    // Nobody does `nobody`: the job waits until the server goes away.
    let job = client.submit(JobRequest::new("nobody", "x")).await.unwrap();
    drop(server);
    match job.result().await {
        Err(Error::ConnectionLost { .. }) => {}
        other => panic!("expected ConnectionLost, got {other:?}"),
    }
    // The next request finds nothing listening and reports it.
    match client.call(JobRequest::new("nobody", "y")).await {
        Err(Error::NoServerAvailable { reasons }) => {
            assert!(reasons[0].1.contains("connect"), "{reasons:?}")
        }
        other => panic!("expected NoServerAvailable, got {other:?}"),
    }
    assert!(matches!(
        client.health()[0].1,
        Health::CoolingDown { failures: 1, .. }
    ));
}
