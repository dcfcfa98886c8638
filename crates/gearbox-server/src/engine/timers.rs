//! Deadlines: epoch jobs falling due, and CAN_DO_TIMEOUT expiring.
//!
//! gearmand keeps one timeout timer per worker connection and never wakes a
//! worker for an epoch job; here each deadline belongs to one job, and a due
//! epoch job wakes a sleeping worker like any new job.

use super::jobs::{JobId, JobState};
use super::submit::now_epoch;
use super::Engine;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// When the timer task should next call [`Engine::fire_timers`].
pub type Deadline = Option<Instant>;

/// The longest the timer task sleeps without looking, so a wall-clock change
/// delays an epoch job by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Timers {
    /// (epoch seconds, job).
    epochs: BinaryHeap<Reverse<(u64, JobId)>>,
    /// (deadline, job, assignment): a timeout only applies to the assignment
    /// that armed it.
    timeouts: BinaryHeap<Reverse<(Instant, JobId, u32)>>,
}

impl Timers {
    pub fn add_epoch(&mut self, when: u64, id: JobId) {
        self.epochs.push(Reverse((when, id)));
    }

    pub fn add_timeout(&mut self, after: Duration, id: JobId, assignment: u32) {
        self.timeouts
            .push(Reverse((Instant::now() + after, id, assignment)));
    }
}

impl Engine {
    /// Handles every deadline that has passed and says when to look again.
    pub fn fire_timers(&mut self) -> Deadline {
        let now = Instant::now();
        while let Some(&Reverse((at, id, assignment))) = self.timers.timeouts.peek() {
            if at > now {
                break;
            }
            self.timers.timeouts.pop();
            let live = self.jobs.get(id).is_some_and(
                |j| matches!(j.state, JobState::Running { assignment: a, .. } if a == assignment),
            );
            if live && self.pulled_timed_out(id) {
                continue;
            }
            if live {
                tracing::debug!(
                    job = id,
                    "CAN_DO_TIMEOUT expired; job goes back to the queue"
                );
                self.requeue(id);
            }
        }
        let today = now_epoch();
        while let Some(&Reverse((when, id))) = self.timers.epochs.peek() {
            if when > today {
                break;
            }
            self.timers.epochs.pop();
            self.release_delayed(id);
        }
        if self.timers.epochs.shrink_needed() {
            self.timers.epochs.shrink_to_fit();
        }
        let next_timeout = self.timers.timeouts.peek().map(|Reverse((at, _, _))| *at);
        let next_epoch = self.timers.epochs.peek().map(|_| now + MAX_SLEEP);
        match (next_timeout, next_epoch) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn release_delayed(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        if !matches!(job.state, JobState::Delayed { .. }) {
            return;
        }
        job.state = JobState::Queued;
        let (func, priority) = (job.func, job.priority());
        let function = self.functions.get_mut(func);
        function.delayed[priority] -= 1;
        function.push(priority, id);
        self.wake(func, 1);
    }
}

trait ShrinkNeeded {
    fn shrink_needed(&self) -> bool;
}

impl<T: Ord> ShrinkNeeded for BinaryHeap<T> {
    fn shrink_needed(&self) -> bool {
        self.capacity() > 1024 && self.len() * 4 < self.capacity()
    }
}
