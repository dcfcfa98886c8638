//! Group commit over any [`Backend`].
//!
//! Under the engine's lock, [`Durable`] only appends row writes to a pending
//! list and numbers them. A writer thread takes the whole list, applies it in
//! one transaction and publishes the number of the last write it committed in
//! [`Commits`]. The engine holds back each JOB_CREATED until that number covers
//! the job's row, so an acknowledged job is a committed one, while a busy
//! server commits thousands of submits per transaction instead of one.
//!
//! When the database fails, the writer keeps the batch, reconnects with
//! backoff and retries it; meanwhile new background submits are refused with
//! QUEUE_ERROR (the engine asks [`QueueStore::add`], which fails fast) rather
//! than acknowledged without a place to keep them. Jobs already accepted stay
//! queued in memory and are written once the database is back. A write or a
//! sync that does not return at all counts as a failure after five seconds
//! ([`stall`]).
//!
//! [`stall`]: super::stall

use super::backend::{Backend, Op, ReplaySource, Row, RowAddress, RowCheck};
use super::keys::{self, natural_key};
use super::writer::{write_loop, Shared};
use super::{QueueStore, StoreError, StoredJob};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The writer's progress, shared with the task that releases held replies.
#[derive(Debug, Default)]
pub struct Commits {
    /// Every write numbered up to this one is committed.
    pub committed: AtomicU64,
    /// Woken after each commit.
    pub notify: tokio::sync::Notify,
}

/// The handle through which the thread that let go of the engine commits the
/// rows it queued, for a store that commits inline (see `writer`).
#[derive(Clone)]
pub struct InlineCommits(Arc<Shared>);

impl InlineCommits {
    /// Commits what is pending here if nobody else is committing; the number
    /// of the last write committed, to release the replies that waited for it.
    pub fn commit(&self) -> Option<u64> {
        self.0.commit_here()
    }

    /// Passes writes queued since the commit to the writer thread.
    pub fn hand_over_rest(&self) {
        self.0.hand_over_rest()
    }
}

/// The rows of an earlier run, read on a thread of the server's choosing.
pub struct Replay {
    source: Box<dyn ReplaySource>,
    run: u64,
    pub describe: String,
}

impl Replay {
    /// The next rows to replay; empty at the end. Rows this run wrote itself
    /// (a database without snapshots may return them) are skipped.
    pub fn next_chunk(&mut self) -> Result<Vec<Row>, StoreError> {
        loop {
            let mut rows = self.source.next_chunk()?;
            if rows.is_empty() {
                return Ok(rows);
            }
            rows.retain(|row| keys::run_of(&row.key) != Some(self.run));
            if !rows.is_empty() {
                return Ok(rows);
            }
        }
    }
}

/// The row a replayed job owns, where it differs from the row this run would
/// have written for it.
struct Adopted {
    /// Set for anonymous jobs of earlier runs, whose key holds that run.
    key: Option<Vec<u8>>,
    position: Option<i64>,
}

/// A [`QueueStore`] that persists through a [`Backend`] with group commit.
pub struct Durable {
    shared: Arc<Shared>,
    describe: String,
    /// This run's number, part of every anonymous row key it writes.
    run: u64,
    /// See [`Backend::log_base`].
    log_base: Option<i64>,
    /// Replayed jobs whose row is not where this run would have put it, by
    /// job id.
    adopted: HashMap<u64, Adopted>,
    replay: Option<Replay>,
    writer: Option<JoinHandle<()>>,
    row_check: Option<RowCheck>,
    /// Number of the last row added: what an acknowledgement waits for.
    last_put: u64,
}

impl Durable {
    /// Connects, opens the replay reader, and starts the writer thread. Fails
    /// if the database cannot be reached at start: a server that was asked
    /// for durability should not come up without it.
    pub fn open(mut backend: Box<dyn Backend>) -> Result<Durable, StoreError> {
        let describe = backend.describe();
        let row_check = backend.row_check();
        backend.connect()?;
        let log_base = backend.log_base();
        let source = backend.open_replay()?;
        let run = keys::new_run_number();
        let shared = Arc::new(Shared::new(backend));
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("gearbox-store".into())
                .spawn(move || write_loop(&shared))
                .map_err(|e| StoreError(format!("cannot start the store writer: {e}")))?
        };
        Ok(Durable {
            shared,
            describe: describe.clone(),
            run,
            log_base,
            adopted: HashMap::new(),
            replay: Some(Replay {
                source,
                run,
                describe,
            }),
            writer: Some(writer),
            row_check,
            last_put: 0,
        })
    }

    /// Appends a write for the writer thread and returns its number.
    fn queue(&self, op: Op) -> u64 {
        let mut pending = self.shared.pending();
        pending.last += 1;
        let number = pending.last;
        let was_empty = pending.ops.is_empty();
        pending.ops.push(op);
        drop(pending);
        // Inline commits are made by whoever lets go of the engine next
        // (`InlineCommits`), so only the other stores wake their writer.
        if was_empty && !self.shared.inline {
            self.shared.wake.notify_one();
        }
        number
    }

    /// Where this run puts the row of a job it creates.
    fn natural_position(&self, id: u64) -> Option<i64> {
        self.log_base.map(|base| base + id as i64)
    }

    /// The row `job` owns now.
    fn address_of(&self, job: &StoredJob<'_>) -> RowAddress {
        let adopted = self.adopted.get(&job.id);
        RowAddress {
            key: match adopted.and_then(|a| a.key.clone()) {
                Some(key) => key,
                None => natural_key(job.unique, self.run, job.id),
            },
            position: match adopted {
                Some(a) => a.position,
                None => self.natural_position(job.id),
            },
        }
    }
}

/// `job`'s row, at `address`.
fn row_at(job: &StoredJob<'_>, RowAddress { key, position }: RowAddress) -> Row {
    Row {
        key,
        function: job.function.to_vec(),
        priority: job.priority,
        data: job.data.to_vec(),
        when: job.when,
        position,
    }
}

impl QueueStore for Durable {
    fn add(&mut self, job: &StoredJob<'_>) -> Result<(), StoreError> {
        if !self.shared.health.is_healthy() {
            let why = self.shared.health.last_error();
            return Err(StoreError(format!("queue store unavailable: {why}")));
        }
        // A new job owns its natural row: no lookup in `adopted` per submit.
        let address = RowAddress {
            key: natural_key(job.unique, self.run, job.id),
            position: self.natural_position(job.id),
        };
        let row = row_at(job, address);
        if let Some(check) = self.row_check {
            check(&row)?;
        }
        self.last_put = self.queue(Op::Put(row));
        Ok(())
    }

    fn remove(&mut self, job: &StoredJob<'_>) {
        let RowAddress { key, position } = self.address_of(job);
        if self.adopted.remove(&job.id).is_some() && self.adopted.is_empty() {
            // A replay can adopt a million rows; give the table's memory back.
            self.adopted.shrink_to_fit();
        }
        self.queue(Op::Delete {
            key,
            function: job.function.to_vec(),
            position,
        });
    }

    fn take_rewrite(&mut self) -> bool {
        self.shared
            .rewrite
            .swap(false, std::sync::atomic::Ordering::SeqCst)
    }

    fn rewrite(&mut self, job: &StoredJob<'_>) {
        let row = row_at(job, self.address_of(job));
        self.queue(Op::Put(row));
    }

    fn failure(&self) -> Option<String> {
        let health = &self.shared.health;
        (!health.is_healthy()).then(|| health.last_error())
    }

    fn ack_barrier(&self) -> u64 {
        self.last_put
    }

    fn commits(&self) -> Option<Arc<Commits>> {
        Some(self.shared.commits.clone())
    }

    fn inline_commits(&self) -> Option<InlineCommits> {
        self.shared
            .inline
            .then(|| InlineCommits(self.shared.clone()))
    }

    fn take_replay(&mut self) -> Option<Replay> {
        self.replay.take()
    }

    fn replayed(&mut self, row: RowAddress, job: &StoredJob<'_>, had_row: bool) {
        if had_row {
            // The job keeps its own row; this one is redundant.
            if row.key != self.address_of(job).key {
                self.queue(Op::Delete {
                    key: row.key,
                    function: job.function.to_vec(),
                    position: row.position,
                });
            } else if let Some(position) = row.position {
                // Same key: a keyed delete would take the job's own row.
                self.queue(Op::Forget { position });
            }
            return;
        }
        // A row of the queue table under the key this run would use needs no
        // entry: the job's Delete then also names its natural log position,
        // where nothing is, which is harmless. Only log rows (and anonymous
        // keys) cost memory here, not every row of a large replay.
        let natural_key = natural_key(job.unique, self.run, job.id);
        let key = (row.key != natural_key).then_some(row.key);
        if key.is_some() || row.position.is_some() {
            let position = row.position;
            self.adopted.insert(job.id, Adopted { key, position });
        }
    }

    fn close(&mut self) {
        self.shared.pending().stop = true;
        self.shared.wake.notify_one();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!(store = %self.describe, "queue store writer panicked");
            }
        }
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        self.close();
    }
}
