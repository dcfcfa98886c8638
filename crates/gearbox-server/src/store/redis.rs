//! Redis store (`-q redis --redis-server HOST --redis-port PORT
//! --redis-password PW --redis-prefix PREFIX`), in gearmand's layout: each
//! queued job is a hash at `<prefix>-<function>-<unique>`:
//!
//! | field | value |
//! |---|---|
//! | `data` | the job's payload, as is |
//! | `priority` | `0` HIGH, `1` NORMAL, `2` LOW, in decimal |
//! | `function`, `unique` | the function name and the row's unique key (gearmand since its fix for issue 159) |
//! | `when_to_run` | epoch seconds; written only when not 0 (see below) |
//!
//! **Writes.** A batch is one `MULTI`/`EXEC` pipeline, so it is applied all
//! or nothing: a row's last write in the batch decides its fate, as `DEL`
//! followed by `HSET` (the `DEL` clears fields of an older row and a string
//! value left by gearmand before 1.1.16) or a lone `DEL`. The commands go in
//! scripts of at most 10,000 rows each, which write only while this server
//! holds the prefix's lease (see below). A commit is what
//! Redis acknowledged in memory; whether it survives a crash of Redis is up
//! to Redis's own persistence (`appendonly yes` with `appendfsync always`
//! or `everysec`).
//!
//! **Reading rows back.** `function` and `unique` come from the hash fields,
//! so a function name or unique holding `-` reads back right; a hash without
//! them (gearmand before issue 159) or a plain string (gearmand before
//! 1.1.16) is read by splitting the key after the prefix at the first `-`, as
//! gearmand does. Replay collects the keys with `SCAN MATCH <prefix>-*` when
//! it opens, so keys written after that are not part of it, then reads them
//! with pipelined `HGETALL`s, a chunk at a time. **Redis keeps no order**:
//! jobs come back in the order of their keys, so FIFO order within a
//! priority is not kept across a restart with this store.
//!
//! **gearmand compatibility.** gearmand reads the four fields we always write
//! (gearmand 1.1.20 to 1.1.22 and 2.0.0 only look at `data` and `priority`,
//! and read them right while Redis returns the fields in the order written,
//! as it does for small hashes). It refuses epoch jobs with this store and
//! fails its replay on a field it does not know, so `when_to_run` is written
//! only for epoch jobs, rows gearmand could never have had. As in gearmand,
//! two jobs whose `<function>-<unique>` spell the same key (`a-b`,`c` and
//! `a`,`b-c`) share one row.
//!
//! **Timeouts.** Connecting gives up after 2 s, and reads and writes on the
//! connection after 2 s (plus 1 s per 10,000 writes in a batch), so a Redis
//! that is down or stopped answering is noticed quickly. The password is sent
//! with `AUTH` after the timeouts are set, not during the connect.
//!
//! **One server per prefix.** A server holds a lease on its prefix, the key
//! `<prefix>lock` (`lease`): a second gearboxd on the same prefix fails to
//! connect with an error naming the holder (`gearboxd pid <pid> on <host> run
//! <n>`), and at start exits. A server whose lease another one took refuses
//! background submits until it is free again. The lease of a server that was
//! killed is taken over once its connection has been gone for 3 s.
//!
//! Needs Redis 4.0 or later (HSET with several fields), with scripting.

use super::backend::{Backend, Op, ReplaySource, Row};
use super::StoreError;
use redis::{ConnectionAddr, ConnectionInfo, ConnectionLike, ProtocolVersion, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

mod lease;

use lease::{lock_key, owner, Lease, GUARDED_WRITE, LEASE};

/// gearmand's defaults for `--redis-server`, `--redis-port` and `--redis-prefix`.
pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 6379;
pub const DEFAULT_PREFIX: &str = "_gear_";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Replay reads up to a chunk of payloads in one reply.
const REPLAY_IO_TIMEOUT: Duration = Duration::from_secs(30);
const SCAN_COUNT: usize = 1000;
const REPLAY_CHUNK: usize = 10_000;
/// Rows, and bytes of payload, per script of a write.
const WRITE_ROWS: usize = 10_000;
const WRITE_BYTES: usize = 64 << 20;

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub host: String,
    pub port: u16,
    pub password: Option<String>,
    pub prefix: String,
}

impl Default for RedisConfig {
    fn default() -> RedisConfig {
        RedisConfig {
            host: DEFAULT_HOST.into(),
            port: DEFAULT_PORT,
            password: None,
            prefix: DEFAULT_PREFIX.into(),
        }
    }
}

pub struct Redis {
    config: RedisConfig,
    conn: Option<redis::Connection>,
    lease: Lease,
    /// Why the last connect failed, for the errors of calls made meanwhile.
    connect_error: Option<StoreError>,
}

impl Redis {
    pub fn new(config: RedisConfig) -> Redis {
        Redis {
            config,
            conn: None,
            lease: Lease::default(),
            connect_error: None,
        }
    }

    fn not_connected(&self) -> StoreError {
        match &self.connect_error {
            Some(e) => StoreError(format!("redis: not connected: {e}")),
            None => StoreError("redis: not connected".into()),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            self.lease.release(conn, &self.config.prefix);
        }
    }
}

fn error(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("redis: {context}: {e}"))
}

/// A connection with its timeouts set before anything is read from it.
fn open(config: &RedisConfig, io_timeout: Duration) -> Result<redis::Connection, StoreError> {
    let info = ConnectionInfo {
        addr: ConnectionAddr::Tcp(config.host.clone(), config.port),
        redis: redis::RedisConnectionInfo {
            db: 0,
            username: None,
            // Sent below, once reads time out.
            password: None,
            protocol: ProtocolVersion::RESP2,
        },
    };
    let client = redis::Client::open(info).map_err(|e| error("connect", e))?;
    let mut conn = client
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .map_err(|e| error("connect", e))?;
    conn.set_read_timeout(Some(io_timeout))
        .and_then(|_| conn.set_write_timeout(Some(io_timeout)))
        .map_err(|e| error("set timeouts", e))?;
    if let Some(password) = &config.password {
        redis::cmd("AUTH")
            .arg(password)
            .query::<()>(&mut conn)
            .map_err(|e| error("AUTH", e))?;
    }
    redis::cmd("PING")
        .query::<()>(&mut conn)
        .map_err(|e| error("PING", e))?;
    Ok(conn)
}

/// A script of [`GUARDED_WRITE`] with no commands yet.
fn guarded_write(prefix: &str, extend: bool) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(GUARDED_WRITE)
        .arg(1)
        .arg(lock_key(prefix))
        .arg(owner())
        .arg(LEASE.as_millis() as u64)
        .arg(if extend { "1" } else { "0" });
    cmd
}

/// A batch as one `MULTI` of [`GUARDED_WRITE`] scripts: each row's last
/// write, as `DEL`, or `DEL` and `HSET`. `extend`: the first script extends
/// the lease. `None` if the batch writes nothing.
fn batch(prefix: &str, ops: &[Op], extend: bool) -> Option<redis::Pipeline> {
    let keys: Vec<Option<Vec<u8>>> = ops
        .iter()
        .map(|op| {
            let (key, function) = op.row_id()?;
            Some(row_key(prefix, function, key))
        })
        .collect();
    // Only each key's last write matters.
    let mut last: HashMap<&[u8], usize> = HashMap::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        if let Some(key) = key {
            last.insert(key, i);
        }
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    let mut script: Option<redis::Cmd> = None;
    let (mut rows, mut bytes) = (0, 0);
    for (i, (op, key)) in ops.iter().zip(&keys).enumerate() {
        let Some(key) = key else { continue };
        if last.get(key.as_slice()) != Some(&i) {
            continue;
        }
        let data = match op {
            Op::Put(row) => row.data.len(),
            _ => 0,
        };
        if rows == WRITE_ROWS || (rows > 0 && bytes + data > WRITE_BYTES) {
            pipe.add_command(script.take().expect("a script")).ignore();
            (rows, bytes) = (0, 0);
        }
        let first = pipe.cmd_iter().next().is_none();
        let cmd = script.get_or_insert_with(|| guarded_write(prefix, extend && first));
        (rows, bytes) = (rows + 1, bytes + data);
        cmd.arg(2).arg("DEL").arg(key);
        if let Op::Put(row) = op {
            let when = row.when != 0;
            cmd.arg(if when { 12 } else { 10 })
                .arg("HSET")
                .arg(key)
                .arg("data")
                .arg(&row.data)
                .arg("priority")
                .arg(u32::from(row.priority))
                .arg("function")
                .arg(&row.function)
                .arg("unique")
                .arg(&row.key);
            if when {
                cmd.arg("when_to_run").arg(row.when);
            }
        }
    }
    pipe.add_command(script?).ignore();
    Some(pipe)
}

/// `<prefix>-<function>-<unique>`, gearmand's key.
fn row_key(prefix: &str, function: &[u8], unique: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + function.len() + unique.len() + 2);
    key.extend_from_slice(prefix.as_bytes());
    key.push(b'-');
    key.extend_from_slice(function);
    key.push(b'-');
    key.extend_from_slice(unique);
    key
}

/// The function and unique in a key, split as gearmand does: after the
/// prefix, at the first `-`.
fn split_key<'a>(prefix: &str, key: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
    let rest = key.strip_prefix(prefix.as_bytes())?.strip_prefix(b"-")?;
    let dash = rest.iter().position(|&b| b == b'-')?;
    Some((&rest[..dash], &rest[dash + 1..]))
}

/// A SCAN pattern matching exactly `text` followed by anything.
fn glob_prefix(text: &str) -> Vec<u8> {
    let mut pattern = Vec::with_capacity(text.len() + 2);
    for &b in text.as_bytes() {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            pattern.push(b'\\');
        }
        pattern.push(b);
    }
    pattern.push(b'*');
    pattern
}

impl Backend for Redis {
    fn describe(&self) -> String {
        format!(
            "redis {}:{} prefix {}",
            self.config.host, self.config.port, self.config.prefix
        )
    }

    fn connect(&mut self) -> Result<(), StoreError> {
        self.conn = None;
        let result = open(&self.config, IO_TIMEOUT).and_then(|mut conn| {
            lease::name_connection(&mut conn);
            self.lease.claim(&mut conn, &self.config.prefix)?;
            Ok(conn)
        });
        match result {
            Ok(conn) => {
                (self.conn, self.connect_error) = (Some(conn), None);
                Ok(())
            }
            Err(e) => {
                self.connect_error = Some(e.clone());
                Err(e)
            }
        }
    }

    fn write(&mut self, ops: &[Op]) -> Result<(), StoreError> {
        let extend = self.lease.due();
        let Some(pipe) = batch(&self.config.prefix, ops, extend) else {
            return Ok(());
        };
        let timeout = IO_TIMEOUT + Duration::from_millis(ops.len() as u64 / 10);
        let Some(conn) = self.conn.as_mut() else {
            return Err(self.not_connected());
        };
        let sent = Instant::now();
        let result = conn
            .set_read_timeout(Some(timeout))
            .and_then(|_| pipe.query::<()>(conn))
            .and_then(|_| conn.set_read_timeout(Some(IO_TIMEOUT)));
        let result = match result {
            Ok(()) => {
                if extend {
                    self.lease.held(sent);
                }
                Ok(())
            }
            Err(e) => Err(match Lease::refused_by(&e) {
                Some(holder) => self.lease.taken(&self.config.prefix, holder.as_bytes()),
                None => error("write", e),
            }),
        };
        if result.is_err() {
            // A reply may still be on its way; never reuse the connection.
            self.conn = None;
        }
        result
    }

    /// Extends the lease when that is due, else a plain PING.
    fn ping(&mut self) -> Result<(), StoreError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(self.not_connected());
        };
        let result = match self.lease.due() {
            true => self.lease.claim(conn, &self.config.prefix),
            false => redis::cmd("PING")
                .query::<()>(conn)
                .map_err(|e| error("ping", e)),
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn open_replay(&mut self) -> Result<Box<dyn ReplaySource>, StoreError> {
        let mut conn = open(&self.config, REPLAY_IO_TIMEOUT)?;
        let pattern = glob_prefix(&format!("{}-", self.config.prefix));
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query(&mut conn)
                .map_err(|e| error("SCAN", e))?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        // SCAN may return a key more than once.
        keys.sort_unstable();
        keys.dedup();
        Ok(Box::new(RedisReplay {
            conn,
            prefix: self.config.prefix.clone(),
            keys: keys.into_iter(),
        }))
    }
}

/// Reads the keys found at open, a chunk of pipelined HGETALLs at a time.
struct RedisReplay {
    conn: redis::Connection,
    prefix: String,
    keys: std::vec::IntoIter<Vec<u8>>,
}

impl RedisReplay {
    /// Runs one command per key in a pipeline; per-key errors come back as
    /// `Value::ServerError`.
    fn each(&mut self, command: &str, keys: &[Vec<u8>]) -> Result<Vec<Value>, StoreError> {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd(command).arg(key);
        }
        self.conn
            .req_packed_commands(&pipe.get_packed_pipeline(), 0, keys.len())
            .map_err(|e| error(command, e))
    }

    /// A row from a hash's fields; `None` if the key cannot be understood.
    fn read_hash(&self, key: &[u8], value: Value) -> Option<Row> {
        let pairs: Vec<(Value, Value)> = match value {
            Value::Map(pairs) => pairs,
            Value::Array(items) => {
                let mut items = items.into_iter();
                std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect()
            }
            _ => return None,
        };
        let mut fields: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        for (field, value) in pairs {
            if let (Some(field), Some(value)) = (bytes(field), bytes(value)) {
                fields.insert(field, value);
            }
        }
        let number = |name: &[u8]| -> Option<u64> {
            std::str::from_utf8(fields.get(name)?)
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        let priority = number(b"priority").unwrap_or(1).min(2) as u8;
        let when = number(b"when_to_run").unwrap_or(0);
        let (function, unique) = match (fields.get(&b"function"[..]), fields.get(&b"unique"[..])) {
            (Some(function), Some(unique)) if !function.is_empty() && !unique.is_empty() => {
                (function.clone(), unique.clone())
            }
            _ => {
                let (function, unique) = split_key(&self.prefix, key)?;
                (function.to_vec(), unique.to_vec())
            }
        };
        Some(Row {
            key: unique,
            function,
            priority,
            data: fields.remove(&b"data"[..]).unwrap_or_default(),
            when,
            position: None,
        })
    }
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}

impl ReplaySource for RedisReplay {
    fn next_chunk(&mut self) -> Result<Vec<Row>, StoreError> {
        loop {
            let keys: Vec<Vec<u8>> = self.keys.by_ref().take(REPLAY_CHUNK).collect();
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let replies = self.each("HGETALL", &keys)?;
            let mut rows = Vec::with_capacity(keys.len());
            let mut strings = Vec::new();
            for (key, reply) in keys.into_iter().zip(replies) {
                match reply {
                    // gearmand before 1.1.16 kept the payload as a plain string.
                    Value::ServerError(e) if e.code() == "WRONGTYPE" => strings.push(key),
                    Value::ServerError(e) => {
                        return Err(error("HGETALL", redis::RedisError::from(e)));
                    }
                    // Deleted since the scan.
                    Value::Array(items) if items.is_empty() => {}
                    Value::Map(pairs) if pairs.is_empty() => {}
                    reply => match self.read_hash(&key, reply) {
                        Some(row) => rows.push(row),
                        None => unreadable(&key),
                    },
                }
            }
            if !strings.is_empty() {
                let replies = self.each("GET", &strings)?;
                for (key, reply) in strings.into_iter().zip(replies) {
                    let data = match reply {
                        Value::Nil => continue,
                        reply => bytes(reply),
                    };
                    match (data, split_key(&self.prefix, &key)) {
                        (Some(data), Some((function, unique))) => rows.push(Row {
                            key: unique.to_vec(),
                            function: function.to_vec(),
                            priority: 1,
                            data,
                            when: 0,
                            position: None,
                        }),
                        _ => unreadable(&key),
                    }
                }
            }
            // A chunk of keys all deleted since the scan is not the end.
            if !rows.is_empty() {
                return Ok(rows);
            }
        }
    }
}

fn unreadable(key: &[u8]) {
    tracing::warn!(key = %String::from_utf8_lossy(key),
        "redis: skipping a key that holds no queued job gearbox can read");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_gearmands_and_split_as_gearmand_splits_them() {
        assert_eq!(row_key("_gear_", b"reverse", b"u1"), b"_gear_-reverse-u1");
        assert_eq!(
            split_key("_gear_", b"_gear_-reverse-u-1"),
            Some((&b"reverse"[..], &b"u-1"[..]))
        );
        assert_eq!(split_key("_gear_", b"_gear_reverse-u1"), None);
        assert_eq!(split_key("_gear_", b"other-reverse-u1"), None);
        assert_eq!(glob_prefix("a*b?[c]\\-"), b"a\\*b\\?\\[c\\]\\\\-*".to_vec());
    }
}
