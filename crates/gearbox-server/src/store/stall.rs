//! Notices a store that stopped answering in the middle of a call.
//!
//! Each backend bounds most waits itself: connect and ping deadlines, Redis's
//! socket timeouts, PostgreSQL's server-side `statement_timeout`. Two waits
//! are not bounded: the synchronous `postgres` crate has no client-side
//! timeout for a statement, so a server that keeps its connection open but
//! stopped answering (SIGSTOP, a paused VM) holds the writer until it answers;
//! and an `fdatasync` on a disk that hangs holds the sync thread, while the
//! writer goes on filling the page cache. Meanwhile the store still counts as
//! healthy, so new background submits would be accepted and their JOB_CREATED
//! held for as long as the hang lasts.
//!
//! A watcher thread marks the store unhealthy once one call, of the writer or
//! of the sync thread, has run for [`STALLED_AFTER`]. New background submits
//! then get QUEUE_ERROR at once, as in any other outage; jobs already accepted
//! stay queued. The writer's next write or idle check sets the health again.
//!
//! A caller only stamps the start and end of a call under an uncontended
//! lock; the watcher polls, so a busy store wakes nobody.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long one call to the store may run before new submits are refused.
/// Long enough for a legitimately large batch (a million rows take about two
/// seconds in SQLite), short enough that a client waiting for JOB_CREATED
/// hears soon that its store is gone.
pub const STALLED_AFTER: Duration = Duration::from_secs(5);

/// How often the watcher looks.
const POLL: Duration = Duration::from_millis(250);

/// The threads whose calls are watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// The writer: writes, idle upkeep, reconnects.
    Writer,
    /// The sync thread (`sync.rs`): the `fdatasync` after a write.
    Sync,
}

impl Caller {
    const ALL: [Caller; 2] = [Caller::Writer, Caller::Sync];

    /// What the call is, for the error a stall reports.
    pub fn what(self) -> &'static str {
        match self {
            Caller::Writer => "a write",
            Caller::Sync => "a sync",
        }
    }
}

/// The error a stalled call puts the store in.
pub fn stall_error(caller: Caller, running: Duration) -> String {
    format!("no answer to {} for {} s", caller.what(), running.as_secs())
}

#[derive(Default)]
pub struct CallWatch {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    calls: [Call; 2],
    stop: bool,
}

#[derive(Default, Clone, Copy)]
struct Call {
    /// When the call in progress started.
    since: Option<Instant>,
    /// Whether the call in progress was reported as stalled.
    reported: bool,
}

impl CallWatch {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `call` for `caller`, watched.
    pub fn call<T>(&self, caller: Caller, call: impl FnOnce() -> T) -> T {
        self.lock().calls[caller as usize] = Call {
            since: Some(Instant::now()),
            reported: false,
        };
        let result = call();
        self.lock().calls[caller as usize].since = None;
        result
    }

    /// Runs `f` with the call that was reported stalled and still runs (and
    /// for how long), if any. The watch stays locked meanwhile, so no report
    /// can come in between what `f` saw and what it does.
    pub fn with_stall<T>(&self, f: impl FnOnce(Option<(Caller, Duration)>) -> T) -> T {
        let state = self.lock();
        let stalled = Caller::ALL.into_iter().find_map(|caller| {
            let call = state.calls[caller as usize];
            call.since
                .filter(|_| call.reported)
                .map(|since| (caller, since.elapsed()))
        });
        f(stalled)
    }

    /// Makes [`run`](Self::run) return.
    pub fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_one();
    }

    /// Until [`stop`](Self::stop): calls `stalled(caller, how long)` once for
    /// each call that has run for `limit`. It is called with the watch locked,
    /// so whatever a caller does after its call returns happens after it (the
    /// writer's own health update cannot be overwritten by a stale report).
    pub fn run(&self, limit: Duration, stalled: impl Fn(Caller, Duration)) {
        let mut state = self.lock();
        while !state.stop {
            for caller in Caller::ALL {
                let call = &mut state.calls[caller as usize];
                if let Some(since) = call.since.filter(|_| !call.reported) {
                    let running = since.elapsed();
                    if running >= limit {
                        call.reported = true;
                        stalled(caller, running);
                    }
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
                watch.run(limit, |caller, running| {
                    assert_eq!(caller, Caller::Writer);
                    assert!(running >= limit);
                    reports.fetch_add(1, Ordering::SeqCst);
                })
            });
            watch.call(Caller::Writer, || ());
            std::thread::sleep(Duration::from_millis(800));
            assert_eq!(reports.load(Ordering::SeqCst), 0, "a quick call");
            // A stalled call is reported while it runs, once however long it runs.
            watch.call(Caller::Writer, || {
                wait_for(&reports, 1);
                std::thread::sleep(Duration::from_millis(800));
            });
            assert_eq!(reports.load(Ordering::SeqCst), 1);
            // The next call is watched afresh.
            watch.call(Caller::Writer, || wait_for(&reports, 2));
            watch.stop();
        });
    }
}
