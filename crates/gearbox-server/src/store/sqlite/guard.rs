//! One server per queue file, and a queue file that stays where it was.
//!
//! SQLite trusts its file: two servers on one file both acknowledge submits
//! and then replay (and run) each other's rows, and a server whose file was
//! deleted or replaced goes on committing into an inode that no longer has a
//! name, so every job it acknowledges is gone at the next start. So the store
//! holds an exclusive `flock` on the file for its lifetime (SQLite's own
//! locks are `fcntl` locks, which `flock` does not touch on Linux), and
//! checks, before commits and while idle, that the path still names that
//! file and that it can still be written. A failed check is an outage like a
//! failed write: new background submits are refused until a writable file is
//! back at the path.

use super::super::StoreError;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a busy store checks its path; an idle one checks at every
/// upkeep (about once a second). The check is two system calls.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The locked queue file.
pub struct FileGuard {
    path: PathBuf,
    /// Holds the lock; closing it releases the lock.
    _lock: File,
    /// (device, inode) of the locked file.
    identity: (u64, u64),
    /// When a check last passed; `None` after a failed one, so that every
    /// commit checks until one passes (otherwise the commit that follows a
    /// reconnect's failed check skipped it and went, through the old
    /// connection, into a file that had lost its name).
    checked: Option<Instant>,
}

/// Why the path no longer serves.
pub enum Fault {
    /// Nothing at the path (the file or its directory was deleted).
    Gone(String),
    /// Another file is at the path now.
    Replaced(String),
    /// The file is there but cannot be written.
    Unwritable(String),
}

impl Fault {
    pub fn into_error(self) -> StoreError {
        match self {
            Fault::Gone(why) | Fault::Replaced(why) | Fault::Unwritable(why) => StoreError(why),
        }
    }
}

impl FileGuard {
    /// Opens (creating) the file at `path` and locks it, or says which
    /// process holds it. Fails too if the file or its directory cannot be
    /// written: SQLite would open such a file read-only without a word, and
    /// the server would replay its jobs and then refuse every submit.
    pub fn acquire(path: &Path) -> Result<FileGuard, StoreError> {
        let shown = path.display();
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        writable(dir).map_err(|e| {
            StoreError(format!(
                "the directory of the queue file {shown} cannot be written ({e}); \
                 SQLite needs to create {shown}-wal and {shown}-shm there"
            ))
        })?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| {
                StoreError(format!(
                    "cannot open the queue file {shown} for writing: {e}"
                ))
            })?;
        let meta = file
            .metadata()
            .map_err(|e| StoreError(format!("cannot stat the queue file {shown}: {e}")))?;
        let identity = (meta.dev(), meta.ino());
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let owner = match flock_owner(identity) {
                Some(pid) => format!("process {pid}{}", command_of(pid)),
                None => "another process".into(),
            };
            return Err(StoreError(format!(
                "the queue file {shown} is in use by {owner}: one server per queue file. \
                 Stop that server, or give this one a --libsqlite3-db of its own"
            )));
        }
        if let Some(pid) = gearmand_using(identity) {
            return Err(StoreError(format!(
                "the queue file {shown} is open in gearmand (process {pid}): \
                 gearmand and gearboxd must not share a queue file. Stop gearmand first"
            )));
        }
        Ok(FileGuard {
            path: path.to_path_buf(),
            _lock: file,
            identity,
            checked: Some(Instant::now()),
        })
    }

    pub fn identity(&self) -> (u64, u64) {
        self.identity
    }

    /// Whether the path still names the locked file, and it can be written.
    pub fn check(&mut self) -> Result<(), Fault> {
        let result = self.check_now();
        self.checked = result.is_ok().then(Instant::now);
        result
    }

    fn check_now(&self) -> Result<(), Fault> {
        let shown = self.path.display();
        let meta = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) => {
                return Err(Fault::Gone(format!(
                    "the queue file {shown} is gone ({e}), or its directory is: new jobs are \
                     refused, accepted ones are kept in memory and written again once a \
                     writable file can be made at that path (restore the directory)"
                )))
            }
        };
        if (meta.dev(), meta.ino()) != self.identity {
            return Err(Fault::Replaced(format!(
                "the queue file {shown} was replaced by another file: new jobs are refused \
                 until the store has moved to the new file and written every accepted job \
                 into it again"
            )));
        }
        writable(&self.path).map_err(|e| {
            Fault::Unwritable(format!(
                "the queue file {shown} cannot be written ({e}): new jobs are refused, \
                 accepted ones are kept in memory until it is writable again"
            ))
        })
    }

    /// [`check`](Self::check), at most every [`CHECK_EVERY`] while checks pass.
    pub fn check_due(&mut self) -> Result<(), Fault> {
        if self.checked.is_some_and(|at| at.elapsed() < CHECK_EVERY) {
            return Ok(());
        }
        self.check()
    }
}

/// `access(W_OK)`: false for a read-only mount or an immutable file, even for
/// root, and for a file whose mode denies this user.
fn writable(path: &Path) -> std::io::Result<()> {
    let mut c_path = path.as_os_str().as_bytes().to_vec();
    c_path.push(0);
    // SAFETY: a NUL-terminated path that outlives the call.
    match unsafe { libc::access(c_path.as_ptr().cast(), libc::W_OK) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// The process holding a `flock` on the file, from `/proc/locks`, whose
/// lines read `1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF`.
fn flock_owner((dev, ino): (u64, u64)) -> Option<u32> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let wanted = format!(
        "{:02x}:{:02x}:{ino}",
        libc::major(dev as libc::dev_t),
        libc::minor(dev as libc::dev_t)
    );
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = fields.iter().position(|f| *f == "FLOCK")?;
        let (pid, file) = (fields.get(at + 3)?, fields.get(at + 4)?);
        (*file == wanted).then(|| pid.parse().ok()).flatten()
    })
}

/// ` (gearboxd)`, from `/proc/PID/comm`, or nothing.
fn command_of(pid: u32) -> String {
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => format!(" ({})", comm.trim()),
        Err(_) => String::new(),
    }
}

/// A gearmand process with the file open. gearmand takes no lock of its own,
/// so its open descriptors are the only trace of it.
fn gearmand_using(identity: (u64, u64)) -> Option<u32> {
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me || command_of(pid) != " (gearmand)" {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(meta) = std::fs::metadata(fd.path()) {
                if (meta.dev(), meta.ino()) == identity {
                    return Some(pid);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_file_fails_and_names_this_process() {
        let dir = std::env::temp_dir().join(format!("gearbox-guard-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("q.sqlite3");
        let mut first = FileGuard::acquire(&path).unwrap();
        let second = FileGuard::acquire(&path)
            .err()
            .expect("second lock refused");
        let me = std::process::id();
        assert!(second.0.contains(&format!("process {me}")), "{}", second.0);
        assert!(first.check().is_ok());
        // Replaced: another file at the path.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(first.check(), Err(Fault::Gone(_))));
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(first.check(), Err(Fault::Replaced(_))));
        // A failed check does not excuse the next commit from checking.
        assert!(matches!(first.check_due(), Err(Fault::Replaced(_))));
        drop(first);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
