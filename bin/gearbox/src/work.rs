//! `gearbox work`: a command-line worker on the gearbox-worker SDK.
//!
//! Unlike `gearman -w` (libgearman), it is fair across servers, bounded in
//! connect time, leaves dead servers in cooldown, and holds at most
//! `--concurrency` jobs over all servers together.

use crate::{exit, fail, Common};
use clap::Args;
use gearbox_worker::{Job, JobError, Worker};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

#[derive(Args, Debug)]
pub struct WorkArgs {
    /// Function to register; repeat for several (all run the same command).
    #[arg(short = 'f', long = "function", value_name = "NAME", required = true)]
    functions: Vec<String>,
    /// Most jobs running at once, over all servers together.
    #[arg(short = 'c', long, default_value = "1")]
    concurrency: usize,
    /// Exit after this many jobs (at least; with --concurrency above 1 the
    /// jobs already running also finish).
    #[arg(short = 'n', long, value_name = "N")]
    count: Option<usize>,
    /// SET_CLIENT_ID, shown by `admin workers`.
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// Runs the command for one job: payload on stdin, stdout as the result.
async fn run_command(command: Arc<Vec<String>>, job: &Job) -> Result<Vec<u8>, JobError> {
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| JobError::fail(format!("cannot run {}: {e}", command[0])))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let payload = job.payload().clone();
    // Write concurrently with reading stdout: a command that prints before it
    // has read all its input must not deadlock against us.
    let feeder = tokio::spawn(async move {
        let _ = stdin.write_all(&payload).await;
        // Dropping stdin closes it: the command sees end of input.
    });
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| JobError::fail(format!("waiting for {}: {e}", command[0])))?;
    let _ = feeder.await;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(JobError::fail(format!(
            "{} exited with {}",
            command[0], output.status
        )))
    }
}

pub async fn run(common: &Common, args: WorkArgs) -> ExitCode {
    if args.concurrency == 0 {
        return fail(exit::USAGE, "--concurrency must be at least 1");
    }
    let command = Arc::new(args.command);
    let done = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(Notify::new());
    let mut builder = Worker::builder()
        .servers(common.servers.iter().cloned())
        .concurrency(args.concurrency)
        .connect_timeout(common.connect_timeout)
        .response_timeout(common.response_timeout);
    if let Some(id) = &args.client_id {
        builder = builder.client_id(id);
    }
    for function in &args.functions {
        let command = command.clone();
        let done = done.clone();
        let enough = enough.clone();
        let count = args.count;
        builder = builder.function(function, move |job: Job| {
            let command = command.clone();
            let done = done.clone();
            let enough = enough.clone();
            async move {
                let result = run_command(command, &job).await;
                // One line per job, naming the server it came from.
                let outcome = match &result {
                    Ok(out) => format!("complete bytes={}", out.len()),
                    Err(e) => format!("fail reason={e:?}"),
                };
                println!(
                    "server={} handle={} function={} {outcome}",
                    job.server(),
                    job.handle_str(),
                    job.function()
                );
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                if count.is_some_and(|c| n >= c) {
                    enough.notify_one();
                }
                result
            }
        });
    }
    let worker = match builder.build() {
        Ok(w) => w,
        Err(e) => return fail(exit::USAGE, format!("{e:?}")),
    };
    let report = worker
        .run(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("gearbox: cannot watch SIGTERM: {e}");
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
                _ = enough.notified() => {}
            }
        })
        .await;
    if report.abandoned > 0 {
        eprintln!(
            "gearbox: {} running job(s) abandoned at shutdown (the servers re-queue them)",
            report.abandoned
        );
    }
    ExitCode::SUCCESS
}
