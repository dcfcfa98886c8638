//! Reads an earlier run's rows back: the queue table's, then the log's, each
//! in rowid order (FIFO), a chunk per query, all from one read transaction.
//!
//! The snapshot matters: while replay runs, the writer already serves this
//! run and may file log rows into the queue table. Read outside a snapshot, a
//! row moved between two chunks could be missed or read twice.

use super::super::backend::{ReplaySource, Row};
use super::super::StoreError;
use super::{error, read_log, Tables, COLUMNS};
use rusqlite::{params, Connection, OpenFlags};
use std::path::Path;

pub struct SqliteReplay {
    conn: Connection,
    /// What is left to read, the next part last.
    parts: Vec<Part>,
    /// The last rowid read from the current part.
    after: i64,
}

#[derive(Clone)]
struct Part {
    /// Quoted table name.
    table: String,
    is_log: bool,
    /// The highest rowid to read.
    last: i64,
}

const REPLAY_CHUNK: i64 = 10_000;

impl SqliteReplay {
    /// `before`: the first log position of this run; its rows are not replayed.
    pub fn open(path: &Path, tables: &Tables, before: i64) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| error("open reader", e))?;
        conn.execute_batch("BEGIN")
            .map_err(|e| error("begin replay", e))?;
        let last = |table: &str| -> Result<i64, StoreError> {
            conn.query_row(
                &format!("SELECT COALESCE(MAX(rowid), 0) FROM {table}"),
                [],
                |r| r.get(0),
            )
            .map_err(|e| error("count rows", e))
        };
        // Rows this run writes to the queue table get higher rowids (INSERT OR
        // REPLACE of an old key too), so the bound keeps them out.
        let parts = vec![
            Part {
                table: tables.log.clone(),
                is_log: true,
                last: last(&tables.log)?.min(before - 1),
            },
            Part {
                table: tables.queue.clone(),
                is_log: false,
                last: last(&tables.queue)?,
            },
        ];
        Ok(SqliteReplay {
            conn,
            parts,
            after: 0,
        })
    }
}

impl ReplaySource for SqliteReplay {
    fn next_chunk(&mut self) -> Result<Vec<Row>, StoreError> {
        while let Some(part) = self.parts.last().cloned() {
            let chunk = self.read_chunk(&part)?;
            if !chunk.is_empty() {
                return Ok(chunk);
            }
            self.parts.pop();
            self.after = 0;
        }
        Ok(Vec::new())
    }
}

impl SqliteReplay {
    fn read_chunk(&mut self, part: &Part) -> Result<Vec<Row>, StoreError> {
        let Part {
            table,
            is_log,
            last,
        } = part;
        let last = *last;
        if self.after >= last {
            return Ok(Vec::new());
        }
        if *is_log {
            let chunk = read_log(&self.conn, table, self.after, last, REPLAY_CHUNK)?;
            self.after = chunk.last().and_then(|row| row.position).unwrap_or(last);
            return Ok(chunk);
        }
        let mut statement = self
            .conn
            .prepare_cached(&format!(
                "SELECT rowid, {COLUMNS} FROM {table} \
                 WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?"
            ))
            .map_err(|e| error("prepare replay", e))?;
        let mut rows = statement
            .query(params![self.after, last, REPLAY_CHUNK])
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
            let rowid: i64 = row.get(0).map_err(|e| error("replay", e))?;
            let read = || -> Result<Row, rusqlite::Error> {
                Ok(Row {
                    key: bytes(1)?,
                    function: bytes(2)?,
                    priority: row.get::<_, Option<i64>>(3)?.unwrap_or(1).clamp(0, 2) as u8,
                    data: bytes(4)?,
                    when: row.get::<_, Option<i64>>(5)?.unwrap_or(0).max(0) as u64,
                    position: None,
                })
            };
            self.after = rowid;
            chunk.push(read().map_err(|e| error("replay", e))?);
        }
        if chunk.is_empty() {
            self.after = last;
        }
        Ok(chunk)
    }
}
