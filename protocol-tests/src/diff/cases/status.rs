//! GET_STATUS and GET_STATUS_UNIQUE on known and unknown jobs (§2 rows 15, 20, 41,
//! 42, §3.7, compat C6).

use super::case;
use crate::diff::case::Case;

const CAT: &str = "status";

pub fn cases() -> Vec<Case> {
    let h64 = format!("H:{}", "9".repeat(62));
    let h63 = format!("H:{}", "9".repeat(61));
    let u64s = "q".repeat(64);
    vec![
        case("get_status_from_any_connection", CAT)
            .about("GET_STATUS has no ownership check")
            .connect_n(3)
            .send(1, "SUBMIT_JOB", &["f", "", "x"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_STATUS", &["$A2", "2", "9"])
            .settle()
            .send(3, "GET_STATUS", &["$C1"])
            .send(2, "GET_STATUS", &["$C1"])
            .settle(),
        case("get_status_status_not_forwarded_to_bg", CAT)
            .about("num/den of the last WORK_STATUS win; big numbers are kept")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["f", "", "x"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_STATUS", &["$A2", "1", "2"])
            .send(2, "WORK_STATUS", &["$A2", "4000000000", "4294967295"])
            .settle()
            .send(1, "GET_STATUS", &["$C1"])
            .settle(),
        case("get_status_handle_63_bytes", CAT)
            .about("a 63-byte unknown handle is simply unknown")
            .connect()
            .send(1, "GET_STATUS", &[&h63])
            .send(1, "ECHO_REQ", &["open"])
            .settle(),
        case("get_status_handle_64_bytes", CAT)
            .about("a handle of 64 bytes: gearmand closes the connection")
            .connect()
            .send(1, "GET_STATUS", &[&h64])
            .send(1, "ECHO_REQ", &["open"])
            .settle()
            .deviation(
                "C6",
                "gearboxd answers unknown (all zeros) and keeps the connection",
            )
            .gearbox(
                1,
                1,
                &[
                    &format!("STATUS_RES {h64}\\00\\00\\00\\00"),
                    "ECHO_RES open",
                ],
            ),
        case("work_fail_handle_64_bytes", CAT)
            .about("WORK_FAIL with a 64-byte handle: gearmand answers ARGUMENT_TOO_LARGE")
            .connect()
            .send(1, "WORK_FAIL", &[&h64])
            .settle()
            .deviation(
                "C6",
                "gearboxd answers JOB_NOT_FOUND as for any unknown handle",
            )
            .gearbox(
                1,
                1,
                &["ERROR JOB_NOT_FOUND\\0Job given in work result not found"],
            ),
        case("get_status_unique_unknown", CAT)
            .about("an unknown unique: the unique and five zero fields")
            .connect()
            .send(1, "GET_STATUS_UNIQUE", &["nope"])
            .send(1, "GET_STATUS_UNIQUE", &[""])
            .settle(),
        case("get_status_unique_any_function", CAT)
            .about("GET_STATUS_UNIQUE finds the unique under any function")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["g", "k", "x"])
            .settle()
            .send(2, "GET_STATUS_UNIQUE", &["k"])
            .settle(),
        case("get_status_unique_counts_clients", CAT)
            .about("clients = attached foreground clients (background submits do not count)")
            .connect_n(4)
            .send(1, "SUBMIT_JOB", &["f", "k", "x"])
            .send(2, "SUBMIT_JOB", &["f", "k", "x"])
            .send(3, "SUBMIT_JOB_BG", &["f", "k", "x"])
            .settle()
            .send(4, "GET_STATUS_UNIQUE", &["k"])
            .settle()
            .close(2)
            .settle()
            .send(4, "GET_STATUS_UNIQUE", &["k"])
            .settle(),
        case("get_status_unique_64_bytes", CAT)
            .about("a 64-byte unique in GET_STATUS_UNIQUE: gearmand closes the connection")
            .connect()
            .send(1, "GET_STATUS_UNIQUE", &[&u64s])
            .send(1, "ECHO_REQ", &["open"])
            .settle()
            .deviation(
                "C6",
                "gearboxd answers unknown (all zeros) and keeps the connection",
            )
            .gearbox(
                1,
                1,
                &[
                    &format!("STATUS_RES_UNIQUE {u64s}\\00\\00\\00\\00\\00"),
                    "ECHO_RES open",
                ],
            ),
        case("get_status_after_fail", CAT)
            .about("after WORK_FAIL the handle is unknown")
            .connect_n(2)
            .send(1, "SUBMIT_JOB", &["f", "k", "x"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .send(2, "GRAB_JOB", &[])
            .settle()
            .send(2, "WORK_FAIL", &["$A2"])
            .settle()
            .send(1, "GET_STATUS", &["$C1"])
            .send(1, "GET_STATUS_UNIQUE", &["k"])
            .settle(),
    ]
}
