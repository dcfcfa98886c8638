//! The case DSL: a scripted exchange (numbered connections, packets, admin lines,
//! settles) that is run unchanged against every server, plus what is expected of
//! gearboxd where it deliberately differs from gearmand.

use super::wire::{encode_raw, IntoPacketType};

/// One step of a case.
#[derive(Clone, Debug)]
pub enum Step {
    /// Open the next numbered connection (1, 2, …). With `sync`, an ECHO_REQ round
    /// trip (not recorded) follows, so the server has surely registered the connection
    /// before the next step.
    Connect { sync: bool },
    /// Send a request packet: `\0REQ`, type, size, args joined by NUL. Whole-argument
    /// placeholders are resolved at send time (see [`Case::send`]).
    Send {
        conn: usize,
        ptype: u32,
        args: Vec<Vec<u8>>,
    },
    /// Send bytes exactly as given.
    Raw { conn: usize, bytes: Vec<u8> },
    /// Send packets and admin lines interleaved, all in one write.
    Batch { conn: usize, items: Vec<BatchItem> },
    /// Send admin text lines, all in one write, each followed by `ending` (`"\r\n"` or
    /// `"\n"`). Placeholders are resolved per space-separated token.
    Line {
        conn: usize,
        lines: Vec<String>,
        ending: &'static str,
    },
    /// Wait until no connection received anything for `quiet_ms`; everything received
    /// since the previous settle forms one block of the transcript.
    Settle { quiet_ms: u64 },
    /// Sleep, receiving (into the current block) meanwhile.
    Sleep { ms: u64 },
    /// Close the connection from our side.
    Close { conn: usize },
}

impl Step {
    /// One line describing the step, for transcripts and `--list`.
    pub fn describe(&self) -> String {
        use super::wire::{escape_body, packet_name};
        match self {
            Step::Connect { sync: true } => "connect".to_owned(),
            Step::Connect { sync: false } => "connect (no sync)".to_owned(),
            Step::Send { conn, ptype, args } => {
                let body = args.join(&0u8);
                if body.is_empty() {
                    format!("c{conn} > {}", packet_name(*ptype))
                } else {
                    format!("c{conn} > {} {}", packet_name(*ptype), escape_body(&body))
                }
            }
            Step::Raw { conn, bytes } => format!("c{conn} > raw \"{}\"", escape_body(bytes)),
            Step::Line {
                conn,
                lines,
                ending,
            } => {
                let all: String = lines.iter().map(|l| format!("{l}{ending}")).collect();
                format!("c{conn} > line \"{}\"", escape_body(all.as_bytes()))
            }
            Step::Batch { conn, items } => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| match i {
                        BatchItem::Packet { ptype, args } => {
                            let body = args.join(&0u8);
                            format!("{} {}", packet_name(*ptype), escape_body(&body))
                        }
                        BatchItem::Line { text, ending } => {
                            format!(
                                "line \"{}\"",
                                escape_body(format!("{text}{ending}").as_bytes())
                            )
                        }
                    })
                    .collect();
                format!("c{conn} > one write: {}", parts.join(" + "))
            }
            Step::Settle { quiet_ms } => format!("settle ({quiet_ms} ms quiet)"),
            Step::Sleep { ms } => format!("sleep {ms} ms"),
            Step::Close { conn } => format!("c{conn} close"),
        }
    }
}

/// One element of a [`Step::Batch`].
#[derive(Clone, Debug)]
pub enum BatchItem {
    Packet { ptype: u32, args: Vec<Vec<u8>> },
    Line { text: String, ending: &'static str },
}

/// What gearboxd is expected to receive instead of gearmand's frames: on connection
/// `conn`, in settle block `block` (1-based, as numbered in the transcript).
#[derive(Clone, Debug)]
pub struct Override {
    pub block: usize,
    pub conn: usize,
    /// Rendered frames (as in the transcript, `$H` standing for the handle prefix).
    pub frames: Vec<String>,
}

/// A declared, documented difference of gearboxd (a compat.md id) together with the
/// exact frames gearboxd must produce where it differs.
#[derive(Clone, Debug)]
pub struct Deviation {
    pub id: String,
    pub why: String,
    pub overrides: Vec<Override>,
}

/// One differential case.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub category: &'static str,
    /// Extra server flags, passed to both servers.
    pub flags: Vec<String>,
    pub steps: Vec<Step>,
    pub deviation: Option<Deviation>,
    /// What the case checks (shown by `--list`).
    pub about: String,
    /// Settles send barrier ECHOs (see `Session::settle`); off for cases whose
    /// connections are left mid-packet on purpose.
    pub sync: bool,
    /// Why the case must not run against an external server (`--target`), if so.
    pub local_only: Option<String>,
    connections: usize,
}

impl Case {
    pub fn new(name: &str, category: &'static str) -> Case {
        Case {
            name: name.to_owned(),
            category,
            flags: Vec::new(),
            steps: Vec::new(),
            deviation: None,
            about: String::new(),
            sync: true,
            local_only: None,
            connections: 0,
        }
    }

    /// A one-line description.
    pub fn about(mut self, text: &str) -> Case {
        self.about = text.to_owned();
        self
    }

    /// No barrier ECHOs at settles: for cases that leave a connection mid-packet
    /// with `send` (raw steps already turn barriers off for their connection).
    pub fn no_sync(mut self) -> Case {
        self.sync = false;
        self
    }

    /// Skip the case in `--target` mode, e.g. because it would shut the server down or
    /// leave a function behind that `--reset` cannot drop.
    pub fn local_only(mut self, why: &str) -> Case {
        self.local_only = Some(why.to_owned());
        self
    }

    /// Extra server flags (given to gearmand and gearboxd alike).
    pub fn flags(mut self, flags: &[&str]) -> Case {
        self.flags.extend(flags.iter().map(|s| s.to_string()));
        self
    }

    /// Opens the next connection (the first is 1) and waits for an ECHO_REQ round
    /// trip on it, which is not part of the transcript.
    pub fn connect(mut self) -> Case {
        self.connections += 1;
        self.steps.push(Step::Connect { sync: true });
        self
    }

    /// Opens the next connection without the ECHO round trip.
    pub fn connect_raw(mut self) -> Case {
        self.connections += 1;
        self.steps.push(Step::Connect { sync: false });
        self
    }

    /// Opens `n` more connections.
    pub fn connect_n(mut self, n: usize) -> Case {
        for _ in 0..n {
            self = self.connect();
        }
        self
    }

    /// Applies a helper that adds steps (for shared step sequences).
    pub fn with(self, f: impl FnOnce(Case) -> Case) -> Case {
        f(self)
    }

    /// Number of connections the case opens.
    pub fn connections(&self) -> usize {
        self.connections
    }

    fn check_conn(&self, conn: usize) {
        assert!(
            conn >= 1 && conn <= self.connections,
            "case {}: connection {conn} used before connect()",
            self.name
        );
    }

    /// Sends a request packet of type `ptype` (a number or a name) with `args` joined
    /// by NUL. An argument that is exactly one of these placeholders is replaced when
    /// the step runs:
    /// * `$A<n>`: the handle of the last JOB_ASSIGN* connection n received;
    /// * `$C<n>` / `$C<n>.<k>`: the handle of the last / k-th JOB_CREATED on connection n;
    /// * `$H<rest>`: the session's handle prefix followed by `<rest>` (e.g. `$H:999`);
    /// * `$T+<s>` / `$T-<s>`: the current Unix time plus / minus `s` seconds.
    pub fn send<T: IntoPacketType>(self, conn: usize, ptype: T, args: &[&str]) -> Case {
        let args = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        self.send_bytes(conn, ptype, args)
    }

    /// [`Case::send`] with byte arguments.
    pub fn send_bytes<T: IntoPacketType>(
        mut self,
        conn: usize,
        ptype: T,
        args: Vec<Vec<u8>>,
    ) -> Case {
        self.check_conn(conn);
        self.steps.push(Step::Send {
            conn,
            ptype: ptype.packet_type(),
            args,
        });
        self
    }

    /// Sends bytes exactly as given (no placeholders).
    pub fn raw(mut self, conn: usize, bytes: &[u8]) -> Case {
        self.check_conn(conn);
        self.steps.push(Step::Raw {
            conn,
            bytes: bytes.to_vec(),
        });
        self
    }

    /// Sends packets (`Ok((type, args))`) and admin lines (`Err("line")`, CRLF) in
    /// a single write, in the order given.
    pub fn batch(mut self, conn: usize, items: &[Result<(&str, &[&str]), &str>]) -> Case {
        self.check_conn(conn);
        let items = items
            .iter()
            .map(|i| match i {
                Ok((name, args)) => BatchItem::Packet {
                    ptype: name.packet_type(),
                    args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
                },
                Err(line) => BatchItem::Line {
                    text: line.to_string(),
                    ending: "\r\n",
                },
            })
            .collect();
        self.steps.push(Step::Batch { conn, items });
        self
    }

    /// Sends a packet with an arbitrary magic, type and body (size = body length).
    pub fn packet(self, conn: usize, magic: &[u8; 4], ptype: u32, body: &[u8]) -> Case {
        let bytes = encode_raw(*magic, ptype, body);
        self.raw(conn, &bytes)
    }

    /// Sends an admin line ending in `\r\n` (as gearadmin does).
    pub fn line(self, conn: usize, text: &str) -> Case {
        self.lines_with(conn, &[text], "\r\n")
    }

    /// Sends an admin line ending in `\n` only.
    pub fn line_lf(self, conn: usize, text: &str) -> Case {
        self.lines_with(conn, &[text], "\n")
    }

    /// Sends several admin lines (CRLF) in a single write.
    pub fn lines(self, conn: usize, texts: &[&str]) -> Case {
        self.lines_with(conn, texts, "\r\n")
    }

    fn lines_with(mut self, conn: usize, texts: &[&str], ending: &'static str) -> Case {
        self.check_conn(conn);
        self.steps.push(Step::Line {
            conn,
            lines: texts.iter().map(|t| t.to_string()).collect(),
            ending,
        });
        self
    }

    /// Waits for a 150 ms quiet period and closes the current transcript block.
    pub fn settle(self) -> Case {
        self.settle_ms(150)
    }

    /// [`Case::settle`] with another quiet period.
    pub fn settle_ms(mut self, quiet_ms: u64) -> Case {
        self.steps.push(Step::Settle { quiet_ms });
        self
    }

    pub fn sleep(mut self, ms: u64) -> Case {
        self.steps.push(Step::Sleep { ms });
        self
    }

    pub fn close(mut self, conn: usize) -> Case {
        self.check_conn(conn);
        self.steps.push(Step::Close { conn });
        self
    }

    /// Number of settle blocks the transcript will have (every settle step, plus the
    /// final one the runner adds).
    pub fn blocks(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Settle { .. }))
            .count()
            + 1
    }

    /// Declares an intended difference, documented in docs/compat.md as `**<id>.`.
    /// Must be followed by at least one [`Case::gearbox`] giving gearboxd's exact frames.
    pub fn deviation(mut self, id: &str, why: &str) -> Case {
        assert!(
            self.deviation.is_none(),
            "case {}: one deviation per case",
            self.name
        );
        self.deviation = Some(Deviation {
            id: id.to_owned(),
            why: why.to_owned(),
            overrides: Vec::new(),
        });
        self
    }

    /// gearboxd must receive exactly `frames` (rendered as in the transcript; `$H` is
    /// the handle prefix; an empty list means nothing) on connection `conn` in settle
    /// block `block`, where gearmand's frames differ. Everything not overridden must be
    /// identical.
    pub fn gearbox(mut self, block: usize, conn: usize, frames: &[&str]) -> Case {
        let name = self.name.clone();
        let blocks = self.blocks();
        let dev = self
            .deviation
            .as_mut()
            .unwrap_or_else(|| panic!("case {name}: gearbox() without deviation()"));
        assert!(
            block >= 1 && block <= blocks,
            "case {name}: no block {block}"
        );
        dev.overrides.push(Override {
            block,
            conn,
            frames: frames.iter().map(|s| s.to_string()).collect(),
        });
        self
    }
}
