//! Turning SIGINT, SIGTERM and SIGHUP into a flag.
//!
//! The handlers only set the flag; the main thread notices it between steps
//! and while waiting for a child, stops the child, and unwinds through the
//! normal error path so the work directory is removed before we exit 130.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{build, Error, Result};

/// Set once a terminating signal arrived.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Installs the handlers and returns the flag they set.
    pub fn install() -> Result<Self> {
        let flag = Interrupt::default();
        for sig in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ] {
            signal_hook::flag::register(sig, Arc::clone(&flag.0))
                .map_err(|e| build(format!("cannot install signal handler: {e}")))?;
        }
        Ok(flag)
    }

    /// Whether a signal arrived.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(Interrupted)` once a signal arrived, so steps can use `?`.
    pub fn check(&self) -> Result<()> {
        if self.is_set() {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Sets the flag by hand (tests).
    #[cfg(test)]
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_reports_interruption() {
        let flag = Interrupt::default();
        assert!(flag.check().is_ok());
        flag.clone().trigger();
        assert!(matches!(flag.check(), Err(Error::Interrupted)));
    }
}
