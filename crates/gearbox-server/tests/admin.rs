//! The admin text protocol: every command, every error reply, exact bytes
//! and line endings, and text mixed with binary packets on one connection.

mod support;

use std::time::Duration;
use support::*;

// ----- listings ----------------------------------------------------------------------

#[tokio::test]
async fn status_lists_function_total_running_workers() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "1").await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "2").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab().await;
    let mut admin = server.conn().await;
    assert_eq!(admin.listing("status").await, "f\t2\t1\t1\n.\n");
}

#[tokio::test]
async fn status_of_an_empty_server_is_just_the_dot() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(admin.listing("status").await, ".\n");
}

#[tokio::test]
async fn status_keeps_functions_with_nothing_left() {
    let server = TestServer::start().await;
    let mut worker = server.conn().await;
    worker.can_do("a").await;
    worker.close().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "b", "", "").await;
    let mut w2 = server.conn().await;
    w2.can_do("b").await;
    w2.grab().await;
    w2.send(T::WORK_COMPLETE, &[&h, b""]).await;
    w2.close().await;
    client.expect(T::WORK_COMPLETE).await;
    let mut admin = server.conn().await;
    wait_status(&mut admin, "b", |r| r == Some((0, 0, 0))).await;
    let status = parse_status(&admin.listing("status").await);
    assert_eq!(status["a"], (0, 0, 0));
    assert_eq!(status["b"], (0, 0, 0));
}

#[tokio::test]
async fn admin_commands_are_case_insensitive() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "1").await;
    let mut admin = server.conn().await;
    assert_eq!(admin.listing("STATUS").await, "f\t1\t0\t0\n.\n");
    assert_eq!(admin.listing("Status").await, "f\t1\t0\t0\n.\n");
    assert_eq!(admin.listing("SHOW JOBS").await, "H:test:1\t0\t0\t1\n.\n");
    assert!(admin.admin("GETPID").await.starts_with("OK "));
}

#[tokio::test]
async fn prioritystatus_lists_queued_jobs_per_priority() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_HIGH_BG, "f", "", "h").await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "n1").await;
    client.submit(T::SUBMIT_JOB, "f", "", "n2").await;
    client.submit(T::SUBMIT_JOB_LOW_BG, "f", "", "l").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab().await; // the HIGH one is running, not queued
    let mut admin = server.conn().await;
    assert_eq!(admin.listing("prioritystatus").await, "f\t0\t2\t1\t1\n.\n");
}

#[tokio::test]
async fn workers_lists_every_connection_with_id_and_functions_newest_first() {
    let server = TestServer::start().await;
    let mut worker = server.conn().await;
    worker.send(T::SET_CLIENT_ID, &[b"worker-one"]).await;
    worker.can_do("fa").await;
    worker.can_do("fb").await;
    worker.can_do("fa").await;
    let mut idle = server.conn().await;
    idle.sync().await;
    let mut admin = server.conn().await;
    let listing = admin.listing("workers").await;
    assert!(listing.ends_with("\n.\n"), "{listing:?}");
    let lines: Vec<&str> = listing.lines().filter(|l| *l != ".").collect();
    // worker, idle, and the admin connection itself.
    assert_eq!(lines.len(), 3, "{listing:?}");
    let mut saw_worker = false;
    let mut bare = 0;
    for line in &lines {
        let (fd, rest) = line.split_once(' ').expect("FD first");
        fd.parse::<i32>()
            .unwrap_or_else(|_| panic!("FD is a number: {line:?}"));
        if rest == "127.0.0.1 worker-one : fa fb fa" {
            saw_worker = true;
        } else {
            assert_eq!(rest, "127.0.0.1 - :", "{line:?}");
            bare += 1;
        }
    }
    assert!(saw_worker, "{listing:?}");
    assert_eq!(bare, 2);
}

#[tokio::test]
async fn show_jobs_lists_handle_retries_ignore_queued() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "1").await;
    client.submit(T::SUBMIT_JOB, "f", "", "2").await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.listing("show jobs").await,
        "H:test:1\t0\t0\t1\nH:test:2\t0\t0\t0\n.\n"
    );
}

#[tokio::test]
async fn show_unique_jobs_lists_uniques_including_empty_ones() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "f", "u1", "1").await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "2").await;
    client.submit(T::SUBMIT_JOB_BG, "g", "u2", "3").await;
    let mut admin = server.conn().await;
    let listing = admin.listing("show unique jobs").await;
    assert!(listing.ends_with(".\n"), "{listing:?}");
    let mut lines: Vec<&str> = listing.split_inclusive('\n').collect();
    assert_eq!(lines.pop(), Some(".\n"));
    lines.sort();
    assert_eq!(lines, ["\n", "u1\n", "u2\n"]);
}

// ----- maxqueue ----------------------------------------------------------------------

#[tokio::test]
async fn maxqueue_without_a_function_is_invalid_arguments() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin("maxqueue").await,
        "ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+maxqueue\r\n"
    );
}

#[tokio::test]
async fn maxqueue_forms_all_answer_ok() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    admin.can_do("f").await;
    for cmd in [
        "maxqueue f",
        "maxqueue f 3",
        "maxqueue f 1 2",
        "maxqueue f 1 2 3",
        "maxqueue f -1",
    ] {
        assert_eq!(admin.admin(cmd).await, "OK\r\n", "{cmd}");
    }
}

// ----- cancel ------------------------------------------------------------------------

/// Intended deviation: gearmand marks the job and reaps it at the next scan;
/// here it is gone at once.
#[tokio::test]
async fn cancel_job_of_a_queued_job_fails_its_clients_and_removes_it() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "", "d").await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin(&format!("cancel job {}", s(&h))).await,
        "OK\r\n"
    );
    client.expect_packet(T::WORK_FAIL, &[&h]).await;
    assert_eq!(admin.listing("show jobs").await, ".\n");
    assert_eq!(parse_status(&admin.listing("status").await)["f"], (0, 0, 0));
    assert_eq!(
        client.get_status(&h).await,
        ["0", "0", "0", "0"].map(String::from)
    );
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab_none().await;
    // Cancelling it again: it is unknown now.
    assert_eq!(
        admin.admin(&format!("cancel job {}", s(&h))).await,
        "ERR UNKNOWN_JOB\r\n"
    );
}

#[tokio::test]
async fn cancel_job_of_a_background_job_removes_it() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB_BG, "f", "u", "d").await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin(&format!("cancel job {}", s(&h))).await,
        "OK\r\n"
    );
    client.expect_nothing().await;
    assert_eq!(admin.listing("show jobs").await, ".\n");
    // The unique is free again.
    assert_ne!(client.submit(T::SUBMIT_JOB_BG, "f", "u", "d").await, h);
}

/// Intended deviation: gearmand still forwards the worker's later
/// WORK_COMPLETE, so clients see FAIL then COMPLETE.
#[tokio::test]
async fn cancel_job_of_a_running_job_fails_clients_and_swallows_the_result() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "u", "d").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab().await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin(&format!("cancel job {}", s(&h))).await,
        "OK\r\n"
    );
    client.expect_packet(T::WORK_FAIL, &[&h]).await;
    let jobs = parse_show_jobs(&admin.listing("show jobs").await);
    assert_eq!(
        jobs.get(&s(&h)).map(|j| j.1),
        Some(1),
        "IGNORE is set: {jobs:?}"
    );
    worker.send(T::WORK_DATA, &[&h, b"x"]).await;
    worker.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    // No ERROR for the worker, nothing for the client.
    worker.sync().await;
    client.expect_nothing().await;
    wait_status(&mut admin, "f", |r| r == Some((0, 0, 1))).await;
    assert_eq!(admin.listing("show jobs").await, ".\n");
}

#[tokio::test]
async fn cancel_job_of_an_unknown_handle_is_unknown_job() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin("cancel job H:test:42").await,
        "ERR UNKNOWN_JOB\r\n"
    );
    assert_eq!(
        admin.admin("cancel job nonsense").await,
        "ERR UNKNOWN_JOB\r\n"
    );
}

#[tokio::test]
async fn cancel_job_without_a_handle_is_unknown_command() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin("cancel job").await,
        "ERR UNKNOWN_COMMAND Unknown+server+commandcancel\r\n"
    );
    assert_eq!(
        admin.admin("cancel").await,
        "ERR UNKNOWN_COMMAND Unknown+server+commandcancel\r\n"
    );
}

#[tokio::test]
async fn cancel_jobs_is_unknown_error() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(admin.admin("cancel jobs x").await, "ERR UNKNOWN_ERROR\r\n");
}

// ----- functions ---------------------------------------------------------------------

#[tokio::test]
async fn create_function_adds_an_empty_function() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    admin.send_raw(b"create function newfn\r\n").await;
    assert_eq!(admin.line().await, "OK\r\n");
    assert_eq!(admin.listing("status").await, "newfn\t0\t0\t0\n.\n");
}

/// Intended deviation: gearmand creates `newf` from an LF-only line.
#[tokio::test]
async fn create_function_with_an_lf_only_line_uses_the_whole_name() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    admin.send_raw(b"create function newfn\n").await;
    assert_eq!(admin.line().await, "OK\r\n");
    assert_eq!(admin.listing("status").await, "newfn\t0\t0\t0\n.\n");
}

#[tokio::test]
async fn create_or_drop_without_a_name_is_invalid_arguments() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    for word in ["create", "drop"] {
        let expected = format!(
            "ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+{word}\r\n"
        );
        assert_eq!(admin.admin(word).await, expected);
        assert_eq!(admin.admin(&format!("{word} function")).await, expected);
    }
}

#[tokio::test]
async fn drop_function_removes_an_idle_function() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(admin.admin("create function gone").await, "OK\r\n");
    assert_eq!(admin.admin("drop function gone").await, "OK\r\n");
    assert_eq!(admin.listing("status").await, ".\n");
}

#[tokio::test]
async fn drop_function_of_an_unknown_function_is_not_found() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin("drop function nosuch").await,
        "ERR function not found\r\n"
    );
}

/// Intended deviation: gearmand matches case-insensitively.
#[tokio::test]
async fn drop_function_matches_the_name_exactly() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(admin.admin("create function Fn").await, "OK\r\n");
    assert_eq!(admin.admin("create function fn").await, "OK\r\n");
    assert_eq!(
        admin.admin("drop function FN").await,
        "ERR function not found\r\n"
    );
    assert_eq!(admin.admin("drop function fn").await, "OK\r\n");
    assert_eq!(admin.listing("status").await, "Fn\t0\t0\t0\n.\n");
}

#[tokio::test]
async fn drop_function_with_a_worker_registered_is_busy() {
    let server = TestServer::start().await;
    let mut worker = server.conn().await;
    worker.can_do("busy").await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin("drop function busy").await,
        "ERR there are still connected workers or executing clients\r\n"
    );
    assert!(parse_status(&admin.listing("status").await).contains_key("busy"));
}

/// Intended deviation: gearmand drops the function and orphans the jobs.
#[tokio::test]
async fn drop_function_with_queued_jobs_is_refused() {
    let server = TestServer::start().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "q", "", "d").await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin("drop function q").await,
        "ERR there are still queued jobs\r\n"
    );
    assert_eq!(parse_status(&admin.listing("status").await)["q"], (1, 0, 0));
}

// ----- small commands --------------------------------------------------------------

#[tokio::test]
async fn getpid_is_this_process() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin("getpid").await,
        format!("OK {}\n", std::process::id())
    );
}

#[tokio::test]
async fn verbose_reports_the_configured_level() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(admin.admin("verbose").await, "OK ERROR\n");
    let server = TestServer::with(|c| c.verbose = "INFO".into()).await;
    let mut admin = server.conn().await;
    assert_eq!(admin.admin("verbose").await, "OK INFO\n");
}

#[tokio::test]
async fn version_is_ok_and_a_version_string() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    let reply = admin.admin("version").await;
    assert!(reply.starts_with("OK "), "{reply:?}");
    assert!(
        reply.ends_with('\n') && !reply.ends_with("\r\n"),
        "{reply:?}"
    );
    assert!(reply.len() > 4, "{reply:?}");
}

#[tokio::test]
async fn show_alone_is_unknown_command() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin("show").await,
        "ERR UNKNOWN_COMMAND Unknown+server+commandshow\r\n"
    );
}

#[tokio::test]
async fn show_with_bad_arguments_is_unknown_show_arguments() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    for cmd in ["show x", "show jobs x", "show unique", "show unique x"] {
        assert_eq!(
            admin.admin(cmd).await,
            "ERR UNKNOWN_SHOW_ARGUMENTS\r\n",
            "{cmd}"
        );
    }
}

#[tokio::test]
async fn unknown_command_has_no_space_before_the_word() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin("foo").await,
        "ERR UNKNOWN_COMMAND Unknown+server+commandfoo\r\n"
    );
    assert_eq!(
        admin.admin("Foo bar").await,
        "ERR UNKNOWN_COMMAND Unknown+server+commandFoo\r\n"
    );
}

#[tokio::test]
async fn empty_line_is_unknown_command_with_no_word() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    admin.send_raw(b"\n").await;
    assert_eq!(
        admin.line().await,
        "ERR UNKNOWN_COMMAND Unknown+server+command\r\n"
    );
    admin.send_raw(b"\r\n").await;
    assert_eq!(
        admin.line().await,
        "ERR UNKNOWN_COMMAND Unknown+server+command\r\n"
    );
    admin.send_raw(b"   \r\n").await;
    assert_eq!(
        admin.line().await,
        "ERR UNKNOWN_COMMAND Unknown+server+command\r\n"
    );
}

#[tokio::test]
async fn tokens_are_split_on_runs_of_spaces() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(admin.admin("create   function  spaced").await, "OK\r\n");
    assert_eq!(admin.listing("status").await, "spaced\t0\t0\t0\n.\n");
}

#[tokio::test]
async fn five_tokens_are_fine() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(admin.admin("maxqueue f 1 2 3").await, "OK\r\n");
}

/// Intended deviation: gearmand closes the connection without a reply.
#[tokio::test]
async fn six_tokens_get_too_many_arguments_and_the_connection_stays_open() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin("a b c d e f").await,
        "ERR TOO_MANY_ARGUMENTS Admin+commands+take+at+most+5+words\r\n"
    );
    assert_eq!(
        admin.admin("maxqueue f 1 2 3 4").await,
        "ERR TOO_MANY_ARGUMENTS Admin+commands+take+at+most+5+words\r\n"
    );
    assert_eq!(admin.listing("status").await, ".\n");
}

#[tokio::test]
async fn crlf_and_lf_lines_get_the_same_replies() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    admin.send_raw(b"status\r\n").await;
    assert_eq!(admin.read_listing().await, ".\n");
    admin.send_raw(b"status\n").await;
    assert_eq!(admin.read_listing().await, ".\n");
    admin.send_raw(b"getpid\r\n").await;
    assert_eq!(admin.line().await, format!("OK {}\n", std::process::id()));
}

// ----- shutdown ----------------------------------------------------------------------

#[tokio::test]
async fn shutdown_over_loopback_answers_ok_and_stops_the_server() {
    let mut server = TestServer::start().await;
    let mut bystander = server.conn().await;
    bystander.sync().await;
    let mut admin = server.conn().await;
    assert_eq!(admin.admin("shutdown").await, "OK\r\n");
    assert!(
        server.stopped_within(WAIT).await,
        "run() did not return after shutdown"
    );
    admin.expect_closed().await;
    bystander.expect_closed().await;
    let addr = server.addr.unwrap();
    let refused =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "the listener is closed: {refused:?}"
    );
}

// ----- text and binary on one connection ---------------------------------------------

#[tokio::test]
async fn text_and_binary_interleave_on_one_connection() {
    let server = TestServer::start().await;
    let mut conn = server.conn().await;
    conn.send(T::ECHO_REQ, &[b"one"]).await;
    conn.expect_packet(T::ECHO_RES, &[b"one"]).await;
    assert_eq!(conn.listing("status").await, ".\n");
    let h = conn.submit(T::SUBMIT_JOB_BG, "f", "", "d").await;
    assert_eq!(conn.listing("status").await, "f\t1\t0\t0\n.\n");
    conn.send(T::GET_STATUS, &[&h]).await;
    conn.expect(T::STATUS_RES).await;
}

#[tokio::test]
async fn pipelined_text_and_binary_replies_come_back_in_order() {
    let server = TestServer::start().await;
    let mut conn = server.conn().await;
    let mut burst = Vec::new();
    burst.extend(req_bytes(T::ECHO_REQ, &[b"first"]));
    burst.extend_from_slice(b"status\r\n");
    burst.extend(req_bytes(T::SUBMIT_JOB_BG, &[b"f", b"", b"d"]));
    burst.extend_from_slice(b"getpid\n");
    burst.extend(req_bytes(T::ECHO_REQ, &[b"second"]));
    burst.extend_from_slice(b"status\n");
    burst.extend_from_slice(b"foo\r\n");
    burst.extend(req_bytes(T::OPTION_REQ, &[b"nope"]));
    conn.send_raw(&burst).await;
    conn.expect_packet(T::ECHO_RES, &[b"first"]).await;
    assert_eq!(conn.read_listing().await, ".\n");
    assert_eq!(conn.created().await, handle(1));
    assert_eq!(conn.line().await, format!("OK {}\n", std::process::id()));
    conn.expect_packet(T::ECHO_RES, &[b"second"]).await;
    assert_eq!(conn.read_listing().await, "f\t1\t0\t0\n.\n");
    assert_eq!(
        conn.line().await,
        "ERR UNKNOWN_COMMAND Unknown+server+commandfoo\r\n"
    );
    conn.expect_error("UNKNOWN_OPTION", "Server does not recognize given option")
        .await;
    conn.expect_nothing().await;
}

#[tokio::test]
async fn admin_line_split_across_writes_is_reassembled() {
    let server = TestServer::start().await;
    let mut conn = server.conn().await;
    conn.send_raw(b"sta").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.send_raw(b"tus\r").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.send_raw(b"\n").await;
    assert_eq!(conn.read_listing().await, ".\n");
}

#[tokio::test]
async fn shutdown_with_a_bad_argument_is_refused() {
    let server = TestServer::start().await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin("shutdown now").await,
        "ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+shutdown\r\n"
    );
    admin.sync().await;
}

#[tokio::test]
async fn shutdown_graceful_waits_for_running_jobs_and_hands_out_no_more() {
    let mut server = TestServer::start().await;
    let mut client = server.conn().await;
    let running = client.submit(T::SUBMIT_JOB, "f", "", "1").await;
    client.submit(T::SUBMIT_JOB_BG, "f", "", "2").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    assert_eq!(worker.grab().await.0, running);
    let mut admin = server.conn().await;
    assert_eq!(admin.admin("shutdown graceful").await, "OK\r\n");
    assert!(
        !server.stopped_within(QUIET).await,
        "stopped while a job was running"
    );
    // No new work is handed out, and no wake-up promises any.
    worker.grab_none().await;
    worker.send(T::PRE_SLEEP, &[]).await;
    worker.expect_nothing().await;
    worker.send(T::WORK_COMPLETE, &[&running, b"r"]).await;
    client
        .expect_packet(T::WORK_COMPLETE, &[&running, b"r"])
        .await;
    assert!(server.stopped_within(WAIT).await, "did not stop once idle");
    client.expect_closed().await;
}

#[tokio::test]
async fn ipv6_loopback_peers_show_as_such_and_may_shut_down() {
    let mut server = TestServer::with(|c| c.listen = vec!["[::1]:0".parse().unwrap()]).await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    let mut admin = server.conn().await;
    let workers = admin.listing("workers").await;
    assert!(
        workers.lines().any(|l| l.ends_with(" ::1 - : f")),
        "{workers:?}"
    );
    assert_eq!(admin.admin("shutdown").await, "OK\r\n");
    assert!(server.stopped_within(WAIT).await);
}
