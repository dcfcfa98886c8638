//! What a caller submits and what comes back.

use crate::connection::Conn;
use crate::error::Error;
use crate::transport::ServerAddr;
use bytes::Bytes;
use gearbox_proto::PacketType;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The three Gearman priorities. The server runs HIGH before NORMAL before LOW,
/// FIFO within one priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    pub(crate) fn foreground_packet(self) -> PacketType {
        match self {
            Priority::High => PacketType::SUBMIT_JOB_HIGH,
            Priority::Normal => PacketType::SUBMIT_JOB,
            Priority::Low => PacketType::SUBMIT_JOB_LOW,
        }
    }

    pub(crate) fn background_packet(self) -> PacketType {
        match self {
            Priority::High => PacketType::SUBMIT_JOB_HIGH_BG,
            Priority::Normal => PacketType::SUBMIT_JOB_BG,
            Priority::Low => PacketType::SUBMIT_JOB_LOW_BG,
        }
    }
}

impl std::str::FromStr for Priority {
    type Err = String;

    fn from_str(s: &str) -> Result<Priority, String> {
        match s.to_ascii_lowercase().as_str() {
            "high" => Ok(Priority::High),
            "normal" => Ok(Priority::Normal),
            "low" => Ok(Priority::Low),
            _ => Err(format!("`{s}`: expected high, normal or low")),
        }
    }
}

/// One job to submit: function, payload and options.
///
/// ```
/// use gearbox_client::{JobRequest, Priority};
/// let req = JobRequest::new("resize", b"img-42".to_vec())
///     .unique("img-42")
///     .priority(Priority::High);
/// ```
#[derive(Debug, Clone)]
pub struct JobRequest {
    pub(crate) function: Bytes,
    pub(crate) payload: Bytes,
    pub(crate) unique: Bytes,
    pub(crate) priority: Priority,
    pub(crate) timeout: Option<Duration>,
}

impl JobRequest {
    pub fn new(function: impl AsRef<[u8]>, payload: impl Into<Bytes>) -> JobRequest {
        JobRequest {
            function: Bytes::copy_from_slice(function.as_ref()),
            payload: payload.into(),
            unique: Bytes::new(),
            priority: Priority::Normal,
            timeout: None,
        }
    }

    /// The unique id. Jobs of one function with the same non-empty unique are
    /// **coalesced** by the server: a second submit joins the first job instead
    /// of creating one, and every foreground submitter gets the result. The
    /// client also routes by it: all submits with one unique go to the same
    /// server of the pool, which is what makes coalescing work across servers.
    ///
    /// The default is empty, which means *no coalescing*: unlike libgearman,
    /// which invents a UUID per job, we send an empty unique (as Perl's and
    /// Python's clients do), so every submit is its own job and jobs spread
    /// round-robin over the servers. Note that gearmand's persistent queues key
    /// background jobs by (unique, function), so there all empty-unique
    /// background jobs of one function share a row; give background jobs a
    /// unique if the server persists them.
    ///
    /// gearmand refuses uniques over 64 bytes; `-` means "coalesce on the
    /// payload" and is then routed by the payload too.
    pub fn unique(mut self, unique: impl AsRef<[u8]>) -> JobRequest {
        self.unique = Bytes::copy_from_slice(unique.as_ref());
        self
    }

    pub fn priority(mut self, priority: Priority) -> JobRequest {
        self.priority = priority;
        self
    }

    /// A deadline for the whole job, from submit to its last packet, replacing
    /// the client's default ([`crate::ClientBuilder::job_timeout`]). When it
    /// passes the caller gets [`Error::Timeout`]; the job itself is not
    /// cancelled on the server (the protocol has no way to).
    pub fn timeout(mut self, timeout: Duration) -> JobRequest {
        self.timeout = Some(timeout);
        self
    }

    pub fn function(&self) -> &[u8] {
        &self.function
    }

    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    pub fn unique_id(&self) -> &[u8] {
        &self.unique
    }

    /// The key the client routes by: the unique, or for `-` the payload (the
    /// server coalesces `-` jobs on their payload). Empty means "any server".
    pub(crate) fn routing_key(&self) -> &[u8] {
        if self.unique.as_ref() == b"-" {
            &self.payload
        } else {
            &self.unique
        }
    }
}

/// A job's handle together with the server that issued it. Handles are only
/// meaningful on that server (each server numbers its own jobs), so status
/// queries go to `server`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobHandle {
    pub server: ServerAddr,
    pub handle: Bytes,
}

impl JobHandle {
    pub fn new(server: ServerAddr, handle: impl AsRef<[u8]>) -> JobHandle {
        JobHandle {
            server,
            handle: Bytes::copy_from_slice(handle.as_ref()),
        }
    }
}

impl fmt::Display for JobHandle {
    /// The handle alone, as the server spells it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.handle))
    }
}

/// Something a worker sent about a foreground job, in the order it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// WORK_DATA: a chunk of partial output.
    Data(Bytes),
    /// WORK_WARNING: a warning; the job goes on.
    Warning(Bytes),
    /// WORK_STATUS: progress, `numerator` of `denominator`. The server relays
    /// the worker's text; it is read as gearmand stores it (leading decimal
    /// digits, anything else 0).
    Status { numerator: u32, denominator: u32 },
    /// WORK_COMPLETE: the result. Always the last event.
    Complete(Bytes),
    /// WORK_FAIL. Always the last event.
    Fail,
    /// WORK_EXCEPTION with its payload. Always the last event. The client
    /// sends `OPTION_REQ exceptions` on every connection so that servers pass
    /// exceptions on as such instead of turning them into WORK_FAIL.
    Exception(Bytes),
}

impl JobEvent {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobEvent::Complete(_) | JobEvent::Fail | JobEvent::Exception(_)
        )
    }
}

/// Leading decimal digits as u32 (saturating), as gearmand's `atoi` storage.
pub(crate) fn parse_number(raw: &[u8]) -> u32 {
    let mut n: u32 = 0;
    for &b in raw.iter().skip_while(|b| **b == b' ') {
        if !b.is_ascii_digit() {
            break;
        }
        n = n.saturating_mul(10).saturating_add(u32::from(b - b'0'));
    }
    n
}

/// A finished foreground job: its result and everything sent before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutput {
    pub handle: JobHandle,
    /// The WORK_COMPLETE payload.
    pub result: Bytes,
    /// The WORK_DATA, WORK_WARNING and WORK_STATUS events, in order.
    pub events: Vec<JobEvent>,
}

impl JobOutput {
    /// The WORK_DATA chunks, in order.
    pub fn data_chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.events.iter().filter_map(|e| match e {
            JobEvent::Data(d) => Some(d),
            _ => None,
        })
    }
}

pub(crate) type EventResult = Result<JobEvent, Error>;
pub(crate) type EventTx = mpsc::UnboundedSender<EventResult>;
pub(crate) type EventRx = mpsc::UnboundedReceiver<EventResult>;

/// A foreground job the server has accepted (JOB_CREATED has arrived).
///
/// Read its events with [`Job::next_event`] (or as a `futures` `Stream`), or
/// wait for the end with [`Job::result`]. The job keeps its connection open
/// while it lives, even if the [`crate::Client`] is dropped. Events are queued
/// without bound until read, so that one slow reader never stalls the other
/// jobs sharing the connection.
pub struct Job {
    pub(crate) handle: JobHandle,
    pub(crate) events: EventRx,
    pub(crate) deadline: Option<(Instant, Duration)>,
    pub(crate) finished: bool,
    pub(crate) _conn: Arc<Conn>,
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("handle", &self.handle)
            .field("finished", &self.finished)
            .finish()
    }
}

impl Job {
    pub fn handle(&self) -> &JobHandle {
        &self.handle
    }

    /// The server running the job.
    pub fn server(&self) -> &ServerAddr {
        &self.handle.server
    }

    /// The next event; `Ok(None)` once the terminal event has been returned.
    /// Fails with [`Error::Timeout`] when the job's deadline passes and with
    /// [`Error::ConnectionLost`] if the connection drops first.
    pub async fn next_event(&mut self) -> Result<Option<JobEvent>, Error> {
        if self.finished {
            return Ok(None);
        }
        let received = match self.deadline {
            Some((at, after)) => {
                match tokio::time::timeout_at(at.into(), self.events.recv()).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.finished = true;
                        return Err(Error::Timeout {
                            server: Some(self.handle.server.clone()),
                            what: "the job to finish",
                            after,
                        });
                    }
                }
            }
            None => self.events.recv().await,
        };
        match received {
            Some(Ok(event)) => {
                self.finished = event.is_terminal();
                Ok(Some(event))
            }
            Some(Err(e)) => {
                self.finished = true;
                Err(e)
            }
            None => {
                self.finished = true;
                Err(Error::ConnectionLost {
                    server: self.handle.server.clone(),
                    reason: "connection closed".into(),
                })
            }
        }
    }

    /// Waits for the end of the job. WORK_FAIL and WORK_EXCEPTION become
    /// [`Error::JobFailed`] and [`Error::JobException`]. Events already taken
    /// with [`Job::next_event`] are not in the output.
    pub async fn result(mut self) -> Result<JobOutput, Error> {
        let mut events = Vec::new();
        loop {
            match self.next_event().await? {
                Some(JobEvent::Complete(result)) => {
                    return Ok(JobOutput {
                        handle: self.handle,
                        result,
                        events,
                    })
                }
                Some(JobEvent::Fail) => {
                    return Err(Error::JobFailed {
                        handle: self.handle.handle,
                    })
                }
                Some(JobEvent::Exception(data)) => {
                    return Err(Error::JobException {
                        handle: self.handle.handle,
                        data,
                    })
                }
                Some(event) => events.push(event),
                None => {
                    return Err(Error::Protocol {
                        server: self.handle.server.clone(),
                        message: "result() called after the job's last event".into(),
                    })
                }
            }
        }
    }
}

impl futures_util::Stream for Job {
    type Item = Result<JobEvent, Error>;

    /// The events, ending after the terminal one. The job deadline is not
    /// applied here; wrap the stream in a timeout if you need one.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.events.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(event))) => {
                self.finished = event.is_terminal();
                Poll::Ready(Some(Ok(event)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.finished = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                let server = self.handle.server.clone();
                Poll::Ready(Some(Err(Error::ConnectionLost {
                    server,
                    reason: "connection closed".into(),
                })))
            }
        }
    }
}

/// The answer to GET_STATUS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    /// The server knows the job. A finished job and one that never existed
    /// look the same (both unknown): the protocol cannot tell them apart.
    pub known: bool,
    /// A worker holds the job.
    pub running: bool,
    pub numerator: u32,
    pub denominator: u32,
}

/// The answer to GET_STATUS_UNIQUE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueStatus {
    /// The server that answered.
    pub server: ServerAddr,
    pub unique: Bytes,
    pub known: bool,
    pub running: bool,
    pub numerator: u32,
    pub denominator: u32,
    /// How many foreground clients wait for the job.
    pub clients: u32,
}
