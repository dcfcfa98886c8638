//! Dead, silent and hung peers; a peer restarted on its port.

use super::*;

const FUNCTION: &str = "peers_bad";
/// Jobs per healthy peer in each timed drain.
const HEALTHY_JOBS: usize = 200;

/// Submits [`HEALTHY_JOBS`] jobs on each healthy peer while `worker` (on the
/// aggregator) runs, and returns how long until it has run them all.
fn timed_drain(
    label: &str,
    healthy: &[&Node],
    worker: &BackgroundProcess,
) -> (Duration, BTreeSet<String>) {
    let started = Instant::now();
    let mut all = Vec::new();
    for (i, fe) in healthy.iter().enumerate() {
        let p = payloads(&format!("{label}{}", i + 1), HEALTHY_JOBS);
        submit_background(fe.port(), FUNCTION, &p);
        all.push(p);
    }
    let expected = set(&all);
    wait_all_ran(
        &format!("{label}: the healthy peers' jobs to run"),
        &[worker],
        &expected,
        Duration::from_secs(30),
    );
    (started.elapsed(), expected)
}

/// The rows a test expects to go bad: seen `cooling`, with a failure count
/// and a last error, at some poll.
fn wait_cooling(agg: &Node, addrs: &[(&str, String)]) -> BTreeMap<String, PeerRow> {
    let mut seen: BTreeMap<String, PeerRow> = BTreeMap::new();
    wait_until(
        "the dead, silent and hung peers to be shown cooling",
        Duration::from_secs(20),
        || {
            let rows = peers(agg.port())?;
            for (name, addr) in addrs {
                if let Some(r) = rows.iter().find(|r| &r.addr == addr) {
                    if r.state == "cooling" && r.failures >= 1 && r.last_error != "-" {
                        seen.entry(name.to_string()).or_insert_with(|| r.clone());
                    }
                }
            }
            if seen.len() == addrs.len() {
                Ok(())
            } else {
                Err(format!("cooling so far: {seen:?}\nrows now: {rows:#?}"))
            }
        },
    );
    seen
}

#[test]
fn dead_silent_and_hung_peers_cost_nothing_and_come_back() {
    let h1 = Node::gearmand("bad-healthy1");
    let h2 = Node::gearmand("bad-healthy2");
    let healthy = [&h1, &h2];

    // Without bad peers: the reference drain time.
    let (baseline, _) = {
        let agg = aggregator("bad-agg-baseline", &[h1.addr(), h2.addr()], &[]);
        let mut w = gear_worker(
            agg.dir(),
            "bad-baseline-worker",
            agg.port(),
            FUNCTION,
            "reverse",
            0,
            60,
            None,
        );
        wait_ready(&mut w);
        let r = timed_drain("base", &healthy, &w);
        w.kill();
        r
    };
    wait_queues_empty(
        "the baseline drain to leave nothing behind",
        &[h1.port(), h2.port()],
        FUNCTION,
        Duration::from_secs(10),
    );

    let dead_port = free_port();
    let dead_addr = format!("127.0.0.1:{dead_port}");
    let mut silent = SilentPeer::start();
    let silent_addr = silent.addr();
    let mut hung = Node::gearmand("bad-hung");
    let bad = [
        ("dead", dead_addr.clone()),
        ("silent", silent_addr.clone()),
        ("hung", hung.addr()),
    ];
    // The bad peers first: a server that drained its peers in order would be
    // stuck behind them.
    let agg = aggregator(
        "bad-agg",
        &[
            dead_addr.clone(),
            silent_addr.clone(),
            hung.addr(),
            h1.addr(),
            h2.addr(),
        ],
        &[],
    );
    let mut w = gear_worker(
        agg.dir(),
        "bad-worker",
        agg.port(),
        FUNCTION,
        "reverse",
        0,
        90,
        None,
    );
    wait_ready(&mut w);

    // Hang the third peer while it is being pulled from: jobs queued there,
    // an upstream GRAB in flight or about to be sent.
    let hung_jobs = payloads("hung", 400);
    submit_background(hung.port(), FUNCTION, &hung_jobs);
    wait_until(
        "the aggregator to pull from the peer about to hang",
        Duration::from_secs(10),
        || {
            let n = jobs_run(&w)
                .iter()
                .filter(|p| p.starts_with("hung-"))
                .count();
            if n >= 1 {
                Ok(())
            } else {
                Err(w.describe())
            }
        },
    );
    hung.freeze();
    let frozen_at = Instant::now();
    let ran_before_freeze = jobs_run(&w)
        .iter()
        .filter(|p| p.starts_with("hung-"))
        .count();
    eprintln!("[bad peers] {ran_before_freeze} of 400 jobs of the hung peer ran before SIGSTOP");

    let (with_bad, healthy_expected) = timed_drain("bad", &healthy, &w);
    eprintln!(
        "[bad peers] drain of {} jobs on two healthy peers: {} without bad peers, {} with a \
         dead, a silent and a hung peer listed first",
        2 * HEALTHY_JOBS,
        secs(baseline),
        secs(with_bad)
    );

    let cooling = wait_cooling(&agg, &bad);
    eprintln!("[bad peers] rows seen cooling: {cooling:#?}");
    let rows = peers(agg.port()).expect("peers");
    for fe in healthy {
        let r = rows
            .iter()
            .find(|r| r.addr == fe.addr())
            .unwrap_or_else(|| panic!("no row for {}: {rows:?}", fe.addr()));
        assert_eq!(r.state, "up", "healthy peer {}: {rows:#?}", fe.addr());
        assert!(r.pulled >= HEALTHY_JOBS as u64, "{rows:#?}");
    }
    let jobs_hung_meanwhile = jobs_run(&w)
        .iter()
        .filter(|p| p.starts_with("hung-"))
        .count();
    assert!(
        jobs_hung_meanwhile < hung_jobs.len(),
        "all the hung peer's jobs ran although it was stopped ({} s ago): SIGSTOP came too \
         late to test anything",
        frozen_at.elapsed().as_secs()
    );

    // Bring them back: a server on the dead port, SIGCONT, and a real
    // gearmand in the silent listener's place.
    let back_at = Instant::now();
    let dead_back = Node::gearmand_on("bad-dead-back", dead_port);
    hung.thaw();
    silent.stop();
    let silent_back = Node::gearmand_on("bad-silent-back", silent.port());
    let mut back = Vec::new();
    for (node, name) in [
        (&dead_back, "back-dead"),
        (&silent_back, "back-silent"),
        (&hung, "back-hung"),
    ] {
        let p = payloads(name, 50);
        submit_background(node.port(), FUNCTION, &p);
        back.push(p);
    }
    back.push(hung_jobs.clone());
    let back_expected = set(&back);
    let took = wait_all_ran(
        "the jobs on the peers that came back to run",
        &[&w],
        &back_expected,
        Duration::from_secs(45),
    );
    eprintln!(
        "[bad peers] peers back: their {} jobs ran {} after the restart",
        back_expected.len(),
        secs(took)
    );
    let rows = wait_until(
        "the peers that came back to be shown up",
        Duration::from_secs(20),
        || {
            let rows = peers(agg.port())?;
            let all_up = rows.iter().all(|r| r.state == "up");
            if all_up {
                Ok(rows)
            } else {
                Err(format!("{rows:#?}"))
            }
        },
    );
    eprintln!(
        "[bad peers] all rows up {} after the restart: {rows:#?}",
        secs(back_at.elapsed())
    );
    let ports = [
        h1.port(),
        h2.port(),
        hung.port(),
        dead_back.port(),
        silent_back.port(),
    ];
    wait_queues_empty(
        "every peer's queue to be empty",
        &ports,
        FUNCTION,
        Duration::from_secs(15),
    );
    // Healthy peers' jobs: exactly once (nothing failed there). The hung
    // peer's job that was out when it froze may run twice (at least once).
    let ran = runs(&[&w]);
    let healthy_ran: BTreeMap<String, usize> = ran
        .iter()
        .filter(|(p, _)| healthy_expected.contains(*p))
        .map(|(p, &n)| (p.clone(), n))
        .collect();
    assert_exactly_once("healthy peers", &healthy_ran, &healthy_expected);
    let hung_dups = duplicates(
        &ran.iter()
            .filter(|(p, _)| p.starts_with("hung-"))
            .map(|(p, &n)| (p.clone(), n))
            .collect(),
    );
    eprintln!("[bad peers] hung peer's jobs run twice: {hung_dups:?}");
    assert!(
        hung_dups.len() <= 1,
        "one serial worker has at most one job of the hung peer out, yet {} ran twice: \
         {hung_dups:?}",
        hung_dups.len()
    );
}

#[test]
fn peer_restarted_on_its_port_gets_its_functions_again() {
    let fe = Node::gearmand("restart-fe");
    let port = fe.port();
    let agg = aggregator("restart-agg", &[fe.addr()], &[]);
    let mut w = gear_worker(
        agg.dir(),
        "restart-worker",
        agg.port(),
        FUNCTION,
        "reverse",
        0,
        60,
        None,
    );
    wait_ready(&mut w);
    let first = payloads("before", 20);
    submit_background(port, FUNCTION, &first);
    wait_all_ran(
        "jobs before the restart to run",
        &[&w],
        &set(std::slice::from_ref(&first)),
        Duration::from_secs(15),
    );

    drop(fe);
    let restarted_at = Instant::now();
    let fe = Node::gearmand_on("restart-fe-new", port);
    let registered = wait_until(
        "the restarted peer to see the aggregator's worker for the function",
        Duration::from_secs(20),
        || {
            let row = fn_status(port, FUNCTION)?;
            if row.workers >= 1 {
                Ok(restarted_at.elapsed())
            } else {
                Err(format!("status row {row:?}; peers {:?}", peers(agg.port())))
            }
        },
    );
    eprintln!(
        "[restart] function registered on the new peer {} after it started",
        secs(registered)
    );
    let second = payloads("after", 20);
    submit_background(port, FUNCTION, &second);
    wait_all_ran(
        "jobs after the restart to run",
        &[&w],
        &set(std::slice::from_ref(&second)),
        Duration::from_secs(15),
    );
    wait_queues_empty(
        "the restarted peer's queue to be empty",
        &[port],
        FUNCTION,
        Duration::from_secs(10),
    );
    assert_exactly_once("restart", &runs(&[&w]), &set(&[first, second]));
    let row = peer_row(agg.port(), &fe.addr()).expect("peers row");
    assert_eq!(row.state, "up", "{row:?}");
    assert!(row.pulled >= 40, "{row:?}");
    assert_ne!(
        row.last_error, "-",
        "the aggregator did not notice its peer go: {row:?}"
    );
}
