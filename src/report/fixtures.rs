//! Hand-made results for the reporters' tests: one run of a suite file
//! whose subtests end every way a subtest can, with real kernel-log
//! excerpts and KUnit-shaped KTAP children.

use crate::results::{
    KernelIdentity, KernelLogFinding, RunReport, SubtestResult, TestReport, Verdict,
};
use std::path::PathBuf;
use std::time::Duration;

/// A subtest result with the fields the reporters show.
pub fn subtest(name: &str, verdict: Verdict, reason: Option<&str>, millis: u64) -> SubtestResult {
    let mut r = SubtestResult::new(name, verdict);
    r.reason = reason.map(str::to_string);
    r.duration = Duration::from_millis(millis);
    if verdict != Verdict::NotRun {
        r.log = Some(PathBuf::from(format!(
            "/src/linux/.ktest/runs/20260101-120000-ab12/bcache/{name}.log"
        )));
    }
    r
}

/// A KTAP case: no duration, no log of its own.
pub fn case(name: &str, verdict: Verdict, reason: Option<&str>) -> SubtestResult {
    let mut r = SubtestResult::new(name, verdict);
    r.reason = reason.map(str::to_string);
    r
}

/// The WARNING splat from Documentation/admin-guide/bug-hunting.rst.
pub fn warning(allowed: bool) -> KernelLogFinding {
    let excerpt = [
        "------------[ cut here ]------------",
        "WARNING: CPU: 1 PID: 28102 at kernel/module.c:1108 module_put+0x57/0x70",
        "Modules linked in: dvb_usb_gp8psk(-) dvb_usb dvb_core",
        "CPU: 1 PID: 28102 Comm: rmmod Tainted: P        WC O 4.8.4-build.1 #1",
        "Hardware name: MSI MS-7309/MS-7309, BIOS V1.12 02/23/2009",
        "Call Trace:",
        " [<c12ba080>] ? dump_stack+0x44/0x64",
        " [<c103ed6a>] ? __warn+0xfa/0x120",
        " [<c109e8a7>] ? module_put+0x57/0x70",
        "---[ end trace 6ebc60ef3981792f ]---",
    ];
    finding("warning", 1, &excerpt, allowed)
}

/// The KASAN report from Documentation/dev-tools/kasan.rst.
pub fn kasan() -> KernelLogFinding {
    let excerpt = [
        "BUG: KASAN: slab-out-of-bounds in kmalloc_oob_right+0xa8/0xbc [test_kasan]",
        "Write of size 1 at addr ffff8801f44ec37b by task insmod/2760",
        "CPU: 1 PID: 2760 Comm: insmod Not tainted 4.19.0-rc3+ #698",
        "Call Trace:",
        " dump_stack+0x94/0xd8",
        " kasan_report+0x144/0x187",
    ];
    finding("kasan", 0, &excerpt, false)
}

/// A finding whose title is line `title` of `excerpt`.
fn finding(kind: &str, title: usize, excerpt: &[&str], allowed: bool) -> KernelLogFinding {
    KernelLogFinding {
        kind: kind.into(),
        title: excerpt[title].into(),
        excerpt: excerpt.iter().map(|s| s.to_string()).collect(),
        allowed,
    }
}

/// KUnit's example suite as `kunit.py` parses it: one suite, three cases.
pub fn kunit_example() -> SubtestResult {
    let mut suite = case("example", Verdict::Fail, None);
    suite.children = vec![
        case("example_simple_test", Verdict::Pass, None),
        case(
            "example_skip_test",
            Verdict::Skip,
            Some("this test should be skipped"),
        ),
        case(
            "example_fail_test",
            Verdict::Fail,
            Some("Expected 1 == 2, but 2 == 2"),
        ),
    ];
    suite
}

/// Every verdict, a failing finding, an allowed one, nested KTAP cases, and
/// a KTAP subtest with many cases.
pub fn run_report() -> RunReport {
    let mut writeback = subtest("writeback", Verdict::Pass, None, 1234);
    writeback.findings = vec![warning(true)];

    let mut writethrough = subtest("writethrough", Verdict::Fail, Some("exit status 1"), 400);
    writethrough.findings = vec![warning(false)];

    let mut kunit = subtest("kunit", Verdict::Fail, Some("1 of 3 cases failed"), 3200);
    kunit.children = vec![kunit_example()];

    let mut many = subtest("selftests", Verdict::Fail, Some("exit status 1"), 15_000);
    many.children = (1..=30)
        .map(|i| case(&format!("case_{i:02}"), Verdict::Pass, None))
        .collect();
    many.children[6] = case("case_07", Verdict::Skip, Some("no IPv6"));
    many.children[11] = case("case_12", Verdict::Fail, Some("got 3, want 4"));

    let mut crashed = subtest(
        "stop_reregister",
        Verdict::Crash,
        Some("Kernel panic - not syncing: Fatal exception"),
        2500,
    );
    crashed.findings = vec![kasan()];

    let tests = vec![TestReport {
        test: PathBuf::from("/src/linux/tests/bcache"),
        subtests: vec![
            writeback,
            writethrough,
            subtest(
                "discard",
                Verdict::Skip,
                Some("CONFIG_BCACHE_ASYNC_REGISTRATION is not set"),
                50,
            ),
            kunit,
            many,
            crashed,
            subtest(
                "resize",
                Verdict::Timeout,
                Some("timed out after 60 s"),
                60_000,
            ),
            subtest("detach", Verdict::NotRun, Some("--fail-fast"), 0),
        ],
        console_logs: vec![
            PathBuf::from("/src/linux/.ktest/runs/20260101-120000-ab12/bcache/console-1.log"),
            PathBuf::from("/src/linux/.ktest/runs/20260101-120000-ab12/bcache/console-2.log"),
        ],
    }];
    RunReport {
        run_id: "20260101-120000-ab12".into(),
        started_at: 1_767_268_800,
        duration: Duration::from_millis(83_450),
        kernel: KernelIdentity {
            release: Some("6.1.0-ktest".into()),
            build_hash: Some("3f2a9c".into()),
            describe: Some("v6.1-rc3-12-g1234abcd".into()),
            image: PathBuf::from("/src/linux/.ktest/build/3f2a9c/bzImage"),
        },
        tests,
        shard: Some(crate::results::ShardPlan {
            index: 2,
            count: 4,
            plan: "0123456789abcdef".into(),
        }),
        target: None,
    }
}

/// A run in which everything passed: one plain script.
pub fn passing_report() -> RunReport {
    let mut r = run_report();
    r.tests = vec![TestReport {
        test: PathBuf::from("/src/linux/tests/smoke"),
        subtests: vec![subtest("smoke", Verdict::Pass, None, 3200)],
        console_logs: vec![PathBuf::from(
            "/src/linux/.ktest/runs/x/smoke/console-1.log",
        )],
    }];
    r.duration = Duration::from_millis(9_870);
    r
}
