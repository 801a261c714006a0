//! Errors that reach the user, and the exit code each one maps to.
//!
//! Every failure ktest reports is one `Error`: a message that says what is
//! wrong and what to do, plus the documented exit code. Nothing else decides
//! how ktest exits.

use std::fmt;

/// ktest's documented exit codes (README.md, `ktest --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The test passed.
    Passed = 0,
    /// The test ran and failed.
    TestFailed = 1,
    /// Bad command line, bad test declaration, or a missing input.
    Usage = 2,
    /// The kernel panicked, oopsed or hit a BUG, or the VM died without a verdict.
    Crash = 3,
    /// The test did not finish within its time limit.
    Timeout = 4,
    /// ktest could not do its job: qemu missing, kernel unreadable, state unusable.
    Infra = 5,
    /// The kernel build failed.
    BuildFailed = 6,
    /// Interrupted by Ctrl-C or SIGTERM.
    Interrupted = 130,
}

impl Code {
    /// The process exit status for this code.
    pub fn status(self) -> i32 {
        self as i32
    }
}

/// A failure with a message meant for the user.
#[derive(Debug)]
pub struct Error {
    /// How ktest exits because of it.
    pub code: Code,
    /// One or more lines: what is wrong, then what to do.
    pub message: String,
}

impl Error {
    /// An error with an explicit exit code.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    /// Bad input from the user: exit 2.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Code::Usage, message)
    }

    /// ktest's environment failed it: exit 5.
    pub fn infra(message: impl Into<String>) -> Self {
        Self::new(Code::Infra, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Result with ktest's user-facing error.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds context to I/O and other low-level errors, turning them into
/// infrastructure errors (exit 5).
pub trait Context<T> {
    /// Wraps the error as `what: cause`.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::infra(format!("{}: {e}", what())))
    }
}
