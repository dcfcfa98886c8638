//! Listeners, the timer task and shutdown.

use crate::config::{Config, Keepalive};
use crate::connection;
use crate::dispatch::Dispatch;
use crate::engine::{Engine, Peer, ShutdownRequest, Signals};
use crate::persistence;
use crate::store::{InMemory, QueueStore};
use socket2::{Domain, SockRef, Socket, TcpKeepalive, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::task::TaskTracker;

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    dispatch: Arc<Dispatch>,
    signals: Arc<Signals>,
    config: Config,
    tcp: Vec<TcpListener>,
    unix: Option<UnixListener>,
}

/// Asks a running server to stop, from a signal handler or a test.
#[derive(Clone)]
pub struct ShutdownHandle {
    signals: Arc<Signals>,
}

impl ShutdownHandle {
    pub fn immediate(&self) {
        self.signals
            .shutdown
            .send_replace(ShutdownRequest::Immediate);
    }

    /// Resolves once a shutdown has been asked for, by a signal handler, a
    /// test or the admin `shutdown` command, and says which kind.
    pub async fn requested(&self) -> ShutdownRequest {
        let mut requests = self.signals.shutdown.subscribe();
        loop {
            let current = *requests.borrow_and_update();
            if current != ShutdownRequest::None {
                return current;
            }
            if requests.changed().await.is_err() {
                return ShutdownRequest::Immediate;
            }
        }
    }

    /// Close the listeners, let running jobs finish, then stop.
    pub fn graceful(&self) {
        self.signals.shutdown.send_if_modified(|r| {
            let changed = *r == ShutdownRequest::None;
            if changed {
                *r = ShutdownRequest::Graceful;
            }
            changed
        });
    }
}

impl Server {
    /// Binds every listener in `config`, with the in-memory queue.
    pub async fn bind(config: Config) -> io::Result<Server> {
        Server::bind_with_store(config, Box::new(InMemory)).await
    }

    pub async fn bind_with_store(config: Config, store: Box<dyn QueueStore>) -> io::Result<Server> {
        let tcp = config
            .listen
            .iter()
            .map(|addr| bind_tcp(*addr, config.backlog))
            .collect::<io::Result<Vec<_>>>()?;
        let unix = match &config.unix_path {
            Some(path) => Some(bind_unix(path, config.unix_mode)?),
            None => None,
        };
        if tcp.is_empty() && unix.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "nothing to listen on",
            ));
        }
        let signals = Arc::new(Signals::default());
        let engine = Engine::with_store(&config, signals.clone(), store);
        Ok(Server {
            dispatch: Arc::new(Dispatch::new(engine)),
            signals,
            config,
            tcp,
            unix,
        })
    }

    /// The TCP addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            signals: self.signals.clone(),
        }
    }

    /// Serves until a shutdown is requested. A graceful one returns once no job
    /// is running; queued jobs stay with the queue store.
    pub async fn run(mut self) -> io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let connections = TaskTracker::new();
        let mut listeners = JoinSet::new();
        for listener in std::mem::take(&mut self.tcp) {
            let spawner = Spawner::new(&self, &stop_rx, &connections);
            listeners.spawn(accept_tcp(listener, spawner));
        }
        if let Some(listener) = self.unix.take() {
            let spawner = Spawner::new(&self, &stop_rx, &connections);
            listeners.spawn(accept_unix(listener, spawner));
        }
        let timers = tokio::spawn(timer_loop(self.dispatch.clone(), self.signals.clone()));
        let (commits, replay) = self
            .dispatch
            .with(|engine| (engine.store_commits(), engine.take_replay()));
        let releases =
            commits.map(|c| tokio::spawn(persistence::release_loop(self.dispatch.clone(), c)));
        if let Some(replay) = replay {
            persistence::spawn_replay(self.dispatch.clone(), replay, stop_rx.clone());
        }

        let peers = self.config.peering.clone().map(|options| {
            crate::peers::Peers::start(self.dispatch.clone(), options, &self.config.server_id)
        });

        let mut requests = self.signals.shutdown.subscribe();
        let request = loop {
            let current = *requests.borrow_and_update();
            if current != ShutdownRequest::None {
                break current;
            }
            if requests.changed().await.is_err() {
                break ShutdownRequest::Immediate;
            }
        };
        listeners.abort_all();
        remove_unix_socket(&self.config);
        if request == ShutdownRequest::Graceful {
            tracing::info!("graceful shutdown: listeners closed, waiting for running jobs");
            self.drain(&mut requests).await;
        }
        if let Some(peers) = peers {
            // The results of pulled jobs that finished go home first.
            peers.close(FLUSH_ON_EXIT).await;
        }
        let queued = self.dispatch.with(|engine| engine.job_count());
        if queued > 0 {
            tracing::warn!(jobs = queued, "stopping with jobs still queued");
        }
        timers.abort();
        // Commit what the store has queued and send the JOB_CREATEDs that
        // waited for it, before the connections go.
        self.dispatch.with(|engine| engine.close_store());
        if let Some(releases) = releases {
            releases.abort();
        }
        // Connections stop reading, and their writers send what is queued
        // (a last WORK_COMPLETE, say) before the process goes.
        let _ = stop_tx.send(true);
        connections.close();
        if tokio::time::timeout(FLUSH_ON_EXIT, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not flush before exit");
        }
        Ok(())
    }

    /// Waits until no job runs, or until an immediate shutdown is asked for.
    async fn drain(&self, requests: &mut watch::Receiver<ShutdownRequest>) {
        self.dispatch.with(|engine| engine.begin_drain());
        loop {
            let idle = self.signals.idle.notified();
            let busy = self
                .dispatch
                .with(|engine| engine.running_jobs() + engine.peer_grabs_in_flight() as u64);
            if busy == 0 {
                return;
            }
            tokio::select! {
                _ = idle => {}
                changed = requests.changed() => {
                    if changed.is_err() || *requests.borrow() == ShutdownRequest::Immediate {
                        return;
                    }
                }
            }
        }
    }
}

/// How long connections get to send their queued bytes when the server stops.
const FLUSH_ON_EXIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Starts connection tasks: what the accept loops share.
struct Spawner {
    dispatch: Arc<Dispatch>,
    max_packet_size: u32,
    keepalive: Option<Keepalive>,
    stop: watch::Receiver<bool>,
    tracker: TaskTracker,
}

impl Spawner {
    fn new(server: &Server, stop: &watch::Receiver<bool>, tracker: &TaskTracker) -> Spawner {
        Spawner {
            dispatch: server.dispatch.clone(),
            max_packet_size: server.config.max_packet_size,
            keepalive: server.config.keepalive.clone(),
            stop: stop.clone(),
            tracker: tracker.clone(),
        }
    }

    fn spawn<R, W>(&self, reader: R, writer: W, peer: Peer)
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
        W: tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let registration = connection::register(&self.dispatch, peer);
        let task = connection::serve(
            self.dispatch.clone(),
            registration,
            reader,
            writer,
            self.max_packet_size,
            self.stop.clone(),
        );
        self.tracker.spawn(task);
    }
}

fn bind_tcp(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Binds the unix socket. A leftover file from a server that is gone is
/// replaced; a socket some live server answers on is not taken over.
fn bind_unix(path: &Path, mode: u32) -> io::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another server is listening on {}", path.display()),
            ));
        }
        tracing::info!(path = %path.display(), "replacing stale unix socket");
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {}: {e}", path.display()),
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

fn remove_unix_socket(config: &Config) {
    if let Some(path) = &config.unix_path {
        let _ = std::fs::remove_file(path);
    }
}

fn set_keepalive(stream: &tokio::net::TcpStream, keepalive: &Keepalive) -> io::Result<()> {
    let mut params = TcpKeepalive::new();
    if let Some(idle) = keepalive.idle {
        params = params.with_time(idle);
    }
    if let Some(interval) = keepalive.interval {
        params = params.with_interval(interval);
    }
    if let Some(count) = keepalive.count {
        params = params.with_retries(count);
    }
    SockRef::from(stream).set_tcp_keepalive(&params)
}

/// Pauses accepting after an error such as EMFILE, instead of spinning.
async fn accept_backoff(error: io::Error) {
    tracing::error!(%error, "accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

async fn accept_tcp(listener: TcpListener, spawner: Spawner) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_backoff(e).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if let Some(keepalive) = &spawner.keepalive {
            if let Err(e) = set_keepalive(&stream, keepalive) {
                tracing::warn!(error = %e, "cannot set TCP keepalive");
            }
        }
        let ip = match addr.ip() {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr.ip(), Into::into),
            v4 => v4,
        };
        let peer = Peer {
            fd: stream.as_raw_fd(),
            host: ip.to_string(),
            local: ip.is_loopback(),
        };
        tracing::debug!(%addr, "accepted");
        let (reader, writer) = stream.into_split();
        spawner.spawn(reader, writer, peer);
    }
}

async fn accept_unix(listener: UnixListener, spawner: Spawner) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                accept_backoff(e).await;
                continue;
            }
        };
        let peer = Peer {
            fd: stream.as_raw_fd(),
            host: "unix".to_string(),
            local: true,
        };
        let (reader, writer) = stream.into_split();
        spawner.spawn(reader, writer, peer);
    }
}

/// Fires epoch and CAN_DO_TIMEOUT deadlines. Sleeps until the next one, or
/// until the engine says an earlier one was added.
async fn timer_loop(dispatch: Arc<Dispatch>, signals: Arc<Signals>) {
    loop {
        let woken = signals.timers.notified();
        let next = dispatch.with(|engine| engine.fire_timers());
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = woken => {}
                }
            }
            None => woken.await,
        }
    }
}
