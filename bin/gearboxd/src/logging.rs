//! Log output: a file (reopened on SIGHUP, for logrotate), stderr, or nothing,
//! at gearmand's `--verbose` levels, as text lines or JSON lines.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;

/// A log file that can be reopened under the same path.
#[derive(Clone)]
pub struct LogFile {
    path: String,
    file: Arc<Mutex<File>>,
}

impl LogFile {
    pub fn open(path: &str) -> io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_string(),
            file: Arc::new(Mutex::new(open_append(path)?)),
        })
    }

    pub fn reopen(&self) {
        match open_append(&self.path) {
            Ok(file) => *self.file.lock().unwrap_or_else(|p| p.into_inner()) = file,
            Err(e) => tracing::error!(path = %self.path, error = %e, "cannot reopen log file"),
        }
    }
}

fn open_append(path: &str) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

pub struct LogFileWriter(Arc<Mutex<File>>);

impl Write for LogFileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileWriter;
    fn make_writer(&'a self) -> LogFileWriter {
        LogFileWriter(self.file.clone())
    }
}

/// gearmand's level name → a tracing filter.
fn filter(level: &str) -> &'static str {
    match level {
        "FATAL" | "ALERT" | "CRITICAL" | "ERROR" => "error",
        "WARNING" => "warn",
        "NOTICE" | "INFO" => "info",
        _ => "debug",
    }
}

/// How each log event is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event (the default, as before).
    Text,
    /// One JSON object per line: `timestamp`, `level` and `fields` (with the
    /// `message`), from tracing-subscriber's JSON formatter.
    Json,
}

/// Installs the subscriber. Returns the log file, if any, for SIGHUP.
pub fn init(target: &str, level: &str, format: LogFormat) -> io::Result<Option<LogFile>> {
    match target {
        "none" => Ok(None),
        "stderr" => {
            install(io::stderr, level, format);
            Ok(None)
        }
        path => {
            let file = LogFile::open(path)?;
            install(file.clone(), level, format);
            Ok(Some(file))
        }
    }
}

fn install<W>(writer: W, level: &str, format: LogFormat)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_ansi(false)
        .with_target(false)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
