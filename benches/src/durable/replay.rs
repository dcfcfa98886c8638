//! The restart part of `durable`: one queue file of many jobs, filled once
//! through gearboxd, then restarts of gearboxd and gearmand on copies of it,
//! watched with admin `status` and SUBMIT_JOB_BG probes.

use super::{db_bytes, figure, remove_db, run_loadgen, Args, Kind, Server};
use crate::conn::{admin_status_within, Conn, Target};
use crate::harness::{fmt_num, Meter, RunLog};
use crate::procstat;
use gearbox_proto::PacketType;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One probe sent to a restarting server.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Seconds after the server was started.
    pub sent_s: f64,
    /// Seconds until the reply; `None` if none came.
    pub latency_s: Option<f64>,
    /// Admin `status`: the count shown for the replayed function.
    pub count: Option<u64>,
    pub error: Option<String>,
}

impl Probe {
    pub fn answered_s(&self) -> Option<f64> {
        self.latency_s.map(|l| self.sent_s + l)
    }
}

/// What one restart on the full queue file showed.
#[derive(Debug, Default)]
pub struct ReplayRun {
    pub kind: Option<Kind>,
    /// Jobs of the replayed function in the file.
    pub expected: u64,
    /// The TCP connect first succeeded (the kernel accepts once the server listens).
    pub accept_s: Option<f64>,
    /// The first admin `status` reply arrived.
    pub first_status_s: Option<f64>,
    /// The first `status` reply showing every queued job arrived.
    pub full_s: Option<f64>,
    pub status: Vec<Probe>,
    pub submits: Vec<Probe>,
    pub rss_kib: Option<u64>,
    pub cpu_s: Option<f64>,
    /// gearboxd's own log: "replay finished ... seconds=X".
    pub log_replay_s: Option<f64>,
    pub stop_s: Option<f64>,
    pub note: Option<String>,
}

impl ReplayRun {
    /// Status replies that showed part of the queue: answered while replaying.
    pub fn status_during(&self) -> Vec<&Probe> {
        self.status
            .iter()
            .filter(|p| p.count.is_some_and(|c| c < self.expected))
            .collect()
    }

    /// Submit probes answered before the last `status` request that still
    /// got a partial count was sent: the server was certainly replaying
    /// when it answered them.
    pub fn submits_during(&self) -> Vec<&Probe> {
        let Some(last_partial) = self
            .status_during()
            .iter()
            .map(|p| p.sent_s)
            .reduce(f64::max)
        else {
            return Vec::new();
        };
        self.submits
            .iter()
            .filter(|p| p.answered_s().is_some_and(|a| a <= last_partial))
            .collect()
    }
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.get(s.rfind(')')? + 1..)?;
            after.split_whitespace().next().map(|st| st != "Z")
        })
        .unwrap_or(false)
}

/// Watches a server that was just started on a full queue file: when it
/// accepts, when `status` first answers and when it shows `expected` jobs of
/// `function`; meanwhile a `status` every 100 ms and a SUBMIT_JOB_BG (of
/// another function) every 100 ms, each with its latency.
pub async fn watch_replay(
    target: Target,
    pid: u32,
    t0: Instant,
    function: String,
    expected: u64,
    cap: Duration,
) -> ReplayRun {
    let mut run = ReplayRun {
        expected,
        ..Default::default()
    };
    let end = t0 + cap;
    let since = move |t: Instant| t.duration_since(t0).as_secs_f64();
    let addr = match &target {
        Target::Tcp(a) => a.clone(),
        Target::Unix(_) => unreachable!("replay runs over TCP"),
    };
    // 1. The listener.
    loop {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            run.accept_s = Some(since(Instant::now()));
            break;
        }
        if Instant::now() > end || !alive(pid) {
            run.note = Some(if alive(pid) {
                format!("not accepting connections within {} s", cap.as_secs())
            } else {
                "exited before accepting connections".into()
            });
            return run;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // 2. Submits of a new job, one at a time, every 100 ms, until the queue is back.
    let done = Arc::new(AtomicBool::new(false));
    let submitter = {
        let done = done.clone();
        let target = target.clone();
        tokio::spawn(async move {
            let mut probes = Vec::new();
            let mut conn = match Conn::connect(&target).await {
                Ok(c) => c,
                Err(e) => {
                    probes.push(Probe {
                        sent_s: since(Instant::now()),
                        latency_s: None,
                        count: None,
                        error: Some(e.to_string()),
                    });
                    return probes;
                }
            };
            let function = format!("durable-probe-{}", std::process::id());
            let payload = vec![b'p'; 100];
            let mut replies = Vec::new();
            for i in 0u64.. {
                if done.load(Ordering::SeqCst) || Instant::now() > end {
                    break;
                }
                let unique = format!("probe-{:08x}-{i:027}", std::process::id());
                let sent = Instant::now();
                conn.push(
                    PacketType::SUBMIT_JOB_BG,
                    &[function.as_bytes(), unique.as_bytes(), &payload],
                );
                let reply = async {
                    conn.flush().await?;
                    replies.clear();
                    conn.read_some(&mut replies).await
                };
                let outcome = tokio::time::timeout_at(end.into(), reply).await;
                let mut probe = Probe {
                    sent_s: since(sent),
                    latency_s: None,
                    count: None,
                    error: None,
                };
                match outcome {
                    Ok(Ok(())) => match replies.first().map(|p| p.kind) {
                        Some(PacketType::JOB_CREATED) => {
                            probe.latency_s = Some(sent.elapsed().as_secs_f64())
                        }
                        other => probe.error = Some(format!("reply {other:?}")),
                    },
                    Ok(Err(e)) => probe.error = Some(e.to_string()),
                    Err(_) => probe.error = Some("no reply before the time limit".into()),
                }
                let failed = probe.error.is_some();
                probes.push(probe);
                if failed {
                    break;
                }
                tokio::time::sleep_until((sent + Duration::from_millis(100)).into()).await;
            }
            probes
        })
    };
    // 3. Admin status every 100 ms until it shows the whole queue.
    loop {
        let sent = Instant::now();
        if sent > end {
            break;
        }
        let limit = end
            .saturating_duration_since(sent)
            .max(Duration::from_millis(1));
        let mut probe = Probe {
            sent_s: since(sent),
            latency_s: None,
            count: None,
            error: None,
        };
        match admin_status_within(&target, &function, limit).await {
            Ok(status) => {
                let at = Instant::now();
                probe.latency_s = Some(at.duration_since(sent).as_secs_f64());
                let count = status.map_or(0, |s| s.total);
                probe.count = Some(count);
                run.first_status_s.get_or_insert(since(at));
                if count >= expected {
                    run.full_s = Some(since(at));
                    run.rss_kib = procstat::rss_kib(pid).ok();
                    run.cpu_s = procstat::cpu_seconds(pid).ok();
                    run.status.push(probe);
                    break;
                }
            }
            Err(e) => probe.error = Some(e.to_string()),
        }
        run.status.push(probe);
        if !alive(pid) {
            run.note = Some("the server exited during the replay".into());
            break;
        }
        tokio::time::sleep_until((sent + Duration::from_millis(100)).into()).await;
    }
    done.store(true, Ordering::SeqCst);
    run.submits = submitter.await.unwrap_or_default();
    if run.full_s.is_none() && run.note.is_none() {
        run.note = Some(format!(
            "did not finish: `status` never showed all {} jobs within {} s",
            fmt_num(expected as f64, 0),
            cap.as_secs()
        ));
    }
    run
}

/// "replay finished jobs=N seconds=X" in a gearboxd log.
pub fn logged_replay_seconds(log: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains("replay finished"))?;
    let v = line.split("seconds=").nth(1)?;
    v.split_whitespace().next()?.parse().ok()
}

/// The queue file of the replay part, filled once through gearboxd.
pub struct Filled {
    pub db: PathBuf,
    pub function: String,
    pub jobs: u64,
    pub json: Option<Value>,
    pub stop_s: Option<f64>,
    pub bytes: u64,
}

/// Queues `jobs` background jobs (100 B, uuid uniques) through gearboxd with
/// the SQLite store (sync full), then stops it with SIGTERM.
pub fn fill_replay_file(
    args: &Args,
    loadgen: &Path,
    dir: &Path,
    jobs: u64,
    problems: &mut Vec<String>,
    log: &mut Vec<RunLog>,
    started: Instant,
) -> Option<Filled> {
    let sdir = dir.join("replay-fill");
    let db = sdir.join("queue.sqlite3");
    let function = format!("durable-replay-{:08x}", std::process::id());
    let label = "replay-fill".to_string();
    eprintln!("[{:>4.0}s] {label}", started.elapsed().as_secs_f64());
    let meter = Meter::start();
    let start_s = started.elapsed().as_secs_f64();
    let mut server = match Server::spawn(Kind::SqliteFull, args, &sdir, &db, false) {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("{label}: {e}"));
            return None;
        }
    };
    if let Err(e) = server.wait_ready() {
        problems.push(format!("{label}: {e}"));
        return None;
    }
    let extra: Vec<String> = format!(
        "--scenario submit-bg --connections 8 --window 100 --jobs {jobs} --payload 100 \
         --unique uuid --function {function} --no-cleanup"
    )
    .split_whitespace()
    .map(str::to_string)
    .collect();
    let outcome = run_loadgen(loadgen, &extra, &server, &sdir, &label, 300);
    problems.extend(outcome.problem);
    let stop = server.terminate(Duration::from_secs(60));
    drop(server);
    log.push(meter.log(label, start_s, outcome.json.is_some()));
    let created = outcome
        .json
        .as_ref()
        .and_then(|j| figure(j, "jobs_created"))
        .unwrap_or(0.0) as u64;
    if created == 0 {
        problems.push("replay-fill: no job was queued; the replay part is skipped".into());
        return None;
    }
    Some(Filled {
        bytes: db_bytes(&db),
        db,
        function,
        jobs: created,
        json: outcome.json,
        stop_s: stop.map(|d| d.as_secs_f64()),
    })
}

/// Copies the filled file (and its -wal, if any) to `to`.
pub fn copy_db(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to)?;
    let mut wal = from.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    if wal.exists() {
        let mut dst = to.as_os_str().to_owned();
        dst.push("-wal");
        std::fs::copy(&wal, PathBuf::from(dst))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn replay_once(
    args: &Args,
    kind: Kind,
    filled: &Filled,
    dir: &Path,
    seq: usize,
    runtime: &tokio::runtime::Runtime,
    problems: &mut Vec<String>,
    log: &mut Vec<RunLog>,
    started: Instant,
) -> ReplayRun {
    let label = format!("replay-{}-{seq}", kind.id());
    eprintln!("[{:>4.0}s] {label}", started.elapsed().as_secs_f64());
    let sdir = dir.join(&label);
    let db = sdir.join("queue.sqlite3");
    let fail = |note: String| ReplayRun {
        kind: Some(kind),
        note: Some(note),
        ..Default::default()
    };
    if let Err(e) = std::fs::create_dir_all(&sdir).and_then(|_| copy_db(&filled.db, &db)) {
        problems.push(format!("{label}: cannot copy the queue file: {e}"));
        return fail(format!("cannot copy the queue file: {e}"));
    }
    let meter = Meter::start();
    let start_s = started.elapsed().as_secs_f64();
    let mut server = match Server::spawn(kind, args, &sdir, &db, true) {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("{label}: {e}"));
            remove_db(&db);
            return fail(e);
        }
    };
    let target = Target::Tcp(server.tcp.clone());
    let mut run = runtime.block_on(watch_replay(
        target,
        server.pid(),
        server.started,
        filled.function.clone(),
        filled.jobs,
        Duration::from_secs(args.replay_cap),
    ));
    run.kind = Some(kind);
    run.stop_s = server
        .terminate(Duration::from_secs(60))
        .map(|d| d.as_secs_f64());
    run.log_replay_s = logged_replay_seconds(&server.log);
    if let Some(note) = &run.note {
        problems.push(format!(
            "{label}: {note} (server log: {})",
            server.log.display()
        ));
    }
    drop(server);
    log.push(meter.log(label, start_s, run.full_s.is_some()));
    remove_db(&db);
    run
}
