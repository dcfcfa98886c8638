//! Disk space goes back after a backlog drains.

use super::*;

const COMPACT_FN: &str = "durable_compact";
const COMPACT_JOBS: usize = 2_000;

/// A drained backlog gives its disk space back. 2,000 jobs of 20 KiB grow the
/// queue file past 30 MB; SQLite alone would keep that size for good (pages of
/// deleted rows go to its free list). Once workers have run the jobs and the
/// server is idle, the file is back under 1 MB.
#[test]
fn a_drained_backlog_gives_its_disk_space_back() {
    let store = SqliteFile::new("compact");
    let server = start(ServerKind::Gearboxd, &store);
    let addr = server.addr();
    let mut conn = Conn::connect(&addr).expect("connect");
    let data = vec![b'x'; 20_000];
    for i in 0..COMPACT_JOBS {
        let unique = format!("compact-{i}");
        submit_bg(
            &mut conn,
            Prio::Normal,
            COMPACT_FN,
            unique.as_bytes(),
            &data,
        )
        .expect("acknowledged");
    }
    let size = || fs::metadata(&store.path).map_or(0, |m| m.len());
    wait_until("the queue file to grow past 30 MB", REPLAY, || {
        match size() {
            n if n > 30_000_000 => Ok(()),
            n => Err(format!("{n} bytes")),
        }
    });

    let workers = Workers::start(&addr, &[COMPACT_FN], 2, REPLAY);
    wait_until("the jobs to run", REPLAY, || match workers.ran().len() {
        n if n >= COMPACT_JOBS => Ok(()),
        n => Err(format!("{n} ran")),
    });
    wait_until("the queue file to shrink under 1 MB", REPLAY, || {
        match (size(), store.rows()) {
            (n, Ok(0)) if n < 1_000_000 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(workers.finish().len(), COMPACT_JOBS, "each job ran once");
}
