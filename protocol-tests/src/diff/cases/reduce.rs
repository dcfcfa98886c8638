//! Reduce jobs (4 NUL-terminated args before the data) and GRAB_JOB_ALL (§2 rows
//! 37-40, §3.10, compat C4).

use super::case;
use crate::diff::case::Case;

const CAT: &str = "reduce";

fn submit_and_grab(grab: &str) -> Case {
    case(&format!("reduce_{}", grab.to_ascii_lowercase()), CAT)
        .about(&format!("a reduce job handed out by {grab}"))
        .connect_n(2)
        .send(1, "SUBMIT_REDUCE_JOB", &["f", "u", "red", "", "data"])
        .settle()
        .send(2, "CAN_DO", &["f"])
        .send(2, grab, &[])
        .settle()
        .send(2, "WORK_COMPLETE", &["$A2", "r"])
        .settle()
}

pub fn cases() -> Vec<Case> {
    let r65 = "r".repeat(65);
    let u65 = "u".repeat(65);
    vec![
        submit_and_grab("GRAB_JOB"),
        submit_and_grab("GRAB_JOB_UNIQ"),
        case("reduce_empty_reducer_grab_all", CAT)
            .about("GRAB_JOB_ALL of a reduce job with an empty reducer gives JOB_ASSIGN_UNIQ")
            .connect_n(2)
            .send(1, "SUBMIT_REDUCE_JOB", &["f", "u", "", "", "data"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB_ALL", &[])
            .settle(),
        case("reduce_aggregator_ignored", CAT)
            .about("the aggregator argument is accepted and ignored")
            .connect_n(2)
            .send(1, "SUBMIT_REDUCE_JOB_BACKGROUND", &["f", "u", "red", "agg", "data"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB_ALL", &[])
            .settle(),
        case("reduce_data_with_nuls", CAT)
            .about("reduce data may contain NUL bytes")
            .connect_n(2)
            .send(1, "SUBMIT_REDUCE_JOB", &["f", "u", "red", "", "a\0b\0c"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB_ALL", &[])
            .settle(),
        case("grab_job_all_plain_job", CAT)
            .about("GRAB_JOB_ALL of an ordinary job gives JOB_ASSIGN_UNIQ")
            .connect_n(2)
            .send(1, "SUBMIT_JOB", &["f", "uniq", "data"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB_ALL", &[])
            .settle(),
        case("grab_job_all_mixed_queue", CAT)
            .about("GRAB_JOB_ALL over a queue of plain and reduce jobs")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["f", "", "plain"])
            .send(1, "SUBMIT_REDUCE_JOB_BACKGROUND", &["f", "", "red", "", "reduce"])
            .send(1, "SUBMIT_JOB_BG", &["f", "-", "dash"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB_ALL", &[])
            .send(2, "GRAB_JOB_ALL", &[])
            .send(2, "GRAB_JOB_ALL", &[])
            .send(2, "GRAB_JOB_ALL", &[])
            .settle(),
        case("reduce_coalesces_on_unique", CAT)
            .about("reduce submits coalesce on function+unique; the first reducer stays")
            .connect_n(2)
            .send(1, "SUBMIT_REDUCE_JOB", &["f", "k", "red1", "", "a"])
            .send(1, "SUBMIT_REDUCE_JOB", &["f", "k", "red2", "", "b"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB_ALL", &[])
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", "r"])
            .settle(),
        case("reduce_long_reducer", CAT)
            .about("gearmand refuses a reducer over 64 bytes as \"Unique value too large\"")
            .connect()
            .send(1, "SUBMIT_REDUCE_JOB_BACKGROUND", &["f", "u", &r65, "", "data"])
            .settle()
            .deviation("C4", "gearboxd checks the unique, not the reducer")
            .gearbox(1, 1, &["JOB_CREATED $H:1"]),
        case("reduce_long_unique", CAT)
            .about("gearmand accepts a reduce job's unique over 64 bytes")
            .connect()
            .send(1, "SUBMIT_REDUCE_JOB_BACKGROUND", &["f", &u65, "red", "", "data"])
            .settle()
            .deviation("C4", "gearboxd refuses the unique over 64 bytes")
            .gearbox(1, 1, &["ERROR ARGUMENT_TOO_LARGE\\0Unique value too large"]),
        case("reduce_three_args_only", CAT)
            .about("the 3-argument form of PROTOCOL: gearmand waits for another NUL")
            .no_sync()
            .connect()
            .send(1, "SUBMIT_REDUCE_JOB", &["f", "u", "red", "data"])
            .settle()
            .deviation("C5", "gearboxd answers ERROR INVALID_PACKET and closes")
            .gearbox(
                1,
                1,
                &[
                    "ERROR INVALID_PACKET\\0SUBMIT_REDUCE_JOB needs 5 NUL-separated fields, the body has 4",
                    "<closed>",
                ],
            ),
    ]
}
