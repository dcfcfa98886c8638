//! Unique prefetch: start an expensive job early in the background, and let
//! the request that needs it later *join* it instead of starting it again.
//!
//! The trick is the unique id. A background submit with unique `page-42`
//! creates the job; a later foreground submit of the same function with the
//! same unique is coalesced by the server onto that job, so it waits for the
//! job already queued or running and receives its result. The gearbox client
//! routes by unique, so with several servers both submits reach the same one.
//!
//! Run against a local server:
//!
//! ```text
//! gearboxd -p 4730 &
//! cargo run -p gearbox-examples --bin unique_prefetch -- --server 127.0.0.1:4730
//! ```
//!
//! The program runs its own worker for `render` unless `--no-worker` is given
//! (then run one elsewhere, e.g. `gearbox work -f render -- cat`).
//!
//! Server behaviour matters here. gearboxd keeps a job that a background
//! submit asked for even when the foreground clients that joined it leave
//! (docs/compat.md C8). gearmand drops a queued job when its last foreground
//! client disconnects, even if a background submit created it, so there an
//! impatient user who gives up also cancels the prefetch.

use clap::Parser;
use gearbox_client::{Client, JobEvent, JobRequest};
use gearbox_worker::{Job, JobError, Worker};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "A background prefetch that a later foreground request joins")]
struct Args {
    /// Job server(s).
    #[arg(short, long = "server", default_value = "127.0.0.1:4730")]
    servers: Vec<String>,
    /// The page to prefetch (also the unique id).
    #[arg(long, default_value = "page-42")]
    page: String,
    /// How long rendering takes, in milliseconds.
    #[arg(long, default_value = "1000")]
    render_ms: u64,
    /// How long after the prefetch the user's request arrives, in milliseconds.
    #[arg(long, default_value = "200")]
    request_after_ms: u64,
    /// Do not run the in-process `render` worker.
    #[arg(long)]
    no_worker: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let renders = Arc::new(AtomicUsize::new(0));

    let worker = if args.no_worker {
        None
    } else {
        let renders = renders.clone();
        let render_time = Duration::from_millis(args.render_ms);
        let worker = Worker::builder()
            .servers(args.servers.iter())
            .function("render", move |job: Job| {
                let renders = renders.clone();
                async move {
                    renders.fetch_add(1, Ordering::SeqCst);
                    // Expensive work, with progress the joined client can see.
                    for step in 1..=4u32 {
                        tokio::time::sleep(render_time / 4).await;
                        job.status(step, 4).map_err(JobError::fail)?;
                    }
                    let page = String::from_utf8_lossy(job.payload()).into_owned();
                    Ok::<_, JobError>(format!("<html>rendered {page}</html>"))
                }
            })
            .build()
            .map_err(|e| format!("worker: {e:?}"))?;
        Some(worker.spawn())
    };

    let client = Client::builder()
        .servers(&args.servers)
        .job_timeout(Some(Duration::from_secs(60)))
        .build()?;
    let started = Instant::now();

    // 1. Prefetch: fire and forget, keyed by the page.
    let prefetch = client
        .submit_background(JobRequest::new("render", args.page.clone()).unique(&args.page))
        .await?;
    println!(
        "prefetch submitted: handle {} on {}",
        prefetch, prefetch.server
    );

    // 2. Later, the user asks for the page: same function, same unique.
    tokio::time::sleep(Duration::from_millis(args.request_after_ms)).await;
    let mut request = client
        .submit(JobRequest::new("render", args.page.clone()).unique(&args.page))
        .await?;
    let joined = request.handle() == &prefetch;
    println!(
        "request submitted after {:?}: handle {} ({})",
        started.elapsed(),
        request.handle(),
        if joined {
            "joined the prefetch"
        } else {
            "a new job: the prefetch had already finished"
        }
    );
    let result = loop {
        match request.next_event().await? {
            Some(JobEvent::Status {
                numerator,
                denominator,
            }) => println!("  progress {numerator}/{denominator}"),
            Some(JobEvent::Complete(result)) => break result,
            Some(JobEvent::Fail) => return Err("render failed".into()),
            Some(JobEvent::Exception(e)) => {
                return Err(format!("render raised {}", String::from_utf8_lossy(&e)).into())
            }
            Some(_) => {}
            None => return Err("job ended without a result".into()),
        }
    };
    println!(
        "result after {:?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&result)
    );

    if let Some(worker) = worker {
        worker.shutdown(Duration::from_secs(5)).await;
        println!(
            "the worker rendered {} time(s) for 2 submits",
            renders.load(Ordering::SeqCst)
        );
    }
    Ok(())
}
