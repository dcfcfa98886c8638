//! At least one case per packet type (all 42), including the types gearmand rejects
//! with ERROR INVALID_COMMAND.

use super::case;
use crate::diff::case::Case;
use crate::diff::wire::packet_name;

const CAT: &str = "packets";

/// Types a peer may not send: gearmand answers ERROR INVALID_COMMAND "Command not
/// expected" and keeps the connection open (the ECHO after it proves that).
const REJECTED: [u32; 14] = [5, 6, 8, 10, 11, 17, 19, 20, 24, 27, 31, 35, 40, 42];

fn rejected(t: u32) -> Case {
    let name = format!("rejected_{}", packet_name(t).to_ascii_lowercase());
    let body: &[&str] = match t {
        35 => &["f", "u", "1", "2", "3", "4", "5", "data"],
        8 => &["H:x:1"],
        11 => &["H:x:1", "f", "data"],
        31 => &["H:x:1", "f", "u", "data"],
        40 => &["H:x:1", "f", "u", "r", "data"],
        20 => &["H:x:1", "1", "0", "0", "0"],
        42 => &["u", "1", "0", "0", "0", "0"],
        19 => &["CODE", "text"],
        _ => &[],
    };
    case(&name, CAT)
        .about(&format!(
            "type {t} ({}) from a peer gets ERROR INVALID_COMMAND and the connection stays open",
            packet_name(t)
        ))
        .connect()
        .send(1, t, body)
        .send(1, "ECHO_REQ", &["still open"])
        .settle()
        .line(1, "status")
}

/// c1 submits `f`/`u`/`data` (foreground), c2 registers f and grabs it.
fn assigned(c: Case) -> Case {
    c.connect_n(2)
        .send(1, "SUBMIT_JOB", &["f", "u", "data"])
        .settle()
        .send(2, "CAN_DO", &["f"])
        .send(2, "GRAB_JOB", &[])
        .settle()
}

pub fn cases() -> Vec<Case> {
    let mut v = vec![
        // 1 CAN_DO
        case("can_do_registers_worker", CAT)
            .about("CAN_DO creates the function; status counts one worker; workers lists it")
            .connect_n(2)
            .send(1, "CAN_DO", &["f"])
            .settle()
            .line(2, "status")
            .line(2, "workers"),
        case("can_do_duplicates_not_merged", CAT)
            .about("CAN_DO twice counts two workers and lists the function twice")
            .connect_n(2)
            .send(1, "CAN_DO", &["f"])
            .send(1, "CAN_DO", &["g"])
            .send(1, "CAN_DO", &["f"])
            .settle()
            .line(2, "status")
            .line(2, "workers"),
        case("can_do_trailing_nul_is_part_of_name", CAT)
            .about("CAN_DO \"f\\0\" registers a function other than f")
            .local_only("--reset cannot drop the function it leaves behind")
            .connect_n(3)
            .send(1, "CAN_DO", &["f\0"])
            .send(2, "SUBMIT_JOB_BG", &["f", "", "x"])
            .settle()
            .send(1, "GRAB_JOB", &[])
            .settle()
            .line(3, "status"),
        case("can_do_empty_function_name", CAT)
            .about("the empty function name is a function like any other")
            .local_only("--reset cannot drop the function it leaves behind")
            .connect_n(3)
            .send(1, "SUBMIT_JOB_BG", &["", "", "x"])
            .settle()
            .send(2, "CAN_DO", &[""])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .line(3, "status"),
        case("can_do_binary_function_name", CAT)
            .about("function names are bytes: a name with a space and 0xff")
            .local_only("--reset cannot drop the function it leaves behind")
            .connect_n(3)
            .send_bytes(1, "SUBMIT_JOB_BG", vec![b"a b\xff".to_vec(), b"".to_vec(), b"x".to_vec()])
            .settle()
            .send_bytes(2, "CAN_DO", vec![b"a b\xff".to_vec()])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .line(3, "status"),
        case("can_do_is_case_sensitive", CAT)
            .about("F and f are different functions")
            .connect_n(3)
            .send(1, "SUBMIT_JOB_BG", &["F", "", "x"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .line(3, "status"),
        // 2 CANT_DO
        case("cant_do_removes_every_entry", CAT)
            .about("CANT_DO removes all of the connection's entries for that function only")
            .connect_n(2)
            .send(1, "CAN_DO", &["f"])
            .send(1, "CAN_DO", &["g"])
            .send(1, "CAN_DO", &["f"])
            .send(1, "CANT_DO", &["f"])
            .settle()
            .line(2, "status")
            .line(2, "workers"),
        case("cant_do_unknown_function", CAT)
            .about("CANT_DO of a function never registered is silent")
            .connect_n(2)
            .send(1, "CANT_DO", &["nope"])
            .send(1, "ECHO_REQ", &["ok"])
            .settle()
            .line(2, "status"),
        case("cant_do_requeues_held_job", CAT)
            .about("CANT_DO while holding a job re-queues it; the old worker's WORK_COMPLETE gets JOB_NOT_FOUND")
            .with(assigned)
            .send(2, "CANT_DO", &["f"])
            .settle()
            .connect()
            .line(3, "status")
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", "late"])
            .settle()
            .send(3, "CAN_DO", &["f"])
            .send(3, "GRAB_JOB", &[])
            .settle()
            .line(3, "show jobs"),
        // 3 RESET_ABILITIES
        case("reset_abilities_clears_functions", CAT)
            .about("RESET_ABILITIES removes all entries of the connection")
            .connect_n(2)
            .send(1, "CAN_DO", &["f"])
            .send(1, "CAN_DO", &["g"])
            .send(1, "RESET_ABILITIES", &[])
            .settle()
            .line(2, "status")
            .line(2, "workers"),
        case("reset_abilities_requeues_held_job", CAT)
            .about("RESET_ABILITIES while holding a job re-queues it")
            .with(assigned)
            .send(2, "RESET_ABILITIES", &[])
            .settle()
            .connect()
            .line(3, "status")
            .settle()
            .send(2, "WORK_DATA", &["$A2", "late"])
            .settle()
            .send(3, "CAN_DO", &["f"])
            .send(3, "GRAB_JOB_UNIQ", &[])
            .settle(),
        // 4 PRE_SLEEP
        case("pre_sleep_without_work_then_noop", CAT)
            .about("PRE_SLEEP with nothing queued is silent; a submit then sends NOOP")
            .connect_n(2)
            .send(1, "CAN_DO", &["f"])
            .send(1, "PRE_SLEEP", &[])
            .settle()
            .send(2, "SUBMIT_JOB_BG", &["f", "", "x"])
            .settle()
            .send(1, "GRAB_JOB", &[])
            .settle(),
        case("pre_sleep_with_work_pending", CAT)
            .about("PRE_SLEEP with a runnable job gets NOOP at once, every time")
            .connect_n(2)
            .send(2, "SUBMIT_JOB_BG", &["f", "", "x"])
            .settle()
            .send(1, "CAN_DO", &["f"])
            .send(1, "PRE_SLEEP", &[])
            .settle()
            .send(1, "PRE_SLEEP", &[])
            .settle(),
        case("pre_sleep_noop_not_repeated", CAT)
            .about("a second job before the woken worker grabs sends no second NOOP")
            .connect_n(2)
            .send(1, "CAN_DO", &["f"])
            .send(1, "PRE_SLEEP", &[])
            .settle()
            .send(2, "SUBMIT_JOB_BG", &["f", "", "a"])
            .settle()
            .send(2, "SUBMIT_JOB_BG", &["f", "", "b"])
            .settle()
            .send(1, "GRAB_JOB", &[])
            .send(1, "GRAB_JOB", &[])
            .send(1, "GRAB_JOB", &[])
            .settle(),
        case("pre_sleep_other_function_no_noop", CAT)
            .about("a job for a function the sleeper did not register wakes nobody")
            .connect_n(2)
            .send(1, "CAN_DO", &["f"])
            .send(1, "PRE_SLEEP", &[])
            .settle()
            .send(2, "SUBMIT_JOB_BG", &["g", "", "a"])
            .settle(),
        // 7 SUBMIT_JOB
        case("submit_job_full_cycle", CAT)
            .about("SUBMIT_JOB, GRAB_JOB, WORK_COMPLETE forwarded to the client; function stays listed")
            .with(assigned)
            .send(2, "WORK_COMPLETE", &["$A2", "result"])
            .settle()
            .line(2, "status"),
        case("submit_job_all_work_packets_forwarded", CAT)
            .about("WORK_DATA, WORK_WARNING, WORK_STATUS and WORK_COMPLETE reach the client in order")
            .with(assigned)
            .send(2, "WORK_DATA", &["$A2", "d1"])
            .send(2, "WORK_WARNING", &["$A2", "w1"])
            .send(2, "WORK_STATUS", &["$A2", "1", "2"])
            .send(2, "WORK_DATA", &["$A2", "d\u{0}2"])
            .send(2, "WORK_COMPLETE", &["$A2", "done\0with nul"])
            .settle(),
        case("submit_job_handles_count_up", CAT)
            .about("each new job takes the next handle number")
            .connect()
            .send(1, "SUBMIT_JOB", &["f", "", "a"])
            .send(1, "SUBMIT_JOB_BG", &["g", "", "b"])
            .send(1, "SUBMIT_JOB_HIGH", &["h", "", "c"])
            .settle()
            .line(1, "show jobs"),
        case("submit_job_empty_data", CAT)
            .about("a job with empty data is assigned with empty data")
            .connect_n(2)
            .send(1, "SUBMIT_JOB", &["f", "", ""])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", ""])
            .settle(),
        case("submit_job_large_data", CAT)
            .about("1 MiB of job data with NULs goes through unchanged")
            .connect_n(2)
            .send_bytes(1, "SUBMIT_JOB", vec![b"f".to_vec(), b"".to_vec(), big(1 << 20)])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", "ok"])
            .settle(),
        // 9 GRAB_JOB, 30 GRAB_JOB_UNIQ, 39 GRAB_JOB_ALL with nothing to do
        case("grab_job_no_job", CAT)
            .about("GRAB_JOB, GRAB_JOB_UNIQ and GRAB_JOB_ALL with nothing queued get NO_JOB")
            .connect()
            .send(1, "CAN_DO", &["f"])
            .send(1, "GRAB_JOB", &[])
            .send(1, "GRAB_JOB_UNIQ", &[])
            .send(1, "GRAB_JOB_ALL", &[])
            .settle(),
        case("grab_job_without_can_do", CAT)
            .about("a connection that registered nothing gets NO_JOB even with jobs queued")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["f", "", "x"])
            .settle()
            .send(2, "GRAB_JOB", &[])
            .settle(),
        case("grab_job_holds_several_jobs", CAT)
            .about("a worker can hold several jobs; status counts them running")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["f", "", "a"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "b"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "c"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .send(2, "GRAB_JOB", &[])
            .send(2, "GRAB_JOB", &[])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .line(2, "status"),
        // 12 WORK_STATUS
        case("work_status_forwarded_raw", CAT)
            .about("WORK_STATUS is forwarded byte for byte; GET_STATUS shows atoi() of the fields")
            .with(assigned)
            .send(2, "WORK_STATUS", &["$A2", "abc", "12x"])
            .settle()
            .send(1, "GET_STATUS", &["$C1"])
            .settle(),
        case("work_status_background_stored", CAT)
            .about("WORK_STATUS of a background job is stored and shown by GET_STATUS")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["f", "", "x"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_STATUS", &["$A2", "3", "7"])
            .settle()
            .send(1, "GET_STATUS", &["$C1"])
            .settle(),
        case("work_status_unknown_handle", CAT)
            .about("WORK_STATUS for a job the worker does not hold gets JOB_NOT_FOUND")
            .connect()
            .send(1, "WORK_STATUS", &["$H:77", "1", "2"])
            .settle(),
        // 13 WORK_COMPLETE
        case("work_complete_twice", CAT)
            .about("a second WORK_COMPLETE for the same handle gets JOB_NOT_FOUND")
            .with(assigned)
            .send(2, "WORK_COMPLETE", &["$A2", "one"])
            .send(2, "WORK_COMPLETE", &["$A2", "two"])
            .settle(),
        case("work_complete_not_owner", CAT)
            .about("WORK_COMPLETE from a connection that does not hold the job gets JOB_NOT_FOUND")
            .with(assigned)
            .connect()
            .send(3, "WORK_COMPLETE", &["$A2", "thief"])
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", "owner"])
            .settle(),
        case("work_complete_background_job", CAT)
            .about("completing a background job sends nothing to its submitter")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["f", "", "x"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_DATA", &["$A2", "d"])
            .send(2, "WORK_COMPLETE", &["$A2", "r"])
            .settle()
            .send(1, "GET_STATUS", &["$C1"])
            .settle(),
        // 14 WORK_FAIL
        case("work_fail_forwarded", CAT)
            .about("WORK_FAIL reaches the client as the bare handle; the job is gone")
            .with(assigned)
            .send(2, "WORK_FAIL", &["$A2"])
            .settle()
            .send(1, "GET_STATUS", &["$C1"])
            .send(2, "WORK_FAIL", &["$A2"])
            .settle(),
        case("work_fail_unknown_handle", CAT)
            .about("WORK_FAIL for an unknown handle gets JOB_NOT_FOUND")
            .connect()
            .send(1, "WORK_FAIL", &["$H:99"])
            .settle(),
        // 15 GET_STATUS
        case("get_status_lifecycle", CAT)
            .about("GET_STATUS: queued 1/0, running 1/1 with progress, unknown after completion")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["f", "", "x"])
            .settle()
            .send(1, "GET_STATUS", &["$C1"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_STATUS", &["$A2", "5", "10"])
            .settle()
            .send(1, "GET_STATUS", &["$C1"])
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", ""])
            .settle()
            .send(1, "GET_STATUS", &["$C1"])
            .settle(),
        case("get_status_unknown_handle", CAT)
            .about("GET_STATUS of an unknown handle: the handle and four zero fields")
            .connect()
            .send(1, "GET_STATUS", &["$H:9"])
            .send(1, "GET_STATUS", &["nonsense"])
            .send(1, "GET_STATUS", &[""])
            .settle(),
        // 16 ECHO_REQ
        case("echo_req", CAT)
            .about("ECHO_REQ echoes the exact bytes, NULs and empty body included")
            .connect()
            .send(1, "ECHO_REQ", &["hello\0world"])
            .send(1, "ECHO_REQ", &[])
            .send(1, "ECHO_REQ", &["\0\0"])
            .settle(),
        case("echo_req_large", CAT)
            .about("a 4 MiB ECHO_REQ comes back whole")
            .connect()
            .send_bytes(1, "ECHO_REQ", vec![big(4 << 20)])
            .settle(),
        // 18 SUBMIT_JOB_BG
        case("submit_job_bg_lifecycle", CAT)
            .about("SUBMIT_JOB_BG: JOB_CREATED only; show jobs marks it QUEUED=1")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["f", "u", "x"])
            .settle()
            .line(2, "show jobs")
            .line(2, "prioritystatus"),
        // 21, 32, 33, 34: priorities
        case("submit_priorities_counted", CAT)
            .about("HIGH/NORMAL/LOW, foreground and background, counted by prioritystatus")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_HIGH", &["f", "", "h"])
            .send(1, "SUBMIT_JOB_HIGH_BG", &["f", "", "hb"])
            .send(1, "SUBMIT_JOB", &["f", "", "n"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "nb"])
            .send(1, "SUBMIT_JOB_LOW", &["f", "", "l"])
            .send(1, "SUBMIT_JOB_LOW_BG", &["f", "", "lb"])
            .settle()
            .line(2, "prioritystatus")
            .line(2, "status")
            .line(2, "show jobs"),
        case("submit_job_high_fg_cycle", CAT)
            .about("SUBMIT_JOB_HIGH is foreground: the client gets the result")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_HIGH", &["f", "", "x"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", "hi"])
            .settle(),
        case("submit_job_low_fg_cycle", CAT)
            .about("SUBMIT_JOB_LOW is foreground: the client gets the result")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_LOW", &["f", "", "x"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", "lo"])
            .settle(),
        case("submit_job_high_bg_and_low_bg_no_results", CAT)
            .about("HIGH_BG and LOW_BG submitters get JOB_CREATED only")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_HIGH_BG", &["f", "", "x"])
            .send(1, "SUBMIT_JOB_LOW_BG", &["f", "", "y"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_COMPLETE", &["$C1.1", "a"])
            .send(2, "WORK_COMPLETE", &["$C1.2", "b"])
            .settle(),
        // 22 SET_CLIENT_ID
        case("set_client_id_shown_in_workers", CAT)
            .about("SET_CLIENT_ID is shown in workers (spaces kept); default is -")
            .connect_n(2)
            .send(1, "SET_CLIENT_ID", &["worker one"])
            .send(1, "CAN_DO", &["f"])
            .settle()
            .line(2, "workers"),
        case("set_client_id_truncated", CAT)
            .about("client ids are truncated to 127 bytes; a later SET_CLIENT_ID replaces the id")
            .connect_n(3)
            .send(1, "SET_CLIENT_ID", &[&"x".repeat(200)])
            .send(2, "SET_CLIENT_ID", &["first"])
            .send(2, "SET_CLIENT_ID", &["second"])
            .settle()
            .line(3, "workers"),
        // 23 CAN_DO_TIMEOUT
        case("can_do_timeout_registers_worker", CAT)
            .about("CAN_DO_TIMEOUT registers the function like CAN_DO")
            .connect_n(2)
            .send(1, "CAN_DO_TIMEOUT", &["f", "5000"])
            .send(1, "CAN_DO_TIMEOUT", &["g", "nonsense"])
            .settle()
            .line(2, "status")
            .line(2, "workers"),
        // 26 OPTION_REQ
        case("option_req_exceptions", CAT)
            .about("OPTION_REQ exceptions gets OPTION_RES with the exact body, any case")
            .connect()
            .send(1, "OPTION_REQ", &["exceptions"])
            .send(1, "OPTION_REQ", &["EXCEPTIONS"])
            .send(1, "OPTION_REQ", &["Exceptions"])
            .settle(),
        case("option_req_unknown", CAT)
            .about("OPTION_REQ other than exceptions gets ERROR UNKNOWN_OPTION")
            .connect()
            .send(1, "OPTION_REQ", &["foo"])
            .send(1, "OPTION_REQ", &[""])
            .send(1, "OPTION_REQ", &["exceptionsx"])
            .send(1, "OPTION_REQ", &[&"e".repeat(70)])
            .settle(),
        case("option_req_nul_suffix", CAT)
            .about("OPTION_REQ compares up to the first NUL and echoes the exact body")
            .connect()
            .send(1, "OPTION_REQ", &["exceptions\0junk"])
            .settle(),
        // 28 WORK_DATA, 29 WORK_WARNING
        case("work_data_not_owner", CAT)
            .about("WORK_DATA for a job the connection does not hold: JOB_NOT_FOUND \"Job does not exist on server\"")
            .with(assigned)
            .connect()
            .send(3, "WORK_DATA", &["$A2", "x"])
            .send(3, "WORK_DATA", &["$H:99", "x"])
            .settle(),
        case("work_warning_not_owner", CAT)
            .about("WORK_WARNING for an unknown job: JOB_NOT_FOUND")
            .connect()
            .send(1, "WORK_WARNING", &["$H:99", "x"])
            .settle(),
        case("work_warning_forwarded", CAT)
            .about("WORK_WARNING reaches the client with its data")
            .with(assigned)
            .send(2, "WORK_WARNING", &["$A2", "careful\0now"])
            .settle(),
        // 30 GRAB_JOB_UNIQ
        case("grab_job_uniq_assigns_unique", CAT)
            .about("GRAB_JOB_UNIQ returns JOB_ASSIGN_UNIQ with the stored unique (also - and empty)")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["f", "my-unique", "a"])
            .send(1, "SUBMIT_JOB_BG", &["f", "-", "b"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "c"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB_UNIQ", &[])
            .send(2, "GRAB_JOB_UNIQ", &[])
            .send(2, "GRAB_JOB_UNIQ", &[])
            .send(2, "GRAB_JOB_UNIQ", &[])
            .settle(),
        // 36 SUBMIT_JOB_EPOCH
        case("submit_job_epoch_past_runs_now", CAT)
            .about("an epoch in the past (or garbage) runs at once")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_EPOCH", &["f", "", "1", "past"])
            .send(1, "SUBMIT_JOB_EPOCH", &["f", "", "garbage", "junk"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .send(2, "GRAB_JOB", &[])
            .settle(),
        // 37 SUBMIT_REDUCE_JOB, 39 GRAB_JOB_ALL
        case("submit_reduce_job_grab_all", CAT)
            .about("SUBMIT_REDUCE_JOB (4 args) is foreground; GRAB_JOB_ALL gives JOB_ASSIGN_ALL with the reducer")
            .connect_n(2)
            .send(1, "SUBMIT_REDUCE_JOB", &["f", "u", "red", "", "data"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB_ALL", &[])
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", "reduced"])
            .settle(),
        // 38 SUBMIT_REDUCE_JOB_BACKGROUND
        case("submit_reduce_job_background", CAT)
            .about("SUBMIT_REDUCE_JOB_BACKGROUND: JOB_CREATED only; GRAB_JOB_ALL shows the reducer")
            .connect_n(2)
            .send(1, "SUBMIT_REDUCE_JOB_BACKGROUND", &["f", "u", "red", "", "data"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB_ALL", &[])
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", "r"])
            .settle()
            .line(2, "show jobs"),
        // 41 GET_STATUS_UNIQUE
        case("get_status_unique_lifecycle", CAT)
            .about("GET_STATUS_UNIQUE echoes the unique and counts attached clients")
            .connect_n(3)
            .send(1, "GET_STATUS_UNIQUE", &["u"])
            .send(1, "SUBMIT_JOB", &["f", "u", "x"])
            .settle()
            .send(3, "GET_STATUS_UNIQUE", &["u"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_STATUS", &["$A2", "1", "3"])
            .settle()
            .send(3, "GET_STATUS_UNIQUE", &["u"])
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", ""])
            .settle()
            .send(3, "GET_STATUS_UNIQUE", &["u"])
            .settle(),
    ];
    v.extend(REJECTED.iter().map(|&t| rejected(t)));
    v
}

/// `n` bytes of a repeating pattern that includes NUL.
pub(crate) fn big(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}
