//! Dead, hung and restarting servers: work from the healthy ones goes on, the
//! bad ones cool down with growing backoff, and a restarted one is used again.

mod common;

use bytes::Bytes;
use common::*;
use gearbox_worker::{BackoffPolicy, Health, JobError, ServerAddr, Worker, WorkerHandle};
use protocol_tests::ServerKind;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn fast_backoff() -> BackoffPolicy {
    BackoffPolicy {
        min: Duration::from_millis(20),
        max: Duration::from_millis(400),
        jitter: 0.25,
    }
}

fn failures_of(handle: &WorkerHandle, addr: &ServerAddr) -> Option<(u32, String)> {
    handle
        .health()
        .into_iter()
        .find(|(a, _)| a == addr)
        .and_then(|(_, h)| match h {
            Health::CoolingDown {
                failures, error, ..
            } => Some((failures, error)),
            _ => None,
        })
}

/// A worker for function `echo` counting its jobs.
fn counting_worker(servers: &[String], done: Arc<AtomicUsize>) -> Worker {
    Worker::builder()
        .servers(servers)
        .concurrency(1)
        .connect_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(1))
        .backoff(fast_backoff())
        .client_id("test-worker")
        .function("echo", move |job| {
            let done = done.clone();
            async move {
                done.fetch_add(1, Ordering::SeqCst);
                Ok::<_, JobError>(job.payload().clone())
            }
        })
        .build()
        .unwrap()
}

/// Runs 100 jobs on `healthy` with `bad` (listed first) in the list, and checks
/// that `bad` cools down with growing failures whose error contains `error`.
async fn healthy_beside(kind: ServerKind, bad: String, error: &str) {
    let healthy = start(kind).await;
    let done = Arc::new(AtomicUsize::new(0));
    let worker = counting_worker(&[bad.clone(), healthy.addr()], done.clone());
    let handle = worker.handle();
    let running = worker.spawn();
    submit_bg(healthy.port(), "echo", "j", 100).await;
    wait_for("100 jobs from the healthy server", || {
        done.load(Ordering::SeqCst) == 100
    })
    .await;
    let bad_addr: ServerAddr = bad.parse().unwrap();
    let mut first = None;
    wait_for("the bad server cools down", || {
        first = failures_of(&handle, &bad_addr);
        first.is_some()
    })
    .await;
    let (f1, err) = first.unwrap();
    assert!(
        err.contains(error),
        "error {err:?} should mention {error:?}"
    );
    let mut later = None;
    wait_for("failures grow", || {
        later = failures_of(&handle, &bad_addr).filter(|(f, _)| *f >= f1 + 2);
        later.is_some()
    })
    .await;
    // The healthy server is up and served every job.
    let healthy_addr: ServerAddr = healthy.addr().parse().unwrap();
    wait_for("the healthy server up", || {
        handle
            .health()
            .contains(&(healthy_addr.clone(), Health::Up))
    })
    .await;
    let stats = handle.stats();
    assert_eq!(
        stats.jobs_by_server,
        vec![(bad_addr, 0), (healthy_addr, 100)],
        "{stats:?}"
    );
    running.shutdown(Duration::from_secs(10)).await;
}

async fn dead_server(kind: ServerKind) {
    // A port nothing listens on: bound and released.
    let port = protocol_tests::free_port();
    healthy_beside(kind, format!("127.0.0.1:{port}"), "connect").await;
}
both_servers!(dead_server_is_skipped_and_cools_down, dead_server);

/// Accepts connections and never says anything.
async fn silent_server(kind: ServerKind) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let h = held.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            match s {
                Ok(s) => h.lock().unwrap().push(s),
                Err(_) => return,
            }
        }
    });
    healthy_beside(kind, addr, "ECHO_REQ").await;
}
both_servers!(silent_server_is_skipped_and_cools_down, silent_server);

/// Never accepts: a listener with a backlog of 0, its queue filled first, so
/// new handshakes are not completed and connects time out.
async fn full_backlog_server(kind: ServerKind) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue until a connect no longer completes.
    let mut fillers = Vec::new();
    for _ in 0..64 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    // A connect may either time out or (if the kernel completed it into the
    // queue) never be answered; both are "hung", the error tells which.
    healthy_beside(kind, addr.to_string(), "").await;
    drop(socket);
}
both_servers!(never_accepting_server_is_skipped, full_backlog_server);

/// Kill a server: its failures grow. Start it again on the same port: the
/// worker reconnects, registers its function and client id again, and runs
/// new jobs from it.
async fn restart(kind: ServerKind) {
    let mut server = OwnServer::start(kind, protocol_tests::free_port());
    let addr = format!("127.0.0.1:{}", server.port);
    let done = Arc::new(AtomicUsize::new(0));
    let worker = counting_worker(std::slice::from_ref(&addr), done.clone());
    let handle = worker.handle();
    let running = worker.spawn();
    submit_bg(server.port, "echo", "before", 5).await;
    wait_for("5 jobs", || done.load(Ordering::SeqCst) == 5).await;

    server.stop();
    let server_addr: ServerAddr = addr.parse().unwrap();
    let mut seen = Vec::new();
    wait_for("three failures", || {
        if let Some((f, _)) = failures_of(&handle, &server_addr) {
            if seen.last() != Some(&f) {
                seen.push(f);
            }
        }
        seen.last().is_some_and(|f| *f >= 3)
    })
    .await;
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");

    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    let port = server.port;
    wait_for("reconnected", || {
        handle.health().iter().all(|(_, h)| *h == Health::Up)
    })
    .await;
    // Registered again: the new server process lists the function and id.
    let mut registered = false;
    for _ in 0..200 {
        let workers = admin(port, "workers").await;
        if workers
            .iter()
            .any(|l| l.contains("test-worker") && l.ends_with(": echo"))
        {
            registered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(registered, "{:?}", admin(port, "workers").await);
    submit_bg(port, "echo", "after", 5).await;
    wait_for("5 more jobs", || done.load(Ordering::SeqCst) == 10).await;
    running.shutdown(Duration::from_secs(10)).await;
    drop(server);
}
both_servers!(restarted_server_is_used_again, restart);

/// A unix socket server (gearboxd only: gearmand has no unix listener).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unix_socket_server_gearboxd() {
    init_tracing();
    let dir = protocol_tests::unique_temp_dir("worker-unix");
    let sock = dir.join("g.sock");
    let sock_arg = sock.to_string_lossy().into_owned();
    let server = tokio::task::spawn_blocking(move || {
        protocol_tests::TestServer::start_with_args(ServerKind::Gearboxd, &["--unix", &sock_arg])
    })
    .await
    .unwrap();
    wait_for("unix socket", || sock.exists()).await;
    let worker = Worker::builder()
        .server(format!("unix:{}", sock.display()))
        .function("rev", |job| async move {
            let mut v = job.payload().to_vec();
            v.reverse();
            Ok::<_, JobError>(v)
        })
        .build()
        .unwrap();
    let running = worker.spawn();
    let mut client = Raw::connect(server.port()).await;
    client.submit("rev", b"abc").await;
    let seen = client.until_done().await;
    assert_eq!(seen.last().unwrap().arg(1), &Bytes::from_static(b"cba"));
    running.shutdown(Duration::from_secs(10)).await;
}

/// A server that answers the probe but never a GRAB: after response_timeout
/// its connection is dropped and the slot goes to the healthy server, which
/// serves every job.
async fn grab_hung(kind: ServerKind) {
    let fake = FakeServer::start(GrabReply::Never).await;
    healthy_beside(kind, fake.addr(), "GRAB").await;
}
both_servers!(server_hung_on_grab_is_dropped, grab_hung);

/// NO_JOB is followed by PRE_SLEEP and then silence: no GRAB until NOOP.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sleeps_until_noop() {
    init_tracing();
    use gearbox_proto::{Packet, PacketType};
    let fake = FakeServer::start(GrabReply::NoJob).await;
    let worker = Worker::builder()
        .server(fake.addr())
        .concurrency(3)
        .function("f", |_job| async { Ok::<_, JobError>(Bytes::new()) })
        .build()
        .unwrap();
    let running = worker.spawn();
    wait_for("PRE_SLEEP", || fake.count(PacketType::PRE_SLEEP) == 1).await;
    let grabs = fake.count(PacketType::GRAB_JOB_UNIQ);
    assert!((1..=3).contains(&grabs), "{grabs} GRABs before sleeping");
    // A busy-polling worker would send more GRABs in this time; this sleep
    // can only make the test stricter.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.count(PacketType::GRAB_JOB_UNIQ), grabs);
    assert_eq!(fake.count(PacketType::PRE_SLEEP), 1);
    fake.push(Packet::res(PacketType::NOOP, &[]));
    wait_for("GRAB after NOOP", || {
        fake.count(PacketType::GRAB_JOB_UNIQ) > grabs && fake.count(PacketType::PRE_SLEEP) == 2
    })
    .await;
    running.shutdown(Duration::from_secs(10)).await;
    wait_for("RESET_ABILITIES", || {
        fake.count(PacketType::RESET_ABILITIES) == 1
    })
    .await;
    let got: Vec<PacketType> = fake
        .received
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|k| *k != PacketType::UNUSED)
        .collect();
    assert_eq!(got.first(), Some(&PacketType::CAN_DO), "{got:?}");
    assert_eq!(got.last(), Some(&PacketType::RESET_ABILITIES), "{got:?}");
}

/// A server that never answers the probe is never sent a GRAB, so it can never
/// hold a job slot; it is probed again on every reconnect.
async fn silent_never_grabbed(kind: ServerKind) {
    use gearbox_proto::PacketType;
    let fake = FakeServer::start(GrabReply::Silent).await;
    healthy_beside(kind, fake.addr(), "ECHO_REQ").await;
    let connections = fake.count(PacketType::UNUSED);
    assert!(connections >= 3, "{connections} connections");
    assert!(fake.count(PacketType::ECHO_REQ) >= 3);
    assert_eq!(fake.count(PacketType::GRAB_JOB_UNIQ), 0);
}
both_servers!(unanswered_probe_means_no_grab, silent_never_grabbed);
