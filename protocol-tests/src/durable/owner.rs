//! Servers that may refuse to start: a gearboxd on a store that another
//! server owns exits at start, so it is started here without
//! [`TestServer`]'s retries, and watched until it either accepts connections
//! or exits.

use super::*;

/// Starts gearboxd on `store` (its flags, `--verbose INFO`, logging to
/// stderr) on a free port, without waiting for it.
pub fn launch(store: &dyn QueueStore) -> Spawned {
    Spawned::start(&store.command_prefix(), &store.server_args())
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
