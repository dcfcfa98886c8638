//! Durable queue stores, black-box: background jobs acknowledged by gearboxd survive
//! a `kill -9`, are replayed once, and the queue file is interchangeable with
//! gearmand's (`-q libsqlite3`, gearmand's schema) in both directions.
//!
//! Every test speaks the raw protocol over loopback (see `protocol_tests::durable`).
//! One file per family: `crash`, `outage`, `interop`, `uniques`, `restart`,
//! `disk_space`.
//! The crash tests print their figures; see them with
//! `cargo test -p protocol-tests --test durability -- --nocapture`.
//! The postgres and redis tests (crash, outage) start private instances of their own
//! (Debian's `postgresql` and `redis-server`, see install-deps.sh).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use protocol_tests::diff::wire::encode_request;
use protocol_tests::durable::{
    created, drain_in_order, drain_until_empty, kill_server, load_and_crash, now_epoch,
    priority_status, show_jobs_count, start, status, status_total, submit_bg, terminate_server,
    text, try_submit, wait_rows, wait_status_total, Conn, CrashLoad, FullDisk, Outage, Paused,
    PostgresInstance, Prio, QueueStore, Ran, RedisInstance, SqliteFile, Workers, ERROR,
    JOB_CREATED, REPLY_TIMEOUT, SUBMIT_JOB, SUBMIT_JOB_EPOCH,
};
use protocol_tests::{wait_until, ServerKind, TestServer};

/// How long jobs may take to run.
const REPLAY: Duration = Duration::from_secs(60);

mod crash;
mod disk_space;
mod interop;
mod outage;
mod owner_external;
mod restart;
mod store_safety;
mod uniques;
