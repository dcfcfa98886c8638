//! Server settings. The binary fills this from gearmand-style flags; tests and
//! embedders build it directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// TCP keepalive on accepted sockets (`--keepalive*`). `None` fields keep the
/// kernel's defaults, as gearmand's `-1` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keepalive {
    pub idle: Option<Duration>,
    pub interval: Option<Duration>,
    pub count: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on. Empty means no TCP listener.
    pub listen: Vec<SocketAddr>,
    /// A unix socket to listen on as well (`--unix`).
    pub unix_path: Option<PathBuf>,
    /// Permission bits of the unix socket file (`--unix-mode`).
    pub unix_mode: u32,
    /// Listen backlog (`-b`).
    pub backlog: u32,
    /// A job is dropped (clients get WORK_FAIL) once it has been attempted this
    /// many times without a result (`-j`). 0 means unlimited.
    pub job_retries: u32,
    /// How many sleeping workers one new job wakes (`-w`). 0 means one per job,
    /// which is the least that cannot lose a wake-up (gearmand's 0 wakes all).
    pub worker_wakeup: u32,
    /// After each grab, the function that supplied the job moves to the back of
    /// that worker's list (`-R`).
    pub round_robin: bool,
    /// Every connection starts with the `exceptions` option on (`--exceptions`).
    pub exceptions: bool,
    /// Job handles are `<prefix>:<n>`.
    pub handle_prefix: String,
    pub keepalive: Option<Keepalive>,
    /// Largest packet body accepted; larger ones get an ERROR and a close.
    pub max_packet_size: u32,
    /// Bytes a connection may have queued for it but not yet read before it is
    /// closed: a peer that never reads its replies must not grow the server
    /// without limit.
    pub max_queued_output: usize,
    /// gearmand's name for the log level, reported by the `verbose` command.
    pub verbose: String,
    /// Accept the admin `shutdown` command from any peer, not only loopback
    /// and unix-socket peers.
    pub allow_remote_shutdown: bool,
    /// Job servers to pull jobs from for this server's workers (`--peer`).
    pub peering: Option<crate::peers::PeerOptions>,
    /// How this server names itself to its peers, for the cycle rule (see
    /// docs/peers.md). Random per start unless set.
    pub server_id: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 4730))],
            unix_path: None,
            unix_mode: 0o660,
            backlog: 32,
            job_retries: 0,
            worker_wakeup: 0,
            round_robin: false,
            exceptions: false,
            handle_prefix: default_handle_prefix(),
            keepalive: None,
            max_packet_size: gearbox_proto::DEFAULT_MAX_PACKET_SIZE,
            max_queued_output: 4 * gearbox_proto::DEFAULT_MAX_PACKET_SIZE as usize,
            verbose: "ERROR".to_string(),
            allow_remote_shutdown: false,
            peering: None,
            server_id: random_server_id(),
        }
    }
}

/// Eight hex digits from the kernel's random uuid: short, because every
/// link's client id lists the ids its demand comes from.
pub fn random_server_id() -> String {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap_or_default();
    let hex: String = uuid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    if hex.len() == 8 {
        hex
    } else {
        format!("{:08x}", std::process::id())
    }
}

/// `H:<nodename>`, as gearmand builds it.
pub fn default_handle_prefix() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("H:{host}")
}
