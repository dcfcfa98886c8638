//! Workers: registering functions, sleeping, being woken, and taking jobs.

use super::jobs::{FuncId, JobId, JobState};
use super::{Ability, ConnId, Engine};
use gearbox_proto::admin::atoi;
use gearbox_proto::PacketType;
use std::time::Duration;

/// Which assignment packet a grab asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assign {
    /// GRAB_JOB → JOB_ASSIGN.
    Plain,
    /// GRAB_JOB_UNIQ → JOB_ASSIGN_UNIQ.
    Unique,
    /// GRAB_JOB_ALL → JOB_ASSIGN_ALL for reduce jobs, JOB_ASSIGN_UNIQ otherwise
    /// (libgearman and PHP workers expect exactly that).
    All,
}

/// CAN_DO_TIMEOUT's value: milliseconds, raised to at least one second as in
/// gearmand; 0, negative or non-numeric means no timeout.
pub fn parse_timeout(raw: &[u8]) -> Option<Duration> {
    let ms = atoi(raw);
    (ms > 0).then(|| Duration::from_millis(ms.max(1000) as u64))
}

impl Engine {
    /// CAN_DO and CAN_DO_TIMEOUT. Repeats are kept, as gearmand keeps them: each
    /// counts in `status` and is listed in `workers`.
    pub(super) fn can_do(&mut self, conn: ConnId, name: &[u8], timeout: Option<Duration>) {
        if !self.conns.map.contains_key(&conn) {
            return;
        }
        let func = self.functions.get_or_create(name);
        self.functions.get_mut(func).workers += 1;
        self.peering.mark_wanted_dirty();
        let c = self.conns.map.get_mut(&conn).expect("checked above");
        c.abilities.insert(0, Ability { func, timeout });
        if c.sleeping && c.woken_for.is_none() {
            let generation = c.sleep_generation;
            self.functions
                .get_mut(func)
                .sleepers
                .push_back((conn, generation));
        }
    }

    /// CANT_DO: forget every entry for the function; jobs of it held by this
    /// worker go back to the queue.
    pub(super) fn cant_do(&mut self, conn: ConnId, name: &[u8]) {
        let Some(func) = self.functions.id(name) else {
            return;
        };
        self.drop_abilities(conn, |f| f == func);
    }

    /// RESET_ABILITIES: forget every function, re-queueing held jobs.
    pub(super) fn reset_abilities(&mut self, conn: ConnId) {
        self.drop_abilities(conn, |_| true);
    }

    fn drop_abilities(&mut self, conn: ConnId, matches: impl Fn(FuncId) -> bool) {
        let Some(c) = self.conns.map.get_mut(&conn) else {
            return;
        };
        let mut dropped = Vec::new();
        c.abilities.retain(|a| {
            let gone = matches(a.func);
            if gone {
                dropped.push(a.func);
            }
            !gone
        });
        let held: Vec<JobId> = c.holding.clone();
        let woken_for = c.woken_for;
        for func in &dropped {
            self.functions.get_mut(*func).workers -= 1;
        }
        if !dropped.is_empty() {
            self.peering.mark_wanted_dirty();
        }
        if let Some(func) = woken_for.filter(|f| dropped.contains(f)) {
            if let Some(c) = self.conns.map.get_mut(&conn) {
                c.woken_for = None;
            }
            self.pass_wakeup_on(func);
        }
        for id in held {
            let func = self.jobs.get(id).map(|j| j.func);
            if func.is_some_and(&matches) {
                self.requeue(id);
            }
        }
    }

    /// PRE_SLEEP: answer NOOP at once if work is waiting, else remember the
    /// worker as asleep on each of its functions.
    pub(super) fn pre_sleep(&mut self, conn: ConnId) {
        let Some(c) = self.conns.map.get(&conn) else {
            return;
        };
        let has_work = self.peering.enabled() && self.has_reservation(conn)
            || !self.draining
                && c.abilities.iter().any(|a| {
                    let function = self.functions.get(a.func);
                    function.runnable() > 0
                        || (self.peering.enabled()
                            && !self.eligible_links(conn, &function.name).is_empty())
                });
        if has_work {
            return self.conns.send(conn, PacketType::NOOP, &[]);
        }
        let c = self.conns.map.get_mut(&conn).expect("checked above");
        c.sleeping = true;
        c.woken_for = None;
        c.sleep_generation += 1;
        let generation = c.sleep_generation;
        let funcs: Vec<FuncId> = c.abilities.iter().map(|a| a.func).collect();
        for func in funcs {
            self.functions
                .get_mut(func)
                .sleepers
                .push_back((conn, generation));
            self.compact_sleepers(func);
        }
    }

    /// Wakes sleeping workers of `func` for `jobs` new runnable jobs: at most
    /// `-w` (default 1) per job, oldest sleeper first, never one that was
    /// already woken or no longer does `func`. gearmand wakes every sleeper.
    pub(super) fn wake(&mut self, func: FuncId, jobs: u32) {
        let per_job = self.settings.worker_wakeup.max(1);
        let mut budget = jobs.saturating_mul(per_job);
        while budget > 0 {
            let Some((conn, generation)) = self.functions.get_mut(func).sleepers.pop_front() else {
                break;
            };
            let Some(c) = self.conns.map.get_mut(&conn) else {
                continue;
            };
            let can_do = c.abilities.iter().any(|a| a.func == func);
            if c.sleeping && c.woken_for.is_none() && c.sleep_generation == generation && can_do {
                c.woken_for = Some(func);
                self.conns.send(conn, PacketType::NOOP, &[]);
                budget -= 1;
            }
        }
    }

    /// A wake-up for `func` went to a worker that will not take its job: give it
    /// to another sleeper if the job still waits.
    pub(super) fn pass_wakeup_on(&mut self, func: FuncId) {
        if self.functions.get(func).runnable() > 0 {
            self.wake(func, 1);
        }
    }

    /// Drops stale sleeper entries once they outnumber the function's workers,
    /// so a worker that sleeps and wakes on other functions' work cannot grow
    /// this queue without bound.
    fn compact_sleepers(&mut self, func: FuncId) {
        let function = self.functions.get_mut(func);
        if function.sleepers.len() <= 2 * function.workers as usize + 16 {
            return;
        }
        let conns = &self.conns.map;
        function.sleepers.retain(|(conn, generation)| {
            conns.get(conn).is_some_and(|c| {
                c.sleeping && c.woken_for.is_none() && c.sleep_generation == *generation
            })
        });
    }

    /// GRAB_JOB, GRAB_JOB_UNIQ and GRAB_JOB_ALL.
    pub(super) fn grab(&mut self, conn: ConnId, assign: Assign) {
        let Some(c) = self.conns.map.get_mut(&conn) else {
            return;
        };
        c.sleeping = false;
        let woken_for = c.woken_for.take();
        // Even while draining: a job already pulled for this worker runs.
        if self.peering.enabled() && self.take_reservation(conn, assign) {
            return;
        }
        if self.draining {
            return self.conns.send(conn, PacketType::NO_JOB, &[]);
        }
        self.route_grab(conn, assign, woken_for);
    }

    /// Serves a GRAB from the first of the worker's functions that has work,
    /// from the local queue or, with peers, from the next source in turn (see
    /// `peering`); NO_JOB if none has any.
    pub(super) fn route_grab(&mut self, conn: ConnId, assign: Assign, woken_for: Option<FuncId>) {
        let Some(count) = self.conns.map.get(&conn).map(|c| c.abilities.len()) else {
            return;
        };
        let mut found = None;
        for position in 0..count {
            let ability = self.conns.map[&conn].abilities[position];
            let local = self.functions.get(ability.func).runnable() > 0;
            if self.peering.enabled() {
                let name = self.functions.get(ability.func).name.clone();
                let links = self.eligible_links(conn, &name);
                if let Some(link) = self.next_source(&name, local, &links) {
                    self.hold_grab(conn, assign, link);
                    return;
                }
            }
            if !local {
                continue;
            }
            let jobs = &self.jobs;
            let taken = self
                .functions
                .get_mut(ability.func)
                .pop(|id| jobs.get(id).is_some_and(|j| j.state == JobState::Queued));
            if let Some((_, id)) = taken {
                found = Some((position, ability, id));
                break;
            }
        }
        let Some((position, ability, id)) = found else {
            return self.conns.send(conn, PacketType::NO_JOB, &[]);
        };
        if let Some(func) = woken_for.filter(|&f| f != ability.func) {
            self.pass_wakeup_on(func);
        }
        if self.settings.round_robin {
            let c = self.conns.map.get_mut(&conn).expect("checked above");
            let supplier = c.abilities.remove(position);
            c.abilities.push(supplier);
        }
        self.start(conn, id, ability);
        self.send_assignment(conn, id, assign);
    }

    /// Marks a job as held by `conn` and arms its CAN_DO_TIMEOUT, if any.
    pub(super) fn start(&mut self, conn: ConnId, id: JobId, ability: Ability) {
        self.next_assignment = self.next_assignment.wrapping_add(1);
        let assignment = self.next_assignment;
        let job = self.jobs.get_mut(id).expect("taken from the queue");
        job.state = JobState::Running {
            worker: conn,
            assignment,
        };
        self.functions.get_mut(job.func).running += 1;
        self.running += 1;
        if let Some(c) = self.conns.map.get_mut(&conn) {
            c.holding.push(id);
        }
        if let Some(timeout) = ability.timeout {
            self.timers.add_timeout(timeout, id, assignment);
            self.signals.timers.notify_one();
        }
    }

    pub(super) fn send_assignment(&mut self, conn: ConnId, id: JobId, assign: Assign) {
        let handle = self.handle_bytes(id);
        let job = self.jobs.get(id).expect("just started");
        let name = &self.functions.get(job.func).name;
        let (handle, name, unique, data) = (&handle[..], &name[..], job.unique(), job.data());
        match assign {
            Assign::Plain => self
                .conns
                .send(conn, PacketType::JOB_ASSIGN, &[handle, name, data]),
            Assign::All if !job.reducer().is_empty() => self.conns.send(
                conn,
                PacketType::JOB_ASSIGN_ALL,
                &[handle, name, unique, job.reducer(), data],
            ),
            Assign::Unique | Assign::All => self.conns.send(
                conn,
                PacketType::JOB_ASSIGN_UNIQ,
                &[handle, name, unique, data],
            ),
        }
    }
}
