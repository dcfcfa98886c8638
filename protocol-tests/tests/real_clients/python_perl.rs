//! Python gear and Perl Gearman::Client features.

use super::*;

/// gear appends WORK_DATA, WORK_WARNING and WORK_COMPLETE data to job.data in order.
pub(crate) fn python_work_data_and_warning(kind: ServerKind) {
    let srv = TestServer::start(kind);
    let out_file = srv.dir().join("worker.out");
    let mut w = spawn_worker(&srv, Lang::Perl, "py_chunks", "chunks", 1, &out_file);
    let result = submit_foreground(&srv, Lang::Python, "py_chunks", "hello");
    assert_eq!(result, "chunk1:warn:hellochunk2:final:hello");
    assert_worker_exits_ok(&mut w);
}

/// Without --exceptions a gear client (which never asks for the `exceptions` option)
/// sees a worker's WORK_EXCEPTION as a plain failure.
pub(crate) fn python_exception_without_exceptions_flag(kind: ServerKind) {
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
pub(crate) fn python_exception_with_exceptions_flag(kind: ServerKind) {
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
pub(crate) fn perl_taskset_callbacks(kind: ServerKind) {
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
pub(crate) fn perl_fail(kind: ServerKind) {
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
