//! A serial "delete" worker for the one-job-server-per-front-end topology.
//!
//! Every front-end web node runs its own job server, and this worker, on a
//! back-end host, connects to all of them and runs one delete at a time
//! (`concurrency(1)`: deletes of the same records must not race). Grabs rotate
//! over the front-end servers, so a busy node cannot starve the others, and a
//! node that is down or hung is cooled down and retried in the background
//! without holding up the rest.
//!
//! ```text
//! cargo run -p gearbox-examples --bin serial_delete_worker -- \
//!     --server 127.0.0.1:4730 --server 127.0.0.1:4731
//! gearman -h 127.0.0.1 -p 4730 -f delete -b user:42
//! ```

use clap::Parser;
use gearbox_worker::{BackoffPolicy, Health, JobError, Worker};
use std::time::Duration;

#[derive(Parser)]
struct Args {
    /// A front-end job server, `host:port` or `unix:/path`; repeat for each.
    #[arg(long = "server", default_value = "127.0.0.1:4730")]
    servers: Vec<String>,
    /// The function to register.
    #[arg(long, default_value = "delete")]
    function: String,
    /// Simulated time one delete takes, in milliseconds.
    #[arg(long, default_value_t = 50)]
    delete_ms: u64,
    /// Print each server's health every this many seconds (0: never).
    #[arg(long, default_value_t = 10)]
    health_every: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    gearbox_examples::init_logging();
    let args = Args::parse();
    let delete_ms = args.delete_ms;
    let worker = Worker::builder()
        .servers(&args.servers)
        .concurrency(1)
        .client_id("serial-delete-worker")
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(5))
        .backoff(BackoffPolicy {
            min: Duration::from_millis(200),
            max: Duration::from_secs(30),
            jitter: 0.25,
        })
        .function(&args.function, move |job| async move {
            let key = String::from_utf8_lossy(job.payload()).into_owned();
            if key.trim().is_empty() {
                return Err(JobError::fail("empty key"));
            }
            // Stand-in for the real delete (a database call, say).
            tokio::time::sleep(Duration::from_millis(delete_ms)).await;
            println!(
                "deleted {key} (job {} from {})",
                job.handle_str(),
                job.server()
            );
            Ok(format!("deleted {key}"))
        })
        .build()?;
    let handle = worker.handle();
    if args.health_every > 0 {
        let every = Duration::from_secs(args.health_every);
        let handle = handle.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                for (addr, health) in handle.health() {
                    let state = match health {
                        Health::Up => "up".to_string(),
                        Health::Connecting => "connecting".to_string(),
                        Health::CoolingDown {
                            failures, error, ..
                        } => format!("cooling down after {failures} failures ({error})"),
                    };
                    eprintln!("health: {addr}: {state}");
                }
            }
        });
    }
    let report = worker.run(gearbox_examples::interrupted()).await;
    let stats = handle.stats();
    eprintln!(
        "stopped: {} finished during shutdown, {} abandoned; jobs per server: {:?}",
        report.finished, report.abandoned, stats.jobs_by_server
    );
    Ok(())
}
