//! A queue file that cannot serve stops the start.

use super::*;
use protocol_tests::durable::in_private_mounts;

/// A queue file that cannot be written at start (immutable; in an immutable
/// directory; on a read-only mount) stops the start, naming the file, and
/// leaves the file as it was: a later start serves its job.
#[test]
fn read_only_queue_file_at_start_is_refused() {
    let file = SqliteFile::new("ro-start");
    let mut seed = start_info(&file);
    let mut conn = Conn::connect(&seed.addr()).expect("connect");
    submit_acked(&mut conn, "kept");
    terminate_server(&mut seed);
    let dir = dir_of(&file);
    let args = file.server_args();
    {
        let _ro = Immutable::set(std::slice::from_ref(&file.path));
        let outcome = start_expecting_exit(&[], &args, Duration::from_secs(10));
        assert_refused_start("an immutable queue file", &file.path, outcome);
    }
    {
        let _ro = Immutable::set(std::slice::from_ref(&dir));
        let outcome = start_expecting_exit(&[], &args, Duration::from_secs(10));
        assert_refused_start(
            "the queue file in an immutable directory",
            &file.path,
            outcome,
        );
    }
    {
        const READ_ONLY_THEN_EXEC: &str = "mount --bind \"$1\" \"$1\" && \
            mount -o remount,bind,ro \"$1\" && shift && exec \"$@\"";
        let prefix = in_private_mounts(READ_ONLY_THEN_EXEC, &[dir.to_string_lossy().into_owned()]);
        let outcome = start_expecting_exit(&prefix, &args, Duration::from_secs(10));
        assert!(
            !outcome.1.contains("mount:"),
            "the read-only mount failed: {}",
            outcome.1
        );
        assert_refused_start("the queue file on a read-only mount", &file.path, outcome);
    }
    let ran = recover_jobs(&file, FN);
    assert_eq!(ran, ["kept"], "the refused starts left the file as it was");
}

/// A queue file that is not SQLite (garbage bytes), and a real queue file
/// with a damaged b-tree page, stop the start, naming the file, and are left
/// untouched.
#[test]
fn corrupt_queue_file_at_start_is_refused() {
    let garbage = SqliteFile::new("garbage");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let bytes: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    fs::write(&garbage.path, &bytes).expect("write garbage");
    let outcome = start_expecting_exit(&[], &garbage.server_args(), Duration::from_secs(10));
    assert_refused_start("garbage bytes", &garbage.path, outcome);
    assert!(
        fs::read(&garbage.path).expect("read") == bytes,
        "the garbage file was changed"
    );

    let damaged = SqliteFile::new("damaged");
    let verdict = protocol_tests::durable::write_damaged_queue_file(&damaged.path, FN, 300);
    let before = fs::read(&damaged.path).expect("read");
    let outcome = start_expecting_exit(&[], &damaged.server_args(), Duration::from_secs(10));
    assert_refused_start("a damaged b-tree page", &damaged.path, outcome);
    assert!(
        fs::read(&damaged.path).expect("read") == before,
        "the damaged file was changed"
    );
    println!("[store_safety start] the damaged file's quick_check: {verdict}");
}
