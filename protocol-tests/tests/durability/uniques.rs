//! Empty and `-` uniques each keep a row (gearmand overwrites them).

use super::*;

const ANON_FN: &str = "durable_anon";
const ANON_EACH: usize = 200;

/// Submits ANON_EACH jobs with an empty unique and ANON_EACH with `-`, distinct
/// data, pipelined; panics unless all are acknowledged.
fn submit_anonymous(addr: &str) {
    let mut conn = Conn::connect(addr).expect("connect");
    let mut out = Vec::new();
    for i in 0..ANON_EACH {
        for (unique, data) in [(&b""[..], format!("e-{i}")), (b"-", format!("d-{i}"))] {
            let args = [
                ANON_FN.as_bytes().to_vec(),
                unique.to_vec(),
                data.into_bytes(),
            ];
            out.extend(encode_request(Prio::Normal.bg_packet(), &args));
        }
    }
    conn.send_raw(&out).expect("send");
    for i in 0..2 * ANON_EACH {
        created(&mut conn).unwrap_or_else(|e| panic!("submit {i}: {e}"));
    }
}

#[test]
fn empty_and_dash_uniques_each_survive_a_crash() {
    let file = SqliteFile::new("anon");
    let mut server = start(ServerKind::Gearboxd, &file);
    submit_anonymous(&server.addr());
    kill_server(&mut server);
    assert_eq!(file.rows(), Ok(2 * ANON_EACH as u64), "one row per job");

    let server = start(ServerKind::Gearboxd, &file);
    let addr = server.addr();
    wait_status_total(&addr, ANON_FN, 2 * ANON_EACH as u64);
    let workers = Workers::start(&addr, &[ANON_FN], 2, Duration::from_secs(60));
    wait_until(
        "all replayed jobs to run",
        Duration::from_secs(60),
        || match (workers.count(), status_total(&addr, ANON_FN)) {
            (n, Ok(0)) if n >= 2 * ANON_EACH => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let ran = workers.finish();
    let mut runs: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for r in &ran {
        let entry = runs.entry(text(&r.data)).or_insert((0, text(&r.unique)));
        entry.0 += 1;
    }
    for i in 0..ANON_EACH {
        assert_eq!(
            runs.get(&format!("e-{i}")),
            Some(&(1, String::new())),
            "e-{i}"
        );
        assert_eq!(
            runs.get(&format!("d-{i}")),
            Some(&(1, "-".to_owned())),
            "d-{i}"
        );
    }
    assert_eq!(ran.len(), 2 * ANON_EACH, "each job ran exactly once");
    wait_rows(&file, 0, Duration::from_secs(20));
}

/// Documented gearmand behaviour (gearmand-behaviour.md §5.1): its rows are keyed
/// by (unique, function), so all background jobs with an empty unique share one
/// row, and a restart brings back one of them.
#[test]
fn gearmand_keeps_one_row_for_empty_uniques() {
    let file = SqliteFile::new("gearmand-anon");
    let mut gearmand = start(ServerKind::Gearmand, &file);
    submit_anonymous(&gearmand.addr());
    kill_server(&mut gearmand);
    let rows = file.table_rows().expect("read gearmand's table");
    let empty: Vec<_> = rows.iter().filter(|r| r.unique_key.is_empty()).collect();
    let dash: Vec<_> = rows.iter().filter(|r| r.unique_key == b"-").collect();
    println!(
        "[gearmand anon] {} jobs acknowledged, {} rows: {} with an empty unique (data {:?}), {} with `-`",
        2 * ANON_EACH,
        rows.len(),
        empty.len(),
        empty.iter().map(|r| text(&r.data)).collect::<Vec<_>>(),
        dash.len()
    );
    assert_eq!(
        empty.len(),
        1,
        "gearmand overwrites one row per empty unique"
    );
    assert_eq!(dash.len(), 1, "gearmand overwrites one row per `-` unique");

    let gearmand = start(ServerKind::Gearmand, &file);
    let replayed = status_total(&gearmand.addr(), ANON_FN).expect("status");
    assert_eq!(
        replayed,
        rows.len() as u64,
        "gearmand replays what the table holds"
    );
    assert!(replayed < 2 * ANON_EACH as u64);
}
