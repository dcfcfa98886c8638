//! Which job a GRAB gets (§3.3): priorities, LIFO over CAN_DO, -R round robin.

use super::case;
use crate::diff::case::Case;

const CAT: &str = "priority";

fn grabs(mut c: Case, conn: usize, n: usize) -> Case {
    for _ in 0..n {
        c = c.send(conn, "GRAB_JOB_UNIQ", &[]);
    }
    c.settle()
}

/// c1 submits 3 background jobs each to a, b and c; c2 registers a, b, c in that order.
fn abc_jobs(c: Case) -> Case {
    let mut c = c.connect_n(2);
    for f in ["a", "b", "c"] {
        for i in 1..=3 {
            c = c.send(1, "SUBMIT_JOB_BG", &[f, "", &format!("{f}{i}")]);
        }
    }
    c.settle()
        .send(2, "CAN_DO", &["a"])
        .send(2, "CAN_DO", &["b"])
        .send(2, "CAN_DO", &["c"])
        .settle()
}

pub fn cases() -> Vec<Case> {
    vec![
        case("priority_order_within_function", CAT)
            .about("L1 N1 H1 L2 N2 H2 are handed out H1 H2 N1 N2 L1 L2")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_LOW_BG", &["f", "", "L1"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "N1"])
            .send(1, "SUBMIT_JOB_HIGH_BG", &["f", "", "H1"])
            .send(1, "SUBMIT_JOB_LOW_BG", &["f", "", "L2"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "N2"])
            .send(1, "SUBMIT_JOB_HIGH_BG", &["f", "", "H2"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .with(|c| grabs(c, 2, 7)),
        case("priority_fg_and_bg_share_lists", CAT)
            .about("foreground and background jobs of one priority are served FIFO together")
            .connect_n(2)
            .send(1, "SUBMIT_JOB", &["f", "", "fg1"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "bg1"])
            .send(1, "SUBMIT_JOB_HIGH", &["f", "", "hfg"])
            .send(1, "SUBMIT_JOB", &["f", "", "fg2"])
            .send(1, "SUBMIT_JOB_LOW", &["f", "", "lfg"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .with(|c| grabs(c, 2, 5)),
        case("priority_lifo_over_can_do", CAT)
            .about("the most recently registered function is served first")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["a", "", "a1"])
            .send(1, "SUBMIT_JOB_BG", &["b", "", "b1"])
            .settle()
            .send(2, "CAN_DO", &["a"])
            .send(2, "CAN_DO", &["b"])
            .with(|c| grabs(c, 2, 3)),
        case("priority_not_compared_across_functions", CAT)
            .about(
                "a NORMAL job of the last-registered function beats a HIGH job of an earlier one",
            )
            .connect_n(2)
            .send(1, "SUBMIT_JOB_HIGH_BG", &["a", "", "a-high"])
            .send(1, "SUBMIT_JOB_LOW_BG", &["b", "", "b-low"])
            .send(1, "SUBMIT_JOB_BG", &["b", "", "b-normal"])
            .settle()
            .send(2, "CAN_DO", &["a"])
            .send(2, "CAN_DO", &["b"])
            .with(|c| grabs(c, 2, 4)),
        case("priority_three_functions_no_round_robin", CAT)
            .about("without -R, C C C B B B A A A")
            .with(abc_jobs)
            .with(|c| grabs(c, 2, 10)),
        case("priority_three_functions_round_robin", CAT)
            .about("with -R, C B A C B A C B A")
            .flags(&["-R"])
            .with(abc_jobs)
            .with(|c| grabs(c, 2, 10)),
        case("priority_round_robin_with_priorities", CAT)
            .about("with -R, priority still decides inside each function")
            .flags(&["-R"])
            .connect_n(2)
            .send(1, "SUBMIT_JOB_LOW_BG", &["a", "", "a-low"])
            .send(1, "SUBMIT_JOB_HIGH_BG", &["a", "", "a-high"])
            .send(1, "SUBMIT_JOB_BG", &["b", "", "b-normal"])
            .send(1, "SUBMIT_JOB_HIGH_BG", &["b", "", "b-high"])
            .settle()
            .send(2, "CAN_DO", &["a"])
            .send(2, "CAN_DO", &["b"])
            .with(|c| grabs(c, 2, 5)),
        case("priority_round_robin_empty_function_skipped", CAT)
            .about("with -R, a function without jobs is passed over")
            .flags(&["-R"])
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["a", "", "a1"])
            .send(1, "SUBMIT_JOB_BG", &["a", "", "a2"])
            .send(1, "SUBMIT_JOB_BG", &["c", "", "c1"])
            .settle()
            .send(2, "CAN_DO", &["a"])
            .send(2, "CAN_DO", &["b"])
            .send(2, "CAN_DO", &["c"])
            .with(|c| grabs(c, 2, 4)),
        case("priority_round_robin_one_at_a_time", CAT)
            .about("with -R, GRAB/complete cycles alternate between functions")
            .flags(&["-R"])
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["a", "", "a1"])
            .send(1, "SUBMIT_JOB_BG", &["a", "", "a2"])
            .send(1, "SUBMIT_JOB_BG", &["b", "", "b1"])
            .send(1, "SUBMIT_JOB_BG", &["b", "", "b2"])
            .settle()
            .send(2, "CAN_DO", &["a"])
            .send(2, "CAN_DO", &["b"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", ""])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", ""])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", ""])
            .send(2, "GRAB_JOB", &[])
            .settle(),
        case("priority_reregistered_function_moves_first", CAT)
            .about("CANT_DO then CAN_DO makes a function the most recent one")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["a", "", "a1"])
            .send(1, "SUBMIT_JOB_BG", &["b", "", "b1"])
            .settle()
            .send(2, "CAN_DO", &["a"])
            .send(2, "CAN_DO", &["b"])
            .send(2, "CANT_DO", &["a"])
            .send(2, "CAN_DO", &["a"])
            .with(|c| grabs(c, 2, 3)),
        case("priority_two_workers_fifo", CAT)
            .about("two workers of one function take jobs in submit order")
            .connect_n(3)
            .send(1, "SUBMIT_JOB_BG", &["f", "", "1"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "2"])
            .send(1, "SUBMIT_JOB_BG", &["f", "", "3"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(3, "CAN_DO", &["f"])
            .settle()
            .send(3, "GRAB_JOB", &[])
            .settle()
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(3, "GRAB_JOB", &[])
            .settle()
            .send(2, "GRAB_JOB", &[])
            .settle(),
    ]
}
