//! gear's admin client.

use super::*;

/// gear's StatusAdminRequest, ShowJobsAdminRequest, WorkersAdminRequest and
/// CancelJobAdminRequest, as a gear user reads `request.response`: queued counts per
/// function, the queued handles, the idle worker with its function (and gear's own
/// connection), `OK` for a cancelled job (which then never runs) and
/// `ERR UNKNOWN_JOB` for an unknown handle.
pub(crate) fn gear_admin_status_workers_cancel(kind: ServerKind) {
    let srv = TestServer::start(kind);
    assert_eq!(gear_admin_ok(&srv, &["status"]), ".\n");

    let h1 = submit_background(&srv, Lang::Python, "ga_q", "q1").unwrap();
    let h2 = submit_background(&srv, Lang::Python, "ga_q", "q2").unwrap();
    let h3 = submit_background(&srv, Lang::Php, "ga_other", "o1").unwrap();
    assert_eq!(
        parse_counts(&gear_admin_ok(&srv, &["status"]), 3),
        counts(&[("ga_q", &[2, 0, 0]), ("ga_other", &[1, 0, 0])])
    );
    assert_eq!(
        parse_counts(&gear_admin_ok(&srv, &["show_jobs"]), 3),
        counts(&[(&h1, &[0, 0, 1]), (&h2, &[0, 0, 1]), (&h3, &[0, 0, 1])])
    );

    // An idle gear worker for ga_idle is listed with its function.
    let idle_out = srv.dir().join("idle.out");
    let mut idle = spawn_worker(&srv, Lang::Python, "ga_idle", "reverse", 1, &idle_out);
    wait_until("the gear worker to register", SETTLE, || {
        let got = parse_counts(&gear_admin_ok(&srv, &["status"]), 3);
        if got.get("ga_idle") == Some(&vec![0, 0, 1]) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
    let mut workers = parse_workers(&gear_admin_ok(&srv, &["workers"]));
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        workers,
        vec![
            WorkerLine {
                ip: HOST.to_owned(),
                id: "-".to_owned(),
                functions: vec![],
            },
            WorkerLine {
                ip: HOST.to_owned(),
                id: "protocol-tests-gear-worker".to_owned(),
                functions: vec!["ga_idle".to_owned()],
            },
        ]
    );
    assert_eq!(
        submit_foreground(&srv, Lang::Cli, "ga_idle", "idle job"),
        "boj eldi"
    );
    assert_worker_exits_ok(&mut idle);

    // Cancel q1; an unknown handle is an error line.
    assert_eq!(gear_admin_ok(&srv, &["cancel", &h1]), "OK\r\n");
    assert_eq!(
        gear_admin_ok(&srv, &["cancel", &format!("{h2}999")]),
        "ERR UNKNOWN_JOB\r\n"
    );

    // A pygearman worker now gets only q2.
    let out_file = srv.dir().join("worker.out");
    let mut w = spawn_worker(&srv, Lang::Pygearman, "ga_q", "reverse", 1, &out_file);
    wait_for_file_line(&out_file, "done q2");
    assert_worker_exits_ok(&mut w);
    assert_eq!(read_file(&out_file), "started q2\ndone q2\n");
    wait_until("ga_q to be empty", SETTLE, || {
        let got = parse_counts(&gear_admin_ok(&srv, &["status"]), 3);
        let want = counts(&[
            ("ga_q", &[0, 0, 0]),
            ("ga_other", &[1, 0, 0]),
            ("ga_idle", &[0, 0, 0]),
        ]);
        if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}\nexpected: {want:?}"))
        }
    });
}
