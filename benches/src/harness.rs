//! Pieces shared by the `compare` and `durable` binaries: free ports, server
//! logs, medians and number formatting, machine facts, and how busy the rest
//! of the machine was during a run.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16, String> {
    let l =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// The last 15 lines of a log file.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The median; `None` for no values. Sorts `values`.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// `v` with `decimals` decimals and thousands separators.
pub fn fmt_num(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    // Thousands separators on the integer part.
    let (int, frac) = match s.find('.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (&s[..], ""),
    };
    let (sign, digits) = match int.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", int),
    };
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}{frac}")
}

/// A command's trimmed stdout; empty if it cannot run.
pub fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// CPU, cores, memory, kernel, the gearmand and gearboxd versions, and the
/// load average, for the head of a report.
pub fn machine_facts(gearmand: &str, bin_dir: &Path) -> Vec<(&'static str, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_default();
    let gearmand = command_output(gearmand, &["--version"]);
    let commit = command_output("git", &["rev-parse", "--short=12", "HEAD"]);
    let dirty = !command_output(
        "git",
        &[
            "status",
            "--porcelain",
            "--",
            "crates",
            "bin",
            "Cargo.toml",
            "Cargo.lock",
        ],
    )
    .is_empty();
    let gearboxd_version = command_output(
        bin_dir.join("gearboxd").to_str().unwrap_or("gearboxd"),
        &["--version"],
    );
    vec![
        ("CPU", cpu),
        ("cores", cores.to_string()),
        ("memory", mem),
        ("kernel", kernel),
        (
            "gearmand",
            gearmand.lines().next().unwrap_or("").to_string(),
        ),
        (
            "gearboxd",
            format!(
                "{gearboxd_version}, git commit {commit}{}",
                if dirty {
                    " (with uncommitted changes in crates/, bin/ or Cargo files)"
                } else {
                    ""
                }
            ),
        ),
        (
            "load before the run",
            std::fs::read_to_string("/proc/loadavg")
                .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
        ),
    ]
}

/// One loadgen run, with how busy the rest of the machine was meanwhile.
pub struct RunLog {
    pub label: String,
    pub start_s: f64,
    pub wall_s: f64,
    pub load1: f64,
    /// CPU time the machine spent on anything but this program's children
    /// (the server and loadgen) while the run lasted.
    pub foreign_cpu_s: f64,
    pub ok: bool,
}

/// Measures one run: wall time, and CPU used by processes other than our
/// children (machine-wide busy time from /proc/stat minus RUSAGE_CHILDREN).
pub struct Meter {
    pub at: Instant,
    pub busy_s: f64,
    pub children_s: f64,
    pub load1: f64,
}

impl Meter {
    pub fn start() -> Meter {
        Meter {
            at: Instant::now(),
            busy_s: machine_busy_s(),
            children_s: children_cpu_s(),
            load1: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .unwrap_or(0.0),
        }
    }

    /// (wall seconds, foreign CPU seconds); call after the children are reaped.
    pub fn stop(&self) -> (f64, f64) {
        let busy = machine_busy_s() - self.busy_s;
        let ours = children_cpu_s() - self.children_s;
        (self.at.elapsed().as_secs_f64(), (busy - ours).max(0.0))
    }

    /// Stops the meter (after the children are reaped) and makes the run's
    /// log entry.
    pub fn log(&self, label: String, start_s: f64, ok: bool) -> RunLog {
        let (wall_s, foreign_cpu_s) = self.stop();
        RunLog {
            label,
            start_s,
            wall_s,
            load1: self.load1,
            foreign_cpu_s,
            ok,
        }
    }
}

/// Busy CPU seconds of the whole machine since boot: user, nice, system and
/// steal. Interrupt and softirq time are left out: loopback traffic of the run
/// itself is handled there and charged to no process.
fn machine_busy_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: f64 = [0, 1, 2, 7].iter().filter_map(|&i| f.get(i)).sum();
    busy / crate::procstat::clock_ticks()
}

/// User+system CPU seconds of all reaped children of this process.
fn children_cpu_s() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// One report line: how much CPU other processes took while the runs lasted.
pub fn outside_load_summary(log: &[RunLog]) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let wall: f64 = log.iter().map(|r| r.wall_s).sum();
    let foreign: f64 = log.iter().map(|r| r.foreign_cpu_s).sum();
    if wall <= 0.0 {
        return String::new();
    }
    let worst = log
        .iter()
        .filter(|r| r.wall_s > 0.5)
        .map(|r| (r.foreign_cpu_s / (r.wall_s * cores), r.label.as_str()))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    format!(
        "- Outside load: while the runs lasted, other processes on the machine used {:.0}% of its CPU capacity{}; see the run log at the end. Figures from runs with much outside load are less trustworthy; medians of runs spread over the whole comparison limit the damage.\n",
        100.0 * foreign / (wall * cores),
        worst.map_or(String::new(), |(share, label)| format!(
            " (the most in one run: {:.0}%, {label})",
            100.0 * share
        ))
    )
}

/// The collapsed run log table at the end of a report.
pub fn run_log_section(md: &mut String, log: &[RunLog]) {
    use std::fmt::Write as _;
    let _ = writeln!(
        md,
        "\n<details><summary>Run log</summary>\n\n| Run | Started at, s | Wall, s | Load average (1 min) at start | CPU-s used by other processes (user+system+steal) | OK |\n|---|--:|--:|--:|--:|---|"
    );
    for r in log {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.1} | {:.2} | {:.2} | {} |",
            r.label,
            r.start_s,
            r.wall_s,
            r.load1,
            r.foreign_cpu_s,
            if r.ok { "yes" } else { "no" }
        );
    }
    let _ = writeln!(md, "\n</details>");
}
