//! What the admin `peers` command prints: one row per peer, written by the
//! manager after every event and read by the engine. "Shows running but
//! moves nothing" is how RabbitMQ's shovels are known to fail, so each row
//! says how long ago a job last moved.

use crate::engine::PeerCounters;
use gearbox_client::ServerAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRow {
    pub addr: String,
    /// `up`, `connecting`, `cooling`, or `idle` (no local worker, so no link).
    pub state: &'static str,
    /// Failures in a row; reset once the peer hands over a job.
    pub failures: u32,
    pub last_error: String,
}

/// The rows, shared between the manager and the engine.
#[derive(Debug, Clone, Default)]
pub struct PeerTable(Arc<Mutex<Vec<PeerRow>>>);

impl PeerTable {
    pub fn new(addrs: &[ServerAddr]) -> PeerTable {
        let rows = addrs
            .iter()
            .map(|a| PeerRow {
                addr: a.to_string(),
                state: "idle",
                failures: 0,
                last_error: String::new(),
            })
            .collect();
        PeerTable(Arc::new(Mutex::new(rows)))
    }

    pub fn set(&self, rows: Vec<PeerRow>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = rows;
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn rows(&self) -> Vec<PeerRow> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `ADDRESS STATE FAILURES PULLED IN_FLIGHT IDLE_S LAST_ERROR`, tab
    /// separated, then `.`: the shape of `status` and `workers`. The engine
    /// gives, per peer, its counters and the jobs it has in flight (GRABs
    /// waiting plus pulled jobs not finished). IDLE_S is `-` before the first
    /// job; LAST_ERROR is `-` when there was none.
    pub fn listing(&self, figures: &[(PeerCounters, usize)]) -> Vec<u8> {
        let mut out = String::new();
        let now = Instant::now();
        for (i, r) in self.rows().into_iter().enumerate() {
            let (counters, in_flight) = figures.get(i).copied().unwrap_or_default();
            let idle = counters.last_moved.map_or("-".to_string(), |t| {
                now.duration_since(t).as_secs().to_string()
            });
            let error = if r.last_error.is_empty() {
                "-".to_string()
            } else {
                r.last_error.replace(['\t', '\r', '\n'], " ")
            };
            out.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                r.addr, r.state, r.failures, counters.pulled, in_flight, idle, error
            ));
        }
        out.push_str(".\n");
        out.into_bytes()
    }
}
