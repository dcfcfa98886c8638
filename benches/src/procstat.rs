//! A process's resident memory and CPU time, read from `/proc`.

use crate::{err, Result};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// VmRSS, in KiB.
    pub rss_kib: u64,
    /// utime + stime, in seconds.
    pub cpu_s: f64,
}

/// Clock ticks per second for `/proc/PID/stat` (sysconf(_SC_CLK_TCK), 100 on Linux).
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| err!("cannot read /proc/{pid}/status: {e}"))?;
    parse_vmrss(&status).ok_or_else(|| err!("no VmRSS in /proc/{pid}/status"))
}

/// utime + stime of `pid`, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| err!("cannot read /proc/{pid}/stat: {e}"))?;
    let ticks = parse_cpu_ticks(&stat).ok_or_else(|| err!("unparsable /proc/{pid}/stat"))?;
    Ok(ticks as f64 / clock_ticks())
}

pub fn sample(pid: u32) -> Result<ProcSample> {
    Ok(ProcSample {
        rss_kib: rss_kib(pid)?,
        cpu_s: cpu_seconds(pid)?,
    })
}

fn parse_vmrss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Fields 14 and 15 (utime, stime) of `/proc/PID/stat`, counted after the
/// command name, which is in parentheses and may itself hold spaces.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state), so utime (14) is index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The server being measured, if its pid was given.
#[derive(Debug, Clone, Copy)]
pub struct Monitor {
    pub pid: Option<u32>,
}

impl Monitor {
    pub fn sample(&self) -> Result<Option<ProcSample>> {
        self.pid.map(sample).transpose()
    }

    pub fn rss(&self) -> Result<Option<u64>> {
        self.pid.map(rss_kib).transpose()
    }

    /// Samples RSS every `every` until `stop` resolves; returns the largest seen.
    pub async fn peak_rss_until(
        &self,
        every: Duration,
        stop: tokio::sync::oneshot::Receiver<()>,
    ) -> Option<u64> {
        let pid = self.pid?;
        let mut peak = rss_kib(pid).ok()?;
        let mut tick = tokio::time::interval(every);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return Some(peak),
                _ = tick.tick() => {
                    if let Ok(r) = rss_kib(pid) { peak = peak.max(r); }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat =
            "1234 (gear man) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 5 0 100 1000 200";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_vmrss("Name:\tx\nVmRSS:\t   5120 kB\n"), Some(5120));
    }

    #[test]
    fn reads_own_process() {
        let me = sample(std::process::id()).unwrap();
        assert!(me.rss_kib > 0);
        assert!(me.cpu_s >= 0.0);
    }
}
