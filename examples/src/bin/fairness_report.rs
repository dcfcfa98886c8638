//! Measures gearbox-worker against libgearman's worker, side by side:
//!
//! 1. **Fairness**: two servers, each with a backlog of `--jobs` background
//!    jobs; one worker with concurrency 1 takes `--jobs` jobs in all. Printed:
//!    the share taken from each server.
//! 2. **Throughput with a bad server in the list**: `--jobs` jobs on a healthy
//!    server, the worker given (a) only that server, (b) a dead server (a port
//!    where nothing listens) first, (c) a silent server (accepts, never
//!    answers) first, (d) a server that never accepts (listen backlog full, so the
//!    handshake never completes, as with a black-holed address) first. Printed: time from start to the first job, and the rate from the
//!    first job to the last (median of `--runs`).
//!
//! The libgearman side: the `gearman` CLI takes one `-h`/`-p` only, so it
//! cannot serve two servers; it is measured on the healthy server alone. Its
//! multi-server worker loop is measured through PHP's GearmanWorker
//! (pecl-gearman over libgearman) with one `addServer` per server, in the
//! same order as gearbox-worker's list. A libgearman run that has not finished
//! after `--cap` seconds is stopped and reported as stalled.
//!
//! The report starts its own servers (gearmand from PATH and/or gearboxd,
//! built if needed) on free loopback ports:
//!
//! ```text
//! cargo run --release -p gearbox-examples --bin fairness_report -- --kind both
//! ```
//!
//! Figures depend on the machine and its load; they are printed, not judged.

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use gearbox_client::ServerAddr;
use gearbox_worker::{JobError, Worker};
use protocol_tests::{ServerKind, TestServer};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Kinds {
    Gearmand,
    Gearboxd,
    Both,
}

#[derive(Parser)]
struct Args {
    /// Which job server(s) to measure against.
    #[arg(long, value_enum, default_value = "both")]
    kind: Kinds,
    /// Backlog per server for the fairness run, and jobs per throughput run.
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// Throughput runs per configuration (the median is printed).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds after which a libgearman run is stopped as stalled.
    #[arg(long, default_value_t = 30)]
    cap: u64,
}

/// libgearman's own worker loop (the one under the `gearman` CLI), with one
/// `gearman_worker_add_server` per server. The Debian package ships the
/// library without headers, so the few prototypes are declared here.
const C_WORKER: &str = r#"/* libgearman worker with several servers (prototypes declared here: the
   package ships the library without headers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>
#include <netinet/in.h>
typedef struct gearman_worker_st gearman_worker_st;
typedef struct gearman_job_st gearman_job_st;
typedef int gearman_return_t;
typedef void *(gearman_worker_fn)(gearman_job_st *, void *, size_t *, gearman_return_t *);
gearman_worker_st *gearman_worker_create(gearman_worker_st *);
gearman_return_t gearman_worker_add_server(gearman_worker_st *, const char *, in_port_t);
gearman_return_t gearman_worker_add_function(gearman_worker_st *, const char *, uint32_t, gearman_worker_fn *, void *);
gearman_return_t gearman_worker_work(gearman_worker_st *);
const void *gearman_job_workload(const gearman_job_st *);
size_t gearman_job_workload_size(const gearman_job_st *);
const char *gearman_worker_error(const gearman_worker_st *);
static long done, want;
static double now(void) { struct timespec t; clock_gettime(CLOCK_REALTIME, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static void *fn(gearman_job_st *job, void *ctx, size_t *size, gearman_return_t *ret) {
  (void)ctx;
  if (done == 0) { fprintf(stderr, "first %.6f\n", now()); }
  fwrite(gearman_job_workload(job), 1, gearman_job_workload_size(job), stdout);
  fputc('\n', stdout);
  if (++done == want) { fprintf(stderr, "last %.6f\n", now()); fflush(stdout); }
  *size = 0; *ret = 0; return NULL;
}
int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: %s FUNCTION COUNT HOST:PORT...\n", argv[0]); return 2; }
  want = atol(argv[2]);
  gearman_worker_st *w = gearman_worker_create(NULL);
  for (int i = 3; i < argc; i++) {
    char host[256]; strncpy(host, argv[i], 255); host[255] = 0;
    char *colon = strrchr(host, ':'); *colon = 0;
    gearman_worker_add_server(w, host, (in_port_t)atoi(colon + 1));
  }
  gearman_worker_add_function(w, argv[1], 0, fn, NULL);
  while (done < want) {
    if (gearman_worker_work(w) != 0) { fprintf(stderr, "work: %s\n", gearman_worker_error(w)); }
  }
  return 0;
}
"#;

/// Compiles [`C_WORKER`] against libgearman.so.8; `None` if that fails.
fn build_c_worker() -> Option<std::path::PathBuf> {
    let dir = protocol_tests::unique_temp_dir("fairness-cworker");
    let src = dir.join("w.c");
    let bin = dir.join("libgearman-worker");
    std::fs::write(&src, C_WORKER).ok()?;
    for lib in [
        "/usr/lib/x86_64-linux-gnu/libgearman.so.8",
        "/usr/lib/aarch64-linux-gnu/libgearman.so.8",
        "/usr/lib/libgearman.so.8",
    ] {
        if !std::path::Path::new(lib).exists() {
            continue;
        }
        let ok = Command::new("cc")
            .args(["-O2", "-o"])
            .arg(&bin)
            .arg(&src)
            .arg(lib)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(bin);
        }
    }
    None
}

const PHP_WORKER: &str = r#"<?php
// argv: function count server...
$w = new GearmanWorker();
foreach (array_slice($argv, 3) as $s) {
    list($h, $p) = explode(':', $s);
    // pecl-gearman throws "Failed to set exception option" when the server
    // does not answer OPTION_REQ; the server stays in the list.
    try { $w->addServer($h, (int)$p); } catch (Exception $e) {}
}
$n = (int)$argv[2];
$done = 0;
$w->addFunction($argv[1], function ($job) use (&$done) {
    if ($done == 0) { fwrite(STDERR, "first " . microtime(true) . "\n"); }
    echo $job->workload(), "\n";
    $done++;
    if ($done == $GLOBALS['n']) { fwrite(STDERR, "last " . microtime(true) . "\n"); }
    return "";
});
while ($done < $n) { $w->work(); }
"#;

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// What one worker run saw.
#[derive(Default, Clone)]
struct Run {
    /// Payloads in the order the jobs ran.
    payloads: Vec<String>,
    to_first: Option<Duration>,
    first_to_last: Option<Duration>,
    stalled: bool,
}

impl Run {
    fn rate(&self) -> Option<f64> {
        let d = self.first_to_last?;
        (self.payloads.len() > 1).then(|| (self.payloads.len() - 1) as f64 / d.as_secs_f64())
    }
}

async fn gearbox_run(servers: &[String], function: &str, n: usize, concurrency: usize) -> Run {
    let log: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let l = log.clone();
    let worker = Worker::builder()
        .servers(servers)
        .concurrency(concurrency)
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .function(function, move |job| {
            let l = l.clone();
            async move {
                l.lock().unwrap().push((
                    Instant::now(),
                    String::from_utf8_lossy(job.payload()).into_owned(),
                ));
                Ok::<_, JobError>(Bytes::new())
            }
        })
        .build()
        .unwrap();
    let start = Instant::now();
    let running = worker.spawn();
    loop {
        if log.lock().unwrap().len() >= n {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    running.shutdown(Duration::from_secs(5)).await;
    let log = log.lock().unwrap();
    let log = &log[..log.len().min(n)];
    Run {
        payloads: log.iter().map(|(_, p)| p.clone()).collect(),
        to_first: log.first().map(|(t, _)| t.duration_since(start)),
        first_to_last: match (log.first(), log.last()) {
            (Some(a), Some(b)) => Some(b.0.duration_since(a.0)),
            _ => None,
        },
        stalled: log.len() < n,
    }
}

/// Which libgearman-based worker to run.
#[derive(Clone)]
enum Lg {
    Php,
    C(std::path::PathBuf),
}

fn lg_run(lg: &Lg, servers: &[String], function: &str, n: usize, cap: Duration) -> Run {
    let dir = protocol_tests::unique_temp_dir("fairness-lg");
    let mut cmd = match lg {
        Lg::Php => {
            let script = dir.join("worker.php");
            std::fs::write(&script, PHP_WORKER).unwrap();
            let mut c = Command::new("php");
            c.arg(script);
            c
        }
        Lg::C(bin) => Command::new(bin),
    };
    let out = dir.join("out");
    let err = dir.join("err");
    let start = epoch_now();
    let mut child = cmd
        .arg(function)
        .arg(n.to_string())
        .args(servers)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("run the libgearman worker");
    let began = Instant::now();
    let stalled = loop {
        if let Ok(Some(_)) = child.try_wait() {
            break false;
        }
        if began.elapsed() > cap {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let payloads: Vec<String> = std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    let stamp = |name: &str| -> Option<f64> {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    };
    let first = stamp("first ");
    let last = stamp("last ");
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        stalled: stalled || payloads.len() < n,
        to_first: first.map(|f| Duration::from_secs_f64((f - start).max(0.0))),
        first_to_last: match (first, last) {
            (Some(f), Some(l)) => Some(Duration::from_secs_f64((l - f).max(0.0))),
            _ => None,
        },
        payloads,
    }
}

/// The `gearman -w` CLI on one server: wall time for `n` jobs (it echoes the
/// payload back; no command is run per job).
fn cli_run(server: &TestServer, function: &str, n: usize, cap: Duration) -> (Duration, bool) {
    let start = Instant::now();
    let mut child = Command::new("gearman")
        .args([
            "-w",
            "-h",
            "127.0.0.1",
            "-p",
            &server.port_str(),
            "-f",
            function,
        ])
        .args(["-c", &n.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run gearman");
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return (start.elapsed(), false);
        }
        if start.elapsed() > cap {
            let _ = child.kill();
            let _ = child.wait();
            return (start.elapsed(), true);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

async fn preload(server: &TestServer, function: &str, prefix: &str, n: usize) {
    let addr: ServerAddr = server.addr().parse().unwrap();
    gearbox_examples::submit_background(&addr, function, (0..n).map(|i| format!("{prefix}-{i}")))
        .await
        .expect("submit backlog");
}

async fn start(kind: ServerKind) -> TestServer {
    tokio::task::spawn_blocking(move || TestServer::start(kind))
        .await
        .unwrap()
}

fn share(run: &Run) -> String {
    let a = run.payloads.iter().filter(|p| p.starts_with("a-")).count();
    let b = run.payloads.iter().filter(|p| p.starts_with("b-")).count();
    let total = (a + b).max(1) as f64;
    format!(
        "A {a:>5} ({:5.1} %)  B {b:>5} ({:5.1} %){}",
        100.0 * a as f64 / total,
        100.0 * b as f64 / total,
        if run.stalled { "  [stalled]" } else { "" }
    )
}

/// A listener that accepts connections and never answers them.
fn hung_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    addr
}

/// A listener that never accepts: backlog 0 and its queue filled, so new
/// handshakes are not completed (SYNs are dropped) and connects hang until
/// the client gives up, as with a black-holed address.
fn unaccepting_server() -> (String, Vec<TcpStream>, socket2::Socket) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..64 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    (addr.to_string(), fillers, socket)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn describe(runs: &[Run]) -> String {
    let stalled = runs.iter().filter(|r| r.stalled).count();
    let mut rates: Vec<f64> = runs
        .iter()
        .filter(|r| !r.stalled)
        .filter_map(Run::rate)
        .collect();
    let firsts: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.to_first.map(|d| d.as_secs_f64() * 1000.0))
        .collect();
    let first = if firsts.is_empty() {
        "   never".to_string()
    } else {
        format!("{:8.1} ms", median(firsts))
    };
    let rate = if rates.is_empty() {
        let done: Vec<usize> = runs.iter().map(|r| r.payloads.len()).collect();
        format!("stalled: no run finished (jobs done per run: {done:?})")
    } else {
        rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
        format!(
            "{:7.0} jobs/s (runs {:.0}..{:.0})",
            median(rates.clone()),
            rates[0],
            rates[rates.len() - 1]
        )
    };
    let note = if stalled > 0 && stalled < runs.len() {
        format!("  [{stalled} of {} runs stalled]", runs.len())
    } else {
        String::new()
    };
    format!("first job {first}   rate {rate}{note}")
}

async fn report(kind: ServerKind, args: &Args, c_worker: Option<&std::path::PathBuf>) {
    let n = args.jobs;
    let cap = Duration::from_secs(args.cap);
    let mut lgs: Vec<(&str, Lg)> = Vec::new();
    if let Some(bin) = c_worker {
        lgs.push(("libgearman C worker", Lg::C(bin.clone())));
    }
    lgs.push(("libgearman PHP GearmanWorker", Lg::Php));
    println!("\n=== {} ===", kind.name());

    println!(
        "\n-- fairness: servers A and B with {n} queued jobs each, one worker, {n} jobs taken --"
    );
    for (label, c) in [
        ("gearbox-worker, concurrency 1", 1usize),
        ("gearbox-worker, concurrency 4", 4),
    ] {
        let a = start(kind).await;
        let b = start(kind).await;
        preload(&a, "fair", "a", n).await;
        preload(&b, "fair", "b", n).await;
        let run = gearbox_run(&[a.addr(), b.addr()], "fair", n, c).await;
        println!("{label:<38} {}", share(&run));
    }
    for (label, lg) in &lgs {
        let a = start(kind).await;
        let b = start(kind).await;
        preload(&a, "fair", "a", n).await;
        preload(&b, "fair", "b", n).await;
        let servers = [a.addr(), b.addr()];
        let lg = lg.clone();
        let run = tokio::task::spawn_blocking(move || lg_run(&lg, &servers, "fair", n, cap))
            .await
            .unwrap();
        println!("{:<38} {}", format!("{label} (A, B added)"), share(&run));
    }
    println!(
        "{:<38} cannot: it takes a single -h/-p",
        "libgearman `gearman -w` CLI"
    );

    println!(
        "\n-- throughput: {n} jobs on a healthy server, concurrency 1, bad server listed first, {} runs --",
        args.runs
    );
    let dead = format!("127.0.0.1:{}", protocol_tests::free_port());
    let hung = hung_server();
    let (unaccepting, _fillers, _listener) = unaccepting_server();
    let cases = [
        ("healthy only", None),
        ("dead + healthy", Some(dead.clone())),
        ("silent + healthy", Some(hung.clone())),
        ("unaccept.+healthy", Some(unaccepting.clone())),
    ];
    // workers: gearbox-worker, then each libgearman flavour.
    let workers = 1 + lgs.len();
    // runs[case][worker]
    let mut runs: Vec<Vec<Vec<Run>>> = vec![vec![Vec::new(); workers]; cases.len()];
    // Every round runs every case with every worker, back to back, so that
    // load changes on a shared machine hit all of them alike; each case is
    // then compared with "healthy only" of the same round.
    for _ in 0..args.runs {
        for (c, (_, bad)) in cases.iter().enumerate() {
            for w in 0..workers {
                let healthy = start(kind).await;
                let mut servers: Vec<String> = bad.iter().cloned().collect();
                servers.push(healthy.addr());
                preload(&healthy, "thr", "h", n).await;
                let run = if w == 0 {
                    gearbox_run(&servers, "thr", n, 1).await
                } else {
                    let lg = lgs[w - 1].1.clone();
                    tokio::task::spawn_blocking(move || lg_run(&lg, &servers, "thr", n, cap))
                        .await
                        .unwrap()
                };
                runs[c][w].push(run);
            }
        }
    }
    for (c, (case, _)) in cases.iter().enumerate() {
        for w in 0..workers {
            let label = if w == 0 {
                "gearbox-worker"
            } else {
                lgs[w - 1].0
            };
            let ratio = if c == 0 {
                String::new()
            } else {
                // Per round: this case's rate over the healthy-only rate.
                let ratios: Vec<f64> = runs[c][w]
                    .iter()
                    .zip(&runs[0][w])
                    .filter_map(|(bad, good)| Some(bad.rate()? / good.rate()?))
                    .collect();
                let finished = runs[c][w].iter().all(|r| !r.stalled);
                if ratios.is_empty() || !finished {
                    String::new()
                } else {
                    format!("  = {:.0} % of healthy-only", 100.0 * median(ratios))
                }
            };
            let case = if w == 0 { *case } else { "" };
            println!("{case:<17} {label:<29} {}{ratio}", describe(&runs[c][w]));
        }
    }
    let mut cli = Vec::new();
    for _ in 0..args.runs {
        let healthy = start(kind).await;
        preload(&healthy, "thr", "h", n).await;
        let (d, stalled) = tokio::task::spawn_blocking(move || cli_run(&healthy, "thr", n, cap))
            .await
            .unwrap();
        if !stalled {
            cli.push(n as f64 / d.as_secs_f64());
        }
    }
    if cli.is_empty() {
        println!("{:<16} {:<30} stalled", "healthy only", "gearman -w CLI");
    } else {
        println!(
            "{:<16} {:<30} rate {:7.0} jobs/s (wall time incl. start; one server only)",
            "healthy only",
            "gearman -w CLI",
            median(cli)
        );
    }
    let _ = std::io::stdout().flush();
}

fn main() {
    let rt = if std::env::var_os("FAIRNESS_CURRENT_THREAD").is_some_and(|v| !v.is_empty()) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    rt.unwrap().block_on(run());
}

async fn run() {
    let args = Args::parse();
    println!(
        "fairness_report: {} jobs, {} runs, libgearman cap {} s",
        args.jobs, args.runs, args.cap
    );
    let c_worker = build_c_worker();
    if c_worker.is_none() {
        println!("(could not build the libgearman C worker: `cc` or libgearman.so.8 missing)");
    }
    if matches!(args.kind, Kinds::Gearmand | Kinds::Both) {
        report(ServerKind::Gearmand, &args, c_worker.as_ref()).await;
    }
    if matches!(args.kind, Kinds::Gearboxd | Kinds::Both) {
        report(ServerKind::Gearboxd, &args, c_worker.as_ref()).await;
    }
}
