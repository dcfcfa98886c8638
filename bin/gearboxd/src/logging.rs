//! Log output: a file (reopened on SIGHUP, for logrotate), stderr, or nothing,
//! at gearmand's `--verbose` levels.

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

/// Installs the subscriber. Returns the log file, if any, for SIGHUP.
pub fn init(target: &str, level: &str) -> io::Result<Option<LogFile>> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_ansi(false)
        .with_target(false);
    match target {
        "none" => Ok(None),
        "stderr" => {
            builder.with_writer(io::stderr).init();
            Ok(None)
        }
        path => {
            let file = LogFile::open(path)?;
            builder.with_writer(file.clone()).init();
            Ok(Some(file))
        }
    }
}
