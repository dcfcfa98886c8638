//! One server of a client's pool: its connection, which concurrent requests
//! share (one connect at a time), and the cooldown after it failed, which sends
//! requests to the other servers meanwhile.

use crate::connection::{Conn, Pending};
use crate::error::Error;
use crate::transport::{Backoff, BackoffPolicy, Health, ServerAddr};
use gearbox_proto::{Packet, PacketType};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What every new connection is made with.
pub(crate) struct ConnectOptions {
    pub(crate) timeout: Duration,
    /// Sent as SET_CLIENT_ID on each new connection.
    pub(crate) client_id: Option<String>,
    pub(crate) max_packet_size: u32,
}

struct SlotState {
    conn: Option<Arc<Conn>>,
    backoff: Backoff,
    /// Until when the server is left alone, and why.
    cooldown: Option<(Instant, String)>,
}

pub(crate) struct Slot {
    pub(crate) addr: ServerAddr,
    /// The address as text: the server's identity for rendezvous hashing.
    pub(crate) name: String,
    state: Mutex<SlotState>,
    /// Held while connecting, so that concurrent requests share one connect.
    connecting: tokio::sync::Mutex<()>,
}

/// Why a request cannot use a server now.
pub(crate) enum Unusable {
    CoolingDown(String),
    Failed(Error),
}

impl Slot {
    pub(crate) fn new(addr: ServerAddr, backoff: BackoffPolicy) -> Slot {
        Slot {
            name: addr.to_string(),
            addr,
            state: Mutex::new(SlotState {
                conn: None,
                backoff: Backoff::new(backoff),
                cooldown: None,
            }),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live_conn(state: &SlotState) -> Option<Arc<Conn>> {
        state.conn.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    fn cooling(state: &SlotState, now: Instant) -> Option<String> {
        match &state.cooldown {
            Some((until, why)) if *until > now => Some(format!(
                "cooling down for {:?} after: {why}",
                until.saturating_duration_since(now)
            )),
            _ => None,
        }
    }

    pub(crate) fn health(&self) -> Health {
        let state = self.lock();
        if Self::live_conn(&state).is_some() {
            return Health::Up;
        }
        match &state.cooldown {
            Some((until, error)) if *until > Instant::now() => Health::CoolingDown {
                until: *until,
                failures: state.backoff.failures(),
                error: error.clone(),
            },
            _ => Health::Connecting,
        }
    }

    /// The live connection, connecting if there is none. A server in cooldown
    /// is refused without any I/O.
    pub(crate) async fn conn(&self, options: &ConnectOptions) -> Result<Arc<Conn>, Unusable> {
        {
            let state = self.lock();
            if let Some(c) = Self::live_conn(&state) {
                return Ok(c);
            }
            if let Some(why) = Self::cooling(&state, Instant::now()) {
                return Err(Unusable::CoolingDown(why));
            }
        }
        let _connecting = self.connecting.lock().await;
        {
            // Someone else may have connected, or failed, while we waited.
            let state = self.lock();
            if let Some(c) = Self::live_conn(&state) {
                return Ok(c);
            }
            if let Some(why) = Self::cooling(&state, Instant::now()) {
                return Err(Unusable::CoolingDown(why));
            }
        }
        let stream = match self.addr.connect(options.timeout).await {
            Ok(s) => s,
            Err(e) => {
                let error = if e.kind() == std::io::ErrorKind::TimedOut {
                    Error::Timeout {
                        server: Some(self.addr.clone()),
                        what: "connect",
                        after: options.timeout,
                    }
                } else {
                    Error::Io {
                        server: self.addr.clone(),
                        message: format!("connect: {e}"),
                    }
                };
                self.record_failure(None, &error);
                return Err(Unusable::Failed(error));
            }
        };
        let conn = Arc::new(Conn::start(
            self.addr.clone(),
            stream,
            options.max_packet_size,
        ));
        // Pipelined, no round trip: ask for WORK_EXCEPTION to be passed on as
        // such (gearmand otherwise turns it into WORK_FAIL, with a stray NUL).
        let _ = conn.send(
            Packet::req(PacketType::OPTION_REQ, &[b"exceptions"]),
            Some(Pending::Option),
        );
        if let Some(id) = &options.client_id {
            let _ = conn.send(
                Packet::req(PacketType::SET_CLIENT_ID, &[id.as_bytes()]),
                None,
            );
        }
        tracing::debug!(server = %self.addr, "connected");
        self.lock().conn = Some(conn.clone());
        Ok(conn)
    }

    /// A server answered: its failure count starts again.
    pub(crate) fn record_success(&self) {
        let mut state = self.lock();
        state.backoff.succeed();
        state.cooldown = None;
    }

    /// Puts the server into cooldown. With `conn`, only if that connection is
    /// still the current one, so that many requests timing out on one hung
    /// connection count as one failure.
    pub(crate) fn record_failure(&self, conn: Option<&Arc<Conn>>, error: &Error) {
        let mut state = self.lock();
        if let Some(conn) = conn {
            let current = state.conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn));
            conn.kill(error.to_string());
            if !current {
                return;
            }
            state.conn = None;
        }
        let delay = state.backoff.fail();
        let failures = state.backoff.failures();
        state.cooldown = Some((Instant::now() + delay, error.detail()));
        drop(state);
        tracing::warn!(server = %self.addr, failures, ?delay, "server failed: {error}");
    }

    /// Drops a connection found closed when a request was about to use it.
    pub(crate) fn forget(&self, conn: &Arc<Conn>) {
        let mut state = self.lock();
        if state.conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            state.conn = None;
        }
    }
}
