//! Malformed input: bad magic, unknown types, truncated and oversized packets and
//! lines (§1, §3.11, compat C5).

use super::case;
use crate::diff::case::Case;

const CAT: &str = "malformed";

fn closes_with(name: &str, about: &str, bytes: &[u8], gearbox_error: &str) -> Case {
    case(name, CAT)
        .about(about)
        .connect()
        .raw(1, bytes)
        .send(1, "ECHO_REQ", &["after"])
        .settle()
        .deviation("C5", "gearboxd answers an ERROR before closing")
        .gearbox(1, 1, &[gearbox_error, "<closed>"])
}

fn header(magic: &[u8; 4], ptype: u32, size: u32) -> Vec<u8> {
    let mut v = magic.to_vec();
    v.extend_from_slice(&ptype.to_be_bytes());
    v.extend_from_slice(&size.to_be_bytes());
    v
}

pub fn cases() -> Vec<Case> {
    let long_fn = "f".repeat(8200);
    let ok_fn = "f".repeat(8100);
    let long_line = format!("status {}", "x".repeat(8300));
    let mut v = vec![
        closes_with(
            "malformed_bad_magic",
            "magic neither REQ nor RES: gearmand closes without a reply",
            &header(b"\0XYZ", 16, 0),
            "ERROR INVALID_MAGIC\\0bad magic [00, 58, 59, 5a]: expected \\\\0REQ or \\\\0RES",
        ),
        closes_with(
            "malformed_type_zero",
            "type 0: gearmand closes without a reply",
            &header(b"\0REQ", 0, 0),
            "ERROR INVALID_COMMAND\\0unknown packet type 0",
        ),
        closes_with(
            "malformed_type_43",
            "type 43: gearmand closes without a reply",
            &header(b"\0REQ", 43, 0),
            "ERROR INVALID_COMMAND\\0unknown packet type 43",
        ),
        closes_with(
            "malformed_type_1000",
            "type 1000 with a body: gearmand closes without a reply",
            &[header(b"\0REQ", 1000, 3), b"abc".to_vec()].concat(),
            "ERROR INVALID_COMMAND\\0unknown packet type 1000",
        ),
        case("malformed_res_magic", CAT)
            .about("a packet with RES magic gets ERROR INVALID_MAGIC and the connection stays open")
            .connect()
            .packet(1, b"\0RES", 16, b"x")
            .send(1, "ECHO_REQ", &["after"])
            .settle(),
        case("malformed_too_few_nuls_desync", CAT)
            .about("SUBMIT_JOB without NULs: gearmand's parser eats the next packet and desyncs")
            .connect()
            .packet(1, b"\0REQ", 7, b"fdata")
            .send(1, "ECHO_REQ", &["after"])
            .settle()
            .deviation("C5", "gearboxd splits within the declared size: ERROR INVALID_PACKET, close")
            .gearbox(
                1,
                1,
                &["ERROR INVALID_PACKET\\0SUBMIT_JOB needs 3 NUL-separated fields, the body has 1", "<closed>"],
            ),
        case("malformed_empty_submit_body", CAT)
            .about("SUBMIT_JOB_BG with an empty body")
            .connect()
            .packet(1, b"\0REQ", 18, b"")
            .settle()
            .deviation("C5", "gearboxd answers ERROR INVALID_PACKET and closes")
            .gearbox(
                1,
                1,
                &["ERROR INVALID_PACKET\\0SUBMIT_JOB_BG needs 3 NUL-separated fields, the body has 1", "<closed>"],
            ),
        case("malformed_work_complete_no_nul", CAT)
            .about("WORK_COMPLETE without a NUL after the handle")
            .connect()
            .packet(1, b"\0REQ", 13, b"H:x:1")
            .settle()
            .deviation("C5", "gearboxd answers ERROR INVALID_PACKET and closes")
            .gearbox(
                1,
                1,
                &["ERROR INVALID_PACKET\\0WORK_COMPLETE needs 2 NUL-separated fields, the body has 1", "<closed>"],
            ),
        case("malformed_truncated_header", CAT)
            .about("half a header and then silence: no reply, the connection stays open")
            .connect()
            .raw(1, b"\0REQ\0\0")
            .settle()
            .close(1),
        case("malformed_truncated_body_completed_later", CAT)
            .about("a body sent in two parts with a pause: answered once complete")
            .connect()
            .raw(1, &[header(b"\0REQ", 16, 10), b"hello".to_vec()].concat())
            .settle()
            .raw(1, b"world")
            .settle(),
        case("malformed_oversized_declared_size", CAT)
            .about("a declared body of 100 MiB that never comes: gearmand waits for it")
            .connect()
            .raw(1, &[header(b"\0REQ", 16, 100 << 20), b"abc".to_vec()].concat())
            .settle()
            .deviation("C5", "over --max-packet-size (64 MiB): gearboxd answers ARGUMENT_TOO_LARGE and closes")
            .gearbox(
                1,
                1,
                &[
                    "ERROR ARGUMENT_TOO_LARGE\\0packet body of 104857600 bytes is above the limit of 67108864",
                    "<closed>",
                ],
            ),
        case("malformed_function_name_8100_bytes", CAT)
            .about("an 8100-byte function name fits gearmand's 8 KiB buffer")
            .connect()
            .send(1, "SUBMIT_JOB_BG", &[&ok_fn, "", "x"])
            .send(1, "ECHO_REQ", &["after"])
            .settle(),
        case("malformed_function_name_8200_bytes", CAT)
            .about("an 8200-byte function name overflows gearmand's buffer: connection closed")
            .connect()
            .send(1, "SUBMIT_JOB_BG", &[&long_fn, "", "x"])
            .send(1, "ECHO_REQ", &["after"])
            .settle()
            .deviation("C5", "gearboxd accepts arguments past 8 KiB within the packet limit")
            .gearbox(1, 1, &["JOB_CREATED $H:1", "ECHO_RES after"]),
        case("malformed_text_line_too_long", CAT)
            .about("a text line over 8192 bytes: gearmand closes the connection")
            .connect()
            .line(1, &long_line)
            .settle()
            .deviation("C5", "gearboxd answers ERR ARGUMENT_TOO_LARGE and closes")
            .gearbox(
                1,
                1,
                &[r#"text "ERR ARGUMENT_TOO_LARGE Text+lines+are+limited+to+8192+bytes\r\n""#, "<closed>"],
            ),
        case("malformed_text_line_8000_bytes", CAT)
            .about("a text line under 8192 bytes is an ordinary (unknown) command")
            .connect()
            .line(1, &"y".repeat(8000))
            .settle(),
        case("malformed_can_do_timeout_one_field", CAT)
            .about("CAN_DO_TIMEOUT without the timeout field")
            .connect()
            .packet(1, b"\0REQ", 23, b"f")
            .send(1, "ECHO_REQ", &["after"])
            .settle()
            .deviation("C5", "gearboxd answers ERROR INVALID_PACKET and closes")
            .gearbox(
                1,
                1,
                &["ERROR INVALID_PACKET\\0CAN_DO_TIMEOUT needs 2 NUL-separated fields, the body has 1", "<closed>"],
            ),
        case("malformed_nul_inside_text_line", CAT)
            .about("a text line containing a NUL byte")
            .connect()
            .raw(1, b"stat\0us\r\n")
            .settle(),
        case("malformed_res_magic_unknown_type", CAT)
            .about("RES magic with type 0")
            .connect()
            .packet(1, b"\0RES", 0, b"")
            .send(1, "ECHO_REQ", &["after"])
            .settle()
            .deviation("C5", "type 0: gearboxd answers ERROR INVALID_COMMAND before closing")
            .gearbox(1, 1, &["ERROR INVALID_COMMAND\\0unknown packet type 0", "<closed>"]),
    ];
    v.push(
        case("malformed_garbage_after_valid_packet", CAT)
            .about("a valid packet followed by bad magic in the same write")
            .connect()
            .raw(
                1,
                &[
                    encode(16, b"first"),
                    header(b"\0BAD", 16, 0),
                ]
                .concat(),
            )
            .settle()
            .deviation("C5", "gearboxd answers the valid packet, then INVALID_MAGIC, then closes")
            .gearbox(
                1,
                1,
                &["ECHO_RES first", "ERROR INVALID_MAGIC\\0bad magic [00, 42, 41, 44]: expected \\\\0REQ or \\\\0RES", "<closed>"],
            ),
    );
    v
}

fn encode(ptype: u32, body: &[u8]) -> Vec<u8> {
    crate::diff::wire::encode_raw(*b"\0REQ", ptype, body)
}
