//! systemd's readiness protocol (sd_notify(3)), for `Type=notify` units:
//! newline-separated `KEY=VALUE` assignments in one datagram to the unix
//! socket named by `$NOTIFY_SOCKET` (a path, or an abstract name when it
//! starts with `@`). Without the variable every call does nothing.
//!
//! The variable is left set: gearboxd starts no children that could inherit
//! it, and with `-d` it is read by the detached process, after the fork, so
//! `MAINPID` is the process that serves.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const VARIABLE: &str = "NOTIFY_SOCKET";

/// How long a send may wait on a full receive queue before it is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

static STOPPING: AtomicBool = AtomicBool::new(false);

/// Every listener is bound and the server is about to serve.
pub fn ready(status: &str) {
    let pid = std::process::id();
    send(&format!("READY=1\nMAINPID={pid}\nSTATUS={status}\n"));
}

/// A shutdown has begun. Only the first call sends.
pub fn stopping(status: &str) {
    if !STOPPING.swap(true, Ordering::SeqCst) {
        send(&format!("STOPPING=1\nSTATUS={status}\n"));
    }
}

fn send(message: &str) {
    let Some(target) = std::env::var_os(VARIABLE) else {
        return;
    };
    let target = target.to_string_lossy();
    match notify(&target, message) {
        Ok(()) => {
            tracing::debug!(socket = %target, state = message.trim_end(), "told the service manager")
        }
        Err(e) => tracing::warn!(socket = %target, error = %e, "cannot notify the service manager"),
    }
}

fn notify(target: &str, message: &str) -> io::Result<()> {
    let addr = address(target)?;
    let socket = UnixDatagram::unbound()?;
    socket.set_write_timeout(Some(SEND_TIMEOUT))?;
    let sent = socket.send_to_addr(message.as_bytes(), &addr)?;
    if sent != message.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "notification truncated",
        ));
    }
    Ok(())
}

/// `$NOTIFY_SOCKET` as a socket address: an absolute path, or `@name` for
/// Linux's abstract namespace. Other forms (systemd's `vsock:`) are refused.
fn address(target: &str) -> io::Result<SocketAddr> {
    if let Some(name) = target.strip_prefix('@') {
        return abstract_address(name.as_bytes());
    }
    if target.starts_with('/') {
        return SocketAddr::from_pathname(target);
    }
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "NOTIFY_SOCKET is neither an absolute path nor an @abstract name",
    ))
}

#[cfg(target_os = "linux")]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_address(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            address("/run/systemd/notify").unwrap().as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        assert!(address("vsock:2:1234").is_err());
        assert!(address("relative/path").is_err());
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            assert_eq!(
                address("@gearboxd").unwrap().as_abstract_name(),
                Some(&b"gearboxd"[..])
            );
        }
    }
}
