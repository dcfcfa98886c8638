//! `gearbox`: submit jobs, run a command as a worker, and administer Gearman
//! job servers (gearboxd or gearmand), built on the gearbox SDK.

mod admin;
mod submit;
mod work;

use clap::{Parser, Subcommand};
use gearbox_client::ServerAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Exit codes, also listed in `--help`.
pub mod exit {
    /// The job failed (WORK_FAIL) or raised an exception (WORK_EXCEPTION), or
    /// the server answered an admin command with ERR.
    pub const JOB_FAILED: u8 = 1;
    /// clap's code for a usage error.
    pub const USAGE: u8 = 2;
    /// A wait timed out (connect, reply, or the job deadline).
    pub const TIMEOUT: u8 = 3;
    /// No server could be reached, a connection was lost, or the server
    /// refused the request.
    pub const SERVER: u8 = 4;
}

const DEFAULT_SERVER: &str = "localhost:4730";

#[derive(Parser, Debug)]
#[command(
    name = "gearbox",
    version,
    about = "Submit jobs to, run workers for, and administer Gearman job servers",
    after_help = "Servers are `host:port`, `host` (port 4730), `[v6]:port` or `unix:/path`; \
the default is localhost:4730.\n\
Exit status: 0 success, 1 job failed / exception / admin ERR, 2 usage error, 3 timeout, \
4 server unreachable, connection lost or request refused."
)]
struct Cli {
    /// Job server; repeat for a pool (jobs are routed by unique, see `submit --unique`).
    #[arg(
        short = 's',
        long = "server",
        value_name = "ADDR",
        global = true,
        env = "GEARBOX_SERVERS",
        value_delimiter = ','
    )]
    servers: Vec<ServerAddr>,
    /// Bound on each connect, in seconds.
    #[arg(long, value_name = "SECS", global = true, default_value = "5", value_parser = parse_secs)]
    connect_timeout: Duration,
    /// Bound on each wait for a server's reply, in seconds.
    #[arg(long, value_name = "SECS", global = true, default_value = "10", value_parser = parse_secs)]
    response_timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Submit a job; print its result (foreground) or its handle (background).
    Submit(submit::SubmitArgs),
    /// Ask a server about a job: by handle (GET_STATUS) or by unique
    /// (GET_STATUS_UNIQUE, asked in the unique's routing order).
    Status(submit::StatusArgs),
    /// Run an admin command, printing the reply as gearadmin does.
    Admin(admin::AdminArgs),
    /// Run COMMAND for every job: the payload on its stdin, its stdout as the
    /// result (a non-zero exit fails the job). Prints one line per job.
    Work(work::WorkArgs),
}

/// Seconds as a decimal number (`1`, `0.5`).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is not a valid duration"))
}

/// What every subcommand needs from the global options.
pub struct Common {
    pub servers: Vec<ServerAddr>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

/// Prints `gearbox: message` on stderr and returns `code`.
pub fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("gearbox: {message}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GEARBOX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let mut servers = cli.servers;
    if servers.is_empty() {
        servers.push(DEFAULT_SERVER.parse().expect("default server parses"));
    }
    let common = Common {
        servers,
        connect_timeout: cli.connect_timeout,
        response_timeout: cli.response_timeout,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(exit::SERVER, format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Submit(args) => submit::run(&common, args).await,
            Command::Status(args) => submit::status(&common, args).await,
            Command::Admin(args) => admin::run(&common, args).await,
            Command::Work(args) => work::run(&common, args).await,
        }
    })
}
