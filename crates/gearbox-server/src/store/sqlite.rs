//! The embedded store (`-q libsqlite3 --libsqlite3-db FILE`), in gearmand's own
//! table layout, so a queue file moves between gearmand and gearboxd both ways:
//!
//! ```sql
//! CREATE TABLE gearman_queue (unique_key TEXT, function_name TEXT,
//!   priority INTEGER, data BLOB, when_to_run INTEGER,
//!   PRIMARY KEY (unique_key, function_name))
//! ```
//!
//! A new file gets 16 KiB pages: a commit of a few hundred rows then writes a
//! few WAL frames instead of dozens (measured: about twice the pipelined
//! submit rate of 4 KiB pages). The database is put in WAL mode: a commit appends to the log instead of
//! rewriting pages, and replay reads on its own connection while the writer
//! goes on. `synchronous=FULL` (the default) syncs the log at every commit, so
//! a committed job survives a power cut as well as a kill -9; `NORMAL` syncs
//! only at checkpoints and survives a crash of the process, not of the
//! machine. Group commit makes FULL cheap: one sync per batch.

use super::backend::{Backend, Op, ReplaySource, Row};
use super::StoreError;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OpenFlags};
use std::path::PathBuf;

/// gearmand's default table name.
pub const DEFAULT_TABLE: &str = "gearman_queue";

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
}

impl Sqlite {
    pub fn new(config: SqliteConfig) -> Sqlite {
        Sqlite { config, conn: None }
    }

    fn table(&self) -> String {
        quote_identifier(&self.config.table)
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

fn error(context: &str, e: rusqlite::Error) -> StoreError {
    StoreError(format!("sqlite: {context}: {e}"))
}

/// Uniques and function names are bytes; gearmand binds them as TEXT, so do we.
fn text(bytes: &[u8]) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(bytes))
}

impl Backend for Sqlite {
    fn describe(&self) -> String {
        format!("sqlite {}", self.config.path.display())
    }

    fn connect(&mut self) -> Result<(), StoreError> {
        let conn = Connection::open(&self.config.path).map_err(|e| error("open", e))?;
        let sync = match self.config.sync {
            Sync::Full => "FULL",
            Sync::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA busy_timeout=5000; \
             PRAGMA cache_size=-65536; PRAGMA wal_autocheckpoint=8192;"
        ))
        .map_err(|e| error("set journal mode", e))?;
        let table = self.table();
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (unique_key TEXT, function_name TEXT, \
             priority INTEGER, data BLOB, when_to_run INTEGER, \
             PRIMARY KEY (unique_key, function_name))"
        ))
        .map_err(|e| error("create table", e))?;
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
                "ALTER TABLE {table} ADD COLUMN when_to_run INTEGER"
            ))
            .map_err(|e| error("add when_to_run", e))?;
        }
        self.conn = Some(conn);
        Ok(())
    }

    fn write(&mut self, ops: &[Op]) -> Result<(), StoreError> {
        let table = self.table();
        let conn = self.conn()?;
        let tx = conn.transaction().map_err(|e| error("begin", e))?;
        {
            let prepare = |sql: String| tx.prepare_cached(&sql).map_err(|e| error("prepare", e));
            let mut insert_many = prepare(insert_sql(&table, ROWS_PER_INSERT))?;
            let mut insert_one = prepare(insert_sql(&table, 1))?;
            let mut delete = prepare(format!(
                "DELETE FROM {table} WHERE unique_key=? AND function_name=?"
            ))?;
            let mut rest = ops;
            while let Some(first) = rest.first() {
                let puts = rest
                    .iter()
                    .take_while(|op| matches!(op, Op::Put(_)))
                    .count();
                if let Op::Delete { key, function } = first {
                    delete
                        .execute(params![text(key), text(function)])
                        .map_err(|e| error("delete", e))?;
                    rest = &rest[1..];
                    continue;
                }
                // Consecutive rows go in as multi-row INSERTs: one statement
                // step for many rows is most of the cost of a large batch.
                let (insert, take) = if puts >= ROWS_PER_INSERT {
                    (&mut insert_many, ROWS_PER_INSERT)
                } else {
                    (&mut insert_one, 1)
                };
                let mut values: Vec<ToSqlOutput<'_>> = Vec::with_capacity(take * 5);
                for op in &rest[..take] {
                    let Op::Put(row) = op else {
                        unreachable!("counted puts")
                    };
                    values.extend([
                        text(&row.key),
                        text(&row.function),
                        ToSqlOutput::from(i64::from(row.priority)),
                        ToSqlOutput::Borrowed(ValueRef::Blob(&row.data)),
                        ToSqlOutput::from(row.when as i64),
                    ]);
                }
                insert
                    .execute(rusqlite::params_from_iter(values))
                    .map_err(|e| error("insert", e))?;
                rest = &rest[take..];
            }
        }
        tx.commit().map_err(|e| error("commit", e))
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        self.conn()?
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(|e| error("ping", e))
    }

    fn open_replay(&mut self) -> Result<Box<dyn ReplaySource>, StoreError> {
        let conn = Connection::open_with_flags(&self.config.path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| error("open reader", e))?;
        // Rows this run writes get higher rowids (INSERT OR REPLACE of an old
        // key too), so the bound keeps them out of the replay.
        let last: i64 = conn
            .query_row(
                &format!("SELECT COALESCE(MAX(rowid), 0) FROM {}", self.table()),
                [],
                |r| r.get(0),
            )
            .map_err(|e| error("count rows", e))?;
        Ok(Box::new(SqliteReplay {
            conn,
            table: self.table(),
            after: 0,
            last,
        }))
    }
}

/// Rows per multi-row INSERT; 5 parameters each, well under SQLite's limit.
const ROWS_PER_INSERT: usize = 64;

fn insert_sql(table: &str, rows: usize) -> String {
    let values = vec!["(?,?,?,?,?)"; rows].join(",");
    format!(
        "INSERT OR REPLACE INTO {table} \
         (unique_key, function_name, priority, data, when_to_run) VALUES {values}"
    )
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Reads rows in rowid order, a chunk per query, so the writer (and a reader
/// of `status`) never waits long behind it.
struct SqliteReplay {
    conn: Connection,
    table: String,
    after: i64,
    last: i64,
}

const REPLAY_CHUNK: i64 = 10_000;

impl ReplaySource for SqliteReplay {
    fn next_chunk(&mut self) -> Result<Vec<Row>, StoreError> {
        if self.after >= self.last {
            return Ok(Vec::new());
        }
        let mut statement = self
            .conn
            .prepare_cached(&format!(
                "SELECT rowid, unique_key, function_name, priority, data, when_to_run FROM {} \
                 WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?",
                self.table
            ))
            .map_err(|e| error("prepare replay", e))?;
        let mut rows = statement
            .query(params![self.after, self.last, REPLAY_CHUNK])
            .map_err(|e| error("replay", e))?;
        let mut chunk = Vec::new();
        while let Some(row) = rows.next().map_err(|e| error("replay", e))? {
            let bytes = |i: usize| -> Result<Vec<u8>, rusqlite::Error> {
                Ok(row
                    .get_ref(i)?
                    .as_bytes_or_null()?
                    .unwrap_or_default()
                    .to_vec())
            };
            let read = || -> Result<Row, rusqlite::Error> {
                Ok(Row {
                    key: bytes(1)?,
                    function: bytes(2)?,
                    priority: row.get::<_, Option<i64>>(3)?.unwrap_or(1).clamp(0, 2) as u8,
                    data: bytes(4)?,
                    when: row.get::<_, Option<i64>>(5)?.unwrap_or(0).max(0) as u64,
                })
            };
            self.after = row.get(0).map_err(|e| error("replay", e))?;
            chunk.push(read().map_err(|e| error("replay", e))?);
        }
        if chunk.is_empty() {
            self.after = self.last;
        }
        Ok(chunk)
    }
}
