//! A logging collector: applications send log lines as background jobs
//! (function `log`), and this worker appends them to a file.
//!
//! The append is plain blocking file I/O, so the handler is registered with
//! `blocking_function`: it runs on tokio's blocking pool and never stalls the
//! runtime that keeps the server connections alive. Several lines may be
//! written at once (`--concurrency`); each job's line is written whole, but
//! lines from different jobs may land in any order, as with any pool of log
//! shippers.
//!
//! ```text
//! cargo run -p gearbox-examples --bin logging_collector -- --output /tmp/app.log
//! gearman -h 127.0.0.1 -p 4730 -f log -b "GET /index.html 200"
//! # or let it send itself some demo lines:
//! cargo run -p gearbox-examples --bin logging_collector -- --output /tmp/app.log --demo 100
//! ```

use clap::Parser;
use gearbox_worker::{JobError, Worker};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Parser)]
struct Args {
    /// Job servers, `host:port` or `unix:/path`; repeat for each.
    #[arg(long = "server", default_value = "127.0.0.1:4730")]
    servers: Vec<String>,
    #[arg(long, default_value = "log")]
    function: String,
    /// File the lines are appended to.
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Submit this many demo lines to the first server, wait until they are
    /// all written, and exit.
    #[arg(long)]
    demo: Option<usize>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    gearbox_examples::init_logging();
    let args = Args::parse();
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.output)?;
    let file = Arc::new(Mutex::new(file));
    let sink = file.clone();
    let worker = Worker::builder()
        .servers(&args.servers)
        .concurrency(args.concurrency)
        .client_id("logging-collector")
        .blocking_function(&args.function, move |job| {
            let mut line = job.payload().to_vec();
            // One line per job: strip the sender's newline, add ours.
            while line.last() == Some(&b'\n') {
                line.pop();
            }
            if line.contains(&b'\n') {
                return Err(JobError::fail("a job must hold exactly one line"));
            }
            line.push(b'\n');
            // One write_all per line under the lock: lines never interleave.
            let mut f = sink.lock().unwrap();
            f.write_all(&line)?;
            Ok(bytes::Bytes::new())
        })
        .build()?;
    let handle = worker.handle();
    match args.demo {
        None => {
            let report = worker.run(gearbox_examples::interrupted()).await;
            eprintln!(
                "stopped after {} lines ({} abandoned)",
                handle.stats().completed,
                report.abandoned
            );
        }
        Some(n) => {
            let running = worker.spawn();
            let addr = args.servers[0].parse()?;
            let lines = (0..n).map(|i| format!("demo line {i} from logging_collector"));
            gearbox_examples::submit_background(&addr, &args.function, lines).await?;
            while handle.stats().completed < n as u64 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            running.shutdown(std::time::Duration::from_secs(10)).await;
            file.lock().unwrap().sync_all()?;
            eprintln!("wrote {n} lines to {}", args.output.display());
        }
    }
    Ok(())
}
