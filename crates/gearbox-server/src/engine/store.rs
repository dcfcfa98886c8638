//! The engine's side of its queue store: replay, where the rows an earlier
//! run left in the store become jobs again, a store that must be written
//! again, and refused submits in the log. (JOB_CREATEDs held for a commit
//! are in `held`.)

use super::jobs::{coalesce_key, Job, JobState};
use super::submit::now_epoch;
use super::Engine;
use crate::store::StoreError;
use crate::store::{logical_unique, Commits, InlineCommits, Replay, Row, RowAddress};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// At most one log line per this long about refused submits: in an outage
/// every background submit is refused, and each client hears so in its
/// QUEUE_ERROR; the log needs the fact and a count, not a line per submit.
const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(10);

/// Background submits the queue store refused, as the log tells them.
#[derive(Default)]
pub struct Refusals {
    logged_at: Option<Instant>,
    /// Refused since the last line.
    unlogged: u64,
}

impl Refusals {
    pub fn note(&mut self, error: &StoreError) {
        if self
            .logged_at
            .is_some_and(|at| at.elapsed() < REFUSALS_LOGGED_EVERY)
        {
            self.unlogged += 1;
            return;
        }
        tracing::error!(%error, refused_since_last_line = self.unlogged,
            "queue store refused a background job");
        self.logged_at = Some(Instant::now());
        self.unlogged = 0;
    }
}

impl Engine {
    /// The store's database was replaced (the queue file deleted or swapped
    /// while the server ran): every job it had accepted goes into the new one.
    pub(super) fn rewrite_if_replaced(&mut self) {
        if !self.store.take_rewrite() {
            return;
        }
        let mut jobs = 0u64;
        for job in self.jobs.iter().filter(|j| j.background && !j.cancelled) {
            let stored = super::work::stored(&self.functions, job.id, job);
            self.store.rewrite(&stored);
            jobs += 1;
        }
        tracing::warn!(
            jobs,
            "queue store replaced; every accepted job is written into it again"
        );
    }

    /// Turns the store's writer off once queued writes are committed, and
    /// sends the replies that waited for them.
    pub fn close_store(&mut self) {
        self.store.close();
        if let Some(commits) = self.store.commits() {
            self.release_stored(commits.committed.load(Relaxed));
        }
    }

    pub fn inline_commits(&self) -> Option<InlineCommits> {
        self.store.inline_commits()
    }

    pub fn store_commits(&self) -> Option<Arc<Commits>> {
        self.store.commits()
    }

    /// The earlier run's rows, once.
    pub fn take_replay(&mut self) -> Option<Replay> {
        self.store.take_replay()
    }

    /// Queues the jobs of `rows`, as background jobs with their priority,
    /// unique and epoch time. A row whose unique matches a live job (one
    /// submitted since the start, say) joins it instead, as a submit would.
    /// gearmand's tables have no reducer column, so reduce jobs come back as
    /// plain jobs, as they do in gearmand.
    pub fn replay(&mut self, rows: Vec<Row>) {
        let now = now_epoch();
        for row in rows {
            let unique = logical_unique(&row.key);
            let func = self.functions.get_or_create(&row.function);
            let existing =
                coalesce_key(unique, &row.data).and_then(|key| self.jobs.find_unique(func, key));
            let (id, had_row) = match existing.and_then(|id| Some((id, self.jobs.get_mut(id)?))) {
                Some((id, job)) => {
                    let had_row = job.background;
                    job.background = true;
                    (id, had_row)
                }
                None => {
                    let priority = usize::from(row.priority.min(2));
                    let state = match row.when {
                        when if when > now => JobState::Delayed { when },
                        _ => JobState::Queued,
                    };
                    let job = Job::new(func, priority, state, true, unique, b"", &row.data);
                    let id = self.jobs.insert(job);
                    self.enqueue_new(id, func, priority, state);
                    (id, false)
                }
            };
            let job = self.jobs.get(id).expect("replayed job is live");
            let stored = super::work::stored(&self.functions, id, job);
            let address = RowAddress {
                key: row.key,
                position: row.position,
            };
            self.store.replayed(address, &stored, had_row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_once_per_period_with_a_count() {
        let mut refusals = Refusals::default();
        let error = StoreError("queue store unavailable: down".into());
        for _ in 0..5 {
            refusals.note(&error);
        }
        assert_eq!(refusals.unlogged, 4);
        refusals.logged_at = Some(Instant::now() - REFUSALS_LOGGED_EVERY);
        refusals.note(&error);
        assert_eq!(refusals.unlogged, 0);
    }
}
