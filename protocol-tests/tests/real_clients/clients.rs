//! Client and worker wrappers: one function per client library and worker,
//! and the round trip every cross-language test runs.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lang {
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
    pub(crate) fn name(self) -> &'static str {
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

pub(crate) fn with_server_args<'a>(
    srv_port: &'a str,
    script: &'a str,
    args: &[&'a str],
) -> Vec<&'a str> {
    let mut full = vec![script, HOST, srv_port];
    full.extend_from_slice(args);
    full
}

/// `INTERPRETER clients/SCRIPT HOST PORT args...`, bounded by [`RUN_TIMEOUT`].
pub(crate) fn run_client(
    srv: &TestServer,
    interpreter: &str,
    script: &str,
    args: &[&str],
) -> Output {
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
pub(crate) fn php_client(srv: &TestServer, args: &[&str]) -> Output {
    run_client(srv, "php", "php_client.php", args)
}

/// `python3 clients/gear_client.py HOST PORT args...`
pub(crate) fn python_client(srv: &TestServer, args: &[&str]) -> Output {
    run_client(srv, "python3", "gear_client.py", args)
}

/// `perl clients/perl_client.pl HOST PORT args...`
pub(crate) fn perl_client(srv: &TestServer, args: &[&str]) -> Output {
    run_client(srv, "perl", "perl_client.pl", args)
}

/// `python3 clients/pygearman_client.py HOST PORT args...`
pub(crate) fn pygearman_client(srv: &TestServer, args: &[&str]) -> Output {
    run_client(srv, "python3", "pygearman_client.py", args)
}

/// `node clients/node/client.js HOST PORT args...`
pub(crate) fn node_client(srv: &TestServer, args: &[&str]) -> Output {
    run_client(srv, "node", "node/client.js", args)
}

/// `python3 clients/gear_admin.py HOST PORT args...`: gear's admin requests. Checks
/// it exited 0 with nothing on stderr and returns gear's `request.response`.
pub(crate) fn gear_admin_ok(srv: &TestServer, args: &[&str]) -> String {
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
pub(crate) fn gearman_cli(srv: &TestServer, args: &[&str]) -> Output {
    let port = srv.port_str();
    let mut full = vec!["-h", HOST, "-p", &port];
    full.extend_from_slice(args);
    run("gearman", &full, None, RUN_TIMEOUT)
}

/// `gearadmin -h HOST -p PORT args...`
pub(crate) fn gearadmin(srv: &TestServer, args: &[&str]) -> Output {
    let port = srv.port_str();
    let mut full = vec!["-h", HOST, "-p", &port];
    full.extend_from_slice(args);
    run("gearadmin", &full, None, RUN_TIMEOUT)
}

/// Starts a worker in `lang` for `function`, running `count` jobs in `mode` (see the
/// scripts in clients/), appending "started/done <payload>" lines to `outfile`.
/// The CLI worker only supports "reverse" (it runs clients/cli_worker_cmd.sh).
pub(crate) fn spawn_worker(
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
pub(crate) fn kv(out: &Output, key: &str) -> String {
    let prefix = format!("{key}=");
    out.stdout_str()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| panic!("no `{key}=` line in output:\n{}", out.describe()))
}

pub(crate) fn lines(out: &Output) -> Vec<String> {
    out.stdout_str().lines().map(str::to_owned).collect()
}

pub(crate) fn reversed(s: &str) -> String {
    s.chars().rev().collect()
}

/// Waits until `path` contains the line `line`.
pub(crate) fn wait_for_file_line(path: &Path, line: &str) {
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

pub(crate) fn assert_worker_exits_ok(worker: &mut BackgroundProcess) {
    let status = worker.wait_exit(WORKER_EXIT);
    assert!(
        status.success(),
        "worker exited with {status}\n{}",
        worker.describe()
    );
}

/// Submits a foreground job with `client` and returns the result as that client's
/// user sees it, after checking the client reported success.
pub(crate) fn submit_foreground(
    srv: &TestServer,
    client: Lang,
    function: &str,
    payload: &str,
) -> String {
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
pub(crate) fn submit_background(
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
pub(crate) fn round_trip(kind: ServerKind, client: Lang, worker: Lang) {
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
