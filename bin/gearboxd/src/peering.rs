//! `--peer` and its companions: pull jobs from other job servers for this
//! server's workers (see docs/peers.md).

use gearbox_client::ServerAddr;
use gearbox_server::peers::PeerOptions;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct PeerArgs {
    /// Pull jobs for this server's workers from this job server (gearmand or
    /// gearboxd): HOST:PORT, an IPv6 address in brackets and :PORT, or
    /// unix:/PATH. Repeatable.
    #[arg(long = "peer", value_name = "ADDR", value_parser = parse_addr)]
    pub peers: Vec<ServerAddr>,
    /// Pull only this function from the peers. Repeatable; by default every
    /// function a local worker can do.
    #[arg(long = "peer-function", value_name = "NAME")]
    pub functions: Vec<String>,
    /// Milliseconds a peer may take to accept a connection, or to answer an
    /// ECHO probe or a GRAB, before it is put in cooldown.
    #[arg(long = "peer-timeout", value_name = "MS", default_value_t = 2000)]
    pub timeout_ms: u64,
    /// How this server names itself to its peers' peers, for the cycle rule
    /// (default: random at each start). Letters, digits, `-` and `_`.
    #[arg(long = "server-id", value_parser = parse_server_id)]
    pub server_id: Option<String>,
}

fn parse_addr(raw: &str) -> Result<ServerAddr, String> {
    raw.parse()
}

fn parse_server_id(raw: &str) -> Result<String, String> {
    let ok = !raw.is_empty()
        && raw.len() <= 32
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(raw.to_string())
    } else {
        Err("1 to 32 letters, digits, `-` or `_`".to_string())
    }
}

impl PeerArgs {
    pub fn options(&self) -> Option<PeerOptions> {
        if self.peers.is_empty() {
            return None;
        }
        let mut options = PeerOptions::new(self.peers.clone());
        options.functions = self.functions.clone();
        let timeout = Duration::from_millis(self.timeout_ms.max(1));
        options.connect_timeout = timeout;
        options.response_timeout = timeout;
        Some(options)
    }
}
