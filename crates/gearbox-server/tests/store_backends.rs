//! The PostgreSQL and Redis stores against real servers: each test starts a
//! private instance on a free loopback port in a temporary directory, and
//! stops it (only that process) at the end. No server already running on the
//! machine is used.
//!
//! The tests fail, with a message saying what to install, when the server
//! binaries are missing: CI installs them (`protocol-tests/install-deps.sh`,
//! packages `postgresql` and `redis-server`). `GEARBOX_PG_BINDIR` and
//! `GEARBOX_REDIS_SERVER` point at other builds. PostgreSQL refuses to run as
//! root, so as root its processes run as the `postgres` user.
//!
//! Run with `--nocapture` to see the batch throughput each backend reaches.

use gearbox_server::store::postgres::{Postgres, PostgresConfig, DEFAULT_TABLE};
use gearbox_server::store::redis::{Redis, RedisConfig, DEFAULT_PREFIX};
use gearbox_server::store::{Backend, Op, ReplaySource, Row};
use protocol_tests::durable::{Outage, PostgresInstance, PostgresSetup, RedisInstance, RedisSetup};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Private servers: protocol-tests' instances, and how these tests reach them

/// Trust authentication, the encoding gearbox expects, and fsync as in use.
fn start_postgres() -> PostgresInstance {
    PostgresInstance::start_with(PostgresSetup {
        fsync: true,
        encoding: Some("UTF8"),
    })
}

/// In memory only: nothing is kept across a restart.
fn start_redis(password: Option<&'static str>) -> RedisInstance {
    RedisInstance::start_with(RedisSetup {
        password,
        append_only: false,
    })
}

trait PgServer {
    fn client(&self) -> postgres::Client;
    fn backend(&self, table: &str) -> Postgres;
}

impl PgServer for PostgresInstance {
    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.plain_conninfo(), postgres::NoTls).unwrap()
    }

    /// With no `connect_timeout` in the conninfo, so the store's own applies.
    fn backend(&self, table: &str) -> Postgres {
        Postgres::new(PostgresConfig {
            conninfo: self.plain_conninfo(),
            table: table.into(),
        })
    }
}

trait RedisServer {
    fn client(&self) -> redis::RedisResult<redis::Connection>;
    fn backend(&self, prefix: &str) -> Redis;
}

impl RedisServer for RedisInstance {
    fn client(&self) -> redis::RedisResult<redis::Connection> {
        let url = match self.password() {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port()),
            None => format!("redis://127.0.0.1:{}/", self.port()),
        };
        redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(1))
    }

    fn backend(&self, prefix: &str) -> Redis {
        Redis::new(RedisConfig {
            host: "127.0.0.1".into(),
            port: self.port(),
            password: self.password().map(str::to_owned),
            prefix: prefix.into(),
        })
    }
}

/// SIGSTOPs a process of a server this test started, and SIGCONTs it when
/// dropped, also when an assertion failed meanwhile.
struct Stopped(libc::pid_t);

impl Stopped {
    fn new(pid: libc::pid_t) -> Stopped {
        // SAFETY: kill(2) on a process of a server this test started.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        Stopped(pid)
    }

    /// The server itself (the postmaster, or redis-server).
    fn server(pid: Option<u32>) -> Stopped {
        Stopped::new(pid.expect("the server runs") as libc::pid_t)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

// ---------------------------------------------------------------------------
// Scenarios, shared by both backends

fn row(key: &[u8], function: &[u8], priority: u8, data: &[u8], when: u64) -> Row {
    Row {
        key: key.to_vec(),
        function: function.to_vec(),
        priority,
        data: data.to_vec(),
        when,
        position: None,
    }
}

fn put(row: &Row) -> Op {
    Op::Put(row.clone())
}

fn delete(key: &[u8], function: &[u8]) -> Op {
    Op::Delete {
        key: key.to_vec(),
        function: function.to_vec(),
        position: None,
    }
}

fn drain(source: &mut dyn ReplaySource) -> Vec<Row> {
    let mut rows = Vec::new();
    loop {
        let chunk = source.next_chunk().expect("replay chunk");
        if chunk.is_empty() {
            return rows;
        }
        rows.extend(chunk);
    }
}

/// What a freshly started server would replay, read by a backend of its
/// own: only where no other backend holds the table (PostgreSQL allows one
/// server per table, and refuses a second one's connect).
fn replay(mut backend: impl Backend) -> Vec<Row> {
    backend.connect().expect("connect");
    replay_from(&mut backend)
}

/// What a freshly started server would replay, read by the writer itself
/// (on a connection of its own), which holds the table.
fn replay_from(writer: &mut impl Backend) -> Vec<Row> {
    let mut source = writer.open_replay().expect("open replay");
    drain(source.as_mut())
}

/// The rows in write order where the backend keeps one, else sorted.
fn in_order(mut rows: Vec<Row>, fifo: bool) -> Vec<Row> {
    if !fifo {
        rows.sort_by(|a, b| (&a.function, &a.key).cmp(&(&b.function, &b.key)));
    }
    rows
}

/// An anonymous key as `keys::anonymous_key` makes it: 46 or 47 bytes.
fn anonymous_key(unique: &str, run: u64, id: u64) -> Vec<u8> {
    format!("{unique}~gearbox-anon~{run:016x}{id:016x}").into_bytes()
}

/// Writes, deletes and replacements survive a restart, anonymous keys and
/// binary payloads byte for byte.
fn round_trip<B: Backend>(backend: impl Fn() -> B, fifo: bool) {
    let mut writer = backend();
    writer.connect().expect("connect");

    let a = row(b"a", b"reverse", 1, b"first", 0);
    let b = row(b"b", b"reverse", 0, b"second", 0);
    let c = row(b"c", b"resize-image", 2, b"third", 1_700_000_000);
    writer.write(&[put(&a), put(&b), put(&c)]).unwrap();
    assert_eq!(
        in_order(replay_from(&mut writer), fifo),
        in_order(vec![a.clone(), b.clone(), c.clone()], fifo)
    );

    // Delete, and an empty batch.
    writer.write(&[delete(b"b", b"reverse")]).unwrap();
    writer.write(&[]).unwrap();
    assert_eq!(
        in_order(replay_from(&mut writer), fifo),
        in_order(vec![a.clone(), c.clone()], fifo)
    );

    // A put replaces the row with the same (unique, function), and moves it
    // to the end, as SQLite's INSERT OR REPLACE does.
    let a2 = row(b"a", b"reverse", 0, b"replaced", 1_800_000_000);
    writer.write(&[put(&a2)]).unwrap();
    assert_eq!(
        in_order(replay_from(&mut writer), fifo),
        in_order(vec![c.clone(), a2.clone()], fifo)
    );
    // The same unique under another function is another row.
    let a_other = row(b"a", b"other", 1, b"x", 0);
    // Within one batch, each row's last write decides.
    let d = row(b"d", b"reverse", 1, b"d1", 0);
    let d2 = row(b"d", b"reverse", 2, b"d2", 0);
    writer
        .write(&[
            put(&d),
            put(&a_other),
            delete(b"c", b"resize-image"),
            put(&d2),
            delete(b"never", b"written"),
            put(&c),
            delete(b"c", b"resize-image"),
        ])
        .unwrap();
    assert_eq!(
        in_order(replay_from(&mut writer), fifo),
        in_order(vec![a2.clone(), a_other.clone(), d2.clone()], fifo)
    );
    writer
        .write(&[
            delete(b"a", b"reverse"),
            delete(b"a", b"other"),
            delete(b"d", b"reverse"),
        ])
        .unwrap();
    assert_eq!(replay_from(&mut writer), Vec::new());

    // Anonymous keys (46 and 47 bytes), every byte value in a payload, an
    // empty payload, and a payload of 1 MiB.
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let big: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let anon = [
        row(&anonymous_key("", 0xfeed, 1), b"f", 1, &all_bytes, 0),
        row(&anonymous_key("-", 0xfeed, 2), b"f", 1, b"", 0),
        row(&anonymous_key("", 0xfeed, 3), b"f-g", 0, &big, 0),
        row(&[b'u'; 64], b"f", 2, b"\0\r\n", 0),
    ];
    assert_eq!(anon[0].key.len(), 46);
    assert_eq!(anon[1].key.len(), 47);
    writer
        .write(&anon.iter().map(put).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(
        in_order(replay_from(&mut writer), fifo),
        in_order(anon.to_vec(), fifo)
    );
    writer
        .write(
            &anon
                .iter()
                .map(|r| delete(&r.key, &r.function))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    assert_eq!(replay_from(&mut writer), Vec::new());
    writer.ping().expect("ping");
}

/// A 20,000-row batch in one write, read back in chunks; rows written after
/// the replay opened are not part of it.
fn big_batch<B: Backend>(name: &str, backend: impl Fn() -> B, fifo: bool) {
    const N: usize = 20_000;
    let mut writer = backend();
    writer.connect().expect("connect");
    let payload = vec![b'p'; 100];
    let rows: Vec<Row> = (0..N)
        .map(|i| {
            row(
                &anonymous_key("", 0xb16, i as u64),
                format!("f{}", i % 7).as_bytes(),
                (i % 3) as u8,
                &payload,
                0,
            )
        })
        .collect();
    let ops: Vec<Op> = rows.iter().map(put).collect();
    let started = Instant::now();
    writer.write(&ops).expect("write 20k rows");
    let took = started.elapsed();
    eprintln!(
        "{name}: one batch of {N} puts in {:.1} ms ({:.0} rows/s)",
        took.as_secs_f64() * 1e3,
        N as f64 / took.as_secs_f64()
    );

    // Open the replay, then write more: new rows and a replacement.
    let mut source = writer.open_replay().expect("open replay");
    let later: Vec<Op> = (0..100)
        .map(|i| put(&row(format!("later-{i}").as_bytes(), b"f0", 1, b"late", 0)))
        .collect();
    writer.write(&later).unwrap();

    let started = Instant::now();
    let mut chunks = 0;
    let mut replayed = Vec::new();
    loop {
        let chunk = source.next_chunk().expect("replay chunk");
        if chunk.is_empty() {
            break;
        }
        chunks += 1;
        replayed.extend(chunk);
    }
    eprintln!(
        "{name}: replayed {} rows in {chunks} chunks in {:.1} ms",
        replayed.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    assert!(chunks >= 2, "rows come back in chunks ({chunks})");
    assert_eq!(
        replayed.len(),
        N,
        "rows written after the replay opened are left out"
    );
    assert_eq!(in_order(replayed, fifo), in_order(rows.clone(), fifo));

    // Deleting them all is one batch too.
    let deletes: Vec<Op> = rows.iter().map(|r| delete(&r.key, &r.function)).collect();
    let started = Instant::now();
    writer.write(&deletes).expect("delete 20k rows");
    let took = started.elapsed();
    eprintln!(
        "{name}: one batch of {N} deletes in {:.1} ms ({:.0} rows/s)",
        took.as_secs_f64() * 1e3,
        N as f64 / took.as_secs_f64()
    );
    assert_eq!(replay_from(&mut writer).len(), 100);
}

/// Mixed batches as a busy server makes them: each job's put and, for most,
/// its delete a little later.
fn mixed_batches<B: Backend>(name: &str, backend: impl Fn() -> B) {
    let mut writer = backend();
    writer.connect().expect("connect");
    let mut ops = Vec::new();
    let mut written = 0;
    let started = Instant::now();
    for batch in 0..10u64 {
        ops.clear();
        for i in 0..2000u64 {
            let id = batch * 2000 + i;
            ops.push(put(&row(
                &anonymous_key("", 0x31, id),
                b"work",
                1,
                &[7; 64],
                0,
            )));
            if id >= 1000 {
                ops.push(delete(&anonymous_key("", 0x31, id - 1000), b"work"));
            }
        }
        written += ops.len();
        writer.write(&ops).unwrap();
    }
    let took = started.elapsed();
    eprintln!(
        "{name}: {written} mixed puts and deletes in 10 batches in {:.1} ms ({:.0} writes/s)",
        took.as_secs_f64() * 1e3,
        written as f64 / took.as_secs_f64()
    );
    assert_eq!(replay_from(&mut writer).len(), 1000);
}

/// Takes the server down: every call of the writer fails, and at once. Then
/// brings it back on the same port, and returns the row the writer wrote after.
fn down_and_back<B: Backend>(server: &mut impl Outage, writer: &mut B) -> Row {
    server.go_down();
    let started = Instant::now();
    assert!(writer.write(&[put(&row(b"x", b"f", 1, b"", 0))]).is_err());
    assert!(writer.ping().is_err());
    assert!(writer.connect().is_err());
    assert!(writer.write(&[put(&row(b"x", b"f", 1, b"", 0))]).is_err());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "an outage is noticed at once, took {:?}",
        started.elapsed()
    );

    server.come_back();
    writer.connect().expect("connect after the restart");
    let after = row(b"after", b"f", 1, b"2", 0);
    writer
        .write(&[put(&after)])
        .expect("write after the restart");
    writer.ping().unwrap();
    after
}

// ---------------------------------------------------------------------------
// PostgreSQL

#[test]
fn postgres_keeps_and_replays_the_queue() {
    let server = start_postgres();
    round_trip(|| server.backend(DEFAULT_TABLE), true);
    big_batch("postgres", || server.backend("big"), true);
    mixed_batches("postgres", || server.backend("mixed"));

    // The table is gearmand's, plus gearbox_seq.
    let mut client = server.client();
    let columns: Vec<(String, String)> = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_name = 'queue' ORDER BY ordinal_position",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let names: Vec<&str> = columns.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "unique_key",
            "function_name",
            "priority",
            "data",
            "when_to_run",
            "gearbox_seq"
        ]
    );
}

#[test]
fn postgres_reads_and_writes_a_table_gearmand_made() {
    let server = start_postgres();
    let mut client = server.client();
    // gearmand's statements, verbatim but for the table name (mixed case, as
    // a user might pass it to --libpq-table; unquoted, it is folded).
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS GearQueue (unique_key VARCHAR(64), \
             function_name VARCHAR(255), priority INTEGER, data BYTEA, when_to_run INTEGER, \
             UNIQUE (unique_key, function_name))",
        )
        .unwrap();
    let insert = "INSERT INTO GearQueue (priority, unique_key, function_name, data, when_to_run) \
                  VALUES($1,$2,$3,$4::BYTEA,$5)";
    for (i, unique) in ["g1", "g2", "g3"].iter().enumerate() {
        client
            .execute(
                insert,
                &[
                    &(i as i32),
                    unique,
                    &"gm-func",
                    &vec![i as u8, 0, 255],
                    &0i32,
                ],
            )
            .unwrap();
    }
    let expected: Vec<Row> = (0..3)
        .map(|i| {
            row(
                format!("g{}", i + 1).as_bytes(),
                b"gm-func",
                i,
                &[i, 0, 255],
                0,
            )
        })
        .collect();
    // Read in physical order, as gearmand reads it.
    assert_eq!(replay(server.backend("GearQueue")), expected);

    // gearbox writes into it, and gearmand's reader (its SELECT) sees it.
    let mut writer = server.backend("GearQueue");
    writer.connect().unwrap();
    let mine = row(b"mine", b"gm-func", 2, b"from gearbox", 1_900_000_000);
    writer
        .write(&[put(&mine), delete(b"g2", b"gm-func")])
        .unwrap();
    let seen: Vec<(String, String, i32, Vec<u8>, i32)> = client
        .query(
            "SELECT unique_key,function_name,priority,data,when_to_run FROM GearQueue",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(seen.len(), 3);
    assert!(seen.contains(&(
        "mine".into(),
        "gm-func".into(),
        2,
        b"from gearbox".to_vec(),
        1_900_000_000
    )));
    // The table was not altered.
    let columns: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'gearqueue'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(columns, 5);

    // An old table without when_to_run gets it, as the SQLite store does.
    client
        .batch_execute(
            "CREATE TABLE old_queue (unique_key VARCHAR(64), function_name VARCHAR(255), \
             priority INTEGER, data BYTEA, UNIQUE (unique_key, function_name)); \
             INSERT INTO old_queue VALUES ('o', 'f', 1, 'old')",
        )
        .unwrap();
    assert_eq!(
        replay(server.backend("old_queue")),
        vec![row(b"o", b"f", 1, b"old", 0)]
    );

    // A table without gearmand's UNIQUE constraint is refused at connect.
    client
        .batch_execute(
            "CREATE TABLE loose (unique_key VARCHAR(64), function_name VARCHAR(255), \
             priority INTEGER, data BYTEA, when_to_run INTEGER)",
        )
        .unwrap();
    let refused = server.backend("loose").connect();
    assert!(refused.is_err(), "a table without the constraint");
    eprintln!("as expected: {}", refused.unwrap_err());
}

#[test]
fn postgres_leaves_out_rows_it_cannot_hold() {
    let server = start_postgres();
    let mut writer = server.backend(DEFAULT_TABLE);
    writer.connect().unwrap();
    let good = row(b"good", b"f", 1, b"ok", 0);
    writer
        .write(&[
            put(&row(b"\xff\xfe", b"f", 1, b"bad unique", 0)),
            put(&row(b"u", b"f\0", 1, b"NUL in function", 0)),
            put(&row(b"u", &[b'f'; 256], 1, b"function too long", 0)),
            put(&row(b"u", b"f", 1, b"too late", 1 << 40)),
            put(&good),
            delete(b"\xff", b"f"),
        ])
        .expect("the storable rows are written");
    assert_eq!(replay_from(&mut writer), vec![good]);
}

#[test]
fn postgres_outage_fails_fast_and_recovers() {
    let mut server = start_postgres();
    let mut writer = server.backend(DEFAULT_TABLE);
    writer.connect().unwrap();
    let before = row(b"before", b"f", 1, b"1", 0);
    writer.write(&[put(&before)]).unwrap();

    // A backend that stops answering: ping gives up within its timeout.
    let pid: i32 = {
        // The writer's backend process, a child of our postmaster.
        let mut client = server.client();
        client
            .query_one(
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'gearboxd pid %'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    {
        let _stopped = Stopped::new(pid);
        let started = Instant::now();
        assert!(writer.ping().is_err(), "ping of a stopped backend");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "ping gave up after {:?}",
            started.elapsed()
        );
    }
    writer.connect().unwrap();

    // A server that accepts connections but does not answer: connecting
    // gives up in time.
    {
        let _stopped = Stopped::server(server.pid());
        let started = Instant::now();
        assert!(writer.connect().is_err(), "connect to a stopped server");
        assert!(
            started.elapsed() < Duration::from_secs(7),
            "connect gave up after {:?}",
            started.elapsed()
        );
    }
    writer.connect().unwrap();

    let after = down_and_back(&mut server, &mut writer);
    assert_eq!(replay_from(&mut writer), vec![before, after]);
}

/// One server per table: a second backend on the table is refused at
/// connect (after a short wait: in this one process it counts as an earlier
/// session of the same server); another table is not; once the first is
/// gone, the table is free.
#[test]
fn postgres_allows_one_server_per_table() {
    let server = start_postgres();
    let mut first = server.backend(DEFAULT_TABLE);
    first.connect().unwrap();
    let refused = server.backend(DEFAULT_TABLE).connect().unwrap_err();
    assert!(
        refused
            .0
            .contains("holds the lock of table \"public\".\"queue\""),
        "{refused}"
    );
    server.backend("other").connect().expect("another table");
    drop(first);
    server
        .backend(DEFAULT_TABLE)
        .connect()
        .expect("the table once its owner is gone");
}

// ---------------------------------------------------------------------------
// Redis

#[test]
fn redis_keeps_and_replays_the_queue() {
    let server = start_redis(None);
    round_trip(|| server.backend(DEFAULT_PREFIX), false);
    big_batch("redis", || server.backend("big"), false);
    mixed_batches("redis", || server.backend("mixed"));

    // gearmand's layout: <prefix>-<function>-<unique>, a hash.
    let mut conn = server.client().unwrap();
    let mut writer = server.backend(DEFAULT_PREFIX);
    writer.connect().unwrap();
    writer
        .write(&[
            put(&row(b"u-1", b"resize-image", 0, b"payload", 0)),
            put(&row(b"u2", b"f", 1, b"later", 1_900_000_000)),
        ])
        .unwrap();
    let fields: BTreeMap<String, Vec<u8>> = redis::cmd("HGETALL")
        .arg("_gear_-resize-image-u-1")
        .query(&mut conn)
        .unwrap();
    let expected: BTreeMap<String, Vec<u8>> = [
        ("data", &b"payload"[..]),
        ("priority", b"0"),
        ("function", b"resize-image"),
        ("unique", b"u-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_vec()))
    .collect();
    assert_eq!(fields, expected);
    let when: String = redis::cmd("HGET")
        .arg("_gear_-f-u2")
        .arg("when_to_run")
        .query(&mut conn)
        .unwrap();
    assert_eq!(when, "1900000000");
    // Keys of other prefixes, or of other programs, are not ours.
    let _: () = redis::cmd("SET")
        .arg("_gear_x-f-u")
        .arg("not ours")
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("unrelated")
        .arg("1")
        .query(&mut conn)
        .unwrap();
    assert_eq!(replay(server.backend(DEFAULT_PREFIX)).len(), 2);
    let _: () = redis::cmd("DEL")
        .arg("_gear_-f-u2")
        .query(&mut conn)
        .unwrap();

    // Rows gearmand wrote: a hash with only data and priority (1.1.16 to
    // 1.1.22), and a plain string (before 1.1.16). Their function and unique
    // come from the key.
    let _: () = redis::cmd("HSET")
        .arg("_gear_-reverse-g1")
        .arg("data")
        .arg(b"\x00gm\xff".as_slice())
        .arg("priority")
        .arg("2")
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("_gear_-reverse-g2")
        .arg("old string")
        .query(&mut conn)
        .unwrap();
    let mut rows = replay(server.backend(DEFAULT_PREFIX));
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        rows,
        vec![
            row(b"g1", b"reverse", 2, b"\x00gm\xff", 0),
            row(b"g2", b"reverse", 1, b"old string", 0),
            row(b"u-1", b"resize-image", 0, b"payload", 0),
        ]
    );
    // gearbox replaces and deletes them like its own.
    writer
        .write(&[
            put(&row(b"g2", b"reverse", 0, b"new", 0)),
            delete(b"g1", b"reverse"),
        ])
        .unwrap();
    let kind: String = redis::cmd("TYPE")
        .arg("_gear_-reverse-g2")
        .query(&mut conn)
        .unwrap();
    assert_eq!(kind, "hash");
    let exists: i64 = redis::cmd("EXISTS")
        .arg("_gear_-reverse-g1")
        .query(&mut conn)
        .unwrap();
    assert_eq!(exists, 0);

    // Redis has no snapshot: a row deleted after the replay opened is not
    // returned (and is no error).
    let mut reader = server.backend(DEFAULT_PREFIX);
    reader.connect().unwrap();
    let mut source = reader.open_replay().unwrap();
    writer.write(&[delete(b"g2", b"reverse")]).unwrap();
    assert_eq!(
        drain(source.as_mut()),
        vec![row(b"u-1", b"resize-image", 0, b"payload", 0)]
    );
}

#[test]
fn redis_outage_fails_fast_and_recovers() {
    let mut server = start_redis(Some("s3cret"));
    let mut wrong = Redis::new(RedisConfig {
        host: "127.0.0.1".into(),
        port: server.port(),
        password: Some("wrong".into()),
        prefix: DEFAULT_PREFIX.into(),
    });
    assert!(wrong.connect().is_err(), "a wrong password is refused");

    let mut writer = server.backend(DEFAULT_PREFIX);
    writer.connect().unwrap();
    writer
        .write(&[put(&row(b"before", b"f", 1, b"1", 0))])
        .unwrap();

    // A server that stops answering: ping and connect give up in time.
    {
        let _stopped = Stopped::server(server.pid());
        let started = Instant::now();
        assert!(writer.ping().is_err(), "ping of a stopped server");
        assert!(writer.connect().is_err(), "connect to a stopped server");
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(6),
            "gave up after {elapsed:?}"
        );
    }
    writer.connect().unwrap();

    // This Redis keeps nothing across a restart (--save '', no append-only
    // file), so only the row written after it is there.
    let after = down_and_back(&mut server, &mut writer);
    assert_eq!(replay(server.backend(DEFAULT_PREFIX)), vec![after]);
}
