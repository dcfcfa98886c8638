//! The Gearman wire protocol, with no I/O.
//!
//! * [`packet`]: the 42 packet types, their argument layouts and [`Packet`] itself.
//! * [`codec`]: a `tokio-util` codec that frames binary packets and admin text lines
//!   on one stream, checking for text at every packet boundary as gearmand does.
//! * [`admin`]: parsing of admin text commands and gearmand's exact reply texts.
//!
//! The server, the client SDK and the worker SDK all build on this crate, so that
//! there is exactly one definition of what a valid packet is.

pub mod admin;
pub mod codec;
pub mod packet;

pub use codec::{Codec, DecodeError, Frame, DEFAULT_MAX_PACKET_SIZE, HEADER_LEN, MAX_TEXT_LINE};
pub use packet::{Magic, Packet, PacketType};
