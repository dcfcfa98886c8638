//! Raw-socket harness for the server's integration tests.
//!
//! Each test starts its own in-process server on 127.0.0.1:0 and talks to it
//! over plain sockets: packets are built with `gearbox_proto`'s encoders and
//! read back with its `Codec`; admin replies are read as raw bytes so that
//! line endings can be asserted exactly. Every wait has a timeout, so a test
//! fails instead of hanging.

#![allow(dead_code)]

use bytes::BytesMut;
use gearbox_proto::packet::encode_req;
use gearbox_proto::{Codec, Frame, Magic, Packet, PacketType};
use gearbox_server::{Config, Server, ShutdownHandle};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::task::JoinHandle;
use tokio_util::codec::Decoder;

pub use gearbox_proto::PacketType as T;

/// How long any expected reply may take.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long we listen to assert that nothing arrives.
pub const QUIET: Duration = Duration::from_millis(200);
/// The handle prefix every test server uses.
pub const PREFIX: &str = "H:test";

/// The handle of the `n`th new job of a test server.
pub fn handle(n: u64) -> Vec<u8> {
    format!("{PREFIX}:{n}").into_bytes()
}

/// A config listening on an ephemeral loopback port, with a fixed prefix.
pub fn config() -> Config {
    Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        handle_prefix: PREFIX.into(),
        ..Config::default()
    }
}

/// A running in-process server; stopped when dropped.
pub struct TestServer {
    pub addr: Option<SocketAddr>,
    pub config: Config,
    stop: ShutdownHandle,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::with_config(config()).await
    }

    /// Starts a server whose default test config is adjusted by `f`.
    pub async fn with(f: impl FnOnce(&mut Config)) -> TestServer {
        let mut c = config();
        f(&mut c);
        TestServer::with_config(c).await
    }

    pub async fn with_config(config: Config) -> TestServer {
        let server = Server::bind(config.clone()).await.expect("server binds");
        TestServer::run(server, config)
    }

    /// Starts a server with a queue store.
    pub async fn with_store(
        config: Config,
        store: Box<dyn gearbox_server::store::QueueStore>,
    ) -> TestServer {
        let server = Server::bind_with_store(config.clone(), store)
            .await
            .expect("server binds");
        TestServer::run(server, config)
    }

    fn run(server: Server, config: Config) -> TestServer {
        let addr = server.local_addrs().first().copied();
        let stop = server.shutdown_handle();
        let task = tokio::spawn(server.run());
        TestServer {
            addr,
            config,
            stop,
            task: Some(task),
        }
    }

    /// A new TCP connection to the server.
    pub async fn conn(&self) -> Conn {
        let addr = self.addr.expect("server listens on TCP");
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        stream.set_nodelay(true).unwrap();
        Conn::new(Box::new(stream))
    }

    /// A new unix-socket connection to `path`.
    pub async fn unix_conn(&self, path: &Path) -> Conn {
        let stream = tokio::time::timeout(WAIT, UnixStream::connect(path))
            .await
            .expect("connect timed out")
            .expect("unix connect");
        Conn::new(Box::new(stream))
    }

    /// Asks the server to stop now.
    pub fn stop(&self) {
        self.stop.immediate();
    }

    /// Whether `run()` returned (successfully) within `within`.
    pub async fn stopped_within(&mut self, within: Duration) -> bool {
        let Some(task) = self.task.as_mut() else {
            return true;
        };
        match tokio::time::timeout(within, task).await {
            Ok(result) => {
                self.task = None;
                result.expect("server task panicked").expect("run() failed");
                true
            }
            Err(_) => false,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.immediate();
    }
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// One raw connection: writes packets or text, reads packets or text lines.
pub struct Conn {
    stream: Box<dyn Stream>,
    buf: BytesMut,
    codec: Codec,
    eof: bool,
    sync_counter: u64,
}

/// What a read attempt produced.
enum Read {
    Data,
    Eof,
    Timeout,
}

impl Conn {
    pub fn new(stream: Box<dyn Stream>) -> Conn {
        Conn {
            stream,
            buf: BytesMut::new(),
            // The client side accepts whatever size the server sends.
            codec: Codec::new(u32::MAX),
            eof: false,
            sync_counter: 0,
        }
    }

    // ----- writing -------------------------------------------------------------

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        tokio::time::timeout(WAIT, self.stream.write_all(bytes))
            .await
            .expect("write timed out")
            .expect("write");
    }

    /// Sends one request packet built from `args` (joined by NULs).
    pub async fn send(&mut self, kind: PacketType, args: &[&[u8]]) {
        let mut out = BytesMut::new();
        encode_req(&mut out, kind, args);
        self.send_raw(&out).await;
    }

    /// Sends a packet with an arbitrary magic, type number and body.
    pub async fn send_with(&mut self, magic: [u8; 4], kind: u32, body: &[u8]) {
        self.send_raw(&raw_packet(magic, kind, body)).await;
    }

    /// Sends an admin line; `cmd` gets a `\n` appended.
    pub async fn send_line(&mut self, cmd: &str) {
        let mut line = cmd.as_bytes().to_vec();
        line.push(b'\n');
        self.send_raw(&line).await;
    }

    /// Half-closes and drops the connection.
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }

    // ----- reading -------------------------------------------------------------

    async fn read_some(&mut self, until: Instant) -> Read {
        if self.eof {
            return Read::Eof;
        }
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => Read::Timeout,
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.eof = true;
                Read::Eof
            }
            Ok(Ok(_)) => Read::Data,
        }
    }

    /// The next packet, or `None` if nothing complete arrives within `within`.
    /// Panics on EOF, on text where a packet was expected, and on undecodable
    /// bytes.
    pub async fn try_recv(&mut self, within: Duration) -> Option<Packet> {
        let until = Instant::now() + within;
        loop {
            if let Some(first) = self.buf.first() {
                assert_eq!(
                    *first,
                    0,
                    "expected a packet, got text {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                match self.codec.decode(&mut self.buf) {
                    Ok(Some(Frame::Packet(p))) => {
                        assert_eq!(p.magic, Magic::Res, "server sent REQ magic: {p:?}");
                        return Some(p);
                    }
                    Ok(Some(Frame::Text(t))) => panic!("expected a packet, got text {t:?}"),
                    Ok(None) => {}
                    Err(e) => panic!("undecodable bytes from the server: {e}"),
                }
            }
            match self.read_some(until).await {
                Read::Data => {}
                Read::Timeout => return None,
                Read::Eof => panic!(
                    "connection closed while waiting for a packet (buffered: {:?})",
                    self.buf
                ),
            }
        }
    }

    /// The next packet, within [`WAIT`].
    pub async fn recv(&mut self) -> Packet {
        match self.try_recv(WAIT).await {
            Some(p) => p,
            None => panic!("no packet within {WAIT:?}"),
        }
    }

    /// The next packet, which must be of type `kind`.
    pub async fn expect(&mut self, kind: PacketType) -> Packet {
        let p = self.recv().await;
        assert_eq!(p.kind, kind, "expected {}, got {:?}", kind.name(), p);
        p
    }

    /// The next packet must be exactly `kind` with these fields.
    pub async fn expect_packet(&mut self, kind: PacketType, args: &[&[u8]]) {
        let p = self.expect(kind).await;
        let got: Vec<&[u8]> = p.args().iter().map(|a| a.as_ref()).collect();
        assert_eq!(
            show_fields(&got),
            show_fields(args),
            "{} fields differ",
            kind.name()
        );
    }

    /// The next packet must be ERROR `code\0text`.
    pub async fn expect_error(&mut self, code: &str, text: &str) {
        self.expect_packet(T::ERROR, &[code.as_bytes(), text.as_bytes()])
            .await;
    }

    /// The next packet must be ERROR with this code; returns its text.
    pub async fn expect_error_code(&mut self, code: &str) -> String {
        let p = self.expect(T::ERROR).await;
        assert_eq!(s(p.arg(0)), code, "ERROR code (text {:?})", s(p.arg(1)));
        s(p.arg(1))
    }

    /// Nothing at all may arrive within [`QUIET`], and the connection must
    /// stay open.
    pub async fn expect_nothing(&mut self) {
        self.expect_nothing_for(QUIET).await;
    }

    pub async fn expect_nothing_for(&mut self, quiet: Duration) {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes already buffered: {:?}",
            self.buf
        );
        match self.read_some(Instant::now() + quiet).await {
            Read::Timeout => {}
            Read::Data => panic!("expected nothing, got {:?}", self.buf),
            Read::Eof => panic!("expected nothing, but the connection was closed"),
        }
    }

    /// The server must close the connection within [`WAIT`], sending nothing
    /// more than what is already buffered (which must be empty).
    pub async fn expect_closed(&mut self) {
        let until = Instant::now() + WAIT;
        loop {
            match self.read_some(until).await {
                Read::Data => {}
                Read::Eof => break,
                Read::Timeout => panic!("connection still open after {WAIT:?}"),
            }
        }
        assert!(
            self.buf.is_empty(),
            "bytes before the close: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }

    /// One text line, its `\n` (and any `\r`) included.
    pub async fn line(&mut self) -> String {
        let until = Instant::now() + WAIT;
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf.split_to(nl + 1);
                return String::from_utf8_lossy(&line).into_owned();
            }
            match self.read_some(until).await {
                Read::Data => {}
                Read::Timeout => panic!(
                    "no complete line within {WAIT:?} (buffered: {:?})",
                    String::from_utf8_lossy(&self.buf)
                ),
                Read::Eof => panic!(
                    "connection closed while waiting for a line (buffered: {:?})",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Reads lines up to and including the `.\n` that ends a listing.
    pub async fn read_listing(&mut self) -> String {
        let mut out = String::new();
        for _ in 0..100_000 {
            let line = self.line().await;
            out.push_str(&line);
            if line == ".\n" {
                return out;
            }
        }
        panic!("listing never ended: {out:?}");
    }

    /// Sends an admin command (`\n`-terminated) and reads its one-line reply.
    pub async fn admin(&mut self, cmd: &str) -> String {
        self.send_line(cmd).await;
        self.line().await
    }

    /// Sends an admin command (`\n`-terminated) and reads the whole listing.
    pub async fn listing(&mut self, cmd: &str) -> String {
        self.send_line(cmd).await;
        self.read_listing().await
    }

    /// Round-trips an ECHO, so that everything sent before it has been handled.
    /// The ECHO_RES must be the very next packet.
    pub async fn sync(&mut self) {
        self.sync_counter += 1;
        let token = format!("sync-{}", self.sync_counter);
        self.send(T::ECHO_REQ, &[token.as_bytes()]).await;
        self.expect_packet(T::ECHO_RES, &[token.as_bytes()]).await;
    }

    // ----- client helpers --------------------------------------------------------

    /// Submits and returns the handle from JOB_CREATED.
    pub async fn submit(
        &mut self,
        kind: PacketType,
        func: &str,
        unique: &str,
        data: &str,
    ) -> Vec<u8> {
        self.submit_bytes(kind, func.as_bytes(), unique.as_bytes(), data.as_bytes())
            .await
    }

    pub async fn submit_bytes(
        &mut self,
        kind: PacketType,
        func: &[u8],
        unique: &[u8],
        data: &[u8],
    ) -> Vec<u8> {
        self.send(kind, &[func, unique, data]).await;
        self.created().await
    }

    /// Reads a JOB_CREATED and returns its handle.
    pub async fn created(&mut self) -> Vec<u8> {
        let p = self.expect(T::JOB_CREATED).await;
        p.arg(0).to_vec()
    }

    /// SUBMIT_JOB_EPOCH, returning the handle.
    pub async fn submit_epoch(
        &mut self,
        func: &str,
        unique: &str,
        epoch: &str,
        data: &str,
    ) -> Vec<u8> {
        self.send(
            T::SUBMIT_JOB_EPOCH,
            &[
                func.as_bytes(),
                unique.as_bytes(),
                epoch.as_bytes(),
                data.as_bytes(),
            ],
        )
        .await;
        self.created().await
    }

    /// STATUS_RES fields after the handle: known, running, num, den.
    pub async fn get_status(&mut self, handle: &[u8]) -> [String; 4] {
        self.send(T::GET_STATUS, &[handle]).await;
        let p = self.expect(T::STATUS_RES).await;
        assert_eq!(p.arg(0).as_ref(), handle, "STATUS_RES echoes the handle");
        [1, 2, 3, 4].map(|i| String::from_utf8_lossy(p.arg(i)).into_owned())
    }

    // ----- worker helpers --------------------------------------------------------

    /// CAN_DO, then a sync so the registration is in place.
    pub async fn can_do(&mut self, func: &str) {
        self.send(T::CAN_DO, &[func.as_bytes()]).await;
        self.sync().await;
    }

    /// GRAB_JOB that must yield JOB_ASSIGN: (handle, function, data).
    pub async fn grab(&mut self) -> (Vec<u8>, String, Vec<u8>) {
        self.send(T::GRAB_JOB, &[]).await;
        let p = self.expect(T::JOB_ASSIGN).await;
        (
            p.arg(0).to_vec(),
            String::from_utf8_lossy(p.arg(1)).into_owned(),
            p.arg(2).to_vec(),
        )
    }

    /// GRAB_JOB that must yield NO_JOB.
    pub async fn grab_none(&mut self) {
        self.send(T::GRAB_JOB, &[]).await;
        self.expect(T::NO_JOB).await;
    }

    /// PRE_SLEEP, then a sync: no NOOP may come back before the echo.
    pub async fn sleep(&mut self) {
        self.send(T::PRE_SLEEP, &[]).await;
        self.sync().await;
    }
}

/// A packet with any magic, type number and body, for malformed input.
pub fn raw_packet(magic: [u8; 4], kind: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + body.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A request packet's wire bytes.
pub fn req_bytes(kind: PacketType, args: &[&[u8]]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_req(&mut out, kind, args);
    out.to_vec()
}

fn show_fields(fields: &[&[u8]]) -> Vec<String> {
    fields
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

/// Lossy text of a byte field, for assertions.
pub fn s(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `status` listing as function → (total, running, workers).
pub fn parse_status(listing: &str) -> BTreeMap<String, (u32, u32, u32)> {
    parse_rows(listing, 3)
        .into_iter()
        .map(|(k, v)| (k, (v[0], v[1], v[2])))
        .collect()
}

/// A `prioritystatus` listing as function → (high, normal, low, workers).
pub fn parse_priority_status(listing: &str) -> BTreeMap<String, (u32, u32, u32, u32)> {
    parse_rows(listing, 4)
        .into_iter()
        .map(|(k, v)| (k, (v[0], v[1], v[2], v[3])))
        .collect()
}

fn parse_rows(listing: &str, numbers: usize) -> BTreeMap<String, Vec<u32>> {
    assert!(
        listing.ends_with(".\n"),
        "listing must end with .\\n: {listing:?}"
    );
    let mut out = BTreeMap::new();
    for line in listing.lines() {
        if line == "." {
            break;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), numbers + 1, "bad row {line:?}");
        let values = fields[1..]
            .iter()
            .map(|f| {
                f.parse()
                    .unwrap_or_else(|_| panic!("bad number in {line:?}"))
            })
            .collect();
        out.insert(fields[0].to_string(), values);
    }
    out
}

/// A `show jobs` listing as handle → (retries, ignore, queued).
pub fn parse_show_jobs(listing: &str) -> BTreeMap<String, (u32, u32, u32)> {
    parse_status(listing)
}

/// Polls `status` until `f`'s row satisfies `pred`, for at most [`WAIT`].
pub async fn wait_status(
    admin: &mut Conn,
    func: &str,
    pred: impl Fn(Option<(u32, u32, u32)>) -> bool,
) -> Option<(u32, u32, u32)> {
    let until = Instant::now() + WAIT;
    loop {
        let row = parse_status(&admin.listing("status").await)
            .get(func)
            .copied();
        if pred(row) {
            return row;
        }
        assert!(
            Instant::now() < until,
            "status for {func} never matched; last {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Seconds since the epoch.
pub fn now_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
