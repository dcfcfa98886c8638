//! `-q` and the queue plugins' flags, named as gearmand names them.

use clap::Args;
use gearbox_server::store::postgres::{Postgres, PostgresConfig};
use gearbox_server::store::redis::{Redis, RedisConfig};
use gearbox_server::store::sqlite::{Sqlite, SqliteConfig, Sync};
use gearbox_server::store::{Backend, Durable, InMemory, QueueStore};
use std::path::PathBuf;

/// Where the embedded store keeps its file when no `--libsqlite3-db` is given.
pub const DEFAULT_SQLITE_DB: &str = "gearboxd-queue.sqlite3";

#[derive(Args, Debug)]
pub struct QueueArgs {
    /// Where background jobs are kept: builtin (memory only, lost at exit; the
    /// default, as in gearmand), libsqlite3 (embedded file, durable), postgres
    /// or redis.
    #[arg(short = 'q', long, default_value = "builtin", value_parser = parse_queue)]
    pub queue_type: String,
    /// SQLite queue file (libsqlite3); created if missing.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_SQLITE_DB)]
    pub libsqlite3_db: PathBuf,
    /// Table in the SQLite file.
    #[arg(long, default_value = gearbox_server::store::sqlite::DEFAULT_TABLE)]
    pub libsqlite3_table: String,
    /// NORMAL (the default) commits into the page cache: a committed job
    /// survives a crash or kill -9 of the server, not a power cut. FULL also
    /// syncs every commit, so it survives a power cut, at the cost of a disk
    /// sync before each JOB_CREATED.
    #[arg(long, default_value = "normal", value_parser = parse_sync)]
    pub libsqlite3_sync: Sync,
    /// Accepted for gearmand compatibility: gearbox always writes at submit
    /// time, in batches, so a crash loses no acknowledged job.
    #[arg(long)]
    pub store_queue_on_shutdown: bool,
    /// PostgreSQL connection string (postgres), e.g. "host=127.0.0.1 user=gearman".
    #[arg(long, value_name = "CONNINFO")]
    pub libpq_conninfo: Option<String>,
    /// Table in PostgreSQL.
    #[arg(long, default_value = gearbox_server::store::postgres::DEFAULT_TABLE)]
    pub libpq_table: String,
    /// Redis host (redis).
    #[arg(long, default_value = "127.0.0.1")]
    pub redis_server: String,
    /// Redis port.
    #[arg(long, default_value_t = 6379)]
    pub redis_port: u16,
    /// Redis password.
    #[arg(long)]
    pub redis_password: Option<String>,
    /// Prefix of the Redis keys.
    #[arg(long, default_value = gearbox_server::store::redis::DEFAULT_PREFIX)]
    pub redis_prefix: String,
}

fn parse_queue(raw: &str) -> Result<String, String> {
    let name = raw.to_ascii_lowercase();
    match name.as_str() {
        "builtin" | "libsqlite3" | "postgres" | "redis" => Ok(name),
        "mysql" | "libmemcached" | "libtokyocabinet" | "libdrizzle" => Err(format!(
            "queue type `{name}` is not supported by gearboxd; use libsqlite3, postgres, redis or builtin"
        )),
        _ => Err(format!(
            "unknown queue type `{raw}`; use libsqlite3, postgres, redis or builtin"
        )),
    }
}

fn parse_sync(raw: &str) -> Result<Sync, String> {
    match raw.to_ascii_lowercase().as_str() {
        "full" => Ok(Sync::Full),
        "normal" => Ok(Sync::Normal),
        _ => Err(format!("`{raw}` is not FULL or NORMAL")),
    }
}

impl QueueArgs {
    /// Makes relative paths absolute, before a daemon changes directory.
    pub fn resolve_paths(&mut self) -> Result<(), String> {
        if self.libsqlite3_db.is_relative() {
            let cwd = std::env::current_dir()
                .map_err(|e| format!("cannot read the current directory: {e}"))?;
            self.libsqlite3_db = cwd.join(&self.libsqlite3_db);
        }
        Ok(())
    }

    /// Opens the store: connects, and starts its writer. A store that cannot
    /// be reached at start is an error, not a silent fallback to memory.
    pub fn open(&self) -> Result<Box<dyn QueueStore>, String> {
        if self.store_queue_on_shutdown {
            tracing::warn!(
                "--store-queue-on-shutdown ignored: gearboxd writes jobs as they are submitted, in batches"
            );
        }
        let backend: Box<dyn Backend> = match self.queue_type.as_str() {
            "builtin" => return Ok(Box::new(InMemory)),
            "libsqlite3" => Box::new(Sqlite::new(SqliteConfig {
                path: self.libsqlite3_db.clone(),
                table: self.libsqlite3_table.clone(),
                sync: self.libsqlite3_sync,
            })),
            "postgres" => Box::new(Postgres::new(PostgresConfig {
                conninfo: self
                    .libpq_conninfo
                    .clone()
                    .ok_or("-q postgres needs --libpq-conninfo")?,
                table: self.libpq_table.clone(),
            })),
            "redis" => Box::new(Redis::new(RedisConfig {
                host: self.redis_server.clone(),
                port: self.redis_port,
                password: self.redis_password.clone(),
                prefix: self.redis_prefix.clone(),
            })),
            other => return Err(format!("unknown queue type `{other}`")),
        };
        let describe = backend.describe();
        let store =
            Durable::open(backend).map_err(|e| format!("cannot open the queue store: {e}"))?;
        tracing::info!(store = %describe, "background jobs are kept in the queue store");
        Ok(Box::new(store))
    }
}
