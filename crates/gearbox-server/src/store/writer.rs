//! The writer thread behind [`Durable`](super::Durable), and the commits that
//! run without it.
//!
//! A commit takes every pending row write and applies it in one transaction
//! (group commit), then announces the number of the last write it covered.
//! Whoever holds the backend commits, one at a time:
//! - **Inline**, for a backend whose commit is only a write into the page
//!   cache (SQLite with `synchronous=NORMAL`): the thread that handled the
//!   submit commits right after it lets go of the engine, if nobody else is
//!   committing ([`Shared::commit_here`]). A lone submit then costs no
//!   hand-off between threads at all: measured on the 2-core VM, the writer's
//!   wake-up and the release task's wake-up cost 60–70 µs each, more than the
//!   commit. A thread that finds another committing leaves its rows to that
//!   one, which passes what is left to the writer thread when it is done.
//! - **The writer thread**, for everything else: backends that sync or talk
//!   to a server, what an inline commit left behind, and every retry. On
//!   failure it keeps the batch, reconnects with backoff and retries; while
//!   idle it does upkeep and checks that the database still answers.

use super::backend::{Backend, Op};
use super::durable::Commits;
use super::health::Health;
use super::stall::{CallWatch, STALLED_AFTER};
use super::StoreError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

/// How long the writer must have been idle before it does upkeep (see
/// [`Backend::tidy`]), which also checks that the database still answers.
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// Reconnect backoff: doubles from the first value up to the second.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));
/// At exit, how long an unreachable database may hold the process up.
const GIVE_UP_AT_EXIT: Duration = Duration::from_secs(5);

/// Writes queued under the engine lock, waiting for a commit.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) ops: Vec<Op>,
    /// Number of the last write queued.
    pub(super) last: u64,
    pub(super) stop: bool,
}

/// What [`Durable`](super::Durable), its writer thread and inline committers
/// share.
pub(super) struct Shared {
    pub(super) pending: Mutex<Pending>,
    /// Wakes the writer thread.
    pub(super) wake: Condvar,
    /// The database. Held for every call to it, so commits never overlap and
    /// apply in the order their writes were queued.
    pub(super) backend: Mutex<Box<dyn Backend>>,
    pub(super) describe: String,
    /// Whether commits may run on the submitting thread; see the module docs.
    pub(super) inline: bool,
    /// Unhealthy from a failed write or ping until a write or ping succeeds.
    pub(super) health: Health,
    /// See `stall`: watches every call, on whichever thread it runs.
    pub(super) watch: CallWatch,
    pub(super) commits: Arc<Commits>,
    /// The backend moved to a new database (a new file at the SQLite path),
    /// so every accepted job must be written again; see `Engine::release_stored`.
    pub(super) rewrite: AtomicBool,
    /// When an inline commit last ran, in µs since `epoch`: the writer's
    /// upkeep waits for a second without one.
    last_inline: AtomicU64,
    epoch: Instant,
}

impl Shared {
    pub(super) fn new(backend: Box<dyn Backend>) -> Shared {
        Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            describe: backend.describe(),
            inline: backend.commits_in_page_cache(),
            backend: Mutex::new(backend),
            health: Health::default(),
            watch: CallWatch::default(),
            commits: Arc::new(Commits::default()),
            rewrite: AtomicBool::new(false),
            last_inline: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    pub(super) fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn backend(&self) -> MutexGuard<'_, Box<dyn Backend>> {
        self.backend.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the outcome of a call in the store's health. A failure also
    /// wakes the release task, which answers replies held too long (see
    /// `Engine::expire_held`) while no commit releases them.
    fn record(&self, result: Result<(), &StoreError>) {
        self.health.set(&self.describe, result);
        if result.is_err() {
            self.commits.notify.notify_one();
        }
    }

    /// After a successful call that may have reconnected: a new database
    /// needs every accepted job again.
    fn note_replaced(&self, backend: &mut dyn Backend) {
        if backend.take_replaced() {
            self.rewrite.store(true, Ordering::SeqCst);
            self.commits.notify.notify_one();
        }
    }

    /// Commits every pending write on the calling thread, if this store
    /// commits inline, is healthy, and nobody else holds the database.
    /// Returns the number of the last write now committed.
    ///
    /// Nothing is left behind by returning `None`: a holder of the database
    /// passes on what it did not take ([`hand_over_rest`](Self::hand_over_rest),
    /// or the writer's own loop), and a failed or unhealthy store leaves the
    /// rows to the writer thread, which retries with backoff.
    pub(super) fn commit_here(&self) -> Option<u64> {
        if !self.inline || self.pending().ops.is_empty() {
            return None;
        }
        let mut backend = match self.backend.try_lock() {
            Ok(backend) => backend,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        if !self.health.is_healthy() {
            drop(backend);
            self.wake.notify_one();
            return None;
        }
        let (mut batch, number) = {
            let mut pending = self.pending();
            (std::mem::take(&mut pending.ops), pending.last)
        };
        if batch.is_empty() {
            return None;
        }
        drop_redundant_puts(&mut batch);
        let result = self.watch.call(|| backend.write(&batch));
        self.record(result.as_ref().map(|_| ()));
        let micros = self.epoch.elapsed().as_micros() as u64;
        self.last_inline.store(micros, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.commits.committed.store(number, Ordering::SeqCst);
                Some(number)
            }
            Err(e) => {
                tracing::debug!(store = %self.describe, error = %e, writes = batch.len(),
                    "inline commit failed; the writer retries it");
                // Back in front of what was queued since, so the order holds.
                let mut pending = self.pending();
                batch.append(&mut pending.ops);
                pending.ops = batch;
                drop(pending);
                drop(backend);
                self.wake.notify_one();
                None
            }
        }
    }

    /// After an inline commit: writes queued while it ran go to the writer
    /// thread, so the thread that committed can send its own replies.
    pub(super) fn hand_over_rest(&self) {
        if !self.pending().ops.is_empty() {
            self.wake.notify_one();
        }
    }

    /// Time since the last commit of any thread, for the writer's upkeep.
    fn since_last_commit(&self, writer_contact: Instant) -> Duration {
        let inline = Duration::from_micros(self.last_inline.load(Ordering::Relaxed));
        let writer = writer_contact.saturating_duration_since(self.epoch);
        self.epoch.elapsed().saturating_sub(inline.max(writer))
    }

    /// Announces a commit of the writer thread to the release task.
    fn announce(&self, number: u64) {
        self.commits.committed.store(number, Ordering::SeqCst);
        self.commits.notify.notify_one();
    }
}

/// The writer thread: take everything pending, commit it, announce it.
pub(super) fn write_loop(shared: &Shared) {
    let describe = shared.describe.as_str();
    std::thread::scope(|scope| {
        let watcher = std::thread::Builder::new()
            .name("gearbox-store-watch".into())
            .spawn_scoped(scope, || {
                shared.watch.run(STALLED_AFTER, |running| {
                    let why = format!("no answer for {} s", running.as_secs());
                    shared.record(Err(&StoreError(why)));
                })
            });
        if let Err(e) = &watcher {
            tracing::error!(store = %describe, error = %e, "cannot start the store watcher");
        }
        write_batches(shared);
        shared.watch.stop();
    });
    // Leave the database as the store's own tools expect it (SQLite: every
    // row in the queue table, readable by gearmand). Best effort: a job left
    // in the log is still replayed by the next start.
    let mut backend = shared.backend();
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

fn write_batches(shared: &Shared) {
    let describe = shared.describe.as_str();
    let mut backoff = BACKOFF.0;
    let mut last_contact = Instant::now();
    let mut last_success = Instant::now();
    let mut more_upkeep = false;
    loop {
        shared.health.tick(describe);
        {
            let mut pending = shared.pending();
            while pending.ops.is_empty() && !pending.stop {
                let wait = match more_upkeep {
                    true => Duration::ZERO,
                    false => PING_INTERVAL.saturating_sub(shared.since_last_commit(last_contact)),
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
        }
        // Take the database first, then the writes: an inline commit that
        // held it meanwhile may have taken them already.
        let mut backend = shared.backend();
        let (mut batch, number, stop) = {
            let mut pending = shared.pending();
            (std::mem::take(&mut pending.ops), pending.last, pending.stop)
        };
        if batch.is_empty() {
            if stop {
                return;
            }
            if shared.since_last_commit(last_contact) < PING_INTERVAL && !more_upkeep {
                continue;
            }
            // Idle: upkeep, and make sure an outage is noticed before the next
            // submit.
            let result = shared.watch.call(|| {
                backend
                    .tidy()
                    .or_else(|_| backend.connect().map(|()| false))
            });
            shared.record(result.as_ref().map(|_| ()));
            shared.note_replaced(backend.as_mut());
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
            let result = shared.watch.call(|| backend.write(&batch));
            tracing::trace!(
                writes = batch.len(),
                micros = started.elapsed().as_micros() as u64,
                "commit"
            );
            shared.record(result.as_ref().map(|_| ()));
            last_contact = Instant::now();
            match result {
                Ok(()) => {
                    shared.note_replaced(backend.as_mut());
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
                    shared.health.tick(describe);
                    tracing::debug!(store = %describe, error = %e, writes = batch.len(),
                        "commit failed; reconnecting to retry it");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF.1);
                    if let Err(e) = backend.connect() {
                        tracing::debug!(store = %describe, error = %e, "reconnect failed");
                    }
                }
            }
        }
        drop(backend);
        shared.announce(number);
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
    use crate::store::backend::Row;

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
