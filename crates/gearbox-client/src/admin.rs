//! The admin text protocol (what `gearadmin` speaks), on its own connection.
//!
//! Admin commands are lines of text on the job port. A reply is either a
//! listing (`status`, `prioritystatus`, `workers`, `show jobs`,
//! `show unique jobs`: lines ending with a `.` line) or one line: `OK`,
//! `OK <value>` or `ERR <code> <text>`. Commands are sent with `\r\n`, as
//! gearadmin does: gearmand's `create function` drops the last character of
//! its argument on an LF-only line.

use crate::error::Error;
use crate::transport::ServerAddr;
use bytes::Bytes;
use futures_util::StreamExt;
use gearbox_proto::{Codec, Frame};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::FramedRead;

/// A parsed admin reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminReply {
    /// The lines of a listing, without the final `.`.
    Listing(Vec<Bytes>),
    /// `OK`, with the value after `OK ` if there is one (`getpid`, `version`).
    Ok(Option<Bytes>),
}

impl AdminReply {
    /// The reply as gearadmin prints it: listings line by line with the `.`
    /// line, `OK` as `OK`, and `OK <value>` as the value alone.
    pub fn to_display_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            AdminReply::Listing(lines) => {
                for line in lines {
                    out.extend_from_slice(line);
                    out.push(b'\n');
                }
                out.extend_from_slice(b".\n");
            }
            AdminReply::Ok(None) => out.extend_from_slice(b"OK\n"),
            AdminReply::Ok(Some(value)) => {
                out.extend_from_slice(value);
                out.push(b'\n');
            }
        }
        out
    }
}

/// One row of `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionStatus {
    pub function: String,
    /// Queued plus running.
    pub total: u64,
    pub running: u64,
    pub workers: u64,
}

/// An admin connection to one server. Commands run one at a time.
pub struct Admin {
    addr: ServerAddr,
    timeout: Duration,
    read: FramedRead<tokio::io::ReadHalf<crate::transport::Stream>, Codec>,
    write: tokio::io::WriteHalf<crate::transport::Stream>,
}

impl Admin {
    /// Connects within `timeout`; every later reply is also awaited at most
    /// `timeout`.
    pub async fn connect(addr: &ServerAddr, timeout: Duration) -> Result<Admin, Error> {
        let stream = addr.connect(timeout).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                Error::Timeout {
                    server: Some(addr.clone()),
                    what: "connect",
                    after: timeout,
                }
            } else {
                Error::Io {
                    server: addr.clone(),
                    message: format!("connect: {e}"),
                }
            }
        })?;
        let (read, write) = tokio::io::split(stream);
        Ok(Admin {
            addr: addr.clone(),
            timeout,
            read: FramedRead::new(read, Codec::default()),
            write,
        })
    }

    pub fn server(&self) -> &ServerAddr {
        &self.addr
    }

    /// Sends one command line (without line ending) and reads its reply.
    /// `ERR` replies become [`Error::Server`] with the code and the text (its
    /// `+` turned back into spaces).
    pub async fn command(&mut self, line: &str) -> Result<AdminReply, Error> {
        if line.contains(['\r', '\n']) {
            return Err(Error::Config(format!(
                "admin command {line:?} contains a line break"
            )));
        }
        let listing = is_listing(line);
        let mut out = Vec::with_capacity(line.len() + 2);
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.write.write_all(&out).await.map_err(|e| Error::Io {
            server: self.addr.clone(),
            message: format!("write: {e}"),
        })?;
        let first = self.line().await?;
        if let Some(err) = parse_err(&first, listing) {
            return Err(Error::Server {
                server: self.addr.clone(),
                code: err.0,
                text: err.1,
            });
        }
        if !listing {
            return if first.as_ref() == b"OK" {
                Ok(AdminReply::Ok(None))
            } else if let Some(value) = first.strip_prefix(b"OK ") {
                Ok(AdminReply::Ok(Some(first.slice_ref(value))))
            } else {
                Err(Error::Protocol {
                    server: self.addr.clone(),
                    message: format!(
                        "unexpected admin reply {:?}",
                        String::from_utf8_lossy(&first)
                    ),
                })
            };
        }
        let mut lines = Vec::new();
        let mut line = first;
        while line.as_ref() != b"." {
            lines.push(line);
            line = self.line().await?;
        }
        Ok(AdminReply::Listing(lines))
    }

    async fn line(&mut self) -> Result<Bytes, Error> {
        match tokio::time::timeout(self.timeout, self.read.next()).await {
            Err(_) => Err(Error::Timeout {
                server: Some(self.addr.clone()),
                what: "an admin reply",
                after: self.timeout,
            }),
            Ok(None) => Err(Error::ConnectionLost {
                server: self.addr.clone(),
                reason: "server closed the connection".into(),
            }),
            Ok(Some(Err(e))) => Err(Error::Io {
                server: self.addr.clone(),
                message: format!("read: {e}"),
            }),
            Ok(Some(Ok(Frame::Text(line)))) => Ok(line),
            Ok(Some(Ok(Frame::Packet(p)))) => Err(Error::Protocol {
                server: self.addr.clone(),
                message: format!("binary {} in an admin reply", p.kind.name()),
            }),
        }
    }

    /// `status`, parsed.
    pub async fn status(&mut self) -> Result<Vec<FunctionStatus>, Error> {
        let lines = self.listing("status").await?;
        let mut out = Vec::new();
        for line in lines {
            let text = String::from_utf8_lossy(&line);
            let mut cols = text.rsplitn(4, '\t');
            let workers = cols.next().and_then(|c| c.parse().ok());
            let running = cols.next().and_then(|c| c.parse().ok());
            let total = cols.next().and_then(|c| c.parse().ok());
            match (cols.next(), total, running, workers) {
                (Some(function), Some(total), Some(running), Some(workers)) => {
                    out.push(FunctionStatus {
                        function: function.to_string(),
                        total,
                        running,
                        workers,
                    })
                }
                _ => {
                    return Err(Error::Protocol {
                        server: self.addr.clone(),
                        message: format!("bad status line {text:?}"),
                    })
                }
            }
        }
        Ok(out)
    }

    /// `show unique jobs`: the uniques of the jobs the server holds.
    pub async fn unique_jobs(&mut self) -> Result<Vec<Bytes>, Error> {
        self.listing("show unique jobs").await
    }

    /// Any listing command's lines.
    pub async fn listing(&mut self, line: &str) -> Result<Vec<Bytes>, Error> {
        match self.command(line).await? {
            AdminReply::Listing(lines) => Ok(lines),
            AdminReply::Ok(_) => unreachable!("listing commands get listing replies"),
        }
    }
}

/// Does this command answer with a `.`-terminated listing?
pub fn is_listing(line: &str) -> bool {
    let words: Vec<String> = line
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_lowercase())
        .collect();
    match words.first().map(String::as_str) {
        Some("status" | "workers" | "prioritystatus" | "peers") => true,
        Some("show") => {
            matches!(
                words.get(1..).unwrap_or(&[]),
                [a] if a == "jobs"
            ) || matches!(words.get(1..).unwrap_or(&[]), [a, b] if a == "unique" && b == "jobs")
        }
        _ => false,
    }
}

/// `ERR CODE text+with+pluses` → (CODE, "text with pluses"). In a listing an
/// `ERR ` line with a tab is a status row of a function named `ERR …`.
fn parse_err(line: &Bytes, listing: bool) -> Option<(String, String)> {
    let rest = line.strip_prefix(b"ERR ")?;
    if listing && line.contains(&b'\t') {
        return None;
    }
    let text = String::from_utf8_lossy(rest);
    let (code, msg) = text.split_once(' ').unwrap_or((&text, ""));
    Some((code.to_string(), msg.replace('+', " ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_commands() {
        for l in [
            "status",
            "STATUS",
            "workers",
            "prioritystatus",
            "show jobs",
            "show unique jobs",
            "peers",
        ] {
            assert!(is_listing(l), "{l}");
        }
        for l in [
            "version",
            "getpid",
            "show",
            "show x",
            "cancel job H:x:1",
            "maxqueue f 3",
        ] {
            assert!(!is_listing(l), "{l}");
        }
    }

    #[test]
    fn err_lines() {
        let e = parse_err(
            &Bytes::from_static(b"ERR INVALID_ARGUMENTS An+incomplete+set"),
            false,
        );
        assert_eq!(
            e,
            Some(("INVALID_ARGUMENTS".into(), "An incomplete set".into()))
        );
        assert_eq!(
            parse_err(&Bytes::from_static(b"ERR x\t0\t0\t0"), true),
            None
        );
    }
}
