//! Structured logging set-up.
//!
//! Log lines carry ids of organisations, record ids and reasons, never payloads,
//! V-nummers or names of people: that rule is kept where events are written, and
//! this module only decides the output format and how lines leave.
//!
//! A server's lines leave through a bounded queue and a thread of their
//! own, never from the thread that serves an exchange: a reader that stops
//! reading (journald rate-limiting, a pipe nobody drains) would otherwise
//! stop the gateway at its next log line. When the queue is full a line is dropped and counted
//! (`ketenpoort_log_lines_dropped_total`): the audit log, not this one, is
//! the record of what was disclosed and refused.

use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Lines waiting for the writer thread, at most: about 200 bytes each, so
/// the queue holds some 200 KiB when the reader has stopped.
pub const QUEUED_LINES: usize = 1024;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Lines dropped so far because the queue was full (0 before [`init`]).
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |c| u64::try_from(c.dropped_lines()).unwrap_or(u64::MAX))
}

/// Installs the global subscriber; `RUST_LOG` overrides the default level
/// (info). With `queued` (servers), lines leave through the queue and its
/// thread; keep the guard until the process ends: dropping it writes what
/// is still queued (waiting a second at most for a stuck reader). Without,
/// (one-shot commands) each line is written when it is made, and none is
/// dropped.
pub fn init(format: LogFormat, queued: bool) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = if queued {
        // Buffered: the thread writes what it found queued in one go.
        let (writer, guard) = NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(QUEUED_LINES)
            .thread_name("log-writer")
            .finish(std::io::BufWriter::with_capacity(
                64 * 1024,
                std::io::stderr(),
            ));
        let _ = DROPPED.set(writer.error_counter());
        (BoxMakeWriter::new(writer), Some(guard))
    } else {
        (BoxMakeWriter::new(std::io::stderr), None)
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    guard
}
