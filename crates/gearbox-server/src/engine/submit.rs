//! SUBMIT_JOB and its variants: creating jobs and coalescing them by unique.

use super::jobs::{coalesce_key, FuncId, Job, JobState, Priority, HIGH, LOW, NORMAL};
use super::{ConnId, Engine};
use crate::store::{StoreError, StoredJob};
use gearbox_proto::admin::atoi;
use gearbox_proto::codec::HEADER_LEN;
use gearbox_proto::{Packet, PacketType};

/// gearmand refuses uniques longer than this with ARGUMENT_TOO_LARGE.
pub const MAX_UNIQUE: usize = 64;

/// A submit, whatever packet type carried it.
pub struct Submit<'a> {
    pub function: &'a [u8],
    pub unique: &'a [u8],
    pub reducer: &'a [u8],
    pub data: &'a [u8],
    pub priority: Priority,
    pub background: bool,
    /// Epoch seconds before which the job must not run.
    pub when: Option<u64>,
}

/// Seconds since the epoch, now.
pub fn now_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Engine {
    pub(super) fn submit_packet(&mut self, conn: ConnId, p: &Packet) {
        use PacketType::*;
        let (priority, background) = match p.kind {
            SUBMIT_JOB | SUBMIT_REDUCE_JOB => (NORMAL, false),
            SUBMIT_JOB_BG | SUBMIT_JOB_EPOCH | SUBMIT_REDUCE_JOB_BACKGROUND => (NORMAL, true),
            SUBMIT_JOB_HIGH => (HIGH, false),
            SUBMIT_JOB_HIGH_BG => (HIGH, true),
            SUBMIT_JOB_LOW => (LOW, false),
            SUBMIT_JOB_LOW_BG => (LOW, true),
            other => unreachable!("{} is not a submit", other.name()),
        };
        let mut submit = Submit {
            function: p.arg(0),
            unique: p.arg(1),
            reducer: &[],
            data: p.arg(2),
            priority,
            background,
            when: None,
        };
        match p.kind {
            SUBMIT_JOB_EPOCH => {
                // strtoll semantics: garbage reads as 0 and the past as now,
                // both "run now"; only a value out of range is refused.
                let when = atoi(p.arg(2));
                if when.unsigned_abs() >= i64::MAX as u64 {
                    return self
                        .conns
                        .error(conn, "INVALID_ARGUMENT", "Epoch time out of range");
                }
                submit.when = Some(when.max(0) as u64);
                submit.data = p.arg(3);
            }
            SUBMIT_REDUCE_JOB | SUBMIT_REDUCE_JOB_BACKGROUND => {
                // Fields: function, unique, reducer, aggregator (ignored), data.
                submit.reducer = p.arg(2);
                submit.data = p.arg(4);
            }
            _ => {}
        }
        self.submit(conn, &submit);
    }

    /// Creates a job or joins an existing one, and answers JOB_CREATED.
    pub(super) fn submit(&mut self, conn: ConnId, s: &Submit<'_>) {
        if s.unique.len() > MAX_UNIQUE {
            return self
                .conns
                .error(conn, "ARGUMENT_TOO_LARGE", "Unique value too large");
        }
        let func = self.functions.get_or_create(s.function);
        let key = coalesce_key(s.unique, s.data);
        let key_hash = key.map(|key| self.jobs.unique_hash(func, key));
        if let (Some(key), Some(hash)) = (key, key_hash) {
            if let Some(id) = self.jobs.find_unique_hashed(func, key, hash) {
                return self.join(conn, id, s.background);
            }
        }
        let function = self.functions.get(func);
        let limit = function.max_queue[s.priority];
        if limit > 0 && function.total() >= limit {
            return self.conns.error(conn, "QUEUE_ERROR", "Job queue is full");
        }
        let now = now_epoch();
        let state = match s.when {
            Some(when) if when > now => JobState::Delayed { when },
            _ => JobState::Queued,
        };
        let job = Job::new(
            func,
            s.priority,
            state,
            s.background,
            s.unique,
            s.reducer,
            s.data,
        );
        let id = self.jobs.insert_hashed(job, key_hash);
        if s.background {
            let stored = StoredJob {
                id,
                function: s.function,
                unique: s.unique,
                data: s.data,
                priority: s.priority as u8,
                when: s.when.unwrap_or(0),
            };
            if let Err(e) = self.store.add(&stored) {
                self.refusals.note(&e);
                self.jobs.remove(id);
                return self.conns.error(conn, "QUEUE_ERROR", &e.to_string());
            }
        }
        self.enqueue_new(id, func, s.priority, state);
        let handle = self.handle_bytes(id);
        self.conns.send(conn, PacketType::JOB_CREATED, &[&handle]);
        if s.background {
            self.hold_until_stored(conn, id, true, HEADER_LEN + handle.len());
        } else {
            self.attach(conn, id);
        }
    }

    /// Puts a new job where it waits: its queue, or the timer heap until its
    /// epoch time. A runnable job wakes a sleeping worker.
    pub(super) fn enqueue_new(
        &mut self,
        id: u64,
        func: FuncId,
        priority: Priority,
        state: JobState,
    ) {
        let function = self.functions.get_mut(func);
        match state {
            JobState::Delayed { when } => {
                function.delayed[priority] += 1;
                self.timers.add_epoch(when, id);
                self.signals.timers.notify_one();
            }
            _ => {
                function.push(priority, id);
                self.wake(func, 1);
            }
        }
    }

    /// A submit that matched a live job: same handle, and a foreground submitter
    /// is attached to receive every WORK_* packet.
    fn join(&mut self, conn: ConnId, id: u64, background: bool) {
        let mut owns_row = false;
        if background {
            match self.make_background(id) {
                Ok(made) => owns_row = made,
                Err(e) => return self.conns.error(conn, "QUEUE_ERROR", &e.to_string()),
            }
        }
        let handle = self.handle_bytes(id);
        self.conns.send(conn, PacketType::JOB_CREATED, &[&handle]);
        if !background {
            self.attach(conn, id);
        }
        // The job's row may still be on its way to the store: joining it is
        // no more durable than submitting it.
        if self.jobs.get(id).is_some_and(|job| job.background) {
            self.hold_until_stored(conn, id, owns_row, HEADER_LEN + handle.len());
        }
    }

    /// A background submitter joined a foreground job: from now on it outlives
    /// its clients, and it is persisted like any background job. If the store
    /// cannot take it, the job stays foreground and the submit is refused.
    /// Returns whether it wrote the job's row (false: it was background).
    fn make_background(&mut self, id: u64) -> Result<bool, StoreError> {
        let Some(job) = self.jobs.get(id).filter(|job| !job.background) else {
            return Ok(false);
        };
        let stored = super::work::stored(&self.functions, id, job);
        if let Err(e) = self.store.add(&stored) {
            // Rate-limited with the other refusals: one line per outage
            // interval, not one per job.
            self.refusals.note(&e);
            return Err(e);
        }
        if let Some(job) = self.jobs.get_mut(id) {
            job.background = true;
        }
        Ok(true)
    }

    fn attach(&mut self, conn: ConnId, id: u64) {
        if let Some(job) = self.jobs.get_mut(id) {
            job.clients.push(conn);
        }
        if let Some(c) = self.conns.map.get_mut(&conn) {
            c.attached.insert(id);
        }
    }
}
