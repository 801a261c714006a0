//! `ktest status`: the VMs this user has running.

use crate::error::{Code, Result};
use crate::state::State;
use std::path::Path;

/// Prints one line per live VM, after reaping dead ones.
pub fn status(db: &Path) -> Result<Code> {
    let mut state = State::open(db)?;
    let vms = state.list()?;
    if vms.is_empty() {
        crate::outln!("no VMs running");
        return Ok(Code::Passed);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    crate::outln!(
        "{:<4} {:<6} {:<8} {:<8} {:<8} {:<30} DIRECTORY",
        "ID",
        "SLOT",
        "PID",
        "SSH",
        "UPTIME",
        "TEST"
    );
    for v in vms {
        crate::outln!(
            "{:<4} {:<6} {:<8} {:<8} {:<8} {:<30} {}",
            if v.vm_id.is_empty() { "-" } else { &v.vm_id },
            v.slot,
            v.owner_pid,
            v.ssh_port,
            format!("{}s", (now - v.started_at).max(0)),
            if v.test.is_empty() { "(boot)" } else { &v.test },
            v.dir.display()
        );
    }
    Ok(Code::Passed)
}
