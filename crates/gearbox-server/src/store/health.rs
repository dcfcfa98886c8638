//! Whether the store takes writes, as submits see it and as the log tells it.
//!
//! Submits need the truth at every moment: a failed write refuses the next
//! submit, a successful one accepts it. The log needs less. A store can fail
//! and succeed by turns for minutes: on a full disk SQLite's commits succeed
//! while they fit in the WAL's old space and fail once they need more, so the
//! full-disk test saw the health flip about 20 times a second, and each flip
//! logged an ERROR or an INFO line, onto what may be the same full disk. So an
//! outage is logged once when it starts; while it lasts, a summary of its
//! failures every [`SUMMARY_EVERY`]; and its end once the store has stayed
//! healthy for [`RECOVERED_AFTER`].

use super::StoreError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long the store must take every write before the outage is reported
/// over.
pub const RECOVERED_AFTER: Duration = Duration::from_secs(2);
/// How often a store that keeps failing is reported again.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Health {
    /// False from a failed write until a write succeeds. Set under the report
    /// lock on failure; read without it by every background submit.
    unhealthy: AtomicBool,
    report: Mutex<Report>,
}

/// The last failure, and what the log has been told.
#[derive(Default)]
struct Report {
    last_error: String,
    /// When the outage being reported was last logged; `None` when none is.
    down_logged: Option<Instant>,
    /// Failures since then.
    failures: u64,
    /// Since when every write has succeeded.
    healthy_since: Option<Instant>,
}

/// What [`Health::tick`] logged, for tests.
#[derive(Debug, PartialEq, Eq)]
pub enum Logged {
    Nothing,
    StillFailing { failures: u64 },
    Recovered { failures: u64 },
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        !self.unhealthy.load(Ordering::SeqCst)
    }

    pub fn last_error(&self) -> String {
        lock(&self.report).last_error.clone()
    }

    /// Records the outcome of a write or a check.
    /// A success of a healthy store, every commit, touches only an atomic.
    pub fn set(&self, describe: &str, result: Result<(), &StoreError>) {
        match result {
            Ok(()) => {
                if self.unhealthy.swap(false, Ordering::SeqCst) {
                    lock(&self.report).healthy_since = Some(Instant::now());
                    tracing::debug!(store = describe, "queue store write succeeded");
                }
            }
            Err(e) => {
                let mut report = lock(&self.report);
                report.last_error = e.to_string();
                self.unhealthy.store(true, Ordering::SeqCst);
                report.healthy_since = None;
                if report.down_logged.is_none() {
                    tracing::error!(store = describe, error = %e,
                        "queue store failed; refusing background submits until it recovers");
                    report.down_logged = Some(Instant::now());
                    report.failures = 0;
                } else {
                    report.failures += 1;
                    tracing::debug!(store = describe, error = %e, "queue store failed again");
                }
            }
        }
    }

    /// Logs the end of an outage, or a summary of one that goes on. Called by
    /// the writer at least once a second.
    pub fn tick(&self, describe: &str) -> Logged {
        let mut report = lock(&self.report);
        let Some(logged) = report.down_logged else {
            return Logged::Nothing;
        };
        let failures = report.failures;
        match report.healthy_since {
            Some(since) if self.is_healthy() && since.elapsed() >= RECOVERED_AFTER => {
                tracing::info!(
                    store = describe,
                    failures_since_reported = failures,
                    "queue store is available again"
                );
                report.down_logged = None;
                report.failures = 0;
                report.healthy_since = None;
                Logged::Recovered { failures }
            }
            _ if logged.elapsed() >= SUMMARY_EVERY && failures > 0 => {
                tracing::error!(store = describe, error = %report.last_error,
                    failures_since_reported = failures,
                    "queue store still failing; refusing background submits while it fails");
                report.down_logged = Some(Instant::now());
                report.failures = 0;
                Logged::StillFailing { failures }
            }
            _ => Logged::Nothing,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flapping_store_is_reported_once_and_recovers_after_a_quiet_spell() {
        let health = Health::default();
        let failed = StoreError("disk full".into());
        for _ in 0..50 {
            health.set("t", Err(&failed));
            assert!(!health.is_healthy());
            health.set("t", Ok(()));
            assert!(health.is_healthy());
            assert_eq!(health.tick("t"), Logged::Nothing);
        }
        assert_eq!(lock(&health.report).failures, 49);
        lock(&health.report).healthy_since = Some(Instant::now() - RECOVERED_AFTER);
        assert_eq!(health.tick("t"), Logged::Recovered { failures: 49 });
        assert_eq!(health.tick("t"), Logged::Nothing);
    }

    #[test]
    fn a_store_that_keeps_failing_is_summarized() {
        let health = Health::default();
        let failed = StoreError("refused".into());
        health.set("t", Err(&failed));
        health.set("t", Err(&failed));
        assert_eq!(health.tick("t"), Logged::Nothing);
        lock(&health.report).down_logged = Some(Instant::now() - SUMMARY_EVERY);
        assert_eq!(health.tick("t"), Logged::StillFailing { failures: 1 });
        assert_eq!(health.last_error(), "refused");
    }
}
