//! A bulk indexer: each job carries one document; the worker batches the
//! documents of the jobs it is running into bulk requests to a sink, and backs
//! off when the sink rejects a bulk because it is overloaded.
//!
//! The sink here is a simulation of Elasticsearch's bulk endpoint under load:
//! it accepts at most `--sink-rate` documents per second (with a burst of one
//! batch) and rejects a whole bulk otherwise, as Elasticsearch answers 429
//! when its write queue is full. Every document of a rejected bulk makes its
//! handler return `JobError::Overloaded`; the worker then spaces its grabs by
//! a growing delay (`BackpressurePolicy`) and, with `overload_retries`, runs
//! the rejected documents again in place instead of failing them, so no
//! document of a background job is lost. As bulks succeed again, the delay
//! shrinks step by step.
//!
//! ```text
//! # self-contained demo against a local server: submit 3000 documents, index
//! # them through a sink that takes 1000 per second, print progress, exit.
//! cargo run -p gearbox-examples --bin bulk_indexer -- --demo 3000 --sink-rate 1000
//! # or run as a plain worker and submit with any client:
//! cargo run -p gearbox-examples --bin bulk_indexer
//! gearman -h 127.0.0.1 -p 4730 -f index -b '{"id": 1}'
//! ```

use bytes::Bytes;
use clap::Parser;
use gearbox_worker::{BackpressurePolicy, JobError, Worker};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

#[derive(Parser)]
struct Args {
    /// Job servers, `host:port` or `unix:/path`; repeat for each.
    #[arg(long = "server", default_value = "127.0.0.1:4730")]
    servers: Vec<String>,
    #[arg(long, default_value = "index")]
    function: String,
    /// Documents per bulk request.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// How long a partial batch waits for more documents, in milliseconds.
    #[arg(long, default_value_t = 20)]
    linger_ms: u64,
    /// What the simulated sink accepts, in documents per second.
    #[arg(long, default_value_t = 1000.0)]
    sink_rate: f64,
    /// Submit this many demo documents to the first server, index them all,
    /// print a summary and exit.
    #[arg(long)]
    demo: Option<usize>,
}

/// The sink's answer to a rejected bulk.
#[derive(Debug, Clone, Copy)]
struct Rejected;

/// A token bucket standing in for a cluster's indexing capacity.
struct Sink {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    accepted: u64,
    rejected_bulks: u64,
}

impl Sink {
    fn bulk(&mut self, docs: &[Bytes]) -> Result<(), Rejected> {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        let n = docs.len() as f64;
        if self.tokens >= n {
            self.tokens -= n;
            self.accepted += docs.len() as u64;
            Ok(())
        } else {
            self.rejected_bulks += 1;
            Err(Rejected)
        }
    }
}

type Pending = (Bytes, oneshot::Sender<Result<(), Rejected>>);

/// Collects documents from running handlers into bulks of `batch`, or fewer
/// after `linger`, and answers each handler with its bulk's outcome.
async fn batcher(mut rx: mpsc::Receiver<Pending>, mut sink: Sink, batch: usize, linger: Duration) {
    let mut last_report = Instant::now();
    while let Some(first) = rx.recv().await {
        let mut pending = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while pending.len() < batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => pending.push(p),
                _ => break,
            }
        }
        let docs: Vec<Bytes> = pending.iter().map(|(d, _)| d.clone()).collect();
        let outcome = sink.bulk(&docs);
        for (_, reply) in pending {
            let _ = reply.send(outcome);
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            eprintln!(
                "sink: {} documents accepted, {} bulks rejected",
                sink.accepted, sink.rejected_bulks
            );
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    gearbox_examples::init_logging();
    let args = Args::parse();
    let (tx, rx) = mpsc::channel::<Pending>(args.batch * 4);
    let sink = Sink {
        rate: args.sink_rate,
        burst: args.batch as f64,
        tokens: args.batch as f64,
        last: Instant::now(),
        accepted: 0,
        rejected_bulks: 0,
    };
    tokio::spawn(batcher(
        rx,
        sink,
        args.batch,
        Duration::from_millis(args.linger_ms),
    ));
    let worker = Worker::builder()
        .servers(&args.servers)
        // Enough jobs in hand to fill one bulk while the previous one is sent.
        .concurrency(args.batch * 2)
        .client_id("bulk-indexer")
        // The sink takes about one document per millisecond: start spacing
        // grabs at 1 ms and double from there while bulks are rejected.
        .backpressure(BackpressurePolicy {
            initial: Duration::from_millis(1),
            max: Duration::from_secs(2),
        })
        // Background documents have no client to retry them: retry in place.
        .overload_retries(20)
        .function(&args.function, move |job| {
            let tx = tx.clone();
            async move {
                let (reply, answer) = oneshot::channel();
                tx.send((job.payload().clone(), reply))
                    .await
                    .map_err(|_| JobError::fail("indexer stopped"))?;
                match answer.await {
                    Ok(Ok(())) => Ok(Bytes::from_static(b"indexed")),
                    Ok(Err(Rejected)) => Err(JobError::overloaded("sink rejected the bulk (429)")),
                    Err(_) => Err(JobError::fail("indexer stopped")),
                }
            }
        })
        .build()?;
    let handle = worker.handle();
    let reporter = {
        let handle = handle.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let s = handle.stats();
                eprintln!(
                    "worker: {} indexed, {} failed, running {}, grab delay {:?}",
                    s.completed,
                    s.failed,
                    handle.running(),
                    handle.backpressure_delay()
                );
            }
        })
    };
    match args.demo {
        None => {
            worker.run(gearbox_examples::interrupted()).await;
        }
        Some(n) => {
            let running = worker.spawn();
            let addr = args.servers[0].parse()?;
            let started = Instant::now();
            let docs = (0..n).map(|i| format!("{{\"id\": {i}, \"title\": \"document {i}\"}}"));
            gearbox_examples::submit_background(&addr, &args.function, docs).await?;
            while handle.stats().completed + handle.stats().failed < n as u64 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            running.shutdown(Duration::from_secs(10)).await;
            let s = handle.stats();
            println!(
                "indexed {} of {n} documents in {:.1} s ({} failed after retries); \
                 sink rate {} docs/s",
                s.completed,
                started.elapsed().as_secs_f64(),
                s.failed,
                args.sink_rate
            );
        }
    }
    reporter.abort();
    Ok(())
}
