//! Crash under load: every acknowledged job survives a `kill -9` mid-load and
//! runs once after the restart, for every store.

use super::*;

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
