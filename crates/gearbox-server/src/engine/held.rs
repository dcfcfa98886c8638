//! JOB_CREATEDs held until the store commits their row, and the bound on how
//! long they are held.
//!
//! A background submit is acknowledged only once its row is committed, so
//! its JOB_CREATED, and every reply queued after it on that connection, waits
//! in the connection's outbox until then. A store that stops committing (a
//! read-only or vanished file, a database that went away, a call that hangs)
//! must not leave that connection waiting forever: once a reply has waited
//! for the bound, each held JOB_CREATED is replaced in place by an
//! `ERROR QUEUE_ERROR`, as if the store had refused the submit, and the
//! connection's replies flow again. A refused submit must not leave a job
//! behind either, so the job a refused submit created is withdrawn (and any
//! other held acknowledgement of it refused too): nobody was told it exists.

use super::jobs::JobId;
use super::{ConnId, Engine};
use gearbox_proto::packet::encode_res;
use gearbox_proto::PacketType;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How long a connection must have been the only one to submit background
/// jobs before its commits run inline again.
const ALONE_AFTER: Duration = Duration::from_millis(1);

/// Which connections submit background jobs: enough to tell one alone from
/// several at once.
#[derive(Default)]
pub(super) struct Submitters {
    last: ConnId,
    /// When a submit last came from another connection than the one before.
    mixed_at: Option<Instant>,
}

impl Submitters {
    fn note(&mut self, conn: ConnId) {
        if conn != self.last {
            if self.last != 0 {
                self.mixed_at = Some(Instant::now());
            }
            self.last = conn;
        }
    }
}

/// A JOB_CREATED waiting in a held outbox.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeldAck {
    /// Where the packet starts in the outbox, and its length.
    at: usize,
    len: usize,
    job: JobId,
    /// This submit wrote the job's row (it created the job, or made it a
    /// background one), so refusing it withdraws the job.
    owns_row: bool,
}

impl Engine {
    /// Holds `conn`'s replies, from the JOB_CREATED for `job` just queued
    /// (`ack_len` bytes) on, until the store has committed every row added
    /// so far.
    pub(super) fn hold_until_stored(
        &mut self,
        conn: ConnId,
        job: JobId,
        owns_row: bool,
        ack_len: usize,
    ) {
        let barrier = self.store.ack_barrier();
        if barrier <= self.committed {
            return;
        }
        self.submitters.note(conn);
        let Some(c) = self.conns.map.get_mut(&conn) else {
            return;
        };
        if c.hold_until <= self.committed {
            self.held.push(conn);
            c.held_since = Some(Instant::now());
            c.held_acks.clear();
        }
        c.hold_until = barrier;
        c.held_acks.push(HeldAck {
            at: c.outbox.len() - ack_len,
            len: ack_len,
            job,
            owns_row,
        });
    }

    /// Whether one connection alone waits for a commit and alone submits
    /// background jobs just now, so the thread that handled its submit had
    /// best commit it itself: there is nobody to share a commit with (see
    /// `Dispatch::commit_inline`). Rows nobody waits for (the deletes of
    /// finished jobs) are left to the writer thread, which batches them.
    pub fn submits_alone(&self) -> bool {
        self.held.len() == 1
            && self
                .submitters
                .mixed_at
                .is_none_or(|at| at.elapsed() >= ALONE_AFTER)
    }

    /// The store committed everything up to `committed`: the replies that
    /// waited for it go out.
    pub fn release_stored(&mut self, committed: u64) {
        self.rewrite_if_replaced();
        self.committed = self.committed.max(committed);
        let committed = self.committed;
        let conns = &mut self.conns;
        self.held.retain(|&id| match conns.map.get_mut(&id) {
            Some(c) if c.hold_until > committed => true,
            Some(c) => {
                c.held_acks.clear();
                c.held_since = None;
                if !c.outbox.is_empty() {
                    conns.dirty.push(id);
                }
                false
            }
            None => false,
        });
        self.flush();
    }

    /// Refuses, with QUEUE_ERROR, the held JOB_CREATEDs of every connection
    /// whose replies have waited for `bound`, and lets those replies go.
    /// Returns whether replies are still held, so the caller looks again.
    pub fn expire_held(&mut self, bound: Duration) -> bool {
        let now = Instant::now();
        let committed = self.committed;
        let conns = &self.conns;
        let expired: Vec<ConnId> = self
            .held
            .iter()
            .copied()
            .filter(|id| {
                conns.map.get(id).is_some_and(|c| {
                    c.hold_until > committed
                        && c.held_since.is_some_and(|t| now.duration_since(t) >= bound)
                })
            })
            .collect();
        if expired.is_empty() {
            return !self.held.is_empty();
        }
        let why = format!(
            "the queue store did not commit the job within {} s ({}); it was not queued",
            bound.as_secs(),
            self.store.failure().unwrap_or_else(|| "no commit".into())
        );
        let mut withdrawn = HashSet::new();
        let mut refused = 0usize;
        for &id in &expired {
            let failed = self.refuse_held_acks(id, &why, |_| true);
            refused += failed.len();
            withdrawn.extend(failed.iter().filter(|a| a.owns_row).map(|a| a.job));
            if let Some(c) = self.conns.map.get_mut(&id) {
                c.hold_until = 0;
                c.held_since = None;
                if !c.outbox.is_empty() {
                    self.conns.dirty.push(id);
                }
            }
        }
        let conns = &self.conns;
        self.held
            .retain(|id| conns.map.contains_key(id) && !expired.contains(id));
        if !withdrawn.is_empty() {
            for id in self.held.clone() {
                refused += self
                    .refuse_held_acks(id, &why, |a| withdrawn.contains(&a.job))
                    .len();
            }
            for &job in &withdrawn {
                self.withdraw(job);
            }
        }
        tracing::warn!(
            connections = expired.len(),
            refused,
            withdrawn = withdrawn.len(),
            bound_s = bound.as_secs(),
            "JOB_CREATEDs held too long for the queue store: answered with QUEUE_ERROR"
        );
        self.flush();
        !self.held.is_empty()
    }

    /// Rewrites `conn`'s held outbox with each held JOB_CREATED that `refuse`
    /// picks replaced by an ERROR; returns those.
    fn refuse_held_acks(
        &mut self,
        conn: ConnId,
        why: &str,
        refuse: impl Fn(&HeldAck) -> bool,
    ) -> Vec<HeldAck> {
        let Some(c) = self.conns.map.get_mut(&conn) else {
            return Vec::new();
        };
        let old = c.outbox.split();
        let mut kept = Vec::new();
        let mut refused = Vec::new();
        let mut from = 0;
        for mut ack in std::mem::take(&mut c.held_acks) {
            c.outbox.extend_from_slice(&old[from..ack.at]);
            from = ack.at + ack.len;
            if refuse(&ack) {
                let fields: [&[u8]; 2] = [b"QUEUE_ERROR", why.as_bytes()];
                encode_res(&mut c.outbox, PacketType::ERROR, &fields);
                refused.push(ack);
            } else {
                let at = c.outbox.len();
                c.outbox.extend_from_slice(&old[ack.at..from]);
                ack.at = at;
                kept.push(ack);
            }
        }
        c.outbox.extend_from_slice(&old[from..]);
        c.held_acks = kept;
        refused
    }

    /// A job whose submit was refused after all: it goes, unless a worker
    /// runs it or a foreground client waits for it, which keep it as a
    /// foreground job. Either way its row goes.
    fn withdraw(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(id).filter(|j| j.background) else {
            return;
        };
        if !job.is_running() && job.clients.is_empty() {
            self.remove_job(id);
            return;
        }
        let stored = super::work::stored(&self.functions, id, job);
        self.store.remove(&stored);
        if let Some(job) = self.jobs.get_mut(id) {
            job.background = false;
        }
    }
}
