//! gearadmin (gearman-tools) against the admin protocol.

use super::*;

/// Runs gearadmin and checks it printed nothing on stderr and exited 0.
pub(crate) fn gearadmin_ok(srv: &TestServer, args: &[&str]) -> String {
    let out = gearadmin(srv, args);
    out.assert_success("gearadmin");
    assert_eq!(
        out.stderr_str(),
        "",
        "gearadmin {args:?} wrote to stderr\n{}",
        out.describe()
    );
    out.stdout_str()
}

/// Parses a listing that ends with a "." line, with rows of `name` followed by
/// `ncols` tab-separated numbers. Row order is not significant.
pub(crate) fn parse_counts(text: &str, ncols: usize) -> BTreeMap<String, Vec<u64>> {
    let body = text
        .strip_suffix(".\n")
        .unwrap_or_else(|| panic!("listing does not end with \".\\n\": {text:?}"));
    let mut rows = BTreeMap::new();
    for line in body.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            fields.len(),
            ncols + 1,
            "line {line:?} is not name + {ncols} tab-separated numbers in {text:?}"
        );
        let nums = fields[1..]
            .iter()
            .map(|f| {
                f.parse::<u64>()
                    .unwrap_or_else(|_| panic!("field {f:?} of {line:?} is not a number"))
            })
            .collect();
        assert!(
            rows.insert(fields[0].to_owned(), nums).is_none(),
            "duplicate row {line:?} in {text:?}"
        );
    }
    rows
}

pub(crate) fn counts(rows: &[(&str, &[u64])]) -> BTreeMap<String, Vec<u64>> {
    rows.iter()
        .map(|(name, nums)| (name.to_string(), nums.to_vec()))
        .collect()
}

pub(crate) fn status(srv: &TestServer) -> BTreeMap<String, Vec<u64>> {
    parse_counts(&gearadmin_ok(srv, &["--status"]), 3)
}

pub(crate) fn priority_status(srv: &TestServer) -> BTreeMap<String, Vec<u64>> {
    parse_counts(&gearadmin_ok(srv, &["--priority-status"]), 4)
}

pub(crate) fn wait_for_status(srv: &TestServer, what: &str, expected: &BTreeMap<String, Vec<u64>>) {
    wait_until(what, SETTLE, || {
        let got = status(srv);
        if &got == expected {
            Ok(())
        } else {
            Err(format!("--status: {got:?}\nexpected: {expected:?}"))
        }
    })
}

/// --status (TOTAL RUNNING WORKERS) and --priority-status (HIGH NORMAL LOW WORKERS)
/// for known background jobs with no worker, then with one worker holding a job.
pub(crate) fn gearadmin_status_and_priority_status(kind: ServerKind) {
    let srv = TestServer::start(kind);
    assert_eq!(gearadmin_ok(&srv, &["--status"]), ".\n");
    assert_eq!(gearadmin_ok(&srv, &["--priority-status"]), ".\n");

    for args in [
        &["-b", "-f", "adm_a", "a1"][..],
        &["-b", "-f", "adm_a", "a2"],
        &["-b", "-I", "-f", "adm_a", "a3"],
        &["-b", "-L", "-f", "adm_a", "a4"],
        &["-b", "-f", "adm_b", "b1"],
    ] {
        gearman_cli(&srv, args).assert_success("gearman -b");
    }
    assert_eq!(
        status(&srv),
        counts(&[("adm_a", &[4, 0, 0]), ("adm_b", &[1, 0, 0])])
    );
    assert_eq!(
        priority_status(&srv),
        counts(&[("adm_a", &[1, 2, 1, 0]), ("adm_b", &[0, 1, 0, 0])])
    );

    // A worker takes the HIGH job of adm_a and holds it.
    let out_file = srv.dir().join("hold.out");
    let mut w = spawn_worker(&srv, Lang::Php, "adm_a", "hold", 1, &out_file);
    wait_for_file_line(&out_file, "started a3");
    wait_for_status(
        &srv,
        "adm_a to show one running job and one worker",
        &counts(&[("adm_a", &[4, 1, 1]), ("adm_b", &[1, 0, 0])]),
    );
    assert_eq!(
        priority_status(&srv),
        counts(&[("adm_a", &[0, 2, 1, 1]), ("adm_b", &[0, 1, 0, 0])])
    );

    std::fs::write(srv.dir().join("hold.out.release"), b"go").expect("write release");
    assert_worker_exits_ok(&mut w);
    wait_for_status(
        &srv,
        "the held job to be gone and the worker disconnected",
        &counts(&[("adm_a", &[3, 0, 0]), ("adm_b", &[1, 0, 0])]),
    );
    assert_eq!(
        priority_status(&srv),
        counts(&[("adm_a", &[0, 2, 1, 0]), ("adm_b", &[0, 1, 0, 0])])
    );
}

/// One parsed `--workers` line: `FD IP CLIENT_ID : FUNCTIONS...`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct WorkerLine {
    pub(crate) ip: String,
    pub(crate) id: String,
    pub(crate) functions: Vec<String>,
}

pub(crate) fn parse_workers(text: &str) -> Vec<WorkerLine> {
    let body = text
        .strip_suffix(".\n")
        .unwrap_or_else(|| panic!("--workers does not end with \".\\n\": {text:?}"));
    body.lines()
        .map(|line| {
            let (head, functions) = line
                .split_once(" :")
                .unwrap_or_else(|| panic!("--workers line {line:?} has no \" :\""));
            let head: Vec<&str> = head.split(' ').collect();
            assert_eq!(head.len(), 3, "--workers line {line:?}: want `FD IP ID :`");
            head[0]
                .parse::<u32>()
                .unwrap_or_else(|_| panic!("--workers line {line:?}: fd is not a number"));
            assert!(
                functions.is_empty() || functions.starts_with(' '),
                "--workers line {line:?}: functions must follow \" : \""
            );
            WorkerLine {
                ip: head[1].to_owned(),
                id: head[2].to_owned(),
                functions: functions.split_whitespace().map(str::to_owned).collect(),
            }
        })
        .collect()
}

/// --workers lists every connection: the gear worker (with the client id it set and
/// its function) and gearadmin's own connection (id "-", no functions).
pub(crate) fn gearadmin_workers(kind: ServerKind) {
    let srv = TestServer::start(kind);
    let out_file = srv.dir().join("worker.out");
    let _w = spawn_worker(&srv, Lang::Python, "wk_one", "reverse", 1, &out_file);
    wait_for_status(
        &srv,
        "the gear worker to register",
        &counts(&[("wk_one", &[0, 0, 1])]),
    );
    let workers = parse_workers(&gearadmin_ok(&srv, &["--workers"]));
    let mut got: Vec<WorkerLine> = workers;
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        got,
        vec![
            WorkerLine {
                ip: HOST.to_owned(),
                id: "-".to_owned(),
                functions: vec![],
            },
            WorkerLine {
                ip: HOST.to_owned(),
                id: "protocol-tests-gear-worker".to_owned(),
                functions: vec!["wk_one".to_owned()],
            },
        ]
    );
}

/// --server-version prints one version token, --server-verbose the log level name,
/// --getpid the server's pid.
pub(crate) fn gearadmin_server_version_verbose_getpid(kind: ServerKind) {
    let srv = TestServer::start(kind);

    let version = gearadmin_ok(&srv, &["--server-version"]);
    let v = version
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("version {version:?} lacks a newline"));
    assert!(
        !v.is_empty() && !v.contains(char::is_whitespace),
        "version {version:?} is not one token"
    );
    if kind == ServerKind::Gearmand {
        assert!(v.starts_with("1.1."), "gearmand version {v:?}");
    }

    let verbose = gearadmin_ok(&srv, &["--server-verbose"]);
    let levels = [
        "FATAL", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG",
    ];
    let level = verbose.strip_suffix('\n').unwrap_or("");
    assert!(
        levels.contains(&level),
        "--server-verbose printed {verbose:?}"
    );
    if kind == ServerKind::Gearmand {
        // started with --verbose INFO
        assert_eq!(verbose, "INFO\n");
    }

    assert_eq!(
        gearadmin_ok(&srv, &["--getpid"]),
        format!("{}\n", srv.pid())
    );
}

/// --show-jobs lists the queued background jobs as `HANDLE\t0\t0\t1`.
pub(crate) fn gearadmin_show_jobs(kind: ServerKind) {
    let srv = TestServer::start(kind);
    assert_eq!(gearadmin_ok(&srv, &["--show-jobs"]), ".\n");
    let h1 = submit_background(&srv, Lang::Php, "sj", "one").unwrap();
    let h2 = submit_background(&srv, Lang::Python, "sj", "two").unwrap();
    assert_ne!(h1, h2);
    assert_eq!(
        parse_counts(&gearadmin_ok(&srv, &["--show-jobs"]), 3),
        counts(&[(&h1, &[0, 0, 1]), (&h2, &[0, 0, 1])])
    );
}

/// --show-unique-jobs prints one unique per line: the ones given with `gearman -u`,
/// PHP's generated UUID, and an empty line for gear's empty unique.
pub(crate) fn gearadmin_show_unique_jobs(kind: ServerKind) {
    let srv = TestServer::start(kind);
    assert_eq!(gearadmin_ok(&srv, &["--show-unique-jobs"]), ".\n");
    gearman_cli(&srv, &["-b", "-u", "uniq-one", "-f", "su", "x1"]).assert_success("gearman -u");
    gearman_cli(&srv, &["-b", "-u", "uniq-two", "-f", "su", "x2"]).assert_success("gearman -u");
    submit_background(&srv, Lang::Php, "su", "x3");
    submit_background(&srv, Lang::Python, "su", "x4");

    let text = gearadmin_ok(&srv, &["--show-unique-jobs"]);
    let body = text
        .strip_suffix(".\n")
        .unwrap_or_else(|| panic!("listing does not end with \".\\n\": {text:?}"));
    let mut uniques: Vec<&str> = body.lines().collect();
    uniques.sort();
    assert_eq!(uniques.len(), 4, "{text:?}");
    assert_eq!(uniques[0], "", "gear's empty unique: {text:?}");
    assert!(is_uuid(uniques[1]), "PHP's UUID unique: {text:?}");
    assert_eq!(&uniques[2..], &["uniq-one", "uniq-two"], "{text:?}");
}

pub(crate) fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// --cancel-job of a queued job prints OK and the job never runs; an unknown handle
/// prints `Error: UNKNOWN_JOB` on stderr.
pub(crate) fn gearadmin_cancel_job(kind: ServerKind) {
    let srv = TestServer::start(kind);
    let h1 = submit_background(&srv, Lang::Php, "cj", "c1").unwrap();
    let h2 = submit_background(&srv, Lang::Php, "cj", "c2").unwrap();

    assert_eq!(gearadmin_ok(&srv, &["--cancel-job", &h1]), "OK\n");

    let unknown = format!("{h2}999");
    let out = gearadmin(&srv, &["--cancel-job", &unknown]);
    out.assert_success("gearadmin --cancel-job");
    assert_eq!(out.stdout_str(), "", "{}", out.describe());
    assert_eq!(
        out.stderr_str(),
        "Error: UNKNOWN_JOB\r\n",
        "{}",
        out.describe()
    );

    // gearmand keeps a cancelled queued job listed (IGNORE=1) until a worker's grab
    // reaps it; a server that drops it at once is just as good.
    let jobs = parse_counts(&gearadmin_ok(&srv, &["--show-jobs"]), 3);
    assert_eq!(jobs.get(&h2), Some(&vec![0, 0, 1]), "{jobs:?}");
    match jobs.get(&h1) {
        None => {}
        Some(row) => assert_eq!(row[1], 1, "cancelled job not marked ignored: {jobs:?}"),
    }
    assert!(jobs.len() <= 2, "{jobs:?}");

    // A worker now gets only c2.
    let out_file = srv.dir().join("worker.out");
    let mut w = spawn_worker(&srv, Lang::Php, "cj", "reverse", 1, &out_file);
    wait_for_file_line(&out_file, "done c2");
    assert_worker_exits_ok(&mut w);
    assert_eq!(read_file(&out_file), "started c2\ndone c2\n");
    assert_eq!(gearadmin_ok(&srv, &["--show-jobs"]), ".\n");
    wait_for_status(&srv, "cj to be empty", &counts(&[("cj", &[0, 0, 0])]));
}

/// --create-function / --drop-function print what gearmand prints: "OK" on stdout,
/// errors as "Error: <text>\r\n" on stderr.
pub(crate) fn gearadmin_create_and_drop_function(kind: ServerKind) {
    let srv = TestServer::start(kind);
    assert_eq!(gearadmin_ok(&srv, &["--create-function", "newfn"]), "OK\n");
    assert_eq!(status(&srv), counts(&[("newfn", &[0, 0, 0])]));

    assert_eq!(gearadmin_ok(&srv, &["--drop-function", "newfn"]), "OK\n");
    assert_eq!(status(&srv), counts(&[]));

    let out = gearadmin(&srv, &["--drop-function", "newfn"]);
    out.assert_success("gearadmin --drop-function");
    assert_eq!(out.stdout_str(), "", "{}", out.describe());
    assert_eq!(
        out.stderr_str(),
        "Error: function not found\r\n",
        "{}",
        out.describe()
    );

    // A function with a connected worker cannot be dropped.
    let out_file = srv.dir().join("worker.out");
    let _w = spawn_worker(&srv, Lang::Python, "busyfn", "reverse", 1, &out_file);
    wait_for_status(
        &srv,
        "the gear worker to register",
        &counts(&[("busyfn", &[0, 0, 1])]),
    );
    let out = gearadmin(&srv, &["--drop-function", "busyfn"]);
    out.assert_success("gearadmin --drop-function");
    assert_eq!(out.stdout_str(), "", "{}", out.describe());
    assert_eq!(
        out.stderr_str(),
        "Error: there are still connected workers or executing clients\r\n",
        "{}",
        out.describe()
    );
    assert_eq!(status(&srv), counts(&[("busyfn", &[0, 0, 1])]));
}
