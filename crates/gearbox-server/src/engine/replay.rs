//! Replay: the rows an earlier run left in the queue store become jobs again.

use super::jobs::{coalesce_key, Job, JobState};
use super::submit::now_epoch;
use super::Engine;
use crate::store::{logical_unique, Row};

impl Engine {
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
            self.store.replayed(row.key, &stored, had_row);
        }
    }
}
