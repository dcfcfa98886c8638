//! What a front end's clients see of a worker behind the aggregator.

use super::*;
use protocol_tests::{client_script, run, OutputExt, HOST, RUN_TIMEOUT};
use std::process::Output;

const CHUNKS: &str = "peers_chunks";
const TIMED: &str = "peers_timed";

/// `created <handle>` → `created <handle>` (handles differ between servers).
fn normalise(out: &Output) -> Vec<String> {
    out.stdout_str()
        .lines()
        .map(|l| {
            if l.starts_with("created ") {
                "created <handle>".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect()
}

/// Runs the foreground clients against `fe` (whose only worker for
/// [`CHUNKS`] runs in `chunks` mode somewhere): PHP addTask/runTasks with
/// every callback, PHP doNormal, the gearman CLI. Returns what each showed.
fn foreground_views(fe: &Node) -> Vec<(String, Vec<String>)> {
    let port = fe.port_str();
    let php = client_script("php_client.php");
    let tasks = run(
        "php",
        &[&php, HOST, &port, "tasks", CHUNKS, "hello"],
        None,
        RUN_TIMEOUT,
    );
    tasks.assert_success("php addTask/runTasks");
    let normal = run(
        "php",
        &[&php, HOST, &port, "normal", CHUNKS, "world"],
        None,
        RUN_TIMEOUT,
    );
    normal.assert_success("php doNormal");
    let cli = run(
        "gearman",
        &["-h", HOST, "-p", &port, "-f", CHUNKS, "cli"],
        None,
        RUN_TIMEOUT,
    );
    cli.assert_success("gearman CLI client");
    vec![
        ("php tasks".to_owned(), normalise(&tasks)),
        ("php doNormal".to_owned(), normalise(&normal)),
        ("gearman cli stdout".to_owned(), normalise(&cli)),
        (
            "gearman cli stderr".to_owned(),
            cli.stderr_str().lines().map(str::to_owned).collect(),
        ),
    ]
}

#[test]
fn foreground_client_sees_data_warnings_status_and_result_as_if_direct() {
    // Direct: the worker on the front end itself.
    let direct = {
        let fe = Node::gearmand("relay-direct-fe");
        let mut w = gear_worker(
            fe.dir(),
            "relay-direct-worker",
            fe.port(),
            CHUNKS,
            "chunks",
            3,
            30,
            None,
        );
        wait_ready(&mut w);
        let views = foreground_views(&fe);
        assert!(
            w.wait_exit(Duration::from_secs(15)).success(),
            "{}",
            w.describe()
        );
        views
    };
    // Through the aggregator: the front end's only worker is behind it.
    let fe = Node::gearmand("relay-fe");
    let agg = aggregator("relay-agg", &[fe.addr()], &[]);
    let mut w = gear_worker(
        agg.dir(),
        "relay-agg-worker",
        agg.port(),
        CHUNKS,
        "chunks",
        3,
        30,
        None,
    );
    wait_ready(&mut w);
    wait_until(
        "the aggregator's link to register on the front end",
        Duration::from_secs(10),
        || {
            let row = fn_status(fe.port(), CHUNKS)?;
            if row.workers >= 1 {
                Ok(())
            } else {
                Err(format!("{row:?}"))
            }
        },
    );
    let relayed = foreground_views(&fe);
    assert!(
        w.wait_exit(Duration::from_secs(15)).success(),
        "{}",
        w.describe()
    );
    eprintln!("[relay] direct: {direct:#?}\n[relay] through the aggregator: {relayed:#?}");

    // What a direct connection gives (as the real_clients tests establish).
    let expected_tasks: Vec<String> = [
        "created <handle>",
        "status 1/4",
        "data chunk1:",
        "warning warn:hello",
        "data chunk2:",
        "status 4/4",
        "complete final:hello",
        "run_tasks=true",
        "rc=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(direct[0].1, expected_tasks, "direct php tasks");
    assert_eq!(
        direct[1].1,
        vec![
            "result=chunk1:chunk2:final:world".to_owned(),
            "rc=0".to_owned()
        ],
        "direct php doNormal"
    );
    for ((what, d), (_, r)) in direct.iter().zip(&relayed) {
        assert_eq!(r, d, "{what}: through the aggregator vs direct");
    }
    // The worker behind the aggregator got local handles, not the front end's.
    let handles: Vec<String> = job_lines(&w.stdout()).into_iter().map(|(h, _)| h).collect();
    assert_eq!(handles.len(), 3, "{}", w.describe());
    wait_queues_empty(
        "the front end to be empty",
        &[fe.port()],
        CHUNKS,
        Duration::from_secs(5),
    );
}

#[test]
fn can_do_timeout_propagates_to_the_front_end() {
    let fe = Node::gearmand("timeout-fe");
    let agg = aggregator("timeout-agg", &[fe.addr()], &[]);
    let out = agg.dir().join("php-worker.out");
    let php = client_script("php_timeout_worker.php");
    let agg_port = agg.port_str();
    let out_s = out.to_string_lossy().into_owned();
    // Timeout 1000 ms; each job takes 5 s; two jobs at most, 12 s at most.
    let mut slow = BackgroundProcess::spawn(
        "timeout-php-worker",
        "php",
        &[
            &php, HOST, &agg_port, TIMED, "1000", "5000", "2", "12", &out_s,
        ],
        agg.dir(),
    );
    slow.wait_for_line("ready", Duration::from_secs(10));
    wait_until(
        "the aggregator's link to register on the front end",
        Duration::from_secs(10),
        || {
            let row = fn_status(fe.port(), TIMED)?;
            if row.workers >= 1 {
                Ok(())
            } else {
                Err(format!("{row:?}"))
            }
        },
    );

    submit_background(fe.port(), TIMED, &["slow-1".to_owned()]);
    let started = wait_until(
        "the PHP worker behind the aggregator to start the job",
        Duration::from_secs(10),
        || {
            if file_lines_with(&out, "started ").contains(&"slow-1".to_owned()) {
                Ok(Instant::now())
            } else {
                Err(slow.describe())
            }
        },
    );
    // The front end's own timer (CAN_DO_TIMEOUT from the link) re-queues it:
    // queued again, not running, long before the 5 s job ends.
    let requeued = wait_until(
        "the front end to re-queue the timed-out job",
        Duration::from_secs(4),
        || {
            let row = fn_status(fe.port(), TIMED)?;
            if row.total == 1 && row.running == 0 {
                Ok(started.elapsed())
            } else {
                Err(format!("{row:?}"))
            }
        },
    );
    eprintln!(
        "[timeout] front end re-queued the job {} after the worker started it",
        secs(requeued)
    );
    assert!(
        requeued >= Duration::from_millis(700),
        "re-queued after {requeued:?}, before the 1000 ms timeout could expire"
    );
    assert!(
        file_lines_with(&out, "done ").is_empty(),
        "the job was re-queued because it finished, not because it timed out"
    );
    // A worker connected to the front end directly now gets it.
    let mut direct = gear_worker(
        fe.dir(),
        "timeout-direct-worker",
        fe.port(),
        TIMED,
        "reverse",
        1,
        20,
        None,
    );
    let status = direct.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{}", direct.describe());
    assert_eq!(
        jobs_run(&direct),
        vec!["slow-1".to_owned()],
        "{}",
        direct.describe()
    );

    // The slow worker finishes its copy; the aggregator dropped it (the
    // front end re-queued it), so the PHP worker is not given it again.
    wait_until(
        "the PHP worker to finish the timed-out job",
        Duration::from_secs(8),
        || {
            if file_lines_with(&out, "done ").contains(&"slow-1".to_owned()) {
                Ok(())
            } else {
                Err(slow.describe())
            }
        },
    );
    std::thread::sleep(Duration::from_millis(700));
    let started_jobs = file_lines_with(&out, "started ");
    assert_eq!(
        started_jobs,
        vec!["slow-1".to_owned()],
        "the aggregator ran the timed-out job again\n{}",
        slow.describe()
    );
    slow.kill();
    wait_queues_empty(
        "the front end to be empty",
        &[fe.port()],
        TIMED,
        Duration::from_secs(5),
    );
}
