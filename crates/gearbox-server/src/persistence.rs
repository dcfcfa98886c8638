//! The two tasks between the engine and its queue store: releasing replies
//! held for a commit, and replaying the rows of an earlier run.

use crate::dispatch::Dispatch;
use crate::store::{Commits, Replay};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// Each time the store commits, sends the JOB_CREATEDs that waited for it.
pub async fn release_loop(dispatch: Arc<Dispatch>, commits: Arc<Commits>) {
    loop {
        commits.notify.notified().await;
        let committed = commits.committed.load(std::sync::atomic::Ordering::SeqCst);
        dispatch.with(|engine| engine.release_stored(committed));
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
