//! Process identity: a pid alone is reused, so ktest records a pid together
//! with the process's start time and the boot it belongs to.

/// The current boot's id; rows from another boot belong to dead processes.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// This process's pid namespace (`pid:[INODE]`), empty if unknown. A pid
/// means a process only within its namespace: a ktest in a container and
/// one on its host can share a database but not judge each other's pids.
pub fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The start time of `pid` in clock ticks since boot (field 22 of
/// /proc/PID/stat), or `None` if there is no such process.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Extracts the start time from the text of /proc/PID/stat.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')' come fields 3.. ; the start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True if the process `pid` that started at `start` is still running.
pub fn alive(pid: u32, start: u64) -> bool {
    pid != 0 && start_time(pid) == Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat() {
        let stat = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_start_time(stat), Some(98765));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn self_is_alive() {
        let me = std::process::id();
        let start = start_time(me).unwrap();
        assert!(alive(me, start));
        assert!(!alive(me, start + 1));
        assert!(!alive(0, 0));
    }
}
