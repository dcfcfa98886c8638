//! The admin text protocol. Every reply is built whole and leaves in one write,
//! because gearadmin stops reading after a 5 ms gap.

use super::jobs::{Job, JobId};
use super::{ConnId, Engine, ShutdownRequest};
use bytes::Bytes;
use gearbox_proto::admin::{self, AdminCommand};
use gearbox_proto::PacketType;
use std::io::Write;

/// What `version` reports.
pub const VERSION: &str = concat!("gearbox-", env!("CARGO_PKG_VERSION"));

impl Engine {
    pub(super) fn admin(&mut self, conn: ConnId, line: &Bytes) {
        let reply = match admin::parse(line) {
            Ok(command) => self.admin_command(conn, command),
            Err(e) => e.reply(),
        };
        self.conns.send_text(conn, &reply);
    }

    fn admin_command(&mut self, conn: ConnId, command: AdminCommand) -> Vec<u8> {
        match command {
            AdminCommand::Status => self.status_listing(),
            AdminCommand::PriorityStatus => self.priority_listing(),
            AdminCommand::Workers => self.workers_listing(),
            AdminCommand::ShowJobs => self.jobs_listing(),
            AdminCommand::ShowUniqueJobs => self.uniques_listing(),
            AdminCommand::MaxQueue { function, limits } => {
                // gearmand ignores a limit for a function it does not know yet;
                // an operator setting one expects it to hold once jobs arrive.
                let func = self.functions.get_or_create(&function);
                self.functions.get_mut(func).max_queue = limits;
                admin::OK.to_vec()
            }
            AdminCommand::CancelJob(handle) => match self.parse_handle(&handle) {
                Some(id) if self.jobs.get(id).is_some_and(|j| !j.cancelled) => {
                    self.cancel(id);
                    admin::OK.to_vec()
                }
                _ => admin::ERR_UNKNOWN_JOB.to_vec(),
            },
            AdminCommand::CreateFunction(name) => {
                self.functions.get_or_create(&name);
                admin::OK.to_vec()
            }
            AdminCommand::DropFunction(name) => self.drop_function(&name),
            AdminCommand::GetPid => format!("OK {}\n", std::process::id()).into_bytes(),
            AdminCommand::Verbose => format!("OK {}\n", self.settings.verbose).into_bytes(),
            AdminCommand::Version => format!("OK {VERSION}\n").into_bytes(),
            AdminCommand::ServerId => {
                format!("OK {}\n", String::from_utf8_lossy(&self.peering.server_id)).into_bytes()
            }
            AdminCommand::Peers => {
                let figures = self.peer_figures(self.peering.table.len());
                self.peering.table.listing(&figures)
            }
            AdminCommand::Shutdown { graceful } => self.shutdown_command(conn, graceful),
        }
    }

    /// `fn\tTOTAL\tRUNNING\tWORKERS`, in name order (gearmand uses hash order).
    fn status_listing(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for f in self.functions.sorted() {
            out.extend_from_slice(admin::c_str(&f.name));
            let _ = writeln!(out, "\t{}\t{}\t{}", f.total(), f.running, f.workers);
        }
        out.extend_from_slice(admin::END_OF_LISTING);
        out
    }

    /// `fn\tHIGH\tNORMAL\tLOW\tWORKERS`: jobs waiting, epoch jobs included.
    fn priority_listing(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for f in self.functions.sorted() {
            let waiting = |p: usize| f.queued[p] + f.delayed[p];
            out.extend_from_slice(admin::c_str(&f.name));
            let _ = writeln!(
                out,
                "\t{}\t{}\t{}\t{}",
                waiting(0),
                waiting(1),
                waiting(2),
                f.workers
            );
        }
        out.extend_from_slice(admin::END_OF_LISTING);
        out
    }

    /// `FD HOST ID : fn fn…` for every connection, functions newest first.
    fn workers_listing(&self) -> Vec<u8> {
        let mut ids: Vec<&ConnId> = self.conns.map.keys().collect();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            let c = &self.conns.map[id];
            let _ = write!(out, "{} {} ", c.peer.fd, c.peer.host);
            out.extend_from_slice(admin::c_str(&c.client_id));
            out.extend_from_slice(b" :");
            for ability in &c.abilities {
                out.push(b' ');
                out.extend_from_slice(admin::c_str(&self.functions.get(ability.func).name));
            }
            out.push(b'\n');
        }
        out.extend_from_slice(admin::END_OF_LISTING);
        out
    }

    /// `HANDLE\tRETRIES\tIGNORE\tQUEUED`, where QUEUED means background.
    fn jobs_listing(&self) -> Vec<u8> {
        let mut ids: Vec<JobId> = self.jobs.iter().map(|j| j.id).collect();
        ids.sort_unstable();
        let mut out = Vec::new();
        for id in ids {
            let job = self.jobs.get(id).expect("listed above");
            out.extend_from_slice(&self.handle_bytes(id));
            let _ = writeln!(
                out,
                "\t{}\t{}\t{}",
                job.retries,
                u8::from(job.cancelled),
                u8::from(job.background)
            );
        }
        out.extend_from_slice(admin::END_OF_LISTING);
        out
    }

    /// One line per live job with its unique, empty uniques included.
    fn uniques_listing(&self) -> Vec<u8> {
        let mut jobs: Vec<&Job> = self.jobs.iter().filter(|j| !j.cancelled).collect();
        jobs.sort_unstable_by_key(|j| j.id);
        let mut out = Vec::new();
        for job in jobs {
            out.extend_from_slice(admin::c_str(job.unique()));
            out.push(b'\n');
        }
        out.extend_from_slice(admin::END_OF_LISTING);
        out
    }

    /// `cancel job`: clients get WORK_FAIL and the job is forgotten. A running
    /// job cannot be stopped, so it is detached: its worker's result is accepted
    /// and dropped, where gearmand would still forward it after the FAIL.
    fn cancel(&mut self, id: JobId) {
        let handle = self.handle_bytes(id);
        self.forward(id, PacketType::WORK_FAIL, &[&handle]);
        let job = self.jobs.get(id).expect("checked by the caller");
        if !job.is_running() {
            self.remove_job(id);
            return;
        }
        if job.background {
            let stored = super::work::stored(&self.functions, id, job);
            self.store.remove(&stored);
        }
        self.jobs.unindex(id);
        let job = self.jobs.get_mut(id).expect("checked by the caller");
        job.cancelled = true;
        for client in std::mem::take(&mut job.clients) {
            if let Some(c) = self.conns.map.get_mut(&client) {
                c.attached.remove(&id);
            }
        }
    }

    /// `drop function`, by exact name. Besides gearmand's refusals (workers
    /// registered, jobs running) it refuses while jobs are queued: gearmand
    /// orphans them, and they never run.
    fn drop_function(&mut self, name: &[u8]) -> Vec<u8> {
        let Some(func) = self.functions.id(name) else {
            return admin::ERR_FUNCTION_NOT_FOUND.to_vec();
        };
        let f = self.functions.get(func);
        if f.workers > 0 || f.running > 0 {
            return admin::ERR_FUNCTION_BUSY.to_vec();
        }
        if f.total() > 0 {
            return b"ERR there are still queued jobs\r\n".to_vec();
        }
        self.functions.remove(func);
        admin::OK.to_vec()
    }

    /// `shutdown [graceful]`, removed from gearmand in 1.1.15 and restored here,
    /// for loopback and unix-socket peers only unless configured otherwise.
    fn shutdown_command(&mut self, conn: ConnId, graceful: bool) -> Vec<u8> {
        let local = self.conns.map.get(&conn).is_some_and(|c| c.peer.local);
        if !local && !self.settings.allow_remote_shutdown {
            return b"ERR PERMISSION_DENIED shutdown+is+accepted+only+from+loopback+or+unix+socket\r\n"
                .to_vec();
        }
        let request = if graceful {
            ShutdownRequest::Graceful
        } else {
            ShutdownRequest::Immediate
        };
        tracing::info!(?request, "shutdown requested by admin command");
        self.signals.shutdown.send_replace(request);
        admin::OK.to_vec()
    }
}
