//! Where background jobs are persisted.
//!
//! The engine calls a [`QueueStore`] when a background job is created and when
//! it ends (completed, failed, cancelled, or dropped after its retries). The
//! default for the library, [`InMemory`], keeps nothing outside the engine:
//! that is gearmand's `-q builtin`.
//!
//! [`Durable`] is the store for real databases. It never does I/O under the
//! engine's lock: it queues row writes for a writer thread, which commits them
//! in batches (group commit), and the engine holds a JOB_CREATED back until the
//! batch holding its row is committed. The databases themselves are
//! [`Backend`]s: [`sqlite`] (the embedded default), [`postgres`] and [`redis`].

mod backend;
mod durable;
mod health;
mod keys;
pub mod postgres;
pub mod redis;
pub mod sqlite;
mod stall;
mod writer;

pub use backend::{Backend, Op, ReplaySource, Row, RowAddress};
pub use durable::{Commits, Durable, InlineCommits, Replay};
pub use keys::logical_unique;
pub use stall::STALLED_AFTER;

use std::sync::Arc;

/// A background job as a store sees it.
#[derive(Debug, Clone, Copy)]
pub struct StoredJob<'a> {
    /// The number in the job's handle; unique per process, so it tells apart jobs
    /// that share an empty unique (gearmand's stores overwrite those).
    pub id: u64,
    pub function: &'a [u8],
    pub unique: &'a [u8],
    pub data: &'a [u8],
    /// 0 = HIGH, 1 = NORMAL, 2 = LOW, as in gearmand's queue tables.
    pub priority: u8,
    /// Epoch seconds before which the job must not run; 0 for none.
    pub when: u64,
}

#[derive(Debug, Clone)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// Persistence for background jobs, as the engine sees it.
///
/// Calls are made with the engine's lock held, so an implementation must not
/// block on I/O here; a durable store queues the work for a writer of its own.
pub trait QueueStore: Send {
    /// A background job was accepted. An error refuses it with QUEUE_ERROR
    /// instead of acknowledging a job the store cannot keep.
    fn add(&mut self, job: &StoredJob<'_>) -> Result<(), StoreError>;

    /// The job ended and must not be replayed.
    fn remove(&mut self, job: &StoredJob<'_>);

    /// Whether the database was replaced by a new one (a new file at the
    /// SQLite path), so every accepted job must be written again with
    /// [`rewrite`](Self::rewrite); asking clears it.
    fn take_rewrite(&mut self) -> bool {
        false
    }

    /// Writes the row of a job accepted earlier again, where it belongs.
    fn rewrite(&mut self, _job: &StoredJob<'_>) {}

    /// Why the store is failing, while it is.
    fn failure(&self) -> Option<String> {
        None
    }

    /// The commit number that must be reached (see [`Commits`]) before an
    /// acknowledgement of anything added so far may leave. 0: nothing to wait
    /// for, as with a store that keeps nothing.
    fn ack_barrier(&self) -> u64 {
        0
    }

    /// Where the store announces its commits, if it defers them.
    fn commits(&self) -> Option<Arc<Commits>> {
        None
    }

    /// For a store whose commits may run on the thread that let go of the
    /// engine: the handle to run them with.
    fn inline_commits(&self) -> Option<InlineCommits> {
        None
    }

    /// The rows queued by an earlier run, to be replayed once at start.
    fn take_replay(&mut self) -> Option<Replay> {
        None
    }

    /// A row read back at start became `job` (`had_row` false: a job created
    /// just now, or a foreground job that had no row) or was folded into
    /// `job`, an existing background job with a row of its own. The store
    /// remembers which row the job owns, or deletes a row that is now redundant.
    fn replayed(&mut self, _row: RowAddress, _job: &StoredJob<'_>, _had_row: bool) {}

    /// Commits what is queued and stops the writer; called once at exit.
    fn close(&mut self) {}
}

/// No persistence: queued jobs live only in the engine (`-q builtin`).
#[derive(Debug, Default)]
pub struct InMemory;

impl QueueStore for InMemory {
    fn add(&mut self, _job: &StoredJob<'_>) -> Result<(), StoreError> {
        Ok(())
    }
    fn remove(&mut self, _job: &StoredJob<'_>) {}
}
