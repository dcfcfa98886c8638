//! CAN_DO_TIMEOUT (§3.5, compat C2). Values are milliseconds with a 1000 ms minimum;
//! the cases wait well past the deadline before looking.

use super::case;
use crate::diff::case::Case;

const CAT: &str = "timeout";

/// c1 submits a foreground job; c2 registers f with `ms` and grabs it.
fn timed_grab(c: Case, ms: &str) -> Case {
    c.connect_n(3)
        .send(1, "SUBMIT_JOB", &["f", "", "x"])
        .settle()
        .send(2, "CAN_DO_TIMEOUT", &["f", ms])
        .send(2, "GRAB_JOB", &[])
        .settle()
}

pub fn cases() -> Vec<Case> {
    vec![
        case("can_do_timeout_requeues_silently", CAT)
            .about("after the timeout the job is queued again; nobody is told; the late WORK_COMPLETE gets JOB_NOT_FOUND")
            .with(|c| timed_grab(c, "1000"))
            .sleep(1700)
            .settle()
            .line(3, "show jobs")
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", "late"])
            .settle()
            .send(3, "CAN_DO", &["f"])
            .send(3, "GRAB_JOB", &[])
            .settle(),
        case("can_do_timeout_minimum_1000", CAT)
            .about("a timeout of 1 ms is raised to 1000 ms: still running after 400 ms, re-queued after 1.7 s")
            .with(|c| timed_grab(c, "1"))
            .sleep(250)
            .line(3, "status")
            .settle()
            .sleep(1500)
            .line(3, "status")
            .settle(),
        case("can_do_timeout_complete_in_time", CAT)
            .about("a job completed before the timeout stays completed")
            .with(|c| timed_grab(c, "1000"))
            .send(2, "WORK_COMPLETE", &["$A2", "fast"])
            .settle()
            .sleep(1500)
            .line(3, "status")
            .settle()
            .deviation("C2", "gearmand's stale timer fires after WORK_COMPLETE and corrupts the running count")
            .gearbox(4, 3, &[r#"text "f\t0\t0\t1\n""#, r#"text ".\n""#]),
        case("can_do_timeout_zero_means_none", CAT)
            .about("a timeout of 0 (or garbage) means no timeout")
            .with(|c| timed_grab(c, "0"))
            .sleep(1500)
            .line(3, "status")
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", "slow"])
            .settle(),
        case("can_do_timeout_pre_sleep_keeps_timer", CAT)
            .about("PRE_SLEEP while holding a job: gearmand cancels the timer, gearboxd does not")
            .with(|c| timed_grab(c, "1000"))
            .send(2, "PRE_SLEEP", &[])
            .settle()
            .sleep(1500)
            .line(3, "status")
            .settle()
            .deviation("C2", "gearboxd's timer is per job and survives PRE_SLEEP, so the job is re-queued")
            .gearbox(4, 2, &["NOOP"])
            .gearbox(4, 3, &[r#"text "f\t1\t0\t1\n""#, r#"text ".\n""#]),
        case("can_do_timeout_j1_drops_job", CAT)
            .about("-j 1: a timed-out job has used its one attempt")
            .flags(&["-j", "1"])
            .with(|c| timed_grab(c, "1000"))
            .sleep(1500)
            .settle()
            .line(3, "status")
            .settle(),
        case("can_do_timeout_too_many_digits", CAT)
            .about("a timeout of more than 20 digits: gearmand closes the connection")
            .connect_n(2)
            .send(1, "CAN_DO_TIMEOUT", &["f", "123456789012345678901"])
            .send(1, "ECHO_REQ", &["open"])
            .settle()
            .line(2, "status")
            .settle()
            .deviation("C2", "gearboxd reads it as a very large timeout and keeps the connection")
            .gearbox(1, 1, &["ECHO_RES open"])
            .gearbox(2, 2, &[r#"text "f\t0\t0\t1\n""#, r#"text ".\n""#]),
    ]
}
