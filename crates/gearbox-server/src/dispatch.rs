//! The engine behind its one lock, with a hand-off for connections that find
//! the lock taken.
//!
//! Every connection task used to block on the engine mutex. With eight
//! pipelining submitters on two cores, a profile put 14% of the server's CPU
//! in sleeping on that mutex and waking from it (futex), and the server
//! submitted about 20% more with one runtime thread than with two. Now a task
//! that finds the engine busy leaves its decoded frames in a queue and goes
//! back to its sockets; whoever holds the lock runs those frames before it lets
//! go (flat combining). The engine's work stays serial, as it must, but nobody
//! sleeps waiting for it, and reads, writes and decoding still run on every
//! thread.
//!
//! For a store that commits inline (see `store::writer`), whoever lets go of
//! the engine also commits the rows queued under it, then takes the engine
//! once more to release the replies that waited for that commit. A lone
//! background submit is thus read, committed and answered by one thread.
//!
//! Two rules keep it correct:
//! - Whoever takes the lock runs the queue before anything else, and checks it
//!   again after letting go; whoever queues tries the lock after queueing. So a
//!   queued batch is never left behind with nobody holding the lock.
//! - A connection has at most one batch in the queue: its task does not read
//!   again until [`HandOff::ran`] says the last one ran (should it hand off
//!   anyway, it waits for the lock like before). Frames of one connection
//!   therefore run in order, and the queue is bounded by the number of
//!   connections.

use crate::engine::{ConnId, Engine};
use crate::store::InlineCommits;
use gearbox_proto::{DecodeError, Frame};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{fence, AtomicBool};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use tokio::sync::Notify;

/// A connection's side of the hand-off: whether its last batch still waits.
#[derive(Default)]
pub struct HandOff {
    queued: AtomicBool,
    ran: Notify,
}

impl HandOff {
    pub fn is_queued(&self) -> bool {
        self.queued.load(SeqCst)
    }

    /// Completes once the batch queued last has run (at once if none waits,
    /// or spuriously: check [`is_queued`](Self::is_queued) again).
    pub async fn ran(&self) {
        self.ran.notified().await
    }
}

/// What one read of a connection decoded: its complete frames and, if the
/// stream could not be framed further, why.
pub struct Batch {
    pub conn: ConnId,
    pub frames: Vec<Frame>,
    pub error: Option<DecodeError>,
    /// The connection's hand-off state, which it checks before reading again.
    pub owner: Arc<HandOff>,
}

/// The dispatch state and the hand-off queue in front of it.
pub struct Dispatch {
    engine: Mutex<Engine>,
    handoff: Mutex<Vec<Batch>>,
    /// True while `handoff` may be non-empty: read without its lock.
    waiting: AtomicBool,
    inline: Option<InlineCommits>,
    /// For an inline store: whether one connection alone waits for a commit,
    /// as of the last unlock, so that the thread letting go of the engine
    /// commits (see [`commit_inline`](Self::commit_inline)).
    lone_submitter: AtomicBool,
}

impl Dispatch {
    pub fn new(engine: Engine) -> Dispatch {
        Dispatch {
            inline: engine.inline_commits(),
            engine: Mutex::new(engine),
            handoff: Mutex::new(Vec::new()),
            waiting: AtomicBool::new(false),
            lone_submitter: AtomicBool::new(true),
        }
    }

    /// Runs `f` on the engine, waiting for the lock, then sends what the
    /// engine queued for the connections.
    pub fn with<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> R {
        let mut engine = self.lock();
        self.run_handoffs(&mut engine);
        let result = f(&mut engine);
        self.unlock(engine);
        self.catch_up();
        self.commit_inline();
        result
    }

    /// Handles a connection's frames now if the engine is free, and otherwise
    /// leaves them to whoever holds it. The batch always goes through the
    /// queue, so there is one path: queue, then try to run the queue.
    pub fn handle(&self, batch: Batch) {
        if batch.owner.is_queued() {
            // The connection's previous batch still waits: run both, in order.
            return self.with(|engine| run(engine, batch));
        }
        batch.owner.queued.store(true, SeqCst);
        lock_ignoring_poison(&self.handoff).push(batch);
        self.waiting.store(true, SeqCst);
        // Pairs with the fence in `unlock`: either the holder sees `waiting`
        // after it lets go, or the try in `catch_up` finds the lock free.
        fence(SeqCst);
        self.catch_up();
        self.commit_inline();
    }

    /// Commits what the engine queued for an inline store, here, and sends
    /// the replies that waited for it, while one connection alone submits
    /// background jobs. While several do, the writer thread commits for
    /// them all: it batches their rows while both cores go on serving, where
    /// a runtime thread committing each one serves nobody meanwhile and
    /// commits one row at a time. Measured with one-at-a-time clients on the
    /// 2-core VM: 1 client 21k jobs/s inline, 13k through the writer; 8
    /// clients 24k inline (1.0 row per commit), 39–50k through the writer.
    /// Rows queued while an inline commit ran go to the writer thread too.
    fn commit_inline(&self) {
        let Some(inline) = &self.inline else {
            return;
        };
        if !self.lone_submitter.load(Relaxed) {
            return inline.hand_over_rest();
        }
        let Some(committed) = inline.commit() else {
            return;
        };
        let mut engine = self.lock();
        self.run_handoffs(&mut engine);
        engine.release_stored(committed);
        self.unlock(engine);
        self.catch_up();
        inline.hand_over_rest();
    }

    /// Locks the engine. A panic while it was held is logged and the state used
    /// as it is: one bad command must not stop every other connection.
    fn lock(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|poisoned| {
            tracing::error!("engine lock poisoned by a panic; continuing");
            poisoned.into_inner()
        })
    }

    /// Sends what the engine queued for the connections and lets go of the
    /// lock. Callers then `catch_up` with what was queued meanwhile.
    fn unlock(&self, mut engine: MutexGuard<'_, Engine>) {
        engine.flush();
        if self.inline.is_some() {
            self.lone_submitter.store(engine.submits_alone(), Relaxed);
        }
        drop(engine);
        fence(SeqCst);
    }

    /// Runs queued batches for as long as there are some and the lock is free.
    fn catch_up(&self) {
        while self.waiting.load(SeqCst) {
            let mut engine = match self.engine.try_lock() {
                Ok(engine) => engine,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                // The holder will see `waiting` after it lets go.
                Err(TryLockError::WouldBlock) => return,
            };
            self.run_handoffs(&mut engine);
            self.unlock(engine);
        }
    }

    fn run_handoffs(&self, engine: &mut Engine) {
        if !self.waiting.load(SeqCst) {
            return;
        }
        let batches = {
            let mut queue = lock_ignoring_poison(&self.handoff);
            self.waiting.store(false, SeqCst);
            std::mem::take(&mut *queue)
        };
        for batch in batches {
            run(engine, batch);
        }
    }
}

/// Runs one connection's frames in order, then reports a framing error.
fn run(engine: &mut Engine, batch: Batch) {
    for frame in &batch.frames {
        engine.handle(batch.conn, frame);
    }
    if let Some(error) = &batch.error {
        engine.protocol_error(batch.conn, error);
    }
    batch.owner.queued.store(false, SeqCst);
    batch.owner.ran.notify_one();
}

fn lock_ignoring_poison<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Backlog, Peer, Signals};
    use crate::Config;
    use bytes::{Buf, Bytes, BytesMut};
    use gearbox_proto::{Packet, PacketType};
    use std::sync::mpsc as std_mpsc;
    use std::time::Duration;
    use tokio::sync::mpsc;

    struct TestConn {
        id: ConnId,
        rx: mpsc::UnboundedReceiver<Bytes>,
        owner: Arc<HandOff>,
    }

    fn connect(dispatch: &Dispatch) -> TestConn {
        let (tx, rx) = mpsc::unbounded_channel();
        let peer = Peer {
            fd: -1,
            host: "127.0.0.1".into(),
            local: true,
        };
        let id = dispatch.with(|e| e.connect(tx, Arc::new(Backlog::default()), peer));
        TestConn {
            id,
            rx,
            owner: Arc::new(HandOff::default()),
        }
    }

    fn echoes(conn: &TestConn, numbers: std::ops::Range<u32>) -> Batch {
        let frames = numbers
            .map(|n| {
                let text = n.to_string();
                Frame::Packet(Packet::req(PacketType::ECHO_REQ, &[text.as_bytes()]))
            })
            .collect();
        Batch {
            conn: conn.id,
            frames,
            error: None,
            owner: conn.owner.clone(),
        }
    }

    /// The numbers in the ECHO_RES packets received so far, in order.
    fn echoed(conn: &mut TestConn) -> Vec<u32> {
        let mut bytes = BytesMut::new();
        while let Ok(chunk) = conn.rx.try_recv() {
            bytes.extend_from_slice(&chunk);
        }
        let mut numbers = Vec::new();
        while !bytes.is_empty() {
            assert_eq!(&bytes[..4], b"\0RES");
            assert_eq!(u32::from_be_bytes(bytes[4..8].try_into().unwrap()), 17);
            let len = u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
            bytes.advance(12);
            let body = bytes.split_to(len);
            numbers.push(std::str::from_utf8(&body).unwrap().parse().unwrap());
        }
        numbers
    }

    fn dispatch() -> Arc<Dispatch> {
        let engine = Engine::new(&Config::default(), Arc::new(Signals::default()));
        Arc::new(Dispatch::new(engine))
    }

    #[test]
    fn a_free_engine_runs_the_batch_before_handle_returns() {
        let dispatch = dispatch();
        let mut conn = connect(&dispatch);
        dispatch.handle(echoes(&conn, 0..2));
        assert!(!conn.owner.is_queued());
        assert_eq!(echoed(&mut conn), vec![0, 1]);
    }

    #[test]
    fn a_busy_engine_takes_the_batch_without_blocking_and_its_holder_runs_it() {
        let dispatch = dispatch();
        let mut conn = connect(&dispatch);
        let (inside_tx, inside_rx) = std_mpsc::channel();
        let (returned_tx, returned_rx) = std_mpsc::channel();
        let holder = {
            let dispatch = dispatch.clone();
            std::thread::spawn(move || {
                dispatch.with(|_| {
                    inside_tx.send(()).unwrap();
                    // The other thread's handle() must come back while the
                    // lock is still held here.
                    returned_rx.recv_timeout(Duration::from_secs(10))
                })
            })
        };
        inside_rx.recv().unwrap();
        dispatch.handle(echoes(&conn, 0..3));
        assert!(conn.owner.is_queued(), "the batch waits in the queue");
        assert_eq!(echoed(&mut conn), Vec::<u32>::new(), "nothing ran yet");
        returned_tx.send(()).unwrap();
        assert!(holder.join().unwrap().is_ok(), "handle() did not block");
        assert!(!conn.owner.is_queued());
        assert_eq!(echoed(&mut conn), vec![0, 1, 2], "the holder ran it");
    }

    #[test]
    fn concurrent_connections_get_every_reply_in_order() {
        const BATCHES: u32 = 20_000;
        const PER_BATCH: u32 = 3;
        let dispatch = dispatch();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let dispatch = dispatch.clone();
                let conn = connect(&dispatch);
                std::thread::spawn(move || {
                    for b in 0..BATCHES {
                        dispatch.handle(echoes(&conn, b * PER_BATCH..(b + 1) * PER_BATCH));
                    }
                    conn
                })
            })
            .collect();
        let conns: Vec<TestConn> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        // No rescue call here: once every handle() has returned, nothing may
        // be left in the queue.
        for mut conn in conns {
            let expected: Vec<u32> = (0..BATCHES * PER_BATCH).collect();
            assert_eq!(echoed(&mut conn), expected, "connection {}", conn.id);
        }
    }
}
