//! Functions: their queues, counters, limits and sleeping workers.

use super::jobs::{FuncId, JobId, Priority};
use super::ConnId;
use bytes::Bytes;
use hashbrown::HashMap;
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub struct Function {
    pub name: Bytes,
    /// Runnable job ids per priority, FIFO. Removed jobs are skipped lazily when
    /// they reach the front, so cancel and client loss stay O(1).
    queues: [VecDeque<JobId>; 3],
    /// Exact counts, kept apart from the queues because of lazy removal.
    pub queued: [u32; 3],
    /// Epoch jobs not yet due, by priority.
    pub delayed: [u32; 3],
    pub running: u32,
    /// CAN_DO entries, duplicates included (gearmand's `status` counts them).
    pub workers: u32,
    /// `maxqueue` limits per priority; 0 is unlimited.
    pub max_queue: [u32; 3],
    /// Workers that slept on this function, oldest first, with the sleep
    /// generation they slept in; stale entries are skipped when woken.
    pub sleepers: VecDeque<(ConnId, u64)>,
}

impl Function {
    /// Queued, delayed and running jobs: what `status` calls TOTAL and what
    /// `maxqueue` limits.
    pub fn total(&self) -> u32 {
        self.queued.iter().sum::<u32>() + self.delayed.iter().sum::<u32>() + self.running
    }

    pub fn runnable(&self) -> u32 {
        self.queued.iter().sum()
    }

    pub fn push(&mut self, priority: Priority, id: JobId) {
        self.queues[priority].push_back(id);
        self.queued[priority] += 1;
    }

    /// Puts a job at the head of its priority: a pulled job that must run next.
    pub fn push_front(&mut self, priority: Priority, id: JobId) {
        self.queues[priority].push_front(id);
        self.queued[priority] += 1;
    }

    /// Pops the first id of the highest non-empty priority for which `is_live`
    /// holds, dropping dead ids on the way.
    pub fn pop(&mut self, mut is_live: impl FnMut(JobId) -> bool) -> Option<(Priority, JobId)> {
        for priority in 0..3 {
            if self.queued[priority] == 0 {
                // Only dead ids can remain: drop them so memory goes back.
                if !self.queues[priority].is_empty() {
                    self.queues[priority] = VecDeque::new();
                }
                continue;
            }
            while let Some(id) = self.queues[priority].pop_front() {
                if is_live(id) {
                    self.queued[priority] -= 1;
                    self.release_if_empty(priority);
                    return Some((priority, id));
                }
            }
        }
        None
    }

    /// A queue that has drained keeps its peak capacity; give it back.
    fn release_if_empty(&mut self, priority: Priority) {
        let queue = &mut self.queues[priority];
        if queue.is_empty() && queue.capacity() > 64 {
            *queue = VecDeque::new();
        }
    }
}

/// Every function the server knows, by name and by a small id that jobs and
/// workers hold instead of the name.
#[derive(Default)]
pub struct Functions {
    slots: Vec<Option<Function>>,
    free: Vec<FuncId>,
    /// hashbrown's seeded foldhash, not SipHash: looked up on every submit.
    by_name: HashMap<Bytes, FuncId>,
}

impl Functions {
    pub fn id(&self, name: &[u8]) -> Option<FuncId> {
        self.by_name.get(name).copied()
    }

    /// The function's id, creating it on first use as gearmand does for SUBMIT,
    /// CAN_DO and `create function`.
    pub fn get_or_create(&mut self, name: &[u8]) -> FuncId {
        if let Some(id) = self.id(name) {
            return id;
        }
        let name = Bytes::copy_from_slice(name);
        let function = Function {
            name: name.clone(),
            ..Function::default()
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(function);
                id
            }
            None => {
                self.slots.push(Some(function));
                (self.slots.len() - 1) as FuncId
            }
        };
        self.by_name.insert(name, id);
        id
    }

    pub fn get(&self, id: FuncId) -> &Function {
        self.slots[id as usize].as_ref().expect("live function id")
    }

    pub fn get_mut(&mut self, id: FuncId) -> &mut Function {
        self.slots[id as usize].as_mut().expect("live function id")
    }

    /// Removes a function that has no jobs and no workers.
    pub fn remove(&mut self, id: FuncId) {
        if let Some(function) = self.slots[id as usize].take() {
            self.by_name.remove(&function.name);
            self.free.push(id);
        }
    }

    /// Functions in name order, for stable admin listings.
    pub fn sorted(&self) -> Vec<&Function> {
        let mut all: Vec<&Function> = self.slots.iter().flatten().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}
