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
use super::stall::{stall_error, CallWatch, Caller, STALLED_AFTER};
use super::sync::SyncThread;
use super::{QueueStore, StoreError, StoredJob};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the writer must have been idle before it does upkeep (see
/// [`Backend::tidy`]), which also checks that the database still answers.
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// Reconnect backoff: doubles from the first value up to the second.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));
/// At exit, how long an unreachable database may hold the process up.
const GIVE_UP_AT_EXIT: Duration = Duration::from_secs(5);

/// The writer's progress, shared with the task that releases held replies.
#[derive(Debug, Default)]
pub struct Commits {
    /// Every write numbered up to this one is committed.
    pub committed: AtomicU64,
    /// Woken after each commit.
    pub notify: tokio::sync::Notify,
}

/// Writes queued under the engine lock, waiting for the writer.
#[derive(Default)]
struct Pending {
    ops: Vec<Op>,
    /// Number of the last write queued.
    last: u64,
    stop: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    /// False from a failed write or ping until a write or ping succeeds.
    healthy: AtomicBool,
    last_error: Mutex<String>,
    commits: Arc<Commits>,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_health(&self, describe: &str, result: Result<(), &StoreError>) {
        match result {
            Ok(()) => {
                if !self.healthy.swap(true, Ordering::SeqCst) {
                    tracing::info!(store = describe, "queue store is available again");
                }
            }
            Err(e) => {
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
                if self.healthy.swap(false, Ordering::SeqCst) {
                    tracing::error!(store = describe, error = %e,
                        "queue store failed; refusing background submits until it recovers");
                }
            }
        }
    }

    /// The health after one of the writer's calls: its result, unless a sync
    /// is stuck. The writer's calls go on succeeding into the page cache while
    /// an `fdatasync` hangs, and must not make the store look healthy then.
    fn set_writer_health(
        &self,
        describe: &str,
        result: Result<(), &StoreError>,
        watch: &CallWatch,
    ) {
        if result.is_err() {
            return self.set_health(describe, result);
        }
        watch.with_stall(|stalled| match stalled {
            Some((caller, running)) => {
                let why = StoreError(stall_error(caller, running));
                self.set_health(describe, Err(&why));
            }
            None => self.set_health(describe, result),
        });
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
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(String::new()),
            commits: Arc::new(Commits::default()),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("gearbox-store".into())
                .spawn(move || write_loop(&shared, backend))
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
        if was_empty {
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

impl QueueStore for Durable {
    fn add(&mut self, job: &StoredJob<'_>) -> Result<(), StoreError> {
        if !self.shared.healthy.load(Ordering::SeqCst) {
            let why = self
                .shared
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default();
            return Err(StoreError(format!("queue store unavailable: {why}")));
        }
        let row = Row {
            key: natural_key(job.unique, self.run, job.id),
            function: job.function.to_vec(),
            priority: job.priority,
            data: job.data.to_vec(),
            when: job.when,
            position: self.natural_position(job.id),
        };
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

    fn ack_barrier(&self) -> u64 {
        self.last_put
    }

    fn commits(&self) -> Option<Arc<Commits>> {
        Some(self.shared.commits.clone())
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

/// The writer thread: take everything pending, commit it, announce it (or
/// have the sync thread announce it once it is on disk).
fn write_loop(shared: &Shared, mut backend: Box<dyn Backend>) {
    let describe = backend.describe();
    // See `stall`: a call that never returns must still refuse new submits.
    let watch = Arc::new(CallWatch::default());
    let sync_thread = backend.syncer().and_then(|syncer| {
        SyncThread::start(
            syncer,
            shared.commits.clone(),
            describe.clone(),
            watch.clone(),
        )
        .map_err(|e| tracing::error!(store = %describe, error = %e, "cannot start the sync thread"))
        .ok()
    });
    std::thread::scope(|scope| {
        let watcher = std::thread::Builder::new()
            .name("gearbox-store-watch".into())
            .spawn_scoped(scope, || {
                watch.run(STALLED_AFTER, |caller, running| {
                    let why = StoreError(stall_error(caller, running));
                    shared.set_health(&describe, Err(&why));
                })
            });
        if let Err(e) = &watcher {
            tracing::error!(store = %describe, error = %e, "cannot start the store watcher");
        }
        write_batches(
            shared,
            backend.as_mut(),
            &describe,
            sync_thread.as_ref(),
            &watch,
        );
        watch.stop();
    });
    if let Some(sync_thread) = sync_thread {
        sync_thread.finish();
    }
    // Leave the database as the store's own tools expect it (SQLite: every
    // row in the queue table, readable by gearmand). Best effort: a job left
    // in the log is still replayed by the next start.
    loop {
        match backend.tidy() {
            Ok(true) => continue,
            Ok(false) => break,
            Err(e) => {
                tracing::warn!(store = %describe, error = %e, "upkeep at exit failed");
                break;
            }
        }
    }
}

fn write_batches(
    shared: &Shared,
    backend: &mut dyn Backend,
    describe: &str,
    sync_thread: Option<&SyncThread>,
    watch: &CallWatch,
) {
    let mut backoff = BACKOFF.0;
    let mut last_contact = Instant::now();
    let mut last_success = Instant::now();
    let mut more_upkeep = false;
    loop {
        let (mut batch, number, stop) = {
            let mut pending = shared.pending();
            while pending.ops.is_empty() && !pending.stop {
                let wait = match more_upkeep {
                    true => Duration::ZERO,
                    false => PING_INTERVAL.saturating_sub(last_contact.elapsed()),
                };
                if wait.is_zero() {
                    break;
                }
                pending = shared
                    .wake
                    .wait_timeout(pending, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            (std::mem::take(&mut pending.ops), pending.last, pending.stop)
        };
        if batch.is_empty() {
            if stop {
                return;
            }
            // Idle: upkeep, and make sure an outage is noticed before the next
            // submit.
            let result = watch.call(Caller::Writer, || {
                backend
                    .tidy()
                    .or_else(|_| backend.connect().map(|()| false))
            });
            shared.set_writer_health(describe, result.as_ref().map(|_| ()), watch);
            last_contact = Instant::now();
            more_upkeep = matches!(result, Ok(true));
            if result.is_err() {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF.1);
            }
            continue;
        }
        drop_redundant_puts(&mut batch);
        loop {
            let started = Instant::now();
            let result = watch.call(Caller::Writer, || backend.write(&batch));
            tracing::trace!(
                writes = batch.len(),
                micros = started.elapsed().as_micros() as u64,
                "commit"
            );
            shared.set_writer_health(describe, result.as_ref().map(|_| ()), watch);
            last_contact = Instant::now();
            match result {
                Ok(()) => {
                    backoff = BACKOFF.0;
                    last_success = Instant::now();
                    break;
                }
                Err(e) if shared.pending().stop && last_success.elapsed() > GIVE_UP_AT_EXIT => {
                    tracing::error!(store = %describe, error = %e, writes = batch.len(),
                        "stopping with writes the queue store could not take");
                    return;
                }
                Err(e) => {
                    tracing::warn!(store = %describe, error = %e, writes = batch.len(),
                        "commit failed; reconnecting to retry it");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF.1);
                    if let Err(e) = backend.connect() {
                        tracing::debug!(store = %describe, error = %e, "reconnect failed");
                    }
                }
            }
        }
        match sync_thread {
            Some(sync_thread) => sync_thread.written(number),
            None => {
                shared.commits.committed.store(number, Ordering::SeqCst);
                shared.commits.notify.notify_one();
            }
        }
    }
}

/// Drops each Put whose row a later Delete in the same batch removes: a job
/// that was submitted and finished within one commit never touches the
/// database's data pages. The Delete stays, so the table ends as it would
/// have after both (it may also remove an older row with that key).
fn drop_redundant_puts(batch: &mut Vec<Op>) {
    if !batch.iter().any(|op| matches!(op, Op::Delete { .. })) {
        return;
    }
    let mut last_put: HashMap<(&[u8], &[u8]), usize> = HashMap::new();
    let mut redundant = Vec::new();
    for (i, op) in batch.iter().enumerate() {
        match op {
            Op::Put(row) => {
                last_put.insert((&row.key, &row.function), i);
            }
            Op::Forget { .. } => {}
            Op::Delete { key, function, .. } => {
                if let Some(put) = last_put.remove(&(key.as_slice(), function.as_slice())) {
                    redundant.push(put);
                }
            }
        }
    }
    if redundant.is_empty() {
        return;
    }
    redundant.sort_unstable();
    let mut next = redundant.into_iter().peekable();
    let mut index = 0;
    batch.retain(|_| {
        let keep = next.peek() != Some(&index);
        if !keep {
            next.next();
        }
        index += 1;
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> Op {
        Op::Put(Row {
            key: key.into(),
            function: b"f".to_vec(),
            priority: 1,
            data: Vec::new(),
            when: 0,
            position: None,
        })
    }

    fn delete(key: &str) -> Op {
        Op::Delete {
            key: key.into(),
            function: b"f".to_vec(),
            position: None,
        }
    }

    #[test]
    fn a_put_deleted_in_the_same_batch_is_not_written() {
        let mut batch = vec![put("a"), put("b"), delete("a"), put("a"), delete("c")];
        drop_redundant_puts(&mut batch);
        assert_eq!(batch, vec![put("b"), delete("a"), put("a"), delete("c")]);
    }
}
