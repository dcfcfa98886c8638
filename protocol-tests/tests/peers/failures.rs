//! The aggregator killed or stopped gracefully mid-drain; a local worker
//! killed mid-job.

use super::*;
use protocol_tests::{client_script, HOST};

const JOBS_PER_FRONT_END: usize = 150;

/// Two gearmand front ends with [`JOBS_PER_FRONT_END`] background jobs each
/// for `function`, an aggregator, and its worker (10 ms per job) recording
/// what it starts to a file. Returns once the worker has run `at_least` jobs.
struct MidDrain {
    fe1: Node,
    fe2: Node,
    agg: Node,
    worker: BackgroundProcess,
    outfile: std::path::PathBuf,
    expected: BTreeSet<String>,
}

fn mid_drain(label: &str, function: &str, at_least: usize) -> MidDrain {
    let fe1 = Node::gearmand(&format!("{label}-fe1"));
    let fe2 = Node::gearmand(&format!("{label}-fe2"));
    let p1 = payloads(&format!("{label}1"), JOBS_PER_FRONT_END);
    let p2 = payloads(&format!("{label}2"), JOBS_PER_FRONT_END);
    submit_background(fe1.port(), function, &p1);
    submit_background(fe2.port(), function, &p2);
    let agg = aggregator(&format!("{label}-agg"), &[fe1.addr(), fe2.addr()], &[]);
    let outfile = agg.dir().join("worker.out");
    let worker = gear_worker(
        agg.dir(),
        &format!("{label}-agg-worker"),
        agg.port(),
        function,
        "sleep:10",
        0,
        60,
        Some(&outfile),
    );
    wait_until(
        &format!("the aggregator's worker to run {at_least} jobs"),
        Duration::from_secs(30),
        || {
            let n = jobs_run(&worker).len();
            if n >= at_least {
                Ok(())
            } else {
                Err(format!("{n} so far\n{}", worker.describe()))
            }
        },
    );
    MidDrain {
        fe1,
        fe2,
        agg,
        worker,
        outfile,
        expected: set(&[p1, p2]),
    }
}

/// Direct workers on both front ends run what is left; returns every run,
/// the aggregator worker's and theirs, once all of `expected` ran and both
/// queues are empty.
fn finish_directly(
    d: &MidDrain,
    function: &str,
    label: &str,
) -> (BTreeMap<String, usize>, usize, usize) {
    let before = file_lines_with(&d.outfile, "started ");
    let w1 = gear_worker(
        d.fe1.dir(),
        &format!("{label}-direct1"),
        d.fe1.port(),
        function,
        "reverse",
        0,
        40,
        None,
    );
    let w2 = gear_worker(
        d.fe2.dir(),
        &format!("{label}-direct2"),
        d.fe2.port(),
        function,
        "reverse",
        0,
        40,
        None,
    );
    wait_until(
        "the direct workers to run what is left",
        Duration::from_secs(30),
        || {
            let mut now = before.clone();
            now.extend(jobs_run(&w1));
            now.extend(jobs_run(&w2));
            let ran = tally(&now);
            let missing = d.expected.iter().filter(|p| !ran.contains_key(*p)).count();
            if missing == 0 {
                Ok(())
            } else {
                Err(format!("{missing} jobs not run yet"))
            }
        },
    );
    wait_queues_empty(
        "both front-end queues to be empty",
        &[d.fe1.port(), d.fe2.port()],
        function,
        Duration::from_secs(10),
    );
    // Whatever else the direct workers may still pick up (nothing, if the
    // queues are empty) is counted too.
    std::thread::sleep(Duration::from_millis(200));
    let mut all_now = before.clone();
    all_now.extend(jobs_run(&w1));
    all_now.extend(jobs_run(&w2));
    let direct = all_now.len() - before.len();
    (tally(&all_now), before.len(), direct)
}

#[test]
fn aggregator_killed_mid_drain_loses_nothing() {
    let function = "peers_kill9";
    let mut d = mid_drain("kill9", function, 60);
    d.agg.kill9();
    let killed_at = Instant::now();
    d.worker.kill();
    let (ran, by_agg, by_direct) = finish_directly(&d, function, "kill9");
    let missing: Vec<&String> = d
        .expected
        .iter()
        .filter(|p| !ran.contains_key(*p))
        .collect();
    let dups = duplicates(&ran);
    eprintln!(
        "[kill -9] aggregator's worker ran {by_agg} jobs, direct workers {by_direct} \
         ({} after the kill); {} duplicates: {dups:?}",
        secs(killed_at.elapsed()),
        dups.len()
    );
    assert!(missing.is_empty(), "jobs never run: {missing:?}");
    assert!(
        ran.keys().all(|p| d.expected.contains(p)),
        "unexpected jobs: {ran:?}"
    );
    // One serial worker has at most one job out: at most that one runs twice.
    assert!(
        dups.len() <= 1,
        "more duplicates than jobs that can have been out: {dups:?}"
    );
}

fn graceful_mid_drain(label: &str, how: &str) {
    let function = format!("peers_{label}");
    let mut d = mid_drain(label, &function, 60);
    let asked = Instant::now();
    match how {
        "admin" => {
            let reply = admin_line(d.agg.port(), "shutdown graceful").expect("shutdown graceful");
            assert_eq!(reply, "OK", "shutdown graceful");
        }
        "sigusr1" => d.agg.signal("-USR1"),
        _ => unreachable!(),
    }
    let status = d.agg.wait_exit(Duration::from_secs(15));
    let stopped = asked.elapsed();
    assert!(
        status.is_some(),
        "the aggregator did not exit within 15 s of a graceful shutdown\n{}",
        d.agg.logs()
    );
    d.worker.kill();
    let (ran, by_agg, by_direct) = finish_directly(&d, &function, label);
    eprintln!(
        "[graceful {how}] aggregator exited {} after being asked ({status:?}); its worker \
         ran {by_agg} jobs, the direct workers {by_direct}",
        secs(stopped)
    );
    assert_exactly_once(&format!("graceful shutdown ({how})"), &ran, &d.expected);
    let done = file_lines_with(&d.outfile, "done ");
    let started = file_lines_with(&d.outfile, "started ");
    assert_eq!(
        done, started,
        "the aggregator stopped with a job of its worker unfinished"
    );
}

#[test]
fn graceful_shutdown_mid_drain_runs_everything_exactly_once() {
    graceful_mid_drain("graceful", "admin");
}

#[test]
fn sigusr1_mid_drain_runs_everything_exactly_once() {
    graceful_mid_drain("usr1", "sigusr1");
}

#[test]
fn local_worker_killed_mid_job_is_replaced_by_another() {
    let function = "peers_dies";
    let fe = Node::gearmand("dies-fe");
    let agg = aggregator("dies-agg", &[fe.addr()], &[]);
    let mut doomed = gear_worker(
        agg.dir(),
        "dies-doomed-worker",
        agg.port(),
        function,
        "sleep:30000",
        1,
        40,
        None,
    );
    wait_ready(&mut doomed);
    wait_until(
        "the aggregator's link to register on the front end",
        Duration::from_secs(10),
        || {
            let row = fn_status(fe.port(), function)?;
            if row.workers >= 1 {
                Ok(())
            } else {
                Err(format!("{row:?}"))
            }
        },
    );
    // A foreground client on the front end, with every callback.
    let php = client_script("php_client.php");
    let port = fe.port_str();
    let mut client = BackgroundProcess::spawn(
        "dies-php-client",
        "php",
        &[&php, HOST, &port, "tasks", function, "payload-x"],
        fe.dir(),
    );
    wait_until(
        "the doomed worker to start the job",
        Duration::from_secs(10),
        || {
            if jobs_run(&doomed) == ["payload-x"] {
                Ok(())
            } else {
                Err(doomed.describe())
            }
        },
    );
    let mut second = gear_worker(
        agg.dir(),
        "dies-second-worker",
        agg.port(),
        function,
        "reverse",
        1,
        30,
        None,
    );
    wait_ready(&mut second);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        jobs_run(&second).is_empty(),
        "the second worker got a job while the first one held it: {}",
        second.describe()
    );
    let row = fn_status(fe.port(), function).expect("status");
    assert_eq!(
        (row.total, row.running),
        (1, 1),
        "front end while the job runs: {row:?}"
    );

    doomed.kill();
    let status = second.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{}", second.describe());
    assert_eq!(jobs_run(&second), vec!["payload-x".to_owned()]);
    let client_status = client.wait_exit(Duration::from_secs(15));
    assert!(client_status.success(), "{}", client.describe());
    let lines: Vec<String> = client.stdout().lines().map(str::to_owned).collect();
    let completes: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("complete "))
        .collect();
    assert_eq!(
        completes,
        vec!["complete x-daolyap"],
        "the front-end client must see the job complete exactly once\n{}",
        client.describe()
    );
    assert!(
        !lines
            .iter()
            .any(|l| l == "fail" || l.starts_with("exception ")),
        "{}",
        client.describe()
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("rc=0"),
        "{}",
        client.describe()
    );
    wait_queues_empty(
        "the front end to be empty",
        &[fe.port()],
        function,
        Duration::from_secs(5),
    );
}
