//! WORK_EXCEPTION and the `exceptions` option (§2 row 25, §3.8, §6.4, compat C1).

use super::case;
use crate::diff::case::Case;

const CAT: &str = "exceptions";

/// Client c1 (after `setup`) submits; worker c2 grabs and sends WORK_EXCEPTION.
fn exception(c: Case) -> Case {
    c.send(1, "SUBMIT_JOB", &["f", "", "x"])
        .settle()
        .send(2, "CAN_DO", &["f"])
        .send(2, "GRAB_JOB", &[])
        .settle()
        .send(2, "WORK_EXCEPTION", &["$A2", "boom\0details"])
        .settle()
}

pub fn cases() -> Vec<Case> {
    vec![
        case("exception_without_option", CAT)
            .about("a client without the option: gearmand sends WORK_FAIL \"handle\\0\"")
            .connect_n(2)
            .with(exception)
            .deviation("C1", "gearboxd sends the plain WORK_FAIL handle")
            .gearbox(3, 1, &["WORK_FAIL $H:1"]),
        case("exception_with_option_req", CAT)
            .about("a client with OPTION_REQ exceptions gets WORK_EXCEPTION handle\\0data")
            .connect_n(2)
            .send(1, "OPTION_REQ", &["exceptions"])
            .settle()
            .with(exception),
        case("exception_with_server_flag", CAT)
            .about("--exceptions turns the option on for every connection")
            .flags(&["--exceptions"])
            .connect_n(2)
            .with(exception),
        case("exception_option_on_worker_only", CAT)
            .about("the option on the worker's connection does not matter")
            .connect_n(2)
            .send(2, "OPTION_REQ", &["exceptions"])
            .settle()
            .with(exception)
            .deviation("C1", "gearboxd sends the plain WORK_FAIL handle")
            .gearbox(4, 1, &["WORK_FAIL $H:1"]),
        case("exception_mixed_clients", CAT)
            .about("two clients of one job, one with the option: each gets its own form")
            .connect_n(3)
            .send(3, "OPTION_REQ", &["exceptions"])
            .settle()
            .send(3, "SUBMIT_JOB", &["f", "k", "x"])
            .send(1, "SUBMIT_JOB", &["f", "k", "x"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_EXCEPTION", &["$A2", "boom"])
            .settle()
            .deviation("C1", "gearboxd sends the plain WORK_FAIL handle to the client without the option")
            .gearbox(4, 1, &["WORK_FAIL $H:1"]),
        case("exception_ends_job", CAT)
            .about("after WORK_EXCEPTION the job is gone: status unknown, further WORK_* get JOB_NOT_FOUND")
            .connect_n(2)
            .send(1, "OPTION_REQ", &["exceptions"])
            .settle()
            .with(exception)
            .send(1, "GET_STATUS", &["$C1"])
            .send(2, "WORK_EXCEPTION", &["$A2", "again"])
            .send(2, "WORK_COMPLETE", &["$A2", "late"])
            .settle(),
        case("exception_unknown_handle", CAT)
            .about("WORK_EXCEPTION for an unknown job: JOB_NOT_FOUND with its own text")
            .connect()
            .send(1, "WORK_EXCEPTION", &["$H:5", "boom"])
            .settle(),
        case("exception_background_job", CAT)
            .about("WORK_EXCEPTION on a background job ends it; nobody is told")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["f", "", "x"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_EXCEPTION", &["$A2", "boom"])
            .settle()
            .line(2, "status"),
        case("exception_option_before_and_after_submit", CAT)
            .about("the option counts when the exception arrives, not when the job was submitted")
            .connect_n(2)
            .send(1, "SUBMIT_JOB", &["f", "", "x"])
            .settle()
            .send(1, "OPTION_REQ", &["exceptions"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_EXCEPTION", &["$A2", "boom"])
            .settle(),
    ]
}
