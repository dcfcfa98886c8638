//! Harness for the real-client interoperability tests.
//!
//! The tests in `tests/` drive real Gearman clients and workers (PHP pecl/gearman,
//! Python `gear`, Perl `Gearman::Client`/`Gearman::Worker`, the `gearman` CLI and
//! `gearadmin`) as subprocesses against a server started here, and check what a user
//! of those clients would see. The same tests run against the real `gearmand` and
//! against `gearboxd`, see [`ServerKind`].
//!
//! Everything is bounded in time: servers must accept connections within
//! [`STARTUP_TIMEOUT`], [`run`] kills a program that outlives its timeout and fails
//! with its captured output, and [`BackgroundProcess`] / [`TestServer`] kill their own
//! child on drop. Only std is used.

pub mod diff;
pub mod durable;
pub mod peers;

use std::env;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The only address servers listen on and clients connect to.
pub const HOST: &str = "127.0.0.1";

/// How long a server gets to start accepting connections.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Default timeout for one client program run by the tests.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// How often a server start is retried (each time on a new free port).
const START_ATTEMPTS: usize = 4;

/// Which job server a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// The reference gearmand (Debian package gearman-job-server), found on `PATH`.
    Gearmand,
    /// gearboxd from this workspace, built once per test process.
    Gearboxd,
}

impl ServerKind {
    /// Both kinds, in the order the tests use them.
    pub const ALL: [ServerKind; 2] = [ServerKind::Gearmand, ServerKind::Gearboxd];

    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Gearmand => "gearmand",
            ServerKind::Gearboxd => "gearboxd",
        }
    }
}

/// `protocol-tests/` (the directory holding this package's Cargo.toml).
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `protocol-tests/clients/`, where the client and worker scripts live.
pub fn clients_dir() -> PathBuf {
    manifest_dir().join("clients")
}

/// Absolute path of one script in [`clients_dir`], as a String for use as an argument.
pub fn client_script(name: &str) -> String {
    let path = clients_dir().join(name);
    assert!(
        path.is_file(),
        "client script {} is missing",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// A fresh, empty directory under the system temp dir, unique to this process.
pub fn unique_temp_dir(label: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = env::temp_dir().join(format!(
        "protocol-tests-{}-{}-{}",
        std::process::id(),
        n,
        label
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create temp dir {}: {e}", dir.display()));
    dir
}

/// A loopback port that was free a moment ago (bind 127.0.0.1:0, read it, release it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((HOST, 0)).expect("cannot bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

fn read_lossy(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    }
}

// ---------------------------------------------------------------------------------------
// gearboxd binary
// ---------------------------------------------------------------------------------------

/// The cargo target directory: `$CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => manifest_dir().join("..").join("target"),
    }
}

/// Path of the gearboxd binary, built with `$CARGO build -p gearboxd --bin gearboxd` the
/// first time this is called in the test process. Panics with cargo's output if the
/// build fails (every gearboxd test then fails with that message).
pub fn gearboxd_path() -> PathBuf {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = PATH.get_or_init(|| {
        let cargo = env::var("CARGO")
            .ok()
            .filter(|c| !c.is_empty())
            .or_else(|| option_env!("CARGO").map(str::to_owned))
            .unwrap_or_else(|| "cargo".to_owned());
        let mut cmd = Command::new(&cargo);
        cmd.args(["build", "-p", "gearboxd", "--bin", "gearboxd"])
            .current_dir(manifest_dir().join(".."));
        let output = try_run_command(cmd, None, Duration::from_secs(900)).map_err(|e| {
            format!("building gearboxd with `{cargo} build -p gearboxd --bin gearboxd` failed: {e}")
        })?;
        if !output.status.success() {
            return Err(format!(
                "building gearboxd with `{cargo} build -p gearboxd --bin gearboxd` failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let path = target_dir().join("debug").join("gearboxd");
        if !path.is_file() {
            return Err(format!(
                "cargo built gearboxd but {} does not exist (is CARGO_TARGET_DIR right?)",
                path.display()
            ));
        }
        Ok(path)
    });
    match result {
        Ok(path) => path.clone(),
        Err(msg) => panic!("{msg}"),
    }
}

/// `program`, run under `prefix` when there is one: the prefix's first word is
/// the command, its other words and then `program` its first arguments (for
/// `unshare …`, `nsenter …`, programs that run another).
pub fn command_under(prefix: &[String], program: impl AsRef<std::ffi::OsStr>) -> Command {
    match prefix.split_first() {
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(program);
            command
        }
        None => Command::new(program),
    }
}

// ---------------------------------------------------------------------------------------
// TestServer
// ---------------------------------------------------------------------------------------

/// One job server on a free loopback port. Killed (SIGKILL) on drop. If the test
/// panicked, the server's log is printed and its temp dir is kept.
pub struct TestServer {
    kind: ServerKind,
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl TestServer {
    /// Starts a server of `kind` with no extra flags.
    pub fn start(kind: ServerKind) -> TestServer {
        TestServer::start_with_args(kind, &[])
    }

    /// Starts a server of `kind`, appending `extra_args` (e.g. `--exceptions`) to its
    /// command line. Retries on a new port if the server exits or does not accept
    /// connections within [`STARTUP_TIMEOUT`].
    pub fn start_with_args(kind: ServerKind, extra_args: &[&str]) -> TestServer {
        TestServer::start_under(&[], kind, extra_args)
    }

    /// [`start_with_args`](Self::start_with_args), run under `prefix`: the
    /// server's command line is appended to it, e.g. a program that sets up a
    /// private mount namespace and then execs the server (so the pid stays the
    /// server's).
    pub fn start_under(prefix: &[String], kind: ServerKind, extra_args: &[&str]) -> TestServer {
        let program = match kind {
            ServerKind::Gearmand => PathBuf::from("gearmand"),
            ServerKind::Gearboxd => gearboxd_path(),
        };
        let dir = unique_temp_dir(kind.name());
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let port_s = port.to_string();
            let mut args: Vec<String> = vec!["-p".into(), port_s, "-L".into(), HOST.into()];
            match kind {
                ServerKind::Gearmand => {
                    let log = dir.join("gearmand.log");
                    let pid = dir.join("gearmand.pid");
                    args.extend([
                        "-l".into(),
                        log.to_string_lossy().into_owned(),
                        "--verbose".into(),
                        "INFO".into(),
                        "-P".into(),
                        pid.to_string_lossy().into_owned(),
                    ]);
                }
                ServerKind::Gearboxd => {
                    args.extend(["-l".into(), "stderr".into()]);
                }
            }
            args.extend(extra_args.iter().map(|s| s.to_string()));

            let stdout = fs::File::create(dir.join("server.stdout")).expect("create stdout file");
            let stderr = fs::File::create(dir.join("server.stderr")).expect("create stderr file");
            // gearboxd keeps its queue file (the default store) in the
            // current directory: the test's own.
            let mut child = match command_under(prefix, &program)
                .args(&args)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
            {
                Ok(child) => child,
                Err(e) => panic!(
                    "cannot start {} ({}): {e}; run protocol-tests/install-deps.sh",
                    kind.name(),
                    program.display()
                ),
            };
            match wait_until_accepting(&mut child, port) {
                Ok(()) => {
                    return TestServer {
                        kind,
                        port,
                        child,
                        dir,
                    }
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(format!(
                        "attempt {attempt}: {} {}: {why}\n{}",
                        program.display(),
                        args.join(" "),
                        server_logs(&dir)
                    ));
                }
            }
        }
        panic!(
            "{} did not start after {START_ATTEMPTS} attempts:\n{}",
            kind.name(),
            failures.join("\n")
        );
    }

    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port as a string, for command lines.
    pub fn port_str(&self) -> String {
        self.port.to_string()
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// PID of the server process (the child we started).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// This server's temp dir; tests may put their own files (worker output) here.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything the server logged so far (log file, stdout, stderr).
    pub fn logs(&self) -> String {
        server_logs(&self.dir)
    }

    /// Is the server process still running?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- {} on port {} (files kept in {}) ----\n{}",
                self.kind.name(),
                self.port,
                self.dir.display(),
                self.logs()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

pub(crate) fn server_logs(dir: &Path) -> String {
    let mut out = String::new();
    for name in ["gearmand.log", "server.stdout", "server.stderr"] {
        let text = read_lossy(&dir.join(name));
        if !text.is_empty() {
            // Keep failure messages readable: only the tail of long logs.
            let tail: String = if text.len() > 4000 {
                let mut start = text.len() - 4000;
                while !text.is_char_boundary(start) {
                    start += 1;
                }
                format!("[...]{}", &text[start..])
            } else {
                text
            };
            out.push_str(&format!("[{name}]\n{tail}\n"));
        }
    }
    out
}

pub(crate) fn wait_until_accepting(child: &mut Child, port: u16) -> Result<(), String> {
    let addr: SocketAddr = format!("{HOST}:{port}").parse().expect("socket addr");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Err(format!("exited during startup with {status}")),
            Ok(None) => {}
            Err(e) => return Err(format!("try_wait failed: {e}")),
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            // Make sure it was our child that accepted (not a process that grabbed the
            // port in between and made our server fail to bind).
            thread::sleep(Duration::from_millis(20));
            return match child.try_wait() {
                Ok(None) => Ok(()),
                Ok(Some(status)) => Err(format!("exited during startup with {status}")),
                Err(e) => Err(format!("try_wait failed: {e}")),
            };
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not accepting connections on port {port} after {STARTUP_TIMEOUT:?}"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Running programs
// ---------------------------------------------------------------------------------------

/// Runs `cmd args...` with `stdin` (or /dev/null), waits at most `timeout`, and returns
/// its output whatever the exit status. On timeout the child is killed and this panics
/// with the command line and everything it printed, so a hang is a readable failure.
pub fn run(cmd: &str, args: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let mut command = Command::new(cmd);
    command.args(args);
    match try_run_command(command, stdin, timeout) {
        Ok(output) => output,
        Err(msg) => panic!("{msg}"),
    }
}

/// [`run`] without panicking: `Err` describes a spawn failure or a timeout.
pub fn try_run_command(
    mut command: Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, String> {
    let describe = format!("{command:?}");
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {describe}: {e}"))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let input = input.to_vec();
        // A writer thread, so a child that does not read stdin cannot block us.
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let stdout_rx = spawn_reader(child.stdout.take().expect("stdout pipe"));
    let stderr_rx = spawn_reader(child.stderr.take().expect("stderr pipe"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("waiting for {describe} failed: {e}"));
            }
        }
    };
    // Bounded: a grandchild that keeps the pipe open must not hang us.
    let stdout = stdout_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    let stderr = stderr_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "TIMEOUT: {describe} did not finish within {timeout:?} and was killed\n\
             --- stdout ---\n{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        )),
    }
}

fn spawn_reader<R: Read + Send + 'static>(mut pipe: R) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Convenience accessors for [`Output`].
pub trait OutputExt {
    /// stdout as (lossy) UTF-8.
    fn stdout_str(&self) -> String;
    /// stderr as (lossy) UTF-8.
    fn stderr_str(&self) -> String;
    /// Exit status, stdout and stderr, for assertion messages.
    fn describe(&self) -> String;
    /// Panics (with [`OutputExt::describe`]) unless the exit status is 0.
    fn assert_success(&self, what: &str) -> &Self;
}

impl OutputExt for Output {
    fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    fn describe(&self) -> String {
        format!(
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout_str(),
            self.stderr_str()
        )
    }

    fn assert_success(&self, what: &str) -> &Self {
        assert!(self.status.success(), "{what} failed:\n{}", self.describe());
        self
    }
}

/// Polls `check` every 20 ms until it returns `Ok`, for at most `timeout`. Panics with
/// `what` and the last `Err` text on timeout.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last state:\n{last}");
                }
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Long-running processes (workers)
// ---------------------------------------------------------------------------------------

/// A long-running program (typically a worker) whose stdout/stderr go to files in a
/// directory. Killed (SIGKILL, then reaped) on drop if it is still running.
pub struct BackgroundProcess {
    label: String,
    child: Option<Child>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl BackgroundProcess {
    /// Starts `cmd args...` with stdin from /dev/null; output goes to
    /// `<dir>/<label>.stdout` and `<dir>/<label>.stderr`.
    pub fn spawn(label: &str, cmd: &str, args: &[&str], dir: &Path) -> BackgroundProcess {
        let stdout_path = dir.join(format!("{label}.stdout"));
        let stderr_path = dir.join(format!("{label}.stderr"));
        let stdout = fs::File::create(&stdout_path).expect("create stdout file");
        let stderr = fs::File::create(&stderr_path).expect("create stderr file");
        let child = Command::new(cmd)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label} ({cmd} {args:?}): {e}"));
        BackgroundProcess {
            label: label.to_owned(),
            child: Some(child),
            stdout_path,
            stderr_path,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// Label, stdout and stderr, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "[{}]\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.label,
            self.stdout(),
            self.stderr()
        )
    }

    /// Waits until the process printed a line equal to `line` on stdout.
    pub fn wait_for_line(&mut self, line: &str, timeout: Duration) {
        wait_until(
            &format!("{} to print {line:?}", self.label),
            timeout,
            || {
                if self.stdout().lines().any(|l| l == line) {
                    return Ok(());
                }
                if let Some(child) = self.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Err(format!("exited with {status}\n{}", self.describe()));
                    }
                }
                Err(self.describe())
            },
        )
    }

    /// Waits at most `timeout` for the process to exit by itself and returns its exit
    /// status. On timeout it is killed and this panics with its output.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self
            .child
            .as_mut()
            .expect("wait_exit called after the process was reaped");
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return status;
                }
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    self.child = None;
                    panic!(
                        "TIMEOUT: {} did not exit within {timeout:?} and was killed\n{}",
                        self.label,
                        self.describe()
                    );
                }
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("waiting for {} failed: {e}", self.label),
            }
        }
    }

    /// Kills the process now (if still running) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for BackgroundProcess {
    fn drop(&mut self) {
        let running = self
            .child
            .as_mut()
            .map(|c| matches!(c.try_wait(), Ok(None)))
            .unwrap_or(false);
        self.kill();
        if thread::panicking() && running {
            eprintln!(
                "---- {} (killed at end of test) ----\n{}",
                self.label,
                self.describe()
            );
        }
    }
}

/// Reads a file that may not exist yet; missing means empty.
pub fn read_file(path: &Path) -> String {
    read_lossy(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_captures_output_and_status() {
        let out = run(
            "sh",
            &["-c", "echo out; echo err >&2; exit 3"],
            None,
            Duration::from_secs(10),
        );
        assert_eq!(out.stdout_str(), "out\n");
        assert_eq!(out.stderr_str(), "err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn run_feeds_stdin() {
        let out = run("cat", &[], Some(b"payload"), Duration::from_secs(10));
        assert_eq!(out.stdout, b"payload");
    }

    #[test]
    fn run_kills_on_timeout_and_reports_output() {
        let started = Instant::now();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo partial; echo oops >&2; exec sleep 30"]);
        let err = try_run_command(cmd, None, Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "{err}");
        assert!(err.starts_with("TIMEOUT"), "{err}");
        assert!(err.contains("partial") && err.contains("oops"), "{err}");
    }

    #[test]
    fn background_process_is_killed_on_drop() {
        let dir = unique_temp_dir("selftest");
        let pid = {
            let mut p = BackgroundProcess::spawn(
                "sleeper",
                "sh",
                &["-c", "echo ready; exec sleep 30"],
                &dir,
            );
            p.wait_for_line("ready", Duration::from_secs(10));
            p.pid().unwrap()
        };
        // Reaped, so /proc/<pid> is gone (or belongs to an unrelated new process,
        // which is not "sleep 30" from our dir).
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains("sleep"),
            "process {pid} still alive"
        );
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        TcpListener::bind((HOST, port)).expect("port from free_port() is free");
    }
}
