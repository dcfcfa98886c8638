//! Load generation for Gearman servers, used by the `loadgen` and `compare`
//! binaries.
//!
//! * [`conn`]: one raw protocol connection (TCP or unix socket) with pipelined
//!   writes and batched reads, plus the admin `status` query.
//! * [`procstat`]: a server's RSS and CPU time from `/proc`.
//! * [`stats`]: latency percentiles from sorted samples.
//! * [`harness`]: what the `compare` and `durable` binaries share (ports,
//!   medians, machine facts, outside load).
//! * [`client`] / [`worker`]: the submit loops and the worker loop the scenarios
//!   are built from.
//! * [`openloop`]: the open-loop pacer and readers of `loadgen --rate`.
//! * [`scenarios`]: the scenarios themselves and their [`report::Report`].
//! * [`runner`]: the child processes `compare` and `durable` start (servers,
//!   load programs) and the end of their runs.
//! * [`compare_specs`]: the scenarios of the `compare` binary.
//! * [`durable`]: the servers, replay and report of the `durable` binary.

pub mod client;
pub mod compare_specs;
pub mod conn;
pub mod durable;
pub mod harness;
pub mod openloop;
pub mod procstat;
pub mod report;
pub mod runner;
pub mod scenarios;
pub mod stats;
pub mod worker;

/// Every error in this crate is reported to a person, so a message is enough.
#[derive(Debug, Clone)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error(format!("i/o error: {e}"))
    }
}

impl From<gearbox_proto::DecodeError> for Error {
    fn from(e: gearbox_proto::DecodeError) -> Self {
        Error(format!("undecodable reply from the server: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Builds an [`Error`] from format arguments.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => { $crate::Error(format!($($arg)*)) };
}
