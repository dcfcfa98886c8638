//! The two tasks between the engine and its queue store: releasing replies
//! held for a commit, and replaying the rows of an earlier run.

use crate::dispatch::Dispatch;
use crate::store::{Commits, Replay, STALLED_AFTER};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a JOB_CREATED may wait for its commit before the submit is
/// refused with QUEUE_ERROR instead: the stall watcher's bound, after which a
/// store that does not answer counts as failed.
pub const ACK_BOUND: Duration = STALLED_AFTER;
/// How often held replies are looked at while some wait and no commit comes.
const EXPIRY_POLL: Duration = Duration::from_millis(250);

/// Each time the writer thread commits, sends the JOB_CREATEDs that waited
/// for it. Woken also when the store fails: from then on, while replies are
/// held, it looks every [`EXPIRY_POLL`] for those held past [`ACK_BOUND`].
pub async fn release_loop(dispatch: Arc<Dispatch>, commits: Arc<Commits>) {
    let mut held = false;
    loop {
        let woken = commits.notify.notified();
        match held {
            true => drop(tokio::time::timeout(EXPIRY_POLL, woken).await),
            false => woken.await,
        }
        let committed = commits.committed.load(std::sync::atomic::Ordering::SeqCst);
        held = dispatch.with(|engine| {
            engine.release_stored(committed);
            engine.expire_held(ACK_BOUND)
        });
    }
}

/// Reads the earlier run's rows on a thread of its own and queues them a
/// chunk at a time, so the server answers admin commands and takes submits
/// while a large queue comes back.
pub fn spawn_replay(dispatch: Arc<Dispatch>, mut replay: Replay, stop: watch::Receiver<bool>) {
    let spawned = std::thread::Builder::new()
        .name("gearbox-replay".into())
        .spawn(move || {
            let started = Instant::now();
            let mut jobs = 0usize;
            tracing::info!(store = %replay.describe, "replaying queued jobs");
            loop {
                if *stop.borrow() {
                    tracing::warn!(jobs, "stopped before the replay finished");
                    return;
                }
                let rows = match replay.next_chunk() {
                    Ok(rows) if rows.is_empty() => break,
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::error!(error = %e, jobs,
                            "replay failed; the remaining rows stay in the store for the next start");
                        return;
                    }
                };
                jobs += rows.len();
                dispatch.with(|engine| engine.replay(rows));
            }
            tracing::info!(jobs, seconds = started.elapsed().as_secs_f64(), "replay finished");
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the replay thread");
    }
}
