//! Durable queue stores, black-box: background jobs acknowledged by gearboxd survive
//! a `kill -9`, are replayed once, and the queue file is interchangeable with
//! gearmand's (`-q libsqlite3`, gearmand's schema) in both directions.
//!
//! Every test speaks the raw protocol over loopback (see `protocol_tests::durable`).
//! The crash tests print their figures; see them with
//! `cargo test -p protocol-tests --test durability -- --nocapture`.
//! The postgres and redis tests (crash, outage) start private instances of their own
//! (Debian's `postgresql` and `redis-server`, see install-deps.sh).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use protocol_tests::diff::wire::encode_request;
use protocol_tests::durable::{
    created, drain_in_order, drain_until_empty, kill_server, load_and_crash, now_epoch,
    priority_status, show_jobs_count, start, status, status_total, submit_bg, terminate_server,
    text, try_submit, wait_rows, wait_status_total, Conn, CrashLoad, FullDisk, Outage, Paused,
    PostgresInstance, Prio, QueueStore, Ran, RedisInstance, SqliteFile, Workers, ERROR,
    JOB_CREATED, REPLY_TIMEOUT, SUBMIT_JOB, SUBMIT_JOB_EPOCH,
};
use protocol_tests::{wait_until, ServerKind, TestServer};

/// How long jobs may take to run.
const REPLAY: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// 1. Crash under load
// ---------------------------------------------------------------------------------------

const CRASH_FN: &str = "durable_crash";
const CLIENTS: usize = 4;
/// The server is killed once this many submits were acknowledged (all clients).
const ACK_TARGET: usize = 20_000;
/// Submits one client pipelines before reading their replies.
const BATCH: usize = 32;
const LOAD_TIME: Duration = Duration::from_secs(120);
const DRAIN_TIME: Duration = Duration::from_secs(240);

/// The job a client submits as its `n`th: payload, unique, priority. Uniques
/// cycle through a real one, empty and `-`; priorities cycle independently.
fn crash_job(client: usize, n: usize) -> (String, Vec<u8>, Prio) {
    let payload = format!("c{client}-{n}");
    let unique = match n % 3 {
        0 => format!("u-{payload}").into_bytes(),
        1 => Vec::new(),
        _ => b"-".to_vec(),
    };
    (payload, unique, Prio::ALL[(n / 3) % 3])
}

/// Crash test over one store: clients submit background jobs; the server is killed
/// (SIGKILL) mid-load; a restarted server must run every acknowledged job. With
/// `workers_during_load`, workers also run jobs before the crash, so a job may run
/// twice (completed, but its row deletion was not committed yet): reported, not
/// asserted. Without them, nothing ran before the crash and duplicates must be 0.
fn crash_test(store: &dyn QueueStore, workers_during_load: bool) {
    let with = if workers_during_load {
        " with workers"
    } else {
        ""
    };
    let label = format!("{}{with}", store.name());
    let mut server = start(ServerKind::Gearboxd, store);
    let early_workers =
        workers_during_load.then(|| Workers::start(&server.addr(), &[CRASH_FN], 2, LOAD_TIME));
    let load = (CLIENTS, BATCH, ACK_TARGET);
    let CrashLoad { logs, submitting } =
        load_and_crash(&mut server, CRASH_FN, crash_job, load, LOAD_TIME);
    let ran_before: Vec<Ran> = early_workers.map(Workers::finish).unwrap_or_default();
    let rows_at_crash = store.rows();

    // Every payload submitted, with the unique it was submitted with.
    let mut submitted: HashMap<String, Vec<u8>> = HashMap::new();
    for (c, log) in logs.iter().enumerate() {
        for n in 0..log.sent {
            let (payload, unique, _) = crash_job(c, n);
            submitted.insert(payload, unique);
        }
    }
    let acked: BTreeSet<String> = logs.iter().flat_map(|l| l.acked.clone()).collect();
    let refused: Vec<&String> = logs.iter().flat_map(|l| &l.refused).collect();
    assert!(
        !acked.is_empty(),
        "[{label}] nothing acknowledged before the crash"
    );

    // Second life: drain until every acknowledged job ran, the server's queue is
    // empty and the store has deleted every row.
    let mut server = start(ServerKind::Gearboxd, store);
    let addr = server.addr();
    // The server serves while it replays: a new job is accepted (and must run
    // too, once), and admin answers.
    let mut conn = Conn::connect(&addr).expect("connect");
    submit_bg(&mut conn, Prio::High, CRASH_FN, b"u-fresh", b"fresh").expect("submit after restart");
    submitted.insert("fresh".into(), b"u-fresh".to_vec());
    status(&addr).expect("admin status during replay");
    let mut must_run = acked.clone();
    must_run.insert("fresh".into());
    let (ran_after, last) = drain_until_empty(
        &addr,
        store,
        CRASH_FN,
        (&must_run, &ran_before),
        3,
        DRAIN_TIME,
    );

    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    for r in ran_before.iter().chain(&ran_after) {
        *runs.entry(text(&r.data)).or_default() += 1;
        let expected = submitted.get(&text(&r.data));
        assert_eq!(
            Some(&r.unique),
            expected,
            "[{label}] job {:?} ran with unique {:?}, submitted with {:?} (or never submitted)",
            text(&r.data),
            text(&r.unique),
            expected.map(|u| text(u))
        );
        assert_eq!(r.function, CRASH_FN.as_bytes());
    }
    let recovered: BTreeSet<String> = ran_after
        .iter()
        .map(|r| text(&r.data))
        .filter(|p| p != "fresh")
        .collect();
    let lost: Vec<&String> = must_run.iter().filter(|p| !runs.contains_key(*p)).collect();
    let duplicated: usize = runs.values().map(|&n| n - 1).sum();
    let unacked_recovered = recovered.iter().filter(|p| !acked.contains(*p)).count();
    println!(
        "[crash {label}] submitted {}, acknowledged {}, refused {}, clients still submitting at the kill {submitting}/{CLIENTS}, \
         ran before the crash {}, rows after the crash {rows_at_crash:?}, recovered (ran after restart) {}, \
         duplicated {duplicated}, unacknowledged-but-recovered {unacked_recovered}, lost {}",
        logs.iter().map(|l| l.sent).sum::<usize>(),
        acked.len(),
        refused.len(),
        ran_before.len(),
        recovered.len(),
        lost.len()
    );
    for (c, log) in logs.iter().enumerate() {
        println!(
            "[crash {label}] client {c}: sent {}, acked {}, ended by {}",
            log.sent,
            log.acked.len(),
            log.end
        );
    }
    assert!(
        lost.is_empty(),
        "[{label}] {} acknowledged jobs never ran, e.g. {:?}; at the end: {last}",
        lost.len(),
        lost.iter().take(10).collect::<Vec<_>>()
    );
    if !workers_during_load {
        let twice: Vec<_> = runs.iter().filter(|(_, &n)| n > 1).take(10).collect();
        assert_eq!(duplicated, 0, "[{label}] jobs ran twice, e.g. {twice:?}");
    }
    assert_eq!(status_total(&addr, CRASH_FN), Ok(0), "[{label}] {last}");
    assert_eq!(
        store.rows(),
        Ok(0),
        "[{label}] rows of completed jobs left: {last}"
    );

    // Third life: nothing comes back.
    kill_server(&mut server);
    let server = start(ServerKind::Gearboxd, store);
    let again = drain_in_order(&server.addr(), &[CRASH_FN], 1, Duration::from_secs(2));
    assert!(
        again.is_empty(),
        "[{label}] completed jobs replayed again: {again:?}"
    );
    assert_eq!(status_total(&server.addr(), CRASH_FN), Ok(0));
}

#[test]
fn crash_sqlite() {
    crash_test(&SqliteFile::new("crash"), false);
}

#[test]
fn crash_sqlite_with_workers() {
    crash_test(&SqliteFile::new("crash-workers"), true);
}

#[test]
fn crash_postgres() {
    crash_test(&PostgresInstance::start(), false);
}

#[test]
fn crash_postgres_with_workers() {
    crash_test(&PostgresInstance::start(), true);
}

#[test]
fn crash_redis() {
    crash_test(&RedisInstance::start(), false);
}

#[test]
fn crash_redis_with_workers() {
    crash_test(&RedisInstance::start(), true);
}

// ---------------------------------------------------------------------------------------
// 1b. External store down: QUEUE_ERROR, accepted jobs kept, reconnect
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// 2. gearmand <-> gearboxd through one sqlite file
// ---------------------------------------------------------------------------------------

const INTEROP_FN: &str = "durable_interop";
const INTEROP_EPOCH_FN: &str = "durable_interop_epoch";

/// Submitted in this order (priorities interleaved), one with binary data.
fn interop_jobs(anonymous: &[u8]) -> Vec<(Prio, Vec<u8>, Vec<u8>)> {
    vec![
        (Prio::Low, b"u-L1".to_vec(), b"L1".to_vec()),
        (Prio::Normal, b"u-N1".to_vec(), b"N1".to_vec()),
        (Prio::High, b"u-H1".to_vec(), b"H1".to_vec()),
        (Prio::Low, anonymous.to_vec(), b"L2".to_vec()),
        (Prio::Normal, b"u-N2".to_vec(), b"N2\0bin\xff\x01".to_vec()),
        (Prio::High, b"u-H2".to_vec(), b"H2".to_vec()),
    ]
}

/// The interop jobs in the order a worker must get them: HIGH, NORMAL, LOW,
/// first-in first-out within a priority.
fn interop_expected(anonymous: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut jobs = interop_jobs(anonymous);
    jobs.sort_by_key(|j| j.0); // stable: keeps submit order within a priority
    jobs.into_iter().map(|(_, u, d)| (u, d)).collect()
}

/// Submits the interop jobs and one epoch job due `delay` seconds from now (in
/// `epoch_fn`); returns the epoch.
fn submit_interop(addr: &str, anonymous: &[u8], epoch_fn: &str, delay: u64) -> u64 {
    let mut conn = Conn::connect(addr).expect("connect");
    for (prio, unique, data) in interop_jobs(anonymous) {
        submit_bg(&mut conn, prio, INTEROP_FN, &unique, &data).expect("submit accepted");
    }
    let when = now_epoch() + delay;
    let when_s = when.to_string();
    conn.send(
        SUBMIT_JOB_EPOCH,
        &[epoch_fn.as_bytes(), b"u-E", when_s.as_bytes(), b"E"],
    )
    .expect("send epoch");
    created(&mut conn).expect("epoch job accepted");
    when
}

fn assert_drained_in_order(ran: &[Ran], expected: &[(Vec<u8>, Vec<u8>)], who: &str) {
    let got: Vec<(String, String)> = ran
        .iter()
        .map(|r| (text(&r.unique), text(&r.data)))
        .collect();
    let want: Vec<(String, String)> = expected.iter().map(|(u, d)| (text(u), text(d))).collect();
    assert_eq!(
        got, want,
        "{who}: (unique, data) in the order the worker got them"
    );
    for (r, (_, data)) in ran.iter().zip(expected) {
        assert_eq!(&r.data, data, "{who}: data bytes");
    }
}

#[test]
fn gearmand_queue_replayed_by_gearboxd() {
    let file = SqliteFile::new("gearmand-to-gearboxd");
    let mut gearmand = start(ServerKind::Gearmand, &file);
    // Same function for the epoch job: gearboxd must skip it while it is not due.
    let when = submit_interop(&gearmand.addr(), b"", INTEROP_FN, 6);
    kill_server(&mut gearmand);
    let rows = file.table_rows().expect("read gearmand's table");
    assert_eq!(rows.len(), 7, "gearmand wrote one row per job: {rows:?}");

    let gearboxd = start(ServerKind::Gearboxd, &file);
    let addr = gearboxd.addr();
    wait_status_total(&addr, INTEROP_FN, 7);
    let ran = drain_in_order(&addr, &[INTEROP_FN], 7, Duration::from_secs(60));
    assert_eq!(ran.len(), 7, "all of gearmand's jobs ran: {ran:?}");
    // The epoch job is not due before the others ran (unless this machine is very
    // slow), so it is taken out before checking the order of the rest.
    let (epoch, rest): (Vec<Ran>, Vec<Ran>) = ran.into_iter().partition(|r| r.data == b"E");
    assert_drained_in_order(&rest, &interop_expected(b""), "gearboxd after gearmand");
    let epoch = &epoch[0];
    assert_eq!(epoch.unique, b"u-E");
    assert!(
        epoch.at >= when,
        "epoch job ran at {} before its time {when}",
        epoch.at
    );
    // gearboxd deletes gearmand's rows once their jobs are done.
    wait_rows(&file, 0, Duration::from_secs(20));
}

#[test]
fn gearboxd_queue_replayed_by_gearmand() {
    let file = SqliteFile::new("gearboxd-to-gearmand");
    let mut gearboxd = start(ServerKind::Gearboxd, &file);
    // A separate function for the epoch job: gearmand starves lower priorities
    // behind a future epoch job (gearmand-behaviour.md §3.3.5).
    let when = submit_interop(&gearboxd.addr(), b"", INTEROP_EPOCH_FN, 3);
    terminate_server(&mut gearboxd);
    let rows = file.table_rows().expect("read gearboxd's table");
    assert_eq!(rows.len(), 7, "gearboxd wrote one row per job: {rows:?}");
    // The job with an empty unique has a key of its own (a documented difference).
    let anon = rows
        .iter()
        .find(|r| r.data == b"L2")
        .expect("row of the empty-unique job");
    assert!(
        text(&anon.unique_key).starts_with("~gearbox-anon~"),
        "{:?}",
        text(&anon.unique_key)
    );
    assert!(rows
        .iter()
        .all(|r| r.when_to_run == 0 || r.when_to_run as u64 == when));

    let gearmand = start(ServerKind::Gearmand, &file);
    let addr = gearmand.addr();
    wait_status_total(&addr, INTEROP_FN, 6);
    let ran = drain_in_order(&addr, &[INTEROP_FN], 6, Duration::from_secs(30));
    // gearmand sees the synthetic key as the job's unique.
    assert_drained_in_order(
        &ran,
        &interop_expected(&anon.unique_key),
        "gearmand after gearboxd",
    );
    let epoch = drain_in_order(&addr, &[INTEROP_EPOCH_FN], 1, Duration::from_secs(30));
    assert_eq!(epoch.len(), 1, "gearmand ran gearboxd's epoch job");
    assert_eq!(
        (epoch[0].unique.as_slice(), epoch[0].data.as_slice()),
        (&b"u-E"[..], &b"E"[..])
    );
    assert!(
        epoch[0].at >= when,
        "epoch job ran at {} before its time {when}",
        epoch[0].at
    );
}

// ---------------------------------------------------------------------------------------
// 3. Empty and `-` uniques each keep a row
// ---------------------------------------------------------------------------------------

const ANON_FN: &str = "durable_anon";
const ANON_EACH: usize = 200;

/// Submits ANON_EACH jobs with an empty unique and ANON_EACH with `-`, distinct
/// data, pipelined; panics unless all are acknowledged.
fn submit_anonymous(addr: &str) {
    let mut conn = Conn::connect(addr).expect("connect");
    let mut out = Vec::new();
    for i in 0..ANON_EACH {
        for (unique, data) in [(&b""[..], format!("e-{i}")), (b"-", format!("d-{i}"))] {
            let args = [
                ANON_FN.as_bytes().to_vec(),
                unique.to_vec(),
                data.into_bytes(),
            ];
            out.extend(encode_request(Prio::Normal.bg_packet(), &args));
        }
    }
    conn.send_raw(&out).expect("send");
    for i in 0..2 * ANON_EACH {
        created(&mut conn).unwrap_or_else(|e| panic!("submit {i}: {e}"));
    }
}

#[test]
fn empty_and_dash_uniques_each_survive_a_crash() {
    let file = SqliteFile::new("anon");
    let mut server = start(ServerKind::Gearboxd, &file);
    submit_anonymous(&server.addr());
    kill_server(&mut server);
    assert_eq!(file.rows(), Ok(2 * ANON_EACH as u64), "one row per job");

    let server = start(ServerKind::Gearboxd, &file);
    let addr = server.addr();
    wait_status_total(&addr, ANON_FN, 2 * ANON_EACH as u64);
    let workers = Workers::start(&addr, &[ANON_FN], 2, Duration::from_secs(60));
    wait_until(
        "all replayed jobs to run",
        Duration::from_secs(60),
        || match (workers.count(), status_total(&addr, ANON_FN)) {
            (n, Ok(0)) if n >= 2 * ANON_EACH => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let ran = workers.finish();
    let mut runs: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for r in &ran {
        let entry = runs.entry(text(&r.data)).or_insert((0, text(&r.unique)));
        entry.0 += 1;
    }
    for i in 0..ANON_EACH {
        assert_eq!(
            runs.get(&format!("e-{i}")),
            Some(&(1, String::new())),
            "e-{i}"
        );
        assert_eq!(
            runs.get(&format!("d-{i}")),
            Some(&(1, "-".to_owned())),
            "d-{i}"
        );
    }
    assert_eq!(ran.len(), 2 * ANON_EACH, "each job ran exactly once");
    wait_rows(&file, 0, Duration::from_secs(20));
}

/// Documented gearmand behaviour (gearmand-behaviour.md §5.1): its rows are keyed
/// by (unique, function), so all background jobs with an empty unique share one
/// row, and a restart brings back one of them.
#[test]
fn gearmand_keeps_one_row_for_empty_uniques() {
    let file = SqliteFile::new("gearmand-anon");
    let mut gearmand = start(ServerKind::Gearmand, &file);
    submit_anonymous(&gearmand.addr());
    kill_server(&mut gearmand);
    let rows = file.table_rows().expect("read gearmand's table");
    let empty: Vec<_> = rows.iter().filter(|r| r.unique_key.is_empty()).collect();
    let dash: Vec<_> = rows.iter().filter(|r| r.unique_key == b"-").collect();
    println!(
        "[gearmand anon] {} jobs acknowledged, {} rows: {} with an empty unique (data {:?}), {} with `-`",
        2 * ANON_EACH,
        rows.len(),
        empty.len(),
        empty.iter().map(|r| text(&r.data)).collect::<Vec<_>>(),
        dash.len()
    );
    assert_eq!(
        empty.len(),
        1,
        "gearmand overwrites one row per empty unique"
    );
    assert_eq!(dash.len(), 1, "gearmand overwrites one row per `-` unique");

    let gearmand = start(ServerKind::Gearmand, &file);
    let replayed = status_total(&gearmand.addr(), ANON_FN).expect("status");
    assert_eq!(
        replayed,
        rows.len() as u64,
        "gearmand replays what the table holds"
    );
    assert!(replayed < 2 * ANON_EACH as u64);
}

// ---------------------------------------------------------------------------------------
// 4. Admin views of a replayed queue
// ---------------------------------------------------------------------------------------

#[test]
fn admin_status_after_replay() {
    const FN_A: &str = "durable_status";
    const FN_B: &str = "durable_status_b";
    let file = SqliteFile::new("status");
    let mut server = start(ServerKind::Gearboxd, &file);
    let mut conn = Conn::connect(&server.addr()).expect("connect");
    let counts = [(Prio::High, 30), (Prio::Normal, 40), (Prio::Low, 50)];
    for (prio, count) in counts {
        for i in 0..count {
            let unique = if i % 2 == 0 {
                format!("s-{prio:?}-{i}")
            } else {
                String::new()
            };
            let data = format!("{prio:?}-{i}");
            submit_bg(&mut conn, prio, FN_A, unique.as_bytes(), data.as_bytes()).expect("submit");
        }
    }
    for i in 0..7 {
        submit_bg(
            &mut conn,
            Prio::Low,
            FN_B,
            b"-",
            format!("b-{i}").as_bytes(),
        )
        .expect("submit");
    }
    kill_server(&mut server);

    let server = start(ServerKind::Gearboxd, &file);
    let addr = server.addr();
    wait_status_total(&addr, FN_A, 120);
    wait_status_total(&addr, FN_B, 7);
    let st = status(&addr).expect("status");
    assert_eq!(
        st.get(FN_A),
        Some(&[120, 0, 0]),
        "status: total, running, workers"
    );
    assert_eq!(st.get(FN_B), Some(&[7, 0, 0]));
    assert_eq!(
        show_jobs_count(&addr),
        Ok(127),
        "show jobs lists every replayed job"
    );
    let ps = priority_status(&addr).expect("prioritystatus");
    assert_eq!(
        ps.get(FN_A),
        Some(&[30, 40, 50]),
        "prioritystatus: high, normal, low"
    );
    assert_eq!(ps.get(FN_B), Some(&[0, 0, 7]));
}

// ---------------------------------------------------------------------------------------
// 5. Foreground jobs are not persisted
// ---------------------------------------------------------------------------------------

#[test]
fn foreground_jobs_are_not_persisted() {
    const FG_FN: &str = "durable_fg";
    const MARK_FN: &str = "durable_fg_marker";
    let file = SqliteFile::new("fg");
    let mut server = start(ServerKind::Gearboxd, &file);
    // The foreground submitter stays connected until the crash, so its jobs are live.
    let mut fg = Conn::connect(&server.addr()).expect("connect");
    for unique in [&b"fg-1"[..], b"", b"-"] {
        fg.send(SUBMIT_JOB, &[FG_FN.as_bytes(), unique, b"foreground"])
            .expect("send");
        created(&mut fg).expect("foreground job accepted");
    }
    // A background job submitted after them: once it is acknowledged, its row is
    // committed, and so would theirs be if they were written at all.
    let mut bg = Conn::connect(&server.addr()).expect("connect");
    submit_bg(&mut bg, Prio::Normal, MARK_FN, b"marker", b"marker").expect("submit");
    assert_eq!(status_total(&server.addr(), FG_FN), Ok(3));
    let rows = file.table_rows().expect("read table");
    assert_eq!(rows.len(), 1, "only the background job has a row: {rows:?}");
    kill_server(&mut server);

    let server = start(ServerKind::Gearboxd, &file);
    let addr = server.addr();
    wait_status_total(&addr, MARK_FN, 1);
    assert_eq!(
        status_total(&addr, FG_FN),
        Ok(0),
        "no foreground job came back"
    );
    let ran = drain_in_order(&addr, &[FG_FN, MARK_FN], 2, Duration::from_secs(2));
    let got: Vec<String> = ran.iter().map(|r| text(&r.data)).collect();
    assert_eq!(got, ["marker"], "only the background job is replayed");
}

// ---------------------------------------------------------------------------------------
// 6. Disk space after a backlog drains
// ---------------------------------------------------------------------------------------

const COMPACT_FN: &str = "durable_compact";
const COMPACT_JOBS: usize = 2_000;

/// A drained backlog gives its disk space back. 2,000 jobs of 20 KiB grow the
/// queue file past 30 MB; SQLite alone would keep that size for good (pages of
/// deleted rows go to its free list). Once workers have run the jobs and the
/// server is idle, the file is back under 1 MB.
#[test]
fn a_drained_backlog_gives_its_disk_space_back() {
    let store = SqliteFile::new("compact");
    let server = start(ServerKind::Gearboxd, &store);
    let addr = server.addr();
    let mut conn = Conn::connect(&addr).expect("connect");
    let data = vec![b'x'; 20_000];
    for i in 0..COMPACT_JOBS {
        let unique = format!("compact-{i}");
        submit_bg(
            &mut conn,
            Prio::Normal,
            COMPACT_FN,
            unique.as_bytes(),
            &data,
        )
        .expect("acknowledged");
    }
    let size = || fs::metadata(&store.path).map_or(0, |m| m.len());
    wait_until("the queue file to grow past 30 MB", REPLAY, || {
        match size() {
            n if n > 30_000_000 => Ok(()),
            n => Err(format!("{n} bytes")),
        }
    });

    let workers = Workers::start(&addr, &[COMPACT_FN], 2, REPLAY);
    wait_until("the jobs to run", REPLAY, || match workers.ran().len() {
        n if n >= COMPACT_JOBS => Ok(()),
        n => Err(format!("{n} ran")),
    });
    wait_until("the queue file to shrink under 1 MB", REPLAY, || {
        match (size(), store.rows()) {
            (n, Ok(0)) if n < 1_000_000 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(workers.finish().len(), COMPACT_JOBS, "each job ran once");
}
