//! Connections to job servers, shared by the client and the worker SDK.
//!
//! Three things every multi-server Gearman user needs and libgearman lacks:
//! a connect that cannot hang (a bound on time, even for a black-holed address),
//! a cooldown that grows with each failure and has jitter so a fleet of workers
//! does not reconnect in lockstep, and a health record per server that the
//! application can export.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Where a job server listens: `host:port` (port 4730 if omitted) or
/// `unix:/path/to/socket`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerAddr {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl FromStr for ServerAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<ServerAddr, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(ServerAddr::Unix(PathBuf::from(path)));
        }
        // [v6]:port, [v6], host:port, host
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{s}`: missing `]`"))?;
            (host, after.strip_prefix(':'))
        } else {
            match s.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (host, Some(port)),
                _ => (s, None),
            }
        };
        if host.is_empty() {
            return Err(format!("`{s}`: empty host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| format!("`{s}`: bad port `{p}`"))?,
            None => 4730,
        };
        Ok(ServerAddr::Tcp {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddr::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            ServerAddr::Tcp { host, port } => write!(f, "{host}:{port}"),
            ServerAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl ServerAddr {
    /// Connects within `timeout`, which covers name resolution too. TCP
    /// connections get TCP_NODELAY: Gearman packets are small and latency-bound.
    pub async fn connect(&self, timeout: Duration) -> io::Result<Stream> {
        let attempt = async {
            match self {
                ServerAddr::Tcp { host, port } => {
                    let stream = TcpStream::connect((host.as_str(), *port)).await?;
                    stream.set_nodelay(true)?;
                    Ok(Stream::Tcp(stream))
                }
                ServerAddr::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect to {self} timed out after {timeout:?}"),
            )),
        }
    }
}

/// A connected stream, TCP or unix.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// How long a failing server is left alone: `min` after the first failure,
/// doubling per further failure up to `max`, each delay scaled by a random
/// factor in `[1 - jitter, 1]` so that many processes spread their retries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    pub min: Duration,
    pub max: Duration,
    /// Fraction of each delay that is randomised, 0.0 to 1.0.
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            min: Duration::from_millis(100),
            max: Duration::from_secs(30),
            jitter: 0.25,
        }
    }
}

/// The growing delay of one server, as a plain value (no timers inside).
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Backoff {
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// Records a failure and returns how long to wait before the next try.
    pub fn fail(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exponent = (self.failures - 1).min(31);
        let base = self
            .policy
            .min
            .saturating_mul(1u32 << exponent)
            .min(self.policy.max);
        let jitter = self.policy.jitter.clamp(0.0, 1.0);
        base.mul_f64(1.0 - jitter * fastrand::f64())
    }

    /// Records a success: the next failure starts again from `min`.
    pub fn succeed(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// What an application can export about one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Connected and answering.
    Up,
    /// Trying to connect for the first time or after a failure.
    Connecting,
    /// Left alone until `until`, after `failures` failures in a row; `error`
    /// says what went wrong last.
    CoolingDown {
        until: Instant,
        failures: u32,
        error: String,
    },
}

impl Health {
    /// Logs the change from `previous` to `self` for `server`: a server that
    /// stays down is retried for as long as its user runs, so this warns when
    /// it goes down, then only at 8, 16, 32... failures. The log says it is
    /// still down without a line per retry.
    pub fn log_change(&self, previous: &Health, server: &dyn fmt::Display) {
        let changed = std::mem::discriminant(previous) != std::mem::discriminant(self);
        match self {
            Health::Up if changed => tracing::info!(%server, "server up"),
            Health::Connecting if changed => tracing::debug!(%server, "connecting"),
            Health::CoolingDown {
                until,
                failures,
                error,
            } => {
                let wait = until.saturating_duration_since(Instant::now());
                if *failures == 1 {
                    tracing::warn!(%server, failures, retry_in = ?wait, %error, "server down, cooling down");
                } else if *failures >= 8 && failures.is_power_of_two() {
                    tracing::warn!(%server, failures, retry_in = ?wait, %error, "server still down");
                } else {
                    tracing::debug!(%server, failures, retry_in = ?wait, %error, "server still down");
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        let cases = [
            ("127.0.0.1:4731", "127.0.0.1:4731"),
            ("gear.example", "gear.example:4730"),
            ("[::1]:4732", "[::1]:4732"),
            ("[::1]", "[::1]:4730"),
            ("unix:/run/gearbox.sock", "unix:/run/gearbox.sock"),
        ];
        for (input, shown) in cases {
            let addr: ServerAddr = input.parse().unwrap();
            assert_eq!(addr.to_string(), shown, "{input}");
            assert_eq!(addr.to_string().parse::<ServerAddr>().unwrap(), addr);
        }
        for bad in ["", ":4730", "host:port", "unix:", "[::1"] {
            assert!(
                bad.parse::<ServerAddr>().is_err(),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_bounded_jitter_and_resets() {
        let policy = BackoffPolicy {
            min: Duration::from_millis(100),
            max: Duration::from_secs(1),
            jitter: 0.5,
        };
        let mut backoff = Backoff::new(policy);
        for expected_ms in [100u64, 200, 400, 800, 1000, 1000] {
            let delay = backoff.fail();
            let full = Duration::from_millis(expected_ms);
            assert!(delay <= full && delay >= full / 2, "{delay:?} vs {full:?}");
        }
        assert_eq!(backoff.failures(), 6);
        backoff.succeed();
        assert!(backoff.fail() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            seen.insert(Backoff::new(BackoffPolicy::default()).fail());
        }
        assert!(
            seen.len() > 10,
            "jitter produced only {} distinct delays",
            seen.len()
        );
    }

    #[tokio::test]
    async fn connect_is_bounded_and_reports_refusal() {
        // Nothing listens on a port we just released: refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: ServerAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let err = addr.connect(Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        // A listener whose backlog is full never completes the handshake: the
        // timeout, not the kernel, ends the wait.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let full: ServerAddr = listener.local_addr().unwrap().to_string().parse().unwrap();
        let mut held = Vec::new();
        let started = Instant::now();
        let mut timed_out = false;
        for _ in 0..512 {
            match full.connect(Duration::from_millis(200)).await {
                Ok(s) => held.push(s),
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
                    timed_out = true;
                    break;
                }
            }
        }
        assert!(
            timed_out,
            "{} connects to a never-accepting listener all completed",
            held.len()
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        let missing: ServerAddr = "unix:/nonexistent/gearbox.sock".parse().unwrap();
        assert!(missing.connect(Duration::from_secs(1)).await.is_err());
    }
}
