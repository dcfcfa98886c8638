//! One server per queue file.

use super::*;

/// A second gearboxd on a file a running one owns exits non-zero at once,
/// naming the file and the owner's pid; the first goes on acknowledging, and
/// every job it acknowledged, before and after, survives a restart.
#[test]
fn a_second_server_on_the_file_exits_naming_the_first() {
    let file = SqliteFile::new("second-server");
    let mut first = start_info(&file);
    let addr = first.addr();
    let mut conn = Conn::connect(&addr).expect("connect");
    let mut acked = Vec::new();
    for i in 0..20 {
        let payload = format!("first-before-{i}");
        submit_acked(&mut conn, &payload);
        acked.push(payload);
    }

    let second = start_expecting_exit(&[], &file.server_args(), Duration::from_secs(10));
    let stderr = second.1.clone();
    assert_refused_start("a second server on the file", &file.path, second);
    let owner = format!("process {}", first.pid());
    assert!(
        stderr.contains(&owner),
        "the message does not name the owner ({owner}):\n{stderr}"
    );

    for i in 0..20 {
        let payload = format!("first-after-{i}");
        submit_acked(&mut conn, &payload);
        acked.push(payload);
    }
    let mut fresh = Conn::connect(&addr).expect("connect");
    let probe = submit_with_echo(&mut fresh, FN, "first-probe", ANSWER_BOUND);
    assert!(
        probe.acked() && probe.answered_within(ANSWER_BOUND),
        "{probe:?}"
    );
    acked.push(probe.payload);

    terminate_server(&mut first);
    let ran = recover_jobs(&file, FN);
    let verdict = Verdict::of(&acked, &[], &ran);
    println!(
        "[store_safety second server] acknowledged {}, recovered {}, lost {}",
        acked.len(),
        verdict.recovered,
        verdict.lost.len()
    );
    assert!(verdict.clean(), "{verdict:?}");
    assert_eq!(verdict.recovered, acked.len());
}

/// Two gearboxds started at the same moment on one file (a new one, then one
/// with a job in it, twice each): exactly one exits, naming the file and the
/// other's pid; the other serves, and the file holds what it acknowledged.
#[test]
fn two_servers_started_together_one_serves() {
    let mut winners = Vec::new();
    for round in 0..4 {
        let file = SqliteFile::new(&format!("together-{round}"));
        let mut acked = Vec::new();
        if round % 2 == 1 {
            let mut seed = start_info(&file);
            let mut conn = Conn::connect(&seed.addr()).expect("connect");
            let payload = format!("seed-{round}");
            submit_acked(&mut conn, &payload);
            acked.push(payload);
            terminate_server(&mut seed);
        }
        let args = file.server_args();
        let mut pair = [Spawned::start(&[], &args), Spawned::start(&[], &args)];
        let first_exit = wait_until(
            "one of the two servers to exit",
            Duration::from_secs(10),
            || match pair.iter_mut().any(|s| s.exited().is_some()) {
                true => Ok(pair[0].started.elapsed()),
                false => Err(format!(
                    "both run:\n{}\n---\n{}",
                    pair[0].stderr(),
                    pair[1].stderr()
                )),
            },
        );
        let lost_race = usize::from(pair[0].exited().is_none());
        let [a, b] = pair;
        let (mut loser, mut winner) = match lost_race {
            0 => (a, b),
            _ => (b, a),
        };
        wait_until(
            "the other server to accept connections",
            Duration::from_secs(10),
            || match (winner.accepting(), winner.exited()) {
                (true, _) => Ok(()),
                (false, Some(status)) => panic!(
                    "round {round}: both servers exited; the second with {status}:\n{}\n---\n{}",
                    loser.stderr(),
                    winner.stderr()
                ),
                (false, None) => Err(winner.stderr()),
            },
        );
        let status = loser.exited().expect("exited");
        let stderr = loser.stderr();
        assert!(
            !status.success(),
            "round {round}: loser exited with {status}:\n{stderr}"
        );
        assert!(
            first_exit <= EXIT_WITHIN,
            "round {round}: the loser took {first_exit:?} to exit"
        );
        assert!(
            stderr.contains(&file.path_str()),
            "round {round}: the message does not name the file:\n{stderr}"
        );
        let owner = format!("process {}", winner.pid());
        assert!(
            stderr.contains(&owner),
            "round {round}: the message does not name the winner ({owner}):\n{stderr}"
        );
        let mut conn = Conn::connect(&winner.addr()).expect("connect to the winner");
        for i in 0..10 {
            let payload = format!("together-{round}-{i}");
            submit_acked(&mut conn, &payload);
            acked.push(payload);
        }
        thread::sleep(Duration::from_millis(500));
        assert!(
            winner.exited().is_none(),
            "round {round}: the winner exited:\n{}",
            winner.stderr()
        );
        if round == 0 {
            println!(
                "[store_safety together] the loser said: {}",
                message_line(&stderr)
            );
        }
        let stopped = winner.terminate();
        assert!(
            stopped.is_some_and(|s| s.success()),
            "round {round}: the winner's clean stop: {stopped:?}"
        );
        drop(loser);
        let ran = recover_jobs(&file, FN);
        let verdict = Verdict::of(&acked, &[], &ran);
        assert!(verdict.clean(), "round {round}: {verdict:?}");
        assert_eq!(verdict.recovered, acked.len(), "round {round}");
        winners.push(match lost_race {
            0 => "second",
            _ => "first",
        });
    }
    println!("[store_safety together] started first / second won: {winners:?}");
}
