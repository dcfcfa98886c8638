//! A store that hangs instead of going away: its processes get SIGSTOP, so
//! connections stay open and nothing is refused, the database just stops
//! answering (a paused VM, a stuck disk). Only the client's own bounds notice.

use super::*;

/// The processes that serve a store: all of them ours (started by the test,
/// or forked by what it started).
pub trait Processes {
    fn pids(&self) -> Vec<u32>;
}

impl Processes for PostgresInstance {
    /// The postmaster and its children (the backend serving each connection).
    fn pids(&self) -> Vec<u32> {
        let Some(postmaster) = self.pid() else {
            return Vec::new();
        };
        let mut pids = vec![postmaster];
        pids.extend(children_of(postmaster));
        pids
    }
}

impl Processes for RedisInstance {
    fn pids(&self) -> Vec<u32> {
        self.pid().into_iter().collect()
    }
}

/// Pids whose parent is `parent`, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `pid (comm) state ppid ...`; comm may hold spaces, so split after it.
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

fn send_signal(pids: &[u32], sig: &str) -> Result<(), String> {
    if pids.is_empty() {
        return Err(format!("no processes to send SIG{sig} to"));
    }
    let mut cmd = Command::new("kill");
    cmd.args(["-s", sig]).args(pids.iter().map(u32::to_string));
    let out = crate::try_run_command(cmd, None, Duration::from_secs(10))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "kill -s {sig} {pids:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// `store`, whose [`Outage`] is a hang: SIGSTOP to every process serving it,
/// then SIGCONT to the same ones.
pub struct Paused<S: QueueStore + Processes> {
    pub store: S,
    stopped: Vec<u32>,
}

impl<S: QueueStore + Processes> Paused<S> {
    pub fn new(store: S) -> Paused<S> {
        Paused {
            store,
            stopped: Vec::new(),
        }
    }
}

impl<S: QueueStore + Processes> QueueStore for Paused<S> {
    fn name(&self) -> &'static str {
        self.store.name()
    }
    fn server_args(&self) -> Vec<String> {
        self.store.server_args()
    }
    fn rows(&self) -> Result<u64, String> {
        self.store.rows()
    }
}

impl<S: QueueStore + Processes> Outage for Paused<S> {
    fn go_down(&mut self) {
        self.stopped = self.store.pids();
        send_signal(&self.stopped, "STOP").unwrap_or_else(|e| panic!("{e}"));
    }
    fn come_back(&mut self) {
        send_signal(&std::mem::take(&mut self.stopped), "CONT").unwrap_or_else(|e| panic!("{e}"));
    }
}

impl<S: QueueStore + Processes> Drop for Paused<S> {
    /// A stopped server could not be stopped for good by the store's own drop.
    fn drop(&mut self) {
        if !self.stopped.is_empty() {
            let _ = send_signal(&self.stopped, "CONT");
        }
    }
}
