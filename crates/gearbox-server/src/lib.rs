//! gearbox-server: a Gearman job server, wire-compatible with gearmand, as a
//! library. `bin/gearboxd` wraps it with gearmand's command line.
//!
//! * [`config`], settings.
//! * [`server`], listeners (TCP and unix socket), timers and shutdown.
//! * `connection`, one task pair per connection, batching reads and writes.
//! * `dispatch`, the engine's lock, and the hand-off that spares connections
//!   from sleeping on it.
//! * [`engine`], the single owner of functions, jobs and workers.
//! * [`store`], the seam where background jobs are persisted.
//! * [`peers`], the links that pull jobs from other job servers (`--peer`).

pub mod config;
mod connection;
mod dispatch;
pub mod engine;
pub mod peers;
mod persistence;
pub mod server;
pub mod store;

pub use config::{Config, Keepalive};
pub use engine::ShutdownRequest;
pub use server::{Server, ShutdownHandle};
