//! Process set-up that must happen before the runtime starts: detaching,
//! the open-file limit and the pid file.

use std::io;
use std::path::{Path, PathBuf};

/// Forks into the background, as gearmand's `-d` does. The parent exits; the
/// child starts a new session and points stdio at /dev/null. Must be called
/// before any thread exists.
pub fn detach() -> io::Result<()> {
    // SAFETY: called from main before the tokio runtime or any other thread
    // is started, so fork duplicates a single-threaded process.
    match unsafe { libc::fork() } {
        -1 => return Err(io::Error::last_os_error()),
        0 => {}
        _ => std::process::exit(0),
    }
    // SAFETY: plain syscalls on the child's own session and descriptors.
    unsafe {
        if libc::setsid() == -1 {
            return Err(io::Error::last_os_error());
        }
        let devnull = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if devnull >= 0 {
            for fd in 0..3 {
                libc::dup2(devnull, fd);
            }
            if devnull > 2 {
                libc::close(devnull);
            }
        }
    }
    std::env::set_current_dir("/")
}

/// Raises the open-file limit to `wanted`, or to the hard limit when `None`.
pub fn raise_fd_limit(wanted: Option<u64>) -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        let target = wanted.unwrap_or(limit.rlim_max);
        limit.rlim_cur = target;
        if target > limit.rlim_max {
            limit.rlim_max = target;
        }
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// The pid file, removed again when dropped.
pub struct PidFile(PathBuf);

impl PidFile {
    pub fn create(path: &Path) -> io::Result<PidFile> {
        std::fs::write(path, format!("{}\n", std::process::id()))?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
