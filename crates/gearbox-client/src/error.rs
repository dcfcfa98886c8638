//! What can go wrong when talking to job servers.
//!
//! The variants separate three kinds of outcome a caller treats differently:
//! the *job* ended badly ([`Error::JobFailed`], [`Error::JobException`]), the
//! *server* answered with a refusal ([`Error::Server`], e.g. a full queue), and
//! the *transport* failed (connect errors, timeouts, lost connections), which
//! also puts the server into cooldown.

use crate::transport::ServerAddr;
use bytes::Bytes;
use std::fmt;
use std::time::Duration;

/// An error from the client SDK.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given something unusable (no servers, a bad address).
    Config(String),
    /// Connecting, reading or writing failed.
    Io { server: ServerAddr, message: String },
    /// A wait ran out: `what` names the wait (connect, JOB_CREATED, the job
    /// deadline, …).
    Timeout {
        server: Option<ServerAddr>,
        what: &'static str,
        after: Duration,
    },
    /// The connection closed (or was closed after a timeout) while a reply or
    /// a job's result was outstanding. A job submitted before this may or may
    /// not run: the server holds it, not us.
    ConnectionLost { server: ServerAddr, reason: String },
    /// The server answered with an ERROR packet (`code` is e.g. `QUEUE_ERROR`).
    /// The server is healthy; it refused this request.
    Server {
        server: ServerAddr,
        code: String,
        text: String,
    },
    /// The server sent something the protocol does not allow at this point.
    Protocol { server: ServerAddr, message: String },
    /// Every server that could take the request failed or is cooling down.
    /// Each entry says why that server was not used.
    NoServerAvailable { reasons: Vec<(ServerAddr, String)> },
    /// A request named a server that is not in the client's list.
    UnknownServer(ServerAddr),
    /// The worker ended the job with WORK_FAIL.
    JobFailed { handle: Bytes },
    /// The worker ended the job with WORK_EXCEPTION; `data` is its payload.
    JobException { handle: Bytes, data: Bytes },
}

impl Error {
    /// Is this a timeout of any kind?
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// Did the job itself fail (as opposed to the transport or the server)?
    pub fn is_job_failure(&self) -> bool {
        matches!(self, Error::JobFailed { .. } | Error::JobException { .. })
    }

    /// The message without the server's address in front (for lists of
    /// reasons that already name the server).
    pub(crate) fn detail(&self) -> String {
        match self {
            Error::Io { message, .. } => message.clone(),
            Error::Timeout { what, after, .. } => {
                format!("timed out after {after:?} waiting for {what}")
            }
            Error::ConnectionLost { reason, .. } => format!("connection lost: {reason}"),
            Error::Server { code, text, .. } => format!("server error {code}: {text}"),
            Error::Protocol { message, .. } => format!("protocol error: {message}"),
            other => other.to_string(),
        }
    }

    /// The server involved, when there is exactly one.
    pub fn server(&self) -> Option<&ServerAddr> {
        match self {
            Error::Io { server, .. }
            | Error::ConnectionLost { server, .. }
            | Error::Server { server, .. }
            | Error::Protocol { server, .. }
            | Error::UnknownServer(server) => Some(server),
            Error::Timeout { server, .. } => server.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(msg) => write!(f, "configuration: {msg}"),
            Error::Io { server, message } => write!(f, "{server}: {message}"),
            Error::Timeout {
                server: Some(server),
                what,
                after,
            } => write!(f, "{server}: timed out after {after:?} waiting for {what}"),
            Error::Timeout {
                server: None,
                what,
                after,
            } => write!(f, "timed out after {after:?} waiting for {what}"),
            Error::ConnectionLost { server, reason } => {
                write!(f, "{server}: connection lost: {reason}")
            }
            Error::Server { server, code, text } => {
                write!(f, "{server}: server error {code}: {text}")
            }
            Error::Protocol { server, message } => {
                write!(f, "{server}: protocol error: {message}")
            }
            Error::NoServerAvailable { reasons } => {
                write!(f, "no job server available")?;
                for (i, (server, why)) in reasons.iter().enumerate() {
                    let sep = if i == 0 { ": " } else { "; " };
                    write!(f, "{sep}{server} ({why})")?;
                }
                Ok(())
            }
            Error::UnknownServer(server) => {
                write!(f, "{server} is not one of the client's servers")
            }
            Error::JobFailed { handle } => {
                write!(f, "job {} failed", String::from_utf8_lossy(handle))
            }
            Error::JobException { handle, data } => write!(
                f,
                "job {} raised an exception: {}",
                String::from_utf8_lossy(handle),
                String::from_utf8_lossy(data)
            ),
        }
    }
}

impl std::error::Error for Error {}
