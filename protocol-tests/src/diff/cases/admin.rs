//! Every admin text command and every admin error reply (§4).

use super::case;
use crate::diff::case::Case;

const CAT: &str = "admin";

/// One connection sending one admin line (CRLF) on an empty server.
fn one_line(name: &str, line: &str, about: &str) -> Case {
    case(name, CAT)
        .about(about)
        .connect()
        .line(1, line)
        .settle()
}

pub fn cases() -> Vec<Case> {
    vec![
        one_line("admin_status_empty", "status", "status on an empty server is just the terminator"),
        case("admin_status_counts", CAT)
            .about("status: TOTAL counts queued+running, WORKERS counts CAN_DO entries, idle functions stay listed")
            .connect_n(3)
            .send(1, "SUBMIT_JOB_BG", &["a", "", "1"])
            .send(1, "SUBMIT_JOB_BG", &["a", "", "2"])
            .send(1, "SUBMIT_JOB", &["b", "", "3"])
            .send(2, "CAN_DO", &["a"])
            .send(2, "CAN_DO", &["c"])
            .settle()
            .send(2, "GRAB_JOB", &[])
            .settle()
            .line(3, "status"),
        case("admin_status_case_insensitive", CAT)
            .about("command words are case-insensitive and runs of spaces separate tokens")
            .connect_n(2)
            .send(1, "CAN_DO", &["f"])
            .settle()
            .line(2, "STATUS")
            .line(2, "Status")
            .line(2, "status  ")
            .line(2, "status x")
            .line(2, "show JOBS")
            .line(2, "SHOW UNIQUE JOBS")
            .settle(),
        case("admin_leading_space", CAT)
            .about("a line starting with a space: gearmand sees an empty command word")
            .connect()
            .line(1, " status")
            .line(1, " ")
            .settle()
            .deviation("C15", "gearboxd ignores spaces at the ends of an admin line")
            .gearbox(
                1,
                1,
                &[
                    r#"text ".\n""#,
                    r#"text "ERR UNKNOWN_COMMAND Unknown+server+command\r\n""#,
                ],
            ),
        case("admin_status_lf_only", CAT)
            .about("LF-only lines work like CRLF lines")
            .connect_n(2)
            .send(1, "CAN_DO", &["f"])
            .settle()
            .line_lf(2, "status")
            .line_lf(2, "prioritystatus")
            .line_lf(2, "version")
            .settle(),
        case("admin_prioritystatus_counts", CAT)
            .about("prioritystatus counts queued jobs per priority, not running ones")
            .connect_n(3)
            .send(1, "SUBMIT_JOB_HIGH_BG", &["a", "", "1"])
            .send(1, "SUBMIT_JOB_BG", &["a", "", "2"])
            .send(1, "SUBMIT_JOB_LOW_BG", &["a", "", "3"])
            .send(1, "SUBMIT_JOB_LOW", &["b", "", "4"])
            .send(2, "CAN_DO", &["a"])
            .settle()
            .send(2, "GRAB_JOB", &[])
            .settle()
            .line(3, "prioritystatus"),
        one_line("admin_prioritystatus_empty", "prioritystatus", "prioritystatus on an empty server"),
        case("admin_workers_lists_connections", CAT)
            .about("workers: one line per connection (admin included), client id, functions newest first")
            .connect_n(4)
            .send(1, "SET_CLIENT_ID", &["w-one"])
            .send(1, "CAN_DO", &["fa"])
            .send(1, "CAN_DO", &["fb"])
            .send(2, "SUBMIT_JOB_BG", &["fa", "", "x"])
            .send(3, "CAN_DO", &["fb"])
            .send(3, "SET_CLIENT_ID", &["w two"])
            .settle()
            .line(4, "workers"),
        case("admin_workers_after_disconnect", CAT)
            .about("a closed connection disappears from workers")
            .connect_n(3)
            .send(1, "CAN_DO", &["f"])
            .send(2, "CAN_DO", &["g"])
            .settle()
            .close(1)
            .settle()
            .line(3, "workers"),
        case("admin_workers_fast_connects", CAT)
            .about("four connections opened back to back are listed in connect order")
            .connect_raw()
            .connect_raw()
            .connect_raw()
            .connect_raw()
            .send(1, "SET_CLIENT_ID", &["one"])
            .send(2, "SET_CLIENT_ID", &["two"])
            .send(3, "SET_CLIENT_ID", &["three"])
            .settle()
            .line(4, "workers"),
        case("admin_workers_five_connections", CAT)
            .about("gearmand lists connections thread by thread; gearboxd in connect order")
            .connect_n(5)
            .send(1, "SET_CLIENT_ID", &["one"])
            .send(2, "SET_CLIENT_ID", &["two"])
            .send(3, "SET_CLIENT_ID", &["three"])
            .send(4, "SET_CLIENT_ID", &["four"])
            .settle()
            .line(5, "workers")
            .deviation("C16", "gearboxd lists connections in connect order, gearmand by I/O thread")
            .gearbox(
                2,
                5,
                &[
                    r#"text "<fd> <addr> one :\n""#,
                    r#"text "<fd> <addr> two :\n""#,
                    r#"text "<fd> <addr> three :\n""#,
                    r#"text "<fd> <addr> four :\n""#,
                    r#"text "<fd> <addr> - :\n""#,
                    r#"text ".\n""#,
                ],
            ),
        one_line(
            "admin_maxqueue_no_function",
            "maxqueue",
            "maxqueue without a function: ERR INVALID_ARGUMENTS",
        ),
        case("admin_maxqueue_forms", CAT)
            .about("maxqueue FN, FN N, FN H N, FN H N L all answer OK")
            .connect_n(2)
            .send(1, "CAN_DO", &["f"])
            .settle()
            .line(2, "maxqueue f")
            .line(2, "maxqueue f 1")
            .line(2, "maxqueue f 1 2")
            .line(2, "maxqueue f 1 2 3")
            .line(2, "maxqueue f -5")
            .line(2, "maxqueue f x")
            .settle(),
        case("admin_maxqueue_unknown_function", CAT)
            .about("maxqueue on an unknown function answers OK")
            .connect()
            .line(1, "maxqueue nosuch 3")
            .settle(),
        case("admin_maxqueue_unknown_function_status", CAT)
            .about("maxqueue on an unknown function: gearmand stores nothing, gearboxd creates it")
            .connect()
            .line(1, "maxqueue nosuch 3")
            .settle()
            .line(1, "status")
            .settle()
            .deviation("C14", "gearboxd creates the function with the limit")
            .gearbox(2, 1, &[r#"text "nosuch\t0\t0\t0\n""#, r#"text ".\n""#]),
        one_line("admin_show_jobs_empty", "show jobs", "show jobs on an empty server"),
        case("admin_show_jobs_lists", CAT)
            .about("show jobs: HANDLE RETRIES IGNORE QUEUED(background) for queued and running jobs")
            .connect_n(3)
            .send(1, "SUBMIT_JOB", &["f", "", "fg"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "bg"])
            .send(1, "SUBMIT_JOB_LOW_BG", &["g", "", "bg2"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .line(3, "show jobs"),
        one_line(
            "admin_show_unique_jobs_empty",
            "show unique jobs",
            "show unique jobs on an empty server",
        ),
        case("admin_show_unique_jobs_lists", CAT)
            .about("show unique jobs lists every unique, the empty one as an empty line")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["f", "alpha", "1"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "2"])
            .send(1, "SUBMIT_JOB_BG", &["g", "beta", "3"])
            .send(1, "SUBMIT_JOB_BG", &["g", "-", "4"])
            .settle()
            .line(2, "show unique jobs"),
        case("admin_show_errors", CAT)
            .about("show alone is an unknown command; show x and show jobs x are bad show arguments")
            .connect()
            .line(1, "show")
            .line(1, "show x")
            .line(1, "show jobs x")
            .line(1, "show unique")
            .line(1, "show unique jobs x")
            .settle(),
        case("admin_cancel_job_errors", CAT)
            .about("cancel job of an unknown handle, cancel job without handle, cancel jobs x")
            .connect()
            .line(1, "cancel job $H:42")
            .line(1, "cancel job")
            .line(1, "cancel jobs x")
            .line(1, "cancel")
            .settle(),
        case("admin_create_function_crlf", CAT)
            .about("create function with CRLF creates the whole name")
            .connect()
            .line(1, "create function newfn")
            .line(1, "status")
            .settle(),
        case("admin_create_function_lf", CAT)
            .about("create function with LF only: gearmand drops the last character")
            .connect()
            .line_lf(1, "create function newfn")
            .settle()
            .line(1, "status")
            .settle()
            .deviation("C12", "gearboxd creates the whole name")
            .gearbox(2, 1, &[r#"text "newfn\t0\t0\t0\n""#, r#"text ".\n""#]),
        case("admin_create_function_existing", CAT)
            .about("create function of an existing function answers OK and changes nothing")
            .connect_n(2)
            .send(1, "CAN_DO", &["f"])
            .settle()
            .line(2, "create function f")
            .line(2, "status")
            .settle(),
        case("admin_drop_function_idle", CAT)
            .about("drop function of an idle function: OK, and it leaves status")
            .connect()
            .line(1, "create function f")
            .line(1, "create function g")
            .settle()
            .line(1, "drop function f")
            .line(1, "status")
            .settle(),
        one_line(
            "admin_drop_function_not_found",
            "drop function nosuch",
            "drop function of an unknown function",
        ),
        case("admin_drop_function_with_worker", CAT)
            .about("drop function with a connected worker is refused")
            .connect_n(2)
            .send(1, "CAN_DO", &["f"])
            .settle()
            .line(2, "drop function f")
            .line(2, "status")
            .settle(),
        case("admin_drop_function_case_insensitive", CAT)
            .about("gearmand drops every case-variant of the name, one reply line each")
            .connect()
            .line(1, "create function abc")
            .line(1, "create function ABC")
            .settle()
            .line(1, "drop function Abc")
            .settle()
            .line(1, "status")
            .settle()
            .deviation("C13", "gearboxd matches the name exactly")
            .gearbox(2, 1, &[r#"text "ERR function not found\r\n""#])
            .gearbox(
                3,
                1,
                &[
                    r#"text "ABC\t0\t0\t0\n""#,
                    r#"text "abc\t0\t0\t0\n""#,
                    r#"text ".\n""#,
                ],
            ),
        case("admin_drop_function_queued_jobs", CAT)
            .about("gearmand drops a function with queued jobs; gearboxd refuses")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["f", "", "x"])
            .settle()
            .line(2, "drop function f")
            .settle()
            .line(2, "status")
            .settle()
            .deviation("C13", "gearboxd refuses while jobs are queued")
            .gearbox(2, 2, &[r#"text "ERR there are still queued jobs\r\n""#])
            .gearbox(3, 2, &[r#"text "f\t1\t0\t0\n""#, r#"text ".\n""#]),
        case("admin_getpid_verbose_version", CAT)
            .about("getpid, verbose and version reply OK <value> with LF")
            .connect()
            .line(1, "getpid")
            .line(1, "verbose")
            .line(1, "version")
            .settle(),
        case("admin_argument_errors", CAT)
            .about("create/drop without enough arguments: ERR INVALID_ARGUMENTS …<cmd>")
            .connect()
            .line(1, "create")
            .line(1, "create function")
            .line(1, "drop")
            .line(1, "drop function")
            .line(1, "create x y")
            .settle(),
        case("admin_unknown_commands", CAT)
            .about("unknown commands: ERR UNKNOWN_COMMAND with the command glued on; empty line")
            .connect()
            .line(1, "foo")
            .line(1, "")
            .line(1, "status\tx")
            .line(1, "getpid now")
            .line(1, "workers x")
            .settle(),
        case("admin_shutdown", CAT)
            .about("shutdown: UNKNOWN_COMMAND in gearmand 1.1.20; gearboxd shuts down")
            .local_only("it would shut the target down")
            .connect()
            .line(1, "shutdown")
            .settle()
            .deviation("C18", "gearboxd accepts shutdown from loopback, answers OK and exits")
            .gearbox(1, 1, &[r#"text "OK\r\n""#, "<closed>"]),
        case("admin_shutdown_bad_argument", CAT)
            .about("shutdown with an unknown argument")
            .local_only("a server before gearmand 1.1.15 would shut down")
            .connect()
            .line(1, "shutdown now")
            .settle()
            .deviation("C18", "gearboxd answers INVALID_ARGUMENTS …shutdown")
            .gearbox(
                1,
                1,
                &[r#"text "ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+shutdown\r\n""#],
            ),
        case("admin_five_tokens", CAT)
            .about("a line of five tokens is fine")
            .connect()
            .line(1, "maxqueue f 1 2 3")
            .line(1, "foo a b c d")
            .settle(),
        case("admin_six_tokens", CAT)
            .about("six tokens: gearmand closes without a reply")
            .connect()
            .line(1, "maxqueue f 1 2 3 4")
            .line(1, "status")
            .settle()
            .deviation("C15", "gearboxd answers ERR TOO_MANY_ARGUMENTS and keeps the connection")
            .gearbox(
                1,
                1,
                &[
                    r#"text "ERR TOO_MANY_ARGUMENTS Admin+commands+take+at+most+5+words\r\n""#,
                    r#"text ".\n""#,
                ],
            ),
        case("admin_pipelined_in_one_write", CAT)
            .about("several admin lines in one write are answered in order")
            .connect_n(2)
            .send(1, "CAN_DO", &["f"])
            .settle()
            .lines(2, &["status", "version", "workers", "foo", "getpid"])
            .settle(),
    ]
}
