//! gearbox-worker: run Rust functions as Gearman jobs, against one or many job
//! servers (gearboxd or gearmand).
//!
//! ```no_run
//! use gearbox_worker::{Worker, JobError};
//! use std::time::Duration;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let worker = Worker::builder()
//!     .server("127.0.0.1:4730")
//!     .server("unix:/run/gearbox.sock")
//!     .function("reverse", |job| async move {
//!         let mut data = job.payload().to_vec();
//!         data.reverse();
//!         Ok::<_, JobError>(data)
//!     })
//!     .blocking_function("sha", |job| Ok::<_, JobError>(job.payload().clone()))
//!     .concurrency(8)
//!     .build()?;
//! worker.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```
//!
//! What it does differently from libgearman's worker:
//!
//! * **One global limit.** `concurrency(n)` bounds the jobs this worker holds
//!   across *all* servers, and a GRAB is only sent once a slot is reserved for
//!   its job. Nothing waits in a local queue: a job queued here is a job another
//!   worker could have run (gearman-go#14).
//! * **Fair across servers.** Grabs rotate over the servers that may have work,
//!   so two backlogged servers get equal service even with a limit of 1
//!   (libgearman drains the first server in its list). A server that answered
//!   NO_JOB gets PRE_SLEEP and is left alone until it sends NOOP. Grabs use
//!   GRAB_JOB_UNIQ (gearmand and gearboxd accept it), so handlers see the
//!   client's unique id.
//! * **Dead and hung servers cost nothing.** Connects are bounded; a new
//!   connection must answer an ECHO probe before it gets a grab; a server that
//!   fails, closes, or leaves a GRAB or probe unanswered for `response_timeout`
//!   is dropped (the server re-queues what it had given us), its slot is used
//!   elsewhere at once, and it is retried in the background after an
//!   exponential cooldown with jitter. Functions and the client id are
//!   registered again on every connection. [`WorkerHandle::health`] exposes each
//!   server's state and transitions are logged with `tracing`.
//! * **Back-pressure.** A handler that reports an overloaded downstream
//!   ([`JobError::Overloaded`], [`Job::overloaded`]) makes the worker space its
//!   grabs by a growing delay, which shrinks again as jobs succeed.
//! * **Graceful shutdown.** Stop grabbing, let running jobs finish within a
//!   deadline, then RESET_ABILITIES and close.
//!
//! # Limits worth knowing
//!
//! * A server that answers the ECHO probe but then leaves a GRAB unanswered
//!   holds one job slot for up to `response_timeout` per connection; its
//!   failure count (and so its cooldown) keeps growing until it answers a GRAB
//!   again, so the cost shrinks as the outage lasts. Until a connection has
//!   answered one GRAB, only one GRAB at a time is sent on it.
//! * A server that said NO_JOB is asleep (PRE_SLEEP) as far as it knows, even
//!   while every slot is busy with jobs from other servers. gearboxd wakes one
//!   sleeper per new job (gearmand wakes all), so a job arriving then can wait
//!   for this worker's next free slot while another sleeping worker stays
//!   asleep. At most one such wake-up per server is held: gearboxd wakes
//!   another sleeper for the next job. The protocol has no way to withdraw
//!   from sleep short of a GRAB, which would over-grab.
//! * Results go back on the connection the job came on (gearmand accepts
//!   WORK_* only from the owning connection). If it died meanwhile, the
//!   result is dropped with a log line and counted in
//!   [`WorkerStats::results_dropped`]; the server has re-queued the job.
//! * Handlers of a connection that died keep running to the end: their work
//!   is not undone by stopping it, and the server gives the job to another
//!   worker either way.

mod backpressure;
mod conn;
mod driver;
mod job;
mod run;

pub use backpressure::BackpressurePolicy;
pub use gearbox_client::{BackoffPolicy, Health, ServerAddr};
pub use job::{ConnectionLost, Job, JobError, JobResult};

use bytes::Bytes;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = JobResult> + Send>>;

#[derive(Clone)]
pub(crate) enum Handler {
    Async(Arc<dyn Fn(Job) -> BoxFuture + Send + Sync>),
    Blocking(Arc<dyn Fn(Job) -> JobResult + Send + Sync>),
}

#[derive(Clone)]
pub(crate) struct Function {
    pub name: String,
    pub timeout: Option<Duration>,
    pub handler: Handler,
}

/// Everything the builder collects; shared read-only by all tasks.
pub(crate) struct Config {
    pub functions: Vec<Function>,
    pub concurrency: usize,
    pub client_id: Option<String>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub idle_probe: Duration,
    pub backoff: BackoffPolicy,
    pub backpressure: BackpressurePolicy,
    pub overload_retries: u32,
    pub shutdown_timeout: Duration,
}

/// Anything that names a server: `"host:port"`, `"host"` (port 4730),
/// `"[::1]:4730"`, `"unix:/path"`, or a parsed [`ServerAddr`].
pub trait IntoServerAddr {
    fn into_server_addr(self) -> Result<ServerAddr, String>;
}

impl IntoServerAddr for ServerAddr {
    fn into_server_addr(self) -> Result<ServerAddr, String> {
        Ok(self)
    }
}

impl IntoServerAddr for &str {
    fn into_server_addr(self) -> Result<ServerAddr, String> {
        self.parse()
    }
}

impl IntoServerAddr for String {
    fn into_server_addr(self) -> Result<ServerAddr, String> {
        self.parse()
    }
}

impl IntoServerAddr for &String {
    fn into_server_addr(self) -> Result<ServerAddr, String> {
        self.parse()
    }
}

/// Why [`WorkerBuilder::build`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    NoServers,
    NoFunctions,
    BadServer(String),
    DuplicateFunction(String),
    ZeroConcurrency,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NoServers => f.write_str("no server given"),
            BuildError::NoFunctions => f.write_str("no function registered"),
            BuildError::BadServer(e) => write!(f, "bad server address: {e}"),
            BuildError::DuplicateFunction(name) => {
                write!(f, "function `{name}` registered twice")
            }
            BuildError::ZeroConcurrency => f.write_str("concurrency must be at least 1"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Builds a [`Worker`]. Start with [`Worker::builder`].
pub struct WorkerBuilder {
    servers: Vec<Result<ServerAddr, String>>,
    functions: Vec<Function>,
    concurrency: usize,
    client_id: Option<String>,
    connect_timeout: Duration,
    response_timeout: Duration,
    idle_probe: Duration,
    backoff: BackoffPolicy,
    backpressure: BackpressurePolicy,
    overload_retries: u32,
    shutdown_timeout: Duration,
}

fn boxed_async<F, Fut, R>(handler: F) -> Handler
where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, JobError>> + Send + 'static,
    R: Into<Bytes>,
{
    Handler::Async(Arc::new(move |job| {
        let fut = handler(job);
        Box::pin(async move { fut.await.map(Into::into) })
    }))
}

fn boxed_blocking<F, R>(handler: F) -> Handler
where
    F: Fn(Job) -> Result<R, JobError> + Send + Sync + 'static,
    R: Into<Bytes>,
{
    Handler::Blocking(Arc::new(move |job| handler(job).map(Into::into)))
}

impl WorkerBuilder {
    fn new() -> WorkerBuilder {
        WorkerBuilder {
            servers: Vec::new(),
            functions: Vec::new(),
            concurrency: 1,
            client_id: None,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            idle_probe: Duration::from_secs(30),
            backoff: BackoffPolicy::default(),
            backpressure: BackpressurePolicy::default(),
            overload_retries: 0,
            shutdown_timeout: Duration::from_secs(30),
        }
    }

    /// Adds a job server. May be called many times; jobs are taken from all of
    /// them in rotation. An address that does not parse makes `build` fail.
    pub fn server(mut self, addr: impl IntoServerAddr) -> Self {
        self.servers.push(addr.into_server_addr());
        self
    }

    /// Adds several servers (see [`server`](Self::server)).
    pub fn servers<A: IntoServerAddr>(mut self, addrs: impl IntoIterator<Item = A>) -> Self {
        for a in addrs {
            self = self.server(a);
        }
        self
    }

    fn push(mut self, name: &str, timeout: Option<Duration>, handler: Handler) -> Self {
        self.functions.push(Function {
            name: name.to_string(),
            timeout,
            handler,
        });
        self
    }

    /// Registers `name` (CAN_DO) with an async handler, run on the tokio
    /// runtime. The handler's result becomes WORK_COMPLETE; see [`JobError`]
    /// for the other endings. A panic becomes WORK_FAIL and the worker goes on.
    pub fn function<F, Fut, R>(self, name: &str, handler: F) -> Self
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, JobError>> + Send + 'static,
        R: Into<Bytes>,
    {
        self.push(name, None, boxed_async(handler))
    }

    /// Like [`function`](Self::function), registered with CAN_DO_TIMEOUT: the
    /// server re-queues the job if no result arrives within `timeout` (gearmand
    /// and gearboxd read milliseconds and raise anything below one second to
    /// one second). The worker also gives up on the handler one second after
    /// the timeout (it drops an async handler's future) and sends WORK_FAIL.
    /// That late WORK_FAIL is a safety net for gearmand, whose timer is lost
    /// when a worker sends PRE_SLEEP while holding a job (docs/compat.md C2);
    /// where the server did re-queue the job it answers JOB_NOT_FOUND, which is
    /// harmless.
    pub fn function_with_timeout<F, Fut, R>(self, name: &str, timeout: Duration, handler: F) -> Self
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, JobError>> + Send + 'static,
        R: Into<Bytes>,
    {
        self.push(name, Some(timeout), boxed_async(handler))
    }

    /// Registers `name` with a blocking handler, run with
    /// `tokio::task::spawn_blocking` so that CPU-bound or blocking-I/O code
    /// never stalls the runtime that keeps the connections alive.
    pub fn blocking_function<F, R>(self, name: &str, handler: F) -> Self
    where
        F: Fn(Job) -> Result<R, JobError> + Send + Sync + 'static,
        R: Into<Bytes>,
    {
        self.push(name, None, boxed_blocking(handler))
    }

    /// A blocking handler with CAN_DO_TIMEOUT (see
    /// [`function_with_timeout`](Self::function_with_timeout)). A thread cannot
    /// be stopped: after the timeout its slot is freed and its result discarded,
    /// but the thread runs on until the function returns.
    pub fn blocking_function_with_timeout<F, R>(
        self,
        name: &str,
        timeout: Duration,
        handler: F,
    ) -> Self
    where
        F: Fn(Job) -> Result<R, JobError> + Send + Sync + 'static,
        R: Into<Bytes>,
    {
        self.push(name, Some(timeout), boxed_blocking(handler))
    }

    /// The most jobs this worker holds at once, over all servers together
    /// (default 1). Unlike per-server limits, adding a server does not
    /// multiply the load a worker takes on.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// SET_CLIENT_ID sent on every connection; shown by the `workers` admin
    /// command, which is how operators tell workers apart.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// Bound on one connect, name resolution included (default 5 s). A
    /// black-holed address would otherwise wait for the kernel's SYN retries
    /// (about two minutes).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// How long a server may leave a GRAB or an ECHO probe unanswered before it
    /// is treated as hung (default 10 s): the connection is dropped, the server
    /// cools down, and the job slot the GRAB held is used elsewhere.
    pub fn response_timeout(mut self, t: Duration) -> Self {
        self.response_timeout = t;
        self
    }

    /// How long a connection may stay silent before it is probed with ECHO
    /// (default 30 s). The probe also re-sends PRE_SLEEP to a sleeping server,
    /// so a lost NOOP wake-up costs at most this long.
    pub fn idle_probe(mut self, t: Duration) -> Self {
        self.idle_probe = t;
        self
    }

    /// Cooldown of a failed server: exponential from `min` to `max`, with
    /// jitter so that a fleet of workers does not reconnect in lockstep.
    pub fn backoff(mut self, policy: BackoffPolicy) -> Self {
        self.backoff = policy;
        self
    }

    /// How the grab delay reacts to overloaded downstreams.
    pub fn backpressure(mut self, policy: BackpressurePolicy) -> Self {
        self.backpressure = policy;
        self
    }

    /// How many times a job whose handler returned [`JobError::Overloaded`] is
    /// run again in place, after waiting the current back-pressure delay and
    /// keeping its slot, before it ends with WORK_FAIL (default 0). Useful for
    /// background jobs, whose submitter cannot retry.
    pub fn overload_retries(mut self, n: u32) -> Self {
        self.overload_retries = n;
        self
    }

    /// Deadline [`Worker::run`] gives running jobs once its shutdown future
    /// resolves (default 30 s).
    pub fn shutdown_timeout(mut self, t: Duration) -> Self {
        self.shutdown_timeout = t;
        self
    }

    pub fn build(self) -> Result<Worker, BuildError> {
        let mut servers = Vec::new();
        for s in self.servers {
            let addr = s.map_err(BuildError::BadServer)?;
            if !servers.contains(&addr) {
                servers.push(addr);
            }
        }
        if servers.is_empty() {
            return Err(BuildError::NoServers);
        }
        if self.functions.is_empty() {
            return Err(BuildError::NoFunctions);
        }
        for (i, f) in self.functions.iter().enumerate() {
            if self.functions[..i].iter().any(|g| g.name == f.name) {
                return Err(BuildError::DuplicateFunction(f.name.clone()));
            }
        }
        if self.concurrency == 0 {
            return Err(BuildError::ZeroConcurrency);
        }
        let cfg = Config {
            functions: self.functions,
            concurrency: self.concurrency,
            client_id: self.client_id,
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            idle_probe: self.idle_probe,
            backoff: self.backoff,
            backpressure: self.backpressure,
            overload_retries: self.overload_retries,
            shutdown_timeout: self.shutdown_timeout,
        };
        let shared = Arc::new(Shared {
            servers: servers
                .into_iter()
                .map(|a| Arc::new(conn::ServerShared::new(a)))
                .collect(),
            stats: Counters::default(),
            backpressure_us: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            shutdown: CancellationToken::new(),
            deadline: Mutex::new(None),
        });
        Ok(Worker {
            cfg: Arc::new(cfg),
            shared,
        })
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    pub exceptions: AtomicU64,
    pub panics: AtomicU64,
    pub overloaded: AtomicU64,
    pub timed_out: AtomicU64,
    pub results_dropped: AtomicU64,
}

/// State visible through [`WorkerHandle`].
pub(crate) struct Shared {
    pub servers: Vec<Arc<conn::ServerShared>>,
    pub stats: Counters,
    pub backpressure_us: AtomicU64,
    pub running: AtomicUsize,
    pub shutdown: CancellationToken,
    pub deadline: Mutex<Option<Duration>>,
}

/// A configured worker. Nothing connects until [`run`](Worker::run) or
/// [`spawn`](Worker::spawn).
pub struct Worker {
    cfg: Arc<Config>,
    shared: Arc<Shared>,
}

impl Worker {
    pub fn builder() -> WorkerBuilder {
        WorkerBuilder::new()
    }

    /// A handle for health, statistics and shutdown; valid before, during and
    /// after the run.
    pub fn handle(&self) -> WorkerHandle {
        WorkerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Each server's health (see [`WorkerHandle::health`]).
    pub fn health(&self) -> Vec<(ServerAddr, Health)> {
        self.handle().health()
    }

    /// Starts the worker on the current tokio runtime.
    pub fn spawn(self) -> RunningWorker {
        let handle = self.handle();
        let join = tokio::spawn(driver::run(self.cfg, self.shared));
        RunningWorker { handle, join }
    }

    /// Runs until `shutdown` resolves, then shuts down gracefully, giving
    /// running jobs [`shutdown_timeout`](WorkerBuilder::shutdown_timeout).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> ShutdownReport {
        let deadline = self.cfg.shutdown_timeout;
        let running = self.spawn();
        shutdown.await;
        running.shutdown(deadline).await
    }
}

/// A worker started with [`Worker::spawn`].
pub struct RunningWorker {
    handle: WorkerHandle,
    join: tokio::task::JoinHandle<ShutdownReport>,
}

impl RunningWorker {
    pub fn handle(&self) -> WorkerHandle {
        self.handle.clone()
    }

    /// Each server's health (see [`WorkerHandle::health`]).
    pub fn health(&self) -> Vec<(ServerAddr, Health)> {
        self.handle.health()
    }

    /// Graceful shutdown: no GRAB is sent from now on; jobs already running get
    /// until `deadline` to finish and send their results; then the worker sends
    /// RESET_ABILITIES and closes every connection. Jobs still running at the
    /// deadline are abandoned (async handlers are dropped) and their servers
    /// re-queue them when the connection closes.
    pub async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        self.handle.begin_shutdown(deadline);
        self.join.await.unwrap_or_default()
    }

    /// Waits for the worker to end (after some handle's `begin_shutdown`).
    pub async fn join(self) -> ShutdownReport {
        self.join.await.unwrap_or_default()
    }
}

/// What a graceful shutdown achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Jobs that were running when shutdown began and finished in time.
    pub finished: usize,
    /// Jobs still running at the deadline; their servers re-queue them.
    pub abandoned: usize,
}

/// Counters since the worker started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Jobs taken from each server, in the order the servers were given.
    pub jobs_by_server: Vec<(ServerAddr, u64)>,
    pub completed: u64,
    pub failed: u64,
    pub exceptions: u64,
    /// Handler panics (each also counted in `failed`).
    pub panics: u64,
    /// Jobs that ended overloaded (each also counted in `failed`).
    pub overloaded: u64,
    /// Jobs given up at their CAN_DO_TIMEOUT (each also counted in `failed`).
    pub timed_out: u64,
    /// Results that could not be sent because their connection had died.
    pub results_dropped: u64,
}

/// Observes and stops a worker. Cheap to clone.
#[derive(Clone)]
pub struct WorkerHandle {
    shared: Arc<Shared>,
}

impl WorkerHandle {
    /// Each server's health, in the order the servers were given.
    pub fn health(&self) -> Vec<(ServerAddr, Health)> {
        self.shared
            .servers
            .iter()
            .map(|s| (s.addr.clone(), s.health.lock().unwrap().clone()))
            .collect()
    }

    /// The current delay between grabs caused by overloaded downstreams (zero
    /// when none).
    pub fn backpressure_delay(&self) -> Duration {
        Duration::from_micros(self.shared.backpressure_us.load(Ordering::Relaxed))
    }

    /// Jobs being run right now.
    pub fn running(&self) -> usize {
        self.shared.running.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> WorkerStats {
        let c = &self.shared.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WorkerStats {
            jobs_by_server: self
                .shared
                .servers
                .iter()
                .map(|s| (s.addr.clone(), get(&s.jobs)))
                .collect(),
            completed: get(&c.completed),
            failed: get(&c.failed),
            exceptions: get(&c.exceptions),
            panics: get(&c.panics),
            overloaded: get(&c.overloaded),
            timed_out: get(&c.timed_out),
            results_dropped: get(&c.results_dropped),
        }
    }

    /// Starts a graceful shutdown (see [`RunningWorker::shutdown`]) without
    /// waiting for it. The first call's deadline counts.
    pub fn begin_shutdown(&self, deadline: Duration) {
        let mut d = self.shared.deadline.lock().unwrap();
        if d.is_none() {
            *d = Some(deadline);
        }
        drop(d);
        self.shared.shutdown.cancel();
    }

    /// Has shutdown begun?
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }
}
