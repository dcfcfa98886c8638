//! One multiplexed client connection to one server.
//!
//! Many requests share a connection, so replies must be matched without ids:
//!
//! * Replies that carry no handle (JOB_CREATED, STATUS_RES, STATUS_RES_UNIQUE,
//!   OPTION_RES, ERROR) come back in request order, so each request leaves a
//!   [`Pending`] entry in a FIFO, pushed under the same lock that queues its
//!   bytes for the writer: the FIFO order is the wire order.
//! * WORK_* packets carry the handle and are routed to the foreground jobs that
//!   wait for it. The subscription is made by the reader when it takes the
//!   JOB_CREATED off the FIFO, before it reads the next packet, so no WORK_*
//!   can overtake it.
//! * Two foreground submits that the server coalesces onto one job get the
//!   same handle, and the server sends every WORK_* once per attached submit,
//!   back to back. So a handle holds a list of subscribers: progress packets
//!   go to them in rotation (each subscriber gets each packet once), and a
//!   terminal packet goes to the oldest one, which then leaves.
//!
//! Reading and writing run in two tasks, so a large write can never stop us
//! reading (a server blocked on writing to us while we are blocked on writing
//! to it would otherwise deadlock). Any failure closes the connection and fails
//! everything still waiting on it; the requester that saw a timeout closes it
//! too, because after a missing reply the FIFO can no longer be trusted.

use crate::error::Error;
use crate::job::{parse_number, EventTx, JobEvent};
use crate::transport::{ServerAddr, Stream};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use gearbox_proto::{Codec, Frame, Packet, PacketType};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_util::codec::FramedRead;

/// What a request waits for.
pub(crate) enum Pending {
    /// JOB_CREATED; foreground submits also subscribe to the handle's WORK_*.
    Created {
        reply: oneshot::Sender<Result<Bytes, Error>>,
        events: Option<EventTx>,
    },
    /// STATUS_RES.
    Status(oneshot::Sender<Result<Packet, Error>>),
    /// STATUS_RES_UNIQUE.
    StatusUnique(oneshot::Sender<Result<Packet, Error>>),
    /// OPTION_RES, sent without waiting on connect. An ERROR instead means the
    /// server does not know the option, which is not fatal; a server that
    /// ignores OPTION_REQ altogether is detected when another reply arrives
    /// while this entry is still first.
    Option,
    /// ECHO_RES.
    Echo(oneshot::Sender<Result<Packet, Error>>),
}

impl Pending {
    fn fail(self, error: Error) {
        match self {
            Pending::Created { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Pending::Status(reply) | Pending::StatusUnique(reply) | Pending::Echo(reply) => {
                let _ = reply.send(Err(error));
            }
            Pending::Option => {}
        }
    }
}

#[derive(Default)]
struct Subscribers {
    list: VecDeque<EventTx>,
    /// Which subscriber gets the next progress packet.
    cursor: usize,
}

struct State {
    closed: Option<String>,
    pending: VecDeque<Pending>,
    jobs: HashMap<Bytes, Subscribers>,
}

struct Shared {
    addr: ServerAddr,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the tables half-updated
        // in a way that matters more than losing the connection; carry on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the connection closed and fails everything that waits on it.
    fn close(&self, reason: String) {
        let (pending, jobs) = {
            let mut state = self.lock();
            if state.closed.is_some() {
                return;
            }
            state.closed = Some(reason.clone());
            (
                std::mem::take(&mut state.pending),
                std::mem::take(&mut state.jobs),
            )
        };
        let lost = || Error::ConnectionLost {
            server: self.addr.clone(),
            reason: reason.clone(),
        };
        for p in pending {
            p.fail(lost());
        }
        for (_, subs) in jobs {
            for tx in subs.list {
                let _ = tx.send(Err(lost()));
            }
        }
    }

    fn protocol_error(&self, message: String) {
        tracing::warn!(server = %self.addr, "{message}");
        self.close(format!("protocol error: {message}"));
    }

    /// Takes the oldest pending request, skipping an unanswered OPTION_REQ if
    /// `kind` is not a possible answer to it.
    fn pop_pending(&self, state: &mut State, kind: PacketType) -> Option<Pending> {
        loop {
            let front = state.pending.pop_front()?;
            if matches!(front, Pending::Option)
                && !matches!(kind, PacketType::OPTION_RES | PacketType::ERROR)
            {
                tracing::debug!(server = %self.addr, "server ignored OPTION_REQ exceptions");
                continue;
            }
            return Some(front);
        }
    }

    /// Handles one packet from the server. Returns false to stop reading.
    fn dispatch(&self, packet: Packet) -> bool {
        let kind = packet.kind;
        match kind {
            PacketType::JOB_CREATED
            | PacketType::STATUS_RES
            | PacketType::STATUS_RES_UNIQUE
            | PacketType::OPTION_RES
            | PacketType::ECHO_RES
            | PacketType::ERROR => self.dispatch_reply(packet),
            PacketType::WORK_DATA
            | PacketType::WORK_WARNING
            | PacketType::WORK_STATUS
            | PacketType::WORK_COMPLETE
            | PacketType::WORK_FAIL
            | PacketType::WORK_EXCEPTION => {
                self.dispatch_work(packet);
                true
            }
            // NOOP and anything else meant for workers: not for us.
            _ => {
                tracing::debug!(server = %self.addr, kind = kind.name(), "ignoring packet");
                true
            }
        }
    }

    fn dispatch_reply(&self, packet: Packet) -> bool {
        let kind = packet.kind;
        let mut state = self.lock();
        let Some(pending) = self.pop_pending(&mut state, kind) else {
            drop(state);
            if kind == PacketType::ERROR {
                // Not an answer to anything of ours; gearmand does not do this,
                // but an unsolicited ERROR is no reason to drop every job.
                tracing::warn!(
                    server = %self.addr,
                    code = %String::from_utf8_lossy(packet.arg(0)),
                    text = %String::from_utf8_lossy(packet.arg(1)),
                    "unsolicited ERROR from server"
                );
                return true;
            }
            self.protocol_error(format!("{} with no request waiting", kind.name()));
            return false;
        };
        if kind == PacketType::ERROR {
            drop(state);
            pending.fail(Error::Server {
                server: self.addr.clone(),
                code: String::from_utf8_lossy(packet.arg(0)).into_owned(),
                text: String::from_utf8_lossy(packet.arg(1)).into_owned(),
            });
            return true;
        }
        match (pending, kind) {
            (Pending::Created { reply, events }, PacketType::JOB_CREATED) => {
                let handle = packet.arg(0).clone();
                if let Some(tx) = events {
                    state
                        .jobs
                        .entry(handle.clone())
                        .or_default()
                        .list
                        .push_back(tx);
                }
                drop(state);
                let _ = reply.send(Ok(handle));
                true
            }
            (Pending::Status(reply), PacketType::STATUS_RES)
            | (Pending::StatusUnique(reply), PacketType::STATUS_RES_UNIQUE)
            | (Pending::Echo(reply), PacketType::ECHO_RES) => {
                drop(state);
                let _ = reply.send(Ok(packet));
                true
            }
            (Pending::Option, PacketType::OPTION_RES) => true,
            (other, _) => {
                drop(state);
                let message = format!("unexpected {} in reply order", kind.name());
                other.fail(Error::Protocol {
                    server: self.addr.clone(),
                    message: message.clone(),
                });
                self.protocol_error(message);
                false
            }
        }
    }

    fn dispatch_work(&self, packet: Packet) {
        let mut handle = packet.arg(0).clone();
        if packet.kind == PacketType::WORK_FAIL && handle.last() == Some(&0) {
            // gearmand's WORK_FAIL converted from an exception has a stray NUL.
            handle.truncate(handle.len() - 1);
        }
        let event = match packet.kind {
            PacketType::WORK_DATA => JobEvent::Data(packet.arg(1).clone()),
            PacketType::WORK_WARNING => JobEvent::Warning(packet.arg(1).clone()),
            PacketType::WORK_STATUS => JobEvent::Status {
                numerator: parse_number(packet.arg(1)),
                denominator: parse_number(packet.arg(2)),
            },
            PacketType::WORK_COMPLETE => JobEvent::Complete(packet.arg(1).clone()),
            PacketType::WORK_FAIL => JobEvent::Fail,
            _ => JobEvent::Exception(packet.arg(1).clone()),
        };
        let mut state = self.lock();
        let Some(subs) = state.jobs.get_mut(&handle) else {
            tracing::debug!(
                server = %self.addr,
                handle = %String::from_utf8_lossy(&handle),
                kind = packet.kind.name(),
                "WORK packet for a job nobody waits for"
            );
            return;
        };
        if event.is_terminal() {
            let tx = subs
                .list
                .pop_front()
                .expect("subscriber lists are never empty");
            subs.cursor = 0;
            if subs.list.is_empty() {
                state.jobs.remove(&handle);
            }
            drop(state);
            let _ = tx.send(Ok(event));
        } else {
            let i = subs.cursor % subs.list.len();
            subs.cursor = (i + 1) % subs.list.len();
            // A receiver that was dropped still takes its share of packets,
            // or the rotation would hand the others its copies.
            let _ = subs.list[i].send(Ok(event));
        }
    }
}

/// The connection was closed before the request was queued.
#[derive(Debug)]
pub(crate) struct NotSent;

/// A live connection: a reader task and a writer task around one stream.
pub(crate) struct Conn {
    shared: Arc<Shared>,
    writer: mpsc::UnboundedSender<Packet>,
    tasks: [AbortHandle; 2],
}

impl Conn {
    /// Starts the tasks. Must run inside a tokio runtime.
    pub(crate) fn start(addr: ServerAddr, stream: Stream, max_packet_size: u32) -> Conn {
        let shared = Arc::new(Shared {
            addr,
            state: Mutex::new(State {
                closed: None,
                pending: VecDeque::new(),
                jobs: HashMap::new(),
            }),
        });
        let (read_half, mut write_half) = tokio::io::split(stream);
        let (writer, mut queue) = mpsc::unbounded_channel::<Packet>();

        let reader_shared = shared.clone();
        let reader = tokio::spawn(async move {
            let mut frames = FramedRead::new(read_half, Codec::new(max_packet_size));
            let reason = loop {
                match frames.next().await {
                    Some(Ok(Frame::Packet(packet))) => {
                        if !reader_shared.dispatch(packet) {
                            return;
                        }
                    }
                    Some(Ok(Frame::Text(line))) => {
                        reader_shared.protocol_error(format!(
                            "unexpected text line {:?}",
                            String::from_utf8_lossy(&line)
                        ));
                        return;
                    }
                    Some(Err(e)) => break format!("read: {e}"),
                    None => break "server closed the connection".to_string(),
                }
            };
            reader_shared.close(reason);
        });

        let writer_shared = shared.clone();
        let writer_task = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(8192);
            while let Some(packet) = queue.recv().await {
                buf.clear();
                packet.encode(&mut buf);
                // Batch what is already queued into one write.
                while buf.len() < 64 * 1024 {
                    match queue.try_recv() {
                        Ok(p) => p.encode(&mut buf),
                        Err(_) => break,
                    }
                }
                if let Err(e) = write_half.write_all(&buf).await {
                    writer_shared.close(format!("write: {e}"));
                    return;
                }
            }
        });

        Conn {
            shared,
            writer,
            tasks: [reader.abort_handle(), writer_task.abort_handle()],
        }
    }

    pub(crate) fn addr(&self) -> &ServerAddr {
        &self.shared.addr
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Queues `packet` and registers what it waits for. Fails, without
    /// sending anything, if the connection is already closed (the request can
    /// then safely go elsewhere).
    pub(crate) fn send(&self, packet: Packet, pending: Option<Pending>) -> Result<(), NotSent> {
        let mut state = self.shared.lock();
        if state.closed.is_some() || self.writer.send(packet).is_err() {
            return Err(NotSent);
        }
        if let Some(p) = pending {
            state.pending.push_back(p);
        }
        Ok(())
    }

    /// Closes the connection (after a timeout): every waiter gets an error.
    pub(crate) fn kill(&self, reason: String) {
        self.shared.close(reason);
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.kill("connection dropped".into());
    }
}
