//! Connecting, and bounding how long the `postgres` crate may block: its
//! client is synchronous and has no timeouts of its own for a server that
//! stops answering.

use super::*;

/// Helper threads (see [`discard`] and [`with_deadline`]) running now; they
/// only outlive their use while a server hangs.
static HELPERS: AtomicUsize = AtomicUsize::new(0);
const MAX_HELPERS: usize = 64;

/// Runs `f` on a helper thread, counted in [`HELPERS`].
fn spawn_helper(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    if HELPERS.fetch_add(1, Ordering::SeqCst) >= MAX_HELPERS {
        HELPERS.fetch_sub(1, Ordering::SeqCst);
        return Err(format!("{MAX_HELPERS} earlier connections are still stuck"));
    }
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            f();
            HELPERS.fetch_sub(1, Ordering::SeqCst);
        })
        .map(|_| ())
        .map_err(|e| {
            HELPERS.fetch_sub(1, Ordering::SeqCst);
            e.to_string()
        })
}

/// Closes a connection that failed, on a helper thread: `postgres::Client`
/// waits on drop until the server ends the session, which a server that hangs
/// never does, and the writer must go on meanwhile (to report the outage, and
/// to reconnect). Should too many be stuck, the connection is leaked instead.
pub(super) fn discard(client: Client) {
    // Shared, so that a helper that cannot start (and drops its closure)
    // does not drop the connection here.
    let client = std::sync::Arc::new(std::sync::Mutex::new(Some(client)));
    let theirs = client.clone();
    let spawned = spawn_helper("gearbox-pg-close", move || {
        let taken = theirs.lock().map(|mut c| c.take()).unwrap_or(None);
        drop(taken);
    });
    if let Err(why) = spawned {
        tracing::warn!("postgres: leaking a failed connection: {why}");
        if let Some(client) = client.lock().ok().and_then(|mut c| c.take()) {
            std::mem::forget(client);
        }
    }
}

/// How long connecting may take in all: the connect timeout covers only the
/// TCP connect, not the startup exchange nor our setup.
pub(super) fn deadline(config: &Config) -> Duration {
    config
        .get_connect_timeout()
        .copied()
        .unwrap_or(CONNECT_TIMEOUT)
        + Duration::from_secs(3)
}

/// Runs `f` on a helper thread and waits for it at most `deadline`, so that
/// a server that accepts connections but does not answer cannot hold the
/// caller. Past the deadline `f` goes on alone, and what it returns is
/// dropped there.
pub(super) fn with_deadline<T: Send + 'static>(
    what: &str,
    deadline: Duration,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let (send, receive) = std::sync::mpsc::sync_channel(1);
    spawn_helper("gearbox-pg-connect", move || {
        let _ = send.send(f());
    })
    .map_err(|why| error(what, why))?;
    match receive.recv_timeout(deadline) {
        Ok(result) => result,
        Err(_) => Err(error(
            what,
            format!("no answer within {} s", deadline.as_secs_f32()),
        )),
    }
}

/// The conninfo with libpq's environment variables and defaults for what it
/// leaves out, and our timeouts unless it sets its own.
pub(super) fn client_config(conninfo: &str) -> Result<Config, StoreError> {
    let mut config = Config::from_str(conninfo).map_err(|e| error("bad conninfo", e))?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if config.get_hosts().is_empty() {
        match env("PGHOST") {
            Some(hosts) => {
                for host in hosts.split(',') {
                    config.host(host);
                }
            }
            None => {
                config.host("/var/run/postgresql");
            }
        }
    }
    if config.get_ports().is_empty() {
        if let Some(port) = env("PGPORT").and_then(|p| p.parse().ok()) {
            config.port(port);
        }
    }
    if config.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(|| env("USER"))
            .or_else(|| env("LOGNAME"))
            .or_else(login_name)
            .ok_or_else(|| StoreError("postgres: no user in conninfo, PGUSER or USER".into()))?;
        config.user(&user);
    }
    if config.get_password().is_none() {
        if let Some(password) = env("PGPASSWORD") {
            config.password(password);
        }
    }
    if config.get_dbname().is_none() {
        if let Some(dbname) = env("PGDATABASE") {
            config.dbname(&dbname);
        }
    }
    if config.get_application_name().is_none() {
        // Names this server to a second one on the same table (`owner`).
        config.application_name(&server_identity());
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(10));
    }
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3);
    Ok(config)
}

/// The name of the user this process runs as, as libpq would default to.
fn login_name() -> Option<String> {
    // SAFETY: getpwuid returns a pointer into static storage or null; the
    // name is copied out at once.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_str()
            .ok()
            .map(str::to_owned)
    }
}

/// Where the server is, without the password, for logs.
pub(super) fn describe_config(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let mut out = format!("host={}", hosts.join(","));
    if !config.get_ports().is_empty() {
        let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
        out += &format!(" port={}", ports.join(","));
    }
    if let Some(user) = config.get_user() {
        out += &format!(" user={user}");
    }
    if let Some(dbname) = config.get_dbname() {
        out += &format!(" dbname={dbname}");
    }
    out
}
