//! Worker connections: CAN_DO, then GRAB_JOB_UNIQ → WORK_COMPLETE loops.
//!
//! Each worker keeps up to `grab_window` GRAB_JOB_UNIQ requests outstanding.
//! When a job arrives it sends WORK_COMPLETE and a fresh GRAB in one write, so
//! with a window of 2 one GRAB is always in flight while a job is completed.
//! On NO_JOB the window shrinks; when no GRAB is left outstanding the worker
//! sends PRE_SLEEP and waits for NOOP, as real workers do.

use crate::client::Progress;
use crate::conn::{Conn, Target};
use crate::{err, Result};
use gearbox_proto::PacketType;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub function: String,
    pub grab_window: usize,
    /// Complete with the job's data (echo) or with an empty body.
    pub echo: bool,
}

#[derive(Debug, Default, Clone)]
pub struct WorkerStats {
    pub executed: u64,
    pub no_jobs: u64,
    pub noops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub unexpected: Vec<String>,
    /// Jobs assigned after the pool was told to stop (completed anyway).
    pub late_jobs: u64,
}

impl WorkerStats {
    fn merge(&mut self, o: WorkerStats) {
        self.executed += o.executed;
        self.no_jobs += o.no_jobs;
        self.noops += o.noops;
        self.errors += o.errors;
        self.late_jobs += o.late_jobs;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        for u in o.unexpected {
            if self.unexpected.len() < 10 {
                self.unexpected.push(u);
            }
        }
    }
}

/// Shared by the workers of one pool.
#[derive(Debug)]
pub struct PoolShared {
    /// Jobs executed by all workers of the pool.
    pub progress: Arc<Progress>,
    /// Stop once this many jobs have been executed, if set.
    goal: Option<u64>,
    stop: watch::Sender<bool>,
}

impl PoolShared {
    pub fn executed(&self) -> u64 {
        self.progress.done()
    }
}

/// A set of running workers.
pub struct Pool {
    pub shared: Arc<PoolShared>,
    tasks: Vec<JoinHandle<Result<WorkerStats>>>,
}

impl Pool {
    /// Connects `n` workers and starts them. With `goal`, they stop by
    /// themselves after that many jobs in total.
    pub async fn start(
        target: &Target,
        cfg: &WorkerConfig,
        n: usize,
        goal: Option<u64>,
        progress: Arc<Progress>,
    ) -> Result<Pool> {
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(PoolShared {
            progress,
            goal,
            stop,
        });
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            conns.push(Conn::connect(target).await?);
        }
        let tasks = conns
            .into_iter()
            .map(|conn| {
                let cfg = cfg.clone();
                let shared = shared.clone();
                let stop = shared.stop.subscribe();
                tokio::spawn(run_worker(conn, cfg, shared, stop))
            })
            .collect();
        Ok(Pool { shared, tasks })
    }

    /// Waits until the goal is reached (pools started with a goal).
    pub async fn reached_goal(&self) {
        let mut rx = self.shared.stop.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Tells the workers to stop and waits for them. Each confirms with an
    /// ECHO round trip that the server has read all its WORK_COMPLETEs.
    pub async fn finish(self) -> Result<WorkerStats> {
        self.shared.stop.send_replace(true);
        let mut total = WorkerStats::default();
        for t in self.tasks {
            let stats = t.await.map_err(|e| err!("worker task panicked: {e}"))??;
            total.merge(stats);
        }
        Ok(total)
    }
}

async fn run_worker(
    mut conn: Conn,
    cfg: WorkerConfig,
    shared: Arc<PoolShared>,
    mut stop: watch::Receiver<bool>,
) -> Result<WorkerStats> {
    let function = cfg.function.as_bytes();
    let window = cfg.grab_window.max(1);
    let mut stats = WorkerStats::default();
    conn.push(PacketType::CAN_DO, &[function]);
    for _ in 0..window {
        conn.push(PacketType::GRAB_JOB_UNIQ, &[]);
    }
    conn.flush().await?;
    let mut outstanding = window;
    let mut sleeping = false;
    let mut packets = Vec::with_capacity(64);
    'run: loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break 'run,
            r = conn.read_some(&mut packets) => r?,
        }
        for p in packets.drain(..) {
            match p.kind {
                PacketType::JOB_ASSIGN_UNIQ => {
                    let data: &[u8] = if cfg.echo { p.arg(3) } else { b"" };
                    conn.push(PacketType::WORK_COMPLETE, &[p.arg(0), data]);
                    stats.executed += 1;
                    let n = shared.progress.add(1);
                    if shared.goal == Some(n) {
                        shared.stop.send_replace(true);
                    }
                    if shared.goal.is_some_and(|g| n >= g) {
                        outstanding -= 1;
                    } else {
                        conn.push(PacketType::GRAB_JOB_UNIQ, &[]);
                    }
                }
                PacketType::NO_JOB => {
                    stats.no_jobs += 1;
                    outstanding = outstanding.saturating_sub(1);
                    if outstanding == 0 {
                        conn.push(PacketType::PRE_SLEEP, &[]);
                        sleeping = true;
                    }
                }
                PacketType::NOOP => {
                    stats.noops += 1;
                    if sleeping {
                        sleeping = false;
                        for _ in 0..window {
                            conn.push(PacketType::GRAB_JOB_UNIQ, &[]);
                        }
                        outstanding = window;
                    }
                }
                PacketType::ERROR => {
                    stats.errors += 1;
                    if stats.first_error.is_none() {
                        stats.first_error = Some(format!(
                            "ERROR {} {}",
                            String::from_utf8_lossy(p.arg(0)),
                            String::from_utf8_lossy(p.arg(1))
                        ));
                    }
                }
                _ => {
                    if stats.unexpected.len() < 10 {
                        stats.unexpected.push(format!("{p:?}"));
                    }
                }
            }
        }
        conn.flush().await?;
    }
    confirm(&mut conn, &cfg, &mut stats).await?;
    Ok(stats)
}

/// ECHO round trip: once ECHO_RES is back, the server has read every
/// WORK_COMPLETE sent before it. Jobs still assigned meanwhile are completed.
async fn confirm(conn: &mut Conn, cfg: &WorkerConfig, stats: &mut WorkerStats) -> Result<()> {
    conn.push(PacketType::ECHO_REQ, &[b"bench-fin"]);
    conn.flush().await?;
    let (mut sent, mut echoed) = (1u32, 0u32);
    let wait = async {
        let mut packets = Vec::new();
        while echoed < sent {
            conn.read_some(&mut packets).await?;
            for p in packets.drain(..) {
                match p.kind {
                    PacketType::ECHO_RES => echoed += 1,
                    PacketType::JOB_ASSIGN_UNIQ => {
                        let data: &[u8] = if cfg.echo { p.arg(3) } else { b"" };
                        conn.push(PacketType::WORK_COMPLETE, &[p.arg(0), data]);
                        stats.late_jobs += 1;
                    }
                    _ => {}
                }
            }
            if conn.pending_write() {
                conn.push(PacketType::ECHO_REQ, &[b"bench-fin"]);
                sent += 1;
                conn.flush().await?;
            }
        }
        Ok::<_, crate::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .map_err(|_| err!("worker: no ECHO_RES within 10 s of stopping"))?
}
