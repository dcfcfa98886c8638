//! Job records and the two indexes over them: by handle number and by
//! (function, unique).
//!
//! A job is kept compact because a backlog can hold millions: the record,
//! unique, reducer and payload share one exact-size allocation (in the job
//! arena, see `arena`), and the unique index stores a hash and job ids rather
//! than a second copy of each unique.

use super::arena::{ArenaBox, Tailed};
use super::job_pages::JobPages;
use super::ConnId;
use hashbrown::HashTable;
use std::hash::BuildHasher;

pub type JobId = u64;
pub type FuncId = u32;

/// HIGH, NORMAL, LOW: the index into per-priority arrays and gearmand's store value.
pub type Priority = usize;
pub const HIGH: Priority = 0;
pub const NORMAL: Priority = 1;
pub const LOW: Priority = 2;

/// Foreground connections attached to a job, one entry per submit. Most jobs
/// of a backlog are background jobs with none, so the list lives behind one
/// pointer and costs 8 bytes when empty. (A boxed `Vec` is a thin pointer;
/// `Box<[ConnId]>` would take 16 bytes in every job.)
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
pub struct Clients(Option<Box<Vec<ConnId>>>);

impl Clients {
    pub fn push(&mut self, conn: ConnId) {
        self.0.get_or_insert_with(Default::default).push(conn);
    }

    /// Removes every entry of `conn`.
    pub fn remove_all(&mut self, conn: ConnId) {
        if let Some(list) = &mut self.0 {
            list.retain(|&c| c != conn);
            if list.is_empty() {
                self.0 = None;
            }
        }
    }
}

impl std::ops::Deref for Clients {
    type Target = [ConnId];
    fn deref(&self) -> &[ConnId] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl<'a> IntoIterator for &'a Clients {
    type Item = &'a ConnId;
    type IntoIter = std::slice::Iter<'a, ConnId>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl IntoIterator for Clients {
    type Item = ConnId;
    type IntoIter = std::vec::IntoIter<ConnId>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.map(|list| *list).unwrap_or_default().into_iter()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// In its function's queue, runnable now.
    Queued,
    /// Waiting for its epoch time; not in any queue until then.
    Delayed { when: u64 },
    /// Held by a worker. `assignment` tells a stale CAN_DO_TIMEOUT from a live one.
    Running { worker: ConnId, assignment: u32 },
}

/// A job: its record, with unique ++ reducer ++ data stored right after it.
pub type Job = ArenaBox<JobRecord>;

#[derive(Debug)]
pub struct JobRecord {
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
    /// Pulled from a peer (see `peering`): not stored, not coalesced here.
    pub pulled: bool,
    pub retries: u32,
    pub numerator: u32,
    pub denominator: u32,
    /// Foreground connections attached to the job; one entry per submit.
    pub clients: Clients,
    unique_len: u32,
    reducer_len: u32,
    data_len: u32,
}

impl Tailed for JobRecord {
    fn tail_len(&self) -> usize {
        (self.unique_len + self.reducer_len + self.data_len) as usize
    }
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
        let record = JobRecord {
            id: 0,
            func,
            priority: priority as u8,
            state,
            background,
            coalescable: false,
            cancelled: false,
            pulled: false,
            retries: 0,
            numerator: 0,
            denominator: 0,
            clients: Clients::default(),
            unique_len: unique.len() as u32,
            reducer_len: reducer.len() as u32,
            data_len: data.len() as u32,
        };
        ArenaBox::with_tail(record, &[unique, reducer, data])
    }

    pub fn unique(&self) -> &[u8] {
        &self.tail()[..self.unique_len as usize]
    }

    pub fn reducer(&self) -> &[u8] {
        let start = self.unique_len as usize;
        &self.tail()[start..start + self.reducer_len as usize]
    }

    pub fn data(&self) -> &[u8] {
        &self.tail()[(self.unique_len + self.reducer_len) as usize..]
    }

    /// What coalescing compares; `None` for a job that never coalesces.
    pub fn coalesce_key(&self) -> Option<CoalesceKey<'_>> {
        coalesce_key(self.unique(), self.data())
    }
}

impl JobRecord {
    pub fn priority(&self) -> Priority {
        Priority::from(self.priority)
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

/// All live jobs, by handle number (pages of consecutive ids, see
/// `job_pages.rs`) and by (function, coalesce key).
///
/// The unique index is a `hashbrown` table of two words per slot, (hash, id).
/// With power-of-two tables at 7/8 load, inline 100-byte entries would cost up
/// to ~240 bytes a job. Keeping the hash and the id in the slot means a resize
/// only moves words: it never touches the job records, which at a million jobs
/// would be a cache miss each and stall every connection for a fraction of a
/// second.
#[derive(Default)]
pub struct JobTable {
    jobs: JobPages,
    by_unique: HashTable<(u64, JobId)>,
    /// foldhash, seeded per process (hashbrown's default): uniques come from
    /// peers, so the seed keeps them from choosing collisions, and it hashes a
    /// 36-byte uuid several times faster than SipHash, which was 2.6% of the
    /// server's CPU on a submit with uuid uniques.
    hasher: hashbrown::DefaultHashBuilder,
    next_id: JobId,
}

impl JobTable {
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn get(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(id)
    }

    pub fn get_mut(&mut self, id: JobId) -> Option<&mut Job> {
        self.jobs.get_mut(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Job> {
        self.jobs.iter()
    }

    /// The hash a key is indexed under. A submit computes it once, for both
    /// the lookup and the insert (hashing a 36-byte unique twice showed in
    /// profiles).
    pub fn unique_hash(&self, func: FuncId, key: CoalesceKey<'_>) -> u64 {
        self.hasher.hash_one((func, key))
    }

    /// The live job that a submit with this key coalesces with.
    pub fn find_unique(&self, func: FuncId, key: CoalesceKey<'_>) -> Option<JobId> {
        self.find_unique_hashed(func, key, self.unique_hash(func, key))
    }

    /// [`find_unique`](Self::find_unique) with the key's hash already known.
    pub fn find_unique_hashed(
        &self,
        func: FuncId,
        key: CoalesceKey<'_>,
        hash: u64,
    ) -> Option<JobId> {
        self.by_unique
            .find(hash, |&(h, id)| {
                h == hash
                    && self
                        .get(id)
                        .is_some_and(|j| j.func == func && j.coalesce_key() == Some(key))
            })
            .map(|&(_, id)| id)
    }

    /// Stores a new job under the next handle number and indexes it.
    pub fn insert(&mut self, job: Job) -> JobId {
        let key_hash = job
            .coalesce_key()
            .map(|key| self.unique_hash(job.func, key));
        self.insert_hashed(job, key_hash)
    }

    /// [`insert`](Self::insert) with the hash of the job's coalesce key
    /// already known (`None` for a job that never coalesces).
    pub fn insert_hashed(&mut self, mut job: Job, key_hash: Option<u64>) -> JobId {
        debug_assert_eq!(
            key_hash,
            job.coalesce_key()
                .map(|key| self.unique_hash(job.func, key))
        );
        self.next_id += 1;
        let id = self.next_id;
        job.id = id;
        job.coalescable = key_hash.is_some();
        self.jobs.insert(id, job);
        if let Some(hash) = key_hash {
            self.by_unique.insert_unique(hash, (hash, id), |&(h, _)| h);
        }
        id
    }

    /// Stores a job that is never coalesced, whatever its unique: one pulled
    /// from a peer, which coalesced it already.
    pub fn insert_unindexed(&mut self, mut job: Job) -> JobId {
        self.next_id += 1;
        let id = self.next_id;
        job.id = id;
        job.coalescable = false;
        self.jobs.insert(id, job);
        id
    }

    /// Takes the job out of the unique index, so that later submits with the
    /// same unique create a new job (used when a running job is cancelled).
    pub fn unindex(&mut self, id: JobId) {
        let Some(job) = self.get(id) else { return };
        let Some(key) = job.coalesce_key().filter(|_| job.coalescable) else {
            return;
        };
        let hash = self.unique_hash(job.func, key);
        if let Ok(entry) = self.by_unique.find_entry(hash, |&(_, other)| other == id) {
            entry.remove();
        }
        if let Some(job) = self.get_mut(id) {
            job.coalescable = false;
        }
    }

    pub fn remove(&mut self, id: JobId) -> Option<Job> {
        self.unindex(id);
        let job = self.jobs.remove(id)?;
        self.shrink_if_sparse();
        Some(job)
    }

    /// Gives memory back once a backlog has drained: hash tables never shrink by
    /// themselves. (The job pages free themselves.)
    fn shrink_if_sparse(&mut self) {
        if self.by_unique.capacity() > 1024 && self.by_unique.len() * 4 < self.by_unique.capacity()
        {
            self.by_unique
                .shrink_to(self.by_unique.len() * 2, |&(h, _)| h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backlog holds millions of these: keep the record within 96 bytes;
    /// unique, reducer and payload follow it in the same allocation.
    #[test]
    fn job_record_stays_compact() {
        assert!(
            std::mem::size_of::<JobRecord>() <= 96,
            "{}",
            std::mem::size_of::<JobRecord>()
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
