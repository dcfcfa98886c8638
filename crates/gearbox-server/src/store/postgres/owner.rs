//! One server per table. Two gearboxd on one table would both replay its rows
//! (every job runs twice) and both write it (one's deletes take the other's
//! rows), so the writer's session takes a session-level advisory lock on the
//! table before it reads or writes anything, and keeps it for as long as the
//! session lives. Every write goes through that session, so no write is ever
//! made without the lock; after an outage the new session takes it again.
//!
//! The lock is `pg_try_advisory_lock(k1, k2)`, the two keys from
//! [`lock_keys`]. Advisory locks belong to one database, so the same table
//! name in another database is another lock. A pooler that hands one client
//! several server sessions (PgBouncer in transaction mode) breaks session
//! locks; connect to PostgreSQL itself.

use super::layout::quote_identifier;
use super::*;
use std::time::Instant;

/// In every error about a table held by another server, so that a reconnect
/// can tell that failure from the others ([`is_in_use`]).
const IN_USE: &str = "is in use by another server";

/// How long a new session waits for an earlier session of this server to let
/// go of the lock: one dropped after an error that PostgreSQL has not ended
/// yet, or one whose connect timed out but went on, on its helper thread,
/// and took the lock before it closes.
const OWN_SESSION_GRACE: Duration = Duration::from_millis(1500);

/// The keys of the table's lock: the 64-bit FNV-1a hash of the UTF-8 bytes of
/// its schema-qualified name as [`qualified_name`] spells it (e.g.
/// `"public"."queue"`), its high 32 bits as `k1` and its low 32 bits as `k2`,
/// each read as a signed int4. FNV-1a because every build and every process
/// must agree on the keys: its offset basis and prime fix it, where Rust's
/// default hasher is seeded at random in each process.
pub(super) fn lock_keys(qualified: &str) -> (i32, i32) {
    let hash = fnv1a64(qualified.as_bytes());
    ((hash >> 32) as u32 as i32, hash as u32 as i32)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

/// `"schema"."table"`. A name without a schema is the table in the session's
/// `current_schema()`: that is where `CREATE TABLE IF NOT EXISTS` looks for it
/// and makes it, and so the one every later statement finds first. So
/// `queue` and `public.queue` are one lock when `public` is that schema.
pub(super) fn qualified_name(
    parts: &TableParts,
    current_schema: Option<&str>,
) -> Result<String, StoreError> {
    let schema = parts.0.as_deref().or(current_schema).ok_or_else(|| {
        StoreError("postgres: no schema for the table: search_path names none that exists".into())
    })?;
    Ok(format!(
        "{}.{}",
        quote_identifier(schema),
        quote_identifier(&parts.1)
    ))
}

/// How this server names itself to PostgreSQL (`application_name`), so that
/// a second server's error can say which server holds the table: `gearboxd
/// pid <pid> on <host name>`. PostgreSQL keeps 63 bytes of it. A conninfo
/// that sets `application_name` keeps its own: servers that share it cannot
/// be told apart, and one may take another's session for an earlier one of
/// its own (it then waits [`OWN_SESSION_GRACE`] before it fails, and still
/// terminates only its own last backend).
pub(crate) fn server_identity() -> String {
    let mut name = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer.
    let ok = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } == 0;
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    let host = match ok && end > 0 {
        true => String::from_utf8_lossy(&name[..end]).into_owned(),
        false => "unknown host".to_owned(),
    };
    format!("gearboxd pid {} on {host}", std::process::id())
}

/// Whether `e` says that another server holds the table.
pub(super) fn is_in_use(e: &StoreError) -> bool {
    e.0.contains(IN_USE)
}

/// The session that holds a lock, as `pg_stat_activity` shows it.
struct Holder {
    /// `None` for a prepared transaction.
    pid: Option<i32>,
    /// `None` when the backend is gone from `pg_stat_activity`: it is exiting.
    application_name: Option<String>,
    client: Option<String>,
}

/// Takes the table's lock on this session and returns the session's backend
/// pid; fails, naming the holder, if another server has it.
///
/// A holder named as this session is (see [`server_identity`]) is another
/// session of this process, and is waited for, up to [`OWN_SESSION_GRACE`].
/// If it is `previous`, the backend of the last session that held the lock
/// here (dropped after an error: after a network failure PostgreSQL may not
/// notice for hours), it is terminated first. Both need the name: a backend
/// pid alone may since belong to another server's session.
pub(super) fn take_lock(
    client: &mut Client,
    parts: &TableParts,
    previous: Option<i32>,
) -> Result<i32, StoreError> {
    let me = client
        .query_one(
            "SELECT pg_backend_pid(), current_schema()::text, \
             current_setting('application_name')",
            &[],
        )
        .map_err(|e| db_error("read session", e))?;
    let (pid, schema, name): (i32, Option<String>, String) = (me.get(0), me.get(1), me.get(2));
    let qualified = qualified_name(parts, schema.as_deref())?;
    let (k1, k2) = lock_keys(&qualified);
    let deadline = Instant::now() + OWN_SESSION_GRACE;
    let mut terminated = false;
    loop {
        let taken: bool = client
            .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&k1, &k2])
            .map_err(|e| db_error("take the table's lock", e))?
            .get(0);
        if taken {
            tracing::debug!(table = %qualified, k1, k2, backend = pid, "holding the table's lock");
            return Ok(pid);
        }
        match holder(client, k1, k2)? {
            // Nothing, or a backend that is exiting: the lock is free in a moment.
            None
            | Some(Holder {
                pid: Some(_),
                application_name: None,
                ..
            }) => continue_until(deadline, || {
                format!("postgres: the lock of table {qualified} is changing hands")
            })?,
            Some(h) if h.pid.is_none() || h.application_name.as_deref() != Some(&name) => {
                return Err(in_use(&qualified, k1, k2, &h))
            }
            Some(h) => {
                if h.pid == previous && !std::mem::replace(&mut terminated, true) {
                    client
                        .execute("SELECT pg_terminate_backend($1)", &[&h.pid])
                        .map_err(|e| db_error("end this server's earlier session", e))?;
                }
                continue_until(deadline, || {
                    format!(
                        "postgres: an earlier session of this server (backend pid {}) still \
                         holds the lock of table {qualified}; it lets go when PostgreSQL ends \
                         that session",
                        h.pid.unwrap_or_default()
                    )
                })?
            }
        }
    }
}

/// Sleeps a little before the next try, or fails with `why` past `deadline`.
fn continue_until(deadline: Instant, why: impl FnOnce() -> String) -> Result<(), StoreError> {
    if Instant::now() >= deadline {
        return Err(StoreError(why()));
    }
    std::thread::sleep(Duration::from_millis(50));
    Ok(())
}

fn holder(client: &mut Client, k1: i32, k2: i32) -> Result<Option<Holder>, StoreError> {
    let row = client
        .query_opt(
            "SELECT l.pid, a.application_name, host(a.client_addr) || ':' || a.client_port \
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND l.classid = $1::int4::oid AND l.objid = $2::int4::oid LIMIT 1",
            &[&k1, &k2],
        )
        .map_err(|e| db_error("find the holder of the table's lock", e))?;
    Ok(row.map(|row| Holder {
        pid: row.get(0),
        application_name: row.get(1),
        client: row.get(2),
    }))
}

fn in_use(qualified: &str, k1: i32, k2: i32, holder: &Holder) -> StoreError {
    let client = holder.client.as_deref();
    StoreError(format!(
        "postgres: table {qualified} {IN_USE}: its lock, pg_advisory_lock({k1}, {k2}), is held \
         by backend pid {}, application_name {:?}, client_addr {}. Two servers on one table \
         would both run every job: stop the other server, or give this one a table of its \
         own (--libpq-table)",
        holder
            .pid
            .map_or("none (a prepared transaction)".into(), |p| p.to_string()),
        holder.application_name.as_deref().unwrap_or_default(),
        client.unwrap_or("none (a local socket, or not shown to this user)"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_its_published_test_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    /// Pinned: a change here would let an old and a new gearboxd run on one
    /// table together.
    #[test]
    fn lock_keys_are_stable_and_name_the_qualified_table() {
        assert_eq!(
            lock_keys("\"public\".\"queue\""),
            (-323_215_789, 1_620_495_073)
        );
        let key = |name: &str, schema: Option<&str>| {
            lock_keys(&qualified_name(&table_parts(name), schema).unwrap())
        };
        let public = key("queue", Some("public"));
        assert_eq!(public, lock_keys("\"public\".\"queue\""));
        assert_eq!(key("QUEUE", Some("public")), public);
        assert_eq!(key("public.queue", Some("other")), public);
        assert_eq!(key("Public.Queue", None), public);
        assert_ne!(key("queue", Some("other")), public);
        assert_ne!(key("queue2", Some("public")), public);
        // Quoting keeps a dot inside a name apart from the schema's dot.
        assert_ne!(
            qualified_name(&(Some("a.b".into()), "c".into()), None).unwrap(),
            qualified_name(&(Some("a".into()), "b.c".into()), None).unwrap()
        );
        assert!(qualified_name(&table_parts("queue"), None).is_err());
    }
}
