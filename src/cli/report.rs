//! What a command returns for `main` to print: its output pieces in the
//! order they were written, and whether its answer was yes or no. Commands
//! return values, so tests read them without running a process.

use std::io::Write;
use std::process::ExitCode;

/// How a command that did its work ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    /// Exit 0.
    #[default]
    Success,
    /// Exit 1: the answer is "no".
    Failure,
    /// Another exit code, for a command whose answers are more than yes or
    /// no (`audit monitor`: 2 failed, 3 the log is inconsistent).
    Code(u8),
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> Self {
        match s {
            Status::Success => ExitCode::SUCCESS,
            Status::Failure => ExitCode::FAILURE,
            Status::Code(c) => ExitCode::from(c),
        }
    }
}

/// Which standard stream a piece of output belongs on: results on standard
/// output (for pipes and scripts), notes for the operator on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Out,
    /// Standard error.
    Err,
}

/// What a finished command has to say, in the order it says it, and how it
/// ends. Kept in order across both streams because on a terminal they
/// interleave: `user add` announces the token on standard error just before
/// printing it on standard output.
#[derive(Debug, Default)]
pub struct Report {
    /// Text pieces, each printed as is (newlines included).
    pub parts: Vec<(Stream, String)>,
    /// The exit status.
    pub status: Status,
}

impl Report {
    /// A report of nothing, ending in success.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds text for standard output.
    pub fn out(mut self, text: impl Into<String>) -> Self {
        self.parts.push((Stream::Out, text.into()));
        self
    }

    /// Adds text for standard error.
    pub fn err(mut self, text: impl Into<String>) -> Self {
        self.parts.push((Stream::Err, text.into()));
        self
    }

    /// Ends the command with exit status 1.
    pub fn failed(mut self) -> Self {
        self.status = Status::Failure;
        self
    }

    /// Ends the command with this exit status.
    pub fn exit(mut self, code: u8) -> Self {
        self.status = match code {
            0 => Status::Success,
            1 => Status::Failure,
            c => Status::Code(c),
        };
        self
    }

    /// Everything meant for standard output, joined: what a script would read.
    pub fn stdout(&self) -> String {
        self.stream(Stream::Out)
    }

    /// Everything meant for standard error, joined.
    pub fn stderr(&self) -> String {
        self.stream(Stream::Err)
    }

    fn stream(&self, which: Stream) -> String {
        self.parts
            .iter()
            .filter(|(s, _)| *s == which)
            .map(|(_, t)| t.as_str())
            .collect()
    }

    /// Writes the parts to standard output and error, in order, and returns
    /// the exit code.
    pub fn print(&self) -> std::io::Result<ExitCode> {
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        for (stream, text) in &self.parts {
            match stream {
                // Flushed per part, so that the order holds on a terminal.
                Stream::Out => {
                    out.write_all(text.as_bytes())?;
                    out.flush()?;
                }
                Stream::Err => err.write_all(text.as_bytes())?,
            }
        }
        Ok(self.status.into())
    }
}
