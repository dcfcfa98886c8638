//! Packet types and the layout of their arguments.
//!
//! A packet is a 12-byte header (`magic`, `type`, `size`, big-endian) and a body of
//! `size` bytes. The body holds a fixed number of fields per type: every field but
//! the last ends in a NUL byte, and the last runs to the end of the body, so opaque
//! data (which may contain NULs) always comes last.

use bytes::{BufMut, Bytes, BytesMut};

/// Which side sent a packet: `\0REQ` for requests, `\0RES` for responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magic {
    Req,
    Res,
}

impl Magic {
    pub const REQ: [u8; 4] = *b"\0REQ";
    pub const RES: [u8; 4] = *b"\0RES";

    pub fn bytes(self) -> [u8; 4] {
        match self {
            Magic::Req => Self::REQ,
            Magic::Res => Self::RES,
        }
    }

    pub fn from_bytes(raw: [u8; 4]) -> Option<Magic> {
        match raw {
            Self::REQ => Some(Magic::Req),
            Self::RES => Some(Magic::Res),
            _ => None,
        }
    }
}

macro_rules! packet_types {
    ($($name:ident = $num:literal, $fields:literal;)*) => {
        /// The 42 Gearman packet types. The discriminant is the wire number.
        ///
        /// Variants keep the protocol's own spelling so they can be found next to
        /// gearmand's PROTOCOL document and logs.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum PacketType {
            $($name = $num,)*
        }

        impl PacketType {
            /// The type for a wire number, or `None` for 0 and anything above 42.
            pub fn from_u32(n: u32) -> Option<PacketType> {
                match n {
                    $($num => Some(PacketType::$name),)*
                    _ => None,
                }
            }

            /// How many fields the body holds. The last field is the rest of the
            /// body; the ones before it end in NUL. Zero means the body is ignored.
            pub fn field_count(self) -> usize {
                match self {
                    $(PacketType::$name => $fields,)*
                }
            }

            /// The protocol's name for the type, e.g. `SUBMIT_JOB_BG`.
            pub fn name(self) -> &'static str {
                match self {
                    $(PacketType::$name => stringify!($name),)*
                }
            }
        }
    };
}

packet_types! {
    CAN_DO = 1, 1;
    CANT_DO = 2, 1;
    RESET_ABILITIES = 3, 0;
    PRE_SLEEP = 4, 0;
    UNUSED = 5, 0;
    NOOP = 6, 0;
    SUBMIT_JOB = 7, 3;
    JOB_CREATED = 8, 1;
    GRAB_JOB = 9, 0;
    NO_JOB = 10, 0;
    JOB_ASSIGN = 11, 3;
    WORK_STATUS = 12, 3;
    WORK_COMPLETE = 13, 2;
    WORK_FAIL = 14, 1;
    GET_STATUS = 15, 1;
    ECHO_REQ = 16, 1;
    ECHO_RES = 17, 1;
    SUBMIT_JOB_BG = 18, 3;
    ERROR = 19, 2;
    STATUS_RES = 20, 5;
    SUBMIT_JOB_HIGH = 21, 3;
    SET_CLIENT_ID = 22, 1;
    CAN_DO_TIMEOUT = 23, 2;
    ALL_YOURS = 24, 0;
    WORK_EXCEPTION = 25, 2;
    OPTION_REQ = 26, 1;
    OPTION_RES = 27, 1;
    WORK_DATA = 28, 2;
    WORK_WARNING = 29, 2;
    GRAB_JOB_UNIQ = 30, 0;
    JOB_ASSIGN_UNIQ = 31, 4;
    SUBMIT_JOB_HIGH_BG = 32, 3;
    SUBMIT_JOB_LOW = 33, 3;
    SUBMIT_JOB_LOW_BG = 34, 3;
    SUBMIT_JOB_SCHED = 35, 8;
    SUBMIT_JOB_EPOCH = 36, 4;
    SUBMIT_REDUCE_JOB = 37, 5;
    SUBMIT_REDUCE_JOB_BACKGROUND = 38, 5;
    GRAB_JOB_ALL = 39, 0;
    JOB_ASSIGN_ALL = 40, 5;
    GET_STATUS_UNIQUE = 41, 1;
    STATUS_RES_UNIQUE = 42, 6;
}

/// The most fields any packet type has (SUBMIT_JOB_SCHED).
pub const MAX_FIELDS: usize = 8;

/// One binary packet, with its body already split into fields.
///
/// Fields are `Bytes` slices of the one body buffer, so splitting copies nothing
/// and a job's payload can be kept as long as the job lives without a copy.
#[derive(Clone, PartialEq, Eq)]
pub struct Packet {
    pub magic: Magic,
    pub kind: PacketType,
    fields: [Bytes; MAX_FIELDS],
    len: u8,
}

impl std::fmt::Debug for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packet")
            .field("magic", &self.magic)
            .field("kind", &self.kind)
            .field("args", &self.args())
            .finish()
    }
}

/// The body had fewer NUL separators than its type needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingFields {
    pub expected: usize,
    pub found: usize,
}

impl Packet {
    /// Builds a packet from its fields. Panics if more fields are given than the
    /// type has, because that is a programming error, never input.
    pub fn new(magic: Magic, kind: PacketType, args: &[Bytes]) -> Packet {
        assert!(
            args.len() <= kind.field_count().max(1) && args.len() <= MAX_FIELDS,
            "{} takes {} fields, got {}",
            kind.name(),
            kind.field_count(),
            args.len()
        );
        let mut fields: [Bytes; MAX_FIELDS] = Default::default();
        for (slot, arg) in fields.iter_mut().zip(args) {
            *slot = arg.clone();
        }
        Packet {
            magic,
            kind,
            fields,
            len: args.len() as u8,
        }
    }

    /// A request packet (`\0REQ`).
    pub fn req(kind: PacketType, args: &[&[u8]]) -> Packet {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        Packet::new(Magic::Req, kind, &args)
    }

    /// A response packet (`\0RES`).
    pub fn res(kind: PacketType, args: &[&[u8]]) -> Packet {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        Packet::new(Magic::Res, kind, &args)
    }

    /// Splits `body` into the fields that `kind` declares. The search for NULs
    /// never looks past the body, unlike gearmand's parser, which reads into the
    /// next packet when a body is short of NULs.
    pub fn parse(magic: Magic, kind: PacketType, body: Bytes) -> Result<Packet, MissingFields> {
        let expected = kind.field_count();
        let mut fields: [Bytes; MAX_FIELDS] = Default::default();
        if expected == 0 {
            return Ok(Packet {
                magic,
                kind,
                fields,
                len: 0,
            });
        }
        let mut rest = body;
        for (found, slot) in fields.iter_mut().enumerate().take(expected - 1) {
            match rest.iter().position(|&b| b == 0) {
                Some(nul) => {
                    *slot = rest.split_to(nul);
                    let _ = rest.split_to(1);
                }
                None => {
                    return Err(MissingFields {
                        expected,
                        found: found + 1,
                    })
                }
            }
        }
        fields[expected - 1] = rest;
        Ok(Packet {
            magic,
            kind,
            fields,
            len: expected as u8,
        })
    }

    /// All fields, in wire order.
    pub fn args(&self) -> &[Bytes] {
        &self.fields[..self.len as usize]
    }

    /// Field `i`, or an empty slice if the packet has fewer fields.
    pub fn arg(&self, i: usize) -> &Bytes {
        static EMPTY: Bytes = Bytes::new();
        self.args().get(i).unwrap_or(&EMPTY)
    }

    /// Appends the packet's wire form to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        let refs: Vec<&[u8]> = self.args().iter().map(|a| a.as_ref()).collect();
        encode_parts(dst, self.magic, self.kind, &refs);
    }

    /// The packet's wire form as a fresh buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut dst = BytesMut::new();
        self.encode(&mut dst);
        dst.freeze()
    }
}

/// Appends one packet built from borrowed fields, joined by NULs. This is the hot
/// path for replies: no `Packet`, no per-field allocation.
pub fn encode_parts(dst: &mut BytesMut, magic: Magic, kind: PacketType, fields: &[&[u8]]) {
    let body_len: usize =
        fields.iter().map(|f| f.len()).sum::<usize>() + fields.len().saturating_sub(1);
    dst.reserve(12 + body_len);
    dst.put_slice(&magic.bytes());
    dst.put_u32(kind as u32);
    dst.put_u32(body_len as u32);
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            dst.put_u8(0);
        }
        dst.put_slice(field);
    }
}

/// Appends a response packet (`\0RES`) built from borrowed fields.
pub fn encode_res(dst: &mut BytesMut, kind: PacketType, fields: &[&[u8]]) {
    encode_parts(dst, Magic::Res, kind, fields);
}

/// Appends a request packet (`\0REQ`) built from borrowed fields.
pub fn encode_req(dst: &mut BytesMut, kind: PacketType, fields: &[&[u8]]) {
    encode_parts(dst, Magic::Req, kind, fields);
}
