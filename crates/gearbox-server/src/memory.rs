//! Giving memory back to the OS after a backlog drains.
//!
//! The engine's tables and queues shrink as they empty, but glibc's malloc keeps
//! freed pages in its arenas, so RSS would stay at its peak (gearmand#284). This
//! task watches the job count and, once it has fallen to a quarter of its recent
//! peak, asks glibc to release free pages in every arena (`malloc_trim(0)`), on a
//! blocking thread so that no connection waits for it.

use crate::connection::lock;
use crate::engine::Engine;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the job count is looked at.
const INTERVAL: Duration = Duration::from_secs(1);
/// Backlogs smaller than this are not worth a trim.
const MIN_PEAK: usize = 10_000;

pub async fn trim_loop(engine: Arc<Mutex<Engine>>) {
    let mut peak = 0usize;
    loop {
        tokio::time::sleep(INTERVAL).await;
        let jobs = lock(&engine).job_count();
        peak = peak.max(jobs);
        if peak >= MIN_PEAK && jobs <= peak / 4 {
            tracing::debug!(
                peak,
                jobs,
                "backlog drained; returning free memory to the OS"
            );
            let _ = tokio::task::spawn_blocking(trim).await;
            peak = jobs;
        }
    }
}

#[cfg(target_env = "gnu")]
fn trim() {
    // SAFETY: malloc_trim only walks glibc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(target_env = "gnu"))]
fn trim() {}
