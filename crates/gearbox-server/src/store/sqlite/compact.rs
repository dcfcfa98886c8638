//! Gives disk space back after a backlog drains.
//!
//! SQLite never shrinks a database file by itself: the pages a drained backlog
//! used go to the file's free list and stay there, so a queue file that once
//! held a million jobs keeps its 240 MiB for good (gearmand's does the same).
//! Incremental auto-vacuum would return them as they are freed, but it cost
//! 20% of the submit rate at capacity (`benches/ab`, 4 × 400: 705k → 567k
//! jobs/s). So the writer's idle upkeep runs a plain `VACUUM` instead, and
//! only when it is cheap and worth it: most of the file is free and what is
//! left is small, so the copy takes milliseconds, not seconds.
//!
//! `VACUUM` may renumber the rowids of a table without an `INTEGER PRIMARY
//! KEY`, and the log table's rowids are the positions live jobs are deleted
//! by, so the caller runs this only when the log table is empty. The queue
//! table's rows are found by key; renumbering keeps their order.

use super::error;
use crate::store::StoreError;
use rusqlite::Connection;

/// Below this many free pages (16 MiB with 16 KiB pages) nothing is done.
const MIN_FREE_PAGES: i64 = 1024;
/// At most this many pages in use (16 MiB): the whole copy a `VACUUM` makes.
const MAX_LIVE_PAGES: i64 = 1024;

/// Runs `VACUUM` if at least [`MIN_FREE_PAGES`] and more than three quarters
/// of the file are free and at most [`MAX_LIVE_PAGES`] are in use. Returns
/// whether it did. The file itself shrinks at the next checkpoint.
pub fn compact_if_mostly_free(conn: &Connection) -> Result<bool, StoreError> {
    let pragma = |name: &str| -> Result<i64, StoreError> {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .map_err(|e| error(name, e))
    };
    let pages = pragma("page_count")?;
    let free = pragma("freelist_count")?;
    let live = pages - free;
    if free < MIN_FREE_PAGES || free * 4 < pages * 3 || live > MAX_LIVE_PAGES {
        return Ok(false);
    }
    let started = std::time::Instant::now();
    conn.execute_batch("VACUUM")
        .map_err(|e| error("vacuum", e))?;
    tracing::info!(
        pages_before = pages,
        pages_after = live,
        millis = started.elapsed().as_millis() as u64,
        "queue file compacted after the backlog drained"
    );
    Ok(true)
}
