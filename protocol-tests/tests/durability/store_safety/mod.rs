//! Issue #15, SQLite store safety, black-box: one server per queue file; a
//! queue file deleted, replaced or made read-only under a running server is
//! an outage, not a silent loss; a file that cannot serve stops the start.
//!
//! Every runtime case asserts the same three things: no acknowledged job is
//! lost (a clean stop, a new server on the path, every job drained: exactly
//! the acknowledged ones, each once, no refused one), every client gets an
//! answer (JOB_CREATED or ERROR QUEUE_ERROR) within [`ANSWER_BOUND`] (the
//! server's 5 s bound on a held JOB_CREATED, plus slack), and so does the
//! ECHO_REQ sent right behind each submit on the same connection. A hang
//! trips the bound; a job acknowledged while the file is gone or read-only
//! (more than [`NOTICED_WITHIN`] into the fault) trips the outage check; a
//! lost, doubled or refused-but-kept job trips the drain. Figures are
//! printed: `cargo test -p protocol-tests --test durability store_safety --
//! --nocapture --test-threads 1`.
//!
//! `queue_file_and_its_shm_made_read_only_while_running` is ignored: gearboxd
//! dies of SIGBUS when `q.db-shm` turns immutable (see that test). Run it
//! with `-- --ignored`.
//!
//! One file per family: `owner` (two servers on one file), `faults` (the
//! file deleted, replaced or made read-only under a running server),
//! `startup` (files that cannot serve stop the start).

use super::*;
use protocol_tests::durable::{
    recover_jobs, start_expecting_exit, submit_with_echo, Immutable, Spawned, Verdict, ANSWER_BOUND,
};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

const FN: &str = "store_safety";
/// Loading clients during a runtime fault, and their pause between submits.
const CLIENTS: usize = 4;
const PAUSE: Duration = Duration::from_millis(20);
/// How long a runtime fault lasts: past the 5 s bound on held JOB_CREATEDs,
/// so those are answered while the fault is still there.
const FAULT_FOR: Duration = Duration::from_secs(7);
/// How soon after the repair a submit must be acknowledged again.
const RECOVERY: Duration = Duration::from_secs(10);
/// A submit sent this long after the fault, before the repair, must not be
/// acknowledged (the server checks its path every 100 ms before commits).
const NOTICED_WITHIN: Duration = Duration::from_millis(500);
/// A server that refuses to start must have exited within this.
const EXIT_WITHIN: Duration = Duration::from_secs(5);

/// A gearboxd on `file` (TestServer: retried on a new port), logging at INFO.
fn start_info(file: &SqliteFile) -> TestServer {
    let mut args = file.server_args();
    args.extend(["--verbose".to_owned(), "INFO".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestServer::start_with_args(ServerKind::Gearboxd, &args)
}

fn submit_acked(conn: &mut Conn, payload: &str) {
    let p = payload.as_bytes();
    submit_bg(conn, Prio::Normal, FN, p, p)
        .unwrap_or_else(|e| panic!("{payload} refused by a healthy server: {e}"));
}

/// The `gearboxd: ...` line, for the report.
fn message_line(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.starts_with("gearboxd: "))
        .unwrap_or("(no `gearboxd:` line)")
        .to_owned()
}

/// A refused start: a non-zero exit within [`EXIT_WITHIN`], and a message
/// naming `path`.
fn assert_refused_start(
    what: &str,
    path: &Path,
    (status, stderr, ran): (Option<ExitStatus>, String, Duration),
) {
    let shown = path.display().to_string();
    match status {
        None => panic!("{what}: gearboxd still runs after {ran:?}:\n{stderr}"),
        Some(s) => assert!(!s.success(), "{what}: gearboxd exited with {s}:\n{stderr}"),
    }
    assert!(
        ran <= EXIT_WITHIN,
        "{what}: gearboxd took {ran:?} to exit:\n{stderr}"
    );
    assert!(
        stderr.contains(&shown),
        "{what}: the message does not name {shown}:\n{stderr}"
    );
    println!(
        "[store_safety start] {what}: exit {:?} after {} ms: {}",
        status.and_then(|s| s.code()),
        ran.as_millis(),
        message_line(&stderr)
    );
}

// ---------------------------------------------------------------------------------------
// 1, 2: one server per queue file
// ---------------------------------------------------------------------------------------

fn dir_of(file: &SqliteFile) -> PathBuf {
    file.path
        .parent()
        .expect("the file's directory")
        .to_path_buf()
}

mod faults;
mod owner;
mod startup;
