//! NOOP / PRE_SLEEP / -w wake-ups (§3.4) and compat C7.

use super::case;
use crate::diff::case::Case;

const CAT: &str = "wakeup";

/// Connections 1..=n register f and go to sleep, one settle apart so the order in
/// which they fell asleep is known; connection n+1 is the client.
fn sleepers(c: Case, n: usize) -> Case {
    let mut c = c.connect_n(n + 1);
    for w in 1..=n {
        c = c
            .send(w, "CAN_DO", &["f"])
            .send(w, "PRE_SLEEP", &[])
            .settle();
    }
    c
}

pub fn cases() -> Vec<Case> {
    vec![
        case("wakeup_default_all_sleepers", CAT)
            .about("default -w 0: gearmand wakes all three sleepers for one job, gearboxd one")
            .with(|c| sleepers(c, 3))
            .send(4, "SUBMIT_JOB_BG", &["f", "", "x"])
            .settle()
            .deviation(
                "C7",
                "gearboxd wakes one sleeper per job, the one asleep longest",
            )
            .gearbox(4, 1, &["NOOP"])
            .gearbox(4, 2, &[])
            .gearbox(4, 3, &[]),
        case("wakeup_default_losers_get_no_job", CAT)
            .about("default: every woken worker grabs; gearmand's losers get NO_JOB")
            .with(|c| sleepers(c, 2))
            .send(3, "SUBMIT_JOB_BG", &["f", "", "x"])
            .settle()
            .send(1, "GRAB_JOB", &[])
            .settle()
            .send(2, "GRAB_JOB", &[])
            .settle()
            .deviation(
                "C7",
                "gearboxd wakes only the first sleeper; the second, not woken, still gets NO_JOB",
            )
            .gearbox(3, 2, &[]),
        case("wakeup_w1_one_per_job_rotating", CAT)
            .about("-w 1: one NOOP per job, rotating over the sleepers")
            .flags(&["-w", "1"])
            .with(|c| sleepers(c, 3))
            .send(4, "SUBMIT_JOB_BG", &["f", "", "1"])
            .settle()
            .send(4, "SUBMIT_JOB_BG", &["f", "", "2"])
            .settle()
            .send(4, "SUBMIT_JOB_BG", &["f", "", "3"])
            .settle(),
        case("wakeup_w1_grab_then_sleep_again", CAT)
            .about("-w 1: a worker that grabbed and slept again is woken after the others")
            .flags(&["-w", "1"])
            .with(|c| sleepers(c, 2))
            .send(3, "SUBMIT_JOB_BG", &["f", "", "1"])
            .settle()
            .send(1, "GRAB_JOB", &[])
            .settle()
            .send(1, "WORK_COMPLETE", &["$A1", ""])
            .send(1, "PRE_SLEEP", &[])
            .settle()
            .send(3, "SUBMIT_JOB_BG", &["f", "", "2"])
            .settle()
            .send(3, "SUBMIT_JOB_BG", &["f", "", "3"])
            .settle(),
        case("wakeup_w2_two_per_job", CAT)
            .about("-w 2: two NOOPs per job")
            .flags(&["-w", "2"])
            .with(|c| sleepers(c, 3))
            .send(4, "SUBMIT_JOB_BG", &["f", "", "1"])
            .settle(),
        case("wakeup_w1_second_job_no_second_noop", CAT)
            .about("-w 1: a woken worker that has not grabbed yet is not woken again")
            .flags(&["-w", "1"])
            .with(|c| sleepers(c, 1))
            .send(2, "SUBMIT_JOB_BG", &["f", "", "1"])
            .settle()
            .send(2, "SUBMIT_JOB_BG", &["f", "", "2"])
            .settle()
            .send(1, "GRAB_JOB", &[])
            .send(1, "GRAB_JOB", &[])
            .settle(),
        case("wakeup_awake_worker_gets_no_noop", CAT)
            .about("a worker that never sent PRE_SLEEP is not sent NOOP")
            .connect_n(2)
            .send(1, "CAN_DO", &["f"])
            .settle()
            .send(2, "SUBMIT_JOB_BG", &["f", "", "1"])
            .settle()
            .send(1, "GRAB_JOB", &[])
            .settle(),
        case("wakeup_only_sleepers_of_function", CAT)
            .about("-w 1: only sleepers registered for the job's function are woken")
            .flags(&["-w", "1"])
            .connect_n(3)
            .send(1, "CAN_DO", &["g"])
            .send(1, "PRE_SLEEP", &[])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "PRE_SLEEP", &[])
            .settle()
            .send(3, "SUBMIT_JOB_BG", &["f", "", "1"])
            .settle(),
        case("wakeup_grab_clears_sleep", CAT)
            .about("after GRAB (NO_JOB) without PRE_SLEEP the worker is awake and gets no NOOP")
            .flags(&["-w", "1"])
            .with(|c| sleepers(c, 1))
            .send(1, "GRAB_JOB", &[])
            .settle()
            .send(2, "SUBMIT_JOB_BG", &["f", "", "1"])
            .settle(),
        case("wakeup_on_requeue_after_lost_worker", CAT)
            .about("-w 1: a job re-queued by a lost worker wakes a sleeper")
            .flags(&["-w", "1"])
            .connect_n(3)
            .send(1, "SUBMIT_JOB_BG", &["f", "", "x"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(3, "CAN_DO", &["f"])
            .send(3, "PRE_SLEEP", &[])
            .settle()
            .close(2)
            .settle()
            .send(3, "GRAB_JOB", &[])
            .settle(),
        case("wakeup_woken_worker_leaves", CAT)
            .about("-w 1: the woken worker disconnects before grabbing")
            .flags(&["-w", "1"])
            .with(|c| sleepers(c, 2))
            .send(3, "SUBMIT_JOB_BG", &["f", "", "x"])
            .settle()
            .close(1)
            .settle()
            .deviation(
                "C7",
                "gearboxd passes the wake-up of a worker that left on to another sleeper",
            )
            .gearbox(4, 2, &["NOOP"]),
        case("wakeup_pre_sleep_after_noop", CAT)
            .about("PRE_SLEEP again after a NOOP, with the job still queued, gets another NOOP")
            .flags(&["-w", "1"])
            .with(|c| sleepers(c, 1))
            .send(2, "SUBMIT_JOB_BG", &["f", "", "x"])
            .settle()
            .send(1, "PRE_SLEEP", &[])
            .settle(),
        case("wakeup_w1_many_jobs_many_sleepers", CAT)
            .about("-w 1: two jobs submitted together wake two different sleepers")
            .flags(&["-w", "1"])
            .with(|c| sleepers(c, 3))
            .send(4, "SUBMIT_JOB_BG", &["f", "", "1"])
            .send(4, "SUBMIT_JOB_BG", &["f", "", "2"])
            .settle(),
    ]
}
