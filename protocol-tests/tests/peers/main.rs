//! Peer aggregation (`gearboxd --peer`), black box: real gearmand and gearboxd
//! front ends, an aggregating gearboxd, real clients (gearman CLI, PHP
//! pecl/gearman, Python gear) and real workers (Python gear, PHP). The only
//! fakes are peers that must misbehave: a "silent" peer (a listener in the
//! test that accepts and never answers), a "dead" one (a free port with
//! nothing listening) and a "hung" one (a real gearmand we SIGSTOP).
//!
//! * `fairness`: unequal backlogs on three front ends, one serial worker:
//!   even shares, never more than one job out.
//! * `bad_peers`: dead, silent and hung peers cost the healthy ones nothing
//!   and come back; a peer restarted on its port gets its functions again.
//! * `relay`: a foreground client on a front end sees data, warnings, status
//!   and the result as if the worker were connected directly;
//!   CAN_DO_TIMEOUT propagates to the front end.
//! * `failures`: the aggregator killed (-9) or stopped gracefully mid-drain,
//!   a local worker killed mid-job.
//! * `topology`: a two-server cycle and a three-level chain.
//!
//! Timings are printed (`--nocapture`) as information only.
//!
//! Run: `cargo test -p protocol-tests --test peers [-- --nocapture]` (about
//! 10 s on 2 cores once gearboxd is built). Needs gearmand, the gearman CLI,
//! php-gearman and Python `gear` (`protocol-tests/install-deps.sh`). Helpers
//! are in `protocol-tests/src/peers.rs`; the workers are
//! `clients/gear_peer_worker.py` (gear with TCP_NODELAY, COUNT 0 = no limit,
//! `sleep:MS` mode) and `clients/php_timeout_worker.php` (CAN_DO_TIMEOUT).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use protocol_tests::peers::*;
use protocol_tests::{free_port, wait_until, BackgroundProcess};

mod bad_peers;
mod failures;
mod fairness;
mod relay;
mod topology;

/// `--peer-timeout` used by the aggregators here: short, so that bad peers are
/// found quickly, and still far above a loopback round trip.
const PEER_TIMEOUT_MS: &str = "1000";

/// `--peer a --peer b … --peer-timeout 1000`
fn agg_args(peers: &[String], extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = peers
        .iter()
        .flat_map(|p| ["--peer".to_owned(), p.clone()])
        .collect();
    args.extend(["--peer-timeout".to_owned(), PEER_TIMEOUT_MS.to_owned()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// An aggregating gearboxd pulling from `peers` (addresses).
fn aggregator(label: &str, peers: &[String], extra: &[&str]) -> Node {
    Node::gearboxd(label, &agg_args(peers, extra))
}

/// Every payload that `workers` printed a `job` line for, with how often.
fn runs(workers: &[&BackgroundProcess]) -> BTreeMap<String, usize> {
    let mut all = Vec::new();
    for w in workers {
        all.extend(jobs_run(w));
    }
    tally(&all)
}

/// Waits until every payload in `expected` has been run by one of `workers`.
fn wait_all_ran(
    what: &str,
    workers: &[&BackgroundProcess],
    expected: &BTreeSet<String>,
    timeout: Duration,
) -> Duration {
    let started = Instant::now();
    wait_until(what, timeout, || {
        let ran = runs(workers);
        let missing: Vec<&String> = expected.iter().filter(|p| !ran.contains_key(*p)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            let mut shown: Vec<&String> = missing.iter().copied().take(10).collect();
            shown.sort();
            Err(format!(
                "{} of {} not run yet, e.g. {shown:?}\n{}",
                missing.len(),
                expected.len(),
                workers
                    .iter()
                    .map(|w| {
                        let out = w.stderr();
                        format!("stderr: {}", &out[out.len().saturating_sub(2000)..])
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            ))
        }
    });
    started.elapsed()
}

/// Waits until `function` has no job left (queued or running) on every one
/// of `ports`.
fn wait_queues_empty(what: &str, ports: &[u16], function: &str, timeout: Duration) {
    wait_until(what, timeout, || {
        let mut rows = Vec::new();
        let mut empty = true;
        for &port in ports {
            let row = fn_status(port, function)?;
            empty &= row.total == 0 && row.running == 0;
            rows.push((port, row));
        }
        if empty {
            Ok(())
        } else {
            Err(format!("{function} on (port, row): {rows:?}"))
        }
    });
}

/// The payloads that ran more than once, and how often.
fn duplicates(ran: &BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    ran.iter()
        .filter(|(_, &n)| n > 1)
        .map(|(p, &n)| (p.clone(), n))
        .collect()
}

/// Asserts that exactly `expected` ran, each exactly once.
fn assert_exactly_once(what: &str, ran: &BTreeMap<String, usize>, expected: &BTreeSet<String>) {
    let missing: Vec<&String> = expected.iter().filter(|p| !ran.contains_key(*p)).collect();
    let extra: Vec<&String> = ran.keys().filter(|p| !expected.contains(*p)).collect();
    let dups = duplicates(ran);
    assert!(
        missing.is_empty() && extra.is_empty() && dups.is_empty(),
        "{what}: every job must run exactly once; missing {} {:?}, unexpected {:?}, \
         run more than once {} {:?}",
        missing.len(),
        missing.iter().take(20).collect::<Vec<_>>(),
        extra,
        dups.len(),
        dups.iter().take(20).collect::<Vec<_>>()
    );
}

fn set(items: &[Vec<String>]) -> BTreeSet<String> {
    items.iter().flatten().cloned().collect()
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// Lines of a file that start with `prefix`, without it.
fn file_lines_with(path: &Path, prefix: &str) -> Vec<String> {
    protocol_tests::read_file(path)
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(str::to_owned)
        .collect()
}
