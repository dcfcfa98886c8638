//! gearmand's command line, so an existing init script or unit file starts
//! gearboxd unchanged.

use clap::Parser;
use gearbox_server::{Config, Keepalive};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

const DEFAULT_CONFIG_FILE: &str = "/etc/gearmand.conf";

#[derive(Parser, Debug)]
#[command(
    name = "gearboxd",
    version,
    about = "gearbox: a Gearman job server, drop-in compatible with gearmand",
    args_override_self = true
)]
pub struct Cli {
    /// TCP port to listen on (GEARMAND_PORT is used when not given).
    #[arg(short = 'p', long, env = "GEARMAND_PORT", default_value_t = 4730)]
    pub port: u16,
    /// Address to listen on; may be repeated. Default: all addresses.
    #[arg(short = 'L', long)]
    pub listen: Vec<String>,
    /// Also listen on this unix socket.
    #[arg(long = "unix", value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// Permissions of the unix socket file, in octal.
    #[arg(long, default_value = "0660", value_parser = parse_octal)]
    pub unix_mode: u32,
    /// Listen backlog.
    #[arg(short = 'b', long, default_value_t = 32)]
    pub backlog: u32,
    /// Runtime worker threads, at most one per CPU; 0 means one per CPU.
    /// Default: 1 on machines with 1 or 2 CPUs, else 4 (capped at the CPUs).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Attempts per job before it is dropped with WORK_FAIL; 0 is unlimited.
    #[arg(short = 'j', long, default_value_t = 0)]
    pub job_retries: u32,
    /// Sleeping workers woken per new job; 0 means one.
    #[arg(short = 'w', long, default_value_t = 0)]
    pub worker_wakeup: u32,
    /// Rotate each worker's functions after every job it takes.
    #[arg(short = 'R', long)]
    pub round_robin: bool,
    /// Turn the `exceptions` option on for every connection.
    #[arg(long)]
    pub exceptions: bool,
    /// Prefix of job handles (default H:HOSTNAME).
    #[arg(long)]
    pub job_handle_prefix: Option<String>,
    /// Accepted for gearmand compatibility; gearbox's tables resize themselves.
    #[arg(long, value_name = "N")]
    pub hashtable_buckets: Option<u64>,
    /// Enable TCP keepalive on accepted connections.
    #[arg(long)]
    pub keepalive: bool,
    /// Seconds idle before keepalive probes; -1 keeps the system default.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub keepalive_idle: i64,
    /// Seconds between keepalive probes; -1 keeps the system default.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub keepalive_interval: i64,
    /// Probes before the connection is dropped; -1 keeps the system default.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub keepalive_count: i64,
    /// Log file, or `stderr`, or `none`.
    #[arg(short = 'l', long, default_value = "stderr")]
    pub log_file: String,
    /// Log line format: `text` (one human-readable line per event) or `json`
    /// (one JSON object per line, for log shippers).
    #[arg(long, value_enum, default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,
    /// FATAL, ALERT, CRITICAL, ERROR, WARNING, NOTICE, INFO or DEBUG.
    #[arg(long, default_value = "ERROR", value_parser = parse_level)]
    pub verbose: String,
    /// Write the process id to this file.
    #[arg(short = 'P', long)]
    pub pid_file: Option<PathBuf>,
    /// Detach and run in the background.
    #[arg(short = 'd', long)]
    pub daemon: bool,
    /// Open-file limit to set (default: the hard limit).
    #[arg(short = 'f', long)]
    pub file_descriptors: Option<u64>,
    /// File of long options, whitespace-separated.
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    #[command(flatten)]
    pub queue: crate::queue::QueueArgs,
    #[command(flatten)]
    pub peer: crate::peering::PeerArgs,
    /// Largest packet body accepted, in bytes.
    #[arg(long, default_value_t = gearbox_server::Config::default().max_packet_size)]
    pub max_packet_size: u32,
    /// Accept the admin `shutdown` command from non-loopback peers too.
    #[arg(long)]
    pub allow_remote_shutdown: bool,
}

fn parse_octal(raw: &str) -> Result<u32, String> {
    u32::from_str_radix(raw.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| format!("`{raw}` is not an octal file mode such as 0660"))
}

/// gearmand's level names, returned upper-case for the `verbose` command.
pub const LEVELS: [&str; 8] = [
    "FATAL", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG",
];

fn parse_level(raw: &str) -> Result<String, String> {
    let upper = raw.to_ascii_uppercase();
    if LEVELS.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!("`{raw}` is not one of {}", LEVELS.join(", ")))
    }
}

/// gearmand options that gearbox does not implement, so they fail with a
/// sentence rather than clap's "unexpected argument".
const UNSUPPORTED: [&str; 9] = [
    "--user",
    "--syslog",
    "--coredump",
    "--protocol",
    "--http-port",
    "--ssl",
    "--ssl-ca-file",
    "--ssl-certificate",
    "--ssl-key",
];

/// The arguments with config files spliced in: `--config-file FILE` (or
/// /etc/gearmand.conf when present) first, then `@FILE` wherever it appears,
/// so that later command-line flags override the files.
pub fn expand_args(args: Vec<String>) -> Result<Vec<String>, String> {
    let explicit = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config-file=")
            .map(str::to_string)
            .or_else(|| {
                (a == "--config-file")
                    .then(|| args.get(i + 1).cloned())
                    .flatten()
            })
    });
    let mut out = vec![args.first().cloned().unwrap_or_else(|| "gearboxd".into())];
    match explicit {
        Some(file) => out.extend(read_option_file(&file)?),
        None if std::path::Path::new(DEFAULT_CONFIG_FILE).exists() => {
            out.extend(read_option_file(DEFAULT_CONFIG_FILE)?)
        }
        None => {}
    }
    for arg in args.into_iter().skip(1) {
        if let Some(file) = arg.strip_prefix('@') {
            out.extend(read_option_file(file)?);
        } else {
            out.push(arg);
        }
    }
    for arg in &out {
        let name = arg.split('=').next().unwrap_or(arg);
        if UNSUPPORTED.contains(&name)
            || name.starts_with("--libmemcached")
            || name.starts_with("--libtokyocabinet")
            || name.starts_with("--libdrizzle")
            || name.starts_with("--mysql")
        {
            return Err(format!(
                "gearmand option {name} is not supported by gearboxd"
            ));
        }
    }
    Ok(out)
}

fn read_option_file(path: &str) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {path}: {e}"))?;
    Ok(text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(str::split_whitespace)
        .map(str::to_string)
        .collect())
}

impl Cli {
    /// The server settings these flags describe.
    pub fn server_config(&self) -> Result<Config, String> {
        let mut listen = Vec::new();
        let hosts: Vec<&str> = if self.listen.is_empty() {
            vec!["0.0.0.0", "::"]
        } else {
            self.listen.iter().map(String::as_str).collect()
        };
        for host in hosts {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let resolved = (host, self.port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve listen address {host}: {e}"))?;
            for addr in resolved {
                if !listen.contains(&addr) {
                    listen.push(addr);
                }
            }
        }
        if self.listen.is_empty() && !ipv6_available() {
            listen.retain(SocketAddr::is_ipv4);
        }
        let prefix = self
            .job_handle_prefix
            .clone()
            .unwrap_or_else(gearbox_server::config::default_handle_prefix);
        if prefix.len() >= 64 {
            return Err("--job-handle-prefix must be shorter than 64 bytes".into());
        }
        let seconds = |v: i64| (v >= 0).then(|| Duration::from_secs(v as u64));
        Ok(Config {
            listen,
            unix_path: self.unix.clone(),
            unix_mode: self.unix_mode,
            backlog: self.backlog,
            job_retries: self.job_retries,
            worker_wakeup: self.worker_wakeup,
            round_robin: self.round_robin,
            exceptions: self.exceptions,
            handle_prefix: prefix,
            keepalive: self.keepalive.then(|| Keepalive {
                idle: seconds(self.keepalive_idle),
                interval: seconds(self.keepalive_interval),
                count: (self.keepalive_count >= 0).then_some(self.keepalive_count as u32),
            }),
            max_packet_size: self.max_packet_size,
            // Room for a few of the largest replies before a non-reading peer
            // is cut off.
            max_queued_output: 4 * self.max_packet_size as usize,
            verbose: self.verbose.clone(),
            allow_remote_shutdown: self.allow_remote_shutdown,
            peering: self.peer.options(),
            server_id: self
                .peer
                .server_id
                .clone()
                .unwrap_or_else(gearbox_server::config::random_server_id),
        })
    }
}

fn ipv6_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}
