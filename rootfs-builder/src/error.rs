//! Failures that reach the user, and the exit code each one maps to.
//!
//! Every way `create-vm-image` can fail is one [`Error`]; `main` prints it as
//! a single `create-vm-image: ...` line and exits with [`Error::exit_code`].

use std::fmt;

/// Exit status of a successful run.
pub const EXIT_OK: i32 = 0;
/// Exit status when a build or update step failed (debootstrap, mkfs, ...).
pub const EXIT_BUILD_FAILED: i32 = 1;
/// Exit status for bad usage or bad input, found before any work was done.
pub const EXIT_USAGE: i32 = 2;
/// Exit status after SIGINT, SIGTERM or SIGHUP.
pub const EXIT_INTERRUPTED: i32 = 130;

/// A failure, with a message that says what is wrong and what to do.
#[derive(Debug)]
pub enum Error {
    /// Bad command line, bad input or an unusable host: exit 2.
    Usage(String),
    /// A step of the build or update failed: exit 1.
    Build(String),
    /// An external command of the build failed; its output is in the build
    /// log, whose tail `main` shows: exit 1.
    Command {
        /// What was being done, e.g. "debootstrap".
        what: String,
        /// How the command ended, e.g. "exit status 1".
        status: String,
    },
    /// A signal asked us to stop: exit 130.
    Interrupted,
}

impl Error {
    /// The process exit status this failure maps to.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => EXIT_USAGE,
            Error::Build(_) | Error::Command { .. } => EXIT_BUILD_FAILED,
            Error::Interrupted => EXIT_INTERRUPTED,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) | Error::Build(msg) => f.write_str(msg),
            Error::Command { what, status } => write!(f, "{what} failed ({status})"),
            Error::Interrupted => f.write_str("interrupted; temporary files removed"),
        }
    }
}

/// Shorthand for results carrying an [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Builds an [`Error::Usage`].
pub fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

/// Builds an [`Error::Build`].
pub fn build(msg: impl Into<String>) -> Error {
    Error::Build(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_the_documented_table() {
        assert_eq!(usage("x").exit_code(), 2);
        assert_eq!(build("x").exit_code(), 1);
        let cmd = Error::Command {
            what: "mkfs.ext4".into(),
            status: "exit status 1".into(),
        };
        assert_eq!(cmd.exit_code(), 1);
        assert_eq!(cmd.to_string(), "mkfs.ext4 failed (exit status 1)");
        assert_eq!(Error::Interrupted.exit_code(), 130);
    }
}
