//! The `gearbox` binary against real servers (gearmand and gearboxd).

use protocol_tests::{run, BackgroundProcess, OutputExt, ServerKind, TestServer, HOST};
use std::process::Output;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn gearbox(server: &TestServer, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let addr = server.addr();
    let mut full = vec!["--server", addr.as_str()];
    full.extend_from_slice(args);
    run(env!("CARGO_BIN_EXE_gearbox"), &full, stdin, WAIT)
}

fn gearman_worker(
    server: &TestServer,
    label: &str,
    function: &str,
    command: &[&str],
) -> BackgroundProcess {
    let port = server.port_str();
    let mut args = vec!["-w", "-h", HOST, "-p", port.as_str(), "-f", function, "--"];
    args.extend_from_slice(command);
    BackgroundProcess::spawn(label, "gearman", &args, server.dir())
}

macro_rules! against_both {
    ($($name:ident),* $(,)?) => {
        mod gearmand {
            $( #[test] fn $name() { super::$name(protocol_tests::ServerKind::Gearmand) } )*
        }
        mod gearboxd {
            $( #[test] fn $name() { super::$name(protocol_tests::ServerKind::Gearboxd) } )*
        }
    };
}

against_both!(
    submit_foreground_from_argument_and_stdin,
    submit_failure_and_timeout_exit_non_zero,
    submit_background_prints_the_handle,
    admin_output_matches_gearadmin,
    admin_errors_and_extra_commands,
    work_runs_jobs_from_two_servers,
    work_fails_jobs_whose_command_fails,
);

fn submit_foreground_from_argument_and_stdin(kind: ServerKind) {
    let server = TestServer::start(kind);
    let _worker = gearman_worker(&server, "upper", "upper", &["tr", "a-z", "A-Z"]);
    let out = gearbox(&server, &["submit", "-f", "upper", "hello"], None);
    out.assert_success("submit with an argument");
    assert_eq!(out.stdout_str(), "HELLO");

    let out = gearbox(
        &server,
        &["submit", "-f", "upper", "--priority", "high"],
        Some(b"from stdin\n"),
    );
    out.assert_success("submit from stdin");
    assert_eq!(out.stdout_str(), "FROM STDIN\n");

    let out = gearbox(
        &server,
        &["submit", "-f", "upper", "-u", "uniq-1", "-v", "x"],
        None,
    );
    out.assert_success("submit with a unique");
    assert_eq!(out.stdout_str(), "X");
    assert!(
        out.stderr_str()
            .contains(&format!("server: {}", server.addr())),
        "{}",
        out.describe()
    );
}

fn submit_failure_and_timeout_exit_non_zero(kind: ServerKind) {
    let server = TestServer::start(kind);
    let _worker = gearman_worker(&server, "failer", "failer", &["false"]);
    let out = gearbox(&server, &["submit", "-f", "failer", "x"], None);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(out.stderr_str().contains("failed"), "{}", out.describe());

    // Nobody does `nobody`: the job deadline ends the wait.
    let out = gearbox(
        &server,
        &["submit", "-f", "nobody", "--timeout", "0.5", "x"],
        None,
    );
    assert_eq!(out.status.code(), Some(3), "{}", out.describe());
    assert!(out.stderr_str().contains("timed out"), "{}", out.describe());

    // No server at all.
    let port = protocol_tests::free_port().to_string();
    let nowhere = format!("{HOST}:{port}");
    let out = run(
        env!("CARGO_BIN_EXE_gearbox"),
        &["submit", "--server", &nowhere, "-f", "x", "y"],
        None,
        WAIT,
    );
    assert_eq!(out.status.code(), Some(4), "{}", out.describe());
    assert!(
        out.stderr_str().contains("no job server available"),
        "{}",
        out.describe()
    );
}

fn submit_background_prints_the_handle(kind: ServerKind) {
    let server = TestServer::start(kind);
    let out = gearbox(
        &server,
        &[
            "submit", "-b", "-f", "later", "-p", "low", "-u", "bg-u", "data",
        ],
        None,
    );
    out.assert_success("background submit");
    let handle = out.stdout_str().trim_end().to_string();
    assert!(handle.contains(':') && !handle.contains('\n'), "{handle:?}");

    let jobs = gearbox(&server, &["admin", "show-jobs"], None);
    jobs.assert_success("show-jobs");
    assert!(
        jobs.stdout_str()
            .lines()
            .any(|l| l.starts_with(&format!("{handle}\t"))),
        "{}",
        jobs.describe()
    );

    let st = gearbox(&server, &["status", &handle], None);
    st.assert_success("status");
    assert_eq!(
        st.stdout_str(),
        format!("{}\tknown=1\trunning=0\t0/0\n", server.addr())
    );
    let st = gearbox(&server, &["status", "--unique", "bg-u"], None);
    st.assert_success("status --unique");
    assert_eq!(
        st.stdout_str(),
        format!("{}\tknown=1\trunning=0\t0/0\tclients=0\n", server.addr())
    );

    // An epoch job in the future waits, counted as NORMAL.
    let out = gearbox(
        &server,
        &["submit", "-f", "timed", "--epoch", "+3600", "e"],
        None,
    );
    out.assert_success("epoch submit");
    let prio = gearbox(&server, &["admin", "prioritystatus"], None);
    assert!(
        prio.stdout_str().lines().any(|l| l == "timed\t0\t1\t0\t0"),
        "{}",
        prio.describe()
    );
    assert!(
        prio.stdout_str().lines().any(|l| l == "later\t0\t0\t1\t0"),
        "{}",
        prio.describe()
    );
}

fn admin_output_matches_gearadmin(kind: ServerKind) {
    let server = TestServer::start(kind);
    for f in ["made1", "made2"] {
        gearbox(&server, &["admin", "create-function", f], None).assert_success("create-function");
    }
    gearbox(
        &server,
        &["submit", "-b", "-f", "queued", "-u", "q1", "x"],
        None,
    )
    .assert_success("bg");
    gearbox(
        &server,
        &["submit", "-b", "-f", "queued", "-p", "high", "y"],
        None,
    )
    .assert_success("bg");
    let port = server.port_str();
    for (ours, theirs) in [
        (vec!["status"], vec!["--status"]),
        (vec!["prioritystatus"], vec!["--priority-status"]),
        (vec!["show-jobs"], vec!["--show-jobs"]),
        (vec!["show-unique-jobs"], vec!["--show-unique-jobs"]),
        (vec!["version"], vec!["--server-version"]),
        (vec!["verbose"], vec!["--server-verbose"]),
        (vec!["getpid"], vec!["--getpid"]),
        (
            vec!["drop-function", "made1"],
            vec!["--drop-function", "made2"],
        ),
        (
            vec!["create-function", "made1"],
            vec!["--create-function", "made2"],
        ),
    ] {
        let mut args = vec!["admin"];
        args.extend_from_slice(&ours);
        let ours_out = gearbox(&server, &args, None);
        let mut args = vec!["-h", HOST, "-p", port.as_str()];
        args.extend_from_slice(&theirs);
        let theirs_out = run("gearadmin", &args, None, WAIT);
        ours_out.assert_success(&ours.join(" "));
        theirs_out.assert_success(&theirs.join(" "));
        assert_eq!(
            ours_out.stdout_str(),
            theirs_out.stdout_str(),
            "{ours:?} vs gearadmin {theirs:?}"
        );
    }
    let pid = gearbox(&server, &["admin", "getpid"], None);
    assert_eq!(pid.stdout_str().trim(), server.pid().to_string());
    let status = gearbox(&server, &["admin", "status"], None).stdout_str();
    assert!(
        status.ends_with("\n.\n") && status.contains("queued\t2\t0\t0\n"),
        "{status:?}"
    );
}

fn admin_errors_and_extra_commands(kind: ServerKind) {
    let mut server = TestServer::start(kind);
    // workers: one line per connection, ours included, then `.`.
    let _worker = {
        let addr = server.addr();
        BackgroundProcess::spawn(
            "worker",
            env!("CARGO_BIN_EXE_gearbox"),
            &[
                "work",
                "--server",
                &addr,
                "-f",
                "wf",
                "--client-id",
                "cli-worker",
                "--",
                "cat",
            ],
            server.dir(),
        )
    };
    let workers = protocol_tests::wait_until("the worker to register", WAIT, || {
        let out = gearbox(&server, &["admin", "workers"], None);
        let text = out.stdout_str();
        if text.lines().any(|l| l.ends_with("cli-worker : wf")) {
            Ok(text)
        } else {
            Err(out.describe())
        }
    });
    assert!(workers.ends_with("\n.\n"), "{workers:?}");

    let out = gearbox(&server, &["admin", "cancel-job", "H:none:1"], None);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert_eq!(out.stderr_str(), "Error: UNKNOWN_JOB\n");
    assert_eq!(out.stdout_str(), "");

    let out = gearbox(&server, &["admin", "maxqueue", "wf", "5"], None);
    out.assert_success("maxqueue");
    assert_eq!(out.stdout_str(), "OK\n");
    let out = gearbox(&server, &["admin", "maxqueue", "wf", "1", "2", "3"], None);
    out.assert_success("maxqueue per priority");

    let out = gearbox(&server, &["admin", "cancel-job", "two words"], None);
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());

    let out = gearbox(&server, &["admin", "shutdown", "--graceful"], None);
    match kind {
        ServerKind::Gearboxd => {
            out.assert_success("shutdown graceful");
            assert_eq!(out.stdout_str(), "OK\n");
            protocol_tests::wait_until("gearboxd to exit", WAIT, || {
                if server.is_running() {
                    Err("still running".into())
                } else {
                    Ok(())
                }
            });
        }
        ServerKind::Gearmand => {
            // Removed from gearmand in 1.1.15: the server's ERR is passed on.
            assert_eq!(out.status.code(), Some(1), "{}", out.describe());
            assert!(
                out.stderr_str().starts_with("Error: UNKNOWN_COMMAND"),
                "{}",
                out.describe()
            );
        }
    }
}

fn work_runs_jobs_from_two_servers(kind: ServerKind) {
    let a = TestServer::start(kind);
    let b = TestServer::start(kind);
    let (addr_a, addr_b) = (a.addr(), b.addr());
    let mut worker = BackgroundProcess::spawn(
        "work",
        env!("CARGO_BIN_EXE_gearbox"),
        &[
            "work",
            "-s",
            &addr_a,
            "-s",
            &addr_b,
            "-f",
            "up",
            "-f",
            "up2",
            "--concurrency",
            "2",
            "-n",
            "4",
            "--",
            "tr",
            "a-z",
            "A-Z",
        ],
        a.dir(),
    );
    for (server, payload, function) in [
        (&a, "a1", "up"),
        (&b, "b1", "up"),
        (&a, "a2", "up2"),
        (&b, "b2", "up2"),
    ] {
        let out = gearbox(server, &["submit", "-f", function, payload], None);
        out.assert_success("submit to the worker");
        assert_eq!(out.stdout_str(), payload.to_uppercase());
    }
    let status = worker.wait_exit(WAIT);
    assert!(status.success(), "{}", worker.describe());
    let stdout = worker.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", worker.describe());
    for addr in [&addr_a, &addr_b] {
        let from = lines
            .iter()
            .filter(|l| l.starts_with(&format!("server={addr} ")))
            .count();
        assert_eq!(from, 2, "two jobs from {addr}:\n{stdout}");
    }
    assert!(
        lines.iter().all(|l| l.contains(" complete bytes=2")),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.contains(" function=up2 ")),
        "{stdout}"
    );
}

fn work_fails_jobs_whose_command_fails(kind: ServerKind) {
    let server = TestServer::start(kind);
    let addr = server.addr();
    let mut worker = BackgroundProcess::spawn(
        "work",
        env!("CARGO_BIN_EXE_gearbox"),
        &[
            "work",
            "-s",
            &addr,
            "-f",
            "check",
            "-n",
            "2",
            "--",
            "sh",
            "-c",
            "v=$(cat); [ \"$v\" = good ] && printf ok",
        ],
        server.dir(),
    );
    let out = gearbox(&server, &["submit", "-f", "check", "good"], None);
    out.assert_success("good payload");
    assert_eq!(out.stdout_str(), "ok");
    let out = gearbox(&server, &["submit", "-f", "check", "bad"], None);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(worker.wait_exit(WAIT).success(), "{}", worker.describe());
    let stdout = worker.stdout();
    assert!(
        stdout
            .lines()
            .next()
            .unwrap_or("")
            .contains(" complete bytes=2"),
        "{stdout}"
    );
    assert!(
        stdout.lines().nth(1).unwrap_or("").contains(" fail "),
        "{stdout}"
    );
}

#[test]
fn unix_socket_submit_and_admin_on_gearboxd() {
    let dir = protocol_tests::unique_temp_dir("cli-unix");
    let path = dir.join("g.sock");
    let server =
        TestServer::start_with_args(ServerKind::Gearboxd, &["--unix", path.to_str().unwrap()]);
    let _worker = gearman_worker(&server, "upper", "upper", &["tr", "a-z", "A-Z"]);
    let unix = format!("unix:{}", path.display());
    let out = run(
        env!("CARGO_BIN_EXE_gearbox"),
        &["-s", &unix, "submit", "-f", "upper", "sock"],
        None,
        WAIT,
    );
    out.assert_success("submit over unix");
    assert_eq!(out.stdout_str(), "SOCK");
    let out = run(
        env!("CARGO_BIN_EXE_gearbox"),
        &["-s", &unix, "admin", "version"],
        None,
        WAIT,
    );
    out.assert_success("admin over unix");
    assert!(
        out.stdout_str().starts_with("gearbox-"),
        "{}",
        out.describe()
    );
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}
