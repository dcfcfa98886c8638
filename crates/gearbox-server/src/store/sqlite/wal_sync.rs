//! Syncs SQLite's WAL file from outside SQLite (see the parent module: the
//! connection commits with `synchronous=NORMAL`, which writes the WAL but does
//! not sync it).
//!
//! In WAL mode a transaction is durable once its frames, commit frame
//! included, are on stable storage; the database file itself is only written
//! by checkpoints, which sync it (and the WAL before it) themselves even in
//! NORMAL mode. So an `fdatasync` of the WAL, started after a commit returned,
//! makes that commit as durable as FULL would have. The file is opened once
//! and reopened when SQLite replaces it (a reconnect deletes and recreates
//! it); when it does not exist, everything was checkpointed into the database
//! file and synced there.

use super::super::backend::Syncer;
use super::super::StoreError;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub fn syncer(database: &Path) -> Syncer {
    let mut wal = WalFile {
        path: PathBuf::from(format!("{}-wal", database.display())),
        open: None,
    };
    Box::new(move || {
        wal.sync()
            .map_err(|e| StoreError(format!("sqlite: sync {}: {e}", wal.path.display())))
    })
}

struct WalFile {
    path: PathBuf,
    /// The open file and its (device, inode), to notice a new file.
    open: Option<(File, (u64, u64))>,
}

impl WalFile {
    fn sync(&mut self) -> io::Result<()> {
        let meta = match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.open = None;
                return Ok(());
            }
            other => other?,
        };
        let id = (meta.dev(), meta.ino());
        if self.open.as_ref().map(|(_, open_id)| *open_id) != Some(id) {
            let file = File::open(&self.path)?;
            // A new file's directory entry must be durable too, or a power
            // cut could lose the whole WAL.
            let dir = match self.path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            File::open(dir)?.sync_all()?;
            self.open = Some((file, id));
        }
        match &self.open {
            Some((file, _)) => file.sync_data(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_the_wal_and_follows_it_when_sqlite_replaces_it() {
        let dir = std::env::temp_dir().join(format!("gearbox-wal-sync-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("q.sqlite3");
        let mut wal = WalFile {
            path: dir.join("q.sqlite3-wal"),
            open: None,
        };
        let inode = |wal: &WalFile| wal.open.as_ref().map(|(_, (_, inode))| *inode);
        // No WAL yet: nothing to sync.
        wal.sync().unwrap();
        assert_eq!(inode(&wal), None);
        let open = || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t (x)")
                .unwrap();
            conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
            conn
        };
        let conn = open();
        wal.sync().unwrap();
        assert_eq!(
            inode(&wal),
            Some(std::fs::metadata(&wal.path).unwrap().ino())
        );
        // Closing the last connection checkpoints and deletes the WAL.
        drop(conn);
        assert!(!wal.path.exists());
        wal.sync().unwrap();
        assert_eq!(inode(&wal), None);
        // The next connection makes a new file, which must be the one synced.
        let _conn = open();
        wal.sync().unwrap();
        assert_eq!(
            inode(&wal),
            Some(std::fs::metadata(&wal.path).unwrap().ino())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
