//! Running one job: the handler call with its panic and timeout guards,
//! in-place retries while the job reports its downstream overloaded, and the
//! packet that reports how it ended. The driver ([`crate::driver`]) starts
//! each job here and hears back through an [`Event::JobDone`].

use crate::backpressure::BackpressurePolicy;
use crate::driver::{Event, Outcome};
use crate::{Config, Function, Handler, Job, JobError, Shared};
use bytes::Bytes;
use futures_util::FutureExt;
use gearbox_proto::{Packet, PacketType};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::OwnedSemaphorePermit;

/// Extra time the worker gives a CAN_DO_TIMEOUT job before it fails it itself.
const TIMEOUT_GRACE: Duration = Duration::from_secs(1);

/// Which slot and connection a job belongs to, for the driver when it ends.
#[derive(Clone, Copy)]
pub(crate) struct JobTag {
    pub(crate) id: u64,
    pub(crate) server: usize,
    pub(crate) gen: u64,
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}

enum Attempt {
    Done(Result<Bytes, JobError>),
    Panicked(String),
    TimedOut,
}

/// `fut`'s output, or `None` if it took longer than `limit` (no limit: never).
async fn within<F: std::future::Future>(limit: Option<Duration>, fut: F) -> Option<F::Output> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, fut).await.ok(),
        None => Some(fut.await),
    }
}

async fn attempt(job: &Job, func: &Function) -> Attempt {
    let limit = func.timeout.map(|t| t + TIMEOUT_GRACE);
    match &func.handler {
        Handler::Async(h) => {
            let h = h.clone();
            let job = job.clone();
            let fut = AssertUnwindSafe(async move {
                // The call itself may panic before it returns a future.
                h(job).await
            })
            .catch_unwind();
            let Some(result) = within(limit, fut).await else {
                return Attempt::TimedOut;
            };
            match result {
                Ok(r) => Attempt::Done(r),
                Err(payload) => Attempt::Panicked(panic_message(&*payload)),
            }
        }
        Handler::Blocking(h) => {
            let h = h.clone();
            let job = job.clone();
            let task = tokio::task::spawn_blocking(move || h(job));
            let Some(result) = within(limit, task).await else {
                return Attempt::TimedOut;
            };
            match result {
                Ok(r) => Attempt::Done(r),
                Err(e) if e.is_panic() => Attempt::Panicked(panic_message(&*e.into_panic())),
                Err(e) => Attempt::Panicked(e.to_string()),
            }
        }
    }
}

/// How long an overloaded job waits before its next in-place attempt: the
/// worker's grab delay, or the job's own doubling delay if that is longer (so
/// a document rejected again and again waits longer each time, even while
/// other jobs' successes keep the grab delay low), at most `max`, with jitter
/// so that the documents of one rejected bulk do not all come back at once.
fn retry_delay(shared: &Shared, policy: BackpressurePolicy, tries: u32) -> Duration {
    let grab_delay = Duration::from_micros(shared.backpressure_us.load(Ordering::Relaxed));
    let own = policy
        .initial
        .saturating_mul(1u32 << tries.saturating_sub(1).min(20));
    grab_delay
        .max(own)
        .min(policy.max)
        .mul_f64(0.5 + 0.5 * fastrand::f64())
}

/// Runs `job` to its end (retrying it in place while it reports overload, up
/// to the configured count) and reports the ending to the driver with the
/// packet to send.
pub(crate) async fn run_job(
    job: Job,
    func: Function,
    permit: OwnedSemaphorePermit,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    events: UnboundedSender<Event>,
    tag: JobTag,
) {
    let mut tries = 0;
    let result = loop {
        match attempt(&job, &func).await {
            Attempt::Done(Err(JobError::Overloaded(why))) if tries < cfg.overload_retries => {
                tries += 1;
                tracing::debug!(handle = %job.handle_str(), %why, tries, "downstream overloaded; retrying in place");
                let _ = events.send(Event::Overloaded);
                tokio::time::sleep(retry_delay(&shared, cfg.backpressure, tries)).await;
            }
            other => break other,
        }
    };
    let handle = job.handle().to_vec();
    let c = &shared.stats;
    let (packet, outcome) = match result {
        Attempt::Done(Ok(data)) => {
            c.completed.fetch_add(1, Ordering::Relaxed);
            (
                Packet::req(PacketType::WORK_COMPLETE, &[&handle, &data]),
                Outcome::Complete,
            )
        }
        Attempt::Done(Err(JobError::Fail(why))) => {
            c.failed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(handle = %job.handle_str(), function = job.function(), %why, "job failed");
            (
                Packet::req(PacketType::WORK_FAIL, &[&handle]),
                Outcome::Fail,
            )
        }
        Attempt::Done(Err(JobError::Exception(data))) => {
            c.exceptions.fetch_add(1, Ordering::Relaxed);
            (
                Packet::req(PacketType::WORK_EXCEPTION, &[&handle, &data]),
                Outcome::Exception,
            )
        }
        Attempt::Done(Err(JobError::Overloaded(why))) => {
            c.failed.fetch_add(1, Ordering::Relaxed);
            c.overloaded.fetch_add(1, Ordering::Relaxed);
            tracing::info!(handle = %job.handle_str(), function = job.function(), %why, "downstream overloaded; job failed");
            (
                Packet::req(PacketType::WORK_FAIL, &[&handle]),
                Outcome::Overloaded,
            )
        }
        Attempt::Panicked(msg) => {
            c.failed.fetch_add(1, Ordering::Relaxed);
            c.panics.fetch_add(1, Ordering::Relaxed);
            tracing::error!(handle = %job.handle_str(), function = job.function(), panic = %msg, "handler panicked; job failed");
            (
                Packet::req(PacketType::WORK_FAIL, &[&handle]),
                Outcome::Panic,
            )
        }
        Attempt::TimedOut => {
            c.failed.fetch_add(1, Ordering::Relaxed);
            c.timed_out.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(handle = %job.handle_str(), function = job.function(), timeout = ?func.timeout,
                "handler outlived its CAN_DO_TIMEOUT; job failed");
            (
                Packet::req(PacketType::WORK_FAIL, &[&handle]),
                Outcome::TimedOut,
            )
        }
    };
    let _ = events.send(Event::JobDone {
        id: tag.id,
        server: tag.server,
        gen: tag.gen,
        outcome,
        packet,
        permit,
        handle: Bytes::copy_from_slice(job.handle()),
    });
}
