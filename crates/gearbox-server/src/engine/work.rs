//! Results from workers (WORK_*), and what happens to a job whose worker or
//! clients go away.

use super::functions::Functions;
use super::jobs::{Job, JobId, JobState};
use super::{ConnId, Engine};
use crate::store::StoredJob;
use gearbox_proto::admin::atoi;
use gearbox_proto::{Packet, PacketType};

impl Engine {
    /// WORK_STATUS, WORK_DATA, WORK_WARNING, WORK_COMPLETE, WORK_FAIL and
    /// WORK_EXCEPTION. Only the worker holding the job may send them.
    pub(super) fn work(&mut self, conn: ConnId, p: &Packet) {
        use PacketType::*;
        let held = self.parse_handle(p.arg(0)).filter(|&id| {
            self.jobs.get(id).is_some_and(
                |j| matches!(j.state, JobState::Running { worker, .. } if worker == conn),
            )
        });
        let Some(id) = held else {
            let text = match p.kind {
                WORK_DATA | WORK_WARNING => "Job does not exist on server",
                WORK_EXCEPTION => "An exception was received for a job that does not exist",
                _ => "Job given in work result not found",
            };
            return self.conns.error(conn, "JOB_NOT_FOUND", text);
        };
        let pulled = self.jobs.get(id).is_some_and(|j| j.pulled);
        if pulled && self.relay_work(id, p) {
            if matches!(p.kind, WORK_COMPLETE | WORK_FAIL | WORK_EXCEPTION) {
                self.remove_job(id);
            }
            return;
        }
        let handle = self.handle_bytes(id);
        let job = self.jobs.get_mut(id).expect("checked above");
        match p.kind {
            WORK_STATUS => {
                // Stored as C's atoi cast to u32, forwarded as sent.
                job.numerator = atoi(p.arg(1)) as u32;
                job.denominator = atoi(p.arg(2)) as u32;
                self.forward(id, WORK_STATUS, &[&handle, p.arg(1), p.arg(2)]);
            }
            WORK_DATA | WORK_WARNING => self.forward(id, p.kind, &[&handle, p.arg(1)]),
            WORK_COMPLETE => {
                self.forward(id, WORK_COMPLETE, &[&handle, p.arg(1)]);
                self.remove_job(id);
            }
            WORK_FAIL => {
                self.forward(id, WORK_FAIL, &[&handle]);
                self.remove_job(id);
            }
            WORK_EXCEPTION => {
                // Clients without the `exceptions` option get a plain WORK_FAIL.
                // gearmand sends them `handle\0`, which hangs the gearman CLI and
                // kills Perl's client.
                let job = self.jobs.get(id).expect("checked above");
                for &client in &job.clients {
                    match self.conns.map.get(&client).map(|c| c.exceptions) {
                        Some(true) => self
                            .conns
                            .send(client, WORK_EXCEPTION, &[&handle, p.arg(1)]),
                        Some(false) => self.conns.send(client, WORK_FAIL, &[&handle]),
                        None => {}
                    }
                }
                self.remove_job(id);
            }
            other => unreachable!("{} is not a work packet", other.name()),
        }
    }

    /// Sends a packet to every foreground client attached to the job.
    pub(super) fn forward(&mut self, id: JobId, kind: PacketType, fields: &[&[u8]]) {
        let Some(job) = self.jobs.get(id) else { return };
        for &client in &job.clients {
            self.conns.send(client, kind, fields);
        }
    }

    /// A worker gave a job up (disconnect, CANT_DO, RESET_ABILITIES, timeout).
    /// It goes back to the tail of its queue unless nobody wants it any more or
    /// it has used up its `-j` attempts, in which case its clients get WORK_FAIL.
    pub(super) fn requeue(&mut self, id: JobId) {
        if self.jobs.get(id).is_some_and(|j| j.pulled) && self.requeue_pulled(id) {
            return;
        }
        let retries_limit = self.settings.job_retries;
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let JobState::Running { worker, .. } = job.state else {
            return;
        };
        if job.cancelled || (job.clients.is_empty() && !job.background) {
            self.remove_job(id);
            return;
        }
        job.retries += 1;
        if retries_limit > 0 && job.retries >= retries_limit {
            tracing::debug!(
                job = id,
                retries = job.retries,
                "job dropped after its last attempt"
            );
            let handle = self.handle_bytes(id);
            self.forward(id, PacketType::WORK_FAIL, &[&handle]);
            self.remove_job(id);
            return;
        }
        job.numerator = 0;
        job.denominator = 0;
        job.state = JobState::Queued;
        let (func, priority) = (job.func, job.priority());
        self.stopped_running(worker, id, func);
        self.functions.get_mut(func).push(priority, id);
        self.wake(func, 1);
    }

    /// A foreground client left. A job nobody waits for any more, and that no
    /// background submitter asked for, is dropped unless a worker already runs it.
    pub(super) fn detach_client(&mut self, id: JobId, conn: ConnId) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        job.clients.remove_all(conn);
        if job.clients.is_empty() && !job.background && !job.is_running() {
            self.remove_job(id);
        }
    }

    /// Removes a job from every table and counter, whatever its state.
    pub(super) fn remove_job(&mut self, id: JobId) -> Option<Job> {
        let job = self.jobs.remove(id)?;
        let function = self.functions.get_mut(job.func);
        match job.state {
            JobState::Queued => function.queued[job.priority()] -= 1,
            JobState::Delayed { .. } => function.delayed[job.priority()] -= 1,
            JobState::Running { worker, .. } => self.stopped_running(worker, id, job.func),
        }
        for client in &job.clients {
            if let Some(c) = self.conns.map.get_mut(client) {
                c.attached.remove(&id);
            }
        }
        if job.pulled {
            self.forget_pulled(id);
        } else if job.background && !job.cancelled {
            self.store.remove(&stored(&self.functions, id, &job));
        }
        Some(job)
    }

    /// Bookkeeping for a job that stops being held by `worker`.
    pub(super) fn stopped_running(&mut self, worker: ConnId, id: JobId, func: u32) {
        self.functions.get_mut(func).running -= 1;
        self.running -= 1;
        if let Some(c) = self.conns.map.get_mut(&worker) {
            if let Some(at) = c.holding.iter().position(|&h| h == id) {
                c.holding.swap_remove(at);
            }
        }
        if self.draining && self.running == 0 {
            self.signals.idle.notify_one();
        }
    }
}

/// How a store sees `job`.
pub(super) fn stored<'a>(functions: &'a Functions, id: JobId, job: &'a Job) -> StoredJob<'a> {
    StoredJob {
        id,
        function: &functions.get(job.func).name,
        unique: job.unique(),
        data: job.data(),
        priority: job.priority() as u8,
        when: match job.state {
            JobState::Delayed { when } => when,
            _ => 0,
        },
    }
}
