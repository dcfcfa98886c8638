//! Helpers for the worker tests: raw-packet clients (built on gearbox-proto, not
//! on the client SDK), the admin protocol, and servers we can stop and restart
//! on the same port.

#![allow(dead_code)]

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gearbox_proto::{Codec, Frame, Packet, PacketType};
use protocol_tests::{gearboxd_path, ServerKind};
use std::collections::HashMap;
use std::future::Future;
use std::net::TcpStream as StdTcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Upper bound for anything a test waits for. Only "does not hang": never a
/// speed claim.
pub const LIMIT: Duration = Duration::from_secs(20);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Awaits `fut`, failing the test with `what` after [`LIMIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {LIMIT:?}: {what}"),
    }
}

/// Polls `cond` every 10 ms until it holds, failing after [`LIMIT`].
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > LIMIT {
            panic!("timed out after {LIMIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A raw binary-protocol connection.
pub struct Raw {
    framed: Framed<TcpStream, Codec>,
}

impl Raw {
    pub async fn connect(port: u16) -> Raw {
        let stream = within("connect", TcpStream::connect(("127.0.0.1", port)))
            .await
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        stream.set_nodelay(true).unwrap();
        Raw {
            framed: Framed::new(stream, Codec::default()),
        }
    }

    pub async fn send(&mut self, p: Packet) {
        within("send", self.framed.send(p)).await.expect("send");
    }

    pub async fn feed(&mut self, p: Packet) {
        within("feed", self.framed.feed(p)).await.expect("feed");
    }

    pub async fn flush(&mut self) {
        within("flush", SinkExt::<Packet>::flush(&mut self.framed))
            .await
            .expect("flush");
    }

    pub async fn recv(&mut self) -> Packet {
        match within("a packet from the server", self.framed.next()).await {
            Some(Ok(Frame::Packet(p))) => p,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    /// OPTION_REQ exceptions, so WORK_EXCEPTION reaches this client as such.
    pub async fn enable_exceptions(&mut self) {
        self.send(Packet::req(PacketType::OPTION_REQ, &[b"exceptions"]))
            .await;
        let p = self.recv().await;
        assert_eq!(p.kind, PacketType::OPTION_RES, "{p:?}");
    }

    /// Submits a foreground job and returns its handle.
    pub async fn submit(&mut self, function: &str, data: &[u8]) -> Bytes {
        self.send(Packet::req(
            PacketType::SUBMIT_JOB,
            &[function.as_bytes(), b"", data],
        ))
        .await;
        let p = self.recv().await;
        assert_eq!(p.kind, PacketType::JOB_CREATED, "{p:?}");
        p.arg(0).clone()
    }

    /// Reads packets for a foreground job until its terminal packet; returns
    /// all of them.
    pub async fn until_done(&mut self) -> Vec<Packet> {
        let mut seen = Vec::new();
        loop {
            let p = self.recv().await;
            let end = matches!(
                p.kind,
                PacketType::WORK_COMPLETE | PacketType::WORK_FAIL | PacketType::WORK_EXCEPTION
            );
            seen.push(p);
            if end {
                return seen;
            }
        }
    }
}

/// Submits `n` background jobs of `function` (payload `prefix-i`), pipelined.
pub async fn submit_bg(port: u16, function: &str, prefix: &str, n: usize) {
    let mut raw = Raw::connect(port).await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        for i in chunk {
            let data = format!("{prefix}-{i}");
            raw.feed(Packet::req(
                PacketType::SUBMIT_JOB_BG,
                &[function.as_bytes(), b"", data.as_bytes()],
            ))
            .await;
        }
        raw.flush().await;
        for _ in chunk {
            let p = raw.recv().await;
            assert_eq!(p.kind, PacketType::JOB_CREATED, "{p:?}");
        }
    }
}

/// Sends an admin command and returns the reply lines (without the final `.`
/// of listings).
pub async fn admin(port: u16, cmd: &str) -> Vec<String> {
    let mut s = within("admin connect", TcpStream::connect(("127.0.0.1", port)))
        .await
        .expect("admin connect");
    s.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let listing = matches!(cmd, "status" | "workers" | "show jobs" | "prioritystatus");
    within("admin reply", async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.expect("admin read");
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if listing {
                if buf == b".\n" || buf.ends_with(b"\n.\n") {
                    break;
                }
            } else if buf.ends_with(b"\n") {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.lines()
        .filter(|l| *l != ".")
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect()
}

/// `status`: function → (total, running, workers).
pub async fn status(port: u16) -> HashMap<String, (u64, u64, u64)> {
    admin(port, "status")
        .await
        .into_iter()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 4 {
                return None;
            }
            Some((
                f[0].to_string(),
                (f[1].parse().ok()?, f[2].parse().ok()?, f[3].parse().ok()?),
            ))
        })
        .collect()
}

pub async fn fn_status(port: u16, function: &str) -> (u64, u64, u64) {
    status(port)
        .await
        .get(function)
        .copied()
        .unwrap_or((0, 0, 0))
}

/// A server on a port we choose, so it can be stopped and started again on
/// the same port (TestServer picks a fresh port each time).
pub struct OwnServer {
    pub kind: ServerKind,
    pub port: u16,
    child: Option<Child>,
    dir: std::path::PathBuf,
}

impl OwnServer {
    pub fn start(kind: ServerKind, port: u16) -> OwnServer {
        let dir = protocol_tests::unique_temp_dir(&format!("worker-{}", kind.name()));
        let mut s = OwnServer {
            kind,
            port,
            child: None,
            dir,
        };
        s.restart();
        s
    }

    pub fn restart(&mut self) {
        self.stop();
        let port = self.port.to_string();
        let mut args: Vec<String> = vec!["-p".into(), port, "-L".into(), "127.0.0.1".into()];
        let program = match self.kind {
            ServerKind::Gearmand => {
                args.extend([
                    "-l".into(),
                    self.dir.join("gearmand.log").to_string_lossy().into_owned(),
                    "-P".into(),
                    self.dir.join("gearmand.pid").to_string_lossy().into_owned(),
                ]);
                "gearmand".into()
            }
            ServerKind::Gearboxd => {
                // In memory, like gearmand here: a restart starts empty.
                args.extend(["-l".into(), "stderr".into(), "-q".into(), "builtin".into()]);
                gearboxd_path()
            }
        };
        // The old process's port may take a moment to be free again.
        let start = Instant::now();
        loop {
            let mut child = Command::new(&program)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn server");
            let accepting = loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break false;
                }
                if StdTcpStream::connect_timeout(
                    &format!("127.0.0.1:{}", self.port).parse().unwrap(),
                    Duration::from_millis(200),
                )
                .is_ok()
                {
                    std::thread::sleep(Duration::from_millis(20));
                    break matches!(child.try_wait(), Ok(None));
                }
                if start.elapsed() > LIMIT {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if accepting {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            if start.elapsed() > LIMIT {
                panic!("{} did not start on port {}", self.kind.name(), self.port);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: connections drop at once, as when a host dies.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Declares one test per server kind: `name_gearmand` and `name_gearboxd`,
/// each running `body(kind)`.
#[macro_export]
macro_rules! both_servers {
    ($name:ident, $body:ident) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn gearmand() {
                $crate::common::init_tracing();
                $body(protocol_tests::ServerKind::Gearmand).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn gearboxd() {
                $crate::common::init_tracing();
                $body(protocol_tests::ServerKind::Gearboxd).await;
            }
        }
    };
}

/// Starts a TestServer off the async runtime (it blocks, and may build gearboxd).
pub async fn start(kind: ServerKind) -> protocol_tests::TestServer {
    tokio::task::spawn_blocking(move || protocol_tests::TestServer::start(kind))
        .await
        .expect("start server")
}

/// How a [`FakeServer`] answers GRAB_JOB_UNIQ.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum GrabReply {
    NoJob,
    Never,
    /// Answers nothing at all, not even ECHO_REQ.
    Silent,
}

/// A scripted server: answers ECHO_REQ, answers GRABs as told, records every
/// packet type it receives, and can push packets (NOOP) to its connections.
pub struct FakeServer {
    pub port: u16,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<PacketType>>>,
    push: tokio::sync::broadcast::Sender<Packet>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    pub async fn start(grab: GrabReply) -> FakeServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received: std::sync::Arc<std::sync::Mutex<Vec<PacketType>>> = Default::default();
        let (push, _) = tokio::sync::broadcast::channel(16);
        let (rec, push2) = (received.clone(), push.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                rec.lock().unwrap().push(PacketType::UNUSED); // marks a new connection
                let rec = rec.clone();
                let mut pushed = push2.subscribe();
                tokio::spawn(async move {
                    let mut framed = Framed::new(stream, Codec::default());
                    loop {
                        tokio::select! {
                            frame = framed.next() => {
                                let Some(Ok(Frame::Packet(p))) = frame else { return };
                                rec.lock().unwrap().push(p.kind);
                                let reply = match p.kind {
                                    PacketType::ECHO_REQ if grab != GrabReply::Silent => Some(Packet::res(PacketType::ECHO_RES, &[p.arg(0)])),
                                    PacketType::GRAB_JOB_UNIQ if grab == GrabReply::NoJob => Some(Packet::res(PacketType::NO_JOB, &[])),
                                    _ => None,
                                };
                                if let Some(r) = reply {
                                    if framed.send(r).await.is_err() { return; }
                                }
                            }
                            p = pushed.recv() => {
                                let Ok(p) = p else { return };
                                if framed.send(p).await.is_err() { return; }
                            }
                        }
                    }
                });
            }
        });
        FakeServer {
            port,
            received,
            push,
            task,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn count(&self, kind: PacketType) -> usize {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|k| **k == kind)
            .count()
    }

    pub fn push(&self, p: Packet) {
        let _ = self.push.send(p);
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
