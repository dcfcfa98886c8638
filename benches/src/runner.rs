//! Child processes shared by the `compare` and `durable` binaries: starting
//! gearmand, waiting for a server to listen, stopping it, running a load
//! program once and reading its JSON line, and the end of a run (writing the
//! report, cleaning up the scratch directory).

use crate::harness::tail;
use serde_json::Value;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// `gearmand -t THREADS --hashtable-buckets 1000003 -p PORT -L 127.0.0.1 -l
/// LOG -P PIDFILE`, its stdout and stderr going to `out`; the caller adds the
/// rest.
pub fn gearmand_command(
    gearmand: &str,
    threads: u32,
    port: u16,
    log: &Path,
    pidfile: &Path,
    out: &Path,
) -> Result<Command, String> {
    let mut cmd = gearmand_default_command(gearmand, port, log, pidfile, out)?;
    cmd.arg("-t")
        .arg(threads.to_string())
        .args(["--hashtable-buckets", "1000003"]);
    Ok(cmd)
}

/// gearmand as a site runs it with no tuning: only where it listens and
/// logs (its defaults: 4 threads, in-memory queue).
pub fn gearmand_default_command(
    gearmand: &str,
    port: u16,
    log: &Path,
    pidfile: &Path,
    out: &Path,
) -> Result<Command, String> {
    let mut cmd = Command::new(gearmand);
    cmd.arg("-p")
        .arg(port.to_string())
        .args(["-L", "127.0.0.1", "-l"])
        .arg(log)
        .arg("-P")
        .arg(pidfile);
    let dir = out.parent().unwrap_or(Path::new("."));
    let out = File::create(out)
        .map_err(|e| format!("cannot create a log file in {}: {e}", dir.display()))?;
    cmd.stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out);
    Ok(cmd)
}

/// Sends stdout and stderr of `cmd` to the file `log`.
pub fn log_to(cmd: &mut Command, log: &Path) -> Result<(), String> {
    let out = File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    cmd.stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out);
    Ok(())
}

/// Waits up to 15 s until a started server accepts connections on `tcp`
/// (and on the unix socket `unix`, if any), polling every `poll`.
pub fn wait_ready(
    child: &mut Child,
    name: &str,
    log: &Path,
    tcp: &str,
    unix: Option<&Path>,
    poll: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{name} exited during startup ({status}); log {}:\n{}",
                log.display(),
                tail(log)
            ));
        }
        let tcp_ok = std::net::TcpStream::connect(tcp).is_ok();
        let unix_ok = unix.is_none_or(|p| std::os::unix::net::UnixStream::connect(p).is_ok());
        if tcp_ok && unix_ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{name} not accepting connections on {tcp} after 15 s"
            ));
        }
        std::thread::sleep(poll);
    }
}

/// SIGTERM, then SIGKILL after `grace` (checking every `poll`); `who` is
/// the "program: server" prefix of the message printed then. Returns how long
/// the child took to exit after SIGTERM, or `None` if it had to be killed (or
/// was gone).
pub fn terminate(
    child: &mut Child,
    grace: Duration,
    poll: Duration,
    who: &str,
) -> Option<Duration> {
    if !matches!(child.try_wait(), Ok(None)) {
        return None;
    }
    let pid = child.id() as libc::pid_t;
    let at = Instant::now();
    // SAFETY: plain kill(2) of our own child, which has not been reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    while at.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return Some(at.elapsed());
        }
        std::thread::sleep(poll);
    }
    eprintln!(
        "{who} (pid {pid}) ignored SIGTERM for {} s; killing it",
        grace.as_secs()
    );
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// One run of a load program (loadgen, or libgearman_submit, which takes the
/// same `--server`, `--server-pid`, `--deadline`, `--json` and `--label`).
pub struct LoadRun<'a> {
    pub program: &'a Path,
    /// The program's name in the command line quoted in a problem.
    pub name: &'a str,
    pub args: &'a [String],
    /// `--server`: host:port or unix:PATH.
    pub target: &'a str,
    pub server_pid: u32,
    /// The server's log, named in a problem.
    pub server_log: &'a Path,
    /// Where the program's stdout and stderr go (LABEL.out, LABEL.err).
    pub dir: &'a Path,
    pub label: &'a str,
    pub deadline_s: u64,
    /// How often to check whether the program has exited.
    pub poll: Duration,
}

pub struct LoadOutcome {
    /// The program's JSON line, if it ran and reported `"ok": true`.
    pub json: Option<Value>,
    /// What went wrong, in one line naming the label, server log and command.
    pub problem: Option<String>,
}

impl LoadOutcome {
    /// Notes the run's problem (printed and added to `problems`) and its JSON
    /// line (appended to `raw`); returns the JSON of a run that went well.
    pub fn record(self, problems: &mut Vec<String>, raw: &mut String) -> Option<Value> {
        if let Some(p) = self.problem {
            eprintln!("    PROBLEM: {p}");
            problems.push(p);
        }
        let j = self.json?;
        raw.push_str(&j.to_string());
        raw.push('\n');
        Some(j)
    }
}

impl LoadRun<'_> {
    /// Runs the program once; kills it if it outlives its own deadline by 30 s.
    pub fn run(&self) -> LoadOutcome {
        let label = self.label;
        let out_path = self.dir.join(format!("{label}.out"));
        let err_path = self.dir.join(format!("{label}.err"));
        let mut cmd = Command::new(self.program);
        cmd.args(self.args)
            .args(["--server", self.target, "--server-pid"])
            .arg(self.server_pid.to_string())
            .args([
                "--deadline",
                &self.deadline_s.to_string(),
                "--json",
                "--label",
                label,
            ])
            .stdin(Stdio::null());
        let command_line = format!(
            "{} {} --server {} --server-pid {} --deadline {} --json",
            self.name,
            self.args.join(" "),
            self.target,
            self.server_pid,
            self.deadline_s
        );
        let (Ok(out), Ok(err)) = (File::create(&out_path), File::create(&err_path)) else {
            return LoadOutcome {
                json: None,
                problem: Some(format!(
                    "cannot create output files in {}",
                    self.dir.display()
                )),
            };
        };
        cmd.stdout(out).stderr(err);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return LoadOutcome {
                    json: None,
                    problem: Some(format!("cannot start {}: {e}", self.program.display())),
                }
            }
        };
        let limit = Instant::now() + Duration::from_secs(self.deadline_s + 30);
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() > limit => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(self.poll),
                Err(_) => break None,
            }
        };
        let mut stdout = String::new();
        let _ = File::open(&out_path).and_then(|mut f| f.read_to_string(&mut stdout));
        let json = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str::<Value>(l).ok());
        if let Some(human) = stdout.lines().find(|l| !l.starts_with('{')) {
            eprintln!("    {human}");
        }
        let mut problems = Vec::new();
        match status {
            None => problems.push(format!(
                "loadgen did not exit within {} s and was killed",
                self.deadline_s + 30
            )),
            Some(s) if !s.success() => problems.push(format!(
                "loadgen exited with {s}; stderr: {}",
                tail(&err_path)
            )),
            _ => {}
        }
        match &json {
            Some(j) => {
                if let Some(e) = j["error"].as_str() {
                    problems.push(format!("error: {e}"));
                }
                for a in j["anomalies"].as_array().into_iter().flatten() {
                    problems.push(format!("anomaly: {}", a.as_str().unwrap_or("?")));
                }
            }
            None => problems.push("no JSON line in loadgen's output".to_string()),
        }
        let failed = json.as_ref().is_none_or(|j| j["ok"] != Value::Bool(true));
        LoadOutcome {
            json: if failed { None } else { json },
            problem: (!problems.is_empty()).then(|| {
                format!(
                    "{label}: {} (server log: {}; command: `{command_line}`)",
                    problems.join("; "),
                    self.server_log.display()
                )
            }),
        }
    }
}

/// Checks that `bin_dir` holds loadgen and gearboxd; says what to build if not.
pub fn binaries_present(program: &str, bin_dir: &Path) -> bool {
    for bin in [bin_dir.join("loadgen"), bin_dir.join("gearboxd")] {
        if !bin.exists() {
            eprintln!(
                "{program}: {} not found; build with `cargo build --release -p gearboxd -p gearbox-benches`",
                bin.display()
            );
            return false;
        }
    }
    true
}

/// A fresh scratch directory `gearbox-PROGRAM-PID` in the temp dir.
pub fn scratch_dir(program: &str) -> Option<PathBuf> {
    let dir = std::env::temp_dir().join(format!("gearbox-{program}-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{program}: cannot create {}: {e}", dir.display());
        return None;
    }
    Some(dir)
}

/// The end of a run: prints the report, writes it to `out` (or to
/// `default_out` unless `quick`), and removes the scratch directory unless
/// there were problems or `keep`.
pub struct Finish<'a> {
    pub program: &'a str,
    pub md: &'a str,
    pub out: Option<PathBuf>,
    pub default_out: &'a str,
    pub quick: bool,
    pub keep: bool,
    pub started: Instant,
    pub problems: usize,
    pub dir: &'a Path,
}

impl Finish<'_> {
    pub fn run(self) -> ExitCode {
        let program = self.program;
        println!("{}", self.md);
        let out = self
            .out
            .or_else(|| (!self.quick).then(|| PathBuf::from(self.default_out)));
        if let Some(out) = out {
            match std::fs::write(&out, self.md) {
                Ok(()) => eprintln!("{program}: wrote {}", out.display()),
                Err(e) => {
                    eprintln!("{program}: cannot write {}: {e}", out.display());
                    return ExitCode::FAILURE;
                }
            }
        }
        eprintln!(
            "{program}: finished in {:.0} s{}",
            self.started.elapsed().as_secs_f64(),
            if self.problems == 0 {
                String::new()
            } else {
                format!(", {} problem(s) noted in the report", self.problems)
            }
        );
        if self.problems == 0 && !self.keep {
            let _ = std::fs::remove_dir_all(self.dir);
        } else {
            eprintln!(
                "{program}: logs and raw JSON kept in {}",
                self.dir.display()
            );
        }
        ExitCode::SUCCESS
    }
}
