//! Turning what happened during a run into one verdict.

use crate::error::Code;

/// What the supervisor observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The exit status the guest reported on the result port.
    pub status: Option<i32>,
    /// The console showed `TEST SUCCESS`.
    pub said_success: bool,
    /// The console showed `TEST FAILED`.
    pub said_failed: bool,
    /// The first console line that showed a kernel crash.
    pub crash: Option<String>,
    /// The guest init reported an error before running the test.
    pub guest_error: Option<String>,
    /// The time limit (seconds) expired.
    pub timed_out: Option<u64>,
    /// ktest was interrupted (Ctrl-C, SIGTERM, SIGHUP).
    pub interrupted: bool,
    /// The guest init started the test.
    pub started: bool,
    /// qemu exited on its own, with this description, before a verdict.
    pub qemu_exit: Option<String>,
}

/// The verdict of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// How ktest exits.
    pub code: Code,
    /// One line for the user.
    pub summary: String,
}

/// Decides the verdict. A crash beats everything but an interruption: a
/// test that exits 0 after the kernel oopsed has not passed.
pub fn decide(o: &Observed) -> Verdict {
    let v = |code, summary: String| Verdict { code, summary };
    if o.interrupted {
        return v(Code::Interrupted, "interrupted; VM stopped".into());
    }
    if let Some(line) = &o.crash {
        return v(Code::Crash, format!("kernel crashed: {}", line.trim()));
    }
    if let Some(e) = &o.guest_error {
        return v(
            Code::Infra,
            format!("the guest could not run the test: {e}"),
        );
    }
    match o.status {
        Some(0) if !o.said_failed => return v(Code::Passed, "passed".into()),
        Some(0) => {
            return v(
                Code::TestFailed,
                "failed (printed TEST FAILED, exited 0)".into(),
            )
        }
        Some(n) => return v(Code::TestFailed, format!("failed (exit status {n})")),
        None => {}
    }
    if o.said_failed {
        return v(Code::TestFailed, "failed (printed TEST FAILED)".into());
    }
    if o.said_success {
        return v(Code::Passed, "passed (printed TEST SUCCESS)".into());
    }
    if let Some(secs) = o.timed_out {
        return v(Code::Timeout, format!("timed out after {secs} s"));
    }
    match (&o.qemu_exit, o.started) {
        (Some(how), false) => v(Code::Infra, format!("qemu {how} before the test started")),
        (Some(how), true) => v(
            Code::Crash,
            format!(
                "the VM stopped without a verdict (qemu {how}); did the test reboot or kill init?"
            ),
        ),
        (None, _) => v(Code::Crash, "the VM stopped without a verdict".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs() -> Observed {
        Observed {
            started: true,
            ..Observed::default()
        }
    }

    #[test]
    fn exit_status_decides() {
        assert_eq!(
            decide(&Observed {
                status: Some(0),
                ..obs()
            })
            .code,
            Code::Passed
        );
        let f = decide(&Observed {
            status: Some(3),
            ..obs()
        });
        assert_eq!(f.code, Code::TestFailed);
        assert!(f.summary.contains("exit status 3"));
    }

    #[test]
    fn sentinels() {
        let hung_after_success = Observed {
            said_success: true,
            timed_out: Some(5),
            ..obs()
        };
        assert_eq!(decide(&hung_after_success).code, Code::Passed);
        assert_eq!(
            decide(&Observed {
                said_failed: true,
                ..obs()
            })
            .code,
            Code::TestFailed
        );
        let both = Observed {
            status: Some(0),
            said_failed: true,
            ..obs()
        };
        assert_eq!(decide(&both).code, Code::TestFailed);
    }

    #[test]
    fn crash_beats_status_and_interrupt_beats_all() {
        let c = Observed {
            status: Some(0),
            crash: Some("Kernel panic - x".into()),
            ..obs()
        };
        assert_eq!(decide(&c).code, Code::Crash);
        let i = Observed {
            interrupted: true,
            ..c
        };
        assert_eq!(decide(&i).code, Code::Interrupted);
    }

    #[test]
    fn timeouts_and_silent_exits() {
        let t = decide(&Observed {
            timed_out: Some(30),
            ..obs()
        });
        assert_eq!(t.code, Code::Timeout);
        assert_eq!(t.summary, "timed out after 30 s");
        let early = Observed {
            qemu_exit: Some("exited with status 1".into()),
            ..Observed::default()
        };
        assert_eq!(decide(&early).code, Code::Infra);
        let late = Observed {
            qemu_exit: Some("exited with status 0".into()),
            ..obs()
        };
        assert_eq!(decide(&late).code, Code::Crash);
        let g = decide(&Observed {
            guest_error: Some("no port".into()),
            ..obs()
        });
        assert_eq!(g.code, Code::Infra);
    }
}
