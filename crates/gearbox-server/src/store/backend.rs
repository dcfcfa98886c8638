//! What a database must do to keep gearbox's queue: apply batches of row
//! writes atomically, and read the rows back at start.
//!
//! Backends are plain blocking code. They run on the store's own writer thread
//! (and a reader thread during replay), never on the async runtime and never
//! under the engine's lock, so a slow database delays acknowledgements but
//! never the dispatch of jobs.

use super::StoreError;

/// One queued background job, in the shape of gearmand's queue tables
/// (`unique_key, function_name, priority, data, when_to_run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The `unique_key` column. The job's unique when it has a real one; for a
    /// job with an empty unique or `-`, a key of its own (see `keys`), so
    /// that such jobs never overwrite each other's rows.
    pub key: Vec<u8>,
    pub function: Vec<u8>,
    /// 0 = HIGH, 1 = NORMAL, 2 = LOW.
    pub priority: u8,
    pub data: Vec<u8>,
    /// Epoch seconds before which the job must not run; 0 for none.
    pub when: u64,
    /// Where the row sits in a store that appends new rows to a log of its
    /// own before filing them in the queue table (SQLite): its number there.
    /// `None` for a row of the queue table itself, and for stores without a
    /// log, which ignore it.
    pub position: Option<i64>,
}

/// A change to the queue table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Insert the row, replacing any row with the same (key, function).
    Put(Row),
    /// Delete the job's row: the one with this (key, function) in the queue
    /// table, and the one at `position` in the log, wherever it is now.
    Delete {
        key: Vec<u8>,
        function: Vec<u8>,
        position: Option<i64>,
    },
    /// Delete the log row at this position, if it is still in the log: an
    /// earlier run's row for a job whose key now belongs to a live job's own
    /// row (which a keyed delete would hit).
    Forget { position: i64 },
}

impl Op {
    /// The (key, function) of the queue-table row this write is about;
    /// `None` for `Forget`, which names only a log position (and so means
    /// nothing to a store without a log).
    pub fn row_id(&self) -> Option<(&[u8], &[u8])> {
        match self {
            Op::Put(row) => Some((&row.key, &row.function)),
            Op::Delete { key, function, .. } => Some((key, function)),
            Op::Forget { .. } => None,
        }
    }
}

/// Which row a replayed job came from: what [`QueueStore::replayed`] needs to
/// delete it later.
///
/// [`QueueStore::replayed`]: super::QueueStore::replayed
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowAddress {
    pub key: Vec<u8>,
    pub position: Option<i64>,
}

/// See [`Backend::row_check`].
pub type RowCheck = fn(&Row) -> Result<(), StoreError>;

/// A database that holds the queue table.
pub trait Backend: Send + 'static {
    /// What to call it in logs and errors, e.g. `sqlite /var/lib/q.db`.
    fn describe(&self) -> String;

    /// Connects (again, after an error) and creates the table if it is missing.
    fn connect(&mut self) -> Result<(), StoreError>;

    /// Applies `ops` in order, in one transaction: all or nothing. An error is
    /// taken as transient: the writer reconnects and retries the same batch.
    fn write(&mut self, ops: &[Op]) -> Result<(), StoreError>;

    /// Checks that the connection still works while no writes are flowing, so
    /// that an outage is noticed (and submits refused) before a write fails.
    fn ping(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// A test every row must pass to be written, made when the job is
    /// submitted: a row the database could never take (say, a unique that is
    /// not valid UTF-8 for a text column) is refused with QUEUE_ERROR at once,
    /// since a write that fails for good would stall the writer forever.
    fn row_check(&self) -> Option<RowCheck> {
        None
    }

    /// The position of the first row this run may append, for a store with a
    /// log (see [`Row::position`]); a job's row goes at this plus its id, so
    /// positions follow submission order and never need a lookup table.
    /// `None` for stores without a log. Called after `connect`.
    fn log_base(&self) -> Option<i64> {
        None
    }

    /// Upkeep while no writes wait, and at exit: SQLite files its log into
    /// the queue table here. Does a bounded amount of work and returns
    /// whether there is more to do. Doubles as the idle check that the
    /// database answers.
    fn tidy(&mut self) -> Result<bool, StoreError> {
        self.ping().map(|()| false)
    }

    /// Whether the last `connect` found a new database in place of the old
    /// one (SQLite: another file at the path), so every accepted job must be
    /// written again; asking clears it.
    fn take_replaced(&mut self) -> bool {
        false
    }

    /// Whether a commit only writes into the page cache, with no sync and no
    /// round trip to a server, so that the thread that handled a submit may
    /// run it itself instead of handing it to the writer thread.
    fn commits_in_page_cache(&self) -> bool {
        false
    }

    /// Opens a reader over the rows present now, on a connection of its own.
    /// Called once, after `connect` and before any write, so rows written
    /// later by this process are not part of what it returns.
    fn open_replay(&mut self) -> Result<Box<dyn ReplaySource>, StoreError>;
}

/// Reads the rows of an earlier run, in insertion order where the database
/// keeps one (so FIFO order within a priority survives a restart).
pub trait ReplaySource: Send {
    /// The next rows, at most a few thousand; an empty vector at the end.
    fn next_chunk(&mut self) -> Result<Vec<Row>, StoreError>;
}
