//! Framing for a Gearman stream: binary packets and admin text lines, mixed.
//!
//! gearmand decides between binary and text at every packet boundary: a first byte
//! of `0x00` starts a binary packet, anything else a text line. Clients rely on
//! that (gearadmin and telnet users share the port with workers), so the codec
//! does the same.
//!
//! Unlike gearmand, the codec validates each body against its declared size and
//! refuses sizes above a configured maximum before buffering them, so a 4 GiB
//! length field costs nothing.

use crate::packet::{encode_parts, Magic, Packet, PacketType};
use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Length of the binary header: magic, type, size.
pub const HEADER_LEN: usize = 12;
/// Longest admin text line gearmand accepts, including its `\n`.
pub const MAX_TEXT_LINE: usize = 8192;
/// Default limit on a packet body. gearmand has none; 64 MiB is far above any
/// payload seen in practice and far below what would hurt the server.
pub const DEFAULT_MAX_PACKET_SIZE: u32 = 64 * 1024 * 1024;

/// One unit read from the stream.
///
/// A frame is moved once, from the decoder to its handler, so the large packet
/// variant is kept inline: boxing it would cost an allocation per packet.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Packet(Packet),
    /// An admin text line, without its `\n` or a trailing `\r`.
    Text(Bytes),
}

/// Why the stream cannot be read further. Each of these ends the connection:
/// after a framing error the next byte's meaning is unknown.
#[derive(Debug)]
pub enum DecodeError {
    /// The first byte was 0 but the magic was neither `\0REQ` nor `\0RES`.
    BadMagic([u8; 4]),
    /// Packet type 0 or above 42.
    UnknownType(u32),
    /// The declared body size is above the configured maximum.
    TooLarge {
        size: u32,
        max: u32,
    },
    /// The body holds fewer NUL-separated fields than its type requires.
    MissingFields {
        kind: PacketType,
        expected: usize,
        found: usize,
    },
    /// A text line longer than [`MAX_TEXT_LINE`].
    LineTooLong,
    Io(std::io::Error),
}

impl DecodeError {
    /// The ERROR packet code a server sends before closing.
    pub fn error_code(&self) -> &'static str {
        match self {
            DecodeError::BadMagic(_) => "INVALID_MAGIC",
            DecodeError::UnknownType(_) => "INVALID_COMMAND",
            DecodeError::TooLarge { .. } => "ARGUMENT_TOO_LARGE",
            DecodeError::MissingFields { .. } => "INVALID_PACKET",
            DecodeError::LineTooLong => "ARGUMENT_TOO_LARGE",
            DecodeError::Io(_) => "UNKNOWN_ERROR",
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::BadMagic(m) => write!(f, "bad magic {m:02x?}: expected \\0REQ or \\0RES"),
            DecodeError::UnknownType(t) => write!(f, "unknown packet type {t}"),
            DecodeError::TooLarge { size, max } => {
                write!(f, "packet body of {size} bytes is above the limit of {max}")
            }
            DecodeError::MissingFields {
                kind,
                expected,
                found,
            } => write!(
                f,
                "{} needs {expected} NUL-separated fields, the body has {found}",
                kind.name()
            ),
            DecodeError::LineTooLong => {
                write!(f, "text line longer than {MAX_TEXT_LINE} bytes")
            }
            DecodeError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<std::io::Error> for DecodeError {
    fn from(e: std::io::Error) -> Self {
        DecodeError::Io(e)
    }
}

/// The codec. Encoding writes packets as they are; decoding yields [`Frame`]s.
#[derive(Debug, Clone)]
pub struct Codec {
    max_packet_size: u32,
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new(DEFAULT_MAX_PACKET_SIZE)
    }
}

impl Codec {
    pub fn new(max_packet_size: u32) -> Codec {
        Codec { max_packet_size }
    }

    fn decode_packet(&self, src: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let magic_raw: [u8; 4] = src[0..4].try_into().expect("4 bytes");
        let magic = Magic::from_bytes(magic_raw).ok_or(DecodeError::BadMagic(magic_raw))?;
        let type_num = u32::from_be_bytes(src[4..8].try_into().expect("4 bytes"));
        let kind = PacketType::from_u32(type_num).ok_or(DecodeError::UnknownType(type_num))?;
        let size = u32::from_be_bytes(src[8..12].try_into().expect("4 bytes"));
        if size > self.max_packet_size {
            return Err(DecodeError::TooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        let total = HEADER_LEN + size as usize;
        if src.len() < total {
            // Grow toward the packet, a megabyte at a time: memory follows the
            // bytes that actually arrive, not the size a peer claims.
            src.reserve((total - src.len()).min(1 << 20));
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let body = src.split_to(size as usize).freeze();
        let packet = Packet::parse(magic, kind, body).map_err(|m| DecodeError::MissingFields {
            kind,
            expected: m.expected,
            found: m.found,
        })?;
        Ok(Some(Frame::Packet(packet)))
    }

    fn decode_text(&self, src: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        let window = &src[..src.len().min(MAX_TEXT_LINE)];
        match window.iter().position(|&b| b == b'\n') {
            Some(nl) => {
                let mut line = src.split_to(nl + 1);
                line.truncate(nl);
                if line.last() == Some(&b'\r') {
                    line.truncate(nl - 1);
                }
                Ok(Some(Frame::Text(line.freeze())))
            }
            None if src.len() >= MAX_TEXT_LINE => Err(DecodeError::LineTooLong),
            None => Ok(None),
        }
    }
}

impl Decoder for Codec {
    type Item = Frame;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        match src.first() {
            None => Ok(None),
            Some(0) => self.decode_packet(src),
            Some(_) => self.decode_text(src),
        }
    }
}

impl Encoder<Packet> for Codec {
    type Error = std::io::Error;

    fn encode(&mut self, packet: Packet, dst: &mut BytesMut) -> std::io::Result<()> {
        packet.encode(dst);
        Ok(())
    }
}

impl Encoder<&Packet> for Codec {
    type Error = std::io::Error;

    fn encode(&mut self, packet: &Packet, dst: &mut BytesMut) -> std::io::Result<()> {
        packet.encode(dst);
        Ok(())
    }
}

/// Builds an ERROR packet body: `CODE\0text`.
pub fn encode_error(dst: &mut BytesMut, code: &str, text: &str) {
    encode_parts(
        dst,
        Magic::Res,
        PacketType::ERROR,
        &[code.as_bytes(), text.as_bytes()],
    );
}
