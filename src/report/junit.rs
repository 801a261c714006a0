//! `--junit FILE`: the run as JUnit XML, written when the run ends, for CI
//! services (GitLab, GitHub actions, Jenkins) to show.
//!
//! The mapping (docs/results.md, "JUnit"): one `<testsuite>` per test file,
//! one `<testcase>` per subtest with `classname` the test file's name. KTAP
//! cases are testcases of their own, flat, named by their path
//! (`kunit.example.example_fail_test`): none of those services shows
//! nested testsuites, and all of them show a flat list of dotted names.

use super::file::ReportFile;
use super::terminal::test_name;
use crate::results::{KernelLogFinding, RunReport, SubtestResult, TestReport, Verdict};
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use std::path::{Path, PathBuf};

/// Findings as lines: each title after `head`, then its excerpt.
fn findings_lines<'a>(
    head: &str,
    findings: impl IntoIterator<Item = &'a KernelLogFinding>,
) -> Vec<String> {
    let mut out = Vec::new();
    for f in findings {
        out.push(format!("{head}: {}", f.title));
        for line in f.excerpt.iter().filter(|l| l.trim() != f.title.trim()) {
            out.push(format!("  {line}"));
        }
    }
    out
}

/// A testcase's status: failure for a failed subtest, error for one that
/// did not complete (timeout, crash), skipped for a skipped one and for
/// one that never ran.
fn status(r: &SubtestResult) -> TestCaseStatus {
    let failing: Vec<&KernelLogFinding> = r.findings.iter().filter(|f| !f.allowed).collect();
    let reason = r.reason.clone();
    let (mut status, message, ty) = match r.verdict {
        Verdict::Pass => return TestCaseStatus::success(),
        Verdict::Skip => (TestCaseStatus::skipped(), reason, None),
        Verdict::NotRun => (
            TestCaseStatus::skipped(),
            Some(match reason {
                Some(why) => format!("not run: {why}"),
                None => "not run".into(),
            }),
            Some("notrun"),
        ),
        Verdict::Fail => (
            TestCaseStatus::non_success(NonSuccessKind::Failure),
            reason
                .or_else(|| failing.first().map(|f| format!("kernel: {}", f.title)))
                .or_else(|| Some("failed".into())),
            None,
        ),
        Verdict::Timeout => (
            TestCaseStatus::non_success(NonSuccessKind::Error),
            reason.or_else(|| Some("timed out".into())),
            Some("timeout"),
        ),
        Verdict::Crash => (
            TestCaseStatus::non_success(NonSuccessKind::Error),
            reason.or_else(|| Some("the kernel crashed".into())),
            Some("crash"),
        ),
    };
    if let Some(m) = message {
        status.set_message(m);
    }
    if let Some(t) = ty {
        status.set_type(t);
    }
    if !failing.is_empty() {
        status.set_description(findings_lines("kernel", failing).join("\n"));
    }
    status
}

/// The testcase for `r` and, after it, those of its KTAP cases. `prefix` is
/// the dotted path of its parents; `log` is the nearest log (cases share
/// their subtest's).
fn push_cases(
    out: &mut Vec<TestCase>,
    classname: &str,
    prefix: &str,
    r: &SubtestResult,
    log: Option<&Path>,
) {
    let name = if prefix.is_empty() {
        r.name.clone()
    } else {
        format!("{prefix}.{}", r.name)
    };
    let log = r.log.as_deref().or(log);
    let mut case = TestCase::new(name.as_str(), status(r));
    case.set_classname(classname);
    // A KTAP case has no time of its own; leave it out rather than say 0.
    if !r.duration.is_zero() || prefix.is_empty() {
        case.set_time(r.duration);
    }
    let mut out_lines: Vec<String> = log
        .map(|p| format!("log: {}", p.display()))
        .into_iter()
        .collect();
    out_lines.extend(findings_lines(
        "allowed kernel",
        r.findings.iter().filter(|f| f.allowed),
    ));
    if !out_lines.is_empty() {
        case.set_system_out(out_lines.join("\n"));
    }
    out.push(case);
    for c in &r.children {
        push_cases(out, classname, &name, c, log);
    }
}

/// One test file's testsuite.
fn suite(report: &RunReport, t: &TestReport) -> TestSuite {
    let classname = test_name(&t.test);
    let mut suite = TestSuite::new(classname.as_str());
    let mut cases = Vec::new();
    for r in &t.subtests {
        push_cases(&mut cases, &classname, "", r, None);
    }
    let skipped = cases
        .iter()
        .filter(|c| matches!(c.status, TestCaseStatus::Skipped { .. }))
        .count();
    suite.add_test_cases(cases);
    suite.set_time(t.subtests.iter().map(|r| r.duration).sum());
    if let Some(ts) = timestamp(report.started_at) {
        suite.set_timestamp(ts);
    }
    // Jenkins and the JUnit schema count skips on the suite.
    suite
        .extra
        .insert("skipped".into(), skipped.to_string().into());
    let k = &report.kernel;
    let props = [
        ("test", Some(t.test.display().to_string())),
        ("run_id", Some(report.run_id.clone())),
        ("kernel.release", k.release.clone()),
        ("kernel.build_hash", k.build_hash.clone()),
        ("kernel.describe", k.describe.clone()),
        ("kernel.image", Some(k.image.display().to_string())),
    ];
    for (name, value) in props {
        if let Some(v) = value {
            suite.add_property(Property::new(name, v));
        }
    }
    for (i, log) in t.console_logs.iter().enumerate() {
        suite.add_property(Property::new(
            format!("console_log.{}", i + 1),
            log.display().to_string(),
        ));
    }
    suite
}

fn timestamp(secs: i64) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::from_timestamp(secs, 0).map(|t| t.fixed_offset())
}

/// The run as a JUnit report.
pub fn to_junit(report: &RunReport) -> Report {
    let mut r = Report::new("ktest");
    r.set_time(report.duration);
    if let Some(ts) = timestamp(report.started_at) {
        r.set_timestamp(ts);
    }
    r.add_test_suites(report.tests.iter().map(|t| suite(report, t)));
    r
}

/// The `--junit FILE` reporter.
pub fn reporter(path: PathBuf) -> ReportFile {
    ReportFile::new(path, "JUnit report", |r| {
        to_junit(r).to_string().map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::run_report;
    use quick_xml::events::Event as Xml;

    fn xml() -> String {
        to_junit(&run_report()).to_string().unwrap()
    }

    /// Every element as its path from the root (`testsuites/testsuite`),
    /// with its attributes; fails on XML that is not well formed.
    fn elements(xml: &str) -> Vec<(String, Vec<(String, String)>)> {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut stack: Vec<String> = Vec::new();
        let mut out = Vec::new();
        loop {
            let (e, empty) = match reader.read_event().expect("well-formed XML") {
                Xml::Start(e) => (e, false),
                Xml::Empty(e) => (e, true),
                Xml::End(_) => {
                    stack.pop();
                    continue;
                }
                Xml::Eof => break,
                _ => continue,
            };
            let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
            stack.push(name);
            let attrs = e
                .attributes()
                .map(|a| {
                    let a = a.unwrap();
                    (
                        String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                        a.unescape_value().unwrap().into_owned(),
                    )
                })
                .collect();
            out.push((stack.join("/"), attrs));
            if empty {
                stack.pop();
            }
        }
        assert!(stack.is_empty(), "unclosed elements: {stack:?}");
        out
    }

    fn attr<'a>(attrs: &'a [(String, String)], key: &str) -> Option<&'a str> {
        attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_xml_is_well_formed_and_shaped_as_ci_services_expect() {
        let els = elements(&xml());
        let count = |path: &str| els.iter().filter(|(p, _)| p == path).count();
        assert_eq!(count("testsuites"), 1);
        assert_eq!(count("testsuites/testsuite"), 1);
        // 8 subtests, 4 KTAP cases under kunit, 30 under selftests.
        assert_eq!(count("testsuites/testsuite/testcase"), 8 + 4 + 30);
        // writethrough, kunit, example, example_fail_test, selftests, case_12
        assert_eq!(count("testsuites/testsuite/testcase/failure"), 6);
        // stop_reregister (crash), resize (timeout)
        assert_eq!(count("testsuites/testsuite/testcase/error"), 2);
        // discard, example_skip_test, case_07, detach (not run)
        assert_eq!(count("testsuites/testsuite/testcase/skipped"), 4);
        let (_, suite) = &els[1];
        assert_eq!(attr(suite, "name"), Some("bcache"));
        assert_eq!(attr(suite, "tests"), Some("42"));
        assert_eq!(attr(suite, "failures"), Some("6"));
        assert_eq!(attr(suite, "errors"), Some("2"));
        assert_eq!(attr(suite, "skipped"), Some("4"));
        assert_eq!(
            attr(suite, "timestamp"),
            Some("2026-01-01T12:00:00.000+00:00")
        );
        for (p, a) in &els {
            if p == "testsuites/testsuite/testcase" {
                assert_eq!(attr(a, "classname"), Some("bcache"));
            }
        }
    }

    #[test]
    fn ktap_cases_are_flat_testcases_with_dotted_names_and_their_subtests_log() {
        let report = quick_junit::Report::deserialize_from_str(&xml()).unwrap();
        let cases = &report.test_suites[0].test_cases;
        let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names[3..8],
            [
                "kunit",
                "kunit.example",
                "kunit.example.example_simple_test",
                "kunit.example.example_skip_test",
                "kunit.example.example_fail_test",
            ]
        );
        let fail = &cases[7];
        match &fail.status {
            TestCaseStatus::NonSuccess { kind, message, .. } => {
                assert_eq!(*kind, NonSuccessKind::Failure);
                assert_eq!(message.as_deref(), Some("Expected 1 == 2, but 2 == 2"));
            }
            other => panic!("{other:?}"),
        }
        // The case has no time of its own, and points at its subtest's log.
        assert_eq!(fail.time, None);
        assert_eq!(
            fail.system_out.as_deref(),
            Some("log: /src/linux/.ktest/runs/20260101-120000-ab12/bcache/kunit.log")
        );
        assert_eq!(cases[3].time, Some(std::time::Duration::from_millis(3200)));
    }

    #[test]
    fn failures_carry_the_reason_and_the_kernel_log_excerpt() {
        let report = quick_junit::Report::deserialize_from_str(&xml()).unwrap();
        let cases = &report.test_suites[0].test_cases;
        let by_name = |n: &str| cases.iter().find(|c| c.name.as_str() == n).unwrap();
        match &by_name("writethrough").status {
            TestCaseStatus::NonSuccess {
                message,
                description,
                ..
            } => {
                assert_eq!(message.as_deref(), Some("exit status 1"));
                let d = description.as_deref().unwrap();
                assert!(d.starts_with(
                    "kernel: WARNING: CPU: 1 PID: 28102 at kernel/module.c:1108 module_put+0x57/0x70\n  ------------[ cut here ]"
                ));
                assert!(d.ends_with("\n  ---[ end trace 6ebc60ef3981792f ]---"));
            }
            other => panic!("{other:?}"),
        }
        match &by_name("stop_reregister").status {
            TestCaseStatus::NonSuccess {
                kind, message, ty, ..
            } => {
                assert_eq!(*kind, NonSuccessKind::Error);
                assert_eq!(ty.as_deref(), Some("crash"));
                assert_eq!(
                    message.as_deref(),
                    Some("Kernel panic - not syncing: Fatal exception")
                );
            }
            other => panic!("{other:?}"),
        }
        match &by_name("resize").status {
            TestCaseStatus::NonSuccess { kind, ty, .. } => {
                assert_eq!(*kind, NonSuccessKind::Error);
                assert_eq!(ty.as_deref(), Some("timeout"));
            }
            other => panic!("{other:?}"),
        }
        match &by_name("detach").status {
            TestCaseStatus::Skipped { message, ty, .. } => {
                assert_eq!(message.as_deref(), Some("not run: --fail-fast"));
                assert_eq!(ty.as_deref(), Some("notrun"));
            }
            other => panic!("{other:?}"),
        }
        // A pass with an allowed finding stays a pass; the finding is output.
        let wb = by_name("writeback");
        assert!(matches!(wb.status, TestCaseStatus::Success { .. }));
        assert!(wb
            .system_out
            .as_deref()
            .unwrap()
            .contains("\nallowed kernel: WARNING: CPU: 1 PID: 28102"));
    }

    #[test]
    fn a_failure_without_a_reason_names_its_finding() {
        let mut r = SubtestResult::new("t", Verdict::Fail);
        r.findings = vec![crate::report::fixtures::kasan()];
        let s = status(&r);
        match s {
            TestCaseStatus::NonSuccess { message, .. } => assert_eq!(
                message.as_deref(),
                Some("kernel: BUG: KASAN: slab-out-of-bounds in kmalloc_oob_right+0xa8/0xbc [test_kasan]")
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_suite_names_the_kernel_and_the_console_logs() {
        let report = quick_junit::Report::deserialize_from_str(&xml()).unwrap();
        let props: Vec<(String, String)> = report.test_suites[0]
            .properties
            .iter()
            .map(|p| (p.name.to_string(), p.value.to_string()))
            .collect();
        let get = |k: &str| props.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("kernel.release"), Some("6.1.0-ktest"));
        assert_eq!(get("kernel.describe"), Some("v6.1-rc3-12-g1234abcd"));
        assert_eq!(get("run_id"), Some("20260101-120000-ab12"));
        assert!(get("console_log.2").unwrap().ends_with("console-2.log"));
    }

    #[test]
    fn text_that_is_not_xml_is_escaped_or_dropped() {
        let mut report = run_report();
        let r = &mut report.tests[0].subtests[1];
        r.reason = Some("got <b> & \"quoted\" \u{1b}[31mred\u{1b}[0m".into());
        let xml = to_junit(&report).to_string().unwrap();
        elements(&xml);
        let back = quick_junit::Report::deserialize_from_str(&xml).unwrap();
        match &back.test_suites[0].test_cases[1].status {
            TestCaseStatus::NonSuccess { message, .. } => {
                assert_eq!(message.as_deref(), Some("got <b> & \"quoted\" red"))
            }
            other => panic!("{other:?}"),
        }
    }
}
