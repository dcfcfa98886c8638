//! maxqueue limits and ERROR QUEUE_ERROR (§3.9).

use super::case;
use crate::diff::case::Case;

const CAT: &str = "maxqueue";

/// c2 creates f by registering it, then sets `limits` on connection 3.
fn limited(c: Case, limits: &str) -> Case {
    c.connect_n(3)
        .send(2, "CAN_DO", &["f"])
        .settle()
        .line(3, &format!("maxqueue f {limits}"))
        .settle()
}

pub fn cases() -> Vec<Case> {
    vec![
        case("maxqueue_refuses_new_jobs", CAT)
            .about("maxqueue f 2: the third job gets ERROR QUEUE_ERROR, foreground or background")
            .with(|c| limited(c, "2"))
            .send(1, "SUBMIT_JOB_BG", &["f", "", "1"])
            .send(1, "SUBMIT_JOB", &["f", "", "2"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "3"])
            .send(1, "SUBMIT_JOB", &["f", "", "4"])
            .settle()
            .line(3, "status"),
        case("maxqueue_counts_running_jobs", CAT)
            .about("running jobs count towards the limit; completing one frees a slot")
            .with(|c| limited(c, "1"))
            .send(1, "SUBMIT_JOB_BG", &["f", "", "1"])
            .settle()
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(1, "SUBMIT_JOB_BG", &["f", "", "2"])
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", ""])
            .settle()
            .send(1, "SUBMIT_JOB_BG", &["f", "", "3"])
            .settle(),
        case("maxqueue_per_priority", CAT)
            .about("maxqueue f 3 2 1: limits for HIGH, NORMAL, LOW against the function's total")
            .with(|c| limited(c, "3 2 1"))
            .send(1, "SUBMIT_JOB_LOW_BG", &["f", "", "l1"])
            .send(1, "SUBMIT_JOB_LOW_BG", &["f", "", "l2"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "n1"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "n2"])
            .send(1, "SUBMIT_JOB_HIGH_BG", &["f", "", "h1"])
            .send(1, "SUBMIT_JOB_HIGH_BG", &["f", "", "h2"])
            .settle()
            .line(3, "prioritystatus"),
        case("maxqueue_two_numbers_resets_low", CAT)
            .about("maxqueue f H N leaves LOW unlimited")
            .with(|c| limited(c, "1 1"))
            .send(1, "SUBMIT_JOB_BG", &["f", "", "n1"])
            .send(1, "SUBMIT_JOB_HIGH_BG", &["f", "", "h1"])
            .send(1, "SUBMIT_JOB_LOW_BG", &["f", "", "l1"])
            .send(1, "SUBMIT_JOB_LOW_BG", &["f", "", "l2"])
            .settle(),
        case("maxqueue_reset_to_unlimited", CAT)
            .about("maxqueue f without numbers removes the limit")
            .with(|c| limited(c, "1"))
            .line(3, "maxqueue f")
            .settle()
            .send(1, "SUBMIT_JOB_BG", &["f", "", "1"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "2"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "3"])
            .settle(),
        case("maxqueue_negative_is_unlimited", CAT)
            .about("a negative limit means 0, i.e. unlimited")
            .with(|c| limited(c, "-1"))
            .send(1, "SUBMIT_JOB_BG", &["f", "", "1"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "2"])
            .settle(),
        case("maxqueue_name_exact", CAT)
            .about("the limit applies to the exact function name only")
            .connect_n(3)
            .send(2, "CAN_DO", &["f"])
            .send(2, "CAN_DO", &["F"])
            .settle()
            .line(3, "maxqueue F 1")
            .settle()
            .send(1, "SUBMIT_JOB_BG", &["f", "", "1"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "2"])
            .send(1, "SUBMIT_JOB_BG", &["F", "", "1"])
            .send(1, "SUBMIT_JOB_BG", &["F", "", "2"])
            .settle(),
        case("maxqueue_unknown_function_then_submit", CAT)
            .about("maxqueue before the function exists: gearmand forgets it, gearboxd applies it")
            .connect_n(2)
            .line(2, "maxqueue f 1")
            .settle()
            .send(1, "SUBMIT_JOB_BG", &["f", "", "1"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "2"])
            .settle()
            .deviation(
                "C14",
                "gearboxd created f with the limit, so the second job is refused",
            )
            .gearbox(
                2,
                1,
                &["JOB_CREATED $H:1", "ERROR QUEUE_ERROR\\0Job queue is full"],
            ),
        case("maxqueue_after_create_function", CAT)
            .about("create function then maxqueue: the limit applies")
            .connect_n(2)
            .line(2, "create function f")
            .line(2, "maxqueue f 1")
            .settle()
            .send(1, "SUBMIT_JOB", &["f", "", "1"])
            .send(1, "SUBMIT_JOB_LOW", &["f", "", "2"])
            .settle(),
    ]
}
