//! The admin text protocol: command parsing and gearmand's exact reply texts.
//!
//! Tools such as gearadmin and monitoring scripts parse these replies, so the
//! texts, the `+` in place of spaces and the three line-ending styles are kept
//! byte for byte: listings end in `\n` with a `.\n` line, `OK`/`ERR` in `\r\n`,
//! and `OK <value>` in `\n`.

use bytes::Bytes;

/// gearmand closes the connection on a line of six or more tokens; we answer
/// [`AdminError::TooManyArguments`] instead.
pub const MAX_TOKENS: usize = 5;

/// A parsed admin command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    Status,
    PriorityStatus,
    Workers,
    /// Limits per priority, in the order HIGH, NORMAL, LOW; 0 means unlimited.
    MaxQueue {
        function: Bytes,
        limits: [u32; 3],
    },
    ShowJobs,
    ShowUniqueJobs,
    CancelJob(Bytes),
    CreateFunction(Bytes),
    DropFunction(Bytes),
    GetPid,
    Verbose,
    Version,
    /// gearbox's own: one line per peer (`--peer`).
    Peers,
    /// gearbox's own: `OK <server id>`, which peer links ask for (the cycle
    /// rule, docs/peers.md).
    ServerId,
    Shutdown {
        graceful: bool,
    },
}

/// An admin line that is not a valid command, with gearmand's reply for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// `ERR UNKNOWN_COMMAND Unknown+server+command<word>`, no space before the word.
    UnknownCommand(Bytes),
    /// `ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+<word>`.
    InvalidArguments(Bytes),
    UnknownShowArguments,
    /// gearmand's answer to `cancel` followed by anything but `job HANDLE`.
    UnknownError,
    /// Six or more tokens. gearmand closes the connection without a word.
    TooManyArguments,
}

impl AdminError {
    /// The reply line, `\r\n` included.
    pub fn reply(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        match self {
            AdminError::UnknownCommand(word) => {
                out.extend_from_slice(b"ERR UNKNOWN_COMMAND Unknown+server+command");
                out.extend_from_slice(c_str(word));
            }
            AdminError::InvalidArguments(word) => {
                out.extend_from_slice(
                    b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+",
                );
                out.extend_from_slice(c_str(word));
            }
            AdminError::UnknownShowArguments => {
                out.extend_from_slice(b"ERR UNKNOWN_SHOW_ARGUMENTS")
            }
            AdminError::UnknownError => out.extend_from_slice(b"ERR UNKNOWN_ERROR"),
            AdminError::TooManyArguments => {
                out.extend_from_slice(b"ERR TOO_MANY_ARGUMENTS Admin+commands+take+at+most+5+words")
            }
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// The bytes before the first NUL: how gearmand, which prints C strings, shows
/// a name or word that contains one.
pub fn c_str(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or_default()
}

/// Splits a line on runs of spaces. Tabs are not separators, as in gearmand.
pub fn tokens(line: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &b) in line.iter().enumerate() {
        match (b == b' ', start) {
            (true, Some(s)) => {
                out.push(line.slice(s..i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(line.slice(s..));
    }
    out
}

fn is(word: &[u8], expected: &str) -> bool {
    word.eq_ignore_ascii_case(expected.as_bytes())
}

/// Parses one admin line (without its line ending).
pub fn parse(line: &Bytes) -> Result<AdminCommand, AdminError> {
    let args = tokens(line);
    if args.len() > MAX_TOKENS {
        return Err(AdminError::TooManyArguments);
    }
    let Some(word) = args.first() else {
        return Err(AdminError::UnknownCommand(Bytes::new()));
    };
    let invalid = || AdminError::InvalidArguments(word.clone());
    let unknown = || AdminError::UnknownCommand(word.clone());
    let argc = args.len();
    // Extra words after a word-only command are ignored, as in gearmand.
    if is(word, "workers") {
        Ok(AdminCommand::Workers)
    } else if is(word, "status") {
        Ok(AdminCommand::Status)
    } else if is(word, "prioritystatus") {
        Ok(AdminCommand::PriorityStatus)
    } else if is(word, "cancel") {
        match argc {
            0..=2 => Err(unknown()),
            3 if is(&args[1], "job") => Ok(AdminCommand::CancelJob(args[2].clone())),
            _ => Err(AdminError::UnknownError),
        }
    } else if is(word, "show") {
        match argc {
            1 => Err(unknown()),
            2 if is(&args[1], "jobs") => Ok(AdminCommand::ShowJobs),
            3 if is(&args[1], "unique") && is(&args[2], "jobs") => Ok(AdminCommand::ShowUniqueJobs),
            _ => Err(AdminError::UnknownShowArguments),
        }
    } else if is(word, "create") {
        match argc {
            3 if is(&args[1], "function") => Ok(AdminCommand::CreateFunction(args[2].clone())),
            _ => Err(invalid()),
        }
    } else if is(word, "drop") {
        match argc {
            3 if is(&args[1], "function") => Ok(AdminCommand::DropFunction(args[2].clone())),
            _ => Err(invalid()),
        }
    } else if is(word, "maxqueue") {
        if argc == 1 {
            return Err(invalid());
        }
        Ok(AdminCommand::MaxQueue {
            function: args[1].clone(),
            limits: maxqueue_limits(&args[2..]),
        })
    } else if is(word, "getpid") {
        Ok(AdminCommand::GetPid)
    } else if is(word, "verbose") {
        Ok(AdminCommand::Verbose)
    } else if is(word, "version") {
        Ok(AdminCommand::Version)
    } else if is(word, "peers") {
        Ok(AdminCommand::Peers)
    } else if is(word, "serverid") {
        Ok(AdminCommand::ServerId)
    } else if is(word, "shutdown") {
        match argc {
            1 => Ok(AdminCommand::Shutdown { graceful: false }),
            2 if is(&args[1], "graceful") => Ok(AdminCommand::Shutdown { graceful: true }),
            _ => Err(invalid()),
        }
    } else {
        Err(unknown())
    }
}

/// gearmand's rules: no number resets all three limits to 0 (unlimited), one
/// number sets all three, two set HIGH and NORMAL and reset LOW, three set each.
fn maxqueue_limits(numbers: &[Bytes]) -> [u32; 3] {
    let mut limits = [0u32; 3];
    for (limit, raw) in limits.iter_mut().zip(numbers) {
        *limit = atoi(raw).max(0) as u32;
    }
    if numbers.len() <= 1 {
        limits = [limits[0]; 3];
    }
    limits
}

/// C's `atoi`: optional leading spaces and sign, then digits up to the first
/// other byte; no digits gives 0. Saturates instead of overflowing.
pub fn atoi(raw: &[u8]) -> i64 {
    let mut bytes = raw
        .iter()
        .copied()
        .skip_while(|b| b.is_ascii_whitespace())
        .peekable();
    let negative = match bytes.peek() {
        Some(b'-') => {
            bytes.next();
            true
        }
        Some(b'+') => {
            bytes.next();
            false
        }
        _ => false,
    };
    let mut value: i64 = 0;
    for b in bytes.take_while(u8::is_ascii_digit) {
        value = value.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if negative {
        -value
    } else {
        value
    }
}

/// `OK\r\n`, the reply to commands that change something.
pub const OK: &[u8] = b"OK\r\n";
/// The reply to `cancel job` for a handle the server does not hold.
pub const ERR_UNKNOWN_JOB: &[u8] = b"ERR UNKNOWN_JOB\r\n";
/// `drop function` for a name the server does not know.
pub const ERR_FUNCTION_NOT_FOUND: &[u8] = b"ERR function not found\r\n";
/// `drop function` while workers are registered or jobs run.
pub const ERR_FUNCTION_BUSY: &[u8] =
    b"ERR there are still connected workers or executing clients\r\n";
/// The `.` line that ends every listing.
pub const END_OF_LISTING: &[u8] = b".\n";
