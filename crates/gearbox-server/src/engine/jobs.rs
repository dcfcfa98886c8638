//! Job records and the two indexes over them: by handle number and by
//! (function, unique).
//!
//! A job is kept compact because a backlog can hold millions: unique, reducer
//! and payload share one exact-size allocation, and the unique index stores a
//! hash and job ids rather than a second copy of each unique.

use super::ConnId;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;

pub type JobId = u64;
pub type FuncId = u32;

/// HIGH, NORMAL, LOW: the index into per-priority arrays and gearmand's store value.
pub type Priority = usize;
pub const HIGH: Priority = 0;
pub const NORMAL: Priority = 1;
pub const LOW: Priority = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// In its function's queue, runnable now.
    Queued,
    /// Waiting for its epoch time; not in any queue until then.
    Delayed { when: u64 },
    /// Held by a worker. `assignment` tells a stale CAN_DO_TIMEOUT from a live one.
    Running { worker: ConnId, assignment: u64 },
}

#[derive(Debug)]
pub struct Job {
    pub func: FuncId,
    pub priority: Priority,
    pub state: JobState,
    /// Some submitter asked for it in the background, so it outlives its
    /// foreground clients and is persisted.
    pub background: bool,
    /// In the unique index (false for an empty unique, or `-` with empty data).
    pub coalescable: bool,
    /// Cancelled by an admin while running: its clients are gone and its result
    /// is accepted from the worker but sent nowhere.
    pub cancelled: bool,
    pub retries: u32,
    pub numerator: u32,
    pub denominator: u32,
    /// Foreground connections attached to the job; one entry per submit.
    pub clients: Vec<ConnId>,
    unique_len: u32,
    reducer_len: u32,
    /// unique ++ reducer ++ data.
    blob: Box<[u8]>,
}

impl Job {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        func: FuncId,
        priority: Priority,
        state: JobState,
        background: bool,
        unique: &[u8],
        reducer: &[u8],
        data: &[u8],
    ) -> Job {
        let mut blob = Vec::with_capacity(unique.len() + reducer.len() + data.len());
        blob.extend_from_slice(unique);
        blob.extend_from_slice(reducer);
        blob.extend_from_slice(data);
        Job {
            func,
            priority,
            state,
            background,
            coalescable: false,
            cancelled: false,
            retries: 0,
            numerator: 0,
            denominator: 0,
            clients: Vec::new(),
            unique_len: unique.len() as u32,
            reducer_len: reducer.len() as u32,
            blob: blob.into_boxed_slice(),
        }
    }

    pub fn unique(&self) -> &[u8] {
        &self.blob[..self.unique_len as usize]
    }

    pub fn reducer(&self) -> &[u8] {
        let start = self.unique_len as usize;
        &self.blob[start..start + self.reducer_len as usize]
    }

    pub fn data(&self) -> &[u8] {
        &self.blob[(self.unique_len + self.reducer_len) as usize..]
    }

    /// What coalescing compares: the data for a unique of `-`, else the unique.
    pub fn coalesce_key(&self) -> &[u8] {
        coalesce_key(self.unique(), self.data()).unwrap_or(&[])
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, JobState::Running { .. })
    }
}

/// The key a submit coalesces on, or `None` if it never coalesces: an empty
/// unique, or `-` with empty data.
pub fn coalesce_key<'a>(unique: &'a [u8], data: &'a [u8]) -> Option<&'a [u8]> {
    match unique {
        b"" => None,
        b"-" if data.is_empty() => None,
        b"-" => Some(data),
        other => Some(other),
    }
}

/// All live jobs, by handle number and by (function, coalesce key).
#[derive(Default)]
pub struct JobTable {
    jobs: HashMap<JobId, Job>,
    /// hash(function, key) → jobs with that hash. Almost always one id; the job
    /// records themselves settle a hash collision.
    by_unique: HashMap<u64, Vec<JobId>>,
    hasher: RandomState,
    next_id: JobId,
}

impl JobTable {
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn get(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }

    pub fn get_mut(&mut self, id: JobId) -> Option<&mut Job> {
        self.jobs.get_mut(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&JobId, &Job)> {
        self.jobs.iter()
    }

    fn key_hash(&self, func: FuncId, key: &[u8]) -> u64 {
        self.hasher.hash_one((func, key))
    }

    /// The live job that a submit of (`func`, `key`) coalesces with.
    pub fn find_unique(&self, func: FuncId, key: &[u8]) -> Option<JobId> {
        let ids = self.by_unique.get(&self.key_hash(func, key))?;
        ids.iter().copied().find(|id| {
            self.jobs
                .get(id)
                .is_some_and(|j| j.func == func && j.coalescable && j.coalesce_key() == key)
        })
    }

    /// Stores a new job under the next handle number and indexes it.
    pub fn insert(&mut self, mut job: Job) -> JobId {
        self.next_id += 1;
        let id = self.next_id;
        if let Some(key) = coalesce_key(job.unique(), job.data()) {
            let hash = self.key_hash(job.func, key);
            self.by_unique.entry(hash).or_default().push(id);
            job.coalescable = true;
        }
        self.jobs.insert(id, job);
        id
    }

    /// Takes the job out of the unique index, so that later submits with the
    /// same unique create a new job (used when a running job is cancelled).
    pub fn unindex(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if !job.coalescable {
            return;
        }
        let hash = self.key_hash(job.func, job.coalesce_key());
        if let Some(ids) = self.by_unique.get_mut(&hash) {
            ids.retain(|&other| other != id);
            if ids.is_empty() {
                self.by_unique.remove(&hash);
            }
        }
        if let Some(job) = self.jobs.get_mut(&id) {
            job.coalescable = false;
        }
    }

    pub fn remove(&mut self, id: JobId) -> Option<Job> {
        self.unindex(id);
        let job = self.jobs.remove(&id);
        self.shrink_if_sparse();
        job
    }

    /// Gives memory back once a backlog has drained: hash tables never shrink by
    /// themselves.
    fn shrink_if_sparse(&mut self) {
        if self.jobs.capacity() > 1024 && self.jobs.len() * 4 < self.jobs.capacity() {
            self.jobs.shrink_to(self.jobs.len() * 2);
            self.by_unique.shrink_to(self.by_unique.len() * 2);
        }
    }
}
