//! `peers`: peer aggregation against direct connections (issue #16).
//!
//! Three gearmand front ends (no flags, as sites run them) get backlogs. The
//! same gearbox-worker (one process, `--workers` job slots) drains them
//! three ways, in turns within each run:
//!
//! * **direct**: connected to the three front ends;
//! * **aggregated**: connected only to a gearboxd started with `--peer` for
//!   each front end;
//! * **aggregated, bad peers**: the same, with a dead peer (nothing listens)
//!   and a hung one (a gearmand stopped with SIGSTOP once the drain has
//!   begun) listed before the healthy three.
//!
//! Then the foreground round trip (one client on front end 1, one serial
//! worker) direct and aggregated, against the loopback round trip (ECHO on
//! front end 1), and the aggregator's CPU while idle with 10 peers.
//! Writes `benches/RESULTS-peers.md`.

use bytes::Bytes;
use clap::Parser;
use gearbox_benches::conn::{Conn, Target};
use gearbox_benches::harness::{fmt_num, free_port, median};
use gearbox_benches::procstat::cpu_seconds;
use gearbox_benches::runner::{gearmand_default_command, log_to, wait_ready};
use gearbox_client::{Client, JobRequest};
use gearbox_proto::{Packet, PacketType};
use gearbox_worker::{JobError, Worker};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Directory holding the release gearboxd.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Jobs queued on each front end for each drain.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Job slots of the worker (gearbox-worker `concurrency`).
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Foreground round trips per measurement.
    #[arg(long, default_value_t = 3_000)]
    roundtrips: usize,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// An extra flag for the aggregators (repeatable), e.g. `--aggregator-arg=-t1`.
    #[arg(long = "aggregator-arg", allow_hyphen_values = true)]
    aggregator_args: Vec<String>,
    /// Where to write the report.
    #[arg(long, default_value = "benches/RESULTS-peers.md")]
    out: PathBuf,
}

/// A server we started; killed on drop.
struct Proc {
    child: Child,
    addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: kill(2) of our own child: let a stopped one run to die.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGCONT) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) of our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }
}

fn start(mut cmd: Command, name: &str, addr: String, log: &Path) -> Result<Proc, String> {
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    wait_ready(
        &mut child,
        name,
        log,
        &addr,
        None,
        Duration::from_millis(10),
    )?;
    Ok(Proc { child, addr })
}

fn gearmand(dir: &Path, label: &str) -> Result<Proc, String> {
    let port = free_port()?;
    let log = dir.join(format!("{label}.log"));
    let cmd = gearmand_default_command(
        "gearmand",
        port,
        &dir.join(format!("{label}.gearmand.log")),
        &dir.join(format!("{label}.pid")),
        &log,
    )?;
    start(cmd, label, format!("127.0.0.1:{port}"), &log)
}

fn aggregator(args: &Args, dir: &Path, label: &str, peers: &[String]) -> Result<Proc, String> {
    let port = free_port()?;
    let log = dir.join(format!("{label}.log"));
    let mut cmd = Command::new(args.bin_dir.join("gearboxd"));
    cmd.args([
        "-p",
        &port.to_string(),
        "-L",
        "127.0.0.1",
        "--verbose",
        "WARNING",
    ]);
    for peer in peers {
        cmd.args(["--peer", peer]);
    }
    cmd.args(&args.aggregator_args);
    log_to(&mut cmd, &log)?;
    start(cmd, label, format!("127.0.0.1:{port}"), &log)
}

/// Queues `n` background jobs `PREFIX-i`, 100 in flight.
async fn fill(addr: &str, function: &str, prefix: &str, n: usize) -> Result<(), String> {
    let target: Target = addr.parse()?;
    let mut conn = Conn::connect(&target).await.map_err(|e| e.to_string())?;
    let mut replies: Vec<Packet> = Vec::new();
    let (mut sent, mut created) = (0, 0);
    while created < n {
        while sent < n && sent - created < 100 {
            let payload = format!("{prefix}-{sent}");
            conn.push(
                PacketType::SUBMIT_JOB_BG,
                &[function.as_bytes(), b"", payload.as_bytes()],
            );
            sent += 1;
        }
        conn.flush().await.map_err(|e| e.to_string())?;
        replies.clear();
        conn.read_some(&mut replies)
            .await
            .map_err(|e| e.to_string())?;
        created += replies
            .iter()
            .filter(|p| p.kind == PacketType::JOB_CREATED)
            .count();
    }
    Ok(())
}

/// Runs `function` on `servers` with `slots` job slots until `expect` jobs
/// whose payload starts with `fe` have run, each taking `work`. Returns the
/// seconds taken.
async fn drain(
    servers: &[String],
    function: &str,
    slots: usize,
    expect: usize,
    work: Duration,
) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let counted = done.clone();
    let worker = Worker::builder()
        .servers(servers)
        .concurrency(slots)
        .connect_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(3))
        .function(function, move |job| {
            let counted = counted.clone();
            async move {
                if !work.is_zero() {
                    tokio::time::sleep(work).await;
                }
                if job.payload().starts_with(b"fe") {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, JobError>(Bytes::new())
            }
        })
        .build()
        .expect("worker");
    let started = Instant::now();
    let until = async {
        while done.load(Ordering::Relaxed) < expect && started.elapsed() < Duration::from_secs(300)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    worker.run(until).await;
    let seconds = started.elapsed().as_secs_f64();
    if done.load(Ordering::Relaxed) < expect {
        eprintln!(
            "peers: drain stopped at {} of {expect} jobs",
            done.load(Ordering::Relaxed)
        );
    }
    seconds
}

/// p50 and p99 in µs of `n` one-at-a-time foreground jobs submitted on
/// `client_server` while a serial worker runs them from `worker_servers`.
async fn round_trip(
    client_server: &str,
    worker_servers: &[String],
    function: &str,
    n: usize,
) -> (f64, f64) {
    let worker = Worker::builder()
        .servers(worker_servers)
        .concurrency(1)
        .function(function, |job| async move {
            Ok::<_, JobError>(job.payload().clone())
        })
        .build()
        .expect("worker");
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let running = tokio::spawn(worker.run(async move { stopped.cancelled().await }));
    let client = Client::builder()
        .server(client_server)
        .build()
        .expect("client");
    let mut samples = Vec::with_capacity(n);
    // The first jobs wait for the worker (and the aggregator's links).
    for i in 0..n + 50 {
        let at = Instant::now();
        let out = client
            .call(JobRequest::new(function, format!("rt-{i}")))
            .await;
        if out.is_err() {
            eprintln!("peers: round trip {i} failed: {out:?}");
            continue;
        }
        if i >= 50 {
            samples.push(at.elapsed().as_secs_f64() * 1e6);
        }
    }
    stop.cancel();
    let _ = running.await;
    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (pick(0.50), pick(0.99))
}

/// p50 in µs of an ECHO round trip to `addr`: one loopback round trip.
async fn echo_p50(addr: &str) -> f64 {
    let target: Target = addr.parse().expect("addr");
    let mut conn = Conn::connect(&target).await.expect("connect");
    let mut samples = Vec::new();
    let mut replies = Vec::new();
    for _ in 0..2000 {
        let at = Instant::now();
        conn.push(PacketType::ECHO_REQ, &[b"x"]);
        conn.flush().await.expect("write");
        replies.clear();
        conn.read_some(&mut replies).await.expect("read");
        samples.push(at.elapsed().as_secs_f64() * 1e6);
    }
    median(&mut samples).unwrap_or(f64::NAN)
}

#[derive(Default)]
struct Figures {
    direct: Vec<f64>,
    aggregated: Vec<f64>,
    bad: Vec<f64>,
    aggregator_cpu_us_per_job: Vec<f64>,
    slow_direct: Vec<f64>,
    slow_aggregated: Vec<f64>,
    rt_direct: Vec<(f64, f64)>,
    rt_aggregated: Vec<(f64, f64)>,
    echo: Vec<f64>,
    idle_cpu_percent: Vec<f64>,
    /// The bad-peers aggregator's `peers` after its last drain.
    bad_peers_table: String,
}

/// An admin listing, up to its `.` line (5 s at most).
async fn admin_listing(addr: &str, command: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let query = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(format!("{command}\n").as_bytes())
            .await
            .ok()?;
        let mut reply = Vec::new();
        let mut chunk = [0u8; 4096];
        while !(reply.starts_with(b".\n") || reply.ends_with(b"\n.\n")) {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&chunk[..n]);
        }
        Some(String::from_utf8_lossy(&reply).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), query)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

async fn one_run(args: &Args, dir: &Path, run: usize, f: &mut Figures) -> Result<(), String> {
    let fes: Vec<Proc> = (0..3)
        .map(|i| gearmand(dir, &format!("r{run}-fe{}", i + 1)))
        .collect::<Result<_, _>>()?;
    let fe_addrs: Vec<String> = fes.iter().map(|p| p.addr.clone()).collect();
    let total = args.jobs * 3;
    let agg = aggregator(args, dir, &format!("r{run}-agg"), &fe_addrs)?;
    // Order rotates per run so no way always goes first.
    for way in (0..3).map(|k| (k + run) % 3) {
        let function = format!("peers-r{run}-w{way}");
        for (i, fe) in fe_addrs.iter().enumerate() {
            fill(fe, &function, &format!("fe{}", i + 1), args.jobs).await?;
        }
        match way {
            0 => f.direct.push(
                total as f64
                    / drain(&fe_addrs, &function, args.workers, total, Duration::ZERO).await,
            ),
            1 => {
                let cpu0 = cpu_seconds(agg.pid()).map_err(|e| e.to_string())?;
                let secs = drain(
                    std::slice::from_ref(&agg.addr),
                    &function,
                    args.workers,
                    total,
                    Duration::ZERO,
                )
                .await;
                let cpu = cpu_seconds(agg.pid()).map_err(|e| e.to_string())? - cpu0;
                f.aggregated.push(total as f64 / secs);
                f.aggregator_cpu_us_per_job.push(cpu * 1e6 / total as f64);
            }
            _ => {
                let hung = gearmand(dir, &format!("r{run}-hung"))?;
                fill(&hung.addr, &function, "hung", args.jobs).await?;
                let dead = format!("127.0.0.1:{}", free_port()?);
                let mut peers = vec![dead, hung.addr.clone()];
                peers.extend(fe_addrs.iter().cloned());
                let bad = aggregator(args, dir, &format!("r{run}-bad"), &peers)?;
                let stopper = tokio::spawn(async move {
                    // Hang the peer once the drain has begun pulling from it.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    hung.signal(libc::SIGSTOP);
                    hung
                });
                let secs = drain(
                    std::slice::from_ref(&bad.addr),
                    &function,
                    args.workers,
                    total,
                    Duration::ZERO,
                )
                .await;
                f.bad.push(total as f64 / secs);
                f.bad_peers_table = admin_listing(&bad.addr, "peers").await;
                drop(stopper.await);
            }
        }
    }
    // Jobs that take 1 ms: the hop the aggregator adds is then a small part
    // of each job's cycle, as with most real work.
    let slow_total = total / 10;
    for way in [run % 2, 1 - run % 2] {
        let function = format!("peers-r{run}-slow{way}");
        for (i, fe) in fe_addrs.iter().enumerate() {
            fill(fe, &function, &format!("fe{}", i + 1), args.jobs / 10).await?;
        }
        let servers = if way == 0 {
            fe_addrs.clone()
        } else {
            vec![agg.addr.clone()]
        };
        let secs = drain(
            &servers,
            &function,
            args.workers,
            slow_total,
            Duration::from_millis(1),
        )
        .await;
        let rate = slow_total as f64 / secs;
        if way == 0 {
            f.slow_direct.push(rate);
        } else {
            f.slow_aggregated.push(rate);
        }
    }
    f.echo.push(echo_p50(&fe_addrs[0]).await);
    let function = format!("peers-r{run}-rt");
    f.rt_direct
        .push(round_trip(&fe_addrs[0], &fe_addrs, &function, args.roundtrips).await);
    f.rt_aggregated.push(
        round_trip(
            &fe_addrs[0],
            std::slice::from_ref(&agg.addr),
            &function,
            args.roundtrips,
        )
        .await,
    );
    Ok(())
}

/// The aggregator's CPU, in % of one core, over 10 s with 10 idle peers and
/// one idle worker (so every link is connected and asleep).
async fn idle_cpu(args: &Args, dir: &Path) -> Result<f64, String> {
    let peers: Vec<Proc> = (0..10)
        .map(|i| gearmand(dir, &format!("idle-{i}")))
        .collect::<Result<_, _>>()?;
    let addrs: Vec<String> = peers.iter().map(|p| p.addr.clone()).collect();
    let agg = aggregator(args, dir, "idle-agg", &addrs)?;
    let worker = Worker::builder()
        .server(&agg.addr)
        .function("idle", |_job| async { Ok::<_, JobError>(Bytes::new()) })
        .build()
        .map_err(|e| e.to_string())?;
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let running = tokio::spawn(worker.run(async move { stopped.cancelled().await }));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu0 = cpu_seconds(agg.pid()).map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu = cpu_seconds(agg.pid()).map_err(|e| e.to_string())? - cpu0;
    stop.cancel();
    let _ = running.await;
    Ok(cpu / 10.0 * 100.0)
}

fn row(md: &mut String, columns: usize, label: &str, values: &[f64], decimals: usize) {
    let mut v = values.to_vec();
    let mut cells: Vec<String> = values.iter().map(|x| fmt_num(*x, decimals)).collect();
    cells.resize(columns.max(cells.len()), "–".to_string());
    let med = median(&mut v).map_or("-".into(), |m| fmt_num(m, decimals));
    let _ = writeln!(md, "| {label} | {} | **{med}** |", cells.join(" | "));
}

fn report(args: &Args, f: &Figures) -> String {
    let ratio =
        |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x / y).collect() };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Peer aggregation: through an aggregator against direct\n"
    );
    let _ = writeln!(
        md,
        "Written by `benches/peers` (`benches/src/bin/peers.rs`). Three gearmand front ends with no flags; {} jobs queued on each per drain; one gearbox-worker process with {} job slots drains them direct (connected to the three) and through a release gearboxd `--peer fe1 --peer fe2 --peer fe3`, and through one that also has a dead peer and a hung one (as many jobs queued, SIGSTOP 200 ms into the drain, while it still has most of them) listed first. Ways alternate within each run; {} runs. Everything shares the machine's 2 cores.\n",
        args.jobs, args.workers, args.runs
    );
    let runs: Vec<String> = (1..=f.direct.len()).map(|r| format!("run {r}")).collect();
    let _ = writeln!(md, "| figure | {} | median |", runs.join(" | "));
    let _ = writeln!(md, "|---|{}---:|", "---:|".repeat(runs.len()));
    row(&mut md, runs.len(), "drain jobs/s, direct", &f.direct, 0);
    row(
        &mut md,
        runs.len(),
        "drain jobs/s, aggregated",
        &f.aggregated,
        0,
    );
    row(
        &mut md,
        runs.len(),
        "**aggregated ÷ direct** (aim ≥ 0.8)",
        &ratio(&f.aggregated, &f.direct),
        2,
    );
    row(
        &mut md,
        runs.len(),
        "drain jobs/s, aggregated with a dead and a hung peer",
        &f.bad,
        0,
    );
    row(
        &mut md,
        runs.len(),
        "**with bad peers ÷ without** (must be ≥ 0.9)",
        &ratio(&f.bad, &f.aggregated),
        2,
    );
    row(
        &mut md,
        runs.len(),
        "aggregator CPU µs per drained job",
        &f.aggregator_cpu_us_per_job,
        1,
    );
    row(
        &mut md,
        runs.len(),
        "drain jobs/s, 1 ms jobs, direct",
        &f.slow_direct,
        0,
    );
    row(
        &mut md,
        runs.len(),
        "drain jobs/s, 1 ms jobs, aggregated",
        &f.slow_aggregated,
        0,
    );
    row(
        &mut md,
        runs.len(),
        "**1 ms jobs: aggregated ÷ direct**",
        &ratio(&f.slow_aggregated, &f.slow_direct),
        2,
    );
    let p50 = |v: &[(f64, f64)]| v.iter().map(|x| x.0).collect::<Vec<f64>>();
    let p99 = |v: &[(f64, f64)]| v.iter().map(|x| x.1).collect::<Vec<f64>>();
    row(
        &mut md,
        runs.len(),
        "round trip p50 µs, direct",
        &p50(&f.rt_direct),
        0,
    );
    row(
        &mut md,
        runs.len(),
        "round trip p50 µs, aggregated",
        &p50(&f.rt_aggregated),
        0,
    );
    let added: Vec<f64> = p50(&f.rt_aggregated)
        .iter()
        .zip(p50(&f.rt_direct))
        .map(|(a, d)| a - d)
        .collect();
    row(
        &mut md,
        runs.len(),
        "**p50 added by the aggregator, µs**",
        &added,
        0,
    );
    row(
        &mut md,
        runs.len(),
        "one loopback round trip (ECHO p50 on front end 1), µs",
        &f.echo,
        0,
    );
    row(
        &mut md,
        runs.len(),
        "round trip p99 µs, direct",
        &p99(&f.rt_direct),
        0,
    );
    row(
        &mut md,
        runs.len(),
        "round trip p99 µs, aggregated",
        &p99(&f.rt_aggregated),
        0,
    );
    row(
        &mut md,
        runs.len(),
        "aggregator CPU while idle with 10 peers, % of a core",
        &f.idle_cpu_percent,
        3,
    );
    let _ = writeln!(
        md,
        "\nThe bad-peers aggregator's `peers` after its last drain (address, state, failures, pulled, in flight, idle s, last error):\n\n```text\n{}```",
        f.bad_peers_table
    );
    md
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("gearbox-peers-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let mut figures = Figures::default();
    for run in 0..args.runs {
        if let Err(e) = one_run(&args, &dir, run, &mut figures).await {
            eprintln!("peers: run {}: {e}", run + 1);
            return std::process::ExitCode::FAILURE;
        }
        eprintln!("peers: run {} of {} done", run + 1, args.runs);
    }
    match idle_cpu(&args, &dir).await {
        Ok(pct) => figures.idle_cpu_percent.push(pct),
        Err(e) => eprintln!("peers: idle measurement: {e}"),
    }
    let md = report(&args, &figures);
    print!("{md}");
    if let Err(e) = std::fs::write(&args.out, &md) {
        eprintln!("peers: cannot write {}: {e}", args.out.display());
        return std::process::ExitCode::FAILURE;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::process::ExitCode::SUCCESS
}
