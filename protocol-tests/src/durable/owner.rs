//! Servers that may refuse to start: a gearboxd on a store that another
//! server owns exits at start, so it is started here without
//! [`TestServer`]'s retries, and watched until it either accepts connections
//! or exits.

use super::*;
use std::process::{Child, ExitStatus, Stdio};

/// A gearboxd on a store, started by [`launch`]. Killed (SIGKILL) on drop if
/// it still runs; its stderr is printed if the test failed.
pub struct Launched {
    child: Child,
    dir: PathBuf,
    port: u16,
    status: Option<ExitStatus>,
}

/// Starts gearboxd on `store` (its flags, `--verbose INFO`, logging to
/// stderr) on a free port, without waiting for it.
pub fn launch(store: &dyn QueueStore) -> Launched {
    let dir = unique_temp_dir("gearboxd-owner");
    let port = free_port();
    let mut args = vec![
        "-p".to_owned(),
        port.to_string(),
        "-L".into(),
        HOST.into(),
        "-l".into(),
        "stderr".into(),
        "--verbose".into(),
        "INFO".into(),
    ];
    args.extend(store.server_args());
    let stderr = fs::File::create(dir.join("server.stderr")).expect("create stderr file");
    let child = crate::command_under(&store.command_prefix(), crate::gearboxd_path())
        .args(&args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start gearboxd: {e}"));
    Launched {
        child,
        dir,
        port,
        status: None,
    }
}

impl Launched {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// Everything it wrote to stderr (its log) so far.
    pub fn stderr(&self) -> String {
        crate::read_file(&self.dir.join("server.stderr"))
    }

    /// Its exit status, once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Whether it runs and accepts connections now.
    pub fn accepting(&mut self) -> bool {
        let addr = self.addr().parse().expect("socket address");
        self.exited().is_none()
            && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            && self.exited().is_none()
    }

    /// Waits at most `timeout` for it to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.exited()
    }

    /// SIGTERM (a clean stop), then waits at most 30 s for it to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        if self.exited().is_none() {
            signal_pid(self.pid(), "TERM");
        }
        self.wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("gearboxd did not exit after SIGTERM:\n{}", self.stderr()))
    }

    /// Waits (at most `timeout`) until it accepts connections; panics with
    /// its log if it exits first.
    pub fn wait_accepting(&mut self, timeout: Duration) {
        wait_until("gearboxd to accept connections", timeout, || {
            match (self.accepting(), self.exited()) {
                (true, _) => Ok(()),
                (false, Some(status)) => {
                    panic!("gearboxd exited with {status}:\n{}", self.stderr())
                }
                (false, None) => Err(self.stderr()),
            }
        })
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "---- gearboxd pid {} on port {} ----\n{}",
                self.pid(),
                self.port,
                self.stderr()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A process of ours (a server, or a database backend forked by a database
/// we started) stopped with SIGSTOP: it holds its connections but does
/// nothing, as a paused VM would. SIGCONT on drop, also when a test fails.
pub struct Stopped(u32);

impl Stopped {
    pub fn new(pid: u32) -> Stopped {
        signal_pid(pid, "STOP");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal_pid(self.0, "CONT");
    }
}

fn signal_pid(pid: u32, sig: &str) {
    let mut cmd = Command::new("kill");
    cmd.args(["-s", sig, &pid.to_string()]);
    let out = try_run_command(cmd, None, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "kill -s {sig} {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
