//! gearbox-client: submit jobs to Gearman job servers (gearboxd or gearmand).
//!
//! [`transport`] is the connection layer shared with `gearbox-worker`: server
//! addresses, bounded connects, and per-server cooldown with backoff.

pub mod transport;

pub use transport::{Backoff, BackoffPolicy, Health, ServerAddr, Stream};
