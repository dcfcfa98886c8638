//! loadgen: drives a Gearman server with one scenario and reports its figures.
//!
//! ```text
//! loadgen --server 127.0.0.1:4730 --scenario submit-bg --connections 8 --window 32 --jobs 200000
//! loadgen --server unix:/tmp/gearbox.sock --scenario latency --server-pid 1234 --json
//! ```
//!
//! Prints one human line and, with `--json`, one JSON line. Exit status: 0 when
//! the run finished, 1 when it failed, 2 when the `--deadline` was hit.

use clap::Parser;
use gearbox_benches::report::Report;
use gearbox_benches::scenarios::{self, Options, Tracker};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let opts = Options::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tracker = Tracker::default();
    let mut report = Report::default();
    let started = Instant::now();
    let deadline = Duration::from_secs(opts.deadline.max(1));
    let outcome = runtime.block_on(async {
        tokio::time::timeout(deadline, scenarios::run(&opts, &tracker, &mut report)).await
    });
    report.wall_s = started.elapsed().as_secs_f64();
    // Tasks still running after a failure or the deadline are dropped here.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let code = match outcome {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            report.error = Some(format!("{e} (during {})", tracker.describe()));
            1
        }
        Err(_) => {
            report.error = Some(format!(
                "hard deadline of {} s hit in {}",
                opts.deadline,
                tracker.describe()
            ));
            2
        }
    };
    if report.scenario.is_empty() {
        report.scenario = opts.scenario.name().to_string();
        report.target = opts.server.to_string();
    }
    println!("{}", report.human());
    if opts.json {
        println!("{}", report.to_json());
    }
    ExitCode::from(code)
}
