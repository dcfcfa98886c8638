//! `gearbox submit` and `gearbox status`.

use crate::{exit, fail, parse_secs, Common};
use clap::Args;
use gearbox_client::{Client, Error, JobEvent, JobHandle, JobRequest, Priority};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// Function name.
    #[arg(short = 'f', long = "function", value_name = "FN")]
    function: String,
    /// Submit in the background and print the job handle.
    #[arg(short = 'b', long)]
    background: bool,
    /// high, normal or low.
    #[arg(short = 'p', long, default_value = "normal", value_parser = parse_priority)]
    priority: Priority,
    /// Unique id: jobs of one function with the same unique are coalesced by
    /// the server, and routed to the same server of a pool. Default: none.
    #[arg(short = 'u', long, value_name = "U")]
    unique: Option<String>,
    /// Run at this time: unix seconds, or `+N` for N seconds from now.
    /// Epoch jobs are background jobs of normal priority.
    #[arg(long, value_name = "SECS", conflicts_with = "priority")]
    epoch: Option<String>,
    /// Deadline for the whole foreground job, in seconds (default: none).
    #[arg(short = 't', long, value_name = "SECS", value_parser = parse_secs)]
    timeout: Option<Duration>,
    /// Print the server, handle, warnings and progress on stderr.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// The payload; read from stdin when absent.
    payload: Option<String>,
}

fn parse_priority(s: &str) -> Result<Priority, String> {
    s.parse()
}

fn parse_epoch(s: &str) -> Result<SystemTime, String> {
    let (relative, digits) = match s.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let secs: u64 = digits
        .parse()
        .map_err(|_| format!("--epoch `{s}`: expected unix seconds or +SECONDS"))?;
    Ok(if relative {
        SystemTime::now() + Duration::from_secs(secs)
    } else {
        UNIX_EPOCH + Duration::from_secs(secs)
    })
}

pub fn client(common: &Common) -> Result<Client, Error> {
    Client::builder()
        .servers(common.servers.iter().map(|s| s.to_string()))
        .connect_timeout(common.connect_timeout)
        .response_timeout(common.response_timeout)
        .build()
}

/// The exit code and message for an error.
pub fn report(error: &Error) -> ExitCode {
    let code = match error {
        Error::JobFailed { .. } | Error::JobException { .. } => exit::JOB_FAILED,
        Error::Timeout { .. } => exit::TIMEOUT,
        Error::Config(_) => exit::USAGE,
        _ => exit::SERVER,
    };
    fail(code, error)
}

pub async fn run(common: &Common, args: SubmitArgs) -> ExitCode {
    let payload = match args.payload {
        Some(p) => p.into_bytes(),
        None => {
            let mut buf = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
                return fail(exit::USAGE, format!("reading the payload from stdin: {e}"));
            }
            buf
        }
    };
    let client = match client(common) {
        Ok(c) => c,
        Err(e) => return report(&e),
    };
    let mut request = JobRequest::new(&args.function, payload).priority(args.priority);
    if let Some(u) = &args.unique {
        request = request.unique(u);
    }
    if let Some(t) = args.timeout {
        request = request.timeout(t);
    }

    if args.background || args.epoch.is_some() {
        let submitted = match &args.epoch {
            Some(when) => match parse_epoch(when) {
                Ok(at) => client.submit_epoch(request, at).await,
                Err(e) => return fail(exit::USAGE, e),
            },
            None => client.submit_background(request).await,
        };
        return match submitted {
            Ok(handle) => {
                if args.verbose {
                    eprintln!("server: {}", handle.server);
                }
                println!("{handle}");
                ExitCode::SUCCESS
            }
            Err(e) => report(&e),
        };
    }

    let mut job = match client.submit(request).await {
        Ok(job) => job,
        Err(e) => return report(&e),
    };
    if args.verbose {
        eprintln!("server: {}\nhandle: {}", job.server(), job.handle());
    }
    let mut stdout = std::io::stdout().lock();
    loop {
        let event = match job.next_event().await {
            Ok(Some(event)) => event,
            Ok(None) => unreachable!("the loop ends at the terminal event"),
            Err(e) => return report(&e),
        };
        match event {
            // Partial output goes out as it comes, as the gearman CLI does.
            JobEvent::Data(chunk) => {
                let _ = stdout.write_all(&chunk);
                let _ = stdout.flush();
            }
            JobEvent::Warning(w) => eprintln!("warning: {}", String::from_utf8_lossy(&w)),
            JobEvent::Status {
                numerator,
                denominator,
            } => {
                if args.verbose {
                    eprintln!("status: {numerator}/{denominator}");
                }
            }
            JobEvent::Complete(result) => {
                let _ = stdout.write_all(&result);
                let _ = stdout.flush();
                return ExitCode::SUCCESS;
            }
            JobEvent::Fail => {
                return report(&Error::JobFailed {
                    handle: job.handle().handle.clone(),
                })
            }
            JobEvent::Exception(data) => {
                return report(&Error::JobException {
                    handle: job.handle().handle.clone(),
                    data,
                })
            }
        }
    }
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The job handle (asked of the first --server).
    #[arg(required_unless_present = "unique", conflicts_with = "unique")]
    handle: Option<String>,
    /// Look the job up by unique instead (GET_STATUS_UNIQUE).
    #[arg(short = 'u', long, value_name = "U")]
    unique: Option<String>,
}

/// Prints `known running numerator denominator` (and `clients` for a unique),
/// tab-separated, after the server.
pub async fn status(common: &Common, args: StatusArgs) -> ExitCode {
    let client = match client(common) {
        Ok(c) => c,
        Err(e) => return report(&e),
    };
    let flag = |b: bool| if b { 1 } else { 0 };
    if let Some(unique) = args.unique {
        return match client.status_unique(&unique).await {
            Ok(st) => {
                println!(
                    "{}\tknown={}\trunning={}\t{}/{}\tclients={}",
                    st.server,
                    flag(st.known),
                    flag(st.running),
                    st.numerator,
                    st.denominator,
                    st.clients
                );
                ExitCode::SUCCESS
            }
            Err(e) => report(&e),
        };
    }
    let handle = JobHandle::new(
        common.servers[0].clone(),
        args.handle.expect("clap requires a handle or --unique"),
    );
    match client.status(&handle).await {
        Ok(st) => {
            println!(
                "{}\tknown={}\trunning={}\t{}/{}",
                handle.server,
                flag(st.known),
                flag(st.running),
                st.numerator,
                st.denominator
            );
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}
