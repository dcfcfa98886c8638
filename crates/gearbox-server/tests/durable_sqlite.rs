//! The SQLite store end to end, in process: an acknowledged job is a row on
//! disk, a restart brings every row back as the job it was, and finished jobs
//! leave the table. The file is read with SQLite directly, as gearmand would.
//! The store runs with gearboxd's default, `synchronous=NORMAL`, whose commits
//! run inline on the thread that handled the submit.

mod support;

use gearbox_server::store::sqlite::{Sqlite, SqliteConfig, Sync, DEFAULT_TABLE};
use gearbox_server::store::{Durable, QueueStore};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::*;

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gearbox-durable-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("queue.sqlite3")
}

fn sqlite_store(path: &Path) -> Box<dyn QueueStore> {
    let backend = Sqlite::new(SqliteConfig {
        path: path.to_path_buf(),
        table: DEFAULT_TABLE.into(),
        sync: Sync::Normal,
    });
    Box::new(Durable::open(Box::new(backend)).expect("open sqlite store"))
}

async fn server_on(path: &Path) -> TestServer {
    TestServer::with_store(config(), sqlite_store(path)).await
}

/// (unique_key, function_name, priority, data, when_to_run).
type DbRow = (String, String, i64, Vec<u8>, i64);

/// The jobs in the file: the queue table's rows, then the log's (the rows not
/// yet filed in the table), each in rowid order.
fn rows(path: &Path) -> Vec<DbRow> {
    let mut rows = table_rows(path);
    rows.extend(log_rows(path));
    rows
}

fn table_rows(path: &Path) -> Vec<DbRow> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut statement = conn
        .prepare(
            "SELECT unique_key, function_name, priority, data, when_to_run \
             FROM gearman_queue ORDER BY rowid",
        )
        .unwrap();
    let rows = statement
        .query_map([], |r| {
            // gearmand binds data as a BLOB, but a row may hold TEXT.
            let data = r.get_ref(3)?.as_bytes()?.to_vec();
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, data, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<Vec<DbRow>, _>>()
        .unwrap();
    rows
}

/// The log's rows, decoded from the layout its module documents:
/// priority u8, when u64, key length u32, key, function length u32,
/// function, data (little-endian).
fn log_rows(path: &Path) -> Vec<DbRow> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut statement = conn
        .prepare("SELECT job FROM gearman_queue_gearbox_log ORDER BY rowid")
        .unwrap();
    let blobs = statement
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    blobs.iter().map(|job| decode_log_row(job)).collect()
}

fn decode_log_row(job: &[u8]) -> DbRow {
    let u32_at = |at: usize| u32::from_le_bytes(job[at..at + 4].try_into().unwrap()) as usize;
    let when = u64::from_le_bytes(job[1..9].try_into().unwrap());
    let key_end = 13 + u32_at(9);
    let function_end = key_end + 4 + u32_at(key_end);
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap();
    (
        text(&job[13..key_end]),
        text(&job[key_end + 4..function_end]),
        i64::from(job[0]),
        job[function_end..].to_vec(),
        when as i64,
    )
}

/// The table as gearmand 1.1.20 creates it, then `sql`.
fn gearmand_table(path: &Path, sql: &str) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE gearman_queue ( unique_key TEXT, function_name TEXT, \
         priority INTEGER, data BLOB, when_to_run INTEGER, \
         PRIMARY KEY (unique_key, function_name));",
    )
    .unwrap();
    conn.execute_batch(sql).unwrap();
}

/// Polls an admin listing until replay has brought it to `expected`.
async fn wait_for_listing(admin: &mut Conn, command: &str, expected: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let listing = admin.listing(command).await;
        if listing == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replay did not finish: {listing:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the batched deletes of finished jobs to reach the file.
async fn wait_for_rows(path: &Path, count: usize) {
    let deadline = Instant::now() + WAIT;
    while rows(path).len() != count {
        assert!(Instant::now() < deadline, "rows left: {:?}", rows(path));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stop(mut server: TestServer) {
    server.stop();
    assert!(server.stopped_within(WAIT).await, "server did not stop");
}

#[tokio::test]
async fn a_job_is_on_disk_before_its_job_created_arrives() {
    let path = temp_db("ack");
    let server = server_on(&path).await;
    let mut client = server.conn().await;
    for n in 0..100 {
        let data = format!("job-{n}");
        client.submit(T::SUBMIT_JOB_BG, "f", "", &data).await;
        // Read the file the moment the ack arrives: had the ack gone out
        // before the commit, the row would be missing here.
        let on_disk = rows(&path);
        assert_eq!(on_disk.len(), n + 1, "after the ack of {data}");
        assert_eq!(on_disk[n].3, data.as_bytes());
    }
    // A submit that joins a queued background job is acknowledged the same way.
    client.submit(T::SUBMIT_JOB_BG, "f", "same", "x").await;
    client.submit(T::SUBMIT_JOB_BG, "f", "same", "x").await;
    assert_eq!(rows(&path).len(), 101);
    stop(server).await;
}

#[tokio::test]
async fn a_restart_brings_back_every_background_job_as_it_was() {
    let path = temp_db("restart");
    let server = server_on(&path).await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_LOW_BG, "f", "low", "l").await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "empty-1").await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "empty-2").await;
    client.submit(T::SUBMIT_JOB_BG, "f", "-", "dash-1").await;
    client.submit(T::SUBMIT_JOB_BG, "f", "-", "dash-2").await;
    client.submit(T::SUBMIT_JOB_HIGH_BG, "f", "high", "h").await;
    let later = (std::time::SystemTime::now() + Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    client
        .submit_epoch("f", "epoch", &later.to_string(), "e")
        .await;
    // Foreground jobs are not persisted, as in gearmand.
    client
        .send(T::SUBMIT_JOB, &[b"f", b"fg", b"foreground"])
        .await;
    client.created().await;
    assert_eq!(rows(&path).len(), 7, "{:?}", rows(&path));
    stop(server).await;

    let server = server_on(&path).await;
    let mut admin = server.conn().await;
    wait_for_listing(&mut admin, "status", "f\t7\t0\t0\n.\n").await;
    assert_eq!(admin.listing("prioritystatus").await, "f\t1\t5\t1\t0\n.\n");
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    let mut taken = Vec::new();
    for _ in 0..6 {
        worker.send(T::GRAB_JOB_UNIQ, &[]).await;
        let p = worker.expect(T::JOB_ASSIGN_UNIQ).await;
        let unique = String::from_utf8_lossy(p.arg(2)).into_owned();
        let data = String::from_utf8_lossy(p.arg(3)).into_owned();
        worker.send(T::WORK_COMPLETE, &[p.arg(0), b""]).await;
        taken.push(format!("{unique}={data}"));
    }
    worker.grab_none().await;
    // Priority first, then the order of submission; uniques restored.
    assert_eq!(
        taken,
        ["high=h", "=empty-1", "=empty-2", "-=dash-1", "-=dash-2", "low=l"]
    );
    // Finished jobs leave the table; the future epoch job stays.
    wait_for_rows(&path, 1).await;
    let (unique, function, priority, data, when) = rows(&path).remove(0);
    assert_eq!(
        (
            unique.as_str(),
            function.as_str(),
            priority,
            data.as_slice()
        ),
        ("epoch", "f", 1, &b"e"[..])
    );
    assert_eq!(when, later as i64);
    stop(server).await;
}

#[tokio::test]
async fn a_queue_file_in_gearmand_layout_is_replayed() {
    let path = temp_db("gearmand-layout");
    gearmand_table(
        &path,
        "INSERT INTO gearman_queue VALUES ('u1', 'g', 1, X'00FF01', 0);
         INSERT INTO gearman_queue VALUES ('', 'g', 2, 'anon', 0);
         INSERT INTO gearman_queue VALUES ('-', 'g', 0, 'dash', 0);",
    );
    let server = server_on(&path).await;
    let mut admin = server.conn().await;
    wait_for_listing(&mut admin, "prioritystatus", "g\t1\t1\t1\t0\n.\n").await;
    let mut worker = server.conn().await;
    worker.can_do("g").await;
    let mut taken = Vec::new();
    for _ in 0..3 {
        worker.send(T::GRAB_JOB_UNIQ, &[]).await;
        let p = worker.expect(T::JOB_ASSIGN_UNIQ).await;
        taken.push((p.arg(2).to_vec(), p.arg(3).to_vec()));
        worker.send(T::WORK_COMPLETE, &[p.arg(0), b""]).await;
    }
    assert_eq!(
        taken,
        [
            (b"-".to_vec(), b"dash".to_vec()),
            (b"u1".to_vec(), vec![0, 255, 1]),
            (b"".to_vec(), b"anon".to_vec()),
        ]
    );
    // Each row is deleted under the key gearmand gave it.
    wait_for_rows(&path, 0).await;
    stop(server).await;
}

/// Waits for the writer's idle upkeep to file the log into the queue table.
async fn wait_for_filing(path: &Path, count: usize) {
    // The writer files after a second without writes.
    let deadline = Instant::now() + WAIT;
    while !(log_rows(path).is_empty() && table_rows(path).len() == count) {
        assert!(
            Instant::now() < deadline,
            "log not filed: table {:?}, log {:?}",
            table_rows(path),
            log_rows(path)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_log_is_filed_in_gearmands_table_when_idle_and_at_exit() {
    let path = temp_db("filing");
    let server = server_on(&path).await;
    let mut client = server.conn().await;
    for unique in ["a", "b", "c"] {
        client.submit(T::SUBMIT_JOB_BG, "f", unique, unique).await;
    }
    // Acknowledged rows are in the log, not yet in gearmand's table.
    assert_eq!(log_rows(&path).len(), 3);
    assert!(table_rows(&path).is_empty());
    wait_for_filing(&path, 3).await;

    // A filed job that finishes is deleted from the table by key.
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.send(T::GRAB_JOB_UNIQ, &[]).await;
    let p = worker.expect(T::JOB_ASSIGN_UNIQ).await;
    assert_eq!(&p.arg(2)[..], b"a");
    worker.send(T::WORK_COMPLETE, &[p.arg(0), b""]).await;
    wait_for_rows(&path, 2).await;

    // Rows still in the log at exit are filed before the server stops.
    client.submit(T::SUBMIT_JOB_LOW_BG, "f", "d", "d").await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "anonymous").await;
    assert_eq!(log_rows(&path).len(), 2);
    stop(server).await;
    assert!(log_rows(&path).is_empty());
    let table: Vec<(String, i64, Vec<u8>)> = table_rows(&path)
        .into_iter()
        .map(|(unique, _, priority, data, _)| (unique, priority, data))
        .collect();
    assert_eq!(
        &table[..3],
        [
            ("b".into(), 1, b"b".to_vec()),
            ("c".into(), 1, b"c".to_vec()),
            ("d".into(), 2, b"d".to_vec()),
        ]
    );
    // gearmand would take the anonymous job's row key as its unique.
    assert!(table[3].0.contains("~gearbox-anon~"), "{:?}", table[3]);
}

/// A log row in the layout `log_rows` decodes.
fn encode_log_row(priority: u8, unique: &str, function: &str, data: &str) -> Vec<u8> {
    let mut job = vec![priority];
    job.extend(0u64.to_le_bytes());
    for field in [unique, function] {
        job.extend((field.len() as u32).to_le_bytes());
        job.extend(field.as_bytes());
    }
    job.extend(data.as_bytes());
    job
}

#[tokio::test]
async fn a_job_left_in_both_tables_runs_once_and_leaves_neither() {
    // A kill can leave a job's row in the log while gearmand's table holds an
    // older row with the same key (say, written by gearmand before the move).
    let path = temp_db("both-tables");
    gearmand_table(
        &path,
        "INSERT INTO gearman_queue VALUES ('u', 'g', 1, 'from the table', 0);
         CREATE TABLE gearman_queue_gearbox_log (job BLOB);",
    );
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO gearman_queue_gearbox_log (rowid, job) VALUES (7, ?1), (8, ?2)",
            [
                encode_log_row(1, "u", "g", "from the log"),
                encode_log_row(0, "v", "g", "only in the log"),
            ],
        )
        .unwrap();
    }
    let server = server_on(&path).await;
    let mut admin = server.conn().await;
    wait_for_listing(&mut admin, "status", "g\t2\t0\t0\n.\n").await;
    let mut worker = server.conn().await;
    worker.can_do("g").await;
    let mut taken = Vec::new();
    for _ in 0..2 {
        worker.send(T::GRAB_JOB_UNIQ, &[]).await;
        let p = worker.expect(T::JOB_ASSIGN_UNIQ).await;
        taken.push(String::from_utf8_lossy(p.arg(2)).into_owned());
        worker.send(T::WORK_COMPLETE, &[p.arg(0), b""]).await;
    }
    worker.grab_none().await;
    assert_eq!(taken, ["v", "u"]);
    wait_for_rows(&path, 0).await;
    stop(server).await;
    assert_eq!(rows(&path), []);
}
