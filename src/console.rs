//! Reading what the guest says: what each console line and each line of the
//! test's output means to ktest.
//!
//! Pure classification; the supervisor decides what to do about it. The
//! console carries the kernel and the guest init, the output port the test:
//! crash and marker lines count only on the console, the compatibility
//! sentinels only in the test's output, so a test cannot print its way to
//! a "kernel crashed" or "guest error" verdict.

/// What a console line tells ktest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// The guest init is about to run the test.
    Start,
    /// The test exited with this status (the verdict itself comes over the
    /// result port; this marks the end of the test's console output).
    End(i32),
    /// The guest init failed before it could run the test.
    GuestError(String),
    /// The kernel panicked, oopsed or hit a BUG.
    Crash,
    /// Anything else.
    Other,
}

/// Marker prefix the guest init prints; keep in sync with lib/guest/init.sh.
pub const MARKER: &str = "ktest-guest: ";

/// Strips a printk timestamp such as `[    1.234567] `.
fn without_timestamp(line: &str) -> &str {
    let t = line.trim_start();
    if let Some(rest) = t.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let stamp = &rest[..end];
            if stamp.trim().chars().all(|c| c.is_ascii_digit() || c == '.') {
                return rest[end + 1..].trim_start();
            }
        }
    }
    t
}

/// Lines that mean the kernel is in trouble. Matched at the start of the
/// message (after the timestamp) so a test printing these words in the
/// middle of a line does not trip them.
const CRASH_PREFIXES: &[&str] = &[
    "Kernel panic - not syncing",
    "BUG: ",
    "kernel BUG at ",
    "Oops: ",
    "general protection fault",
    "Unable to handle kernel",
    "watchdog: BUG: soft lockup",
    "UBSAN: ",
    "KASAN: ",
];

/// A compatibility sentinel in the test's output (Kent's ktest protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sentinel {
    /// `TEST SUCCESS`: the test passed, even if it then hangs.
    Success,
    /// `TEST FAILED`: the test failed, whatever its exit status.
    Failed,
}

/// The sentinel a line of the test's output is, if it is one (the whole
/// line, blanks around it aside).
pub fn sentinel(line: &str) -> Option<Sentinel> {
    match line.trim() {
        "TEST SUCCESS" => Some(Sentinel::Success),
        "TEST FAILED" => Some(Sentinel::Failed),
        _ => None,
    }
}

/// Classifies one console line (without its line ending).
pub fn classify(line: &str) -> Line {
    let msg = without_timestamp(line.trim_end_matches('\r'));
    if let Some(rest) = msg.strip_prefix(MARKER) {
        if rest.starts_with("start") {
            return Line::Start;
        }
        if let Some(code) = rest.strip_prefix("end status=") {
            return Line::End(code.trim().parse().unwrap_or(-1));
        }
        if let Some(e) = rest.strip_prefix("error: ") {
            return Line::GuestError(e.to_string());
        }
        return Line::Other;
    }
    if CRASH_PREFIXES.iter().any(|p| msg.starts_with(p)) {
        return Line::Crash;
    }
    Line::Other
}

/// Parses the result port's message (`status N`).
pub fn parse_result(text: &str) -> Option<i32> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("status "))
        .filter_map(|n| n.trim().parse().ok())
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        assert_eq!(classify("ktest-guest: start /t/hello"), Line::Start);
        assert_eq!(classify("ktest-guest: end status=3\r"), Line::End(3));
        assert_eq!(
            classify("ktest-guest: error: no port"),
            Line::GuestError("no port".into())
        );
    }

    #[test]
    fn sentinels_must_be_whole_lines_of_the_output() {
        assert_eq!(sentinel("TEST SUCCESS"), Some(Sentinel::Success));
        assert_eq!(sentinel("TEST SUCCESS \r"), Some(Sentinel::Success));
        assert_eq!(sentinel("TEST FAILED"), Some(Sentinel::Failed));
        assert_eq!(sentinel("echo TEST SUCCESS"), None);
        // On the console they mean nothing.
        assert_eq!(classify("TEST SUCCESS"), Line::Other);
    }

    #[test]
    fn crashes() {
        for l in [
            "[    5.123456] Kernel panic - not syncing: sysrq triggered crash",
            "[    1.000000] BUG: kernel NULL pointer dereference, address: 0000000000000000",
            "[    1.0] kernel BUG at fs/bcache/foo.c:12!",
            "Oops: 0002 [#1] SMP",
            "[  3.3] general protection fault, probably for non-canonical address",
        ] {
            assert_eq!(classify(l), Line::Crash, "{l}");
        }
        assert_eq!(classify("my test says BUG: nothing"), Line::Other);
        assert_eq!(classify("[    1.0] sysrq: Trigger a crash"), Line::Other);
    }

    #[test]
    fn result_port() {
        assert_eq!(parse_result("status 0\n"), Some(0));
        assert_eq!(parse_result("status 7"), Some(7));
        assert_eq!(parse_result("garbage"), None);
    }
}
