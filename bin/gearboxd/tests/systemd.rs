//! gearboxd under a service manager: the sd_notify readiness protocol
//! (`Type=notify`) and JSON log lines. Each test runs the real binary and
//! plays systemd's part with its own datagram socket.

mod common;

use common::*;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libc::{kill, SIGHUP, SIGKILL, SIGTERM, SIGUSR1};

/// The service manager's end: a datagram socket gearboxd is told about.
struct NotifySocket {
    socket: UnixDatagram,
    /// The value for NOTIFY_SOCKET.
    name: String,
}

impl NotifySocket {
    fn at_path(path: &Path) -> NotifySocket {
        let socket = UnixDatagram::bind(path).expect("bind notify socket");
        NotifySocket {
            socket,
            name: path.to_str().unwrap().to_string(),
        }
    }

    #[cfg(target_os = "linux")]
    fn abstract_name(name: &str) -> NotifySocket {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).expect("bind abstract notify socket");
        NotifySocket {
            socket,
            name: format!("@{name}"),
        }
    }

    /// Reads datagrams until one assigns `key`; returns that datagram's
    /// assignments. Fails after WAIT.
    fn wait_for(&self, key: &str) -> Vec<(String, String)> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {key} within {WAIT:?}; datagrams seen: {seen:?}"
            );
            self.socket.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 4096];
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => panic!("recv on the notify socket: {e}"),
            };
            let text = String::from_utf8(buf[..n].to_vec()).expect("utf-8 datagram");
            let pairs: Vec<(String, String)> = text
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once('=').expect("KEY=VALUE line");
                    (k.to_string(), v.to_string())
                })
                .collect();
            if pairs.iter().any(|(k, _)| k == key) {
                return pairs;
            }
            seen.push(text);
        }
    }
}

fn value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A gearboxd child, killed on drop if still running.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(notify: &NotifySocket, port: u16, args: &[&str], dir: &Path) -> Server {
        let child = Command::new(BIN)
            .args(["-L", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .env("NOTIFY_SOCKET", &notify.name)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn gearboxd");
        Server { child, port }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of our own child.
        assert_eq!(unsafe { kill(self.child.id() as i32, signal) }, 0);
    }

    /// Waits for exit and returns the status code.
    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "gearboxd did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Connects without retrying: after READY=1 the port must accept at once.
    fn connect_now(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port))
            .expect("the port accepts once READY=1 is sent");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ready_once_serving_then_stopping_on_sigterm() {
    let dir = temp_dir("sd", "ready");
    let notify = NotifySocket::at_path(&dir.join("notify.sock"));
    let port = free_port();
    let mut server = Server::start(&notify, port, &["-l", "none"], &dir);

    let ready = notify.wait_for("READY");
    assert_eq!(value(&ready, "READY"), Some("1"), "{ready:?}");
    assert_eq!(
        value(&ready, "MAINPID"),
        Some(server.pid().to_string().as_str()),
        "{ready:?}"
    );
    let status = value(&ready, "STATUS").expect("a STATUS= text");
    assert!(status.contains(&format!("127.0.0.1:{port}")), "{status}");

    let mut c = server.connect_now();
    assert!(admin_line(&mut c, "version").starts_with("OK "));

    server.signal(SIGTERM);
    let stopping = notify.wait_for("STOPPING");
    assert_eq!(value(&stopping, "STOPPING"), Some("1"), "{stopping:?}");
    assert_eq!(server.wait_exit(), 0);
}

#[test]
fn sigusr1_and_admin_shutdown_say_stopping() {
    let dir = temp_dir("sd", "stops");
    let notify = NotifySocket::at_path(&dir.join("notify.sock"));

    let mut graceful = Server::start(&notify, free_port(), &["-l", "none"], &dir);
    notify.wait_for("READY");
    graceful.signal(SIGUSR1);
    let stopping = notify.wait_for("STOPPING");
    assert!(
        value(&stopping, "STATUS").is_some_and(|s| s.contains("graceful")),
        "{stopping:?}"
    );
    assert_eq!(graceful.wait_exit(), 0);

    let mut admin = Server::start(&notify, free_port(), &["-l", "none"], &dir);
    notify.wait_for("READY");
    let mut c = admin.connect_now();
    assert_eq!(admin_line(&mut c, "shutdown").trim_end(), "OK");
    notify.wait_for("STOPPING");
    assert_eq!(admin.wait_exit(), 0);
}

#[cfg(target_os = "linux")]
#[test]
fn abstract_notify_socket() {
    let dir = temp_dir("sd", "abstract");
    let notify = NotifySocket::abstract_name(&format!("gearboxd-test-{}", std::process::id()));
    let mut server = Server::start(&notify, free_port(), &["-l", "none"], &dir);
    let ready = notify.wait_for("READY");
    assert_eq!(
        value(&ready, "MAINPID"),
        Some(server.pid().to_string().as_str())
    );
    server.signal(SIGTERM);
    notify.wait_for("STOPPING");
    assert_eq!(server.wait_exit(), 0);
}

/// A detached daemon this test started, killed on drop while its pid file is
/// still there.
struct Detached {
    pid: i32,
    pid_file: PathBuf,
}

impl Drop for Detached {
    fn drop(&mut self) {
        if self.pid_file.exists() {
            // SAFETY: the pid is the daemon this test started.
            unsafe { kill(self.pid, SIGKILL) };
        }
    }
}

#[test]
fn daemon_mode_notifies_from_the_detached_process() {
    let dir = temp_dir("sd", "daemon");
    let notify = NotifySocket::at_path(&dir.join("notify.sock"));
    let pid_file = dir.join("d.pid");
    let port = free_port();
    let mut foreground = Command::new(BIN)
        .args([
            "-d",
            "-L",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-l",
            "none",
        ])
        .arg("-P")
        .arg(&pid_file)
        .env("NOTIFY_SOCKET", &notify.name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let foreground_pid = foreground.id();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = foreground.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the foreground process did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());

    let ready = notify.wait_for("READY");
    wait_for(|| pid_file.exists(), "pid file");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let daemon = Detached {
        pid,
        pid_file: pid_file.clone(),
    };
    assert_ne!(pid as u32, foreground_pid);
    assert_eq!(
        value(&ready, "MAINPID"),
        Some(pid.to_string().as_str()),
        "MAINPID is the detached process"
    );
    TcpStream::connect(("127.0.0.1", port)).expect("the daemon accepts once READY=1 is sent");

    // SAFETY: the pid is the daemon this test started.
    assert_eq!(unsafe { kill(daemon.pid, SIGTERM) }, 0);
    notify.wait_for("STOPPING");
    wait_for(|| !pid_file.exists(), "daemon to exit");
}

/// Every line of `text` as a JSON object with a level and a message.
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    assert!(!text.is_empty(), "no log lines");
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            assert!(v["level"].is_string(), "no level: {line}");
            assert!(v["timestamp"].is_string(), "no timestamp: {line}");
            assert!(
                v["fields"]["message"].is_string(),
                "no fields.message: {line}"
            );
            v
        })
        .collect()
}

fn messages(lines: &[serde_json::Value]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|v| v["fields"]["message"].as_str())
        .collect()
}

#[test]
fn json_log_file_has_one_object_per_line_and_reopens_on_sighup() {
    let dir = temp_dir("sd", "json");
    let notify = NotifySocket::at_path(&dir.join("notify.sock"));
    let log = dir.join("g.log");
    let rotated = dir.join("g.log.1");
    let port = free_port();
    let mut server = Server::start(
        &notify,
        port,
        &[
            "--log-format",
            "json",
            "-l",
            log.to_str().unwrap(),
            "--verbose",
            "INFO",
        ],
        &dir,
    );
    // READY comes after the signal handlers are in place, so SIGHUP is safe.
    notify.wait_for("READY");

    // As logrotate does: move the file away, then SIGHUP.
    std::fs::rename(&log, &rotated).unwrap();
    server.signal(SIGHUP);
    wait_for(
        || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("reopened")),
        "the reopened log file",
    );
    server.signal(SIGTERM);
    assert_eq!(server.wait_exit(), 0);

    let before = std::fs::read_to_string(&rotated).unwrap();
    let before = json_lines(&before);
    let listening = before
        .iter()
        .find(|v| v["fields"]["message"] == "listening")
        .unwrap_or_else(|| panic!("no listening line: {before:?}"));
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["fields"]["addr"], format!("127.0.0.1:{port}"));

    let after = std::fs::read_to_string(&log).unwrap();
    let after = json_lines(&after);
    let after = messages(&after);
    assert!(after.iter().any(|m| m.contains("SIGHUP")), "{after:?}");
    assert!(after.iter().any(|m| m.contains("SIGTERM")), "{after:?}");
}

#[test]
fn json_log_on_stderr_and_text_stays_the_default() {
    let port = free_port();
    let dir = temp_dir("sd", "stderr");
    let run = |format: Option<&str>| {
        let mut command = Command::new(BIN);
        command
            .args(["-L", "127.0.0.1", "-p", &port.to_string()])
            .args(["-l", "stderr", "--verbose", "INFO"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(format) = format {
            command.args(["--log-format", format]);
        }
        let notify_path = dir.join(format!("notify-{}.sock", format.unwrap_or("default")));
        let _ = std::fs::remove_file(&notify_path);
        let notify = NotifySocket::at_path(&notify_path);
        command.env("NOTIFY_SOCKET", &notify.name);
        let mut server = Server {
            child: command.spawn().unwrap(),
            port,
        };
        notify.wait_for("READY");
        server.signal(SIGTERM);
        assert_eq!(server.wait_exit(), 0);
        let mut stderr = String::new();
        server
            .child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        stderr
    };

    let json = run(Some("json"));
    let lines = json_lines(&json);
    assert!(messages(&lines).contains(&"listening"), "{json}");

    for text in [run(None), run(Some("text"))] {
        assert!(text.contains("listening"), "{text}");
        assert!(
            text.lines().all(|l| !l.starts_with('{')),
            "text lines: {text}"
        );
    }
}
