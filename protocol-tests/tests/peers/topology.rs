//! Aggregators pulling from aggregators: a two-server cycle, a three-level
//! chain.

use super::*;

/// Sockets (any state, TIME_WAIT included) whose local or remote port is
/// `port`, from /proc/net/tcp: how many connections a server has seen lately.
fn sockets_on(port: u16) -> usize {
    let hex = format!(":{port:04X}");
    protocol_tests::read_file(std::path::Path::new("/proc/net/tcp"))
        .lines()
        .skip(1)
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 2 && (cols[1].ends_with(&hex) || cols[2].ends_with(&hex))
        })
        .count()
}

#[test]
fn two_server_cycle_runs_each_job_once_and_does_not_bounce() {
    let function = "peers_cycle";
    let (port_a, port_b) = (free_port(), free_port());
    let addr_a = format!("127.0.0.1:{port_a}");
    let addr_b = format!("127.0.0.1:{port_b}");
    let a = Node::gearboxd_on(
        "cycle-A",
        port_a,
        &agg_args(std::slice::from_ref(&addr_b), &["--server-id", "cycA"]),
    );
    let b = Node::gearboxd_on(
        "cycle-B",
        port_b,
        &agg_args(std::slice::from_ref(&addr_a), &["--server-id", "cycB"]),
    );
    let mut w = gear_worker(
        a.dir(),
        "cycle-worker-on-A",
        a.port(),
        function,
        "reverse",
        0,
        40,
        None,
    );
    wait_ready(&mut w);
    // A pulls from B once its link is up.
    wait_until("A's link to B to register", Duration::from_secs(10), || {
        let row = fn_status(b.port(), function)?;
        if row.workers >= 1 {
            Ok(())
        } else {
            Err(format!("{row:?}"))
        }
    });
    std::thread::sleep(Duration::from_millis(300));

    let on_a = payloads("onA", 100);
    let on_b = payloads("onB", 100);
    submit_background(a.port(), function, &on_a);
    submit_background(b.port(), function, &on_b);
    let expected = set(&[on_a, on_b]);
    let took = wait_all_ran(
        "every job of the cycle to run",
        &[&w],
        &expected,
        Duration::from_secs(20),
    );
    wait_queues_empty(
        "both queues of the cycle to be empty",
        &[a.port(), b.port()],
        function,
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(300));
    let ran = runs(&[&w]);

    // After convergence: B pulls nothing from A for A. Watch B's row for A
    // for 1.5 s, and how many connections A sees meanwhile.
    let sockets_before = sockets_on(port_a);
    let mut samples: Vec<PeerRow> = Vec::new();
    let watch_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < watch_until {
        samples.push(peer_row(b.port(), &addr_a).expect("B's peers row for A"));
        std::thread::sleep(Duration::from_millis(25));
    }
    let sockets_after = sockets_on(port_a);
    // Who is connected where, a few times: the links' client ids.
    let mut listings = Vec::new();
    for _ in 0..4 {
        let on_a = admin_listing(a.port(), "workers").unwrap_or_else(|e| vec![e]);
        let on_b = admin_listing(b.port(), "workers").unwrap_or_else(|e| vec![e]);
        listings.push(format!("A: {on_a:?}\n    B: {on_b:?}"));
        std::thread::sleep(Duration::from_millis(40));
    }
    let changes = samples
        .windows(2)
        .filter(|w| w[0].state != w[1].state)
        .count();
    let states: BTreeSet<&str> = samples.iter().map(|r| r.state.as_str()).collect();
    let a_rows = peers(a.port()).expect("A's peers");
    eprintln!(
        "[cycle] 200 jobs ran in {}; B's row for A over 1.5 s: states {states:?}, {changes} \
         state changes in {} samples, last {:?}; sockets on A's port {sockets_before} → \
         {sockets_after}; A's rows {a_rows:?}; `workers` on A and B:\n    {}",
        secs(took),
        samples.len(),
        samples.last(),
        listings.join("\n    ")
    );

    let mut problems = Vec::new();
    let dups = duplicates(&ran);
    if !dups.is_empty() {
        problems.push(format!("jobs run more than once: {dups:?}"));
    }
    let bad: Vec<&PeerRow> = samples
        .iter()
        .filter(|r| r.state != "idle" && r.pulled != 0)
        .collect();
    if !bad.is_empty() {
        problems.push(format!(
            "B's row for A neither idle nor pulled 0 (B pulled A's jobs for A) in {} of {} \
             samples, e.g. {:?}",
            bad.len(),
            samples.len(),
            bad[0]
        ));
    }
    if changes > 1 {
        problems.push(format!(
            "B's links to A never settle: {changes} state changes in 1.5 s ({states:?}), \
             {} sockets on A's port afterwards ({sockets_before} before)",
            sockets_after
        ));
    }
    assert!(
        problems.is_empty(),
        "two-server cycle:\n  {}",
        problems.join("\n  ")
    );
    assert_exactly_once("cycle", &ran, &expected);
}

#[test]
fn three_level_chain_runs_every_front_end_job_once() {
    let function = "peers_chain";
    let fe1 = Node::gearmand("chain-fe1");
    let fe2 = Node::gearmand("chain-fe2");
    let regional = aggregator(
        "chain-regional",
        &[fe1.addr(), fe2.addr()],
        &["--server-id", "regional"],
    );
    let central = aggregator(
        "chain-central",
        &[regional.addr()],
        &["--server-id", "central"],
    );
    let mut w = gear_worker(
        central.dir(),
        "chain-worker",
        central.port(),
        function,
        "reverse",
        0,
        40,
        None,
    );
    wait_ready(&mut w);
    let p1 = payloads("chain1", 150);
    let p2 = payloads("chain2", 150);
    submit_background(fe1.port(), function, &p1);
    submit_background(fe2.port(), function, &p2);
    let expected = set(&[p1, p2]);
    let took = wait_all_ran(
        "every front-end job to run on the central worker",
        &[&w],
        &expected,
        Duration::from_secs(30),
    );
    wait_queues_empty(
        "every queue of the chain to be empty",
        &[fe1.port(), fe2.port(), regional.port(), central.port()],
        function,
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(200));
    let regional_rows = peers(regional.port()).expect("regional peers");
    let central_rows = peers(central.port()).expect("central peers");
    eprintln!(
        "[chain] 300 jobs through two aggregators in {}; regional {regional_rows:?}; \
         central {central_rows:?}",
        secs(took)
    );
    assert_exactly_once("chain", &runs(&[&w]), &expected);
    let pulled_regional: Vec<u64> = regional_rows.iter().map(|r| r.pulled).collect();
    assert_eq!(
        pulled_regional,
        vec![150, 150],
        "the regional aggregator pulls each front-end job once: {regional_rows:?}"
    );
    assert_eq!(
        central_rows.iter().map(|r| r.pulled).collect::<Vec<_>>(),
        vec![300],
        "the central aggregator pulls each job once: {central_rows:?}"
    );
}
