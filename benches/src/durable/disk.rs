//! How long the scratch disk takes to make a small write durable: the floor
//! under every acknowledgement from a store that syncs before it answers.
//!
//! With `--libsqlite3-sync full`, a JOB_CREATED leaves only after an
//! `fdatasync` that started after its row was written. A client that submits
//! one job at a time therefore waits for at least one whole sync per job, so
//! N such clients get at most N ÷ (one sync) jobs/s, whatever the store does
//! in between. The report sets that bound against the in-memory rate.

use super::Scenario;
use crate::harness::fmt_num;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

const BLOCK: usize = 4096;
const ROUNDS: usize = 300;

/// Median microseconds of `pwrite` 4 KiB + `fdatasync`, two ways.
#[derive(Debug, Clone, Copy)]
pub struct SyncTimes {
    /// Over blocks already written and synced, as a WAL reused after a
    /// checkpoint: the sync carries data only.
    pub overwrite_us: f64,
    /// At the end of a growing file: the sync also commits the new size and
    /// blocks to the file system's journal.
    pub append_us: f64,
}

pub fn measure(dir: &Path) -> io::Result<SyncTimes> {
    let path = dir.join("fdatasync-probe");
    let result = (|| {
        let block = vec![0x5a_u8; BLOCK];
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let mut append = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let started = Instant::now();
            (&file).write_all(&block)?;
            file.sync_data()?;
            append.push(started.elapsed().as_secs_f64() * 1e6);
        }
        let mut overwrite = Vec::with_capacity(ROUNDS);
        for i in 0..ROUNDS {
            let started = Instant::now();
            file.write_all_at(&block, (i * BLOCK) as u64)?;
            file.sync_data()?;
            overwrite.push(started.elapsed().as_secs_f64() * 1e6);
        }
        Ok(SyncTimes {
            overwrite_us: median(overwrite),
            append_us: median(append),
        })
    })();
    let _ = std::fs::remove_file(&path);
    result
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The report section: the sync times, and for each scenario of one-at-a-time
/// clients whether the disk alone rules out half the in-memory rate.
///
/// N one-at-a-time clients at rate R spend N ÷ R per job: the in-memory round
/// trip. A store that syncs before it answers adds at least one sync to it,
/// so half the in-memory rate (2N ÷ R per job) needs a sync no longer than
/// the whole in-memory round trip.
pub fn section(
    before: Option<SyncTimes>,
    after: Option<SyncTimes>,
    scenarios: &[Scenario],
    memory_rate: impl Fn(usize) -> Option<f64>,
) -> String {
    let mut md = String::from("## The disk's floor\n\n");
    let show = |t: Option<SyncTimes>| match t {
        Some(t) => format!(
            "{} µs over written blocks, {} µs appending",
            fmt_num(t.overwrite_us, 0),
            fmt_num(t.append_us, 0)
        ),
        None => "not measured".into(),
    };
    let _ = writeln!(
        md,
        "`pwrite` of 4 KiB then `fdatasync` in the scratch directory, median of {ROUNDS}: \
         {} before the submit runs; {} after them.\n",
        show(before),
        show(after)
    );
    let fastest = [before, after]
        .into_iter()
        .flatten()
        .map(|t| t.overwrite_us.min(t.append_us))
        .min_by(f64::total_cmp);
    let Some(sync_us) = fastest else {
        return md;
    };
    let _ = writeln!(
        md,
        "N clients that each send one job at a time, at the in-memory rate R, spend N ÷ R \
         per job: the in-memory round trip. With sync full each JOB_CREATED also waits for \
         a sync, so half the in-memory rate (2N ÷ R per job) needs a sync no longer than \
         that whole round trip. The fastest sync above, {} µs, against it:\n\n\
         | Scenario | clients | in-memory round trip (N ÷ R), µs | half the in-memory rate is |\n|---|--:|--:|---|",
        fmt_num(sync_us, 0)
    );
    for (i, s) in scenarios.iter().enumerate() {
        if s.window != 1 {
            continue;
        }
        let round_trip = memory_rate(i).map(|r| f64::from(s.conns) * 1e6 / r);
        let verdict = match round_trip {
            Some(t) if sync_us > t => "out of reach on this disk: one sync takes longer",
            Some(_) => "not ruled out by the disk",
            None => "—",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {verdict} |",
            s.id,
            s.conns,
            round_trip.map_or("—".into(), |t| fmt_num(t, 0)),
        );
    }
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_in_a_temp_dir_measures_both_ways_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("disk-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let times = measure(&dir).unwrap();
        assert!(times.overwrite_us > 0.0 && times.append_us > 0.0);
        assert!(!dir.join("fdatasync-probe").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_one_at_a_time_scenarios_get_a_bound() {
        let scenario = |id, conns, window| Scenario {
            id,
            title: String::new(),
            args: Vec::new(),
            conns,
            window,
        };
        let scenarios = [scenario("w1x4", 4, 1), scenario("pipelined", 4, 100)];
        let times = SyncTimes {
            overwrite_us: 200.0,
            append_us: 400.0,
        };
        // 4 clients at 72,000 jobs/s: 56 µs a round trip, less than a 200 µs sync.
        let md = section(Some(times), None, &scenarios, |_| Some(72_000.0));
        assert!(
            md.contains("| w1x4 | 4 | 56 | out of reach on this disk: one sync takes longer |"),
            "{md}"
        );
        // 4 clients at 16,000 jobs/s: 250 µs, room for a 200 µs sync.
        let md = section(Some(times), None, &scenarios, |_| Some(16_000.0));
        assert!(
            md.contains("| w1x4 | 4 | 250 | not ruled out by the disk |"),
            "{md}"
        );
        assert!(!md.contains("| pipelined |"), "{md}");
    }
}
