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
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Private servers

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh directory under `base`.
fn temp_dir(base: &Path, name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = base.join(format!(
        "gearbox-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
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
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// Signals the child, waits up to 20 s for it to exit, then kills it.
fn stop_child(child: &mut Child, sig: i32) {
    signal(child, sig);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A PostgreSQL cluster of our own: initdb in a temp dir, `postgres` on a
/// free port, trust authentication for the user `gearbox`.
struct PgServer {
    dir: PathBuf,
    bindir: PathBuf,
    port: u16,
    /// (uid, gid) of `postgres` when we run as root.
    user: Option<(u32, u32)>,
    child: Option<Child>,
}

fn postgres_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GEARBOX_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file() && dir.join("postgres").is_file(),
            "GEARBOX_PG_BINDIR={} holds no initdb and postgres",
            dir.display()
        );
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    if let Some(initdb) = find_in_path("initdb") {
        let initdb = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        return initdb.parent().unwrap().to_path_buf();
    }
    panic!(
        "PostgreSQL server binaries (initdb, postgres) not found: these tests need them. \
         Install the Debian package `postgresql` (protocol-tests/install-deps.sh does) \
         or set GEARBOX_PG_BINDIR to the directory holding initdb and postgres."
    );
}

fn postgres_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    // SAFETY: getpwnam returns null or a pointer to static storage, read at once.
    let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    assert!(
        !pw.is_null(),
        "running as root, and PostgreSQL refuses to run as root, but there is no \
         `postgres` user to run it as (the `postgresql` package creates one)"
    );
    // SAFETY: pw is not null.
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

impl PgServer {
    fn start() -> PgServer {
        let bindir = postgres_bindir();
        let user = postgres_user();
        // The `postgres` user must reach the directory: $TMPDIR may be private to root.
        let base = match user {
            Some(_) => PathBuf::from("/tmp"),
            None => std::env::temp_dir(),
        };
        let dir = temp_dir(&base, "pg");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let mut server = PgServer {
            dir,
            bindir,
            port: free_port(),
            user,
            child: None,
        };
        let status = server
            .command("initdb")
            .args([
                "-D",
                "data",
                "-U",
                "gearbox",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(server.dir.join("initdb.log")).unwrap())
            .status()
            .expect("run initdb");
        assert!(
            status.success(),
            "initdb failed:\n{}",
            log_tail(&server.dir.join("initdb.log"))
        );
        server.spawn();
        server
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bindir.join(program));
        command.current_dir(&self.dir);
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        command
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))
            .unwrap();
        let child = self
            .command("postgres")
            .args(["-D", "data", "-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                panic!(
                    "postgres exited ({status}):\n{}",
                    log_tail(&self.dir.join("postgres.log"))
                );
            }
            if postgres::Client::connect(&self.conninfo(), postgres::NoTls).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not come up:\n{}",
                log_tail(&self.dir.join("postgres.log"))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fast shutdown: sessions are ended, as in a real outage.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, libc::SIGINT);
        }
    }

    fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=gearbox dbname=postgres",
            self.port
        )
    }

    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.conninfo(), postgres::NoTls).unwrap()
    }

    fn backend(&self, table: &str) -> Postgres {
        Postgres::new(PostgresConfig {
            conninfo: self.conninfo(),
            table: table.into(),
        })
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis of our own, in memory only.
struct RedisServer {
    dir: PathBuf,
    binary: PathBuf,
    port: u16,
    password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    fn start(password: Option<&str>) -> RedisServer {
        let binary = std::env::var_os("GEARBOX_REDIS_SERVER")
            .map(PathBuf::from)
            .filter(|p| p.is_file())
            .or_else(|| find_in_path("redis-server"))
            .unwrap_or_else(|| {
                panic!(
                    "redis-server not found: these tests need it. Install the Debian package \
                     `redis-server` (protocol-tests/install-deps.sh does) or set \
                     GEARBOX_REDIS_SERVER to its path."
                )
            });
        let mut server = RedisServer {
            dir: temp_dir(&std::env::temp_dir(), "redis"),
            binary,
            port: free_port(),
            password: password.map(str::to_owned),
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = self.dir.join("redis.log");
        let mut command = Command::new(&self.binary);
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log);
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                panic!("redis-server exited ({status}):\n{}", log_tail(&log));
            }
            if let Ok(mut conn) = self.client() {
                if redis::cmd("PING").query::<()>(&mut conn).is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not come up:\n{}",
                log_tail(&log)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, libc::SIGTERM);
        }
    }

    fn client(&self) -> redis::RedisResult<redis::Connection> {
        let url = match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        };
        redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(1))
    }

    fn backend(&self, prefix: &str) -> Redis {
        Redis::new(RedisConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            password: self.password.clone(),
            prefix: prefix.into(),
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
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
    }
}

fn put(row: &Row) -> Op {
    Op::Put(row.clone())
}

fn delete(key: &[u8], function: &[u8]) -> Op {
    Op::Delete {
        key: key.to_vec(),
        function: function.to_vec(),
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

/// What a freshly started server would replay.
fn replay(mut backend: impl Backend) -> Vec<Row> {
    backend.connect().expect("connect");
    let mut source = backend.open_replay().expect("open replay");
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
        in_order(replay(backend()), fifo),
        in_order(vec![a.clone(), b.clone(), c.clone()], fifo)
    );

    // Delete, and an empty batch.
    writer.write(&[delete(b"b", b"reverse")]).unwrap();
    writer.write(&[]).unwrap();
    assert_eq!(
        in_order(replay(backend()), fifo),
        in_order(vec![a.clone(), c.clone()], fifo)
    );

    // A put replaces the row with the same (unique, function), and moves it
    // to the end, as SQLite's INSERT OR REPLACE does.
    let a2 = row(b"a", b"reverse", 0, b"replaced", 1_800_000_000);
    writer.write(&[put(&a2)]).unwrap();
    assert_eq!(
        in_order(replay(backend()), fifo),
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
        in_order(replay(backend()), fifo),
        in_order(vec![a2.clone(), a_other.clone(), d2.clone()], fifo)
    );
    writer
        .write(&[
            delete(b"a", b"reverse"),
            delete(b"a", b"other"),
            delete(b"d", b"reverse"),
        ])
        .unwrap();
    assert_eq!(replay(backend()), Vec::new());

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
        in_order(replay(backend()), fifo),
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
    assert_eq!(replay(backend()), Vec::new());
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
    let mut reader = backend();
    reader.connect().expect("connect reader");
    let mut source = reader.open_replay().expect("open replay");
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
    assert_eq!(replay(backend()).len(), 100);
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
    assert_eq!(replay(backend()).len(), 1000);
}

// ---------------------------------------------------------------------------
// PostgreSQL

#[test]
fn postgres_keeps_and_replays_the_queue() {
    let server = PgServer::start();
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
    let server = PgServer::start();
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
    let server = PgServer::start();
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
    assert_eq!(replay(server.backend(DEFAULT_TABLE)), vec![good]);
}

#[test]
fn postgres_outage_fails_fast_and_recovers() {
    let mut server = PgServer::start();
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
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'gearboxd'",
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
        let _stopped = Stopped::new(server.child.as_ref().unwrap().id() as i32);
        let started = Instant::now();
        assert!(writer.connect().is_err(), "connect to a stopped server");
        assert!(
            started.elapsed() < Duration::from_secs(7),
            "connect gave up after {:?}",
            started.elapsed()
        );
    }
    writer.connect().unwrap();

    server.stop();
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

    server.spawn();
    writer.connect().expect("connect after the restart");
    let after = row(b"after", b"f", 1, b"2", 0);
    writer
        .write(&[put(&after)])
        .expect("write after the restart");
    writer.ping().unwrap();
    assert_eq!(replay(server.backend(DEFAULT_TABLE)), vec![before, after]);
}

// ---------------------------------------------------------------------------
// Redis

#[test]
fn redis_keeps_and_replays_the_queue() {
    let server = RedisServer::start(None);
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
    let mut server = RedisServer::start(Some("s3cret"));
    let mut wrong = Redis::new(RedisConfig {
        host: "127.0.0.1".into(),
        port: server.port,
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
        let _stopped = Stopped::new(server.child.as_ref().unwrap().id() as i32);
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

    server.stop();
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

    // This Redis keeps nothing across a restart (--save ''), so only the
    // row written after it is there.
    server.spawn();
    writer.connect().expect("connect after the restart");
    let after = row(b"after", b"f", 1, b"2", 0);
    writer
        .write(&[put(&after)])
        .expect("write after the restart");
    writer.ping().unwrap();
    assert_eq!(replay(server.backend(DEFAULT_PREFIX)), vec![after]);
}
