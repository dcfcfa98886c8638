//! One serial worker for many front ends, through an aggregator.
//!
//! Each front-end web node keeps its own job server, so submits stay local
//! and fast. One gearboxd started with `--peer` for each front end pulls
//! their jobs for its own workers, one at a time per waiting worker and in
//! turn across the front ends. This worker connects to the aggregator
//! alone and runs one job at a time (`concurrency(1)`); a dead or hung
//! front end is the aggregator's problem, not the worker's.
//!
//! ```text
//!  front end 1 ─┐
//!  front end 2 ─┼──▶ gearboxd --peer fe1 --peer fe2 --peer fe3 ◀── this worker
//!  front end 3 ─┘
//! ```
//!
//! With `--demo N` it starts three front ends (gearmand if installed, else
//! gearboxd) and an aggregator, queues N, N/2 and N/4 jobs on them, drains
//! them, and prints each front end's share of the first jobs and the
//! aggregator's `peers` table. Otherwise it is a plain worker:
//!
//! ```text
//! gearboxd -p 4730 --peer fe1:4730 --peer fe2:4730 --peer fe3:4730
//! cargo run -p gearbox-examples --bin front_end_pool -- --server 127.0.0.1:4730
//! ```

use clap::Parser;
use gearbox_client::{Admin, AdminReply, ServerAddr};
use gearbox_worker::{JobError, Worker};
use protocol_tests::{ServerKind, TestServer};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The aggregator, `host:port` or `unix:/path`.
    #[arg(long, default_value = "127.0.0.1:4730")]
    server: String,
    /// The function to register.
    #[arg(long, default_value = "delete")]
    function: String,
    /// Simulated time per job, in milliseconds.
    #[arg(long, default_value_t = 0)]
    work_ms: u64,
    /// Start three front ends and an aggregator, queue N, N/2 and N/4 jobs,
    /// drain them and report.
    #[arg(long, value_name = "N")]
    demo: Option<usize>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    gearbox_examples::init_logging();
    let args = Args::parse();
    match args.demo {
        Some(n) => demo(&args, n).await,
        None => {
            let worker = serial_worker(&args.server, &args.function, args.work_ms, None)?;
            worker.run(gearbox_examples::interrupted()).await;
            Ok(())
        }
    }
}

/// The worker: one job at a time, from the aggregator only. `seen` collects
/// each payload's front-end prefix in the order the jobs ran.
fn serial_worker(
    server: &str,
    function: &str,
    work_ms: u64,
    seen: Option<Arc<Mutex<Vec<String>>>>,
) -> Result<Worker, Box<dyn std::error::Error>> {
    let worker = Worker::builder()
        .server(server)
        .concurrency(1)
        .client_id("front-end-pool")
        .function(function, move |job| {
            let seen = seen.clone();
            async move {
                let payload = String::from_utf8_lossy(job.payload()).into_owned();
                if payload.is_empty() {
                    return Err(JobError::fail("empty payload"));
                }
                tokio::time::sleep(Duration::from_millis(work_ms)).await;
                if let Some(seen) = seen {
                    let source = payload.split('-').next().unwrap_or("").to_string();
                    seen.lock().unwrap().push(source);
                }
                Ok(format!("done {payload}"))
            }
        })
        .build()?;
    Ok(worker)
}

async fn demo(args: &Args, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let kind = if std::process::Command::new("gearmand")
        .arg("--version")
        .output()
        .is_ok()
    {
        ServerKind::Gearmand
    } else {
        ServerKind::Gearboxd
    };
    let front_ends: Vec<TestServer> =
        tokio::task::spawn_blocking(move || (0..3).map(|_| TestServer::start(kind)).collect())
            .await?;
    let mut peer_args = Vec::new();
    for fe in &front_ends {
        peer_args.extend(["--peer".to_string(), fe.addr()]);
    }
    let aggregator = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = peer_args.iter().map(String::as_str).collect();
        TestServer::start_with_args(ServerKind::Gearboxd, &refs)
    })
    .await?;
    let backlogs = [n, n / 2, n / 4];
    for (i, (fe, &jobs)) in front_ends.iter().zip(&backlogs).enumerate() {
        let addr: ServerAddr = fe.addr().parse()?;
        let payloads = (0..jobs).map(|j| format!("fe{}-{j}", i + 1));
        gearbox_examples::submit_background(&addr, &args.function, payloads).await?;
    }
    println!(
        "queued {backlogs:?} jobs on three {} front ends; one serial worker behind gearboxd {}",
        kind.name(),
        aggregator.addr()
    );

    let seen = Arc::new(Mutex::new(Vec::new()));
    let worker = serial_worker(
        &aggregator.addr(),
        &args.function,
        args.work_ms,
        Some(seen.clone()),
    )?;
    let total: usize = backlogs.iter().sum();
    let started = Instant::now();
    let done = {
        let seen = seen.clone();
        async move {
            while seen.lock().unwrap().len() < total && started.elapsed() < Duration::from_secs(120)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    worker.run(done).await;
    let elapsed = started.elapsed();

    let order = seen.lock().unwrap().clone();
    let first = (backlogs[2] * 3).min(order.len());
    let mut shares: BTreeMap<&str, usize> = BTreeMap::new();
    for source in &order[..first] {
        *shares.entry(source.as_str()).or_default() += 1;
    }
    println!(
        "ran {} of {total} jobs in {:.2} s ({:.0} jobs/s)",
        order.len(),
        elapsed.as_secs_f64(),
        order.len() as f64 / elapsed.as_secs_f64()
    );
    println!("shares of the first {first} jobs (each front end had at least that many / 3):");
    for (source, count) in &shares {
        println!(
            "  {source}: {count} ({:.1} %)",
            100.0 * *count as f64 / first.max(1) as f64
        );
    }
    let mut admin = Admin::connect(&aggregator.addr().parse()?, Duration::from_secs(5)).await?;
    if let AdminReply::Listing(lines) = admin.command("peers").await? {
        println!("aggregator `peers`: ADDRESS STATE FAILURES PULLED IN_FLIGHT IDLE_S LAST_ERROR");
        for line in lines {
            println!("  {}", String::from_utf8_lossy(&line));
        }
    }
    Ok(())
}
