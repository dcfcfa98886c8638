//! `gearbox admin`: gearadmin's commands, printed as gearadmin prints them.
//!
//! Differences from gearadmin, on purpose: an `ERR` reply exits with status 1
//! (gearadmin exits 0), and `maxqueue` and `shutdown` are available.

use crate::submit::report;
use crate::{exit, fail, Common};
use clap::{Args, Subcommand};
use gearbox_client::{Admin, Error};
use std::io::Write;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Functions: queued+running, running, workers.
    Status,
    /// Connections and the functions each can do.
    Workers,
    /// Queued jobs per function by priority: high, normal, low, workers.
    Prioritystatus,
    /// The server's version.
    Version,
    /// The server's log level.
    Verbose,
    /// The server's process id.
    Getpid,
    /// Every job: handle, retries, ignore flag, queued.
    ShowJobs,
    /// The unique ids of the jobs.
    ShowUniqueJobs,
    /// Cancel a job by handle.
    CancelJob { handle: String },
    /// Create a function (with no workers).
    CreateFunction { function: String },
    /// Drop a function that has no workers and no jobs.
    DropFunction { function: String },
    /// Limit a function's queue: one limit for all priorities, or HIGH and
    /// NORMAL (and LOW) limits; none resets to unlimited.
    Maxqueue {
        function: String,
        #[arg(num_args = 0..=3)]
        limits: Vec<u32>,
    },
    /// The job servers this gearboxd pulls from (`--peer`), one per line:
    /// address, state (up, connecting, cooling, idle), failures in a row,
    /// jobs pulled, jobs in flight, seconds since a job last moved, last error.
    Peers,
    /// Stop the server (gearboxd; gearmand 1.1.15+ no longer has it).
    Shutdown {
        /// Let running jobs finish first.
        #[arg(long)]
        graceful: bool,
    },
}

/// One admin word: no spaces or line breaks, which would change the command.
fn word(what: &str, value: &str) -> Result<String, String> {
    if value.is_empty() || value.contains([' ', '\r', '\n']) {
        return Err(format!(
            "{what} `{value}` cannot be sent as one admin word (empty, or has a space or line break)"
        ));
    }
    Ok(value.to_string())
}

fn line(command: &AdminCommand) -> Result<String, String> {
    Ok(match command {
        AdminCommand::Status => "status".into(),
        AdminCommand::Workers => "workers".into(),
        AdminCommand::Prioritystatus => "prioritystatus".into(),
        AdminCommand::Version => "version".into(),
        AdminCommand::Peers => "peers".into(),
        AdminCommand::Verbose => "verbose".into(),
        AdminCommand::Getpid => "getpid".into(),
        AdminCommand::ShowJobs => "show jobs".into(),
        AdminCommand::ShowUniqueJobs => "show unique jobs".into(),
        AdminCommand::CancelJob { handle } => format!("cancel job {}", word("handle", handle)?),
        AdminCommand::CreateFunction { function } => {
            format!("create function {}", word("function", function)?)
        }
        AdminCommand::DropFunction { function } => {
            format!("drop function {}", word("function", function)?)
        }
        AdminCommand::Maxqueue { function, limits } => {
            let mut l = format!("maxqueue {}", word("function", function)?);
            for n in limits {
                l.push_str(&format!(" {n}"));
            }
            l
        }
        AdminCommand::Shutdown { graceful: false } => "shutdown".into(),
        AdminCommand::Shutdown { graceful: true } => "shutdown graceful".into(),
    })
}

pub async fn run(common: &Common, args: AdminArgs) -> ExitCode {
    if common.servers.len() > 1 {
        return fail(exit::USAGE, "admin talks to one server: give --server once");
    }
    let text = match line(&args.command) {
        Ok(l) => l,
        Err(e) => return fail(exit::USAGE, e),
    };
    let server = &common.servers[0];
    let timeout = common.connect_timeout.max(common.response_timeout);
    let mut admin = match Admin::connect(server, timeout).await {
        Ok(a) => a,
        Err(e) => return report(&e),
    };
    match admin.command(&text).await {
        Ok(reply) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&reply.to_display_bytes());
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        // As gearadmin: `Error: ` and the rest of the ERR line.
        Err(Error::Server { code, text, .. }) => {
            if text.is_empty() {
                eprintln!("Error: {code}");
            } else {
                eprintln!("Error: {code} {text}");
            }
            ExitCode::from(exit::JOB_FAILED)
        }
        Err(e) => report(&e),
    }
}
