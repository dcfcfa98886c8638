//! Notices a store that stopped answering in the middle of a call.
//!
//! Each backend bounds most waits itself: connect and ping deadlines, Redis's
//! socket timeouts, PostgreSQL's server-side `statement_timeout`. Some waits
//! are not bounded: the synchronous `postgres` crate has no client-side
//! timeout for a statement, so a server that keeps its connection open but
//! stopped answering (SIGSTOP, a paused VM) holds the writer until it answers;
//! and SQLite's commit waits as long as an `fsync` on a hung disk does.
//! Meanwhile the store still counts as healthy, so new background submits
//! would be accepted and their JOB_CREATED held for as long as the hang lasts.
//!
//! A watcher thread marks the store unhealthy once one call has run for
//! [`STALLED_AFTER`]. New background submits then get QUEUE_ERROR at once, as
//! in any other outage; jobs already accepted stay queued. The call's own end
//! sets the health again (available on success, or the error it returned).
//!
//! The writer only stamps the start and end of a call under an uncontended
//! lock; the watcher polls, so a busy writer wakes nobody.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long one call to the store may run before new submits are refused.
/// Long enough for a legitimately large batch (a million rows take about two
/// seconds in SQLite), short enough that a client waiting for JOB_CREATED
/// hears soon that its store is gone.
pub const STALLED_AFTER: Duration = Duration::from_secs(5);

/// How often the watcher looks.
const POLL: Duration = Duration::from_millis(250);

#[derive(Default)]
pub struct CallWatch {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// When the call in progress started.
    since: Option<Instant>,
    /// Whether the call in progress was reported as stalled.
    reported: bool,
    stop: bool,
}

impl CallWatch {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `call`, watched.
    pub fn call<T>(&self, call: impl FnOnce() -> T) -> T {
        {
            let mut state = self.lock();
            state.since = Some(Instant::now());
            state.reported = false;
        }
        let result = call();
        self.lock().since = None;
        result
    }

    /// Makes [`run`](Self::run) return.
    pub fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_one();
    }

    /// Until [`stop`](Self::stop): calls `stalled(how long)` once for each
    /// call that has run for `limit`. It is called with the watch locked, so
    /// whatever the caller does after the call returns happens after it (the
    /// writer's own health update cannot be overwritten by a stale report).
    pub fn run(&self, limit: Duration, stalled: impl Fn(Duration)) {
        let mut state = self.lock();
        while !state.stop {
            if let Some(since) = state.since.filter(|_| !state.reported) {
                let running = since.elapsed();
                if running >= limit {
                    stalled(running);
                    state.reported = true;
                }
            }
            state = self
                .wake
                .wait_timeout(state, POLL.min(limit))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Waits (at most 10 s) until `count` reports were made.
    fn wait_for(reports: &AtomicUsize, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while reports.load(Ordering::SeqCst) < count {
            assert!(Instant::now() < deadline, "no report {count}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn only_a_call_that_outlives_the_limit_is_reported_and_only_once() {
        let watch = CallWatch::default();
        let reports = AtomicUsize::new(0);
        let limit = Duration::from_millis(500);
        std::thread::scope(|s| {
            s.spawn(|| {
                watch.run(limit, |running| {
                    assert!(running >= limit);
                    reports.fetch_add(1, Ordering::SeqCst);
                })
            });
            watch.call(|| ());
            std::thread::sleep(Duration::from_millis(800));
            assert_eq!(reports.load(Ordering::SeqCst), 0, "a quick call");
            // A stalled call is reported while it runs, once however long it runs.
            watch.call(|| {
                wait_for(&reports, 1);
                std::thread::sleep(Duration::from_millis(800));
            });
            assert_eq!(reports.load(Ordering::SeqCst), 1);
            // The next call is watched afresh.
            watch.call(|| wait_for(&reports, 2));
            watch.stop();
        });
    }
}
