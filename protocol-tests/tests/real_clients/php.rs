//! PHP (pecl/gearman) client features.

use super::*;

pub(crate) fn php_do_normal(kind: ServerKind) {
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

pub(crate) fn php_do_normal_concatenates_work_data(kind: ServerKind) {
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

pub(crate) fn php_do_background(kind: ServerKind) {
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
pub(crate) fn normalise_created(mut got: Vec<String>) -> Vec<String> {
    if let Some(first) = got.first_mut() {
        if let Some(handle) = first.strip_prefix("created ") {
            if !handle.is_empty() && !handle.contains(' ') {
                *first = "created <handle>".to_owned();
            }
        }
    }
    got
}

pub(crate) fn php_add_task_callbacks(kind: ServerKind) {
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
pub(crate) fn php_fail(kind: ServerKind) {
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
pub(crate) fn php_exception(kind: ServerKind) {
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
pub(crate) fn php_job_status(kind: ServerKind) {
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
