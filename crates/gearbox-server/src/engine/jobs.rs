//! Job records and the two indexes over them: by handle number and by
//! (function, unique).
//!
//! A job is kept compact because a backlog can hold millions: unique, reducer
//! and payload share one exact-size allocation, and the unique index stores a
//! hash and job ids rather than a second copy of each unique.

use super::ConnId;
use hashbrown::HashTable;
use std::collections::hash_map::RandomState;
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
    Running { worker: ConnId, assignment: u32 },
}

#[derive(Debug)]
pub struct Job {
    /// The number in the job's handle; set by [`JobTable::insert`].
    pub id: JobId,
    pub func: FuncId,
    priority: u8,
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
            id: 0,
            func,
            priority: priority as u8,
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

    pub fn priority(&self) -> Priority {
        Priority::from(self.priority)
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

    /// What coalescing compares; `None` for a job that never coalesces.
    pub fn coalesce_key(&self) -> Option<CoalesceKey<'_>> {
        coalesce_key(self.unique(), self.data())
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, JobState::Running { .. })
    }
}

/// What a submit coalesces on: its unique, or for a unique of `-` its data.
/// The two never match each other: a job submitted with `-` and data `abc` is
/// not the job submitted with unique `abc`, as in gearmand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CoalesceKey<'a> {
    pub by_data: bool,
    pub key: &'a [u8],
}

/// The key a submit coalesces on, or `None` if it never coalesces: an empty
/// unique, or `-` with empty data.
pub fn coalesce_key<'a>(unique: &'a [u8], data: &'a [u8]) -> Option<CoalesceKey<'a>> {
    match unique {
        b"" => None,
        b"-" if data.is_empty() => None,
        b"-" => Some(CoalesceKey {
            by_data: true,
            key: data,
        }),
        other => Some(CoalesceKey {
            by_data: false,
            key: other,
        }),
    }
}

/// All live jobs, by handle number and by (function, coalesce key).
///
/// Both indexes are `hashbrown` tables of one word per slot: the job table holds
/// boxed jobs that carry their own id, and the unique index holds job ids and
/// rehashes through the job records. With power-of-two tables at 7/8 load, an
/// inline 100-byte entry would cost up to ~240 bytes a job; a word costs ~19.
#[derive(Default)]
pub struct JobTable {
    jobs: HashTable<Box<Job>>,
    by_unique: HashTable<JobId>,
    hasher: RandomState,
    next_id: JobId,
}

/// Hash of a job id. Ids are ours (sequential, never from a peer), so a
/// multiply-fold is enough and much cheaper than SipHash.
fn id_hash(id: JobId) -> u64 {
    super::fold(id)
}

impl JobTable {
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn get(&self, id: JobId) -> Option<&Job> {
        self.jobs.find(id_hash(id), |j| j.id == id).map(|b| &**b)
    }

    pub fn get_mut(&mut self, id: JobId) -> Option<&mut Job> {
        self.jobs
            .find_mut(id_hash(id), |j| j.id == id)
            .map(|b| &mut **b)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Job> {
        self.jobs.iter().map(|b| &**b)
    }

    /// The unique-index hash of a job, from its own record.
    fn unique_hash_of(jobs: &HashTable<Box<Job>>, hasher: &RandomState, id: JobId) -> u64 {
        let job = jobs
            .find(id_hash(id), |j| j.id == id)
            .expect("indexed jobs are live");
        hasher.hash_one((job.func, job.coalesce_key()))
    }

    /// The live job that a submit with this key coalesces with.
    pub fn find_unique(&self, func: FuncId, key: CoalesceKey<'_>) -> Option<JobId> {
        let hash = self.hasher.hash_one((func, Some(key)));
        self.by_unique
            .find(hash, |&id| {
                self.get(id)
                    .is_some_and(|j| j.func == func && j.coalesce_key() == Some(key))
            })
            .copied()
    }

    /// Stores a new job under the next handle number and indexes it.
    pub fn insert(&mut self, mut job: Job) -> JobId {
        self.next_id += 1;
        let id = self.next_id;
        job.id = id;
        let key_hash = coalesce_key(job.unique(), job.data())
            .map(|key| self.hasher.hash_one((job.func, Some(key))));
        job.coalescable = key_hash.is_some();
        self.jobs
            .insert_unique(id_hash(id), Box::new(job), |j| id_hash(j.id));
        if let Some(hash) = key_hash {
            let (jobs, hasher) = (&self.jobs, &self.hasher);
            self.by_unique
                .insert_unique(hash, id, |&other| Self::unique_hash_of(jobs, hasher, other));
        }
        id
    }

    /// Takes the job out of the unique index, so that later submits with the
    /// same unique create a new job (used when a running job is cancelled).
    pub fn unindex(&mut self, id: JobId) {
        let Some(job) = self.get(id) else { return };
        if !job.coalescable {
            return;
        }
        let hash = self.hasher.hash_one((job.func, job.coalesce_key()));
        if let Ok(entry) = self.by_unique.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
        if let Some(job) = self.get_mut(id) {
            job.coalescable = false;
        }
    }

    pub fn remove(&mut self, id: JobId) -> Option<Job> {
        self.unindex(id);
        let job = match self.jobs.find_entry(id_hash(id), |j| j.id == id) {
            Ok(entry) => *entry.remove().0,
            Err(_) => return None,
        };
        self.shrink_if_sparse();
        Some(job)
    }

    /// Gives memory back once a backlog has drained: hash tables never shrink by
    /// themselves.
    fn shrink_if_sparse(&mut self) {
        if self.jobs.capacity() > 1024 && self.jobs.len() * 4 < self.jobs.capacity() {
            self.jobs.shrink_to(self.jobs.len() * 2, |j| id_hash(j.id));
        }
        if self.by_unique.capacity() > 1024 && self.by_unique.len() * 4 < self.by_unique.capacity()
        {
            let (jobs, hasher) = (&self.jobs, &self.hasher);
            let target = self.by_unique.len() * 2;
            self.by_unique
                .shrink_to(target, |&id| Self::unique_hash_of(jobs, hasher, id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backlog holds millions of these: keep the record within 96 bytes
    /// (one 112-byte malloc chunk), payload and unique stored apart in `blob`.
    #[test]
    fn job_record_stays_compact() {
        assert!(
            std::mem::size_of::<Job>() <= 96,
            "{}",
            std::mem::size_of::<Job>()
        );
    }

    #[test]
    fn unique_index_finds_coalescable_jobs_and_forgets_removed_ones() {
        let mut table = JobTable::default();
        let job = |unique: &[u8], data: &[u8]| {
            Job::new(7, NORMAL, JobState::Queued, true, unique, b"", data)
        };
        let a = table.insert(job(b"u", b"x"));
        let dash = table.insert(job(b"-", b"payload"));
        let empty = table.insert(job(b"", b"x"));
        let literal = |key: &'static [u8]| CoalesceKey {
            by_data: false,
            key,
        };
        assert_eq!(table.find_unique(7, literal(b"u")), Some(a));
        assert_eq!(table.find_unique(8, literal(b"u")), None);
        assert_eq!(table.find_unique(7, literal(b"payload")), None);
        let by_data = CoalesceKey {
            by_data: true,
            key: b"payload",
        };
        assert_eq!(table.find_unique(7, by_data), Some(dash));
        assert!(!table.get(empty).unwrap().coalescable);
        // Grow past several resizes: rehashing goes through the job records.
        let many: Vec<JobId> = (0..5000)
            .map(|i| table.insert(job(format!("k{i}").as_bytes(), b"")))
            .collect();
        assert_eq!(table.find_unique(7, literal(b"k4999")), Some(many[4999]));
        for id in &many {
            table.remove(*id);
        }
        assert_eq!(table.find_unique(7, literal(b"k10")), None);
        assert_eq!(table.find_unique(7, literal(b"u")), Some(a));
        assert_eq!(table.len(), 3);
    }
}
