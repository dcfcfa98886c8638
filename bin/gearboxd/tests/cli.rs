//! gearboxd as an operator starts it: gearmand's flags, config files, signals,
//! pid file, daemon mode and the unix socket. Each test runs the real binary.

mod common;

use bytes::BytesMut;
use common::*;
use gearbox_proto::packet::encode_req;
use gearbox_proto::{Codec, Frame, Packet, PacketType};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tokio_util::codec::Decoder;

/// A gearboxd child, killed on drop if still running.
struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(port: u16, args: &[&str]) -> Daemon {
        let child = Command::new(BIN)
            .args(["-L", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .current_dir(temp_dir("cli", &format!("run-{port}")))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gearboxd");
        let daemon = Daemon { child, port };
        wait_for(
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "gearboxd to accept",
        );
        daemon
    }

    /// Starts a prepared command and waits for it to accept on `port`.
    fn spawn(command: &mut Command, port: u16) -> Daemon {
        if command.get_current_dir().is_none() {
            command.current_dir(temp_dir("cli", &format!("run-{port}")));
        }
        let child = command
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn gearboxd");
        let daemon = Daemon { child, port };
        wait_for(
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "gearboxd to accept",
        );
        daemon
    }

    fn connect(&self) -> TcpStream {
        connect_tcp(self.port)
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of our own child.
        assert_eq!(unsafe { libc_kill(self.child.id() as i32, signal) }, 0);
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
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

use libc::{kill as libc_kill, SIGINT, SIGTERM, SIGUSR1};

fn connect_tcp(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run gearboxd")
}

/// Reads one packet (or text line) from a blocking stream.
fn read_frame(stream: &mut impl Read) -> Frame {
    let mut codec = Codec::default();
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(frame) = codec.decode(&mut buf).expect("valid frame") {
            return frame;
        }
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn request(stream: &mut (impl Read + Write), kind: PacketType, args: &[&[u8]]) -> Packet {
    let mut out = BytesMut::new();
    encode_req(&mut out, kind, args);
    stream.write_all(&out).unwrap();
    match read_frame(stream) {
        Frame::Packet(p) => p,
        other => panic!("expected a packet, got {other:?}"),
    }
}

fn send(stream: &mut impl Write, kind: PacketType, args: &[&[u8]]) {
    let mut out = BytesMut::new();
    encode_req(&mut out, kind, args);
    stream.write_all(&out).unwrap();
}

#[test]
fn unknown_flags_and_queue_types_fail_with_a_clear_message() {
    let out = run(&["--no-such-flag"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));

    let out = run(&["-q", "mysql"]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mysql") && err.contains("not supported"),
        "{err}"
    );

    let out = run(&["--ssl"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ssl is not supported"));

    let out = run(&["--verbose", "LOUD"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LOUD"));

    // gearmand rejects -v too; only --verbose LEVEL exists.
    assert_ne!(run(&["-v"]).status.code(), Some(0));
}

#[test]
fn help_lists_gearmands_flags() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--port",
        "--listen",
        "--backlog",
        "--threads",
        "--job-retries",
        "--worker-wakeup",
        "--round-robin",
        "--exceptions",
        "--job-handle-prefix",
        "--keepalive",
        "--log-file",
        "--verbose",
        "--pid-file",
        "--daemon",
        "--file-descriptors",
        "--config-file",
        "--queue-type",
        "--unix",
        "--unix-mode",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
}

#[test]
fn flags_reach_the_server() {
    let port = free_port();
    let server = Daemon::start(
        port,
        &[
            "--job-handle-prefix",
            "XP",
            "--verbose",
            "info",
            "-t",
            "1",
            "-b",
            "64",
            "--keepalive",
        ],
    );
    let mut c = server.connect();
    let created = request(&mut c, PacketType::SUBMIT_JOB_BG, &[b"f", b"", b"x"]);
    assert_eq!(created.arg(0).as_ref(), b"XP:1");
    assert_eq!(admin_line(&mut c, "verbose"), "OK INFO\n");
    assert!(admin_line(&mut c, "version").starts_with("OK gearbox-"));
    let pid = admin_line(&mut c, "getpid");
    assert_eq!(pid, format!("OK {}\n", server.child.id()));
}

#[test]
fn exceptions_flag_turns_the_option_on_for_every_connection() {
    let port = free_port();
    let server = Daemon::start(port, &["--exceptions"]);
    let (mut client, mut worker) = (server.connect(), server.connect());
    let handle = request(&mut client, PacketType::SUBMIT_JOB, &[b"f", b"", b"x"])
        .arg(0)
        .clone();
    send(&mut worker, PacketType::CAN_DO, &[b"f"]);
    let assigned = request(&mut worker, PacketType::GRAB_JOB, &[]);
    assert_eq!(assigned.kind, PacketType::JOB_ASSIGN);
    send(&mut worker, PacketType::WORK_EXCEPTION, &[&handle, b"boom"]);
    let got = match read_frame(&mut client) {
        Frame::Packet(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(got.kind, PacketType::WORK_EXCEPTION);
    assert_eq!(got.arg(1).as_ref(), b"boom");
}

#[test]
fn config_file_and_at_file_supply_options_and_the_command_line_wins() {
    let dir = temp_dir("cli", "config");
    let (port_a, port_b) = (free_port(), free_port());
    let conf = dir.join("gearmand.conf");
    std::fs::write(
        &conf,
        format!("# comment\n--port={port_a}\n--listen=127.0.0.1 --job-handle-prefix=FROMFILE\n"),
    )
    .unwrap();
    let from_file = || {
        let mut command = Command::new(BIN);
        command.arg(format!("--config-file={}", conf.display()));
        command
    };
    let server = Daemon::spawn(&mut from_file(), port_a);
    let mut c = server.connect();
    let created = request(&mut c, PacketType::SUBMIT_JOB_BG, &[b"f", b"", b"x"]);
    assert_eq!(created.arg(0).as_ref(), b"FROMFILE:1");
    drop(server);

    let at = dir.join("opts");
    std::fs::write(&at, "--job-handle-prefix=AT\n").unwrap();
    let server = Daemon::start(port_b, &[&format!("@{}", at.display())]);
    let mut c = server.connect();
    assert_eq!(
        request(&mut c, PacketType::SUBMIT_JOB_BG, &[b"f", b"", b"x"])
            .arg(0)
            .as_ref(),
        b"AT:1"
    );
    drop(server);

    // The command line overrides the config file.
    let server = Daemon::spawn(from_file().args(["--job-handle-prefix", "CLI"]), port_a);
    let mut c = server.connect();
    assert_eq!(
        request(&mut c, PacketType::SUBMIT_JOB_BG, &[b"f", b"", b"x"])
            .arg(0)
            .as_ref(),
        b"CLI:1"
    );

    let out = run(&["--config-file", "/nonexistent/gearmand.conf"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/gearmand.conf"));
}

#[test]
fn gearmand_port_environment_variable_is_used_without_dash_p() {
    let port = free_port();
    let mut command = Command::new(BIN);
    command
        .args(["-L", "127.0.0.1"])
        .env("GEARMAND_PORT", port.to_string());
    let _server = Daemon::spawn(&mut command, port);
}

#[test]
fn sigterm_and_sigint_stop_at_once_and_remove_the_pid_file() {
    for signal in [SIGTERM, SIGINT] {
        let dir = temp_dir("cli", &format!("sig{signal}"));
        let pid_file = dir.join("gearboxd.pid");
        let port = free_port();
        let mut server = Daemon::start(port, &["-P", pid_file.to_str().unwrap()]);
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        assert_eq!(pid.trim(), server.child.id().to_string());
        // A running job does not hold up an immediate stop.
        let (mut client, mut worker) = (server.connect(), server.connect());
        request(&mut client, PacketType::SUBMIT_JOB, &[b"f", b"", b"x"]);
        send(&mut worker, PacketType::CAN_DO, &[b"f"]);
        request(&mut worker, PacketType::GRAB_JOB, &[]);
        server.signal(signal);
        assert_eq!(server.wait_exit(), 0);
        assert!(!pid_file.exists(), "pid file left behind");
    }
}

#[test]
fn sigusr1_closes_listeners_and_waits_for_running_jobs() {
    let port = free_port();
    let mut server = Daemon::start(port, &[]);
    let (mut client, mut worker) = (server.connect(), server.connect());
    let handle = request(&mut client, PacketType::SUBMIT_JOB, &[b"f", b"", b"x"])
        .arg(0)
        .clone();
    send(&mut worker, PacketType::CAN_DO, &[b"f"]);
    request(&mut worker, PacketType::GRAB_JOB, &[]);
    server.signal(SIGUSR1);
    wait_for(
        || TcpStream::connect(("127.0.0.1", port)).is_err(),
        "listener to close",
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "exited with a job running"
    );
    send(&mut worker, PacketType::WORK_COMPLETE, &[&handle, b"done"]);
    match read_frame(&mut client) {
        Frame::Packet(p) => {
            assert_eq!(p.kind, PacketType::WORK_COMPLETE);
            assert_eq!(p.arg(1).as_ref(), b"done");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.wait_exit(), 0);
}

#[test]
fn admin_shutdown_stops_the_server() {
    let port = free_port();
    let mut server = Daemon::start(port, &[]);
    let mut c = server.connect();
    assert_eq!(admin_line(&mut c, "shutdown"), "OK\r\n");
    assert_eq!(server.wait_exit(), 0);
}

#[test]
fn unix_socket_serves_with_its_mode_and_replaces_a_stale_file() {
    let dir = temp_dir("cli", "unix");
    let path = dir.join("gearbox.sock");
    // A stale socket: bound once, its listener gone.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let port = free_port();
    let server = Daemon::start(
        port,
        &["--unix", path.to_str().unwrap(), "--unix-mode", "0600"],
    );
    wait_for(|| UnixStream::connect(&path).is_ok(), "unix socket");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Submit over the unix socket, work over TCP.
    let mut client = UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let handle = request(&mut client, PacketType::SUBMIT_JOB, &[b"rev", b"", b"abc"])
        .arg(0)
        .clone();
    let mut worker = server.connect();
    send(&mut worker, PacketType::CAN_DO, &[b"rev"]);
    let job = request(&mut worker, PacketType::GRAB_JOB, &[]);
    assert_eq!(job.arg(2).as_ref(), b"abc");
    send(&mut worker, PacketType::WORK_COMPLETE, &[&handle, b"cba"]);
    match read_frame(&mut client) {
        Frame::Packet(p) => assert_eq!(p.arg(1).as_ref(), b"cba"),
        other => panic!("{other:?}"),
    }

    // A second server must not take over a live socket.
    let out = Command::new(BIN)
        .args([
            "-L",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "--unix",
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another server is listening"));
}

#[test]
fn unix_socket_default_mode_is_0660() {
    let dir = temp_dir("cli", "unixmode");
    let path = dir.join("g.sock");
    let _server = Daemon::start(free_port(), &["--unix", path.to_str().unwrap()]);
    wait_for(|| path.exists(), "socket file");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o660
    );
}

#[test]
fn daemon_mode_detaches_and_writes_the_pid_file() {
    let dir = temp_dir("cli", "daemon");
    let pid_file = dir.join("d.pid");
    let log = dir.join("d.log");
    let port = free_port();
    let status = Command::new(BIN)
        .args([
            "-d",
            "-L",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--verbose",
            "INFO",
        ])
        .args([
            "-P",
            pid_file.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the foreground process exits 0 after forking"
    );
    wait_for(|| pid_file.exists(), "pid file");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(
        || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "daemon to accept",
    );
    let mut c = connect_tcp(port);
    assert_eq!(admin_line(&mut c, "getpid"), format!("OK {pid}\n"));
    // SAFETY: the pid is the daemon this test started.
    assert_eq!(unsafe { libc_kill(pid, SIGTERM) }, 0);
    wait_for(|| !pid_file.exists(), "daemon to exit");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("listening"), "log file: {logged}");
}

#[test]
fn log_file_receives_structured_lines() {
    let dir = temp_dir("cli", "log");
    let log = dir.join("g.log");
    let port = free_port();
    let mut server = Daemon::start(port, &["-l", log.to_str().unwrap(), "--verbose", "INFO"]);
    let mut c = server.connect();
    c.write_all(b"\0XYZ\0\0\0\x01\0\0\0\0").unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    server.signal(SIGTERM);
    server.wait_exit();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("listening") && text.contains("malformed"),
        "{text}"
    );
    assert!(Path::new(&log).exists());
}

/// Sends an admin line and reads its listing up to the final `.` line.
fn admin_listing(stream: &mut (impl Read + Write), line: &str) -> String {
    stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !(reply == b".\n" || reply.ends_with(b"\n.\n")) {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "connection closed");
        reply.push(byte[0]);
    }
    String::from_utf8(reply).unwrap()
}

#[test]
fn peers_come_from_the_command_line_and_the_config_file() {
    let dir = temp_dir("cli", "peers");
    let port = free_port();
    let (a, b) = (free_port(), free_port());
    let conf = dir.join("gearmand.conf");
    std::fs::write(
        &conf,
        format!("--port={port} --listen=127.0.0.1\n--peer=127.0.0.1:{a} --peer-function=resize\n"),
    )
    .unwrap();
    let mut command = Command::new(BIN);
    command
        .arg(format!("--config-file={}", conf.display()))
        .args(["--peer", &format!("[::1]:{b}")]);
    let server = Daemon::spawn(&mut command, port);
    let mut c = server.connect();
    // No local worker yet, so no link: both peers are idle.
    let listing = admin_listing(&mut c, "peers");
    assert_eq!(
        listing,
        format!("127.0.0.1:{a}\tidle\t0\t0\t0\t-\t-\n[::1]:{b}\tidle\t0\t0\t0\t-\t-\n.\n")
    );

    let out = run(&["--peer", "127.0.0.1:notaport"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad port"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn peers_without_peers_is_an_empty_listing_and_serverid_names_the_server() {
    let server = Daemon::start(free_port(), &["--server-id", "fe-7"]);
    let mut c = server.connect();
    assert_eq!(admin_listing(&mut c, "peers"), ".\n");
    assert_eq!(admin_line(&mut c, "serverid"), "OK fe-7\n");
    let out = run(&["--server-id", "has space"]);
    assert_ne!(out.status.code(), Some(0));
}
