//! One server per prefix. Two gearboxd on one prefix would both replay its
//! keys (every job runs twice) and both write them, so a server holds a lease
//! on the prefix: the key `<prefix>lock`, holding [`owner`], set with
//! `SET key owner NX PX 30000` and extended by a script that extends it only
//! while it still holds our owner string. Job keys are `<prefix>-...`, so the
//! lock key is never one of them, and gearbox's replay (`<prefix>-*`) never
//! reads it. (gearmand reads every key under the prefix, and skips or
//! misreads this one: do not start it on a prefix while the key exists.)
//!
//! Every write checks the lease in the same step as it writes: each chunk of a
//! batch is one script that first reads the lock key and refuses to write
//! unless it holds our owner string (or is gone, when the script takes it
//! back), and a script runs with no other client's command in between. So no
//! write lands once another server holds the key, however long this process
//! was stopped meanwhile.
//!
//! The lease is extended every [`RENEW_AFTER`]: by the write that is due, or
//! by the idle writer's `ping`, which runs about once a second. A lease that
//! was lost is taken back if the key is gone; if another server holds it, the
//! store is in an outage (new submits get QUEUE_ERROR) until it lets go. A
//! clean stop deletes the key if it is still ours.
//!
//! A killed server's lease would hold the prefix for up to [`LEASE`], and a
//! restart (systemd's, say, a moment later) would fail meanwhile. So the
//! writer's connection is named after the owner (`CLIENT SETNAME
//! gearboxd-<run>`), and a server that finds the lease held looks for that
//! name in `CLIENT LIST`: a holder with no connection for [`GONE_FOR`] (longer
//! than its reconnect backoff) is gone, and its lease is taken over, by a
//! script that takes it only if it still holds that owner. Where Redis
//! refuses `CLIENT LIST` (an ACL), the lease is left to run out.

use super::*;
use std::sync::OnceLock;
use std::time::Instant;

/// How long a lease lasts without being extended: how long a prefix stays
/// held after its server was killed.
pub(super) const LEASE: Duration = Duration::from_secs(30);
/// How old a lease may get before it is extended. The idle writer pings
/// about once a second, so this is at most about 10 s.
const RENEW_AFTER: Duration = Duration::from_secs(9);

/// How long a holder must have had no connection to Redis before its lease
/// is taken over: longer than its reconnect backoff (at most 2 s).
const GONE_FOR: Duration = Duration::from_secs(3);

/// In every error about a prefix held by another server.
const IN_USE: &str = "is in use by another server";

/// Extends the lease if it is ours; returns who holds it (nil: nobody).
const RENEW: &str = "local v = redis.call('GET', KEYS[1]) \
    if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end \
    return v";

/// Takes the lease over from the owner ARGV[1], if it still holds it.
const TAKE_OVER: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0";

/// Deletes the lock key if it is ours.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) end return 0";

/// A chunk of a batch, written only while the lease is ours: ARGV is the
/// owner, the lease in ms, `1` to extend the lease, then each command as its
/// number of arguments followed by them. A lock key that is gone is taken
/// back first. Effects replication (the default from Redis 5, and the only
/// kind from 7) sends replicas and the AOF the writes, not the script.
pub(super) const GUARDED_WRITE: &str = "\
    local holder = redis.call('GET', KEYS[1]) \
    if holder and holder ~= ARGV[1] then \
      return redis.error_reply('GEARBOXLOCK ' .. holder) end \
    if redis.replicate_commands then redis.replicate_commands() end \
    if not holder or ARGV[3] == '1' then \
      redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end \
    local i = 4 \
    while i <= #ARGV do \
      local n = tonumber(ARGV[i]) \
      redis.call(unpack(ARGV, i + 1, i + n)) \
      i = i + n + 1 \
    end \
    return 1";

/// The error code of [`GUARDED_WRITE`] when another server holds the lease.
const GUARD_CODE: &str = "GEARBOXLOCK";

/// What the lock key holds while this process has the lease: the name it
/// gives PostgreSQL too, and a number drawn at start, so that a server on
/// another host with the same name and pid is still told apart. One per
/// process: every `Redis` of one process is one server.
pub(super) fn owner() -> &'static str {
    static OWNER: OnceLock<String> = OnceLock::new();
    OWNER.get_or_init(|| {
        let run = crate::store::keys::new_run_number();
        format!(
            "{} run {run:016x}",
            super::super::postgres::server_identity()
        )
    })
}

/// The name of the owner's writer connection: `gearboxd-<run>`, from the
/// owner string; `None` for a holder that is not a gearboxd.
fn client_name(owner: &str) -> Option<String> {
    let run = owner.rsplit_once(" run ")?.1;
    let hex = run.len() == 16 && run.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then(|| format!("gearboxd-{run}"))
}

/// Names the writer's connection after this server (see the module docs).
pub(super) fn name_connection(conn: &mut redis::Connection) {
    let name = client_name(owner()).expect("our owner string has a run");
    let named = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(name)
        .query::<()>(conn);
    if let Err(e) = named {
        tracing::debug!(error = %e, "redis: cannot name the connection; should this server \
            be killed, the next one waits for its lease to run out");
    }
}

/// Whether `holder` is a gearboxd that has had no connection to Redis for
/// [`GONE_FOR`]. Any doubt (`CLIENT LIST` refused, a holder that is not a
/// gearboxd) is a no.
fn holder_is_gone(conn: &mut redis::Connection, holder: &str) -> bool {
    let Some(name) = client_name(holder) else {
        return false;
    };
    let field = format!("name={name}");
    let deadline = Instant::now() + GONE_FOR;
    loop {
        let clients: String = match redis::cmd("CLIENT").arg("LIST").query(conn) {
            Ok(clients) => clients,
            Err(_) => return false,
        };
        if clients.lines().any(|c| c.split(' ').any(|f| f == field)) {
            return false;
        }
        if Instant::now() >= deadline {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `<prefix>lock`.
pub(super) fn lock_key(prefix: &str) -> String {
    format!("{prefix}lock")
}

/// The lease as this backend knows it.
#[derive(Default)]
pub(super) struct Lease {
    /// When it was last taken or extended (when that command was sent).
    renewed: Option<Instant>,
    /// Held at some time by this backend: a failure to take it is then a
    /// takeover, worth a line of its own in the log.
    held_before: bool,
    /// The takeover has been logged, since the lease was last ours.
    takeover_logged: bool,
}

impl Lease {
    /// Whether the next write should extend the lease.
    pub(super) fn due(&self) -> bool {
        self.renewed.is_none_or(|at| at.elapsed() >= RENEW_AFTER)
    }

    /// Takes the lease, or extends it if it is ours already.
    pub(super) fn claim(
        &mut self,
        conn: &mut redis::Connection,
        prefix: &str,
    ) -> Result<(), StoreError> {
        let key = lock_key(prefix);
        let ms = LEASE.as_millis() as u64;
        // Bounded: only a key that keeps coming and going loops.
        for _ in 0..3 {
            let sent = Instant::now();
            let holder: Option<Vec<u8>> = redis::cmd("EVAL")
                .arg(RENEW)
                .arg(1)
                .arg(&key)
                .arg(owner())
                .arg(ms)
                .query(conn)
                .map_err(|e| error("extend the lease", e))?;
            let taken = match holder {
                Some(holder) if holder == owner().as_bytes() => true,
                Some(holder) if holder_is_gone(conn, &String::from_utf8_lossy(&holder)) => {
                    let took: i64 = redis::cmd("EVAL")
                        .arg(TAKE_OVER)
                        .arg(1)
                        .arg(&key)
                        .arg(&holder)
                        .arg(owner())
                        .arg(ms)
                        .query(conn)
                        .map_err(|e| error("take over the lease", e))?;
                    if took == 1 {
                        tracing::warn!(prefix, previous = %String::from_utf8_lossy(&holder),
                            "took over the redis prefix from a server that is gone \
                             (no connection to Redis for 3 s)");
                    }
                    took == 1
                }
                Some(holder) => return Err(self.taken(prefix, &holder)),
                None => redis::cmd("SET")
                    .arg(&key)
                    .arg(owner())
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query::<Option<String>>(conn)
                    .map_err(|e| error("take the lease", e))?
                    .is_some(),
            };
            if taken {
                self.held(sent);
                return Ok(());
            }
        }
        Err(StoreError(format!(
            "redis: the lock key {key:?} of prefix {prefix:?} keeps changing hands"
        )))
    }

    /// A write (or claim) sent at `sent` found the lease ours.
    pub(super) fn held(&mut self, sent: Instant) {
        self.renewed = Some(sent);
        self.held_before = true;
        self.takeover_logged = false;
    }

    /// The error for a lease that `holder` has; logged once if it had been
    /// ours, since an outage's log line is only its first error.
    pub(super) fn taken(&mut self, prefix: &str, holder: &[u8]) -> StoreError {
        self.renewed = None;
        let e = StoreError(format!(
            "redis: prefix {prefix:?} {IN_USE}: its lock key {:?} is held by {:?}. Two \
             servers on one prefix would both run every job: stop the other server, or give \
             this one a prefix of its own (--redis-prefix)",
            lock_key(prefix),
            String::from_utf8_lossy(holder),
        ));
        if self.held_before && !self.takeover_logged {
            tracing::error!(error = %e,
                "another server owns the redis prefix; refusing background submits until it lets go");
            self.takeover_logged = true;
        }
        e
    }

    /// The holder named by a [`GUARDED_WRITE`] that refused to write.
    pub(super) fn refused_by(e: &redis::RedisError) -> Option<&str> {
        (e.code() == Some(GUARD_CODE)).then(|| e.detail().unwrap_or_default())
    }

    /// Deletes the lock key if it is still ours: the next server need not
    /// wait for the lease to run out.
    pub(super) fn release(&mut self, conn: &mut redis::Connection, prefix: &str) {
        if self.renewed.take().is_some() {
            let released = redis::cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(lock_key(prefix))
                .arg(owner())
                .query::<i64>(conn);
            if let Err(e) = released {
                tracing::warn!(error = %e, "redis: could not release the prefix's lock key");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holders_connection_name_comes_from_its_owner_string() {
        assert_eq!(
            client_name("gearboxd pid 7 on box run 00000000000000ff").as_deref(),
            Some("gearboxd-00000000000000ff")
        );
        assert!(owner().starts_with(&format!("gearboxd pid {} on ", std::process::id())));
        assert!(client_name(owner()).is_some());
        for other in [
            "someone else",
            "gearboxd pid 7 on box run xyz",
            "x run 0123",
        ] {
            assert_eq!(client_name(other), None, "{other}");
        }
    }
}
