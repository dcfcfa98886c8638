//! One connection to a Gearman server, speaking the binary protocol.
//!
//! Requests are encoded into a write buffer and sent with one `write_all` per
//! batch; replies are read in large chunks and every complete packet in a chunk
//! is handed back at once. That keeps the load generator's own syscall count low,
//! so what is measured is mostly the server.

use crate::{err, Error, Result};
use bytes::BytesMut;
use gearbox_proto::packet::encode_req;
use gearbox_proto::{Codec, Frame, Packet, PacketType};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::Decoder;

/// Where the server listens: `HOST:PORT` or `unix:/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp(String),
    Unix(PathBuf),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Target, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            Ok(Target::Unix(PathBuf::from(path)))
        } else if s.contains(':') {
            Ok(Target::Tcp(s.to_string()))
        } else {
            Err(format!("`{s}` is neither HOST:PORT nor unix:/path"))
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(addr) => write!(f, "{addr}"),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Target {
    pub fn transport(&self) -> &'static str {
        match self {
            Target::Tcp(_) => "tcp",
            Target::Unix(_) => "unix",
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

const READ_CHUNK: usize = 64 * 1024;

pub struct Conn {
    io: Box<dyn Io>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    codec: Codec,
}

impl Conn {
    pub async fn connect(target: &Target) -> Result<Conn> {
        let io: Box<dyn Io> = match target {
            Target::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| err!("cannot connect to {addr}: {e}"))?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            Target::Unix(path) => Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| err!("cannot connect to unix:{}: {e}", path.display()))?,
            ),
        };
        Ok(Conn {
            io,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(16 * 1024),
            codec: Codec::default(),
        })
    }

    /// Connects and also returns a second descriptor of the same socket for
    /// writing from a thread of its own (the open-loop pacer), while this
    /// [`Conn`] reads on the runtime. The socket is non-blocking for both (the
    /// flag belongs to the socket, not the descriptor).
    pub async fn connect_split(target: &Target) -> Result<(Conn, RawWriter)> {
        let (io, writer): (Box<dyn Io>, RawWriter) = match target {
            Target::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| err!("cannot connect to {addr}: {e}"))?;
                s.set_nodelay(true)?;
                let std = s.into_std()?;
                let w = std.try_clone()?;
                (
                    Box::new(tokio::net::TcpStream::from_std(std)?),
                    RawWriter::Tcp(w),
                )
            }
            Target::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| err!("cannot connect to unix:{}: {e}", path.display()))?;
                let std = s.into_std()?;
                let w = std.try_clone()?;
                (
                    Box::new(tokio::net::UnixStream::from_std(std)?),
                    RawWriter::Unix(w),
                )
            }
        };
        let conn = Conn {
            io,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::new(),
            codec: Codec::default(),
        };
        Ok((conn, writer))
    }

    /// Queues one request; nothing is sent until [`Conn::flush`].
    pub fn push(&mut self, kind: PacketType, fields: &[&[u8]]) {
        encode_req(&mut self.wbuf, kind, fields);
    }

    /// Queues raw bytes (an admin text line).
    pub fn push_raw(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    pub fn pending_write(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<()> {
        if !self.wbuf.is_empty() {
            self.io
                .write_all(&self.wbuf)
                .await
                .map_err(|e| err!("write to server failed: {e}"))?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Waits until at least one packet has arrived and appends every complete
    /// packet already received to `out`. Cancel-safe: bytes read are kept in the
    /// connection's buffer and packets decoded are already in `out`.
    pub async fn read_some(&mut self, out: &mut Vec<Packet>) -> Result<()> {
        let start = out.len();
        loop {
            while let Some(frame) = self.codec.decode(&mut self.rbuf)? {
                match frame {
                    Frame::Packet(p) => out.push(p),
                    Frame::Text(line) => {
                        return Err(err!(
                            "server sent a text line on a binary connection: {:?}",
                            String::from_utf8_lossy(&line)
                        ))
                    }
                }
            }
            if out.len() > start {
                return Ok(());
            }
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            let n = self
                .io
                .read_buf(&mut self.rbuf)
                .await
                .map_err(|e| err!("read from server failed: {e}"))?;
            if n == 0 {
                return Err(err!("server closed the connection"));
            }
        }
    }

    /// Reads raw bytes until `done(buffer)` holds; for admin replies.
    async fn read_text_until(&mut self, done: impl Fn(&[u8]) -> bool) -> Result<Vec<u8>> {
        loop {
            if done(&self.rbuf) {
                return Ok(self.rbuf.split().to_vec());
            }
            self.rbuf.reserve(READ_CHUNK);
            let n = self.io.read_buf(&mut self.rbuf).await?;
            if n == 0 {
                return Err(err!("server closed the admin connection"));
            }
        }
    }
}

/// The write side of a connection made by [`Conn::connect_split`]: a
/// non-blocking descriptor, written with plain `write(2)` from a thread that
/// is not on the runtime.
pub enum RawWriter {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl RawWriter {
    /// One non-blocking write; `WouldBlock` when the socket buffer is full.
    pub fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::io::Write;
        match self {
            RawWriter::Tcp(s) => s.write(buf),
            RawWriter::Unix(s) => s.write(buf),
        }
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            RawWriter::Tcp(s) => s.as_raw_fd(),
            RawWriter::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// One row of the admin `status` listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FunctionStatus {
    pub total: u64,
    pub running: u64,
    pub workers: u64,
}

/// Asks the server's admin `status` for one function. `None` if the function
/// is not listed. Fails if the reply is not complete within 20 s.
pub async fn admin_status(target: &Target, function: &str) -> Result<Option<FunctionStatus>> {
    admin_status_within(target, function, Duration::from_secs(20)).await
}

/// [`admin_status`] with a time limit of the caller's choosing.
pub async fn admin_status_within(
    target: &Target,
    function: &str,
    limit: Duration,
) -> Result<Option<FunctionStatus>> {
    let query = async {
        let mut conn = Conn::connect(target).await?;
        conn.push_raw(b"status\n");
        conn.flush().await?;
        let reply = conn
            .read_text_until(|b| b.starts_with(b".\n") || b.ends_with(b"\n.\n"))
            .await?;
        let text = String::from_utf8_lossy(&reply);
        for line in text.lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() == 4 && cols[0] == function {
                let num = |s: &str| -> Result<u64> {
                    s.trim()
                        .parse()
                        .map_err(|_| err!("admin status: bad number `{s}` in `{line}`"))
                };
                return Ok(Some(FunctionStatus {
                    total: num(cols[1])?,
                    running: num(cols[2])?,
                    workers: num(cols[3])?,
                }));
            }
        }
        Ok::<_, Error>(None)
    };
    tokio::time::timeout(limit, query).await.map_err(|_| {
        err!(
            "admin `status` got no complete reply within {:.1} s",
            limit.as_secs_f64()
        )
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            "127.0.0.1:4730".parse::<Target>().unwrap(),
            Target::Tcp("127.0.0.1:4730".into())
        );
        assert_eq!(
            "unix:/tmp/g.sock".parse::<Target>().unwrap(),
            Target::Unix("/tmp/g.sock".into())
        );
        assert!("unix:".parse::<Target>().is_err());
        assert!("localhost".parse::<Target>().is_err());
    }
}
