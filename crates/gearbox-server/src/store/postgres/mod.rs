//! PostgreSQL store (`-q postgres --libpq-conninfo INFO --libpq-table NAME`),
//! in gearmand's table layout, so a queue moves between gearmand and gearboxd:
//!
//! ```sql
//! CREATE TABLE queue (unique_key VARCHAR(64), function_name VARCHAR(255),
//!   priority INTEGER, data BYTEA, when_to_run INTEGER,
//!   gearbox_seq BIGSERIAL,                     -- gearbox only, see below
//!   UNIQUE (unique_key, function_name))
//! ```
//!
//! The table is created if it is missing. gearmand names its columns in every
//! statement it sends, so it reads and writes a table with the extra
//! `gearbox_seq` column as it would its own; the column's default numbers
//! every row, gearmand's too, in the order it was written. PostgreSQL keeps no
//! insertion order otherwise (a row lands wherever a page has room), so replay
//! orders by `gearbox_seq` when the table has it, which keeps FIFO order
//! within a priority across a restart. A table gearmand created is used as it
//! is, never altered (except to add a missing `when_to_run`, as the SQLite
//! store does); replay then reads it in physical (`ctid`) order, the order
//! gearmand itself would read it in, which after deletes is not FIFO.
//!
//! **Writes.** A batch becomes one transaction of at most a few statements: a
//! row's last write in the batch decides its fate, so every row whose last
//! write is a delete goes in one `DELETE ... unnest($1, $2)` and every other
//! in `INSERT ... SELECT FROM unnest(...) ON CONFLICT (unique_key,
//! function_name) DO UPDATE`, an upsert that, like SQLite's `INSERT OR
//! REPLACE`, also gives a replaced row a new place at the end of the order.
//!
//! **Text columns.** gearmand binds uniques and function names as text, so do
//! we, and PostgreSQL text must be valid UTF-8 without NUL bytes and fit the
//! column (`VARCHAR(64)`, `VARCHAR(255)`, or whatever the table says), and
//! `when_to_run` must fit an `INTEGER` (until 2038). A row that breaks one of
//! these can never be stored. [`check_row`] is this backend's
//! [`Backend::row_check`], so the submit of such a job gets QUEUE_ERROR at
//! once, as in gearmand (whose INSERT fails). Should one reach a write anyway
//! (a table with narrower columns than gearmand's), it is left out of the
//! batch with an error in the log rather than fail the batch, since
//! [`Backend::write`] errors are retried forever.
//!
//! **Timeouts.** The TCP connect gives up after 2 s unless the conninfo sets
//! `connect_timeout`, and connecting as a whole (with the startup exchange
//! and the table checks, which that timeout does not cover) 3 s later;
//! `ping` gives up after 2 s; statements are cancelled by the server after
//! 15 s (`statement_timeout`); TCP keepalives and `TCP_USER_TIMEOUT` notice a
//! peer that went away. A connection that failed is closed on a thread of its
//! own, as the `postgres` crate waits for the server to end the session. One
//! wait is not bounded here: a write to a server that still holds the
//! connection open but stopped answering (SIGSTOP, a paused VM) waits until it
//! answers again, as the sync `postgres` crate has no client-side timeout for
//! statements. The store's watcher (`store/stall.rs`) refuses new submits
//! after 5 s of that; an idle writer notices such a server through `ping`.
//!
//! **One server per table.** Before it reads or writes the table, the
//! writer's session takes a session-level advisory lock on it (`owner`), and
//! every write goes through that session. A second gearboxd on the same table
//! fails to connect, with an error naming the session that holds the lock
//! (its `application_name` is `gearboxd pid <pid> on <host>`); at start that
//! makes it exit. A reconnect after an outage takes the lock again, and stays
//! in the outage while someone else holds it.
//!
//! **conninfo** is libpq's (`key=value ...` or a `postgresql://` URL), read by
//! the `postgres` crate; what it leaves out is taken from `PGHOST`, `PGPORT`,
//! `PGUSER`, `PGPASSWORD` and `PGDATABASE`, else from libpq's defaults (the
//! socket in `/var/run/postgresql`, port 5432, the login user). TLS is not
//! supported: `sslmode=require` fails to connect.

use super::backend::{Backend, Op, ReplaySource, Row};
use super::StoreError;
use postgres::config::Host;
use postgres::{Client, Config, NoTls, Statement};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod connect;
mod layout;
mod owner;
mod replay;

use connect::*;
pub use layout::check_row;
use layout::*;
pub(crate) use owner::server_identity;
use owner::*;
use replay::*;

/// gearmand's default table name.
pub const DEFAULT_TABLE: &str = "queue";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// For the writer's statements; a batch of 20,000 rows takes well under 1 s.
const STATEMENT_TIMEOUT: &str = "15s";
/// For replay: the first FETCH sorts the whole table.
const REPLAY_STATEMENT_TIMEOUT: &str = "5min";
const REPLAY_CHUNK: usize = 10_000;
/// Rows (and bytes of data) per INSERT statement, to keep each message well
/// under PostgreSQL's 1 GiB limit.
const PUT_ROWS: usize = 10_000;
const PUT_BYTES: usize = 64 << 20;
/// Keys per DELETE statement.
const DELETE_ROWS: usize = 50_000;

/// The column gearbox adds to tables it creates, numbering rows in write order.
const SEQ_COLUMN: &str = "gearbox_seq";

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// libpq's connection string, as gearmand's `--libpq-conninfo`.
    pub conninfo: String,
    /// gearmand's `--libpq-table`: a plain name is folded to lower case, as
    /// PostgreSQL does with the unquoted name gearmand sends; `schema.table`
    /// is allowed. Any other name is taken as it is, quoted.
    pub table: String,
}

pub struct Postgres {
    config: PostgresConfig,
    table: String,
    parts: TableParts,
    session: Option<Session>,
    /// The backend of the last session that held the table's lock: an
    /// earlier session of ours, should it still hold the lock at a reconnect.
    locked_backend: Option<i32>,
    /// Why the last connect failed, for the errors of calls made meanwhile.
    connect_error: Option<StoreError>,
    /// That another server holds the table has been logged, since we last
    /// held it.
    in_use_logged: bool,
}

/// The writer's connection and what it learned about the table.
struct Session {
    client: Client,
    /// Its backend's pid (`pg_backend_pid()`); it holds the table's lock.
    backend: i32,
    upsert: Statement,
    delete: Statement,
    layout: Layout,
}

/// What the table can hold, read from the catalog at connect.
#[derive(Debug, Clone)]
struct Layout {
    /// Longest `unique_key`, in characters; `None`: no limit.
    key_chars: Option<usize>,
    function_chars: Option<usize>,
    /// Largest `when_to_run`.
    when_max: i64,
    /// The table has `gearbox_seq`.
    seq: bool,
}

impl Postgres {
    pub fn new(config: PostgresConfig) -> Postgres {
        let table = table_identifier(&config.table);
        let parts = table_parts(&config.table);
        Postgres {
            config,
            table,
            parts,
            session: None,
            locked_backend: None,
            connect_error: None,
            in_use_logged: false,
        }
    }

    /// The writer's session, or why there is none.
    fn session(&mut self) -> Result<&mut Session, StoreError> {
        match (&mut self.session, &self.connect_error) {
            (Some(session), _) => Ok(session),
            (None, Some(e)) => Err(StoreError(format!("postgres: not connected: {e}"))),
            (None, None) => Err(StoreError("postgres: not connected".into())),
        }
    }

    fn client_config(&self) -> Result<Config, StoreError> {
        client_config(&self.config.conninfo)
    }

    /// Drops the writer's connection, without waiting for the server.
    fn disconnect(&mut self) {
        if let Some(session) = self.session.take() {
            discard(session.client);
        }
    }
}

impl Drop for Postgres {
    /// Ends the session, and so lets go of the table's lock, before the next
    /// server may start: on a thread of its own, since `postgres::Client`
    /// closes by running a runtime of its own, which panics on a thread that
    /// drives one already (as the thread that drops the store at exit may),
    /// and for at most `PING_TIMEOUT`, since a server that hangs never ends
    /// the session.
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let client = session.client;
            let _ = with_deadline("close", PING_TIMEOUT, move || {
                drop(client);
                Ok(())
            });
        }
    }
}

fn error(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("postgres: {context}: {e}"))
}

/// An error with the server's detail when there is one: `postgres::Error`'s
/// own text is only "db error".
fn db_error(context: &str, e: postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => error(context, db),
        None => error(context, e),
    }
}

impl Backend for Postgres {
    fn row_check(&self) -> Option<super::backend::RowCheck> {
        Some(check_row)
    }

    fn describe(&self) -> String {
        match self.client_config() {
            Ok(config) => format!("postgres {} table {}", describe_config(&config), self.table),
            Err(_) => format!("postgres table {}", self.table),
        }
    }

    fn connect(&mut self) -> Result<(), StoreError> {
        self.disconnect();
        let config = self.client_config()?;
        let (table, parts, previous) =
            (self.table.clone(), self.parts.clone(), self.locked_backend);
        let result = with_deadline("connect", deadline(&config), move || {
            open_session(&config, &table, &parts, previous)
        });
        match result {
            Ok(session) => {
                self.locked_backend = Some(session.backend);
                self.session = Some(session);
                (self.connect_error, self.in_use_logged) = (None, false);
                Ok(())
            }
            Err(e) => {
                // At start the error itself is the message gearboxd exits
                // with; after an outage the writer logs only its first error,
                // so that another server took over is logged here, once.
                if is_in_use(&e) && self.locked_backend.is_some() && !self.in_use_logged {
                    tracing::error!(error = %e,
                        "another server owns the queue table; refusing background submits until it lets go");
                    self.in_use_logged = true;
                }
                self.connect_error = Some(e.clone());
                Err(e)
            }
        }
    }

    fn write(&mut self, ops: &[Op]) -> Result<(), StoreError> {
        let session = self.session()?;
        let reduced = reduce(ops, &session.layout);
        let result = apply(session, &reduced);
        if result.is_err() {
            // The next call must not reuse a connection in an unknown state.
            self.disconnect();
        }
        result
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        let session = self.session()?;
        // `is_valid` is an empty query (the same round trip as SELECT 1)
        // with a client-side timeout, so a server that stopped answering is
        // noticed too.
        let result = session
            .client
            .is_valid(PING_TIMEOUT)
            .map_err(|e| db_error("ping", e));
        if result.is_err() {
            self.disconnect();
        }
        result
    }

    fn open_replay(&mut self) -> Result<Box<dyn ReplaySource>, StoreError> {
        let seq = self.session()?.layout.seq;
        let config = self.client_config()?;
        let order = if seq { SEQ_COLUMN } else { "ctid" };
        // The snapshot is taken by DECLARE, so rows written from now on (by
        // this process or any other) are not part of the replay.
        let open = format!(
            "SET statement_timeout = '{REPLAY_STATEMENT_TIMEOUT}'; \
             SET idle_in_transaction_session_timeout = 0; \
             BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
             DECLARE gearbox_replay NO SCROLL CURSOR FOR \
             SELECT unique_key::text, function_name::text, priority::int8, data, \
             when_to_run::int8 FROM {} ORDER BY {order}",
            self.table
        );
        let client = with_deadline("open replay", deadline(&config), move || {
            let mut client = config
                .connect(NoTls)
                .map_err(|e| db_error("connect reader", e))?;
            client
                .batch_execute(&open)
                .map_err(|e| db_error("open replay", e))?;
            Ok(client)
        })?;
        Ok(Box::new(PostgresReplay {
            client: Some(client),
        }))
    }
}

/// Connects, takes the table's lock (see `owner`), and readies the table and
/// the statements.
fn open_session(
    config: &Config,
    table: &str,
    parts: &TableParts,
    previous: Option<i32>,
) -> Result<Session, StoreError> {
    let mut client = config.connect(NoTls).map_err(|e| db_error("connect", e))?;
    client
        .batch_execute(&format!("SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
        .map_err(|e| db_error("set statement_timeout", e))?;
    let backend = take_lock(&mut client, parts, previous)?;
    // gearmand's own statement (it creates the table only if it finds no
    // table of that name), plus the sequence column.
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (unique_key VARCHAR(64), \
             function_name VARCHAR(255), priority INTEGER, data BYTEA, when_to_run INTEGER, \
             {SEQ_COLUMN} BIGSERIAL, UNIQUE (unique_key, function_name))"
        ))
        .map_err(|e| db_error(&format!("create table {table}"), e))?;
    let layout = inspect(&mut client, table)?;
    let seq_update = if layout.seq {
        format!(", {SEQ_COLUMN} = EXCLUDED.{SEQ_COLUMN}")
    } else {
        String::new()
    };
    let upsert = client
        .prepare(&format!(
            "INSERT INTO {table} (unique_key, function_name, priority, data, when_to_run) \
             SELECT k, f, p, d, w FROM unnest($1::text[], $2::text[], $3::int4[], \
             $4::bytea[], $5::int8[]) WITH ORDINALITY AS r(k, f, p, d, w, n) ORDER BY n \
             ON CONFLICT (unique_key, function_name) DO UPDATE SET \
             priority = EXCLUDED.priority, data = EXCLUDED.data, \
             when_to_run = EXCLUDED.when_to_run{seq_update}"
        ))
        .map_err(|e| db_error("prepare insert", e))?;
    let delete = client
        .prepare(&format!(
            "DELETE FROM {table} AS q USING unnest($1::text[], $2::text[]) AS r(k, f) \
             WHERE q.unique_key = r.k AND q.function_name = r.f"
        ))
        .map_err(|e| db_error("prepare delete", e))?;
    // An upsert of no rows still plans the statement, so a table without
    // the UNIQUE constraint gearmand's layout has fails here, at start,
    // rather than at every write.
    let no_text: Vec<&str> = Vec::new();
    let no_data: Vec<&[u8]> = Vec::new();
    let (no_int, no_when): (Vec<i32>, Vec<i64>) = (Vec::new(), Vec::new());
    client
        .execute(&upsert, &[&no_text, &no_text, &no_int, &no_data, &no_when])
        .map_err(|e| {
            db_error(
                &format!("check {table} (it needs UNIQUE (unique_key, function_name))"),
                e,
            )
        })?;
    Ok(Session {
        client,
        backend,
        upsert,
        delete,
        layout,
    })
}

/// Applies a reduced batch in one transaction.
fn apply(session: &mut Session, reduced: &Reduced<'_>) -> Result<(), StoreError> {
    if reduced.delete_keys.is_empty() && reduced.puts.is_empty() {
        return Ok(());
    }
    let Session {
        client,
        upsert,
        delete,
        ..
    } = session;
    let mut tx = client.transaction().map_err(|e| db_error("begin", e))?;
    for (keys, functions) in reduced
        .delete_keys
        .chunks(DELETE_ROWS)
        .zip(reduced.delete_functions.chunks(DELETE_ROWS))
    {
        tx.execute(&*delete, &[&keys, &functions])
            .map_err(|e| db_error("delete", e))?;
    }
    let mut rest = &reduced.puts[..];
    while !rest.is_empty() {
        let mut n = 0;
        let mut bytes = 0;
        while n < rest.len()
            && n < PUT_ROWS
            && (n == 0 || bytes + rest[n].2.data.len() <= PUT_BYTES)
        {
            bytes += rest[n].2.data.len();
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let keys: Vec<&str> = chunk.iter().map(|p| p.0).collect();
        let functions: Vec<&str> = chunk.iter().map(|p| p.1).collect();
        let priorities: Vec<i32> = chunk.iter().map(|p| i32::from(p.2.priority)).collect();
        let data: Vec<&[u8]> = chunk.iter().map(|p| p.2.data.as_slice()).collect();
        let whens: Vec<i64> = chunk.iter().map(|p| p.3).collect();
        tx.execute(&*upsert, &[&keys, &functions, &priorities, &data, &whens])
            .map_err(|e| db_error("insert", e))?;
    }
    tx.commit().map_err(|e| db_error("commit", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_fold_like_gearmands_unquoted_names() {
        assert_eq!(table_identifier("queue"), "\"queue\"");
        assert_eq!(table_identifier("MyQueue"), "\"myqueue\"");
        assert_eq!(table_identifier("jobs.Queue"), "\"jobs\".\"queue\"");
        assert_eq!(table_identifier("odd name\""), "\"odd name\"\"\"");
    }

    fn row(key: &[u8], function: &[u8], when: u64) -> Row {
        Row {
            key: key.to_vec(),
            function: function.to_vec(),
            priority: 1,
            data: vec![0, 255],
            when,
            position: None,
        }
    }

    #[test]
    fn rows_postgres_cannot_hold_are_told_apart() {
        assert!(check_row(&row(b"u", b"f", 0)).is_ok());
        assert!(check_row(&row(&[b'k'; 64], "é".repeat(255).as_bytes(), 0)).is_ok());
        assert!(check_row(&row(&[b'k'; 65], b"f", 0)).is_err());
        assert!(check_row(&row(b"u", &[b'f'; 256], 0)).is_err());
        assert!(check_row(&row(b"\xff", b"f", 0)).is_err());
        assert!(check_row(&row(b"u", b"f\0", 0)).is_err());
        assert!(check_row(&row(b"u", b"f", 1 << 31)).is_err());
    }

    #[test]
    fn a_batch_reduces_to_each_rows_last_write() {
        let layout = Layout {
            key_chars: Some(64),
            function_chars: Some(255),
            when_max: i32::MAX.into(),
            seq: true,
        };
        let put = |k: &str| Op::Put(row(k.as_bytes(), b"f", 0));
        let delete = |k: &str| Op::Delete {
            key: k.into(),
            function: b"f".to_vec(),
            position: None,
        };
        let ops = vec![
            put("a"),
            put("b"),
            delete("a"),
            put("c"),
            put("b"),
            Op::Put(row(b"\xff", b"f", 0)),
            delete("\u{0}"),
            delete("d"),
            delete("c"),
            put("c"),
        ];
        let reduced = reduce(&ops, &layout);
        assert_eq!(reduced.delete_keys, ["a", "d"]);
        let puts: Vec<&str> = reduced.puts.iter().map(|p| p.0).collect();
        assert_eq!(puts, ["b", "c"]);
    }
}
