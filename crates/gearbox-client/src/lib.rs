//! gearbox-client: submit jobs to Gearman job servers (gearboxd or gearmand).
//!
//! ```no_run
//! # async fn demo() -> Result<(), gearbox_client::Error> {
//! use gearbox_client::{Client, JobEvent, JobRequest, Priority};
//! use std::time::Duration;
//!
//! let client = Client::builder()
//!     .server("10.0.0.1:4730")
//!     .server("unix:/run/gearbox.sock")
//!     .connect_timeout(Duration::from_secs(2))
//!     .response_timeout(Duration::from_secs(5))
//!     .build()?;
//!
//! // Foreground: events as they come, then the result.
//! let mut job = client.submit(JobRequest::new("resize", "img-1").unique("img-1")).await?;
//! while let Some(event) = job.next_event().await? {
//!     if let JobEvent::Status { numerator, denominator } = event {
//!         println!("{numerator}/{denominator}");
//!     }
//! }
//!
//! // Background, high priority: just the handle.
//! let handle = client
//!     .submit_background(JobRequest::new("index", "doc-7").priority(Priority::High))
//!     .await?;
//! println!("{:?}", client.status(&handle).await?);
//! # Ok(()) }
//! ```
//!
//! * [`Client`]: many jobs in flight on one connection per server, routing by
//!   rendezvous hash of the unique id (so coalescing works across a pool),
//!   failover to the next server in hash order, per-server cooldown and
//!   [`Health`], and a timeout on every wait.
//! * [`Admin`]: the admin text protocol (`status`, `workers`, …).
//! * [`transport`]: the connection layer shared with `gearbox-worker`: server
//!   addresses, bounded connects, and per-server cooldown with backoff.

pub mod admin;
mod client;
mod connection;
pub mod error;
pub mod job;
pub mod routing;
mod slot;
pub mod transport;

pub use admin::{Admin, AdminReply, FunctionStatus};
pub use client::{Client, ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT};
pub use error::Error;
pub use job::{Job, JobEvent, JobHandle, JobOutput, JobRequest, JobStatus, Priority, UniqueStatus};
pub use transport::{Backoff, BackoffPolicy, Health, ServerAddr, Stream};
