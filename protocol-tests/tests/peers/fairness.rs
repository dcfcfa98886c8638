//! Unequal backlogs on three front ends, one serial worker on the aggregator.

use super::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

const FUNCTION: &str = "peers_fair";
/// Backlogs on fe1 (gearmand), fe2 (gearmand), fe3 (gearboxd without peers):
/// each larger than its even share of the first [`FIRST`] jobs.
const BACKLOGS: [usize; 3] = [1200, 700, 450];
const FIRST: usize = 999;
/// Re-polls that must all show a sum of RUNNING > 1 for it to count.
const CONFIRM_POLLS: usize = 3;
const CONFIRM_GAP: Duration = Duration::from_millis(10);

/// What the `status` poller saw during the drain.
#[derive(Debug, Default)]
struct RunningSamples {
    polls: usize,
    /// Polls in which the sum of RUNNING over the three front ends was > 1.
    /// A single such poll proves nothing: the front ends are read one after
    /// the other (microseconds apart, milliseconds on a loaded machine), and
    /// a finished job stays RUNNING on its front end until the relayed
    /// WORK_COMPLETE is processed there, while the worker's next job may
    /// already be RUNNING on another. Observed: 1 to 7 of about 80 polls per
    /// run show 2, while the aggregator never holds more than one job.
    over_one: usize,
    /// Sums > 1 that persisted: seen again in each of [`CONFIRM_POLLS`]
    /// re-polls [`CONFIRM_GAP`] apart. A server that pulls ahead (prefetch,
    /// one GRAB per link, a GRAB not tied to a local worker) keeps extra
    /// jobs RUNNING on the front ends all through the drain; a hand-over
    /// does not last that long.
    confirmed: Vec<Vec<Vec<FnStatus>>>,
    max_sum: u64,
    busy_polls: usize,
    /// The aggregator's own `status` TOTAL for the function: its pulled
    /// jobs not finished (queued there or running on its worker). Read in
    /// one reply of one server, so it has no cross-server timing window.
    agg_max_total: u64,
    agg_over_one: Vec<FnStatus>,
    errors: Vec<String>,
}

/// The sum of RUNNING on the front ends (every row but the last, which is
/// the aggregator's).
fn sum_running(rows: &[FnStatus]) -> u64 {
    rows[..rows.len() - 1].iter().map(|r| r.running).sum()
}

/// Polls `status` on `ports` every 15 ms until `stop` (at most 90 s).
fn poll_running(ports: Vec<u16>, stop: Arc<AtomicBool>) -> RunningSamples {
    let mut s = RunningSamples::default();
    let mut poller = match StatusPoller::new(&ports) {
        Ok(p) => p,
        Err(e) => {
            s.errors.push(e);
            return s;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match poller.poll(FUNCTION) {
            Ok(rows) => {
                s.polls += 1;
                let sum = sum_running(&rows);
                s.max_sum = s.max_sum.max(sum);
                let agg = rows[rows.len() - 1];
                s.agg_max_total = s.agg_max_total.max(agg.total);
                if agg.total > 1 {
                    s.agg_over_one.push(agg);
                }
                if sum > 0 {
                    s.busy_polls += 1;
                }
                if sum > 1 {
                    s.over_one += 1;
                    let mut seen = vec![rows];
                    for _ in 0..CONFIRM_POLLS {
                        thread::sleep(CONFIRM_GAP);
                        match poller.poll(FUNCTION) {
                            Ok(again) => seen.push(again),
                            Err(e) => s.errors.push(e),
                        }
                    }
                    if seen.len() == CONFIRM_POLLS + 1 && seen.iter().all(|r| sum_running(r) > 1) {
                        s.confirmed.push(seen);
                    }
                }
            }
            Err(e) => {
                s.errors.push(e);
                if s.errors.len() > 20 {
                    break;
                }
            }
        }
        thread::sleep(Duration::from_millis(15));
    }
    s
}

#[test]
fn fair_shares_and_one_job_out() {
    let fe1 = Node::gearmand("fair-fe1");
    let fe2 = Node::gearmand("fair-fe2");
    let fe3 = Node::gearboxd("fair-fe3", &[]);
    let fronts = [&fe1, &fe2, &fe3];
    let names = ["fe1", "fe2", "fe3"];
    let mut all = Vec::new();
    for ((fe, name), n) in fronts.iter().zip(names).zip(BACKLOGS) {
        let p = payloads(name, n);
        submit_background(fe.port(), FUNCTION, &p);
        all.push(p);
    }
    for (fe, n) in fronts.iter().zip(BACKLOGS) {
        let row = fn_status(fe.port(), FUNCTION).expect("status");
        assert_eq!(row.total, n as u64, "{} backlog: {row:?}", fe.label());
    }
    let expected = set(&all);
    let total: usize = BACKLOGS.iter().sum();

    let agg = aggregator(
        "fair-agg",
        &fronts.iter().map(|f| f.addr()).collect::<Vec<_>>(),
        &[],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut ports: Vec<u16> = fronts.iter().map(|f| f.port()).collect();
    ports.push(agg.port());
    let poller = {
        let stop = stop.clone();
        thread::spawn(move || poll_running(ports, stop))
    };
    let started = Instant::now();
    let mut worker = gear_worker(
        agg.dir(),
        "fair-worker",
        agg.port(),
        FUNCTION,
        "reverse",
        total,
        90,
        None,
    );
    let status = worker.wait_exit(Duration::from_secs(95));
    let drained = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let samples = poller.join().expect("poller thread");
    assert!(status.success(), "worker: {status}\n{}", worker.describe());

    let order = jobs_run(&worker);
    assert_eq!(order.len(), total, "{}", worker.describe());
    assert_exactly_once("fairness drain", &tally(&order), &expected);

    // Shares of the first 999 jobs: each within 5 % of 333.
    let even = FIRST / 3;
    let slack = (even as f64 * 0.05).floor() as usize;
    let mut shares = BTreeMap::new();
    for p in order.iter().take(FIRST) {
        let source = p.split('-').next().unwrap_or("").to_owned();
        *shares.entry(source).or_insert(0usize) += 1;
    }
    eprintln!(
        "[fairness] backlogs {BACKLOGS:?}: shares of the first {FIRST}: {shares:?} \
         (allowed {even}±{slack}); {total} jobs drained in {}",
        secs(drained)
    );
    for name in names {
        let got = shares.get(name).copied().unwrap_or(0);
        assert!(
            got.abs_diff(even) <= slack,
            "{name} got {got} of the first {FIRST} jobs, not {even}±{slack}: {shares:?}"
        );
    }

    eprintln!(
        "[fairness] status polls: {} ({} with a job out), max sum of RUNNING {}, \
         {} polls with a sum > 1 ({} persisting over {CONFIRM_POLLS} re-polls: {:?}); aggregator's own \
         TOTAL max {} (> 1 in {} polls: {:?}), errors {:?}",
        samples.polls,
        samples.busy_polls,
        samples.max_sum,
        samples.over_one,
        samples.confirmed.len(),
        samples.confirmed,
        samples.agg_max_total,
        samples.agg_over_one.len(),
        samples.agg_over_one,
        samples.errors
    );
    assert!(
        samples.errors.is_empty(),
        "status poller: {:?}",
        samples.errors
    );
    assert!(
        samples.busy_polls >= 10,
        "the poller saw a job out in only {} of {} polls: the check proved nothing",
        samples.busy_polls,
        samples.polls
    );
    // The aggregator's own count is exact: one serial worker, so never more
    // than one pulled job unfinished (running, or waiting there).
    assert!(
        samples.agg_over_one.is_empty(),
        "the aggregator held more than one pulled job at once (its `status` TOTAL) with \
         one serial local worker: {:?}",
        samples.agg_over_one
    );
    assert!(
        samples.confirmed.is_empty(),
        "with one serial local worker, the front ends' RUNNING summed to more than 1 in \
         {} polls {CONFIRM_GAP:?} apart: {:?}",
        CONFIRM_POLLS + 1,
        samples.confirmed
    );
    wait_queues_empty(
        "all three front-end queues to be empty",
        &fronts.iter().map(|f| f.port()).collect::<Vec<_>>(),
        FUNCTION,
        Duration::from_secs(10),
    );
}
