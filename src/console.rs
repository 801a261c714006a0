//! Reading what the guest says: what each console line and each line of the
//! test's output means to ktest.
//!
//! Pure classification; the supervisor decides what to do about it. The
//! console carries the kernel and the guest init, the output port the test:
//! crash and marker lines count only on the console, the compatibility
//! sentinels only in the test's output, so a test cannot print its way to
//! a "kernel crashed" or "guest error" verdict.

use crate::kernel_log;

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
    /// The kernel panicked or oopsed: it is going down (ktest boots with
    /// `oops=panic`). Reports that leave it running (WARN, KASAN, UBSAN,
    /// a soft lockup, a non-fatal `BUG:`) are `Other` here and judged per
    /// subtest from the kernel log.
    Crash,
    /// Anything else.
    Other,
}

/// Marker prefix the guest init prints; keep in sync with lib/guest/init.sh.
pub const MARKER: &str = "ktest-guest: ";

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
    let line = line.trim_end_matches('\r');
    let msg = kernel_log::message(line);
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
    if kernel_log::ends_kernel(line) {
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
            "[    2.0] BUG: unable to handle page fault for address: ffffffffc0201000",
            "[    2.0] invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
            "[    2.0][    T1] Kernel panic - not syncing: VFS: Unable to mount root fs",
            "[    2.0] Internal error: Oops: 0000000096000005 [#1] PREEMPT SMP",
            "[    2.0] Unable to handle kernel paging request at virtual address ffff800008f1b000\r",
        ] {
            assert_eq!(classify(l), Line::Crash, "{l}");
        }
        assert_eq!(classify("my test says BUG: nothing"), Line::Other);
        assert_eq!(classify("[    1.0] sysrq: Trigger a crash"), Line::Other);
    }

    #[test]
    fn reports_that_leave_the_kernel_running_are_not_crashes() {
        // oops=panic makes an oops fatal; these are judged per subtest from
        // the kernel log instead (src/kernel_log.rs).
        for l in [
            "[    1.0] WARNING: CPU: 0 PID: 1 at kernel/module.c:1108 module_put+0x57/0x70",
            "[    1.0] BUG: KASAN: slab-out-of-bounds in kmalloc_oob_right+0xa8/0xbc [test_kasan]",
            "[    1.0] UBSAN: array-index-out-of-bounds in lib/test_ubsan.c:86:14",
            "[    1.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [spin:245]",
            "[    1.0] BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580",
            "[    1.0] BUG: scheduling while atomic: sh/245/0x00000002",
            "[    1.0] INFO: task mount:812 blocked for more than 122 seconds.",
            "[    1.0] rcu: INFO: rcu_preempt self-detected stall on CPU",
            "[    1.0] WARNING: possible circular locking dependency detected",
        ] {
            assert_eq!(classify(l), Line::Other, "{l}");
        }
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
