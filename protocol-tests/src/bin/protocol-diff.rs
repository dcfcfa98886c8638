//! `protocol-diff`: run the differential conformance cases.
//!
//! ```text
//! protocol-diff [--list] [--case NAME]... [--category CAT]... [--target HOST:PORT
//!               [--reset]] [--jobs N] [--show]
//! ```
//!
//! Without `--target`, every selected case runs against a fresh gearmand and a fresh
//! gearboxd (built with cargo on first use), exactly as `cargo test --test
//! differential` does. With `--target HOST:PORT`, the cases run against that server
//! instead of gearboxd and are compared with a fresh local gearmand, one at a time;
//! cases that need server flags are skipped, and job handles are compared by order of
//! appearance. `--reset` empties the target (cancels all jobs, drops all functions)
//! before each case.
//! Exit status: 0 if nothing failed, 1 if a case failed, 2 on a usage error.

use std::process::ExitCode;
use std::time::Instant;

use protocol_tests::diff::cases::{all_cases, KNOWN_BUGS};
use protocol_tests::diff::runner::{default_jobs, describe_outcome, parse_target};
use protocol_tests::diff::{run_cases, summary, Mode, Verdict};

const USAGE: &str = "usage: protocol-diff [--list] [--case NAME]... [--category CAT]... \
[--target HOST:PORT [--reset]] [--jobs N] [--show]

  --list               list the cases (name, category, flags, compat id, what it checks)
  --case NAME          run only this case (repeatable)
  --category CAT       run only the cases of this category (repeatable)
  --target HOST:PORT   compare an external server with a fresh local gearmand
                       (instead of a fresh gearboxd); use an idle, dedicated instance.
                       Cases run one at a time; cases needing server flags are skipped
  --reset              with --target: before each case, cancel every job and drop
                       every function on the target (DESTRUCTIVE: test instances only)
  --jobs N             cases run in parallel (default $PROTOCOL_DIFF_JOBS or 4)
  --show               print both transcripts of every case, not only failures";

fn main() -> ExitCode {
    let mut list = false;
    let mut show = false;
    let mut reset = false;
    let mut names: Vec<String> = Vec::new();
    let mut categories: Vec<String> = Vec::new();
    let mut target: Option<String> = None;
    let mut jobs = default_jobs();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |what: &str| match args.next() {
            Some(v) => Ok(v),
            None => Err(format!("{what} needs a value")),
        };
        let result = match arg.as_str() {
            "--list" => {
                list = true;
                Ok(())
            }
            "--show" => {
                show = true;
                Ok(())
            }
            "--reset" => {
                reset = true;
                Ok(())
            }
            "--case" => value("--case").map(|v| names.push(v)),
            "--category" => value("--category").map(|v| categories.push(v)),
            "--target" => value("--target").map(|v| target = Some(v)),
            "--jobs" => value("--jobs").and_then(|v| {
                v.parse()
                    .map(|n: usize| jobs = n.max(1))
                    .map_err(|_| format!("--jobs: not a number: {v}"))
            }),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown argument {other}")),
        };
        if let Err(e) = result {
            eprintln!("protocol-diff: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }

    let mut cases = all_cases();
    if !names.is_empty() {
        for n in &names {
            if !cases.iter().any(|c| &c.name == n) {
                eprintln!("protocol-diff: no case named {n} (see --list)");
                return ExitCode::from(2);
            }
        }
        cases.retain(|c| names.contains(&c.name));
    }
    if !categories.is_empty() {
        cases.retain(|c| categories.iter().any(|cat| cat == c.category));
    }

    if list {
        for c in &cases {
            let dev = c
                .deviation
                .as_ref()
                .map(|d| format!(" [deviation {}]", d.id))
                .unwrap_or_default();
            let bug = if KNOWN_BUGS.iter().any(|(n, _)| *n == c.name) {
                " [known bug]"
            } else {
                ""
            };
            let flags = if c.flags.is_empty() {
                String::new()
            } else {
                format!(" flags: {}", c.flags.join(" "))
            };
            println!(
                "{:<44} {:<12}{flags}{dev}{bug}  {}",
                c.name, c.category, c.about
            );
        }
        println!("{} cases", cases.len());
        return ExitCode::SUCCESS;
    }

    let mode = match target {
        Some(t) => match parse_target(&t) {
            Ok(addr) => {
                // The cases share the external server: one at a time.
                jobs = 1;
                Mode::Target { addr, reset }
            }
            Err(e) => {
                eprintln!("protocol-diff: {e}");
                return ExitCode::from(2);
            }
        },
        None => {
            if reset {
                eprintln!("protocol-diff: --reset only makes sense with --target\n{USAGE}");
                return ExitCode::from(2);
            }
            Mode::Gearboxd
        }
    };
    let started = Instant::now();
    // Details are printed as each case finishes, so an interrupted run still shows them.
    let outcomes = run_cases(&cases, &mode, jobs, &|o| {
        eprintln!("{:<44} {}", o.name, o.verdict.label());
        let interesting = matches!(o.verdict, Verdict::Failed(_) | Verdict::KnownBug(_));
        if show || interesting {
            println!("{}", describe_outcome(o));
        }
    });
    println!("{}", summary(&outcomes, started.elapsed()));
    if outcomes
        .iter()
        .any(|o| matches!(o.verdict, Verdict::Failed(_)))
    {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
