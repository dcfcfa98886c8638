//! One owner per queue (issue #15): two gearboxd on one PostgreSQL table, or
//! on one Redis prefix, would both replay its rows and both run every job. The
//! second server exits at start, naming the first; a server whose store
//! another one took over meanwhile refuses submits until it is free again;
//! and at the end exactly the acknowledged jobs are in the store, once each.

use super::*;
use protocol_tests::durable::{launch, Spawned, Stopped};

const OWNER_FN: &str = "durable_owner";
/// How long a refused second server may take to exit.
const REFUSED_WITHIN: Duration = Duration::from_secs(15);

/// A gearboxd on `store` with an INFO log, so that its log can be checked.
fn start_logged(store: &dyn QueueStore) -> TestServer {
    let mut args = store.server_args();
    args.extend(["--verbose".to_owned(), "INFO".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestServer::start_under(&store.command_prefix(), ServerKind::Gearboxd, &args)
}

/// `count` acknowledged submits to `addr`, payloads `<tag>-<i>`.
fn submit_acked(addr: &str, tag: &str, count: usize) -> Vec<String> {
    let mut conn = Conn::connect(addr).expect("connect");
    (0..count)
        .map(|i| {
            let payload = format!("{tag}-{i}");
            let p = payload.as_bytes();
            submit_bg(&mut conn, Prio::Normal, OWNER_FN, p, p)
                .unwrap_or_else(|e| panic!("{payload} acknowledged: {e}"));
            payload
        })
        .collect()
}

/// How the PostgreSQL store names [`PostgresInstance`]'s table: qualified.
fn table_name(pg: &PostgresInstance) -> String {
    format!("\"public\".\"{}\"", pg.table)
}

fn prefix_name(redis: &RedisInstance) -> String {
    format!("{:?}", redis.prefix)
}

/// Asserts that `loser` exited non-zero with an error naming the store (as
/// `name`) and the server that owns it.
fn assert_refused(loser: &mut Spawned, store: &dyn QueueStore, name: &str, owner_pid: u32) {
    let status = loser.wait_exit(REFUSED_WITHIN).unwrap_or_else(|| {
        panic!(
            "a second gearboxd on the {} store still runs after {REFUSED_WITHIN:?}:\n{}",
            store.name(),
            loser.stderr()
        )
    });
    assert!(!status.success(), "refused with a non-zero exit: {status}");
    let log = loser.stderr();
    let owner = format!("gearboxd pid {owner_pid} ");
    assert!(
        log.contains("is in use by another server") && log.contains(name) && log.contains(&owner),
        "the error names {name} and its owner `{owner}`:\n{log}"
    );
}

/// Stops `server`, starts a fresh one and has its worker drain the queue:
/// exactly the `acked` jobs run, once each.
fn assert_exactly(server: &mut TestServer, store: &dyn QueueStore, acked: &[String]) {
    terminate_server(server);
    drain_exactly(store, acked);
}

/// A fresh server on `store` runs exactly the `acked` jobs, once each.
fn drain_exactly(store: &dyn QueueStore, acked: &[String]) {
    let fresh = start(ServerKind::Gearboxd, store);
    let addr = fresh.addr();
    wait_status_total(&addr, OWNER_FN, acked.len() as u64);
    let workers = Workers::start(&addr, &[OWNER_FN], 1, REPLAY);
    wait_until("the replayed jobs to run", REPLAY, || {
        match (workers.count(), store.rows()) {
            (n, Ok(0)) if n >= acked.len() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let mut ran: Vec<String> = workers.finish().iter().map(|r| text(&r.data)).collect();
    ran.sort();
    let mut want = acked.to_vec();
    want.sort();
    assert_eq!(ran, want, "exactly the acknowledged jobs ran, once each");
}

/// Server A runs with acknowledged jobs; B, started on the same store, exits
/// at once naming A; A goes on acknowledging; the store holds A's jobs only.
fn second_server_is_refused(store: &dyn QueueStore, name: &str) {
    let mut a = start(ServerKind::Gearboxd, store);
    let mut acked = submit_acked(&a.addr(), "first", 20);
    let mut b = launch(store);
    assert_refused(&mut b, store, name, a.pid());
    acked.extend(submit_acked(&a.addr(), "after", 5));
    assert_exactly(&mut a, store, &acked);
}

/// Two servers started at once: exactly one runs, the other exits naming it.
fn one_of_two_started_together(store: &dyn QueueStore, name: &str) {
    let mut servers = [launch(store), launch(store)];
    let winner = wait_until(
        "one server to run and the other to exit",
        REFUSED_WITHIN,
        || {
            let exited = [servers[0].exited(), servers[1].exited()];
            match exited {
                [None, Some(_)] if servers[0].accepting() => Ok(0),
                [Some(_), None] if servers[1].accepting() => Ok(1),
                [Some(_), Some(_)] => panic!(
                    "both exited:\n{}\n{}",
                    servers[0].stderr(),
                    servers[1].stderr()
                ),
                _ => Err(format!("exit statuses {exited:?}")),
            }
        },
    );
    let owner_pid = servers[winner].pid();
    assert_refused(&mut servers[1 - winner], store, name, owner_pid);
    submit_acked(&servers[winner].addr(), "winner", 3);
    thread::sleep(Duration::from_secs(2));
    assert!(
        servers[winner].exited().is_none(),
        "the owner keeps running:\n{}",
        servers[winner].stderr()
    );
}

/// What became of submits made while another server owns the store.
#[derive(Default)]
struct Submits {
    acked: Vec<String>,
    refused: Vec<String>,
    /// No reply yet: held until their row is written.
    held: Vec<(String, Conn)>,
}

impl Submits {
    /// Submits until one is refused with QUEUE_ERROR (at most 30 s), and
    /// returns its error text.
    fn until_refused(&mut self, addr: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        for i in 0.. {
            assert!(Instant::now() < deadline, "no QUEUE_ERROR within 30 s");
            let payload = format!("during-{i}");
            match try_submit(addr, OWNER_FN, &payload, Duration::from_secs(3)) {
                Ok(Ok(())) => self.acked.push(payload),
                Ok(Err(error)) => {
                    assert!(error.starts_with("QUEUE_ERROR\0"), "refused with {error:?}");
                    self.refused.push(payload);
                    return error;
                }
                Err(conn) => self.held.push((payload, conn)),
            }
            thread::sleep(Duration::from_millis(100));
        }
        unreachable!()
    }

    /// Submits until one is acknowledged again (at most 30 s), then collects
    /// the replies that were held.
    fn until_acked(&mut self, addr: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for i in 0.. {
            assert!(
                Instant::now() < deadline,
                "no submit acknowledged within 30 s"
            );
            let payload = format!("again-{i}");
            match try_submit(addr, OWNER_FN, &payload, REPLY_TIMEOUT) {
                Ok(Ok(())) => {
                    self.acked.push(payload);
                    break;
                }
                Ok(Err(_)) => self.refused.push(payload),
                Err(_) => panic!("no reply to {payload}"),
            }
            thread::sleep(Duration::from_millis(200));
        }
        for (payload, mut conn) in self.held.drain(..) {
            match conn.recv(REPLY_TIMEOUT) {
                Ok(p) if p.ptype == JOB_CREATED => self.acked.push(payload),
                Ok(p) if p.ptype == ERROR => self.refused.push(payload),
                other => panic!("{payload}: held submit never answered: {other:?}"),
            }
        }
    }
}

/// While server A is paused, its hold on the store lapses (`lapse`) and
/// server B takes the store. Resumed, A must not write: it refuses submits
/// with QUEUE_ERROR naming B, and logs that another server owns the store.
/// Once B stops, A takes the store back and acknowledges again; the store
/// holds exactly A's acknowledged jobs.
fn taken_over_while_paused<S: QueueStore>(store: &mut S, lapse: impl FnOnce(&mut S)) {
    let mut a = start_logged(store);
    let addr = a.addr();
    let mut submits = Submits {
        acked: submit_acked(&addr, "before", 5),
        ..Submits::default()
    };
    let paused = Stopped::new(a.pid());
    lapse(store);
    let store = &*store;
    let mut b = launch(store);
    b.wait_accepting(REFUSED_WITHIN);
    drop(paused);
    let error = submits.until_refused(&addr);
    assert_eq!(
        submits.acked.len(),
        5,
        "A acknowledged nothing while B owned the store: {:?}",
        submits.acked
    );
    let b_pid = format!("gearboxd pid {} ", b.pid());
    assert!(
        error.contains(&b_pid),
        "QUEUE_ERROR names {b_pid}: {error:?}"
    );
    wait_until(
        "A's log to say that it lost the store",
        Duration::from_secs(10),
        || {
            let logs = a.logs();
            match logs.contains("another server owns the") && logs.contains(&b_pid) {
                true => Ok(()),
                false => Err(logs),
            }
        },
    );
    assert!(
        b.terminate().is_some_and(|s| s.success()),
        "B stops cleanly:\n{}",
        b.stderr()
    );
    submits.until_acked(&addr);
    println!(
        "[owner {}] {} acknowledged, {} refused while taken over",
        store.name(),
        submits.acked.len(),
        submits.refused.len()
    );
    assert_exactly(&mut a, store, &submits.acked);
}

#[test]
fn postgres_second_server_is_refused() {
    let pg = PostgresInstance::start();
    second_server_is_refused(&pg, &table_name(&pg));
}

#[test]
fn postgres_one_of_two_started_together() {
    let pg = PostgresInstance::start();
    one_of_two_started_together(&pg, &table_name(&pg));
}

#[test]
fn redis_second_server_is_refused() {
    let redis = RedisInstance::start();
    second_server_is_refused(&redis, &prefix_name(&redis));
}

#[test]
fn redis_one_of_two_started_together() {
    let redis = RedisInstance::start();
    one_of_two_started_together(&redis, &prefix_name(&redis));
}

/// PostgreSQL restarts while A is paused, which ends A's session and so its
/// lock; B takes the table. A's reconnect must not take it.
#[test]
fn postgres_taken_over_during_an_outage() {
    taken_over_while_paused(&mut PostgresInstance::start(), |pg| {
        pg.go_down();
        pg.come_back();
    });
}

/// A's lease lapses (as it would after 30 s of a paused process: here its
/// key is deleted) and B takes the prefix. A's next write must not land.
#[test]
fn redis_taken_over_while_paused() {
    taken_over_while_paused(&mut RedisInstance::start(), |redis| {
        let key = format!("{}lock", redis.prefix);
        let reply = redis.command(&["DEL", &key]).expect("DEL");
        assert_eq!(reply, b":1\r\n", "A's lock key was there");
    });
}

/// A lease outlives its 30 s expiry while its server runs idle: the idle
/// writer renews it.
#[test]
fn redis_lease_is_renewed_while_idle() {
    let redis = RedisInstance::start();
    let name = prefix_name(&redis);
    let mut a = start(ServerKind::Gearboxd, &redis);
    let mut acked = submit_acked(&a.addr(), "first", 3);
    thread::sleep(Duration::from_secs(35));
    let mut b = launch(&redis);
    assert_refused(&mut b, &redis, &name, a.pid());
    acked.extend(submit_acked(&a.addr(), "after", 3));
    assert_exactly(&mut a, &redis, &acked);
}

/// The backend of A's session stops answering (SIGSTOP), holding the lock:
/// A drops the session, and its new session finds the lock held by A's own
/// earlier session, which it must tell apart from another server (and
/// terminate). Once that backend is gone, A takes the lock again.
#[test]
fn postgres_own_earlier_session_is_told_apart() {
    let pg = PostgresInstance::start();
    let mut a = start_logged(&pg);
    let addr = a.addr();
    let mut submits = Submits {
        acked: submit_acked(&addr, "before", 5),
        ..Submits::default()
    };
    let backend = pg
        .query(&format!(
            "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity s USING (pid) \
             WHERE l.locktype = 'advisory' AND s.application_name LIKE 'gearboxd pid {} on %'",
            a.pid()
        ))
        .expect("psql");
    let backend: u32 = backend
        .trim()
        .parse()
        .expect("the backend holding A's lock");
    let stopped = Stopped::new(backend);
    // Submit only once A noticed: a write to a stopped backend waits for it.
    wait_until("A to notice", Duration::from_secs(20), || {
        match a.logs().contains("queue store failed") {
            true => Ok(()),
            false => Err(a.logs()),
        }
    });
    let error = submits.until_refused(&addr);
    assert!(
        error.contains(&format!(
            "an earlier session of this server (backend pid {backend})"
        )),
        "QUEUE_ERROR tells A's own session apart: {error:?}"
    );
    drop(stopped);
    submits.until_acked(&addr);
    assert_exactly(&mut a, &pg, &submits.acked);
}

/// A server that was killed (SIGKILL) leaves no owner behind: a server
/// started right after takes the store within a few seconds (PostgreSQL ends
/// the session and its lock; a Redis lease whose holder has no connection any
/// more is taken over), and finds every acknowledged job. `owns` checks that
/// the new server really holds the store.
fn killed_owner_is_replaced<S: QueueStore>(store: &S, owns: impl Fn(&S, &Spawned) -> bool) {
    let mut a = start(ServerKind::Gearboxd, store);
    let mut acked = submit_acked(&a.addr(), "first", 10);
    kill_server(&mut a);
    let started = Instant::now();
    let mut b = launch(store);
    b.wait_accepting(Duration::from_secs(10));
    println!(
        "[owner {}] replaced in {:?}",
        store.name(),
        started.elapsed()
    );
    assert!(
        owns(store, &b),
        "the new server owns the store:\n{}",
        b.stderr()
    );
    acked.extend(submit_acked(&b.addr(), "second", 3));
    assert!(
        b.terminate().is_some_and(|s| s.success()),
        "clean stop:\n{}",
        b.stderr()
    );
    drain_exactly(store, &acked);
}

#[test]
fn postgres_killed_owner_is_replaced() {
    killed_owner_is_replaced(&PostgresInstance::start(), |pg, b| {
        let sql = format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity s USING (pid) \
             WHERE l.locktype = 'advisory' AND s.application_name LIKE 'gearboxd pid {} on %'",
            b.pid()
        );
        pg.query(&sql).expect("psql").trim() == "1"
    });
}

#[test]
fn redis_killed_owner_is_replaced() {
    killed_owner_is_replaced(&RedisInstance::start(), |_, b| {
        b.stderr().contains("took over the redis prefix")
    });
}

/// A clean stop deletes the lease's key, so the next server need not wait.
#[test]
fn redis_clean_stop_releases_the_lease() {
    let redis = RedisInstance::start();
    let key = format!("{}lock", redis.prefix);
    let exists = || redis.command(&["EXISTS", &key]).expect("EXISTS");
    let mut a = launch(&redis);
    a.wait_accepting(REFUSED_WITHIN);
    assert_eq!(exists(), b":1\r\n", "the running server holds {key}");
    assert!(
        a.terminate().is_some_and(|s| s.success()),
        "clean stop:\n{}",
        a.stderr()
    );
    assert_eq!(exists(), b":0\r\n", "{key} is gone after a clean stop");
}
