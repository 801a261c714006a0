//! Turning what happened during a run into one verdict.

use crate::error::Code;

/// What the supervisor observed of a VM as a whole. What each subtest
/// did is the runner's (src/runner/session.rs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The guest said every subtest ran (`done` on the result port).
    pub done: bool,
    /// The first console line that showed a kernel crash.
    pub crash: Option<String>,
    /// The guest init reported an error before running the test.
    pub guest_error: Option<String>,
    /// The time limit (seconds) expired.
    pub timed_out: Option<u64>,
    /// ktest was interrupted (Ctrl-C, SIGTERM, SIGHUP).
    pub interrupted: bool,
    /// The runner stopped the VM early (fail fast).
    pub stopped: bool,
    /// The guest init started the test.
    pub started: bool,
    /// qemu exited on its own, with this description, before a verdict.
    pub qemu_exit: Option<String>,
}

/// The verdict of a VM or a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// How ktest exits.
    pub code: Code,
    /// One line for the user.
    pub summary: String,
}

/// Why a VM ran no subtest at all, when it ran none. An interruption
/// comes first, then a crash (a kernel that panics at boot), then the
/// guest's own error, then qemu's.
pub fn vm_failure(o: &Observed) -> Verdict {
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
    if let Some(secs) = o.timed_out {
        return v(
            Code::Timeout,
            format!("timed out after {secs} s before the test started"),
        );
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

/// ktest's exit code for a run's subtests: 0 when every one passed or was
/// skipped; otherwise the gravest thing that happened: an interruption,
/// then a crash, then a time-out, then a failure.
pub fn exit_code(
    verdicts: impl IntoIterator<Item = crate::results::Verdict>,
    interrupted: bool,
) -> Code {
    use crate::results::Verdict as V;
    if interrupted {
        return Code::Interrupted;
    }
    let mut code = Code::Passed;
    for v in verdicts {
        let c = match v {
            V::Pass | V::Skip | V::NotRun => Code::Passed,
            V::Fail => Code::TestFailed,
            V::Timeout => Code::Timeout,
            V::Crash => Code::Crash,
        };
        if rank(c) > rank(code) {
            code = c;
        }
    }
    code
}

/// The gravest of several exit codes (of the test files of one run): an
/// interruption, then ktest's own failures, then a crash, a time-out, a
/// failure.
pub fn gravest(codes: impl IntoIterator<Item = Code>) -> Code {
    let grave = |c: Code| match c {
        Code::Interrupted => u8::MAX,
        c => rank(c),
    };
    codes
        .into_iter()
        .fold(Code::Passed, |a, c| if grave(c) > grave(a) { c } else { a })
}

fn rank(c: Code) -> u8 {
    match c {
        Code::Passed => 0,
        Code::TestFailed => 1,
        Code::Timeout => 2,
        Code::Crash => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Verdict as V;

    #[test]
    fn the_gravest_subtest_decides_the_exit_code() {
        assert_eq!(exit_code([], false), Code::Passed);
        assert_eq!(exit_code([V::Pass, V::Skip], false), Code::Passed);
        assert_eq!(exit_code([V::Pass, V::Fail], false), Code::TestFailed);
        assert_eq!(
            exit_code([V::Fail, V::Timeout, V::Pass], false),
            Code::Timeout
        );
        assert_eq!(
            exit_code([V::Crash, V::Timeout, V::Fail], false),
            Code::Crash
        );
        assert_eq!(exit_code([V::Pass], true), Code::Interrupted);
    }

    #[test]
    fn a_vm_that_ran_nothing() {
        let started = Observed {
            started: true,
            ..Observed::default()
        };
        let early = Observed {
            qemu_exit: Some("exited with status 1".into()),
            ..Observed::default()
        };
        assert_eq!(vm_failure(&early).code, Code::Infra);
        let late = Observed {
            qemu_exit: Some("exited with status 0".into()),
            ..started.clone()
        };
        assert_eq!(vm_failure(&late).code, Code::Crash);
        let g = vm_failure(&Observed {
            guest_error: Some("no port".into()),
            ..started.clone()
        });
        assert_eq!(g.code, Code::Infra);
        let c = Observed {
            crash: Some("Kernel panic - x".into()),
            ..started
        };
        assert_eq!(vm_failure(&c).code, Code::Crash);
        let i = Observed {
            interrupted: true,
            ..c
        };
        assert_eq!(vm_failure(&i).code, Code::Interrupted);
    }
}
