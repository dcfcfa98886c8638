//! Text and binary interleaved on one connection; packets split across writes and
//! pipelined (§1 "Text/admin detection").

use super::case;
use crate::diff::case::Case;
use crate::diff::wire::encode_request;

const CAT: &str = "interleave";

pub fn cases() -> Vec<Case> {
    let submit = encode_request(7, &[b"f".to_vec(), b"".to_vec(), b"split".to_vec()]);
    let (head, tail) = submit.split_at(5);
    let echo = encode_request(16, &[b"byte by byte".to_vec()]);
    let mut bytewise = case("interleave_packet_byte_by_byte", CAT)
        .about("a packet written one byte at a time is read whole")
        .connect();
    for b in &echo {
        bytewise = bytewise.raw(1, &[*b]).sleep(5);
    }
    vec![
        case("interleave_text_and_binary_one_write", CAT)
            .about("packets and admin lines in one write are answered in order")
            .local_only("it names a handle by number")
            .connect()
            .batch(
                1,
                &[
                    Ok(("ECHO_REQ", &["one"])),
                    Err("status"),
                    Ok(("SUBMIT_JOB_BG", &["f", "", "x"])),
                    Err("status"),
                    Ok(("ECHO_REQ", &["two"])),
                    Err("version"),
                    Ok(("GET_STATUS", &["$H:1"])),
                ],
            )
            .settle(),
        case("interleave_worker_uses_admin", CAT)
            .about("a worker connection can send admin commands between its packets")
            .connect_n(2)
            .send(1, "SUBMIT_JOB_BG", &["f", "", "x"])
            .settle()
            .send(2, "CAN_DO", &["f"])
            .line(2, "status")
            .send(2, "GRAB_JOB", &[])
            .line(2, "workers")
            .settle()
            .send(2, "WORK_COMPLETE", &["$A2", ""])
            .line(2, "show jobs")
            .settle(),
        case("interleave_pipelined_packets", CAT)
            .about("many packets in one write")
            .local_only("it names a handle by number")
            .connect_n(2)
            .batch(
                1,
                &[
                    Ok(("SUBMIT_JOB", &["f", "", "1"])),
                    Ok(("SUBMIT_JOB_BG", &["f", "", "2"])),
                    Ok(("SUBMIT_JOB_HIGH", &["f", "", "3"])),
                    Ok(("OPTION_REQ", &["exceptions"])),
                    Ok(("ECHO_REQ", &["e"])),
                    Ok(("GET_STATUS", &["$H:2"])),
                ],
            )
            .settle()
            .batch(
                2,
                &[
                    Ok(("CAN_DO", &["f"])),
                    Ok(("GRAB_JOB", &[])),
                    Ok(("GRAB_JOB", &[])),
                    Ok(("GRAB_JOB", &[])),
                    Ok(("GRAB_JOB", &[])),
                ],
            )
            .settle(),
        case("interleave_packet_split_across_writes", CAT)
            .about("a packet whose header is split across two writes")
            .connect()
            .raw(1, head)
            .settle()
            .raw(1, tail)
            .settle(),
        bytewise.settle(),
        case("interleave_text_line_split", CAT)
            .about("an admin line split across writes is answered once complete")
            .connect()
            .raw(1, b"sta")
            .settle()
            .raw(1, b"tus")
            .settle()
            .line(1, "")
            .settle(),
        case("interleave_lf_and_crlf_mixed", CAT)
            .about("LF and CRLF lines mixed with packets")
            .connect()
            .line_lf(1, "version")
            .send(1, "ECHO_REQ", &["x"])
            .line(1, "verbose")
            .line_lf(1, "nosuch")
            .settle(),
        case("interleave_text_after_res_magic", CAT)
            .about("after a RES-magic ERROR the connection still takes text and packets")
            .connect()
            .packet(1, b"\0RES", 16, b"x")
            .line(1, "status")
            .send(1, "ECHO_REQ", &["still"])
            .settle(),
    ]
}
