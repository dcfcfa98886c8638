//! The embedded store (`-q libsqlite3 --libsqlite3-db FILE`), in gearmand's own
//! table layout, so a queue file moves between gearmand and gearboxd both ways:
//!
//! ```sql
//! CREATE TABLE gearman_queue (unique_key TEXT, function_name TEXT,
//!   priority INTEGER, data BLOB, when_to_run INTEGER,
//!   PRIMARY KEY (unique_key, function_name))
//! ```
//!
//! **New rows go to a log first.** Filing a row in that table means inserting
//! into two B-trees, the table and its primary-key index, the index at a
//! random place for uuid uniques: measured, about 70% of the server's CPU per
//! submit. So a submit appends its row to a second table without an index,
//! `<table>_gearbox_log (job BLOB)`, the whole row in one value (`log_row.rs`),
//! at a rowid the store chooses (the run's base plus the job id, see
//! [`Backend::log_base`]), and a finished job is deleted there by rowid. When the writer has been idle for a second, and at exit, it
//! files the log's rows into the queue table in chunks ([`Backend::tidy`]), so
//! a stopped gearboxd leaves a file gearmand reads as its own. A finished job
//! is also deleted from the queue table by key, wherever its row has gone.
//! After a kill, rows may be left in the log: gearboxd replays them (start and
//! stop it once before handing such a file to gearmand).
//!
//! A new file gets 16 KiB pages: a commit of a few hundred rows then writes a
//! few WAL frames instead of dozens. The database is in WAL mode: a commit
//! appends to the WAL instead of rewriting pages, and replay reads a snapshot
//! on its own connection while the writer goes on. Checkpoints run beside the
//! writer, on a connection and thread of their own (`checkpoint.rs`).
//!
//! **Sync.** With `--libsqlite3-sync full` (the default) the connection runs
//! with `synchronous=FULL`: a commit returns once the WAL holding it is
//! synced, and a JOB_CREATED leaves only after that, so the job survives a
//! power cut as well as a kill -9. `normal` (`synchronous=NORMAL`) skips that
//! sync: a committed job survives a crash of the process, not of the machine.
//! (From session 3 to 5 the connection committed with NORMAL and a thread of
//! its own synced the WAL, so that one batch was written while the previous
//! one was synced. On this 2-core machine SQLite's own FULL was measured
//! faster in every scenario, 10% to 22%, and it is far less code.)

mod checkpoint;
mod compact;
mod guard;
mod log_row;
mod replay;

use super::backend::{Backend, Op, ReplaySource, Row};
use super::StoreError;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, CachedStatement, Connection};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// gearmand's default table name.
pub const DEFAULT_TABLE: &str = "gearman_queue";

/// Rows filed from the log into the queue table per transaction: about 20 ms
/// of work, the longest a submit arriving at an idle server waits behind it.
const FOLD_CHUNK: i64 = 5_000;

/// How long to wait after a failed compaction before trying again.
const COMPACT_RETRY: Duration = Duration::from_secs(600);

/// How durable a commit is; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    Full,
    Normal,
}

#[derive(Debug, Clone)]
pub struct SqliteConfig {
    pub path: PathBuf,
    pub table: String,
    pub sync: Sync,
}

pub struct Sqlite {
    config: SqliteConfig,
    conn: Option<Connection>,
    /// See [`Backend::log_base`]; fixed at the first connect.
    base: Option<i64>,
    /// Started at the first connect; see `checkpoint`.
    checkpointer: Option<checkpoint::Checkpointer>,
    /// No compaction before this, after one failed.
    compact_after: Option<Instant>,
    /// The lock on the file, and the file the path must still name.
    guard: Option<guard::FileGuard>,
    /// A new file took the place of the old one: see [`Backend::take_replaced`].
    replaced: bool,
}

/// The quoted names of the two tables.
#[derive(Debug, Clone)]
struct Tables {
    queue: String,
    log: String,
}

impl Sqlite {
    pub fn new(config: SqliteConfig) -> Sqlite {
        Sqlite {
            config,
            conn: None,
            base: None,
            checkpointer: None,
            compact_after: None,
            guard: None,
            replaced: false,
        }
    }

    /// Keeps the lock on the file the path names. The first time, and when a
    /// new file took the old one's place, locks it (see `guard`); a file that
    /// is there but cannot be written is an error until it can.
    fn guard_path(&mut self) -> Result<(), StoreError> {
        if let Some(guard) = self.guard.as_mut() {
            match guard.check() {
                Ok(()) => return Ok(()),
                Err(fault @ guard::Fault::Unwritable(_)) => return Err(fault.into_error()),
                Err(_) => {}
            }
        }
        let guard = guard::FileGuard::acquire(&self.config.path)?;
        if let Some(old) = self.guard.replace(guard) {
            tracing::warn!(path = %self.config.path.display(), old = ?old.identity(),
                "a new queue file is at the path; every accepted job is written into it again");
            self.replaced = true;
            self.conn = None;
            // The checkpoint connection still has the old file open.
            self.checkpointer = None;
        }
        Ok(())
    }

    /// Before a commit (at most every 100 ms) and at every upkeep: the path
    /// must still name the locked file, and it must be writable.
    fn check_path(&mut self, always: bool) -> Result<(), StoreError> {
        let guard = self
            .guard
            .as_mut()
            .ok_or_else(|| StoreError("sqlite: not connected".into()))?;
        match always {
            true => guard.check(),
            false => guard.check_due(),
        }
        .map_err(guard::Fault::into_error)
    }

    fn tables(&self) -> Tables {
        Tables {
            queue: quote_identifier(&self.config.table),
            log: quote_identifier(&format!("{}_gearbox_log", self.config.table)),
        }
    }

    /// See `compact.rs`. A failure (no room for the copy, say) is not the
    /// store failing: it is logged, and tried again after [`COMPACT_RETRY`].
    fn compact(&mut self) {
        if self
            .compact_after
            .is_some_and(|after| Instant::now() < after)
        {
            return;
        }
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        if let Err(e) = compact::compact_if_mostly_free(conn) {
            tracing::warn!(error = %e, "compacting the queue file failed; trying again in 10 minutes");
            self.compact_after = Some(Instant::now() + COMPACT_RETRY);
        }
    }

    fn conn(&mut self) -> Result<&mut Connection, StoreError> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError("sqlite: not connected".into()))
    }
}

/// Table names come from the command line; quote them rather than trust them.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn error(context: &str, e: rusqlite::Error) -> StoreError {
    StoreError(format!("sqlite: {context}: {e}"))
}

/// Uniques and function names are bytes; gearmand binds them as TEXT, so do we.
fn text(bytes: &[u8]) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(bytes))
}

const COLUMNS: &str = "unique_key, function_name, priority, data, when_to_run";

impl Backend for Sqlite {
    fn describe(&self) -> String {
        format!("sqlite {}", self.config.path.display())
    }

    fn connect(&mut self) -> Result<(), StoreError> {
        let first = self.guard.is_none();
        self.guard_path()?;
        let conn = Connection::open(&self.config.path).map_err(|e| error("open", e))?;
        if first {
            check_at_start(&conn, &self.config.path)?;
        }
        let synchronous = match self.config.sync {
            Sync::Full => "FULL",
            Sync::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous}; \
             PRAGMA busy_timeout=5000; PRAGMA cache_size=-65536; PRAGMA wal_autocheckpoint=1024;"
        ))
        .map_err(|e| error("set journal mode", e))?;
        let Tables { queue, log } = self.tables();
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {queue} (unique_key TEXT, function_name TEXT, \
             priority INTEGER, data BLOB, when_to_run INTEGER, \
             PRIMARY KEY (unique_key, function_name)); \
             CREATE TABLE IF NOT EXISTS {log} (job BLOB);"
        ))
        .map_err(|e| error("create tables", e))?;
        // Tables written by gearmand before 0.41 have no when_to_run; gearmand
        // adds the column in the same way.
        let has_when: bool = conn
            .prepare(&format!(
                "SELECT 1 FROM pragma_table_info({}) WHERE name='when_to_run'",
                quote_literal(&self.config.table)
            ))
            .and_then(|mut s| s.exists([]))
            .map_err(|e| error("inspect table", e))?;
        if !has_when {
            conn.execute_batch(&format!(
                "ALTER TABLE {queue} ADD COLUMN when_to_run INTEGER"
            ))
            .map_err(|e| error("add when_to_run", e))?;
        }
        if self.base.is_none() {
            let base: i64 = conn
                .query_row(
                    &format!("SELECT COALESCE(MAX(rowid), 0) + 1 FROM {log}"),
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| error("read the log", e))?;
            self.base = Some(base);
        }
        self.conn = Some(conn);
        if self.checkpointer.is_none() {
            self.checkpointer = Some(checkpoint::Checkpointer::start(&self.config.path));
        }
        Ok(())
    }

    fn log_base(&self) -> Option<i64> {
        self.base
    }

    /// NORMAL commits write the WAL without a sync: a few µs to tens of µs.
    fn commits_in_page_cache(&self) -> bool {
        self.config.sync == Sync::Normal
    }

    fn write(&mut self, ops: &[Op]) -> Result<(), StoreError> {
        self.check_path(false)?;
        let tables = self.tables();
        let conn = self.conn()?;
        let tx = conn.transaction().map_err(|e| error("begin", e))?;
        Writes::prepare(&tx, &tables)?.apply(ops)?;
        tx.commit().map_err(|e| error("commit", e))
    }

    fn take_replaced(&mut self) -> bool {
        std::mem::take(&mut self.replaced)
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        self.check_path(true)?;
        self.conn()?
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(|e| error("ping", e))
    }

    /// Files the oldest `FOLD_CHUNK` rows of the log into the queue table,
    /// in rowid order (so the table's own rowid order stays FIFO). Once the
    /// log is empty, compacts a file that is mostly free (`compact.rs`).
    fn tidy(&mut self) -> Result<bool, StoreError> {
        self.check_path(true)?;
        let tables = self.tables();
        let conn = self.conn()?;
        let tx = conn.transaction().map_err(|e| error("begin", e))?;
        let rows = read_log(&tx, &tables.log, 0, i64::MAX, FOLD_CHUNK)?;
        let Some(last) = rows.last().and_then(|row| row.position) else {
            // The log is empty: the one moment `VACUUM` may renumber its rowids.
            drop(tx);
            self.compact();
            return Ok(false);
        };
        let mut writes = Writes::prepare(&tx, &tables)?;
        for row in &rows {
            writes.put_in_queue(row)?;
        }
        drop(writes);
        tx.execute(
            &format!("DELETE FROM {} WHERE rowid <= ?1", tables.log),
            [last],
        )
        .map_err(|e| error("file the log", e))?;
        tx.commit().map_err(|e| error("commit", e))?;
        Ok(rows.len() as i64 >= FOLD_CHUNK)
    }

    fn open_replay(&mut self) -> Result<Box<dyn ReplaySource>, StoreError> {
        let before = self.base.unwrap_or(i64::MAX);
        Ok(Box::new(replay::SqliteReplay::open(
            &self.config.path,
            &self.tables(),
            before,
        )?))
    }
}

/// A file SQLite opened read-only, or one that is damaged, must stop the
/// start: replaying its jobs and then refusing every submit helps nobody.
fn check_at_start(conn: &Connection, path: &std::path::Path) -> Result<(), StoreError> {
    let shown = path.display();
    if conn
        .is_readonly(rusqlite::DatabaseName::Main)
        .unwrap_or(false)
    {
        return Err(StoreError(format!(
            "the queue file {shown} can only be opened read-only"
        )));
    }
    let verdict: Result<String, _> = conn.query_row("PRAGMA quick_check", [], |r| r.get(0));
    match verdict {
        Ok(ok) if ok == "ok" => Ok(()),
        Ok(problem) => Err(StoreError(format!(
            "the queue file {shown} is damaged (quick_check: {problem}); \
             move it aside and restore it from a backup, or start with a new file"
        ))),
        Err(e) => Err(StoreError(format!(
            "the queue file {shown} is not a readable SQLite database ({e}); \
             move it aside and restore it from a backup, or start with a new file"
        ))),
    }
}

/// Up to `limit` log rows with `after < rowid <= last`, in rowid order.
fn read_log(
    conn: &Connection,
    log: &str,
    after: i64,
    last: i64,
    limit: i64,
) -> Result<Vec<Row>, StoreError> {
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT rowid, job FROM {log} WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?"
        ))
        .map_err(|e| error("prepare to read the log", e))?;
    let mut rows = statement
        .query(params![after, last, limit])
        .map_err(|e| error("read the log", e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| error("read the log", e))? {
        let position: i64 = row.get(0).map_err(|e| error("read the log", e))?;
        let blob = row.get_ref(1).and_then(|v| Ok(v.as_blob()?));
        out.push(log_row::decode(
            blob.map_err(|e| error("read the log", e))?,
            position,
        )?);
    }
    Ok(out)
}

/// The statements of one write transaction.
struct Writes<'conn> {
    append_many: CachedStatement<'conn>,
    append_one: CachedStatement<'conn>,
    put_in_queue: CachedStatement<'conn>,
    delete_by_key: CachedStatement<'conn>,
    delete_at: CachedStatement<'conn>,
    /// Encoded log rows of the statement being bound.
    blobs: Vec<Vec<u8>>,
}

/// Rows per multi-row INSERT; 6 parameters each, well under SQLite's limit.
const ROWS_PER_INSERT: usize = 64;

fn append_sql(log: &str, rows: usize) -> String {
    let values = vec!["(?,?)"; rows].join(",");
    format!("INSERT OR REPLACE INTO {log} (rowid, job) VALUES {values}")
}

impl<'conn> Writes<'conn> {
    fn prepare(conn: &'conn Connection, tables: &Tables) -> Result<Self, StoreError> {
        let prepare = |sql: String| conn.prepare_cached(&sql).map_err(|e| error("prepare", e));
        let Tables { queue, log } = tables;
        Ok(Writes {
            append_many: prepare(append_sql(log, ROWS_PER_INSERT))?,
            append_one: prepare(append_sql(log, 1))?,
            put_in_queue: prepare(format!(
                "INSERT OR REPLACE INTO {queue} ({COLUMNS}) VALUES (?,?,?,?,?)"
            ))?,
            delete_by_key: prepare(format!(
                "DELETE FROM {queue} WHERE unique_key=? AND function_name=?"
            ))?,
            delete_at: prepare(format!("DELETE FROM {log} WHERE rowid=?"))?,
            blobs: vec![Vec::new(); ROWS_PER_INSERT],
        })
    }

    fn apply(&mut self, mut rest: &[Op]) -> Result<(), StoreError> {
        while let Some(first) = rest.first() {
            let appends = rest
                .iter()
                .take_while(|op| {
                    matches!(
                        op,
                        Op::Put(Row {
                            position: Some(_),
                            ..
                        })
                    )
                })
                .count();
            if appends == 0 {
                self.apply_one(first)?;
                rest = &rest[1..];
                continue;
            }
            // Consecutive rows go in as multi-row INSERTs: one statement step
            // for many rows is most of the cost of a large batch.
            let (insert, take) = match appends >= ROWS_PER_INSERT {
                true => (&mut self.append_many, ROWS_PER_INSERT),
                false => (&mut self.append_one, 1),
            };
            let rows = rest[..take].iter().map(|op| match op {
                Op::Put(row) => row,
                _ => unreachable!("counted appends"),
            });
            let mut values: Vec<ToSqlOutput<'_>> = Vec::with_capacity(take * 2);
            for (row, blob) in rows.zip(&mut self.blobs) {
                log_row::encode(row, blob);
                values.push(ToSqlOutput::from(row.position.unwrap_or_default()));
                values.push(ToSqlOutput::Borrowed(ValueRef::Blob(blob)));
            }
            insert
                .execute(rusqlite::params_from_iter(values))
                .map_err(|e| error("insert", e))?;
            rest = &rest[take..];
        }
        Ok(())
    }

    fn apply_one(&mut self, op: &Op) -> Result<(), StoreError> {
        match op {
            // A row without a position (none of this run's) goes straight to
            // the queue table.
            Op::Put(row) => self.put_in_queue(row),
            Op::Delete {
                key,
                function,
                position,
            } => {
                if let Some(position) = position {
                    self.delete_at
                        .execute([position])
                        .map_err(|e| error("delete", e))?;
                }
                self.delete_by_key
                    .execute(params![text(key), text(function)])
                    .map(drop)
                    .map_err(|e| error("delete", e))
            }
            Op::Forget { position } => self
                .delete_at
                .execute([position])
                .map(drop)
                .map_err(|e| error("delete", e)),
        }
    }
}

impl Writes<'_> {
    fn put_in_queue(&mut self, row: &Row) -> Result<(), StoreError> {
        self.put_in_queue
            .execute(params![
                text(&row.key),
                text(&row.function),
                i64::from(row.priority),
                row.data,
                row.when as i64,
            ])
            .map(drop)
            .map_err(|e| error("insert", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--libsqlite3-sync full` must be SQLite's FULL: in WAL mode its commit
    /// returns only once the WAL is synced, and that commit is what a
    /// JOB_CREATED waits for. `normal` is NORMAL.
    #[test]
    fn the_sync_flag_sets_sqlites_synchronous_level_in_wal_mode() {
        let dir = std::env::temp_dir().join(format!("gearbox-sqlite-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (sync, level) in [(Sync::Full, 2), (Sync::Normal, 1)] {
            let path = dir.join(format!("{sync:?}.sqlite3"));
            let mut store = Sqlite::new(SqliteConfig {
                path,
                table: DEFAULT_TABLE.into(),
                sync,
            });
            store.connect().unwrap();
            let conn = store.conn().unwrap();
            let got: i64 = conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap();
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!((got, mode.as_str()), (level, "wal"), "{sync:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
