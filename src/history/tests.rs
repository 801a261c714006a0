use super::show::{kernel_label, render_history, render_last};
use super::*;
use crate::results::TestReport;

/// A database of its own in a fresh directory.
fn scratch() -> (tempfile::TempDir, State) {
    let t = tempfile::tempdir().unwrap();
    let s = State::open(&t.path().join("state.db")).unwrap();
    (t, s)
}

fn kernel(release: &str) -> KernelIdentity {
    KernelIdentity {
        release: Some(release.into()),
        build_hash: Some("0123456789abcdef0123".into()),
        describe: Some("v6.1-rc1-dirty".into()),
        image: PathBuf::from("/k/.ktest/build/0123456789abcdef0123/arch/x86/boot/bzImage"),
    }
}

fn result(name: &str, verdict: Verdict) -> SubtestResult {
    let mut r = SubtestResult::new(name, verdict);
    r.duration = Duration::from_millis(1234);
    r
}

/// A run `n` seconds after 2025-01-01 with one test file.
fn run(n: i64, release: &str, test: &str, subtests: Vec<SubtestResult>) -> RunReport {
    RunReport {
        run_id: format!("20250101-0000{n:02}-{n:04x}"),
        started_at: 1_735_689_600 + n,
        duration: Duration::from_millis(5000),
        kernel: kernel(release),
        tests: vec![TestReport {
            test: PathBuf::from(test),
            subtests,
            console_logs: vec![PathBuf::from(format!("/w/.ktest/runs/{n}/console.log"))],
        }],
        shard: None,
        target: None,
    }
}

/// Real KTAP from kselftest (tools/testing/kunit/test_data/
/// test_is_test_passed-kselftest.log): a subtest whose cases have `:`, `=`
/// and spaces in their names, and one case whose name has a `/`.
fn kselftest_run(n: i64, release: &str, case2: Verdict) -> RunReport {
    let mut single = result(
        "membarrier",
        if case2.is_ok() {
            Verdict::Pass
        } else {
            Verdict::Fail
        },
    );
    single.reason = (!case2.is_ok()).then(|| "KTAP: 1 of 2 cases failed".into());
    single.log = Some(PathBuf::from(format!("/w/.ktest/runs/{n}/membarrier.log")));
    let mut inner = result(
        "selftests: membarrier: membarrier_test_single_thread",
        Verdict::Pass,
    );
    inner.children = vec![
        result("sys_membarrier available", Verdict::Pass),
        result(
            "sys membarrier invalid command test: command = -1, flags = 0, errno = 22. Failed as expected",
            case2,
        ),
        result("a/b", Verdict::Skip),
    ];
    if !case2.is_ok() {
        inner.verdict = Verdict::Fail;
    }
    single.children = vec![inner];
    single.findings = vec![KernelLogFinding {
        kind: "warning".into(),
        title: "WARNING: CPU: 0 PID: 1 at kernel/fork.c:1234 copy_process+0x1/0x2".into(),
        excerpt: vec!["Call Trace:".into(), " <TASK>".into()],
        allowed: true,
    }];
    run(
        n,
        release,
        "/w/tests/membarrier.sh",
        vec![single, result("other", Verdict::Pass)],
    )
}

/// Records `kselftest_run(n, "6.1.0", case2)` as run in `/w`.
fn record_kselftest(s: &State, n: i64, case2: Verdict, keep: usize) {
    record(s, &kselftest_run(n, "6.1.0", case2), Path::new("/w"), keep).unwrap();
}

fn count(s: &State, table: &str) -> i64 {
    s.conn()
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn flatten_is_preorder_with_parents_and_paths() {
    let r = kselftest_run(1, "6.1.0", Verdict::Fail);
    let flat: Vec<(usize, Option<usize>, String)> = flatten(&r)
        .into_iter()
        .map(|f| (f.position, f.parent, f.path))
        .collect();
    let inner = "membarrier/selftests: membarrier: membarrier_test_single_thread";
    let case2 = "sys membarrier invalid command test: command = -1, flags = 0, errno = 22. Failed as expected";
    assert_eq!(
        flat,
        [
            (0, None, "membarrier".to_string()),
            (1, Some(0), inner.to_string()),
            (2, Some(1), format!("{inner}/sys_membarrier available")),
            (3, Some(1), format!("{inner}/{case2}")),
            (4, Some(1), format!("{inner}/a/b")),
            (5, None, "other".to_string()),
        ]
    );
}

#[test]
fn a_run_comes_back_exactly_as_recorded() {
    let (_t, s) = scratch();
    let mut r = kselftest_run(1, "6.1.0", Verdict::Fail);
    r.tests.push(TestReport {
        test: PathBuf::from("/w/tests/second.sh"),
        subtests: vec![result("second.sh", Verdict::Timeout)],
        console_logs: vec![],
    });
    record(&s, &r, Path::new("/w"), 10).unwrap();
    let back = last_run(&s, Some(Path::new("/w"))).unwrap().unwrap();
    assert_eq!(back.report, r);
    assert_eq!(back.host_dir, Path::new("/w"));
    // Recording the same run again replaces it.
    record(&s, &r, Path::new("/w"), 10).unwrap();
    assert_eq!(count(&s, "runs"), 1);
    assert_eq!(count(&s, "results"), 7);
}

#[test]
fn retention_keeps_the_newest_runs_and_drops_the_others_results() {
    let (_t, s) = scratch();
    for n in 1..=5 {
        record_kselftest(&s, n, Verdict::Pass, 3);
    }
    let ids: Vec<String> = s
        .conn()
        .prepare("SELECT id FROM runs ORDER BY started_at")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "20250101-000003-0003",
            "20250101-000004-0004",
            "20250101-000005-0005"
        ]
    );
    assert_eq!(count(&s, "results"), 3 * 6);
    assert_eq!(count(&s, "run_tests"), 3);
    // A run older than all kept ones is not kept, and keep 0 still keeps
    // the newest.
    record_kselftest(&s, 0, Verdict::Pass, 3);
    assert_eq!(count(&s, "runs"), 3);
    assert!(history(&s, "membarrier.sh", None, 100)
        .unwrap()
        .iter()
        .all(|r| r.run_id != "20250101-000000-0000"));
    record_kselftest(&s, 9, Verdict::Pass, 0);
    assert_eq!(count(&s, "runs"), 1);
    assert_eq!(count(&s, "results"), 6);
}

#[test]
fn last_run_prefers_this_directory() {
    let (_t, s) = scratch();
    assert_eq!(last_run(&s, None).unwrap(), None);
    record(&s, &run(1, "6.1.0", "/a/t.sh", vec![]), Path::new("/a"), 10).unwrap();
    record(&s, &run(2, "6.1.0", "/b/t.sh", vec![]), Path::new("/b"), 10).unwrap();
    let id = |d: Option<&str>| {
        last_run(&s, d.map(Path::new))
            .unwrap()
            .unwrap()
            .report
            .run_id
    };
    assert_eq!(id(Some("/a")), "20250101-000001-0001");
    assert_eq!(id(Some("/b")), "20250101-000002-0002");
    assert_eq!(id(Some("/elsewhere")), "20250101-000002-0002");
    assert_eq!(id(None), "20250101-000002-0002");
}

#[test]
fn history_is_newest_first_by_path_or_file_name() {
    let (_t, s) = scratch();
    record_kselftest(&s, 1, Verdict::Pass, 10);
    record_kselftest(&s, 2, Verdict::Fail, 10);
    record(
        &s,
        &run(
            3,
            "6.1.0",
            "/x/other.sh",
            vec![result("other.sh", Verdict::Pass)],
        ),
        Path::new("/x"),
        10,
    )
    .unwrap();
    let rows = history(&s, "membarrier.sh", Some("membarrier"), 10).unwrap();
    let seen: Vec<(&str, Verdict)> = rows
        .iter()
        .map(|r| (r.run_id.as_str(), r.verdict))
        .collect();
    assert_eq!(
        seen,
        [
            ("20250101-000002-0002", Verdict::Fail),
            ("20250101-000001-0001", Verdict::Pass)
        ]
    );
    assert_eq!(rows[0].reason.as_deref(), Some("KTAP: 1 of 2 cases failed"));
    assert_eq!(rows[0].duration_ms, 1234);
    assert_eq!(rows[0].kernel, kernel("6.1.0"));
    assert_eq!(
        rows[0].log.as_deref(),
        Some(Path::new("/w/.ktest/runs/2/membarrier.log"))
    );
    assert_eq!(
        history(&s, "/w/tests/membarrier.sh", Some("membarrier"), 10).unwrap(),
        rows
    );
    assert_eq!(
        history(&s, "membarrier.sh", Some("membarrier"), 1)
            .unwrap()
            .len(),
        1
    );
    // No subtest: the top-level ones only, newest run first, file order.
    let top: Vec<String> = history(&s, "membarrier.sh", None, 10)
        .unwrap()
        .into_iter()
        .map(|r| format!("{}:{}", &r.run_id[..17], r.subtest))
        .collect();
    assert_eq!(
        top,
        [
            "20250101-000002-0:membarrier",
            "20250101-000002-0:other",
            "20250101-000001-0:membarrier",
            "20250101-000001-0:other"
        ]
    );
    // A case, by its path.
    let case = "membarrier/selftests: membarrier: membarrier_test_single_thread/a/b";
    let rows = history(&s, "membarrier.sh", Some(case), 10).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.verdict == Verdict::Skip));
    // Neither another file's results, nor a partial name.
    assert!(history(&s, "membarrier", None, 10).unwrap().is_empty());
    assert!(history(&s, "tests/membarrier.sh", None, 10)
        .unwrap()
        .is_empty());
    assert!(history(&s, "membarrier.sh", Some("nope"), 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        subtests(&s, "membarrier.sh").unwrap(),
        ["membarrier", "other"]
    );
}

#[test]
fn flaky_means_passed_and_failed_on_the_same_kernel() {
    let (_t, s) = scratch();
    let rec = |n, release, verdict| {
        let r = run(
            n,
            release,
            "/w/t.sh",
            vec![result("a", verdict), result("b", Verdict::Pass)],
        );
        record(&s, &r, Path::new("/w"), 100).unwrap();
    };
    // On 6.1: a passes, then times out: flaky. On 6.2 it only fails (a
    // regression, not a flake); on 6.3 it is skipped and passes.
    rec(1, "6.1.0", Verdict::Pass);
    rec(2, "6.1.0", Verdict::Timeout);
    rec(3, "6.2.0", Verdict::Fail);
    rec(4, "6.2.0", Verdict::Fail);
    rec(5, "6.3.0", Verdict::Skip);
    rec(6, "6.3.0", Verdict::Pass);
    let f = flaky(&s, "t.sh", Scope::Top).unwrap();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0].subtest.as_str(), f[0].kernel.release.as_deref()),
        ("a", Some("6.1.0"))
    );
    assert_eq!((f[0].passed(), f[0].failed()), (1, 1));
    assert_eq!(flaky(&s, "t.sh", Scope::Exact("b")).unwrap(), vec![]);
    let flags: Vec<(String, bool)> = history(&s, "t.sh", Some("a"), 10)
        .unwrap()
        .into_iter()
        .map(|r| (r.kernel.release.unwrap(), r.flaky))
        .collect();
    assert_eq!(
        flags,
        [
            ("6.3.0".into(), false),
            ("6.3.0".into(), false),
            ("6.2.0".into(), false),
            ("6.2.0".into(), false),
            ("6.1.0".into(), true),
            ("6.1.0".into(), true)
        ]
    );
    // The same release built another way is another kernel.
    let mut other = run(7, "6.1.0", "/w/t.sh", vec![result("b", Verdict::Crash)]);
    other.kernel.build_hash = Some("fedcba".into());
    record(&s, &other, Path::new("/w"), 100).unwrap();
    assert!(flaky(&s, "t.sh", Scope::Exact("b")).unwrap().is_empty());
}

#[test]
fn flaky_cases_are_found_in_the_whole_tree() {
    let (_t, s) = scratch();
    record_kselftest(&s, 1, Verdict::Pass, 10);
    record_kselftest(&s, 2, Verdict::Fail, 10);
    let names: Vec<String> = flaky(&s, "/w/tests/membarrier.sh", Scope::All)
        .unwrap()
        .into_iter()
        .map(|t| t.subtest)
        .collect();
    assert_eq!(
        names,
        [
            "membarrier",
            "membarrier/selftests: membarrier: membarrier_test_single_thread",
            "membarrier/selftests: membarrier: membarrier_test_single_thread/sys membarrier invalid command test: command = -1, flags = 0, errno = 22. Failed as expected",
        ]
    );
    assert_eq!(flaky(&s, "membarrier.sh", Scope::Top).unwrap().len(), 1);
}

#[test]
fn kernels_are_summarized_newest_first() {
    let t = |release: &str, last, sub: &str, pass, fail| Tally {
        test: PathBuf::from("/w/t.sh"),
        subtest: sub.into(),
        kernel: kernel(release),
        last,
        counts: Verdict::ALL
            .iter()
            .map(|v| {
                let n = match v {
                    Verdict::Pass => pass,
                    Verdict::Fail => fail,
                    _ => 0,
                };
                (*v, n)
            })
            .collect(),
    };
    let s = by_kernel(&[
        t("6.1.0", 10, "a", 2, 1),
        t("6.2.0", 30, "a", 0, 3),
        t("6.1.0", 20, "b", 1, 0),
    ]);
    assert_eq!(s.len(), 2);
    assert_eq!(
        (s[0].kernel.release.as_deref(), s[0].last),
        (Some("6.2.0"), 30)
    );
    assert!(s[0].flaky.is_empty());
    assert_eq!(
        (s[1].kernel.release.as_deref(), s[1].last),
        (Some("6.1.0"), 20)
    );
    assert_eq!(s[1].counts[&Verdict::Pass], 3);
    assert_eq!(s[1].counts[&Verdict::Fail], 1);
    assert_eq!(s[1].flaky, ["a"]);
}

#[test]
fn test_and_subtest_are_split_at_the_right_colon() {
    let none = |_: &Path| false;
    let split = |a: &str, exists: &dyn Fn(&Path) -> bool| split_test_subtest(a, exists);
    let pair = |t: &str, s: Option<&str>| (t.to_string(), s.map(String::from));
    assert_eq!(split("t.sh", &none), pair("t.sh", None));
    assert_eq!(split("t.sh:basic", &none), pair("t.sh", Some("basic")));
    assert_eq!(
        split("dir:x/t.sh:a.b+c-d_e", &none),
        pair("dir:x/t.sh", Some("a.b+c-d_e"))
    );
    // What follows is no subtest name: part of the path.
    assert_eq!(split("t.sh:", &none), pair("t.sh:", None));
    assert_eq!(split(":basic", &none), pair(":basic", None));
    assert_eq!(split("dir:x/t.sh", &none), pair("dir:x/t.sh", None));
    assert_eq!(split("t.sh:two words", &none), pair("t.sh:two words", None));
    // A file that is there as given is never split.
    let only = |f: &'static str| move |p: &Path| p == Path::new(f);
    assert_eq!(split("a:b", &only("a:b")), pair("a:b", None));
    assert_eq!(split("a:b", &only("a")), pair("a", Some("b")));
    // A KTAP case path after the subtest, with colons of its own.
    let case = "membarrier/selftests: membarrier: membarrier_test_single_thread";
    let with_case = format!("t.sh:{case}");
    assert_eq!(split(&with_case, &only("t.sh")), pair("t.sh", Some(case)));
    assert_eq!(
        split("t.sh:kunit/", &only("t.sh")),
        pair("t.sh:kunit/", None)
    );
    // Without the file, a case path reads as part of the test's path.
    assert_eq!(split(&with_case, &none), pair(&with_case, None));
    // Both readings possible: the one naming an existing file wins, else
    // the last colon.
    assert_eq!(split("t.sh:a/b:c", &none), pair("t.sh:a/b", Some("c")));
    assert_eq!(
        split("t.sh:a/b:c", &only("t.sh")),
        pair("t.sh", Some("a/b:c"))
    );
}

#[test]
fn times_are_utc() {
    assert_eq!(utc(0), "1970-01-01 00:00:00");
    assert_eq!(utc(1_735_689_600 + 3661), "2025-01-01 01:01:01");
    assert_eq!(utc(253_402_300_799), "9999-12-31 23:59:59");
    assert_eq!(utc(253_402_300_800), "@253402300800");
    assert_eq!(utc(-1), "@-1");
}

#[test]
fn kernels_are_labelled_by_what_is_known() {
    assert_eq!(
        kernel_label(&kernel("6.1.0")),
        "6.1.0 v6.1-rc1-dirty build 0123456789ab"
    );
    let bare = KernelIdentity {
        image: PathBuf::from("/boot/vmlinuz"),
        ..KernelIdentity::default()
    };
    assert_eq!(kernel_label(&bare), "/boot/vmlinuz");
}

#[test]
fn the_last_run_shows_subtests_failures_logs_and_flakes() {
    let report = kselftest_run(2, "6.1.0", Verdict::Fail);
    let stored = StoredRun {
        host_dir: PathBuf::from("/w"),
        report,
    };
    let inner = "membarrier/selftests: membarrier: membarrier_test_single_thread";
    let flaky = [(
        PathBuf::from("/w/tests/membarrier.sh"),
        "membarrier".to_string(),
    )];
    let exists = |p: &Path| p.ends_with("membarrier.log");
    let lines = render_last(&stored, Some(Path::new("/elsewhere")), &flaky, &exists);
    assert_eq!(
        lines[..3],
        [
            "run 20250101-000002-0002 at 2025-01-01 00:00:02 UTC, 5.00 s, kernel 6.1.0 v6.1-rc1-dirty build 0123456789ab",
            "(no run from /elsewhere; this one ran in /w)",
            "/w/tests/membarrier.sh",
        ]
    );
    assert!(lines[3].starts_with("  fail  membarrier "), "{lines:#?}");
    assert!(
        lines[3].ends_with("1.23 s  KTAP: 1 of 2 cases failed [flaky]"),
        "{lines:#?}"
    );
    // Failing cases are listed by path; passing ones are not.
    assert!(
        lines[4].starts_with(&format!("  fail  {inner} ")),
        "{lines:#?}"
    );
    assert!(
        lines[5].contains("errno = 22. Failed as expected"),
        "{lines:#?}"
    );
    assert!(lines[6].starts_with("  pass  other "), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("sys_membarrier available")));
    assert_eq!(
        lines[7..],
        [
            "  1 pass, 1 fail",
            "  failed: membarrier",
            "    membarrier: /w/.ktest/runs/2/membarrier.log",
            "  console: /w/.ktest/runs/2/console.log (removed)",
        ]
    );
    // From this directory, no note about where it ran.
    let here = render_last(&stored, Some(Path::new("/w")), &[], &exists);
    assert_eq!(here[1], "/w/tests/membarrier.sh");
    assert!(!here[3].contains("[flaky]"));
}

#[test]
fn history_text_has_a_line_per_result_and_per_kernel() {
    let (_t, s) = scratch();
    for (n, v) in [(1, Verdict::Pass), (2, Verdict::Fail)] {
        record_kselftest(&s, n, v, 10);
    }
    let rows = history(&s, "membarrier.sh", None, 10).unwrap();
    let kernels = by_kernel(&tallies(&s, "membarrier.sh", Scope::Top).unwrap());
    let lines = render_history(&rows, &kernels, true);
    assert_eq!(
        lines,
        [
            "RUN                   STARTED (UTC)        VERDICT  DURATION  SUBTEST     KERNEL                                   NOTE",
            "20250101-000002-0002  2025-01-01 00:00:02  fail     1.23 s    membarrier  6.1.0 v6.1-rc1-dirty build 0123456789ab  KTAP: 1 of 2 cases failed [flaky]",
            "20250101-000002-0002  2025-01-01 00:00:02  pass     1.23 s    other       6.1.0 v6.1-rc1-dirty build 0123456789ab",
            "20250101-000001-0001  2025-01-01 00:00:01  pass     1.23 s    membarrier  6.1.0 v6.1-rc1-dirty build 0123456789ab  [flaky]",
            "20250101-000001-0001  2025-01-01 00:00:01  pass     1.23 s    other       6.1.0 v6.1-rc1-dirty build 0123456789ab",
            "per kernel (all results in the history):",
            "  6.1.0 v6.1-rc1-dirty build 0123456789ab: 3 pass, 1 fail; last 2025-01-01 00:00:02; flaky: membarrier",
        ]
    );
    // One subtest: no SUBTEST column.
    let one = history(&s, "membarrier.sh", Some("other"), 10).unwrap();
    assert!(render_history(&one, &[], false)[0]
        .starts_with("RUN                   STARTED (UTC)        VERDICT  DURATION  KERNEL"));
}

#[test]
fn results_json_keeps_the_run_reports_fields() {
    let r = kselftest_run(1, "6.1.0", Verdict::Pass);
    let stored = StoredRun {
        host_dir: PathBuf::from("/w"),
        report: r.clone(),
    };
    let v: serde_json::Value = serde_json::to_value(&stored).unwrap();
    assert_eq!(v["host_dir"], "/w");
    let back: RunReport = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

#[test]
fn durations_are_the_median_of_the_latest_runs_that_ran() {
    let (_t, s) = scratch();
    let timed = |name: &str, v: Verdict, ms: u64| {
        let mut r = result(name, v);
        r.duration = Duration::from_millis(ms);
        r
    };
    // Oldest first; `a` took 100, 900, 200, 300, 250, 5000 ms: the latest
    // five are 900..5000, whose median is 300.
    for (n, ms) in [100, 900, 200, 300, 250, 5000].into_iter().enumerate() {
        let mut subtests = vec![timed("a", Verdict::Pass, ms)];
        if n == 5 {
            subtests.push(timed("b", Verdict::NotRun, 0));
            subtests.push(timed("c", Verdict::Timeout, 60_000));
        }
        record(
            &s,
            &run(n as i64, "6.1", "/t/x", subtests),
            Path::new("/w"),
            100,
        )
        .unwrap();
    }
    // A case of a subtest is not a subtest.
    record(
        &s,
        &kselftest_run(20, "6.1", Verdict::Pass),
        Path::new("/w"),
        100,
    )
    .unwrap();
    let d = durations(&s, Path::new("/t/x")).unwrap();
    assert_eq!(d.get("a"), Some(&Duration::from_millis(300)));
    assert_eq!(d.get("b"), None, "a subtest that did not run says nothing");
    assert_eq!(d.get("c"), Some(&Duration::from_secs(60)));
    assert_eq!(d.len(), 2);
    assert!(durations(&s, Path::new("/t/none")).unwrap().is_empty());
}
