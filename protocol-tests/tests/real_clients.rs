//! Real clients against a real server: every test runs once against gearmand and once
//! against gearboxd (test names end in `::gearmand` / `::gearboxd`).
//!
//! The assertions are about what a user of each client library sees (return values,
//! callbacks fired, return codes, files written by workers, gearadmin output), not
//! about bytes on the wire. Where two conforming servers must differ (version string,
//! pid, file descriptors, row order, job handles) the checks normalise exactly that.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use protocol_tests::{
    client_script, read_file, run, wait_until, BackgroundProcess, OutputExt, ServerKind,
    TestServer, HOST, RUN_TIMEOUT,
};

/// Workers exit by themselves after this many seconds even if their jobs never came.
const WORKER_TIMEOUT_SECS: &str = "20";
/// How long a test waits for a worker to finish its jobs and exit.
const WORKER_EXIT: Duration = Duration::from_secs(15);
/// How long a test waits for some observable state (file written, status changed).
const SETTLE: Duration = Duration::from_secs(10);

// libgearman return codes as PHP's GearmanClient::returnCode() reports them.
const GEARMAN_SUCCESS: &str = "0";
const GEARMAN_WORK_EXCEPTION: &str = "23";
const GEARMAN_WORK_FAIL: &str = "24";

/// Generates `mod name { fn gearmand(); fn gearboxd(); }` test pairs for each
/// `fn name(kind: ServerKind)` listed.
macro_rules! for_both_servers {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn gearmand() {
                    super::$name(protocol_tests::ServerKind::Gearmand)
                }
                #[test]
                fn gearboxd() {
                    super::$name(protocol_tests::ServerKind::Gearboxd)
                }
            }
        )*
    };
}

for_both_servers!(
    php_client_python_worker,
    php_client_perl_worker,
    python_client_perl_worker,
    python_client_cli_worker,
    perl_client_cli_worker,
    perl_client_php_worker,
    cli_client_php_worker,
    cli_client_python_worker,
    php_do_normal,
    php_do_normal_concatenates_work_data,
    php_do_background,
    php_add_task_callbacks,
    php_fail,
    php_exception,
    php_job_status,
    python_work_data_and_warning,
    python_exception_without_exceptions_flag,
    python_exception_with_exceptions_flag,
    perl_taskset_callbacks,
    perl_fail,
    gearadmin_status_and_priority_status,
    gearadmin_workers,
    gearadmin_server_version_verbose_getpid,
    gearadmin_show_jobs,
    gearadmin_show_unique_jobs,
    gearadmin_cancel_job,
    gearadmin_create_and_drop_function,
    pygearman_client_perl_worker,
    python_client_pygearman_worker,
    node_client_python_worker,
    perl_client_node_worker,
    node_client_pygearman_worker,
    gear_admin_status_workers_cancel,
);

// ---------------------------------------------------------------------------------------
// Client and worker wrappers
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lang {
    /// pecl/gearman (GearmanClient / GearmanWorker)
    Php,
    /// OpenStack `gear`
    Python,
    /// CPAN Gearman::Client / Gearman::Worker
    Perl,
    /// the libgearman `gearman` command-line tool
    Cli,
    /// PyPI `pygearman` (Python 3 fork of python-gearman; module `gearman`)
    Pygearman,
    /// npm `gearman` (node-gearman), in clients/node/
    Node,
}

impl Lang {
    fn name(self) -> &'static str {
        match self {
            Lang::Php => "php",
            Lang::Python => "python",
            Lang::Perl => "perl",
            Lang::Cli => "cli",
            Lang::Pygearman => "pygearman",
            Lang::Node => "node",
        }
    }
}

fn with_server_args<'a>(srv_port: &'a str, script: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut full = vec![script, HOST, srv_port];
    full.extend_from_slice(args);
    full
}

/// `INTERPRETER clients/SCRIPT HOST PORT args...`, bounded by [`RUN_TIMEOUT`].
fn run_client(srv: &TestServer, interpreter: &str, script: &str, args: &[&str]) -> Output {
    let script = client_script(script);
    let port = srv.port_str();
    run(
        interpreter,
        &with_server_args(&port, &script, args),
        None,
        RUN_TIMEOUT,
    )
}

/// `php clients/php_client.php HOST PORT args...`
fn php_client(srv: &TestServer, args: &[&str]) -> Output {
    run_client(srv, "php", "php_client.php", args)
}

/// `python3 clients/gear_client.py HOST PORT args...`
fn python_client(srv: &TestServer, args: &[&str]) -> Output {
    run_client(srv, "python3", "gear_client.py", args)
}

/// `perl clients/perl_client.pl HOST PORT args...`
fn perl_client(srv: &TestServer, args: &[&str]) -> Output {
    run_client(srv, "perl", "perl_client.pl", args)
}

/// `python3 clients/pygearman_client.py HOST PORT args...`
fn pygearman_client(srv: &TestServer, args: &[&str]) -> Output {
    run_client(srv, "python3", "pygearman_client.py", args)
}

/// `node clients/node/client.js HOST PORT args...`
fn node_client(srv: &TestServer, args: &[&str]) -> Output {
    run_client(srv, "node", "node/client.js", args)
}

/// `python3 clients/gear_admin.py HOST PORT args...`: gear's admin requests. Checks
/// it exited 0 with nothing on stderr and returns gear's `request.response`.
fn gear_admin_ok(srv: &TestServer, args: &[&str]) -> String {
    let script = client_script("gear_admin.py");
    let port = srv.port_str();
    let out = run(
        "python3",
        &with_server_args(&port, &script, args),
        None,
        RUN_TIMEOUT,
    );
    out.assert_success("gear admin request");
    assert_eq!(
        out.stderr_str(),
        "",
        "gear_admin.py {args:?} wrote to stderr\n{}",
        out.describe()
    );
    out.stdout_str()
}

/// `gearman -h HOST -p PORT args...` (stdin is /dev/null)
fn gearman_cli(srv: &TestServer, args: &[&str]) -> Output {
    let port = srv.port_str();
    let mut full = vec!["-h", HOST, "-p", &port];
    full.extend_from_slice(args);
    run("gearman", &full, None, RUN_TIMEOUT)
}

/// `gearadmin -h HOST -p PORT args...`
fn gearadmin(srv: &TestServer, args: &[&str]) -> Output {
    let port = srv.port_str();
    let mut full = vec!["-h", HOST, "-p", &port];
    full.extend_from_slice(args);
    run("gearadmin", &full, None, RUN_TIMEOUT)
}

/// Starts a worker in `lang` for `function`, running `count` jobs in `mode` (see the
/// scripts in clients/), appending "started/done <payload>" lines to `outfile`.
/// The CLI worker only supports "reverse" (it runs clients/cli_worker_cmd.sh).
fn spawn_worker(
    srv: &TestServer,
    lang: Lang,
    function: &str,
    mode: &str,
    count: u32,
    outfile: &Path,
) -> BackgroundProcess {
    let port = srv.port_str();
    let count = count.to_string();
    let outfile = outfile.to_string_lossy().into_owned();
    let label = format!("{}-worker-{function}", lang.name());
    let (cmd, script) = match lang {
        Lang::Php => ("php", client_script("php_worker.php")),
        Lang::Python => ("python3", client_script("gear_worker.py")),
        Lang::Perl => ("perl", client_script("perl_worker.pl")),
        Lang::Pygearman => {
            assert_eq!(mode, "reverse", "the pygearman worker only reverses");
            ("python3", client_script("pygearman_worker.py"))
        }
        Lang::Node => {
            assert_eq!(mode, "reverse", "the node worker only reverses");
            ("node", client_script("node/worker.js"))
        }
        Lang::Cli => {
            assert_eq!(mode, "reverse", "the CLI worker only reverses");
            let cmd_script = client_script("cli_worker_cmd.sh");
            // -t: give up after 15 s without a job (each idle timeout also counts
            // towards -c), so the worker always ends by itself.
            let args = [
                "-w",
                "-h",
                HOST,
                "-p",
                &port,
                "-f",
                function,
                "-c",
                &count,
                "-t",
                "15000",
                "--",
                "sh",
                &cmd_script,
                &outfile,
            ];
            return BackgroundProcess::spawn(&label, "gearman", &args, srv.dir());
        }
    };
    let args = [
        script.as_str(),
        HOST,
        &port,
        function,
        mode,
        &count,
        WORKER_TIMEOUT_SECS,
        &outfile,
    ];
    BackgroundProcess::spawn(&label, cmd, &args, srv.dir())
}

/// Value of the first `key=value` line of the output; panics if there is none.
fn kv(out: &Output, key: &str) -> String {
    let prefix = format!("{key}=");
    out.stdout_str()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| panic!("no `{key}=` line in output:\n{}", out.describe()))
}

fn lines(out: &Output) -> Vec<String> {
    out.stdout_str().lines().map(str::to_owned).collect()
}

fn reversed(s: &str) -> String {
    s.chars().rev().collect()
}

/// Waits until `path` contains the line `line`.
fn wait_for_file_line(path: &Path, line: &str) {
    wait_until(
        &format!("{} to contain {line:?}", path.display()),
        SETTLE,
        || {
            let text = read_file(path);
            if text.lines().any(|l| l == line) {
                Ok(())
            } else {
                Err(text)
            }
        },
    )
}

fn assert_worker_exits_ok(worker: &mut BackgroundProcess) {
    let status = worker.wait_exit(WORKER_EXIT);
    assert!(
        status.success(),
        "worker exited with {status}\n{}",
        worker.describe()
    );
}

/// Submits a foreground job with `client` and returns the result as that client's
/// user sees it, after checking the client reported success.
fn submit_foreground(srv: &TestServer, client: Lang, function: &str, payload: &str) -> String {
    match client {
        Lang::Php => {
            let out = php_client(srv, &["normal", function, payload]);
            out.assert_success("php doNormal");
            assert_eq!(kv(&out, "rc"), GEARMAN_SUCCESS, "{}", out.describe());
            kv(&out, "result")
        }
        Lang::Python => {
            let out = python_client(srv, &["normal", function, payload]);
            out.assert_success("gear submitJob");
            assert_eq!(kv(&out, "complete"), "True", "{}", out.describe());
            assert_eq!(kv(&out, "failure"), "False", "{}", out.describe());
            assert_eq!(kv(&out, "exception"), "None", "{}", out.describe());
            kv(&out, "result")
        }
        Lang::Perl => {
            let out = perl_client(srv, &["normal", function, payload]);
            out.assert_success("perl Taskset");
            let result = kv(&out, "result");
            assert_eq!(
                lines(&out),
                vec![format!("complete {result}"), format!("result={result}")],
                "only on_complete should fire:\n{}",
                out.describe()
            );
            result
        }
        Lang::Cli => {
            let out = gearman_cli(srv, &["-f", function, payload]);
            out.assert_success("gearman client");
            assert_eq!(out.stderr_str(), "", "{}", out.describe());
            out.stdout_str()
        }
        Lang::Pygearman => {
            let out = pygearman_client(srv, &["normal", function, payload]);
            out.assert_success("pygearman submit_job");
            let result = kv(&out, "result");
            assert_eq!(
                lines(&out),
                vec!["state=COMPLETE".to_owned(), format!("result={result}")],
                "{}",
                out.describe()
            );
            result
        }
        Lang::Node => {
            let out = node_client(srv, &["normal", function, payload]);
            out.assert_success("node submitJob");
            let handle = kv(&out, "created");
            let result = kv(&out, "result");
            // JOB_CREATED, then WORK_COMPLETE, and no WORK_DATA or WORK_FAIL.
            assert_eq!(
                lines(&out),
                vec![format!("created={handle}"), format!("result={result}")],
                "{}",
                out.describe()
            );
            result
        }
    }
}

/// Submits a background job with `client`; returns the job handle if that client
/// shows one (the CLI prints nothing).
fn submit_background(
    srv: &TestServer,
    client: Lang,
    function: &str,
    payload: &str,
) -> Option<String> {
    let handle = match client {
        Lang::Php => {
            let out = php_client(srv, &["background", function, payload]);
            out.assert_success("php doBackground");
            assert_eq!(kv(&out, "rc"), GEARMAN_SUCCESS, "{}", out.describe());
            kv(&out, "handle")
        }
        Lang::Python => {
            let out = python_client(srv, &["background", function, payload]);
            out.assert_success("gear submitJob(background=True)");
            kv(&out, "handle")
        }
        Lang::Perl => {
            let out = perl_client(srv, &["background", function, payload]);
            out.assert_success("perl dispatch_background");
            // Gearman::Client returns "<host>:<port>//<handle>".
            let full = kv(&out, "handle");
            let prefix = format!("{}//", srv.addr());
            full.strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("perl handle {full:?} lacks {prefix:?}"))
                .to_owned()
        }
        Lang::Pygearman => {
            let out = pygearman_client(srv, &["background", function, payload]);
            out.assert_success("pygearman submit_job(background=True)");
            assert_eq!(kv(&out, "state"), "CREATED", "{}", out.describe());
            kv(&out, "handle")
        }
        Lang::Node => {
            let out = node_client(srv, &["background", function, payload]);
            out.assert_success("node submitJob({background: true})");
            kv(&out, "handle")
        }
        Lang::Cli => {
            let out = gearman_cli(srv, &["-b", "-f", function, payload]);
            out.assert_success("gearman -b");
            assert_eq!(out.stdout_str(), "", "{}", out.describe());
            assert_eq!(out.stderr_str(), "", "{}", out.describe());
            return None;
        }
    };
    assert!(
        !handle.is_empty() && !handle.contains(char::is_whitespace),
        "bad job handle {handle:?}"
    );
    Some(handle)
}

/// One foreground and one background job from `client` to a `worker` in another
/// language: the foreground result is the reversed payload, the background job runs
/// (the worker writes "done <payload>"), the worker sees the handle the client got,
/// and the worker exits by itself after its two jobs.
fn round_trip(kind: ServerKind, client: Lang, worker: Lang) {
    assert_ne!(client, worker);
    let srv = TestServer::start(kind);
    let function = format!("rt_{}_{}", client.name(), worker.name());
    let outfile = srv.dir().join("worker.out");
    let mut w = spawn_worker(&srv, worker, &function, "reverse", 2, &outfile);

    let fg = format!("fg payload {} to {}", client.name(), worker.name());
    let result = submit_foreground(&srv, client, &function, &fg);
    assert_eq!(result, reversed(&fg), "foreground result\n{}", w.describe());
    wait_for_file_line(&outfile, &format!("done {fg}"));

    let bg = format!("bg payload {} to {}", client.name(), worker.name());
    let handle = submit_background(&srv, client, &function, &bg);
    wait_for_file_line(&outfile, &format!("done {bg}"));
    assert_worker_exits_ok(&mut w);

    if let (Some(handle), true) = (handle, worker != Lang::Cli) {
        let expected = format!("job {handle} {bg}");
        assert!(
            w.stdout().lines().any(|l| l == expected),
            "worker did not get handle {handle}\n{}",
            w.describe()
        );
    }
    assert_eq!(
        read_file(&outfile)
            .lines()
            .filter(|l| l.starts_with("done "))
            .collect::<Vec<_>>(),
        vec![format!("done {fg}"), format!("done {bg}")]
    );
}

// ---------------------------------------------------------------------------------------
// Cross-language round trips (each client and each worker at least twice)
// ---------------------------------------------------------------------------------------

fn php_client_python_worker(kind: ServerKind) {
    round_trip(kind, Lang::Php, Lang::Python);
}

fn php_client_perl_worker(kind: ServerKind) {
    round_trip(kind, Lang::Php, Lang::Perl);
}

fn python_client_perl_worker(kind: ServerKind) {
    round_trip(kind, Lang::Python, Lang::Perl);
}

fn python_client_cli_worker(kind: ServerKind) {
    round_trip(kind, Lang::Python, Lang::Cli);
}

fn perl_client_cli_worker(kind: ServerKind) {
    round_trip(kind, Lang::Perl, Lang::Cli);
}

fn perl_client_php_worker(kind: ServerKind) {
    round_trip(kind, Lang::Perl, Lang::Php);
}

fn cli_client_php_worker(kind: ServerKind) {
    round_trip(kind, Lang::Cli, Lang::Php);
}

fn cli_client_python_worker(kind: ServerKind) {
    round_trip(kind, Lang::Cli, Lang::Python);
}

// pygearman (PyPI) and node-gearman (npm) against workers and clients in other
// languages.

fn pygearman_client_perl_worker(kind: ServerKind) {
    round_trip(kind, Lang::Pygearman, Lang::Perl);
}

fn python_client_pygearman_worker(kind: ServerKind) {
    round_trip(kind, Lang::Python, Lang::Pygearman);
}

fn node_client_python_worker(kind: ServerKind) {
    round_trip(kind, Lang::Node, Lang::Python);
}

fn perl_client_node_worker(kind: ServerKind) {
    round_trip(kind, Lang::Perl, Lang::Node);
}

fn node_client_pygearman_worker(kind: ServerKind) {
    round_trip(kind, Lang::Node, Lang::Pygearman);
}

// ---------------------------------------------------------------------------------------
// PHP client features
// ---------------------------------------------------------------------------------------

fn php_do_normal(kind: ServerKind) {
    let srv = TestServer::start(kind);
    let out_file = srv.dir().join("worker.out");
    let mut w = spawn_worker(&srv, Lang::Php, "php_rev", "reverse", 1, &out_file);
    let out = php_client(&srv, &["normal", "php_rev", "hello world"]);
    out.assert_success("php doNormal");
    assert_eq!(
        lines(&out),
        vec![
            "result=dlrow olleh".to_owned(),
            format!("rc={GEARMAN_SUCCESS}")
        ],
        "{}",
        out.describe()
    );
    assert_worker_exits_ok(&mut w);
}

fn php_do_normal_concatenates_work_data(kind: ServerKind) {
    let srv = TestServer::start(kind);
    let out_file = srv.dir().join("worker.out");
    let mut w = spawn_worker(&srv, Lang::Php, "php_chunks", "chunks", 1, &out_file);
    let out = php_client(&srv, &["normal", "php_chunks", "hello"]);
    out.assert_success("php doNormal");
    // WORK_DATA chunks and the WORK_COMPLETE payload, concatenated; the WORK_WARNING
    // and WORK_STATUS packets are not part of the result.
    assert_eq!(
        lines(&out),
        vec![
            "result=chunk1:chunk2:final:hello".to_owned(),
            format!("rc={GEARMAN_SUCCESS}")
        ],
        "{}",
        out.describe()
    );
    assert_worker_exits_ok(&mut w);
}

fn php_do_background(kind: ServerKind) {
    let srv = TestServer::start(kind);
    let out_file = srv.dir().join("worker.out");
    let mut w = spawn_worker(&srv, Lang::Php, "php_bg", "reverse", 1, &out_file);
    let out = php_client(&srv, &["background", "php_bg", "in the background"]);
    out.assert_success("php doBackground");
    assert_eq!(kv(&out, "rc"), GEARMAN_SUCCESS, "{}", out.describe());
    let handle = kv(&out, "handle");
    assert!(!handle.is_empty(), "empty handle\n{}", out.describe());
    wait_for_file_line(&out_file, "done in the background");
    assert_worker_exits_ok(&mut w);
    assert!(
        w.stdout()
            .lines()
            .any(|l| l == format!("job {handle} in the background")),
        "worker did not get handle {handle}\n{}",
        w.describe()
    );
}

/// Replaces the handle in a "created <handle>" first line by "<handle>".
fn normalise_created(mut got: Vec<String>) -> Vec<String> {
    if let Some(first) = got.first_mut() {
        if let Some(handle) = first.strip_prefix("created ") {
            if !handle.is_empty() && !handle.contains(' ') {
                *first = "created <handle>".to_owned();
            }
        }
    }
    got
}

fn php_add_task_callbacks(kind: ServerKind) {
    let srv = TestServer::start(kind);
    let out_file = srv.dir().join("worker.out");
    let mut w = spawn_worker(&srv, Lang::Php, "php_cb", "chunks", 1, &out_file);
    let out = php_client(&srv, &["tasks", "php_cb", "hello"]);
    out.assert_success("php addTask/runTasks");
    assert_eq!(
        normalise_created(lines(&out)),
        vec![
            "created <handle>",
            "status 1/4",
            "data chunk1:",
            "warning warn:hello",
            "data chunk2:",
            "status 4/4",
            "complete final:hello",
            "run_tasks=true",
            "rc=0",
        ],
        "{}",
        out.describe()
    );
    assert_worker_exits_ok(&mut w);
}

/// A failing worker: doNormal returns '' with GEARMAN_WORK_FAIL; with addTask only the
/// fail callback fires.
fn php_fail(kind: ServerKind) {
    let srv = TestServer::start(kind);
    let out_file = srv.dir().join("worker.out");
    let mut w = spawn_worker(&srv, Lang::Php, "php_fail", "fail", 2, &out_file);
    let out = php_client(&srv, &["normal", "php_fail", "hello"]);
    out.assert_success("php doNormal");
    assert_eq!(
        lines(&out),
        vec!["result=".to_owned(), format!("rc={GEARMAN_WORK_FAIL}")],
        "{}",
        out.describe()
    );
    let out = php_client(&srv, &["tasks", "php_fail", "hello"]);
    out.assert_success("php addTask/runTasks");
    assert_eq!(
        normalise_created(lines(&out)),
        vec!["created <handle>", "fail", "run_tasks=true", "rc=0"],
        "{}",
        out.describe()
    );
    assert_worker_exits_ok(&mut w);
}

/// A worker sending WORK_EXCEPTION: doNormal returns '' with GEARMAN_WORK_EXCEPTION;
/// with addTask only the exception callback fires, with the exception data. (PHP
/// enables the `exceptions` option at addServer, so no --exceptions flag is needed.)
fn php_exception(kind: ServerKind) {
    let srv = TestServer::start(kind);
    let out_file = srv.dir().join("worker.out");
    let mut w = spawn_worker(&srv, Lang::Php, "php_exc", "exception", 2, &out_file);
    let out = php_client(&srv, &["normal", "php_exc", "hello"]);
    out.assert_success("php doNormal");
    assert_eq!(
        lines(&out),
        vec!["result=".to_owned(), format!("rc={GEARMAN_WORK_EXCEPTION}")],
        "{}",
        out.describe()
    );
    let out = php_client(&srv, &["tasks", "php_exc", "hello"]);
    out.assert_success("php addTask/runTasks");
    assert_eq!(
        normalise_created(lines(&out)),
        vec![
            "created <handle>",
            "exception boom:hello",
            "run_tasks=true",
            "rc=0"
        ],
        "{}",
        out.describe()
    );
    assert_worker_exits_ok(&mut w);
}

/// jobStatus: unknown handle, queued job, running job with a reported status, and
/// the same handle once the job is done.
fn php_job_status(kind: ServerKind) {
    let srv = TestServer::start(kind);

    let out = php_client(&srv, &["status", "H:no-such-host:424242"]);
    out.assert_success("php jobStatus");
    assert_eq!(
        lines(&out),
        vec!["status=[false,false,0,0]", "rc=0"],
        "unknown handle\n{}",
        out.describe()
    );

    // Queued, no worker yet: known, not running.
    let out = php_client(&srv, &["bgstatus", "php_hold", "held job"]);
    out.assert_success("php doBackground + jobStatus");
    let handle = kv(&out, "handle");
    assert_eq!(kv(&out, "status"), "[true,false,0,0]", "{}", out.describe());
    assert_eq!(kv(&out, "rc"), "0", "{}", out.describe());

    // Running: the worker sends WORK_STATUS 3/7 and waits for the release file.
    let out_file = srv.dir().join("hold.out");
    let release = srv.dir().join("hold.out.release");
    let mut w = spawn_worker(&srv, Lang::Php, "php_hold", "hold", 1, &out_file);
    wait_for_file_line(&out_file, "started held job");
    wait_until("jobStatus to show the running job", SETTLE, || {
        let out = php_client(&srv, &["status", &handle]);
        if out.status.success() && kv(&out, "status") == "[true,true,3,7]" {
            Ok(())
        } else {
            Err(out.describe())
        }
    });

    std::fs::write(&release, b"go").expect("write release file");
    wait_for_file_line(&out_file, "done held job");
    assert_worker_exits_ok(&mut w);

    // Finished jobs are unknown again.
    wait_until("jobStatus of the finished job", SETTLE, || {
        let out = php_client(&srv, &["status", &handle]);
        if out.status.success() && kv(&out, "status") == "[false,false,0,0]" {
            Ok(())
        } else {
            Err(out.describe())
        }
    });
}

// ---------------------------------------------------------------------------------------
// Python gear client features
// ---------------------------------------------------------------------------------------

/// gear appends WORK_DATA, WORK_WARNING and WORK_COMPLETE data to job.data in order.
fn python_work_data_and_warning(kind: ServerKind) {
    let srv = TestServer::start(kind);
    let out_file = srv.dir().join("worker.out");
    let mut w = spawn_worker(&srv, Lang::Perl, "py_chunks", "chunks", 1, &out_file);
    let result = submit_foreground(&srv, Lang::Python, "py_chunks", "hello");
    assert_eq!(result, "chunk1:warn:hellochunk2:final:hello");
    assert_worker_exits_ok(&mut w);
}

/// Without --exceptions a gear client (which never asks for the `exceptions` option)
/// sees a worker's WORK_EXCEPTION as a plain failure.
fn python_exception_without_exceptions_flag(kind: ServerKind) {
    let srv = TestServer::start(kind);
    let out_file = srv.dir().join("worker.out");
    let mut w = spawn_worker(&srv, Lang::Python, "py_exc", "exception", 1, &out_file);
    let out = python_client(&srv, &["normal", "py_exc", "hello"]);
    out.assert_success("gear submitJob");
    assert_eq!(
        lines(&out),
        vec!["result=", "complete=True", "failure=True", "exception=None"],
        "{}",
        out.describe()
    );
    assert_worker_exits_ok(&mut w);
}

/// With --exceptions on the server, the same gear client gets the exception data.
fn python_exception_with_exceptions_flag(kind: ServerKind) {
    let srv = TestServer::start_with_args(kind, &["--exceptions"]);
    let out_file = srv.dir().join("worker.out");
    let mut w = spawn_worker(&srv, Lang::Python, "py_exc", "exception", 1, &out_file);
    let out = python_client(&srv, &["normal", "py_exc", "hello"]);
    out.assert_success("gear submitJob");
    assert_eq!(
        lines(&out),
        vec![
            "result=",
            "complete=True",
            "failure=True",
            "exception=boom:hello"
        ],
        "{}",
        out.describe()
    );
    assert_worker_exits_ok(&mut w);
}

// ---------------------------------------------------------------------------------------
// Perl client features
// ---------------------------------------------------------------------------------------

/// Gearman::Taskset fires on_status, on_data, on_warning and on_complete in order.
fn perl_taskset_callbacks(kind: ServerKind) {
    let srv = TestServer::start(kind);
    let out_file = srv.dir().join("worker.out");
    let mut w = spawn_worker(&srv, Lang::Python, "pl_chunks", "chunks", 1, &out_file);
    let out = perl_client(&srv, &["normal", "pl_chunks", "hello"]);
    out.assert_success("perl Taskset");
    assert_eq!(
        lines(&out),
        vec![
            "status 1/4",
            "data chunk1:",
            "warning warn:hello",
            "data chunk2:",
            "status 4/4",
            "complete final:hello",
            "result=final:hello",
        ],
        "{}",
        out.describe()
    );
    assert_worker_exits_ok(&mut w);
}

/// A Perl worker whose function returns undef sends WORK_FAIL; the Perl client's
/// on_fail fires and do_task returns undef.
fn perl_fail(kind: ServerKind) {
    let srv = TestServer::start(kind);
    let out_file = srv.dir().join("worker.out");
    let mut w = spawn_worker(&srv, Lang::Perl, "pl_fail", "fail", 2, &out_file);
    let out = perl_client(&srv, &["normal", "pl_fail", "hello"]);
    out.assert_success("perl Taskset");
    assert_eq!(lines(&out), vec!["fail", "result="], "{}", out.describe());
    let out = perl_client(&srv, &["do_task", "pl_fail", "hello"]);
    out.assert_success("perl do_task");
    assert_eq!(lines(&out), vec!["result=undef"], "{}", out.describe());
    assert_worker_exits_ok(&mut w);
}

// ---------------------------------------------------------------------------------------
// gearadmin
// ---------------------------------------------------------------------------------------

/// Runs gearadmin and checks it printed nothing on stderr and exited 0.
fn gearadmin_ok(srv: &TestServer, args: &[&str]) -> String {
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
fn parse_counts(text: &str, ncols: usize) -> BTreeMap<String, Vec<u64>> {
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

fn counts(rows: &[(&str, &[u64])]) -> BTreeMap<String, Vec<u64>> {
    rows.iter()
        .map(|(name, nums)| (name.to_string(), nums.to_vec()))
        .collect()
}

fn status(srv: &TestServer) -> BTreeMap<String, Vec<u64>> {
    parse_counts(&gearadmin_ok(srv, &["--status"]), 3)
}

fn priority_status(srv: &TestServer) -> BTreeMap<String, Vec<u64>> {
    parse_counts(&gearadmin_ok(srv, &["--priority-status"]), 4)
}

fn wait_for_status(srv: &TestServer, what: &str, expected: &BTreeMap<String, Vec<u64>>) {
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
fn gearadmin_status_and_priority_status(kind: ServerKind) {
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
struct WorkerLine {
    ip: String,
    id: String,
    functions: Vec<String>,
}

fn parse_workers(text: &str) -> Vec<WorkerLine> {
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
fn gearadmin_workers(kind: ServerKind) {
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
fn gearadmin_server_version_verbose_getpid(kind: ServerKind) {
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
fn gearadmin_show_jobs(kind: ServerKind) {
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
fn gearadmin_show_unique_jobs(kind: ServerKind) {
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

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// --cancel-job of a queued job prints OK and the job never runs; an unknown handle
/// prints `Error: UNKNOWN_JOB` on stderr.
fn gearadmin_cancel_job(kind: ServerKind) {
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
fn gearadmin_create_and_drop_function(kind: ServerKind) {
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

// ---------------------------------------------------------------------------------------
// gear's admin client
// ---------------------------------------------------------------------------------------

/// gear's StatusAdminRequest, ShowJobsAdminRequest, WorkersAdminRequest and
/// CancelJobAdminRequest, as a gear user reads `request.response`: queued counts per
/// function, the queued handles, the idle worker with its function (and gear's own
/// connection), `OK` for a cancelled job (which then never runs) and
/// `ERR UNKNOWN_JOB` for an unknown handle.
fn gear_admin_status_workers_cancel(kind: ServerKind) {
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
