//! A store that fails, hangs or fills up: QUEUE_ERROR for new submits, accepted
//! jobs kept, recovery by itself, and the outage logged once.

use super::*;

const OUTAGE_FN: &str = "durable_outage";

/// The store goes away under a running gearboxd: new background submits get
/// ERROR QUEUE_ERROR, jobs accepted before stay queued and admin still answers;
/// once the store is back, submits are acknowledged again and every acknowledged
/// job runs, no refused one does.
fn outage_test(store: &mut dyn Outage) {
    let mut args = store.server_args();
    args.extend(["--verbose".to_owned(), "INFO".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = TestServer::start_under(&store.command_prefix(), ServerKind::Gearboxd, &args);
    let addr = server.addr();
    let mut acked = vec!["before".to_owned()];
    try_submit(&addr, OUTAGE_FN, "before", REPLY_TIMEOUT)
        .ok()
        .expect("reply")
        .expect("accepted while the store is up");
    store.go_down();

    let (mut refused, mut pending) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0.. {
        if !refused.is_empty() || Instant::now() >= deadline {
            break;
        }
        let payload = format!("during-{i}");
        match try_submit(&addr, OUTAGE_FN, &payload, Duration::from_secs(3)) {
            Ok(Ok(())) => acked.push(payload),
            Ok(Err(error)) => {
                assert!(error.starts_with("QUEUE_ERROR\0"), "refused with {error:?}");
                refused.push(payload);
            }
            Err(conn) => pending.push((payload, conn)),
        }
    }
    assert!(
        !refused.is_empty(),
        "no QUEUE_ERROR within 60 s of the {} store going down",
        store.name()
    );
    let total = status_total(&addr, OUTAGE_FN).expect("admin status during the outage");
    assert!(
        total >= acked.len() as u64,
        "accepted jobs kept: status total {total}, acked {acked:?}"
    );
    println!(
        "[outage {}] during the outage: {} acknowledged, {} refused, {} held (no reply yet)",
        store.name(),
        acked.len() - 1,
        refused.len(),
        pending.len()
    );

    store.come_back();
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0.. {
        assert!(
            Instant::now() < deadline,
            "no submit acknowledged within 60 s of the store coming back"
        );
        let payload = format!("after-{i}");
        match try_submit(&addr, OUTAGE_FN, &payload, REPLY_TIMEOUT) {
            Ok(Ok(())) => {
                acked.push(payload);
                break;
            }
            Ok(Err(_)) => refused.push(payload),
            Err(_) => panic!("no reply to {payload} with the store back"),
        }
        thread::sleep(Duration::from_millis(200));
    }
    let held = pending.len();
    for (payload, mut conn) in pending {
        match conn.recv(REPLY_TIMEOUT) {
            Ok(p) if p.ptype == JOB_CREATED => acked.push(payload),
            Ok(p) if p.ptype == ERROR => refused.push(payload),
            other => panic!("{payload}: held submit never answered properly: {other:?}"),
        }
    }
    println!(
        "[outage {}] in all: {} acknowledged, {} refused ({held} held until the store came back)",
        store.name(),
        acked.len(),
        refused.len()
    );

    let workers = Workers::start(&addr, &[OUTAGE_FN], 1, REPLAY);
    wait_until("the acknowledged jobs to run", REPLAY, || {
        let ran: BTreeSet<String> = workers.ran().iter().map(|r| text(&r.data)).collect();
        match (acked.iter().all(|p| ran.contains(p)), store.rows()) {
            (true, Ok(0)) => Ok(()),
            other => Err(format!("{other:?}, ran {ran:?}")),
        }
    });
    let ran: Vec<String> = workers.finish().iter().map(|r| text(&r.data)).collect();
    let mut want = acked.clone();
    want.sort();
    let mut got = ran.clone();
    got.sort();
    assert_eq!(
        got, want,
        "exactly the acknowledged jobs ran, once each (refused: {refused:?})"
    );

    // The log tells the outage once, however often the store failed meanwhile
    // (a nearly full disk fails and succeeds by turns), and then its end.
    wait_until("the log to report the recovery", REPLAY, || {
        match server.logs().contains("queue store is available again") {
            true => Ok(()),
            false => Err("not yet".to_owned()),
        }
    });
    let logs = server.logs();
    let reports = logs.matches("queue store failed").count();
    assert_eq!(reports, 1, "the outage is reported once; log:\n{logs}");
}

#[test]
fn outage_postgres() {
    outage_test(&mut PostgresInstance::start());
}

#[test]
fn outage_redis() {
    outage_test(&mut RedisInstance::start());
}

/// The database hangs instead of going away (SIGSTOP): the connection stays
/// open, so only gearboxd's own bound on a write that does not return (see
/// `store/stall.rs`; the `postgres` crate has no client-side statement
/// timeout) turns new submits into QUEUE_ERROR.
#[test]
fn hang_postgres() {
    outage_test(&mut Paused::new(PostgresInstance::start()));
}

#[test]
fn hang_redis() {
    outage_test(&mut Paused::new(RedisInstance::start()));
}

/// The disk under the SQLite file fills up (a tmpfs of the server's own):
/// commits fail with SQLITE_FULL, so new submits are refused with QUEUE_ERROR
/// while the jobs accepted stay queued, and the store recovers once there is
/// space again.
#[test]
fn full_disk_sqlite() {
    outage_test(&mut FullDisk::new());
}
