//! The writer thread behind [`Durable`](super::Durable): takes every pending
//! row write, commits it in one transaction (group commit), and announces the
//! commit. On failure
//! it keeps the batch, reconnects with backoff and retries; while idle it does
//! upkeep and checks that the database still answers.

use super::backend::{Backend, Op};
use super::durable::Commits;
use super::health::Health;
use super::stall::{CallWatch, STALLED_AFTER};
use super::StoreError;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long the writer must have been idle before it does upkeep (see
/// [`Backend::tidy`]), which also checks that the database still answers.
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// Reconnect backoff: doubles from the first value up to the second.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));
/// At exit, how long an unreachable database may hold the process up.
const GIVE_UP_AT_EXIT: Duration = Duration::from_secs(5);

/// Writes queued under the engine lock, waiting for the writer.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) ops: Vec<Op>,
    /// Number of the last write queued.
    pub(super) last: u64,
    pub(super) stop: bool,
}

/// What [`Durable`](super::Durable) and its writer thread share.
pub(super) struct Shared {
    pub(super) pending: Mutex<Pending>,
    pub(super) wake: Condvar,
    /// Unhealthy from a failed write or ping until a write or ping succeeds.
    pub(super) health: Health,
    pub(super) commits: Arc<Commits>,
}

impl Shared {
    pub(super) fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writer thread: take everything pending, commit it, announce it.
pub(super) fn write_loop(shared: &Shared, mut backend: Box<dyn Backend>) {
    let describe = backend.describe();
    // See `stall`: a call that never returns must still refuse new submits.
    let watch = CallWatch::default();
    std::thread::scope(|scope| {
        let watcher = std::thread::Builder::new()
            .name("gearbox-store-watch".into())
            .spawn_scoped(scope, || {
                watch.run(STALLED_AFTER, |running| {
                    let why = format!("no answer for {} s", running.as_secs());
                    shared.health.set(&describe, Err(&StoreError(why)));
                })
            });
        if let Err(e) = &watcher {
            tracing::error!(store = %describe, error = %e, "cannot start the store watcher");
        }
        write_batches(shared, backend.as_mut(), &describe, &watch);
        watch.stop();
    });
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

fn write_batches(shared: &Shared, backend: &mut dyn Backend, describe: &str, watch: &CallWatch) {
    let mut backoff = BACKOFF.0;
    let mut last_contact = Instant::now();
    let mut last_success = Instant::now();
    let mut more_upkeep = false;
    loop {
        shared.health.tick(describe);
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
            let result = watch.call(|| {
                backend
                    .tidy()
                    .or_else(|_| backend.connect().map(|()| false))
            });
            shared.health.set(describe, result.as_ref().map(|_| ()));
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
            let result = watch.call(|| backend.write(&batch));
            tracing::trace!(
                writes = batch.len(),
                micros = started.elapsed().as_micros() as u64,
                "commit"
            );
            shared.health.set(describe, result.as_ref().map(|_| ()));
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
        shared.commits.committed.store(number, Ordering::SeqCst);
        shared.commits.notify.notify_one();
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
