//! The harness error type: a message that says what was attempted and what came back.
//!
//! Harness failures are reported to a human reading test output, so a single descriptive string
//! (command line, exit status, stderr) is more useful than a variant tree.

use std::fmt;

/// A harness failure with a human-readable explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

/// Result alias used throughout the harness.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Creates an error from a message.
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Adds "what we were doing" to any displayable error.
pub trait Context<T> {
    /// Wraps the error as `"<what>: <error>"`.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error(format!("{}: {e}", what())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_prefixes_the_cause() {
        let r: std::result::Result<(), &str> = Err("boom");
        let e = r.context(|| "reading x".to_string()).unwrap_err();
        assert_eq!(e.message(), "reading x: boom");
    }
}
