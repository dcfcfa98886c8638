//! Checkpoints on a connection and a thread of their own.
//!
//! In WAL mode a checkpoint copies committed pages from the WAL into the
//! database file and syncs it; until then the WAL cannot be rewound and
//! reused. SQLite runs it by default on the connection that commits, right
//! after the commit that crossed `wal_autocheckpoint` frames, so one batch in
//! a few hundred waited for a whole checkpoint (about 16 MiB copied and
//! synced, tens of milliseconds) before its JOB_CREATEDs went out, and the
//! writer, the one serial stage of a durable submit, spent about a seventh of
//! its time copying pages.
//!
//! This thread runs passive checkpoints every [`INTERVAL`], beside the writer:
//! a passive checkpoint never blocks a writer, it copies what is committed so
//! far. The writer keeps its own automatic checkpoint as the finisher: when it
//! runs, most frames are already copied, so it copies the last few, and the
//! WAL is rewound at the next transaction (a passive checkpoint that lags
//! behind a busy writer never could, and the WAL would grow without end).
//! SQLite documents this split for applications that want commits to stay
//! short (<https://sqlite.org/wal.html#application_initiated_checkpoints>).

use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the thread checkpoints. At full load a writer adds about a
/// hundred 16 KiB frames in this time: small copies, and one sync of the
/// database file each.
const INTERVAL: Duration = Duration::from_millis(20);
/// The longest wait, reached by doubling while the WAL does not change, so
/// an idle server wakes this thread once a second rather than 50 times.
const IDLE_INTERVAL: Duration = Duration::from_secs(1);

/// The running checkpoint thread; stopped and joined when dropped.
pub struct Checkpointer {
    /// Dropping the sender stops the thread. `None` if it could not start.
    running: Option<(Sender<()>, JoinHandle<()>)>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path`. Failures are logged, not
    /// fatal: the writer's own automatic checkpoint still bounds the WAL.
    pub fn start(path: &Path) -> Checkpointer {
        let (stop, stopped) = mpsc::channel::<()>();
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("gearbox-checkpoint".into())
            .spawn(move || {
                let conn = match Connection::open(&path) {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e,
                            "cannot open a connection for checkpoints; the writer checkpoints alone");
                        return;
                    }
                };
                let mut failed = false;
                let mut interval = INTERVAL;
                let mut last = None;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    match passive_checkpoint(&conn) {
                        Ok(frames) => {
                            failed = false;
                            // An idle WAL: wake up less and less often.
                            interval = match last == Some(frames) {
                                true => (interval * 2).min(IDLE_INTERVAL),
                                false => INTERVAL,
                            };
                            last = Some(frames);
                        }
                        Err(e) if !failed => {
                            failed = true;
                            tracing::debug!(error = %e, "background checkpoint failed");
                        }
                        Err(_) => {}
                    }
                }
            });
        if let Err(e) = &thread {
            tracing::warn!(error = %e, "cannot start the checkpoint thread");
        }
        Checkpointer {
            running: thread.ok().map(|thread| (stop, thread)),
        }
    }
}

/// Returns what SQLite reports: whether it was blocked, the frames in the
/// WAL and the frames copied.
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Pages reach the database file only through a checkpoint. With the
    /// writing connection's own checkpoints off, the file grows only if this
    /// thread copies them.
    #[test]
    fn committed_pages_reach_the_database_file_without_the_writer() {
        let dir = std::env::temp_dir().join(format!("gearbox-checkpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("q.sqlite3");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; \
                 CREATE TABLE t (v BLOB); BEGIN;",
            )
            .unwrap();
        for _ in 0..200 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(10000))", [])
                .unwrap();
        }
        writer.execute_batch("COMMIT").unwrap();
        let file_size = || std::fs::metadata(&path).unwrap().len();
        std::thread::sleep(INTERVAL * 5);
        assert!(file_size() < 100_000, "checkpointed without the thread");

        let checkpointer = Checkpointer::start(&path);
        let deadline = Instant::now() + Duration::from_secs(10);
        while file_size() < 2_000_000 && Instant::now() < deadline {
            std::thread::sleep(INTERVAL);
        }
        drop(checkpointer);
        assert!(file_size() >= 2_000_000, "{} bytes", file_size());
        drop(writer);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
