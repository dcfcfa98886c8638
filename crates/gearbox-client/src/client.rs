//! The client: a pool of servers, one multiplexed connection to each.

use crate::connection::{Conn, Pending};
use crate::error::Error;
use crate::job::{parse_number, Job, JobHandle, JobOutput, JobRequest, JobStatus, UniqueStatus};
use crate::routing;
use crate::slot::{ConnectOptions, Slot, Unusable};
use crate::transport::{BackoffPolicy, Health, ServerAddr};
use bytes::Bytes;
use gearbox_proto::{Packet, PacketType, DEFAULT_MAX_PACKET_SIZE};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Default bound on a TCP or unix connect.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on the wait for a reply (JOB_CREATED, STATUS_RES, …).
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a [`Client`]. Nothing connects until the first request, so a server
/// that is down at start-up costs nothing until a job is routed to it.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    /// In the order given; parse errors are reported by `build`.
    servers: Vec<Result<ServerAddr, String>>,
    connect_timeout: Duration,
    response_timeout: Duration,
    job_timeout: Option<Duration>,
    backoff: BackoffPolicy,
    client_id: Option<String>,
    max_packet_size: u32,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            servers: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            job_timeout: None,
            backoff: BackoffPolicy::default(),
            client_id: None,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
        }
    }
}

impl ClientBuilder {
    /// Adds a server: `host:port`, `host` (port 4730), `[v6]:port` or
    /// `unix:/path`. A malformed address is reported by [`build`](Self::build).
    pub fn server(mut self, addr: impl AsRef<str>) -> Self {
        self.servers.push(addr.as_ref().parse());
        self
    }

    /// Adds several servers (see [`server`](Self::server)).
    pub fn servers<I, S>(mut self, addrs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.servers
            .extend(addrs.into_iter().map(|a| a.as_ref().parse()));
        self
    }

    /// Adds an already parsed server address.
    pub fn server_addr(mut self, addr: ServerAddr) -> Self {
        self.servers.push(Ok(addr));
        self
    }

    /// Bound on each connect, name resolution included. Without it a
    /// black-holed address would hold a request for the kernel's SYN timeout
    /// (minutes), which is how libgearman gets stuck.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Bound on every wait for a server's reply. A server that does not answer
    /// in time is treated as hung: its connection is closed (failing the other
    /// requests waiting on it, since replies are matched by order and one
    /// missing reply spoils the order) and it goes into cooldown.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Default deadline for foreground jobs, from submit to the final packet.
    /// None (the default) waits as long as the job runs; set one per job with
    /// [`JobRequest::timeout`].
    pub fn job_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.job_timeout = timeout;
        self
    }

    /// Cooldown of a failed server: the same rules as gearbox-worker's, so a
    /// dead server is left alone for a growing, jittered time instead of being
    /// retried (and timed out on) by every request.
    pub fn backoff(mut self, policy: BackoffPolicy) -> Self {
        self.backoff = policy;
        self
    }

    /// Sends SET_CLIENT_ID on each connection; shown by the admin `workers`
    /// command, which helps to find a client in a busy server.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// Largest packet accepted from a server (default 64 MiB).
    pub fn max_packet_size(mut self, bytes: u32) -> Self {
        self.max_packet_size = bytes;
        self
    }

    pub fn build(self) -> Result<Client, Error> {
        let addrs = self
            .servers
            .into_iter()
            .collect::<Result<Vec<ServerAddr>, String>>()
            .map_err(Error::Config)?;
        if addrs.is_empty() {
            return Err(Error::Config("no job server given".into()));
        }
        for (i, a) in addrs.iter().enumerate() {
            if addrs[..i].contains(a) {
                return Err(Error::Config(format!("server {a} given twice")));
            }
        }
        let slots = addrs
            .into_iter()
            .map(|addr| Slot::new(addr, self.backoff))
            .collect();
        Ok(Client {
            inner: Arc::new(Inner {
                slots,
                next: AtomicUsize::new(0),
                connect: ConnectOptions {
                    timeout: self.connect_timeout,
                    client_id: self.client_id,
                    max_packet_size: self.max_packet_size,
                },
                response_timeout: self.response_timeout,
                job_timeout: self.job_timeout,
            }),
        })
    }
}

struct Inner {
    slots: Vec<Slot>,
    /// Round-robin position for jobs without a unique.
    next: AtomicUsize,
    connect: ConnectOptions,
    response_timeout: Duration,
    job_timeout: Option<Duration>,
}

/// A Gearman client over one or more job servers.
///
/// Cheap to clone (clones share connections). Every request is bounded in
/// time: connects by `connect_timeout`, replies by `response_timeout`, whole
/// foreground jobs by an optional deadline.
///
/// **Routing.** A job with a unique goes to the server that rendezvous hashing
/// picks for that unique (see [`Client::route`]); one without goes to the next
/// server in round-robin order. If that server is down or cooling down, the
/// job goes to the next server in the same order.
///
/// **Failover and retries.** A request moves on to the next server only when
/// nothing was sent to the failed one (connect refused or timed out, server in
/// cooldown, connection found closed). Once a request was sent, a timeout or a
/// lost connection is returned to the caller instead: the server may have
/// accepted the job, and submitting it again elsewhere could run it twice. The
/// failed server goes into cooldown, so the caller's next request goes to a
/// healthy one. When every server is cooling down, requests fail at once with
/// [`Error::NoServerAvailable`] rather than wait.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.servers())
            .finish()
    }
}

/// What a submit needs from the reply.
enum Want {
    Foreground,
    Background,
}

impl Client {
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The configured servers, in the order given.
    pub fn servers(&self) -> Vec<ServerAddr> {
        self.inner.slots.iter().map(|s| s.addr.clone()).collect()
    }

    /// Each server's health, for metrics and logs.
    pub fn health(&self) -> Vec<(ServerAddr, Health)> {
        self.inner
            .slots
            .iter()
            .map(|s| (s.addr.clone(), s.health()))
            .collect()
    }

    /// The order in which servers are tried for `unique` (highest rendezvous
    /// score first), whatever their health. Empty uniques have no fixed
    /// order; this returns the configured order for them.
    pub fn route(&self, unique: impl AsRef<[u8]>) -> Vec<ServerAddr> {
        let unique = unique.as_ref();
        let order = if unique.is_empty() {
            routing::rotation_order(self.inner.slots.len(), 0)
        } else {
            self.rendezvous(unique)
        };
        order
            .into_iter()
            .map(|i| self.inner.slots[i].addr.clone())
            .collect()
    }

    fn rendezvous(&self, key: &[u8]) -> Vec<usize> {
        let names: Vec<&str> = self.inner.slots.iter().map(|s| s.name.as_str()).collect();
        routing::rendezvous_order(&names, key)
    }

    fn order_for(&self, key: &[u8]) -> Vec<usize> {
        if key.is_empty() {
            let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
            routing::rotation_order(self.inner.slots.len(), start % self.inner.slots.len())
        } else {
            self.rendezvous(key)
        }
    }

    /// Submits a foreground job and returns once the server has accepted it
    /// (JOB_CREATED). Read the events and the result from the [`Job`].
    pub async fn submit(&self, request: JobRequest) -> Result<Job, Error> {
        let deadline = request
            .timeout
            .or(self.inner.job_timeout)
            .map(|after| (Instant::now() + after, after));
        let packet = Packet::req(
            request.priority.foreground_packet(),
            &[&request.function, &request.unique, &request.payload],
        );
        let attempt = self.submit_packet(request.routing_key(), packet, Want::Foreground);
        let (handle, conn, events) = match deadline {
            Some((at, after)) => match tokio::time::timeout_at(at.into(), attempt).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(Error::Timeout {
                        server: None,
                        what: "the job to finish",
                        after,
                    })
                }
            },
            None => attempt.await?,
        };
        Ok(Job {
            handle,
            events: events.expect("foreground submits subscribe"),
            deadline,
            finished: false,
            _conn: conn,
        })
    }

    /// Submits a foreground job and waits for its result. WORK_FAIL and
    /// WORK_EXCEPTION come back as [`Error::JobFailed`] and
    /// [`Error::JobException`].
    pub async fn call(&self, request: JobRequest) -> Result<JobOutput, Error> {
        self.submit(request).await?.result().await
    }

    /// Submits a background job and returns its handle once the server has
    /// accepted it. Background jobs report nothing to their submitter; poll
    /// them with [`Client::status`].
    pub async fn submit_background(&self, request: JobRequest) -> Result<JobHandle, Error> {
        let packet = Packet::req(
            request.priority.background_packet(),
            &[&request.function, &request.unique, &request.payload],
        );
        let (handle, _, _) = self
            .submit_packet(request.routing_key(), packet, Want::Background)
            .await?;
        Ok(handle)
    }

    /// Submits a background job that the server runs at `when` or later
    /// (SUBMIT_JOB_EPOCH, whole seconds). The protocol gives epoch jobs NORMAL
    /// priority; the request's priority is ignored. A time in the past runs at
    /// once. gearmand (before 2.0) does not wake sleeping workers when an
    /// epoch job falls due, so it may start late there; gearboxd wakes one.
    pub async fn submit_epoch(
        &self,
        request: JobRequest,
        when: SystemTime,
    ) -> Result<JobHandle, Error> {
        let secs = when
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .to_string();
        let packet = Packet::req(
            PacketType::SUBMIT_JOB_EPOCH,
            &[
                &request.function,
                &request.unique,
                secs.as_bytes(),
                &request.payload,
            ],
        );
        let (handle, _, _) = self
            .submit_packet(request.routing_key(), packet, Want::Background)
            .await?;
        Ok(handle)
    }

    /// GET_STATUS for a job, asked of the server that issued its handle.
    pub async fn status(&self, job: &JobHandle) -> Result<JobStatus, Error> {
        let slot = self.slot(&job.server)?;
        let packet = Packet::req(PacketType::GET_STATUS, &[&job.handle]);
        let reply = self
            .request_on(slot, packet, Pending::Status, "STATUS_RES")
            .await?;
        Ok(JobStatus {
            known: reply.arg(1).as_ref() == b"1",
            running: reply.arg(2).as_ref() == b"1",
            numerator: parse_number(reply.arg(3)),
            denominator: parse_number(reply.arg(4)),
        })
    }

    /// GET_STATUS_UNIQUE, asked of the servers in the unique's routing order
    /// (the order its jobs were submitted in): the first server that knows the
    /// unique answers, so a job that failed over to its second server is still
    /// found. If none knows it, the first server's "unknown" is returned.
    pub async fn status_unique(&self, unique: impl AsRef<[u8]>) -> Result<UniqueStatus, Error> {
        let unique = unique.as_ref();
        let mut first_unknown = None;
        let mut reasons = Vec::new();
        for i in self.rendezvous(unique) {
            let slot = &self.inner.slots[i];
            let packet = Packet::req(PacketType::GET_STATUS_UNIQUE, &[unique]);
            match self
                .request_on(slot, packet, Pending::StatusUnique, "STATUS_RES_UNIQUE")
                .await
            {
                Ok(reply) => {
                    let status = UniqueStatus {
                        server: slot.addr.clone(),
                        unique: reply.arg(0).clone(),
                        known: reply.arg(1).as_ref() == b"1",
                        running: reply.arg(2).as_ref() == b"1",
                        numerator: parse_number(reply.arg(3)),
                        denominator: parse_number(reply.arg(4)),
                        clients: parse_number(reply.arg(5)),
                    };
                    if status.known {
                        return Ok(status);
                    }
                    first_unknown.get_or_insert(status);
                }
                Err(e @ Error::Server { .. }) => return Err(e),
                Err(e) => reasons.push((slot.addr.clone(), e.detail())),
            }
        }
        first_unknown.ok_or(Error::NoServerAvailable { reasons })
    }

    /// The configured server `server`, or `UnknownServer`.
    fn slot(&self, server: &ServerAddr) -> Result<&Slot, Error> {
        self.inner
            .slots
            .iter()
            .find(|s| &s.addr == server)
            .ok_or_else(|| Error::UnknownServer(server.clone()))
    }

    /// GET_STATUS_UNIQUE on one given server.
    pub async fn status_unique_on(
        &self,
        server: &ServerAddr,
        unique: impl AsRef<[u8]>,
    ) -> Result<UniqueStatus, Error> {
        let slot = self.slot(server)?;
        let packet = Packet::req(PacketType::GET_STATUS_UNIQUE, &[unique.as_ref()]);
        let reply = self
            .request_on(slot, packet, Pending::StatusUnique, "STATUS_RES_UNIQUE")
            .await?;
        Ok(UniqueStatus {
            server: slot.addr.clone(),
            unique: reply.arg(0).clone(),
            known: reply.arg(1).as_ref() == b"1",
            running: reply.arg(2).as_ref() == b"1",
            numerator: parse_number(reply.arg(3)),
            denominator: parse_number(reply.arg(4)),
            clients: parse_number(reply.arg(5)),
        })
    }

    /// ECHO_REQ round trip to one server: a health probe.
    pub async fn echo(&self, server: &ServerAddr, data: impl AsRef<[u8]>) -> Result<Bytes, Error> {
        let slot = self.slot(server)?;
        let packet = Packet::req(PacketType::ECHO_REQ, &[data.as_ref()]);
        let reply = self
            .request_on(slot, packet, Pending::Echo, "ECHO_RES")
            .await?;
        Ok(reply.arg(0).clone())
    }

    /// Sends a SUBMIT_* packet to the first usable server in routing order.
    async fn submit_packet(
        &self,
        key: &[u8],
        packet: Packet,
        want: Want,
    ) -> Result<(JobHandle, Arc<Conn>, Option<crate::job::EventRx>), Error> {
        let mut reasons = Vec::new();
        for i in self.order_for(key) {
            let slot = &self.inner.slots[i];
            // A connection found closed is replaced once: an idle connection
            // to a server that restarted is not a failure of the server.
            for _ in 0..2 {
                let conn = match slot.conn(&self.inner.connect).await {
                    Ok(c) => c,
                    Err(Unusable::CoolingDown(why)) => {
                        reasons.push((slot.addr.clone(), why));
                        break;
                    }
                    Err(Unusable::Failed(e)) => {
                        reasons.push((slot.addr.clone(), e.detail()));
                        break;
                    }
                };
                let (reply_tx, reply_rx) = oneshot::channel();
                let (events_tx, events_rx) = match want {
                    Want::Foreground => {
                        let (tx, rx) = mpsc::unbounded_channel();
                        (Some(tx), Some(rx))
                    }
                    Want::Background => (None, None),
                };
                let pending = Pending::Created {
                    reply: reply_tx,
                    events: events_tx,
                };
                if conn.send(packet.clone(), Some(pending)).is_err() {
                    slot.forget(&conn);
                    continue;
                }
                let handle = self
                    .await_reply(slot, &conn, reply_rx, "JOB_CREATED")
                    .await?;
                return Ok((
                    JobHandle {
                        server: slot.addr.clone(),
                        handle,
                    },
                    conn,
                    events_rx,
                ));
            }
        }
        Err(Error::NoServerAvailable { reasons })
    }

    /// One request/reply on one server (no failover: the request is about
    /// something that server holds).
    async fn request_on<F>(
        &self,
        slot: &Slot,
        packet: Packet,
        pending: F,
        what: &'static str,
    ) -> Result<Packet, Error>
    where
        F: Fn(oneshot::Sender<Result<Packet, Error>>) -> Pending,
    {
        for _ in 0..2 {
            let conn = match slot.conn(&self.inner.connect).await {
                Ok(c) => c,
                Err(Unusable::CoolingDown(why)) => {
                    return Err(Error::NoServerAvailable {
                        reasons: vec![(slot.addr.clone(), why)],
                    })
                }
                Err(Unusable::Failed(e)) => return Err(e),
            };
            let (tx, rx) = oneshot::channel();
            if conn.send(packet.clone(), Some(pending(tx))).is_err() {
                slot.forget(&conn);
                continue;
            }
            return self.await_reply(slot, &conn, rx, what).await;
        }
        Err(Error::ConnectionLost {
            server: slot.addr.clone(),
            reason: "connection closed before the request was sent".into(),
        })
    }

    /// Waits for a reply within the response timeout, and records the
    /// server's health from the outcome.
    async fn await_reply<T>(
        &self,
        slot: &Slot,
        conn: &Arc<Conn>,
        reply: oneshot::Receiver<Result<T, Error>>,
        what: &'static str,
    ) -> Result<T, Error> {
        let after = self.inner.response_timeout;
        match tokio::time::timeout(after, reply).await {
            Ok(Ok(Ok(value))) => {
                slot.record_success();
                Ok(value)
            }
            // The server answered with ERROR: it is alive and refused.
            Ok(Ok(Err(e @ Error::Server { .. }))) => {
                slot.record_success();
                Err(e)
            }
            Ok(Ok(Err(e))) => {
                slot.record_failure(Some(conn), &e);
                Err(e)
            }
            Ok(Err(_)) => {
                let e = Error::ConnectionLost {
                    server: conn.addr().clone(),
                    reason: "connection closed".into(),
                };
                slot.record_failure(Some(conn), &e);
                Err(e)
            }
            Err(_) => {
                let e = Error::Timeout {
                    server: Some(conn.addr().clone()),
                    what,
                    after,
                };
                slot.record_failure(Some(conn), &e);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn futures_are_send_so_they_can_be_spawned() {
        let client = Client::builder().server("127.0.0.1:1").build().unwrap();
        let handle = JobHandle::new("127.0.0.1:1".parse().unwrap(), "H:x:1");
        assert_send(&client.call(JobRequest::new("f", "x")));
        assert_send(&client.submit_background(JobRequest::new("f", "x")));
        assert_send(&client.submit_epoch(JobRequest::new("f", "x"), SystemTime::now()));
        assert_send(&client.status(&handle));
        assert_send(&client.status_unique("u"));
    }

    #[test]
    fn builder_rejects_bad_configurations() {
        assert!(matches!(Client::builder().build(), Err(Error::Config(_))));
        assert!(matches!(
            Client::builder().server("host:port").build(),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Client::builder().server("a:1").server("a:1").build(),
            Err(Error::Config(_))
        ));
        let client = Client::builder()
            .server("b:1")
            .server_addr("unix:/s".parse().unwrap())
            .server("a:1")
            .build()
            .unwrap();
        let shown: Vec<String> = client.servers().iter().map(|s| s.to_string()).collect();
        assert_eq!(shown, ["b:1", "unix:/s", "a:1"], "configured order is kept");
        assert!(client
            .health()
            .iter()
            .all(|(_, h)| *h == Health::Connecting));
        // Every server appears once in every route.
        let mut route = client.route("u");
        route.sort_by_key(|a| a.to_string());
        assert_eq!(route.len(), 3);
    }
}
