//! Test helpers: a raw-packet worker written with gearbox-proto, a hung
//! server, a port where nothing listens, and per-kind test generation.
#![allow(dead_code)]

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use gearbox_client::{Client, ServerAddr};
use gearbox_proto::{Codec, Frame, Packet, PacketType};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

/// Generous upper bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(30);

/// Generates `mod gearmand` and `mod gearboxd` with one test each per listed
/// async fn taking a `ServerKind`.
#[macro_export]
macro_rules! against_both {
    ($($name:ident),* $(,)?) => {
        mod gearmand {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(protocol_tests::ServerKind::Gearmand).await
                }
            )*
        }
        mod gearboxd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(protocol_tests::ServerKind::Gearboxd).await
                }
            )*
        }
    };
}

/// One job as a worker received it.
#[derive(Debug, Clone)]
pub struct Assigned {
    pub handle: Bytes,
    pub function: Bytes,
    pub unique: Bytes,
    pub payload: Bytes,
}

/// Sends packets from a handler; the worker writes them in order.
pub type Out = mpsc::UnboundedSender<Packet>;
pub type Handler = Arc<dyn Fn(Assigned, Out) -> BoxFuture<'static, ()> + Send + Sync>;

/// A worker speaking raw packets: CAN_DO, then GRAB_JOB_UNIQ one job at a time.
pub struct RawWorker {
    task: JoinHandle<()>,
    /// Every job it was assigned, in order.
    pub log: Arc<Mutex<Vec<Assigned>>>,
}

impl Drop for RawWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone, Copy)]
pub enum Idle {
    /// PRE_SLEEP and wait for NOOP.
    Sleep,
    /// GRAB again after this long (for gearmand, which never wakes a worker
    /// when an epoch job falls due).
    Poll(Duration),
}

impl RawWorker {
    pub async fn start(port: u16, functions: &[&str], idle: Idle, handler: Handler) -> RawWorker {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("worker connect");
        let mut framed = Framed::new(stream, Codec::default());
        for f in functions {
            framed
                .send(Packet::req(PacketType::CAN_DO, &[f.as_bytes()]))
                .await
                .unwrap();
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let task_log = log.clone();
        let task = tokio::spawn(async move {
            loop {
                framed
                    .send(Packet::req(PacketType::GRAB_JOB_UNIQ, &[]))
                    .await
                    .unwrap();
                let reply = loop {
                    let p = next_packet(&mut framed).await;
                    if p.kind != PacketType::NOOP {
                        break p;
                    }
                };
                match reply.kind {
                    PacketType::JOB_ASSIGN_UNIQ => {
                        let job = Assigned {
                            handle: reply.arg(0).clone(),
                            function: reply.arg(1).clone(),
                            unique: reply.arg(2).clone(),
                            payload: reply.arg(3).clone(),
                        };
                        task_log.lock().unwrap().push(job.clone());
                        let (tx, mut rx) = mpsc::unbounded_channel();
                        let run = handler(job, tx);
                        tokio::pin!(run);
                        loop {
                            tokio::select! {
                                _ = &mut run => break,
                                Some(p) = rx.recv() => framed.send(p).await.unwrap(),
                            }
                        }
                        while let Ok(p) = rx.try_recv() {
                            framed.send(p).await.unwrap();
                        }
                    }
                    PacketType::NO_JOB => match idle {
                        Idle::Sleep => {
                            framed
                                .send(Packet::req(PacketType::PRE_SLEEP, &[]))
                                .await
                                .unwrap();
                            let p = next_packet(&mut framed).await;
                            assert_eq!(p.kind, PacketType::NOOP, "{p:?}");
                        }
                        Idle::Poll(every) => tokio::time::sleep(every).await,
                    },
                    other => panic!("worker got {other:?}: {reply:?}"),
                }
            }
        });
        RawWorker { task, log }
    }

    /// A worker that answers every job with `reply(payload)` at once.
    pub async fn echoing(port: u16, functions: &[&str], reply: fn(&[u8]) -> Vec<u8>) -> RawWorker {
        let handler: Handler = Arc::new(move |job, out| {
            let result = reply(&job.payload);
            Box::pin(async move {
                out.send(complete(&job.handle, &result)).unwrap();
            })
        });
        RawWorker::start(port, functions, Idle::Sleep, handler).await
    }

    pub fn jobs(&self) -> Vec<Assigned> {
        self.log.lock().unwrap().clone()
    }
}

async fn next_packet(framed: &mut Framed<TcpStream, Codec>) -> Packet {
    match framed.next().await {
        Some(Ok(Frame::Packet(p))) => p,
        other => panic!("worker connection: {other:?}"),
    }
}

pub fn reversed(data: &[u8]) -> Vec<u8> {
    data.iter().rev().copied().collect()
}

pub fn data(handle: &[u8], d: &[u8]) -> Packet {
    Packet::req(PacketType::WORK_DATA, &[handle, d])
}
pub fn warning(handle: &[u8], d: &[u8]) -> Packet {
    Packet::req(PacketType::WORK_WARNING, &[handle, d])
}
pub fn status(handle: &[u8], n: u32, d: u32) -> Packet {
    Packet::req(
        PacketType::WORK_STATUS,
        &[handle, n.to_string().as_bytes(), d.to_string().as_bytes()],
    )
}
pub fn complete(handle: &[u8], d: &[u8]) -> Packet {
    Packet::req(PacketType::WORK_COMPLETE, &[handle, d])
}
pub fn fail(handle: &[u8]) -> Packet {
    Packet::req(PacketType::WORK_FAIL, &[handle])
}
pub fn exception(handle: &[u8], d: &[u8]) -> Packet {
    Packet::req(PacketType::WORK_EXCEPTION, &[handle, d])
}

/// A TCP port that refuses connections for as long as the returned socket
/// lives: bound (so nobody else gets the port) but not listening.
pub fn dead_port() -> (socket2::Socket, u16) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&addr.into()).unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    (socket, port)
}

/// A server that accepts connections and never answers (nor reads).
pub struct HungServer {
    pub port: u16,
    task: JoinHandle<()>,
}

impl HungServer {
    pub async fn start() -> HungServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        HungServer { port, task }
    }
}

impl Drop for HungServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn addr(port: u16) -> ServerAddr {
    format!("127.0.0.1:{port}").parse().unwrap()
}

/// A unique whose first choice among `client`'s servers is `first`.
pub fn unique_routed_to(client: &Client, first: &ServerAddr, prefix: &str) -> String {
    (0..10_000)
        .map(|i| format!("{prefix}-{i}"))
        .find(|u| &client.route(u)[0] == first)
        .expect("some unique routes to every server")
}

/// Polls `check` until it returns Some, for at most [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
