//! Runs a case's steps against one server and records what every connection receives.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::case::{BatchItem, Case, Step};
use super::wire::{encode_request, parse_frames, Frame};

/// Upper bound of one settle, whatever the server does.
pub const SETTLE_MAX: Duration = Duration::from_secs(10);
/// How long a settle waits for the replies it knows must come (see
/// [`always_answered`]) before it starts timing the quiet period.
const EXPECT_WAIT: Duration = Duration::from_secs(2);
/// How long a settle waits for its barrier ECHOs.
const SYNC_WAIT: Duration = Duration::from_secs(5);
/// Payload of the barrier ECHO_REQ a settle sends (its ECHO_RES is not recorded).
const SYNC_PAYLOAD: &[u8] = b"\x01diff-sync\x01";
/// How long a placeholder waits for the frame it refers to.
const PLACEHOLDER_WAIT: Duration = Duration::from_secs(3);
/// How long one send may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(20);
/// Poll interval while waiting.
const POLL: Duration = Duration::from_millis(3);

/// Request types gearmand always answers with exactly one packet on the same
/// connection (when well-formed): SUBMIT_*, GRAB_*, ECHO_REQ, GET_STATUS*, OPTION_REQ.
/// A settle first waits (at most `EXPECT_WAIT`) for that many frames, so a loaded
/// machine cannot split a reply from its request across blocks.
pub fn always_answered(ptype: u32) -> bool {
    matches!(
        ptype,
        7 | 9 | 15 | 16 | 18 | 21 | 26 | 30 | 32 | 33 | 34 | 36 | 37 | 38 | 39 | 41
    )
}

/// Admin commands whose reply is a listing ending in `.\n`, plus the two whose value
/// is normalised. Recorded per connection in send order, for the normaliser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminKind {
    Status,
    PriorityStatus,
    Workers,
    ShowJobs,
    ShowUniqueJobs,
    Getpid,
    Version,
    Verbose,
    Other,
}

impl AdminKind {
    /// Classifies a line as gearmand does: tokens split on spaces, command words
    /// case-insensitive.
    pub fn of_line(text: &str) -> AdminKind {
        let tokens: Vec<String> = text
            .split(' ')
            .filter(|t| !t.is_empty())
            .map(|t| t.to_ascii_lowercase())
            .collect();
        let t: Vec<&str> = tokens.iter().map(String::as_str).collect();
        // Extra tokens after these five are ignored by gearmand.
        match t.as_slice() {
            ["status", ..] => AdminKind::Status,
            ["prioritystatus", ..] => AdminKind::PriorityStatus,
            ["workers", ..] => AdminKind::Workers,
            ["getpid", ..] => AdminKind::Getpid,
            ["version", ..] => AdminKind::Version,
            ["verbose", ..] => AdminKind::Verbose,
            ["show", "jobs"] => AdminKind::ShowJobs,
            ["show", "unique", "jobs"] => AdminKind::ShowUniqueJobs,
            _ => AdminKind::Other,
        }
    }
}

/// Everything one session observed.
#[derive(Clone, Debug, Default)]
pub struct Transcript {
    /// `blocks[i][conn-1]` = frames connection `conn` received in settle block i+1.
    pub blocks: Vec<Vec<Vec<Frame>>>,
    /// `admin[i][conn-1]` = admin commands sent on `conn` during block i+1, in order.
    /// A reply is matched with the commands sent in its own block.
    pub admin: Vec<Vec<Vec<AdminKind>>>,
    /// Problems of the harness itself (settle limit hit, unresolved placeholder…).
    pub notes: Vec<String>,
}

struct Conn {
    stream: Option<TcpStream>,
    /// Unparsed input.
    pending: Vec<u8>,
    /// Every frame so far (for placeholders).
    seen: Vec<Frame>,
    /// Sent something since the last settle.
    dirty: bool,
    /// Barrier ECHOs may be sent (false once raw bytes were sent on it).
    sync_ok: bool,
    /// A barrier ECHO_RES is awaited.
    sync_pending: bool,
}

/// Sends ECHO_REQ "sync" and reads the matching ECHO_RES (blocking, 5 s at most).
fn sync_echo(s: &mut TcpStream) -> std::io::Result<()> {
    let req = encode_request(16, &[b"sync".to_vec()]);
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(&req)?;
    let mut reply = [0u8; 16];
    s.read_exact(&mut reply)?;
    if &reply[..4] != b"\0RES" || reply[7] != 17 || &reply[12..] != b"sync" {
        return Err(std::io::Error::other(format!("unexpected reply {reply:?}")));
    }
    Ok(())
}

/// A set of numbered connections to one server.
pub struct Session {
    addr: SocketAddr,
    prefix: String,
    conns: Vec<Conn>,
    current: Vec<Vec<Frame>>,
    current_admin: Vec<Vec<AdminKind>>,
    /// Replies certainly owed to each connection in the current block.
    expected: Vec<usize>,
    /// Settles use barrier ECHOs (see [`Session::settle`]).
    sync: bool,
    transcript: Transcript,
}

impl Session {
    /// `prefix` is the server's job handle prefix (what `$H` stands for).
    pub fn new(addr: SocketAddr, prefix: &str) -> Session {
        Session {
            addr,
            prefix: prefix.to_owned(),
            conns: Vec::new(),
            current: Vec::new(),
            current_admin: Vec::new(),
            expected: Vec::new(),
            sync: true,
            transcript: Transcript::default(),
        }
    }

    /// Runs all steps of `case`, then a final settle, and returns the transcript.
    pub fn run(mut self, case: &Case) -> Transcript {
        self.sync = case.sync;
        for step in &case.steps {
            self.step(step);
        }
        self.settle(Duration::from_millis(150));
        for (i, conn) in self.conns.iter_mut().enumerate() {
            if !conn.pending.is_empty() {
                let bytes = std::mem::take(&mut conn.pending);
                let last = self.transcript.blocks.last_mut().expect("final block");
                last[i].push(Frame::Partial(bytes));
            }
            if let Some(stream) = conn.stream.take() {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        let n = self.conns.len();
        for block in &mut self.transcript.blocks {
            block.resize(n, Vec::new());
        }
        for block in &mut self.transcript.admin {
            block.resize(n, Vec::new());
        }
        self.transcript
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Connect { sync } => self.connect(*sync),
            Step::Send { conn, ptype, args } => {
                self.conns[conn - 1].dirty = true;
                if always_answered(*ptype) {
                    self.expected[conn - 1] += 1;
                }
                let args: Vec<Vec<u8>> = args.iter().map(|a| self.resolve(a)).collect();
                let bytes = encode_request(*ptype, &args);
                self.write(*conn, &bytes);
            }
            Step::Raw { conn, bytes } => {
                self.conns[conn - 1].sync_ok = false;
                self.write(*conn, bytes)
            }
            Step::Line {
                conn,
                lines,
                ending,
            } => {
                self.conns[conn - 1].dirty = true;
                let mut bytes = Vec::new();
                for text in lines {
                    bytes.extend(self.admin_line(*conn, text, ending));
                }
                self.write(*conn, &bytes);
            }
            Step::Batch { conn, items } => {
                self.conns[conn - 1].dirty = true;
                let mut bytes = Vec::new();
                for item in items {
                    match item {
                        BatchItem::Packet { ptype, args } => {
                            if always_answered(*ptype) {
                                self.expected[conn - 1] += 1;
                            }
                            let args: Vec<Vec<u8>> = args.iter().map(|a| self.resolve(a)).collect();
                            bytes.extend(encode_request(*ptype, &args));
                        }
                        BatchItem::Line { text, ending } => {
                            bytes.extend(self.admin_line(*conn, text, ending));
                        }
                    }
                }
                self.write(*conn, &bytes);
            }
            Step::Settle { quiet_ms } => self.settle(Duration::from_millis(*quiet_ms)),
            Step::Sleep { ms } => {
                let until = Instant::now() + Duration::from_millis(*ms);
                while Instant::now() < until {
                    self.poll();
                    thread::sleep(POLL);
                }
            }
            Step::Close { conn } => {
                self.poll();
                if let Some(stream) = self.conns[conn - 1].stream.take() {
                    let _ = stream.shutdown(Shutdown::Both);
                }
            }
        }
    }

    /// Resolves placeholders token by token, records the command for the normaliser
    /// and returns the bytes to send.
    fn admin_line(&mut self, conn: usize, text: &str, ending: &str) -> Vec<u8> {
        let resolved: Vec<String> = text
            .split(' ')
            .map(|tok| String::from_utf8_lossy(&self.resolve(tok.as_bytes())).into_owned())
            .collect();
        let resolved = resolved.join(" ");
        self.current_admin[conn - 1].push(AdminKind::of_line(&resolved));
        self.expected[conn - 1] += 1;
        format!("{resolved}{ending}").into_bytes()
    }

    fn connect(&mut self, sync: bool) {
        let n = self.conns.len() + 1;
        let stream = match TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)) {
            Ok(mut s) => {
                let _ = s.set_nodelay(true);
                if sync {
                    if let Err(e) = sync_echo(&mut s) {
                        self.transcript
                            .notes
                            .push(format!("connection {n}: sync ECHO failed: {e}"));
                    }
                }
                s.set_nonblocking(true).expect("set_nonblocking");
                Some(s)
            }
            Err(e) => {
                self.transcript
                    .notes
                    .push(format!("connection {n} failed: {e}"));
                None
            }
        };
        self.conns.push(Conn {
            stream,
            pending: Vec::new(),
            seen: Vec::new(),
            dirty: false,
            sync_ok: true,
            sync_pending: false,
        });
        self.current.push(Vec::new());
        self.current_admin.push(Vec::new());
        self.expected.push(0);
    }

    /// Reads whatever is available on every open connection. True if anything came.
    fn poll(&mut self) -> bool {
        let mut got = false;
        let mut buf = vec![0u8; 65536];
        for (i, conn) in self.conns.iter_mut().enumerate() {
            let mut closed = false;
            if let Some(stream) = conn.stream.as_mut() {
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => {
                            closed = true;
                            break;
                        }
                        Ok(n) => {
                            got = true;
                            conn.pending.extend_from_slice(&buf[..n]);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(_) => {
                            closed = true;
                            break;
                        }
                    }
                }
            }
            let mut frames = parse_frames(&mut conn.pending);
            frames.retain(|f| match f {
                Frame::Packet {
                    ptype: 17, body, ..
                } if body.as_slice() == SYNC_PAYLOAD => {
                    conn.sync_pending = false;
                    false
                }
                _ => true,
            });
            conn.seen.extend(frames.iter().cloned());
            self.current[i].extend(frames);
            if closed {
                got = true;
                conn.stream = None;
                if !conn.pending.is_empty() {
                    let bytes = std::mem::take(&mut conn.pending);
                    self.current[i].push(Frame::Partial(bytes));
                }
                self.current[i].push(Frame::Closed);
                conn.seen.push(Frame::Closed);
            }
        }
        got
    }

    /// Sends a barrier ECHO_REQ on every open connection that `which` selects and that
    /// may take one, and waits until all are answered (or the connection closed).
    fn barrier(&mut self, which: impl Fn(&Conn) -> bool) {
        let start = Instant::now();
        let sync = encode_request(16, &[SYNC_PAYLOAD.to_vec()]);
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            if which(c) && c.sync_ok && c.stream.is_some() {
                self.conns[i].sync_pending = true;
                self.write(i + 1, &sync);
            }
        }
        while self
            .conns
            .iter()
            .any(|c| c.sync_pending && c.stream.is_some())
        {
            if start.elapsed() >= SYNC_WAIT {
                self.transcript.notes.push(format!(
                    "settle {}: barrier ECHO not answered within {SYNC_WAIT:?} \
                     (does the case need no_sync()?)",
                    self.transcript.blocks.len() + 1
                ));
                break;
            }
            self.poll();
            thread::sleep(POLL);
        }
        for c in &mut self.conns {
            c.sync_pending = false;
        }
    }

    /// Have all connections received the replies they are owed (or been closed)?
    fn replies_in(&self) -> bool {
        self.conns
            .iter()
            .enumerate()
            .all(|(i, c)| c.stream.is_none() || self.current[i].len() >= self.expected[i])
    }

    /// Ends a block:
    /// 1. barrier: every connection that sent well-formed requests in this block gets
    ///    an ECHO_REQ, and its ECHO_RES (not recorded) is awaited, so the server has
    ///    processed everything sent before it (at most [`SYNC_WAIT`]); then every
    ///    connection gets one, so whatever those requests queued for it has arrived;
    /// 2. replies the requests are certainly owed are awaited (at most [`EXPECT_WAIT`]);
    /// 3. then nothing may arrive on any connection for `quiet`.
    fn settle(&mut self, quiet: Duration) {
        let start = Instant::now();
        if self.sync {
            // Phase 1 makes sure the server has processed every request of the block
            // (and so queued whatever they cause on other connections); phase 2 flushes
            // every connection's queue up to that point.
            self.barrier(|c| c.dirty);
            self.barrier(|_| true);
        }
        for c in &mut self.conns {
            c.dirty = false;
            c.sync_pending = false;
        }
        let waited = Instant::now();
        while !self.replies_in() && waited.elapsed() < EXPECT_WAIT {
            self.poll();
            thread::sleep(POLL);
        }
        let mut last = Instant::now();
        loop {
            if self.poll() {
                last = Instant::now();
            }
            let now = Instant::now();
            if now.duration_since(last) >= quiet {
                break;
            }
            if now.duration_since(start) >= SETTLE_MAX {
                self.transcript.notes.push(format!(
                    "settle {} never became quiet within {SETTLE_MAX:?}",
                    self.transcript.blocks.len() + 1
                ));
                break;
            }
            thread::sleep(POLL);
        }
        let block: Vec<Vec<Frame>> = self.current.iter_mut().map(std::mem::take).collect();
        self.transcript.blocks.push(block);
        let admin: Vec<Vec<AdminKind>> =
            self.current_admin.iter_mut().map(std::mem::take).collect();
        self.transcript.admin.push(admin);
        self.expected.iter_mut().for_each(|e| *e = 0);
    }

    fn write(&mut self, conn: usize, bytes: &[u8]) {
        let deadline = Instant::now() + SEND_TIMEOUT;
        let mut off = 0;
        while off < bytes.len() {
            let result = match self.conns[conn - 1].stream.as_mut() {
                Some(stream) => stream.write(&bytes[off..]),
                None => return, // closed: what the server did is already recorded
            };
            match result {
                Ok(0) => return,
                Ok(n) => off += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        self.transcript
                            .notes
                            .push(format!("send on c{conn} timed out after {off} bytes"));
                        return;
                    }
                    // Keep reading so a server that answers while we write cannot stall us.
                    self.poll();
                    thread::sleep(Duration::from_millis(1));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return, // reset by the server; the close shows up when reading
            }
        }
    }

    /// Replaces a whole-argument placeholder (`$A<n>`, `$C<n>`, `$C<n>.<k>`, `$H…`,
    /// `$T+<s>` / `$T-<s>`).
    fn resolve(&mut self, arg: &[u8]) -> Vec<u8> {
        let text = match std::str::from_utf8(arg) {
            Ok(t) if t.starts_with('$') => t.to_owned(),
            _ => return arg.to_vec(),
        };
        if let Some(rest) = text.strip_prefix("$H") {
            return format!("{}{rest}", self.prefix).into_bytes();
        }
        if let Some(rest) = text.strip_prefix("$T") {
            if let Ok(delta) = rest.parse::<i64>() {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                return (now + delta).to_string().into_bytes();
            }
        }
        let (kind, spec) = text.split_at(2);
        if kind != "$A" && kind != "$C" {
            return arg.to_vec();
        }
        let (conn_s, nth) = match spec.split_once('.') {
            Some((c, k)) => (c, k.parse::<usize>().ok()),
            None => (spec, None),
        };
        let Ok(conn) = conn_s.parse::<usize>() else {
            return arg.to_vec();
        };
        let deadline = Instant::now() + PLACEHOLDER_WAIT;
        loop {
            if let Some(handle) = self.find_handle(kind == "$A", conn, nth) {
                return handle;
            }
            if Instant::now() >= deadline {
                self.transcript
                    .notes
                    .push(format!("placeholder {text} could not be resolved"));
                return arg.to_vec();
            }
            self.poll();
            thread::sleep(POLL);
        }
    }

    fn find_handle(&self, assign: bool, conn: usize, nth: Option<usize>) -> Option<Vec<u8>> {
        let conn = self.conns.get(conn.checked_sub(1)?)?;
        let handles: Vec<Vec<u8>> = conn
            .seen
            .iter()
            .filter_map(|f| match f {
                Frame::Packet { ptype, body, .. } => {
                    let wanted = if assign {
                        matches!(ptype, 11 | 31 | 40)
                    } else {
                        *ptype == 8
                    };
                    if !wanted {
                        return None;
                    }
                    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                    Some(body[..end].to_vec())
                }
                _ => None,
            })
            .collect();
        match nth {
            Some(k) => handles.get(k.checked_sub(1)?).cloned(),
            None => handles.last().cloned(),
        }
    }
}
