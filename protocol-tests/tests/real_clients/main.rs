//! Real clients against a real server: every test runs once against gearmand and once
//! against gearboxd (test names end in `::gearmand` / `::gearboxd`).
//!
//! The assertions are about what a user of each client library sees (return values,
//! callbacks fired, return codes, files written by workers, gearadmin output), not
//! about bytes on the wire. Where two conforming servers must differ (version string,
//! pid, file descriptors, row order, job handles) the checks normalise exactly that.
//!
//! `clients.rs` wraps each client library and worker; the other files hold the tests,
//! one family each, and the list below runs every one against both servers.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use protocol_tests::{
    client_script, read_file, run, wait_until, BackgroundProcess, OutputExt, ServerKind,
    TestServer, HOST, RUN_TIMEOUT,
};

mod clients;
mod gear_admin;
mod gearadmin;
mod php;
mod python_perl;
mod round_trips;

use clients::*;
use gear_admin::*;
use gearadmin::*;
use php::*;
use python_perl::*;
use round_trips::*;

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
