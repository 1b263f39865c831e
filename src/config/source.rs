//! What every config file shares: reading TOML with positions, errors that
//! name file, line and column, paths relative to the file that names them,
//! and numbers checked against their range. Apart from `config.rs` so that
//! the tables in their own files (`tls`) use it without a cycle.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::Spanned;

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file that holds the mistake.
    pub file: PathBuf,
    /// 1-based line and column, when the mistake has a place in the file.
    pub at: Option<(usize, usize)>,
    /// What is wrong, in the administrator's terms.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A TOML source held with its file name, so that any byte offset in it can be
/// turned into a `file:line:column` error.
pub struct Source {
    /// The file the text came from.
    pub file: PathBuf,
    /// The file's text.
    pub text: String,
}

impl Source {
    /// Reads a file; an unreadable file is a config error naming it.
    pub fn read(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            at: None,
            reason: format!("cannot read: {e}"),
        })?;
        Ok(Self {
            file: file.to_path_buf(),
            text,
        })
    }

    /// An error at a byte offset of this source.
    pub fn error_at(&self, offset: usize, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            at: Some(line_col(&self.text, offset)),
            reason: reason.into(),
        }
    }

    /// An error at the place of a spanned value.
    pub fn error<T>(&self, value: &Spanned<T>, reason: impl Into<String>) -> ConfigError {
        self.error_at(value.span().start, reason)
    }

    /// An error with no particular place in the file.
    pub fn error_whole(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            at: None,
            reason: reason.into(),
        }
    }

    /// Deserialises the whole file, turning TOML and schema errors into located ones.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| {
            let reason = e.message().trim().to_string();
            match e.span() {
                Some(span) => self.error_at(span.start, reason),
                None => self.error_whole(reason),
            }
        })
    }

    /// The folder relative paths in this file are resolved against.
    pub fn dir(&self) -> PathBuf {
        self.file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// A path from a config file, made relative to the file's folder and tidied
/// lexically (`config/../certs` → `certs`), so messages show plain paths.
pub fn resolve(dir: &Path, p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in dir.join(p).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A number from the file, refused with its place outside `lo..=hi`.
pub(super) fn between(
    src: &Source,
    v: &Spanned<u64>,
    lo: u64,
    hi: u64,
    what: &str,
) -> Result<u64, ConfigError> {
    let x = *v.get_ref();
    if (lo..=hi).contains(&x) {
        Ok(x)
    } else {
        Err(src.error(v, format!("{what} must be between {lo} and {hi}")))
    }
}

/// Seconds from the file, as [`between`].
pub(super) fn secs(
    src: &Source,
    v: &Spanned<u64>,
    lo: u64,
    hi: u64,
    what: &str,
) -> Result<std::time::Duration, ConfigError> {
    between(src, v, lo, hi, what).map(std::time::Duration::from_secs)
}
