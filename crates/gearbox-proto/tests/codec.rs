//! Byte-exact golden tests of the codec, and its handling of hostile input.

use bytes::{BufMut, Bytes, BytesMut};
use gearbox_proto::admin::{self, AdminCommand, AdminError};
use gearbox_proto::packet::encode_req;
use gearbox_proto::{Codec, DecodeError, Frame, Magic, Packet, PacketType};
use tokio_util::codec::{Decoder, Encoder};

fn decode_all(bytes: &[u8]) -> (Vec<Frame>, Option<DecodeError>, usize) {
    let mut codec = Codec::default();
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, None, buf.len()),
            Err(e) => return (frames, Some(e), buf.len()),
        }
    }
}

fn packet(frame: &Frame) -> &Packet {
    match frame {
        Frame::Packet(p) => p,
        other => panic!("expected a packet, got {other:?}"),
    }
}

/// The worked example from gearmand's PROTOCOL document, byte for byte.
#[test]
fn protocol_document_example_round_trips() {
    let submit = b"\0REQ\x00\x00\x00\x07\x00\x00\x00\x0dreverse\x00\x00test";
    let created = b"\0RES\x00\x00\x00\x08\x00\x00\x00\x07H:lap:1";
    let assign = b"\0RES\x00\x00\x00\x0b\x00\x00\x00\x14H:lap:1\x00reverse\x00test";
    let complete = b"\0REQ\x00\x00\x00\x0d\x00\x00\x00\x0cH:lap:1\x00tset";

    let built = [
        Packet::req(PacketType::SUBMIT_JOB, &[b"reverse", b"", b"test"]),
        Packet::res(PacketType::JOB_CREATED, &[b"H:lap:1"]),
        Packet::res(PacketType::JOB_ASSIGN, &[b"H:lap:1", b"reverse", b"test"]),
        Packet::req(PacketType::WORK_COMPLETE, &[b"H:lap:1", b"tset"]),
    ];
    let wire: [&[u8]; 4] = [submit, created, assign, complete];
    for (p, bytes) in built.iter().zip(wire) {
        assert_eq!(p.to_bytes().as_ref(), bytes, "encoding {:?}", p.kind);
        let (frames, err, rest) = decode_all(bytes);
        assert!(err.is_none() && rest == 0);
        assert_eq!(packet(&frames[0]), p, "decoding {:?}", p.kind);
    }
}

#[test]
fn last_field_keeps_nul_bytes_and_single_field_types_take_whole_body() {
    let (frames, _, _) =
        decode_all(&Packet::req(PacketType::SUBMIT_JOB_BG, &[b"f", b"u", b"a\0b\0"]).to_bytes());
    assert_eq!(packet(&frames[0]).arg(2).as_ref(), b"a\0b\0");
    // CAN_DO "f\0" is a different function from "f", as in gearmand.
    let mut raw = BytesMut::new();
    encode_req(&mut raw, PacketType::CAN_DO, &[b"f\0"]);
    let (frames, _, _) = decode_all(&raw);
    assert_eq!(packet(&frames[0]).args(), &[Bytes::from_static(b"f\0")]);
}

#[test]
fn text_and_binary_interleave_at_packet_boundaries() {
    let mut raw = BytesMut::new();
    raw.put_slice(b"status\r\n");
    encode_req(&mut raw, PacketType::ECHO_REQ, &[b"hi"]);
    raw.put_slice(b"version\n");
    let (frames, err, rest) = decode_all(&raw);
    assert!(err.is_none() && rest == 0);
    assert_eq!(frames[0], Frame::Text(Bytes::from_static(b"status")));
    assert_eq!(packet(&frames[1]).kind, PacketType::ECHO_REQ);
    assert_eq!(frames[2], Frame::Text(Bytes::from_static(b"version")));
}

#[test]
fn partial_input_waits_for_more() {
    let full = Packet::req(PacketType::SUBMIT_JOB, &[b"f", b"u", b"data"]).to_bytes();
    for cut in 0..full.len() {
        let (frames, err, rest) = decode_all(&full[..cut]);
        assert!(
            frames.is_empty() && err.is_none() && rest == cut,
            "cut at {cut}"
        );
    }
    let (frames, _, _) = decode_all(b"stat");
    assert!(frames.is_empty());
}

#[test]
fn hostile_headers_are_refused_before_buffering() {
    // A 4 GiB size field: refused from the header alone.
    let (_, err, _) = decode_all(b"\0REQ\x00\x00\x00\x10\xff\xff\xff\xff");
    assert!(matches!(
        err,
        Some(DecodeError::TooLarge {
            size: 0xffff_ffff,
            ..
        })
    ));
    let (_, err, _) = decode_all(b"\0XYZ\x00\x00\x00\x10\x00\x00\x00\x00");
    assert!(matches!(err, Some(DecodeError::BadMagic(_))));
    for t in [0u32, 43, 1000] {
        let mut raw = b"\0REQ".to_vec();
        raw.extend_from_slice(&t.to_be_bytes());
        raw.extend_from_slice(&0u32.to_be_bytes());
        let (_, err, _) = decode_all(&raw);
        assert!(matches!(err, Some(DecodeError::UnknownType(n)) if n == t));
    }
}

/// gearmand searches past the declared size for NULs and desyncs; we check the
/// body alone and report the packet, leaving the next one intact.
#[test]
fn too_few_fields_are_caught_within_the_declared_size() {
    let mut raw = BytesMut::new();
    raw.put_slice(b"\0REQ");
    raw.put_u32(PacketType::SUBMIT_JOB as u32);
    raw.put_u32(3);
    raw.put_slice(b"f\0u"); // one NUL, SUBMIT_JOB needs two
    encode_req(&mut raw, PacketType::ECHO_REQ, &[b"x\0y"]);
    let (_, err, _) = decode_all(&raw);
    match err {
        Some(DecodeError::MissingFields {
            kind,
            expected,
            found,
        }) => {
            assert_eq!((kind, expected, found), (PacketType::SUBMIT_JOB, 3, 2));
        }
        other => panic!("expected MissingFields, got {other:?}"),
    }
}

#[test]
fn text_line_limit() {
    let long = vec![b'a'; 8192];
    let (_, err, _) = decode_all(&long);
    assert!(matches!(err, Some(DecodeError::LineTooLong)));
    let mut ok = vec![b'a'; 8191];
    ok.push(b'\n');
    let (frames, err, _) = decode_all(&ok);
    assert!(err.is_none() && frames.len() == 1);
}

#[test]
fn encoder_writes_what_decoder_reads() {
    let mut codec = Codec::default();
    let mut buf = BytesMut::new();
    let p = Packet::new(
        Magic::Res,
        PacketType::STATUS_RES_UNIQUE,
        &["u", "1", "0", "3", "4", "2"].map(|s| Bytes::copy_from_slice(s.as_bytes())),
    );
    codec.encode(&p, &mut buf).unwrap();
    assert_eq!(
        buf.as_ref(),
        b"\0RES\x00\x00\x00\x2a\x00\x00\x00\x0bu\x001\x000\x003\x004\x002"
    );
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::Packet(p)));
}

fn cmd(line: &str) -> Result<AdminCommand, AdminError> {
    admin::parse(&Bytes::copy_from_slice(line.as_bytes()))
}

#[test]
fn admin_commands_parse_like_gearmand() {
    assert_eq!(cmd("STATUS"), Ok(AdminCommand::Status));
    assert_eq!(cmd("status x y"), Ok(AdminCommand::Status));
    assert_eq!(
        cmd("  show   unique jobs "),
        Ok(AdminCommand::ShowUniqueJobs)
    );
    assert_eq!(
        cmd("cancel job H:x:1"),
        Ok(AdminCommand::CancelJob(Bytes::from_static(b"H:x:1")))
    );
    assert_eq!(cmd("cancel job a b"), Err(AdminError::UnknownError));
    assert_eq!(
        cmd("cancel job"),
        Err(AdminError::UnknownCommand(Bytes::from_static(b"cancel")))
    );
    assert_eq!(
        cmd("show"),
        Err(AdminError::UnknownCommand(Bytes::from_static(b"show")))
    );
    assert_eq!(cmd("show x"), Err(AdminError::UnknownShowArguments));
    assert_eq!(
        cmd("create function"),
        Err(AdminError::InvalidArguments(Bytes::from_static(b"create")))
    );
    assert_eq!(
        cmd("shutdown graceful"),
        Ok(AdminCommand::Shutdown { graceful: true })
    );
    assert_eq!(cmd("a b c d e f"), Err(AdminError::TooManyArguments));
    assert_eq!(cmd(""), Err(AdminError::UnknownCommand(Bytes::new())));
}

#[test]
fn maxqueue_forms() {
    let limits = |line: &str| match cmd(line) {
        Ok(AdminCommand::MaxQueue { limits, .. }) => limits,
        other => panic!("{other:?}"),
    };
    assert_eq!(limits("maxqueue f"), [0, 0, 0]);
    assert_eq!(limits("maxqueue f 7"), [7, 7, 7]);
    assert_eq!(limits("maxqueue f -3"), [0, 0, 0]);
    assert_eq!(limits("maxqueue f 1 2"), [1, 2, 0]);
    assert_eq!(limits("maxqueue f 1 2 3"), [1, 2, 3]);
    assert_eq!(
        cmd("maxqueue"),
        Err(AdminError::InvalidArguments(Bytes::from_static(
            b"maxqueue"
        )))
    );
}

#[test]
fn error_reply_texts_are_gearmands() {
    assert_eq!(
        AdminError::UnknownCommand(Bytes::from_static(b"foo")).reply(),
        b"ERR UNKNOWN_COMMAND Unknown+server+commandfoo\r\n"
    );
    assert_eq!(
        AdminError::InvalidArguments(Bytes::from_static(b"drop")).reply(),
        b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+drop\r\n"
    );
}
