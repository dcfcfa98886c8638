//! Gearman framing (§1 of gearmand-behaviour.md): packet type names, request encoding,
//! and parsing of what a server sends back into frames.

/// Names of packet types 1..=42, as in gearmand's PROTOCOL document.
pub const PACKET_NAMES: [&str; 42] = [
    "CAN_DO",
    "CANT_DO",
    "RESET_ABILITIES",
    "PRE_SLEEP",
    "UNUSED",
    "NOOP",
    "SUBMIT_JOB",
    "JOB_CREATED",
    "GRAB_JOB",
    "NO_JOB",
    "JOB_ASSIGN",
    "WORK_STATUS",
    "WORK_COMPLETE",
    "WORK_FAIL",
    "GET_STATUS",
    "ECHO_REQ",
    "ECHO_RES",
    "SUBMIT_JOB_BG",
    "ERROR",
    "STATUS_RES",
    "SUBMIT_JOB_HIGH",
    "SET_CLIENT_ID",
    "CAN_DO_TIMEOUT",
    "ALL_YOURS",
    "WORK_EXCEPTION",
    "OPTION_REQ",
    "OPTION_RES",
    "WORK_DATA",
    "WORK_WARNING",
    "GRAB_JOB_UNIQ",
    "JOB_ASSIGN_UNIQ",
    "SUBMIT_JOB_HIGH_BG",
    "SUBMIT_JOB_LOW",
    "SUBMIT_JOB_LOW_BG",
    "SUBMIT_JOB_SCHED",
    "SUBMIT_JOB_EPOCH",
    "SUBMIT_REDUCE_JOB",
    "SUBMIT_REDUCE_JOB_BACKGROUND",
    "GRAB_JOB_ALL",
    "JOB_ASSIGN_ALL",
    "GET_STATUS_UNIQUE",
    "STATUS_RES_UNIQUE",
];

/// Name of a packet type, or `TYPE#n` for numbers outside 1..=42.
pub fn packet_name(ptype: u32) -> String {
    match ptype {
        1..=42 => PACKET_NAMES[ptype as usize - 1].to_owned(),
        n => format!("TYPE#{n}"),
    }
}

/// Type number of a packet name (exact, upper case). Panics on an unknown name: case
/// definitions are code, so a typo is a programming error.
pub fn packet_type(name: &str) -> u32 {
    PACKET_NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32 + 1)
        .unwrap_or_else(|| panic!("unknown packet type name {name:?}"))
}

/// A packet type given either as a number or as a name.
pub trait IntoPacketType {
    fn packet_type(self) -> u32;
}

impl IntoPacketType for u32 {
    fn packet_type(self) -> u32 {
        self
    }
}

impl IntoPacketType for &str {
    fn packet_type(self) -> u32 {
        packet_type(self)
    }
}

/// `\0REQ`, type (u32 BE), size (u32 BE), then the arguments joined by NUL.
pub fn encode_request(ptype: u32, args: &[Vec<u8>]) -> Vec<u8> {
    let body = args.join(&0u8);
    encode_raw(*b"\0REQ", ptype, &body)
}

/// A packet with any magic, type and body (size = body length).
pub fn encode_raw(magic: [u8; 4], ptype: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + body.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&ptype.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// One unit of what a server sent on a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A binary packet. `res` is false if the magic was not `\0RES`.
    Packet {
        magic: [u8; 4],
        ptype: u32,
        body: Vec<u8>,
    },
    /// A text line including its `\n` (and `\r`, if any).
    Text(Vec<u8>),
    /// The server closed the connection (EOF or reset).
    Closed,
    /// Bytes left over that do not form a whole frame when the session ended.
    Partial(Vec<u8>),
}

/// Splits complete frames off the front of `buf` (a connection's unparsed input),
/// leaving an incomplete tail in place. Text or binary is decided at every frame
/// boundary, as gearmand does: a leading NUL byte means a binary packet.
pub fn parse_frames(buf: &mut Vec<u8>) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &buf[pos..];
        if rest.is_empty() {
            break;
        }
        if rest[0] == 0 {
            if rest.len() < 12 {
                break;
            }
            let size = u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize;
            if rest.len() < 12 + size {
                break;
            }
            let mut magic = [0u8; 4];
            magic.copy_from_slice(&rest[..4]);
            let ptype = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
            frames.push(Frame::Packet {
                magic,
                ptype,
                body: rest[12..12 + size].to_vec(),
            });
            pos += 12 + size;
        } else {
            match rest.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    frames.push(Frame::Text(rest[..=nl].to_vec()));
                    pos += nl + 1;
                }
                None => break,
            }
        }
    }
    buf.drain(..pos);
    frames
}

/// Bodies longer than this are shown as a length, a hash and a prefix.
const MAX_SHOWN_BODY: usize = 512;

/// Escapes bytes for a transcript: printable ASCII as is, `\\`, `\0`, `\t`, `\r`,
/// `\n`, everything else `\xNN`. Injective, so equal renderings mean equal bytes.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            0 => out.push_str("\\0"),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// FNV-1a 64, to show long bodies compactly but exactly.
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Escapes a body. A body over 512 bytes keeps up to 3 leading short NUL-terminated
/// fields (handle, function, unique…) and shows the rest as
/// `<N bytes fnv64=… starting: …>`.
pub fn escape_body(body: &[u8]) -> String {
    if body.len() <= MAX_SHOWN_BODY {
        return escape(body);
    }
    let mut start = 0;
    for _ in 0..3 {
        match body[start..].iter().position(|&b| b == 0) {
            Some(n) if n <= 128 => start += n + 1,
            _ => break,
        }
    }
    let rest = &body[start..];
    format!(
        "{}<{} bytes fnv64={:016x} starting: {}>",
        escape(&body[..start]),
        rest.len(),
        fnv64(rest),
        escape(&rest[..rest.len().min(64)])
    )
}

/// A frame as one transcript line: `NAME body` for packets (a magic other than `\0RES`
/// is shown as `[magic]` first), `text "line"` for text lines, `<closed>`, and
/// `<partial …>`.
pub fn render_frame(frame: &Frame) -> String {
    match frame {
        Frame::Packet { magic, ptype, body } => {
            let mut s = String::new();
            if magic != b"\0RES" {
                s.push_str(&format!("[magic {}] ", escape(magic)));
            }
            s.push_str(&packet_name(*ptype));
            if !body.is_empty() {
                s.push(' ');
                s.push_str(&escape_body(body));
            }
            s
        }
        Frame::Text(line) => format!("text \"{}\"", escape_body(line)),
        Frame::Closed => "<closed>".to_owned(),
        Frame::Partial(bytes) => format!("<partial {} bytes: {}>", bytes.len(), escape_body(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in 1..=42u32 {
            assert_eq!(packet_type(&packet_name(t)), t);
        }
        assert_eq!(packet_name(0), "TYPE#0");
        assert_eq!(packet_name(43), "TYPE#43");
    }

    #[test]
    fn encodes_and_parses() {
        let req = encode_request(7, &[b"f".to_vec(), b"u".to_vec(), b"d\0x".to_vec()]);
        assert_eq!(&req[..12], b"\0REQ\0\0\0\x07\0\0\0\x07");
        let mut buf = encode_raw(*b"\0RES", 8, b"H:x:1");
        buf.extend_from_slice(b"OK\r\n.\npart");
        let frames = parse_frames(&mut buf);
        assert_eq!(frames.len(), 3);
        assert_eq!(render_frame(&frames[0]), "JOB_CREATED H:x:1");
        assert_eq!(render_frame(&frames[1]), "text \"OK\\r\\n\"");
        assert_eq!(render_frame(&frames[2]), "text \".\\n\"");
        assert_eq!(buf, b"part");
    }

    #[test]
    fn escapes_injectively() {
        assert_eq!(escape(b"a\\0\0\x01\xff"), "a\\\\0\\0\\x01\\xff");
    }
}
