//! The sync thread: makes written batches durable while the writer goes on
//! with the next one, for backends whose `write` does not sync by itself
//! (see [`Backend::syncer`]).
//!
//! With SQLite, a commit in `synchronous=FULL` writes its WAL frames and then
//! waits for an fsync, and nothing else can be written meanwhile: a batch's
//! rows are built and written, then the disk is waited for, then the next
//! batch starts. Committing with `synchronous=NORMAL` and syncing the WAL file
//! here gives the same guarantee (a JOB_CREATED leaves only once the commit
//! holding its row is on stable storage) but lets the writing of batch N+1
//! overlap the sync of batch N. Each sync covers everything written before it
//! started, so under load one sync serves several batches.
//!
//! [`Backend::syncer`]: super::backend::Backend::syncer

use super::backend::Syncer;
use super::durable::Commits;
use super::stall::{CallWatch, Caller};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

#[derive(Default)]
struct Progress {
    /// Number of the last write the backend has returned from.
    written: u64,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    progress: Mutex<Progress>,
    wake: Condvar,
}

pub struct SyncThread {
    shared: Arc<Shared>,
    handle: JoinHandle<()>,
}

impl SyncThread {
    /// Syncs are made under `watch` (see `stall`), so that a disk that hangs
    /// is reported.
    pub fn start(
        syncer: Syncer,
        commits: Arc<Commits>,
        describe: String,
        watch: Arc<CallWatch>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let handle = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("gearbox-sync".into())
                .spawn(move || sync_loop(&shared, syncer, &commits, &describe, &watch))?
        };
        Ok(SyncThread { shared, handle })
    }

    /// Every write numbered up to `number` has been written; sync it.
    pub fn written(&self, number: u64) {
        self.shared.lock().written = number;
        self.shared.wake.notify_one();
    }

    /// Syncs what is written and stops.
    pub fn finish(self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        let _ = self.handle.join();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn sync_loop(
    shared: &Shared,
    mut syncer: Syncer,
    commits: &Commits,
    describe: &str,
    watch: &CallWatch,
) {
    let mut synced = 0;
    loop {
        let (target, stop) = {
            let mut progress = shared.lock();
            while progress.written == synced && !progress.stop {
                progress = shared
                    .wake
                    .wait(progress)
                    .unwrap_or_else(|p| p.into_inner());
            }
            (progress.written, progress.stop)
        };
        if target > synced {
            if let Err(e) = watch.call(Caller::Sync, &mut syncer) {
                // After a failed fsync the kernel may have dropped the dirty
                // pages and report the next fsync as a success, so retrying
                // proves nothing (PostgreSQL's "fsyncgate"). The jobs of the
                // unsynced batches were never acknowledged; restarting and
                // replaying what is really on disk is the only safe course.
                tracing::error!(store = describe, error = %e,
                    "syncing the queue store failed; aborting so that no job is acknowledged that may not be on disk");
                std::process::abort();
            }
            synced = target;
            commits.committed.store(target, Ordering::SeqCst);
            commits.notify.notify_one();
        } else if stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn wait_for(commits: &Commits, number: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while commits.committed.load(Ordering::SeqCst) < number {
            assert!(Instant::now() < deadline, "never committed {number}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_write_counts_as_committed_only_once_a_sync_after_it_returns() {
        let (release, released) = mpsc::channel::<()>();
        let (entered, syncs) = mpsc::channel::<()>();
        let syncer: Syncer = Box::new(move || {
            entered.send(()).unwrap();
            released.recv().unwrap();
            Ok(())
        });
        let commits = Arc::new(Commits::default());
        let watch = Arc::new(CallWatch::default());
        let thread = SyncThread::start(syncer, commits.clone(), "test".into(), watch).unwrap();

        thread.written(3);
        syncs.recv().unwrap();
        // Written while the first sync runs: not covered by it.
        thread.written(5);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(commits.committed.load(Ordering::SeqCst), 0);
        release.send(()).unwrap();
        wait_for(&commits, 3);
        syncs.recv().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(commits.committed.load(Ordering::SeqCst), 3);
        release.send(()).unwrap();
        wait_for(&commits, 5);
        thread.finish();
    }

    /// A disk that hangs in `fdatasync` is reported while the sync runs, and
    /// no longer once it returns.
    #[test]
    fn a_sync_that_hangs_is_reported_as_a_stall() {
        let (release, released) = mpsc::channel::<()>();
        let syncer: Syncer = Box::new(move || {
            released.recv().unwrap();
            Ok(())
        });
        let commits = Arc::new(Commits::default());
        let watch = Arc::new(CallWatch::default());
        let (report, reports) = mpsc::channel();
        let watcher = {
            let watch = watch.clone();
            std::thread::spawn(move || {
                watch.run(Duration::from_millis(200), |caller, _| {
                    report.send(caller).unwrap();
                })
            })
        };
        let thread =
            SyncThread::start(syncer, commits.clone(), "test".into(), watch.clone()).unwrap();
        thread.written(1);
        let reported = reports.recv_timeout(Duration::from_secs(10));
        assert_eq!(reported, Ok(Caller::Sync));
        let stalled = |watch: &CallWatch| watch.with_stall(|s| s.map(|(caller, _)| caller));
        assert_eq!(stalled(&watch), Some(Caller::Sync));
        assert_eq!(commits.committed.load(Ordering::SeqCst), 0);
        release.send(()).unwrap();
        wait_for(&commits, 1);
        assert_eq!(stalled(&watch), None);
        thread.finish();
        watch.stop();
        watcher.join().unwrap();
    }
}
