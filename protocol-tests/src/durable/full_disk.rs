//! An SQLite store whose disk fills up. The queue file lives on a small tmpfs
//! mounted in a private mount namespace of the server (`unshare -m`), so the
//! mount is the server's alone, no other process sees it, and it goes away
//! with the server. [`Outage`] fills that tmpfs with a ballast file, reached
//! through `/proc/PID/root`, and deletes the ballast to bring the store back.
//! The rows are read by a program run in the server's mount namespace
//! (`nsenter --mount`): SQLite resolves symbolic links in a database path, and
//! `/proc/PID/root` would lead it back to this namespace's empty directory.

use super::*;

/// Size of the server's tmpfs: room for the queue file and its WAL at the
/// test's small load, and quick to fill.
const TMPFS_SIZE: &str = "64m";

/// Mounts a tmpfs on `$1`, writes the shell's pid (the server's, after `exec`)
/// to `$2`, then execs the rest of the command line.
const MOUNT_THEN_EXEC: &str =
    "mount -t tmpfs -o size=\"$3\" gearbox-test \"$1\" && echo $$ > \"$2\" && shift 3 && exec \"$@\"";

pub struct FullDisk {
    /// The test's temp dir: `mnt` (the mount point) and `pid` are in it.
    dir: PathBuf,
    table: String,
}

impl Default for FullDisk {
    fn default() -> Self {
        Self::new()
    }
}

impl FullDisk {
    pub fn new() -> FullDisk {
        let dir = unique_temp_dir("full-disk");
        fs::create_dir_all(dir.join("mnt")).expect("create the mount point");
        FullDisk {
            dir,
            table: "gearman_queue".to_owned(),
        }
    }

    fn server_pid(&self) -> Result<u32, String> {
        let pid = fs::read_to_string(self.dir.join("pid")).map_err(|e| format!("pid file: {e}"))?;
        pid.trim().parse().map_err(|e| format!("pid {pid:?}: {e}"))
    }

    /// `path` inside the mount as this process reaches it: through the
    /// server's root, which sees the server's mounts.
    fn in_mount(&self, name: &str) -> Result<PathBuf, String> {
        let mnt = self.dir.join("mnt").join(name);
        let relative = mnt.strip_prefix("/").map_err(|e| e.to_string())?;
        Ok(Path::new(&format!("/proc/{}/root", self.server_pid()?)).join(relative))
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl QueueStore for FullDisk {
    fn name(&self) -> &'static str {
        "sqlite on a full disk"
    }
    fn server_args(&self) -> Vec<String> {
        let db = self.dir.join("mnt").join("q.db");
        vec![
            "-q".into(),
            "libsqlite3".into(),
            "--libsqlite3-db".into(),
            db.to_string_lossy().into_owned(),
            "--libsqlite3-table".into(),
            self.table.clone(),
        ]
    }
    fn rows(&self) -> Result<u64, String> {
        let nsenter = ["nsenter", "--mount", "--target"].map(String::from);
        let prefix: Vec<String> = nsenter
            .into_iter()
            .chain([self.server_pid()?.to_string()])
            .collect();
        let db = self.dir.join("mnt").join("q.db");
        read_table_rows(&prefix, &db, &self.table).map(|rows| rows.len() as u64)
    }
    fn command_prefix(&self) -> Vec<String> {
        let path = |name: &str| self.dir.join(name).to_string_lossy().into_owned();
        in_private_mounts(
            MOUNT_THEN_EXEC,
            &[path("mnt"), path("pid"), TMPFS_SIZE.to_owned()],
        )
    }
}

/// A command prefix that runs `script` (`sh -c`, with `args` as `$1`…) in a
/// mount namespace of its own, where the script sets up mounts and then
/// execs the command appended after the prefix (so its pid stays the
/// server's).
pub fn in_private_mounts(script: &str, args: &[String]) -> Vec<String> {
    [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ]
    .into_iter()
    .map(String::from)
    .chain(args.iter().cloned())
    .collect()
}

impl Outage for FullDisk {
    /// Writes a ballast file until the tmpfs has no space left.
    fn go_down(&mut self) {
        let path = self.in_mount("ballast").expect("the server's mount");
        let mut ballast = fs::File::create(&path).expect("create the ballast file");
        let chunk = vec![0u8; 1 << 20];
        // Bounded: the tmpfs holds 64 MiB.
        for _ in 0..1024 {
            match ballast.write_all(&chunk) {
                Ok(()) => continue,
                Err(e) if e.kind() == io::ErrorKind::StorageFull => return,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        panic!("the tmpfs did not fill up");
    }

    fn come_back(&mut self) {
        let path = self.in_mount("ballast").expect("the server's mount");
        fs::remove_file(path).expect("remove the ballast file");
    }
}
