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
    /// A subtest starts: what the kernel logs from here on is its share
    /// (written through /dev/kmsg, so in order with the kernel's messages).
    SubtestBegin(String),
    /// A subtest ended: its share of the kernel log is complete.
    SubtestEnd(String),
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
        if let Some(name) = rest.strip_prefix("subtest-begin ") {
            return Line::SubtestBegin(name.trim().to_string());
        }
        if let Some(name) = rest.strip_prefix("subtest-end ") {
            return Line::SubtestEnd(name.trim().to_string());
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

/// One line on the result port (lib/guest/init.sh's run_subtest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultMsg {
    /// The guest's kernel release.
    Kernel(String),
    /// A subtest starts; the kernel's taint flags then.
    Begin {
        /// The subtest.
        name: String,
        /// /proc/sys/kernel/tainted, if readable.
        taint: Option<u64>,
    },
    /// A line the subtest wrote to its info file (`skip REASON`,
    /// `timeout SECS`, `allow KIND`).
    Info {
        /// The subtest.
        name: String,
        /// The line.
        text: String,
    },
    /// A subtest ended.
    End {
        /// The subtest.
        name: String,
        /// Its exit status.
        status: i32,
        /// /proc/sys/kernel/tainted, if readable.
        taint: Option<u64>,
    },
    /// Every subtest ran.
    Done,
}

/// The longest result-port line ktest takes: the port is the guest's, and
/// a line longer than this is not ktest's init speaking.
pub const RESULT_LINE_MAX: usize = 4096;

/// Parses one result-port line; `None` for anything else.
pub fn parse_result(line: &str) -> Option<ResultMsg> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.len() > RESULT_LINE_MAX {
        return None;
    }
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let taint = |t: &str| t.trim().parse::<u64>().ok();
    match word {
        "kernel" if !rest.is_empty() => Some(ResultMsg::Kernel(rest.trim().to_string())),
        "begin" => {
            let mut w = rest.split(' ');
            let name = w.next().filter(|n| !n.is_empty())?.to_string();
            Some(ResultMsg::Begin {
                name,
                taint: w.next().and_then(taint),
            })
        }
        "info" => {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            (!name.is_empty()).then(|| ResultMsg::Info {
                name: name.to_string(),
                text: text.to_string(),
            })
        }
        "end" => {
            let mut w = rest.split(' ');
            let name = w.next().filter(|n| !n.is_empty())?.to_string();
            let status = w.next()?.parse().ok()?;
            Some(ResultMsg::End {
                name,
                status,
                taint: w.next().and_then(taint),
            })
        }
        "done" if rest.is_empty() => Some(ResultMsg::Done),
        _ => None,
    }
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
        assert_eq!(
            classify("[    2.000001] ktest-guest: subtest-begin write_back"),
            Line::SubtestBegin("write_back".into())
        );
        assert_eq!(
            classify("ktest-guest: subtest-end a\r"),
            Line::SubtestEnd("a".into())
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
        assert_eq!(
            parse_result("begin a_b 0\n"),
            Some(ResultMsg::Begin {
                name: "a_b".into(),
                taint: Some(0)
            })
        );
        assert_eq!(
            parse_result("end a_b 4 512"),
            Some(ResultMsg::End {
                name: "a_b".into(),
                status: 4,
                taint: Some(512)
            })
        );
        assert_eq!(
            parse_result("end x 1 -"),
            Some(ResultMsg::End {
                name: "x".into(),
                status: 1,
                taint: None
            })
        );
        assert_eq!(
            parse_result("info x skip needs a disk"),
            Some(ResultMsg::Info {
                name: "x".into(),
                text: "skip needs a disk".into()
            })
        );
        assert_eq!(
            parse_result("kernel 6.1.0"),
            Some(ResultMsg::Kernel("6.1.0".into()))
        );
        assert_eq!(parse_result("done"), Some(ResultMsg::Done));
        for bad in [
            "garbage", "end x", "end x y", "begin", "done now", "status 0",
        ] {
            assert_eq!(parse_result(bad), None, "{bad}");
        }
        assert_eq!(parse_result(&format!("info x {}", "y".repeat(5000))), None);
    }
}
