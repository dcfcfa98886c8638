//! The scenarios of the `compare` binary: which load program runs with which
//! options, and the figures its report shows for each.

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Kind {
    Gearbox,
    /// gearmand at its setting for scale (`-t 4`), the one the targets use.
    Gearmand,
    /// gearmand at its setting for latency (`-t 1`), for the latency scenarios.
    GearmandT1,
    /// gearboxd with its durable store, `-q libsqlite3` (sync normal, a
    /// fresh directory per run), for `--at-load`.
    GearboxSqlite,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Gearbox => "gearbox",
            Kind::Gearmand => "gearmand",
            Kind::GearmandT1 => "gearmand-t1",
            Kind::GearboxSqlite => "gearbox-sqlite",
        }
    }

    /// gearmand's `-t`; `None` for gearbox.
    pub fn gearmand_threads(self) -> Option<u32> {
        match self {
            Kind::Gearbox | Kind::GearboxSqlite => None,
            Kind::Gearmand => Some(4),
            Kind::GearmandT1 => Some(1),
        }
    }
}

#[derive(Clone, Copy)]
pub enum Better {
    Higher,
    Lower,
    Info,
}

/// How a figure is shown: JSON key, label, direction, and a scale for units.
pub struct Row {
    pub key: &'static str,
    pub label: String,
    pub better: Better,
    /// Multiply the JSON value by this (e.g. KiB → MiB).
    pub scale: f64,
    pub decimals: usize,
}

pub fn row(key: &'static str, label: impl Into<String>, better: Better, decimals: usize) -> Row {
    Row {
        key,
        label: label.into(),
        better,
        scale: 1.0,
        decimals,
    }
}

pub fn mib(key: &'static str, label: impl Into<String>) -> Row {
    Row {
        key,
        label: label.into(),
        better: Better::Lower,
        scale: 1.0 / 1024.0,
        decimals: 1,
    }
}

/// The load program a scenario runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// `loadgen`, which speaks the protocol itself.
    Loadgen,
    /// `libgearman_submit` (benches/c/libgearman_submit.c), built by
    /// `benches/compare` with `cc ... -lgearman`: real libgearman client code.
    LibgearmanSubmit,
    /// `libgearman_worker` (benches/c/libgearman_worker.c), built the same
    /// way: real libgearman workers (`gearman_worker_work`), draining a
    /// backlog or serving `gearman_client_do` round trips.
    LibgearmanWorker,
}

impl Program {
    pub fn bin(self) -> &'static str {
        match self {
            Program::Loadgen => "loadgen",
            Program::LibgearmanSubmit => "libgearman_submit",
            Program::LibgearmanWorker => "libgearman_worker",
        }
    }

    /// The C source `benches/compare` builds the program from; `None` for
    /// loadgen (cargo builds it).
    pub fn c_source(self) -> Option<&'static str> {
        match self {
            Program::Loadgen => None,
            Program::LibgearmanSubmit => Some("benches/c/libgearman_submit.c"),
            Program::LibgearmanWorker => Some("benches/c/libgearman_worker.c"),
        }
    }
}

pub struct Spec {
    pub id: &'static str,
    pub title: String,
    pub program: Program,
    pub args: Vec<String>,
    /// gearboxd over its unix socket (gearmand has none, so it stays on TCP).
    pub gearbox_unix: bool,
    /// Also run against gearmand `-t 1`, its best setting for latency.
    pub vs_gearmand_t1: bool,
    pub deadline_s: u64,
    pub rows: Vec<Row>,
}

pub fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

pub fn specs(quick: bool) -> Vec<Spec> {
    let n = |full: u64, small: u64| if quick { small } else { full };
    let settle = if quick { 2 } else { 10 };
    let submit_rows = || {
        vec![
            row("jobs_per_s", "jobs/s", Better::Higher, 0),
            row(
                "jobs_per_server_cpu_s",
                "jobs per server CPU-second",
                Better::Higher,
                0,
            ),
            mib(
                "server_rss_queued_kib",
                "server RSS with the jobs queued, MiB",
            ),
        ]
    };
    let latency_rows = || {
        vec![
            row("p50_us", "p50 submit→JOB_CREATED, µs", Better::Lower, 1),
            row("p99_us", "p99 submit→JOB_CREATED, µs", Better::Lower, 1),
            row("p999_us", "p99.9 submit→JOB_CREATED, µs", Better::Lower, 1),
            row("jobs_per_s", "jobs/s (one at a time)", Better::Higher, 0),
            row(
                "jobs_per_server_cpu_s",
                "jobs per server CPU-second",
                Better::Higher,
                0,
            ),
        ]
    };
    let memory_rows = || {
        let mut rows = vec![
            mib("rss_before_kib", "RSS before, MiB"),
            mib("rss_peak_kib", "RSS at peak, MiB"),
            row(
                "rss_per_job_bytes",
                "RSS per queued job, bytes",
                Better::Lower,
                0,
            ),
            row("fill_jobs_per_s", "fill: jobs/s overall", Better::Higher, 0),
        ];
        const SLICES: [(&str, &str); 10] = [
            (
                "fill_slice_01_jobs_per_s",
                "fill: jobs/s, 0–10% of the queue",
            ),
            ("fill_slice_02_jobs_per_s", "fill: jobs/s, 10–20%"),
            ("fill_slice_03_jobs_per_s", "fill: jobs/s, 20–30%"),
            ("fill_slice_04_jobs_per_s", "fill: jobs/s, 30–40%"),
            ("fill_slice_05_jobs_per_s", "fill: jobs/s, 40–50%"),
            ("fill_slice_06_jobs_per_s", "fill: jobs/s, 50–60%"),
            ("fill_slice_07_jobs_per_s", "fill: jobs/s, 60–70%"),
            ("fill_slice_08_jobs_per_s", "fill: jobs/s, 70–80%"),
            ("fill_slice_09_jobs_per_s", "fill: jobs/s, 80–90%"),
            ("fill_slice_10_jobs_per_s", "fill: jobs/s, 90–100%"),
        ];
        for (key, label) in SLICES {
            rows.push(row(key, label, Better::Higher, 0));
        }
        rows.extend([
            row(
                "full_queue_submit_jobs_per_s",
                "submit with the whole queue there (a tenth more jobs): jobs/s",
                Better::Higher,
                0,
            ),
            row(
                "full_queue_vs_empty_submit",
                "that rate ÷ the fill's first tenth (empty queue)",
                Better::Higher,
                2,
            ),
            row(
                "fill_jobs_per_server_cpu_s",
                "fill: jobs per server CPU-second",
                Better::Higher,
                0,
            ),
            row(
                "drain_jobs_per_s",
                "drain (4 workers): jobs/s",
                Better::Higher,
                0,
            ),
            row(
                "drain_jobs_per_server_cpu_s",
                "drain: jobs per server CPU-second",
                Better::Higher,
                0,
            ),
            mib(
                "rss_after_drain_kib",
                format!("RSS {settle} s after the drain, MiB"),
            ),
        ]);
        rows
    };
    let submit = n(200_000, 10_000);
    let mem = n(1_000_000, 50_000);
    let (lg_drain, lg_drain_1m, lg_rt) = (n(50_000, 5_000), n(1_000_000, 20_000), n(50_000, 2_000));
    // The rows of the drains through libgearman workers.
    let lg_drain_rows = |rss: bool| {
        let mut rows = vec![
            row("drain_jobs_per_s", "drain jobs/s", Better::Higher, 0),
            row(
                "jobs_per_server_cpu_s",
                "drained jobs per server CPU-second",
                Better::Higher,
                0,
            ),
            row(
                "server_cpu_us_per_job",
                "server CPU µs per drained job",
                Better::Lower,
                2,
            ),
            row(
                "client_cpu_us_per_job",
                "workers' (libgearman) CPU µs per job",
                Better::Info,
                2,
            ),
            row(
                "fill_jobs_per_s",
                "fill jobs/s (libgearman, before the drain)",
                Better::Higher,
                0,
            ),
        ];
        if rss {
            rows.push(mib(
                "server_rss_queued_kib",
                "server RSS with the backlog queued, MiB",
            ));
        }
        rows
    };
    vec![
        Spec {
            program: Program::Loadgen,
            id: "submit-bg",
            title: format!("submit-bg, 8 conns × window 32, {submit} jobs, 100 B, no unique"),
            args: args(&format!(
                "--scenario submit-bg --connections 8 --window 32 --jobs {submit} --payload 100 --unique none"
            )),
            gearbox_unix: false,
            vs_gearmand_t1: false,
            deadline_s: 120,
            rows: submit_rows(),
        },
        Spec {
            program: Program::Loadgen,
            id: "submit-bg-uuid",
            title: format!("submit-bg, 8 conns × window 32, {submit} jobs, 100 B, uuid uniques"),
            args: args(&format!(
                "--scenario submit-bg --connections 8 --window 32 --jobs {submit} --payload 100 --unique uuid"
            )),
            gearbox_unix: false,
            vs_gearmand_t1: false,
            deadline_s: 120,
            rows: submit_rows(),
        },
        Spec {
            program: Program::Loadgen,
            id: "submit-bg-w1",
            title: format!("submit-bg, 8 conns × window 1, {} jobs, 100 B", n(100_000, 5_000)),
            args: args(&format!(
                "--scenario submit-bg --connections 8 --window 1 --jobs {} --payload 100 --unique none",
                n(100_000, 5_000)
            )),
            gearbox_unix: false,
            vs_gearmand_t1: false,
            deadline_s: 120,
            rows: submit_rows(),
        },
        Spec {
            program: Program::LibgearmanSubmit,
            id: "submit-bg-libgearman",
            title: format!(
                "background submit through libgearman (add_task_background × 100, then run_tasks, repeated), 4 clients (threads, one connection each), {submit} jobs, 100 B, uuid uniques generated by libgearman"
            ),
            args: args(&format!(
                "--clients 4 --batch 100 --jobs {submit} --payload 100 --duration 60"
            )),
            gearbox_unix: false,
            vs_gearmand_t1: false,
            deadline_s: 120,
            rows: vec![
                row("jobs_per_s", "jobs/s", Better::Higher, 0),
                row(
                    "jobs_per_server_cpu_s",
                    "jobs per server CPU-second",
                    Better::Higher,
                    0,
                ),
                row(
                    "server_cpu_us_per_job",
                    "server CPU µs per job",
                    Better::Lower,
                    2,
                ),
                row(
                    "client_cpu_us_per_job",
                    "client (libgearman) CPU µs per job",
                    Better::Info,
                    2,
                ),
                mib(
                    "server_rss_queued_kib",
                    "server RSS with the jobs queued, MiB",
                ),
            ],
        },
        Spec {
            program: Program::Loadgen,
            id: "drain",
            title: format!("drain, {submit} queued jobs, 4 workers × 2 GRABs outstanding"),
            args: args(&format!(
                "--scenario drain --connections 8 --window 32 --jobs {submit} --payload 100 --workers 4 --grab-window 2"
            )),
            gearbox_unix: false,
            vs_gearmand_t1: false,
            deadline_s: 180,
            rows: vec![
                row("drain_jobs_per_s", "drain jobs/s", Better::Higher, 0),
                row(
                    "jobs_per_server_cpu_s",
                    "drained jobs per server CPU-second",
                    Better::Higher,
                    0,
                ),
                row("fill_jobs_per_s", "fill jobs/s", Better::Higher, 0),
            ],
        },
        Spec {
            program: Program::LibgearmanWorker,
            id: "drain-libgearman",
            title: format!(
                "drain through libgearman workers: {lg_drain} jobs queued through libgearman (4 clients, add_task_background × 100 + run_tasks, uuid uniques), then 4 libgearman workers (threads, gearman_worker_work: GRAB_JOB_ALL, one packet per write, PRE_SLEEP after NO_JOB) drain them, 100 B"
            ),
            args: args(&format!(
                "--mode drain --jobs {lg_drain} --workers 4 --fill-clients 4 --batch 100 --payload 100 --duration 60"
            )),
            gearbox_unix: false,
            vs_gearmand_t1: false,
            deadline_s: 180,
            rows: lg_drain_rows(false),
        },
        Spec {
            program: Program::LibgearmanWorker,
            id: "drain-1m-libgearman",
            title: format!(
                "{lg_drain_1m}-job backlog drained by 4 libgearman workers (queued as in drain-libgearman), 100 B"
            ),
            args: args(&format!(
                "--mode drain --jobs {lg_drain_1m} --workers 4 --fill-clients 4 --batch 100 --payload 100 --duration 120"
            )),
            gearbox_unix: false,
            vs_gearmand_t1: false,
            deadline_s: 300,
            rows: lg_drain_rows(true),
        },
        Spec {
            program: Program::Loadgen,
            id: "roundtrip",
            title: format!(
                "roundtrip, 4 clients × window 16, 4 echo workers, {} jobs",
                n(100_000, 5_000)
            ),
            args: args(&format!(
                "--scenario roundtrip --clients 4 --workers 4 --window 16 --jobs {} --payload 100",
                n(100_000, 5_000)
            )),
            gearbox_unix: false,
            vs_gearmand_t1: true,
            deadline_s: 180,
            rows: vec![
                row("jobs_per_s", "jobs/s", Better::Higher, 0),
                row("p50_us", "p50 submit→WORK_COMPLETE, µs", Better::Lower, 0),
                row("p99_us", "p99 submit→WORK_COMPLETE, µs", Better::Lower, 0),
                row("p999_us", "p99.9 submit→WORK_COMPLETE, µs", Better::Lower, 0),
                row(
                    "jobs_per_server_cpu_s",
                    "jobs per server CPU-second",
                    Better::Higher,
                    0,
                ),
            ],
        },
        Spec {
            program: Program::LibgearmanWorker,
            id: "roundtrip-libgearman",
            title: format!(
                "roundtrip through libgearman: 4 clients (threads) each gearman_client_do one job at a time, 4 libgearman echo workers (gearman_worker_work), {lg_rt} jobs, 100 B"
            ),
            args: args(&format!(
                "--mode roundtrip --clients 4 --workers 4 --jobs {lg_rt} --payload 100 --duration 60"
            )),
            gearbox_unix: false,
            vs_gearmand_t1: true,
            deadline_s: 120,
            rows: vec![
                row("jobs_per_s", "jobs/s", Better::Higher, 0),
                row(
                    "jobs_per_server_cpu_s",
                    "jobs per server CPU-second",
                    Better::Higher,
                    0,
                ),
                row(
                    "server_cpu_us_per_job",
                    "server CPU µs per job",
                    Better::Lower,
                    2,
                ),
                row("p50_us", "p50 gearman_client_do, µs", Better::Lower, 0),
                row("p99_us", "p99 gearman_client_do, µs", Better::Lower, 0),
                row(
                    "client_cpu_us_per_job",
                    "clients' + workers' (libgearman) CPU µs per job",
                    Better::Info,
                    2,
                ),
            ],
        },
        Spec {
            program: Program::Loadgen,
            id: "coalesce",
            title: format!(
                "coalesce, 8 conns × window 16 over 100 uniques, 4 workers, {} submits",
                n(100_000, 5_000)
            ),
            args: args(&format!(
                "--scenario coalesce --connections 8 --window 16 --uniques 100 --workers 4 --jobs {} --payload 100",
                n(100_000, 5_000)
            )),
            gearbox_unix: false,
            vs_gearmand_t1: false,
            deadline_s: 180,
            rows: vec![
                row("submits_per_s", "submits/s", Better::Higher, 0),
                row("distinct_handles", "distinct handles created", Better::Info, 0),
                row("submits", "submits answered", Better::Info, 0),
                row(
                    "submits_per_handle",
                    "submits per handle",
                    Better::Info,
                    2,
                ),
                row("p99_us", "p99 submit→WORK_COMPLETE, µs", Better::Lower, 0),
                row(
                    "jobs_per_server_cpu_s",
                    "submits per server CPU-second",
                    Better::Higher,
                    0,
                ),
            ],
        },
        Spec {
            program: Program::Loadgen,
            id: "latency-tcp",
            title: format!("latency, TCP vs TCP, 1 conn × window 1, {} jobs", n(20_000, 2_000)),
            args: args(&format!(
                "--scenario latency --jobs {} --payload 100",
                n(20_000, 2_000)
            )),
            gearbox_unix: false,
            vs_gearmand_t1: true,
            deadline_s: 120,
            rows: latency_rows(),
        },
        Spec {
            program: Program::Loadgen,
            id: "latency-unix",
            title: format!(
                "latency, gearbox unix socket vs gearmand TCP, 1 conn × window 1, {} jobs",
                n(20_000, 2_000)
            ),
            args: args(&format!(
                "--scenario latency --jobs {} --payload 100",
                n(20_000, 2_000)
            )),
            gearbox_unix: true,
            vs_gearmand_t1: true,
            deadline_s: 120,
            rows: latency_rows(),
        },
        Spec {
            program: Program::Loadgen,
            id: "memory",
            title: format!("memory, {mem} jobs × 100 B, no unique"),
            args: args(&format!(
                "--scenario memory --connections 8 --window 32 --jobs {mem} --payload 100 --unique none --workers 4 --settle {settle}"
            )),
            gearbox_unix: false,
            vs_gearmand_t1: false,
            deadline_s: 300,
            rows: memory_rows(),
        },
        Spec {
            program: Program::Loadgen,
            id: "memory-uuid",
            title: format!("memory, {mem} jobs × 100 B, 36-byte uniques"),
            args: args(&format!(
                "--scenario memory --connections 8 --window 32 --jobs {mem} --payload 100 --unique uuid --workers 4 --settle {settle}"
            )),
            gearbox_unix: false,
            vs_gearmand_t1: false,
            deadline_s: 300,
            rows: memory_rows(),
        },
    ]
}

/// The scenarios of `compare --defaults`: a local background submit one at a
/// time (TCP, and gearbox's unix socket against gearmand's TCP), by 8
/// clients one at a time, pipelined, and batched through libgearman, each
/// with its latency percentiles.
pub fn defaults_specs(quick: bool) -> Vec<Spec> {
    let ids = [
        "latency-tcp",
        "latency-unix",
        "submit-bg-w1",
        "submit-bg-uuid",
        "submit-bg-libgearman",
    ];
    let latency = |what: &str| {
        vec![
            row("p50_us", format!("p50 {what}, µs"), Better::Lower, 1),
            row("p99_us", format!("p99 {what}, µs"), Better::Lower, 1),
            row("p999_us", format!("p99.9 {what}, µs"), Better::Lower, 1),
        ]
    };
    let mut out: Vec<Spec> = specs(quick)
        .into_iter()
        .filter(|s| ids.contains(&s.id))
        .collect();
    for spec in &mut out {
        spec.vs_gearmand_t1 = false;
        match spec.id {
            "submit-bg-w1" | "submit-bg-uuid" => {
                spec.args.push("--latency".into());
                let mut rows = latency("submit→JOB_CREATED");
                rows.append(&mut spec.rows);
                spec.rows = rows;
            }
            "submit-bg-libgearman" => {
                let mut rows: Vec<Row> = latency("batch of 100 (add_task × 100 + run_tasks)")
                    .into_iter()
                    .map(|mut r| {
                        r.key = match r.key {
                            "p50_us" => "batch_p50_us",
                            "p99_us" => "batch_p99_us",
                            _ => "batch_p999_us",
                        };
                        r
                    })
                    .collect();
                rows.append(&mut spec.rows);
                spec.rows = rows;
            }
            _ => {}
        }
    }
    out
}

/// A scenario of `compare --at-load`: the closed loop whose gearmand rate
/// sets the offered rates, and the open loop run at shares of that rate.
pub struct AtLoadSpec {
    pub id: &'static str,
    pub title: String,
    /// Closed-loop loadgen arguments (gearmand's best throughput).
    pub closed: Vec<String>,
    /// Open-loop loadgen arguments, without `--rate` and `--duration`.
    pub open: Vec<String>,
    /// The figure of the achieved rate, in both loops.
    pub rate_key: &'static str,
    /// What a job is, for the table's heading.
    pub latency_of: &'static str,
    /// The gearbox servers run against gearmand `-t 1` and `-t 4`.
    pub gearboxes: Vec<Kind>,
}

/// The scenarios of `compare --at-load`: background submit (gearboxd in
/// memory and with `-q libsqlite3`), the foreground round trip and
/// coalescing.
pub fn at_load_specs(quick: bool) -> Vec<AtLoadSpec> {
    let n = |full: u64, small: u64| if quick { small } else { full };
    vec![
        AtLoadSpec {
            id: "submit-bg",
            title: "background submit → JOB_CREATED, 8 connections, 100 B, no unique".into(),
            closed: args(&format!(
                "--scenario submit-bg --connections 8 --window 32 --jobs {} --duration 3 --payload 100 --unique none --no-cleanup",
                n(600_000, 100_000)
            )),
            open: args(
                "--scenario submit-bg --connections 8 --payload 100 --unique none --no-cleanup --drain-timeout 5",
            ),
            rate_key: "jobs_per_s",
            latency_of: "submit→JOB_CREATED",
            gearboxes: vec![Kind::Gearbox, Kind::GearboxSqlite],
        },
        AtLoadSpec {
            id: "roundtrip",
            title: "foreground submit → WORK_COMPLETE, 16 clients, 4 echo workers, 100 B".into(),
            closed: args(&format!(
                "--scenario roundtrip --clients 16 --workers 4 --window 16 --jobs {} --payload 100",
                n(100_000, 20_000)
            )),
            open: args("--scenario roundtrip --clients 16 --workers 4 --payload 100 --drain-timeout 5"),
            rate_key: "jobs_per_s",
            latency_of: "submit→WORK_COMPLETE",
            gearboxes: vec![Kind::Gearbox],
        },
        AtLoadSpec {
            id: "coalesce",
            title: "foreground submits over 100 shared uniques → WORK_COMPLETE, 8 connections, 4 echo workers, 100 B".into(),
            closed: args(&format!(
                "--scenario coalesce --connections 8 --window 16 --uniques 100 --workers 4 --jobs {} --payload 100",
                n(300_000, 50_000)
            )),
            open: args(
                "--scenario coalesce --connections 8 --uniques 100 --workers 4 --payload 100 --drain-timeout 5",
            ),
            rate_key: "submits_per_s",
            latency_of: "submit→WORK_COMPLETE",
            gearboxes: vec![Kind::Gearbox],
        },
    ]
}
