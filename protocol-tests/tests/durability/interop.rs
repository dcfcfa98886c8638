//! gearmand <-> gearboxd through one SQLite file, in both directions.

use super::*;

const INTEROP_FN: &str = "durable_interop";
const INTEROP_EPOCH_FN: &str = "durable_interop_epoch";

/// Submitted in this order (priorities interleaved), one with binary data.
fn interop_jobs(anonymous: &[u8]) -> Vec<(Prio, Vec<u8>, Vec<u8>)> {
    vec![
        (Prio::Low, b"u-L1".to_vec(), b"L1".to_vec()),
        (Prio::Normal, b"u-N1".to_vec(), b"N1".to_vec()),
        (Prio::High, b"u-H1".to_vec(), b"H1".to_vec()),
        (Prio::Low, anonymous.to_vec(), b"L2".to_vec()),
        (Prio::Normal, b"u-N2".to_vec(), b"N2\0bin\xff\x01".to_vec()),
        (Prio::High, b"u-H2".to_vec(), b"H2".to_vec()),
    ]
}

/// The interop jobs in the order a worker must get them: HIGH, NORMAL, LOW,
/// first-in first-out within a priority.
fn interop_expected(anonymous: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut jobs = interop_jobs(anonymous);
    jobs.sort_by_key(|j| j.0); // stable: keeps submit order within a priority
    jobs.into_iter().map(|(_, u, d)| (u, d)).collect()
}

/// Submits the interop jobs and one epoch job due `delay` seconds from now (in
/// `epoch_fn`); returns the epoch.
fn submit_interop(addr: &str, anonymous: &[u8], epoch_fn: &str, delay: u64) -> u64 {
    let mut conn = Conn::connect(addr).expect("connect");
    for (prio, unique, data) in interop_jobs(anonymous) {
        submit_bg(&mut conn, prio, INTEROP_FN, &unique, &data).expect("submit accepted");
    }
    let when = now_epoch() + delay;
    let when_s = when.to_string();
    conn.send(
        SUBMIT_JOB_EPOCH,
        &[epoch_fn.as_bytes(), b"u-E", when_s.as_bytes(), b"E"],
    )
    .expect("send epoch");
    created(&mut conn).expect("epoch job accepted");
    when
}

fn assert_drained_in_order(ran: &[Ran], expected: &[(Vec<u8>, Vec<u8>)], who: &str) {
    let got: Vec<(String, String)> = ran
        .iter()
        .map(|r| (text(&r.unique), text(&r.data)))
        .collect();
    let want: Vec<(String, String)> = expected.iter().map(|(u, d)| (text(u), text(d))).collect();
    assert_eq!(
        got, want,
        "{who}: (unique, data) in the order the worker got them"
    );
    for (r, (_, data)) in ran.iter().zip(expected) {
        assert_eq!(&r.data, data, "{who}: data bytes");
    }
}

#[test]
fn gearmand_queue_replayed_by_gearboxd() {
    let file = SqliteFile::new("gearmand-to-gearboxd");
    let mut gearmand = start(ServerKind::Gearmand, &file);
    // Same function for the epoch job: gearboxd must skip it while it is not due.
    let when = submit_interop(&gearmand.addr(), b"", INTEROP_FN, 6);
    kill_server(&mut gearmand);
    let rows = file.table_rows().expect("read gearmand's table");
    assert_eq!(rows.len(), 7, "gearmand wrote one row per job: {rows:?}");

    let gearboxd = start(ServerKind::Gearboxd, &file);
    let addr = gearboxd.addr();
    wait_status_total(&addr, INTEROP_FN, 7);
    let ran = drain_in_order(&addr, &[INTEROP_FN], 7, Duration::from_secs(60));
    assert_eq!(ran.len(), 7, "all of gearmand's jobs ran: {ran:?}");
    // The epoch job is not due before the others ran (unless this machine is very
    // slow), so it is taken out before checking the order of the rest.
    let (epoch, rest): (Vec<Ran>, Vec<Ran>) = ran.into_iter().partition(|r| r.data == b"E");
    assert_drained_in_order(&rest, &interop_expected(b""), "gearboxd after gearmand");
    let epoch = &epoch[0];
    assert_eq!(epoch.unique, b"u-E");
    assert!(
        epoch.at >= when,
        "epoch job ran at {} before its time {when}",
        epoch.at
    );
    // gearboxd deletes gearmand's rows once their jobs are done.
    wait_rows(&file, 0, Duration::from_secs(20));
}

#[test]
fn gearboxd_queue_replayed_by_gearmand() {
    let file = SqliteFile::new("gearboxd-to-gearmand");
    let mut gearboxd = start(ServerKind::Gearboxd, &file);
    // A separate function for the epoch job: gearmand starves lower priorities
    // behind a future epoch job (gearmand-behaviour.md §3.3.5).
    let when = submit_interop(&gearboxd.addr(), b"", INTEROP_EPOCH_FN, 3);
    terminate_server(&mut gearboxd);
    let rows = file.table_rows().expect("read gearboxd's table");
    assert_eq!(rows.len(), 7, "gearboxd wrote one row per job: {rows:?}");
    // The job with an empty unique has a key of its own (a documented difference).
    let anon = rows
        .iter()
        .find(|r| r.data == b"L2")
        .expect("row of the empty-unique job");
    assert!(
        text(&anon.unique_key).starts_with("~gearbox-anon~"),
        "{:?}",
        text(&anon.unique_key)
    );
    assert!(rows
        .iter()
        .all(|r| r.when_to_run == 0 || r.when_to_run as u64 == when));

    let gearmand = start(ServerKind::Gearmand, &file);
    let addr = gearmand.addr();
    wait_status_total(&addr, INTEROP_FN, 6);
    let ran = drain_in_order(&addr, &[INTEROP_FN], 6, Duration::from_secs(30));
    // gearmand sees the synthetic key as the job's unique.
    assert_drained_in_order(
        &ran,
        &interop_expected(&anon.unique_key),
        "gearmand after gearboxd",
    );
    let epoch = drain_in_order(&addr, &[INTEROP_EPOCH_FN], 1, Duration::from_secs(30));
    assert_eq!(epoch.len(), 1, "gearmand ran gearboxd's epoch job");
    assert_eq!(
        (epoch[0].unique.as_slice(), epoch[0].data.as_slice()),
        (&b"u-E"[..], &b"E"[..])
    );
    assert!(
        epoch[0].at >= when,
        "epoch job ran at {} before its time {when}",
        epoch[0].at
    );
}
