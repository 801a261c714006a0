//! Ctrl-C, SIGTERM and SIGHUP: recorded in a flag that every long-running
//! stage polls, so all of them reach the same cleanup path instead of
//! killing ktest mid-way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

static INSTALLED: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

/// Installs the handlers (once) and returns the shared flag.
pub fn install() -> Arc<AtomicBool> {
    INSTALLED
        .get_or_init(|| {
            let flag = Arc::new(AtomicBool::new(false));
            for sig in [
                signal_hook::consts::SIGINT,
                signal_hook::consts::SIGTERM,
                signal_hook::consts::SIGHUP,
            ] {
                // Registration only fails for forbidden signals; these are fine.
                let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
            }
            flag
        })
        .clone()
}

/// True once ktest was asked to stop.
pub fn interrupted() -> bool {
    INSTALLED.get().is_some_and(|f| f.load(Ordering::SeqCst))
}
