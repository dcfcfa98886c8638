//! Where a server under test keeps its queue: a SQLite file, or private
//! PostgreSQL and Redis instances on free loopback ports, each able to count
//! its rows straight from the database.

use super::*;

/// Where a server keeps its queue, as a test sees it.
pub trait QueueStore {
    /// `sqlite`, `postgres`, `redis`.
    fn name(&self) -> &'static str;
    /// The server's queue flags (`-q ...`).
    fn server_args(&self) -> Vec<String>;
    /// How many job rows the store holds now.
    fn rows(&self) -> Result<u64, String>;
    /// What the server is started under (see [`TestServer::start_under`]);
    /// nothing by default.
    fn command_prefix(&self) -> Vec<String> {
        Vec::new()
    }
}

/// An external store that a test can take down and bring back (same address).
pub trait Outage: QueueStore {
    fn go_down(&mut self);
    fn come_back(&mut self);
}

/// Runs a small Python program (python3 is a test dependency already; its sqlite3
/// module reads the queue file without the sqlite3 CLI) and returns its stdout.
/// Run under `prefix`, if any (e.g. `nsenter` into a server's mounts).
fn python_under(prefix: &[String], program: &str, args: &[&str]) -> Result<String, String> {
    let mut cmd = crate::command_under(prefix, "python3");
    cmd.arg("-c").arg(program).args(args);
    let out = try_run_command(cmd, None, Duration::from_secs(30))?;
    if !out.status.success() {
        return Err(format!(
            "python3 failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A row of a gearmand-schema queue table, as read from the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRow {
    pub unique_key: Vec<u8>,
    pub function_name: Vec<u8>,
    pub priority: i64,
    pub data: Vec<u8>,
    pub when_to_run: i64,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex from sqlite"))
        .collect()
}

/// An SQLite queue file in gearmand's schema (`-q libsqlite3`).
pub struct SqliteFile {
    pub path: PathBuf,
    pub table: String,
}

impl SqliteFile {
    /// A file that does not exist yet, in a fresh temp dir.
    pub fn new(label: &str) -> SqliteFile {
        SqliteFile {
            path: unique_temp_dir(label).join("q.db"),
            table: "gearman_queue".to_owned(),
        }
    }

    pub fn path_str(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Every row: the queue table's in rowid order (the order both servers
    /// replay in), then those gearboxd has not yet filed from its log table
    /// `<table>_gearbox_log` (one BLOB per job, decoded here from the layout
    /// documented in docs/design.md), in rowid order.
    pub fn table_rows(&self) -> Result<Vec<TableRow>, String> {
        read_table_rows(&[], &self.path, &self.table)
    }
}

/// [`SqliteFile::table_rows`] of the file at `path`, read by a program run
/// under `prefix` (e.g. `nsenter` into a server's mounts).
pub fn read_table_rows(
    prefix: &[String],
    path: &Path,
    table: &str,
) -> Result<Vec<TableRow>, String> {
    const READ: &str = "import sqlite3, struct, sys\n\
        c = sqlite3.connect(sys.argv[1], timeout=10)\n\
        t = sys.argv[2]\n\
        q = 'SELECT hex(unique_key), hex(function_name), priority, hex(data), \
        coalesce(when_to_run, 0) FROM \"' + t + '\" ORDER BY rowid'\n\
        rows = [list(r) for r in c.execute(q)]\n\
        log = t + '_gearbox_log'\n\
        if c.execute('SELECT 1 FROM sqlite_master WHERE name=?', (log,)).fetchone():\n\
        \x20   for (job,) in c.execute('SELECT job FROM \"' + log + '\" ORDER BY rowid'):\n\
        \x20       when, kl = struct.unpack_from('<QI', job, 1)\n\
        \x20       key = job[13:13 + kl]\n\
        \x20       (fl,) = struct.unpack_from('<I', job, 13 + kl)\n\
        \x20       fn = job[17 + kl:17 + kl + fl]\n\
        \x20       data = job[17 + kl + fl:]\n\
        \x20       rows.append([key.hex().upper(), fn.hex().upper(), job[0], data.hex().upper(), when])\n\
        for r in rows:\n    print('\\t'.join(str(x) for x in r))\n";
    let out = python_under(prefix, READ, &[&path.to_string_lossy(), table])?;
    out.lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 5 {
                return Err(format!("bad row {line:?}"));
            }
            Ok(TableRow {
                unique_key: unhex(f[0]),
                function_name: unhex(f[1]),
                priority: f[2].parse().map_err(|_| format!("bad row {line:?}"))?,
                data: unhex(f[3]),
                when_to_run: f[4].parse().map_err(|_| format!("bad row {line:?}"))?,
            })
        })
        .collect()
}

impl Drop for SqliteFile {
    /// Removes the file's temp dir, unless the test failed (then it is kept).
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("---- queue file kept: {} ----", self.path.display());
        } else if let Some(dir) = self.path.parent() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

impl QueueStore for SqliteFile {
    fn name(&self) -> &'static str {
        "sqlite"
    }
    fn server_args(&self) -> Vec<String> {
        vec![
            "-q".into(),
            "libsqlite3".into(),
            "--libsqlite3-db".into(),
            self.path_str(),
            "--libsqlite3-table".into(),
            self.table.clone(),
        ]
    }
    fn rows(&self) -> Result<u64, String> {
        self.table_rows().map(|rows| rows.len() as u64)
    }
}

/// A private PostgreSQL cluster in a temp dir, on a free loopback port, run as the
/// `postgres` user (initdb refuses root), superuser `postgres` with trust
/// authentication. [`Outage`] stops it (`-m fast`) and starts it again on the same
/// port. Stopped (`-m immediate`) on drop.
pub struct PostgresInstance {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    setup: PostgresSetup,
    pub table: String,
}

/// How [`PostgresInstance::start_with`] makes and runs a cluster.
#[derive(Clone, Copy, Debug)]
pub struct PostgresSetup {
    /// `false` runs it with `fsync=off`: faster, and a crash of postgres (not of
    /// the machine) still loses nothing committed.
    pub fsync: bool,
    /// `initdb -E`; `None` takes the locale's encoding.
    pub encoding: Option<&'static str>,
}

impl Default for PostgresSetup {
    /// What [`PostgresInstance::start`] uses: `fsync=off`, the locale's encoding.
    fn default() -> PostgresSetup {
        PostgresSetup {
            fsync: false,
            encoding: None,
        }
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// The PostgreSQL server binaries (initdb, pg_ctl): `$GEARBOX_PG_BINDIR`, else the
/// newest `/usr/lib/postgresql/<version>/bin` (Debian's `postgresql` package), else
/// the directory of the `initdb` on `$PATH`.
pub fn postgres_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GEARBOX_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    if let Some(initdb) = find_in_path("initdb") {
        let initdb = fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(bin) = initdb.parent() {
            return bin.to_path_buf();
        }
    }
    panic!(
        "no /usr/lib/postgresql/*/bin/initdb: install Debian's `postgresql` \
         (protocol-tests/install-deps.sh does) or set GEARBOX_PG_BINDIR"
    )
}

fn as_postgres(program: &Path, args: &[&str]) -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false);
    let mut cmd = if is_root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    };
    cmd.args(args);
    cmd
}

fn run_ok(cmd: Command, what: &str) -> Result<String, String> {
    let out = try_run_command(cmd, None, Duration::from_secs(120))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl PostgresInstance {
    /// A cluster as [`PostgresSetup::default`] makes it.
    pub fn start() -> PostgresInstance {
        PostgresInstance::start_with(PostgresSetup::default())
    }

    pub fn start_with(setup: PostgresSetup) -> PostgresInstance {
        let bin = postgres_bindir();
        assert!(
            bin.join("initdb").is_file() && bin.join("pg_ctl").is_file(),
            "{} holds no initdb and pg_ctl",
            bin.display()
        );
        let dir = unique_temp_dir("postgres");
        let mut chown = Command::new("chown");
        chown.arg("postgres:postgres").arg(&dir);
        let _ = run_ok(chown, "chown");
        let mut pg = PostgresInstance {
            bin,
            dir,
            port: 0,
            setup,
            table: "queue".to_owned(),
        };
        let data = pg.data();
        let mut args = vec!["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"];
        if let Some(encoding) = setup.encoding {
            args.extend(["-E", encoding]);
        }
        let initdb = as_postgres(&pg.bin.join("initdb"), &args);
        run_ok(initdb, "initdb").unwrap_or_else(|e| panic!("{e}"));
        let mut failures = Vec::new();
        for _ in 0..4 {
            pg.port = free_port();
            match pg.pg_ctl_start() {
                Ok(()) => return pg,
                Err(e) => failures.push(e),
            }
        }
        panic!("postgres did not start:\n{}", failures.join("\n"));
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses={HOST}",
            self.port,
            self.dir.display()
        );
        if !self.setup.fsync {
            opts.push_str(" -c fsync=off");
        }
        let log = self.dir.join("postgres.log");
        let log_s = log.to_string_lossy().into_owned();
        let data = self.data();
        let args = [
            "-D", &data, "-l", &log_s, "-o", &opts, "-w", "-t", "60", "start",
        ];
        run_ok(as_postgres(&self.bin.join("pg_ctl"), &args), "pg_ctl start")
            .map(drop)
            .map_err(|e| format!("{e}\n{}", crate::read_file(&log)))
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<(), String> {
        let data = self.data();
        let args = ["-D", &data, "-m", mode, "-w", "-t", "60", "stop"];
        run_ok(as_postgres(&self.bin.join("pg_ctl"), &args), "pg_ctl stop").map(drop)
    }

    /// For the test's own clients: gives up connecting after 2 s.
    pub fn conninfo(&self) -> String {
        format!("{} connect_timeout=2", self.plain_conninfo())
    }

    /// Without `connect_timeout`, so that a client's own default applies.
    pub fn plain_conninfo(&self) -> String {
        format!(
            "host={HOST} port={} user=postgres dbname=postgres",
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's pid (from `postmaster.pid`), while it runs.
    pub fn pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.dir.join("data").join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

impl QueueStore for PostgresInstance {
    fn name(&self) -> &'static str {
        "postgres"
    }
    fn server_args(&self) -> Vec<String> {
        vec![
            "-q".into(),
            "postgres".into(),
            "--libpq-conninfo".into(),
            self.conninfo(),
            "--libpq-table".into(),
            self.table.clone(),
        ]
    }
    fn rows(&self) -> Result<u64, String> {
        let psql = self.bin.join("psql");
        let mut cmd = Command::new(if psql.is_file() { psql } else { "psql".into() });
        cmd.args(["-X", "-A", "-t", "-d"])
            .arg(self.conninfo())
            .arg("-c")
            .arg(format!("SELECT count(*) FROM {}", self.table));
        let out = run_ok(cmd, "psql count")?;
        out.trim().parse().map_err(|_| format!("bad count {out:?}"))
    }
}

impl PostgresInstance {
    /// Runs `sql` with psql and returns its unaligned output, a line per row.
    pub fn query(&self, sql: &str) -> Result<String, String> {
        let psql = self.bin.join("psql");
        let mut cmd = Command::new(if psql.is_file() { psql } else { "psql".into() });
        cmd.args(["-X", "-A", "-t", "-d"])
            .arg(self.conninfo())
            .arg("-c")
            .arg(sql);
        run_ok(cmd, "psql")
    }
}

impl Outage for PostgresInstance {
    fn go_down(&mut self) {
        self.pg_ctl_stop("fast").unwrap_or_else(|e| panic!("{e}"));
    }
    fn come_back(&mut self) {
        self.pg_ctl_start().unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for PostgresInstance {
    fn drop(&mut self) {
        let _ = self.pg_ctl_stop("immediate");
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A private redis-server on a free loopback port, its data in a temp dir. By
/// default its append-only file is synced on every write, so a restart (see
/// [`Outage`]) keeps what gearboxd committed. Killed on drop.
pub struct RedisInstance {
    process: Option<crate::BackgroundProcess>,
    binary: String,
    dir: PathBuf,
    port: u16,
    setup: RedisSetup,
    pub prefix: String,
}

/// How [`RedisInstance::start_with`] runs redis-server.
#[derive(Clone, Copy, Debug)]
pub struct RedisSetup {
    /// `--requirepass`.
    pub password: Option<&'static str>,
    /// `--appendonly yes` (synced always); `false` keeps nothing across a restart.
    pub append_only: bool,
}

impl Default for RedisSetup {
    /// What [`RedisInstance::start`] uses: no password, the append-only file.
    fn default() -> RedisSetup {
        RedisSetup {
            password: None,
            append_only: true,
        }
    }
}

/// `$GEARBOX_REDIS_SERVER`, else the `redis-server` on `$PATH`.
pub fn redis_server_binary() -> PathBuf {
    std::env::var_os("GEARBOX_REDIS_SERVER")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| find_in_path("redis-server"))
        .unwrap_or_else(|| {
            panic!(
                "redis-server not found: install Debian's `redis-server` \
                 (protocol-tests/install-deps.sh does) or set GEARBOX_REDIS_SERVER to its path"
            )
        })
}

impl RedisInstance {
    /// A server as [`RedisSetup::default`] runs it.
    pub fn start() -> RedisInstance {
        RedisInstance::start_with(RedisSetup::default())
    }

    pub fn start_with(setup: RedisSetup) -> RedisInstance {
        let mut redis = RedisInstance {
            process: None,
            binary: redis_server_binary().to_string_lossy().into_owned(),
            dir: unique_temp_dir("redis"),
            port: 0,
            setup,
            prefix: "gbtest".to_owned(),
        };
        let mut failures = Vec::new();
        for _ in 0..4 {
            redis.port = free_port();
            match redis.spawn() {
                Ok(()) => return redis,
                Err(e) => failures.push(e),
            }
        }
        panic!("redis-server did not start:\n{}", failures.join("\n"));
    }

    /// Starts redis-server on `self.port` and waits until it answers PING (or,
    /// with a password, AUTH).
    fn spawn(&mut self) -> Result<(), String> {
        let (port, dir) = (
            self.port.to_string(),
            self.dir.to_string_lossy().into_owned(),
        );
        let append_only = if self.setup.append_only { "yes" } else { "no" };
        let mut args = vec![
            "--port",
            &port,
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            append_only,
            "--appendfsync",
            "always",
            "--dir",
            &dir,
        ];
        let (probe, ok): (Vec<&str>, &[u8]) = match self.setup.password {
            Some(password) => {
                args.extend(["--requirepass", password]);
                (vec!["AUTH", password], b"+OK")
            }
            None => (vec!["PING"], b"+PONG"),
        };
        let label = format!("redis-server-{port}");
        let mut process = crate::BackgroundProcess::spawn(&label, &self.binary, &args, &self.dir);
        let ready = Instant::now() + Duration::from_secs(10);
        while Instant::now() < ready {
            if matches!(redis_command(self.port, &probe), Ok(r) if r.starts_with(ok)) {
                self.process = Some(process);
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
        process.kill();
        Err(process.describe())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn password(&self) -> Option<&'static str> {
        self.setup.password
    }

    /// The server's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process
            .as_ref()
            .and_then(crate::BackgroundProcess::pid)
    }
}

impl RedisInstance {
    /// Runs one command whose reply is a status, an error or an integer, and
    /// returns the raw RESP reply.
    pub fn command(&self, args: &[&str]) -> Result<Vec<u8>, String> {
        redis_command(self.port, args)
    }
}

impl Drop for RedisInstance {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Sends one command in RESP and returns the raw reply (read until the reply is
/// complete for the simple shapes used here: status, integer, array of bulk strings).
fn redis_command(port: u16, args: &[&str]) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect((HOST, port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream
        .write_all(req.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("redis closed the connection".into());
        }
        reply.extend_from_slice(&chunk[..n]);
        if resp_complete(&reply) {
            return Ok(reply);
        }
    }
}

/// Is `reply` one whole RESP reply (simple string, error, integer, or an array of
/// bulk strings)?
fn resp_complete(reply: &[u8]) -> bool {
    let line_end = |from: usize| {
        reply[from..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| from + p)
    };
    let Some(end) = line_end(0) else { return false };
    if reply[0] != b'*' {
        return true;
    }
    let count: i64 = String::from_utf8_lossy(&reply[1..end]).parse().unwrap_or(0);
    let mut pos = end + 2;
    for _ in 0..count.max(0) {
        let Some(end) = line_end(pos) else {
            return false;
        };
        let len: i64 = String::from_utf8_lossy(&reply[pos + 1..end])
            .parse()
            .unwrap_or(-1);
        pos = end + 2 + if len >= 0 { len as usize + 2 } else { 0 };
        if pos > reply.len() {
            return false;
        }
    }
    true
}

impl QueueStore for RedisInstance {
    fn name(&self) -> &'static str {
        "redis"
    }
    fn server_args(&self) -> Vec<String> {
        vec![
            "-q".into(),
            "redis".into(),
            "--redis-server".into(),
            HOST.into(),
            "--redis-port".into(),
            self.port.to_string(),
            "--redis-prefix".into(),
            self.prefix.clone(),
        ]
    }
    /// Keys `<prefix>-*`: gearmand's layout, one hash per job.
    fn rows(&self) -> Result<u64, String> {
        let reply = redis_command(self.port, &["KEYS", &format!("{}-*", self.prefix)])?;
        let end = reply.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
        match reply.first() {
            Some(b'*') => String::from_utf8_lossy(&reply[1..end])
                .parse()
                .map_err(|_| "bad KEYS reply".to_owned()),
            _ => Err(format!("KEYS: {}", String::from_utf8_lossy(&reply))),
        }
    }
}

impl Outage for RedisInstance {
    /// SIGKILL: with the append-only file synced always, nothing acknowledged is lost.
    fn go_down(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }
    fn come_back(&mut self) {
        self.spawn()
            .unwrap_or_else(|e| panic!("redis-server did not restart on port {}:\n{e}", self.port));
    }
}
