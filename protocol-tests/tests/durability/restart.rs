//! After a restart: admin views of a replayed queue, and foreground jobs,
//! which are not persisted.

use super::*;

#[test]
fn admin_status_after_replay() {
    const FN_A: &str = "durable_status";
    const FN_B: &str = "durable_status_b";
    let file = SqliteFile::new("status");
    let mut server = start(ServerKind::Gearboxd, &file);
    let mut conn = Conn::connect(&server.addr()).expect("connect");
    let counts = [(Prio::High, 30), (Prio::Normal, 40), (Prio::Low, 50)];
    for (prio, count) in counts {
        for i in 0..count {
            let unique = if i % 2 == 0 {
                format!("s-{prio:?}-{i}")
            } else {
                String::new()
            };
            let data = format!("{prio:?}-{i}");
            submit_bg(&mut conn, prio, FN_A, unique.as_bytes(), data.as_bytes()).expect("submit");
        }
    }
    for i in 0..7 {
        submit_bg(
            &mut conn,
            Prio::Low,
            FN_B,
            b"-",
            format!("b-{i}").as_bytes(),
        )
        .expect("submit");
    }
    kill_server(&mut server);

    let server = start(ServerKind::Gearboxd, &file);
    let addr = server.addr();
    wait_status_total(&addr, FN_A, 120);
    wait_status_total(&addr, FN_B, 7);
    let st = status(&addr).expect("status");
    assert_eq!(
        st.get(FN_A),
        Some(&[120, 0, 0]),
        "status: total, running, workers"
    );
    assert_eq!(st.get(FN_B), Some(&[7, 0, 0]));
    assert_eq!(
        show_jobs_count(&addr),
        Ok(127),
        "show jobs lists every replayed job"
    );
    let ps = priority_status(&addr).expect("prioritystatus");
    assert_eq!(
        ps.get(FN_A),
        Some(&[30, 40, 50]),
        "prioritystatus: high, normal, low"
    );
    assert_eq!(ps.get(FN_B), Some(&[0, 0, 7]));
}

#[test]
fn foreground_jobs_are_not_persisted() {
    const FG_FN: &str = "durable_fg";
    const MARK_FN: &str = "durable_fg_marker";
    let file = SqliteFile::new("fg");
    let mut server = start(ServerKind::Gearboxd, &file);
    // The foreground submitter stays connected until the crash, so its jobs are live.
    let mut fg = Conn::connect(&server.addr()).expect("connect");
    for unique in [&b"fg-1"[..], b"", b"-"] {
        fg.send(SUBMIT_JOB, &[FG_FN.as_bytes(), unique, b"foreground"])
            .expect("send");
        created(&mut fg).expect("foreground job accepted");
    }
    // A background job submitted after them: once it is acknowledged, its row is
    // committed, and so would theirs be if they were written at all.
    let mut bg = Conn::connect(&server.addr()).expect("connect");
    submit_bg(&mut bg, Prio::Normal, MARK_FN, b"marker", b"marker").expect("submit");
    assert_eq!(status_total(&server.addr(), FG_FN), Ok(3));
    let rows = file.table_rows().expect("read table");
    assert_eq!(rows.len(), 1, "only the background job has a row: {rows:?}");
    kill_server(&mut server);

    let server = start(ServerKind::Gearboxd, &file);
    let addr = server.addr();
    wait_status_total(&addr, MARK_FN, 1);
    assert_eq!(
        status_total(&addr, FG_FN),
        Ok(0),
        "no foreground job came back"
    );
    let ran = drain_in_order(&addr, &[FG_FN, MARK_FN], 2, Duration::from_secs(2));
    let got: Vec<String> = ran.iter().map(|r| text(&r.data)).collect();
    assert_eq!(got, ["marker"], "only the background job is replayed");
}
