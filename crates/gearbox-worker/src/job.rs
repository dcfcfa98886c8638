//! What a handler sees: the [`Job`], and how it ends one: [`JobError`].

use crate::conn::{ConnTx, Outgoing};
use crate::driver::Event;
use bytes::Bytes;
use gearbox_client::ServerAddr;
use gearbox_proto::{Packet, PacketType};
use std::fmt;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// One job handed to a handler.
///
/// Cheap to clone (an `Arc`): a handler may pass it to helper tasks that send
/// progress while it works. Progress packets go to the server the job came from,
/// on the connection it came on; gearmand only accepts WORK_* packets from the
/// connection that owns the job.
#[derive(Clone)]
pub struct Job {
    inner: Arc<JobInner>,
}

struct JobInner {
    handle: Bytes,
    function: Bytes,
    unique: Bytes,
    payload: Bytes,
    server: ServerAddr,
    conn: ConnTx,
    events: UnboundedSender<Event>,
}

/// The connection the job came on is gone: the server has re-queued the job (or
/// will, once it notices), so nothing this worker sends for it can arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLost;

impl fmt::Display for ConnectionLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the connection this job came on is closed")
    }
}

impl std::error::Error for ConnectionLost {}

impl Job {
    pub(crate) fn new(
        handle: Bytes,
        function: Bytes,
        unique: Bytes,
        payload: Bytes,
        server: ServerAddr,
        conn: ConnTx,
        events: UnboundedSender<Event>,
    ) -> Job {
        Job {
            inner: Arc::new(JobInner {
                handle,
                function,
                unique,
                payload,
                server,
                conn,
                events,
            }),
        }
    }

    /// The server's job handle, e.g. `H:host:42`.
    pub fn handle(&self) -> &[u8] {
        &self.inner.handle
    }

    /// The handle as text (handles are ASCII in every known server).
    pub fn handle_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.inner.handle)
    }

    /// The function name the job was submitted to.
    pub fn function(&self) -> &str {
        // Registered names are `String`s, and a server only assigns jobs of
        // functions this worker registered, so this is valid UTF-8 in practice.
        std::str::from_utf8(&self.inner.function).unwrap_or("")
    }

    /// The unique id the client gave (from JOB_ASSIGN_UNIQ); may be empty.
    pub fn unique(&self) -> &[u8] {
        &self.inner.unique
    }

    /// The job's data.
    pub fn payload(&self) -> &Bytes {
        &self.inner.payload
    }

    /// The server the job came from. Results go back there.
    pub fn server(&self) -> &ServerAddr {
        &self.inner.server
    }

    fn send(&self, kind: PacketType, fields: &[&[u8]]) -> Result<(), ConnectionLost> {
        self.inner
            .conn
            .send(Outgoing::Packet(Packet::req(kind, fields), None))
            .map_err(|_| ConnectionLost)
    }

    /// Sends WORK_DATA: a chunk of partial result that foreground clients see at
    /// once (libgearman and PHP concatenate the chunks before the final result).
    pub fn data(&self, data: impl AsRef<[u8]>) -> Result<(), ConnectionLost> {
        self.send(PacketType::WORK_DATA, &[&self.inner.handle, data.as_ref()])
    }

    /// Sends WORK_WARNING: a message foreground clients see, not part of the result.
    pub fn warning(&self, data: impl AsRef<[u8]>) -> Result<(), ConnectionLost> {
        self.send(
            PacketType::WORK_WARNING,
            &[&self.inner.handle, data.as_ref()],
        )
    }

    /// Sends WORK_STATUS `numerator/denominator`, which foreground clients see and
    /// GET_STATUS reports.
    pub fn status(&self, numerator: u32, denominator: u32) -> Result<(), ConnectionLost> {
        let num = numerator.to_string();
        let den = denominator.to_string();
        self.send(
            PacketType::WORK_STATUS,
            &[&self.inner.handle, num.as_bytes(), den.as_bytes()],
        )
    }

    /// Tells the worker that the handler's downstream is pushing back (for
    /// example Elasticsearch answered some items of a bulk request with 429),
    /// without ending the job: the worker grows its delay between grabs exactly
    /// as if the job had returned [`JobError::Overloaded`]. Use it when the job
    /// itself still succeeds; return `JobError::Overloaded` when it cannot.
    pub fn overloaded(&self) {
        let _ = self.inner.events.send(Event::Overloaded);
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("handle", &self.handle_str())
            .field("function", &self.function())
            .field("unique", &String::from_utf8_lossy(self.unique()))
            .field("payload_len", &self.inner.payload.len())
            .field("server", &self.inner.server.to_string())
            .finish()
    }
}

/// How a handler ends a job other than with a result.
///
/// Any `std::error::Error` converts into [`JobError::Fail`] (so `?` works in
/// handlers), with the error's text logged. Errors do not become
/// WORK_EXCEPTION by default on purpose: gearmand passes an exception to a
/// client that did not ask for exceptions as a malformed WORK_FAIL (`handle\0`)
/// that hangs the libgearman `gearman` CLI forever. Send exceptions only to
/// clients known to set `OPTION_REQ exceptions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// WORK_FAIL. The text is logged by the worker; WORK_FAIL carries no data.
    Fail(String),
    /// WORK_EXCEPTION with this data.
    Exception(Bytes),
    /// The handler's downstream rejects work (it is overloaded). The job ends
    /// with WORK_FAIL once [`overload_retries`] in-place retries are used up, and
    /// the worker slows its grabs by a growing delay.
    ///
    /// Why fail rather than give the job back to the server: Gearman has no
    /// packet that returns one job. A worker can only make the server re-queue
    /// jobs by closing its connection or sending CANT_DO, and both re-queue
    /// *every* job of that connection (or function), including ones other
    /// handlers are still running, which would then run twice; each re-queue
    /// also counts against gearmand's `--job-retries`. Keeping the job here and
    /// waiting would hold a job that a worker with a healthy downstream could
    /// run. WORK_FAIL tells a foreground client at once, so it can apply its own
    /// retry policy.
    ///
    /// [`overload_retries`]: crate::WorkerBuilder::overload_retries
    Overloaded(String),
}

impl JobError {
    pub fn fail(why: impl fmt::Display) -> JobError {
        JobError::Fail(why.to_string())
    }

    pub fn exception(data: impl Into<Bytes>) -> JobError {
        JobError::Exception(data.into())
    }

    pub fn overloaded(why: impl fmt::Display) -> JobError {
        JobError::Overloaded(why.to_string())
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Fail(why) => write!(f, "failed: {why}"),
            JobError::Exception(data) => {
                write!(f, "exception: {}", String::from_utf8_lossy(data))
            }
            JobError::Overloaded(why) => write!(f, "downstream overloaded: {why}"),
        }
    }
}

impl<E: std::error::Error> From<E> for JobError {
    fn from(e: E) -> JobError {
        JobError::Fail(e.to_string())
    }
}

/// What a handler returns: the result sent with WORK_COMPLETE, or how it failed.
pub type JobResult = Result<Bytes, JobError>;
