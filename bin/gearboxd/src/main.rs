//! gearboxd: the gearbox job server, started like gearmand.

mod cli;
mod daemon;
mod logging;
mod notify;
mod peering;
mod queue;

use clap::Parser;
use gearbox_server::{Server, ShutdownHandle};
use std::process::ExitCode;
use tokio::signal::unix::{signal, SignalKind};

/// jemalloc, set to hand freed pages back to the OS within about a second
/// (a background thread purges them), so RSS falls after a backlog drains
/// instead of staying at its peak as with glibc's malloc (gearmand#284).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    let args = match cli::expand_args(std::env::args().collect()) {
        Ok(args) => args,
        Err(message) => return fail(&message),
    };
    let mut cli = cli::Cli::parse_from(args);
    if let Err(message) = cli.queue.resolve_paths() {
        return fail(&message);
    }
    let config = match cli.server_config() {
        Ok(config) => config,
        Err(message) => return fail(&message),
    };
    if cli.daemon {
        if let Err(e) = daemon::detach() {
            return fail(&format!("cannot detach: {e}"));
        }
    }
    let log_file = match logging::init(&cli.log_file, &cli.verbose, cli.log_format) {
        Ok(file) => file,
        Err(e) => return fail(&format!("cannot open log file {}: {e}", cli.log_file)),
    };
    if let Some(buckets) = cli.hashtable_buckets {
        tracing::info!(
            buckets,
            "--hashtable-buckets ignored: tables resize as they grow"
        );
    }
    match daemon::raise_fd_limit(cli.file_descriptors) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot set the open-file limit"),
    }
    let _pid_file = match cli
        .pid_file
        .as_deref()
        .map(daemon::PidFile::create)
        .transpose()
    {
        Ok(pid) => pid,
        Err(e) => return fail(&format!("cannot write pid file: {e}")),
    };
    // gearmand's -t counts I/O threads; here they are the runtime's workers,
    // and more of them than cores only adds context switches (measured: drain
    // 69k/s with 4 threads, 82k/s with 2, on 2 cores). With 2 cores or fewer
    // the clients and workers on the same machine need a core too, and a
    // second runtime thread costs cross-thread wake-ups (futex, eventfd) on
    // nearly every job: one thread was faster at every load row on the 2-core
    // VM (benches/ab, medians of 3: pipelined submit 1.62M vs 1.37M jobs/s,
    // round trip 69k vs 52k jobs/s with p99 531 vs 989 us, drain 357k vs 198k
    // jobs per server CPU-second).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let requested = cli.threads.unwrap_or(if cores <= 2 { 1 } else { 4 });
    let threads = match requested {
        0 => cores,
        n if n > cores => {
            tracing::info!(requested = n, cores, "-t capped at the number of cores");
            cores
        }
        n => n,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start runtime: {e}")),
    };
    let store = match cli.queue.open() {
        Ok(store) => store,
        Err(message) => return fail(&message),
    };
    let result = runtime.block_on(async move {
        let server = Server::bind_with_store(config, store).await?;
        let mut serving = Vec::new();
        for addr in server.local_addrs() {
            tracing::info!(%addr, "listening");
            serving.push(addr.to_string());
        }
        if let Some(path) = &cli.unix {
            tracing::info!(path = %path.display(), "listening on unix socket");
            serving.push(path.display().to_string());
        }
        watch_signals(server.shutdown_handle(), log_file)?;
        // An admin `shutdown` (or `shutdown graceful`) tells systemd too, as
        // soon as it is asked for; a signal already has.
        let handle = server.shutdown_handle();
        tokio::spawn(async move {
            let status = match handle.requested().await {
                gearbox_server::ShutdownRequest::Graceful => {
                    "graceful stop: waiting for running jobs"
                }
                _ => "stopping",
            };
            notify::stopping(status);
        });
        // Every listener is bound (connections queue in the backlog until the
        // accept loops start in `run`) and the signal handlers are in place.
        // A durable store's replay starts in the background from `run`.
        notify::ready(&format!("serving on {}", serving.join(", ")));
        let result = server.run().await;
        // Sent once: a signal or the watcher above has said it already.
        notify::stopping("stopped");
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("gearboxd: {message}");
    tracing::error!("{message}");
    ExitCode::FAILURE
}

/// SIGTERM and SIGINT stop at once, SIGUSR1 stops gracefully, SIGHUP reopens
/// the log file. Each stop tells systemd STOPPING=1 first.
fn watch_signals(
    shutdown: ShutdownHandle,
    log_file: Option<logging::LogFile>,
) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!("SIGTERM: stopping");
                    notify::stopping("stopping (SIGTERM)");
                    shutdown.immediate();
                }
                _ = int.recv() => {
                    tracing::info!("SIGINT: stopping");
                    notify::stopping("stopping (SIGINT)");
                    shutdown.immediate();
                }
                _ = usr1.recv() => {
                    tracing::info!("SIGUSR1: graceful stop");
                    notify::stopping("graceful stop (SIGUSR1): waiting for running jobs");
                    shutdown.graceful();
                }
                _ = hup.recv() => {
                    if let Some(file) = &log_file {
                        file.reopen();
                        tracing::info!("SIGHUP: log file reopened");
                    }
                }
            }
        }
    });
    Ok(())
}
