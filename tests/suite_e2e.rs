//! End-to-end tests of test files with subtests (issue "Suites"): real VMs
//! under TCG, real kernel crashes and taint, checked subtest by subtest in
//! the JSON report and the logs.

mod common;

use common::*;
use std::path::Path;

fn fixture(name: &str) -> String {
    repo()
        .join("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Each subtest's name and verdict, from the run's JSON report.
fn verdicts(json: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["tests"][0]["subtests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn every_subtest_gets_its_verdict_and_a_crash_resumes_in_a_fresh_vm() {
    let s = Sandbox::new();
    let json = s.path().join("r.json");
    // All but `hang`.
    let all_but_hang = format!("{}:[!h]*", fixture("subtests"));
    let out = s.run(&["--json", json.to_str().unwrap(), &all_but_hang]);
    let t = text(&out);
    // A crash outranks the failure.
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert_eq!(
        verdicts(&json),
        pairs(&[
            ("pass", "pass"),
            ("skip", "skip"),
            ("fail", "fail"),
            ("words", "pass"),
            ("taint", "fail"),
            ("panic", "crash"),
            ("after_panic", "pass"),
            ("last", "pass"),
        ])
    );
    let dir = s.run_dir("subtests");
    let log = |n: &str| std::fs::read_to_string(dir.join(format!("{n}.log"))).unwrap();
    assert!(log("pass").contains("pass ran as pass"));
    assert!(
        log("skip").contains("(no scratch disk here)"),
        "{}",
        log("skip")
    );
    // Output without a final newline stays the subtest's.
    assert!(
        log("fail").contains("fail: no newline before the exit"),
        "{}",
        log("fail")
    );
    assert!(log("fail").contains("(exit status 3)"));
    assert!(log("taint").contains("taint"), "{}", log("taint"));
    // The panic's trace is in the crashed subtest's log, not the next one's.
    assert!(log("panic").contains("Kernel panic - not syncing: sysrq triggered crash"));
    assert!(!log("after_panic").contains("Kernel panic"));
    assert!(log("after_panic").contains("ran in a fresh VM"));
    assert!(
        dir.join("console-2.log").exists(),
        "the second VM has its console log"
    );
    s.assert_clean();
}

#[test]
fn a_hung_subtest_times_out_and_the_rest_still_run() {
    let s = Sandbox::new();
    let json = s.path().join("r.json");
    let out = s
        .run_cmd()
        .args(["--timeout", "5", "--json", json.to_str().unwrap()])
        .arg(format!("{}:[hl]*", fixture("subtests")))
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert_eq!(
        verdicts(&json),
        pairs(&[("hang", "timeout"), ("last", "pass")])
    );
    let hang = std::fs::read_to_string(s.run_dir("subtests").join("hang.log")).unwrap();
    assert!(hang.contains("timed out after 5 s"), "{hang}");
    assert!(
        hang.contains("sysrq: Show State"),
        "the task stacks are in its log: {hang}"
    );
    s.assert_clean();
}

#[test]
fn selection_fail_fast_and_list() {
    let s = Sandbox::new();
    let list = s
        .ktest()
        .args(["list", &format!("{}:*a*", fixture("subtests"))])
        .output()
        .unwrap();
    assert_eq!(list.status.code(), Some(0), "{}", text(&list));
    // TEST:SUBTEST lines, TEST as given without the pattern.
    let prefix = format!("{}:", fixture("subtests"));
    let names: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| l.strip_prefix(&prefix).unwrap_or(l).to_string())
        .collect();
    assert_eq!(
        names,
        [
            "pass",
            "fail",
            "taint",
            "panic",
            "after_panic",
            "hang",
            "last"
        ]
    );
    let nothing = s.run(&["-s", "nope", &fixture("subtests")]);
    assert_eq!(nothing.status.code(), Some(2));
    assert!(
        text(&nothing).contains("no subtest matches 'nope'"),
        "{}",
        text(&nothing)
    );
    s.assert_clean();

    let json = s.path().join("r.json");
    let junit = s.path().join("r.xml");
    let out = s.run(&[
        "--fail-fast",
        "--json",
        json.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--ktap",
        "-s",
        "pass",
        "-s",
        "fail",
        "-s",
        "last",
        &fixture("subtests"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        verdicts(&json),
        pairs(&[("pass", "pass"), ("fail", "fail"), ("last", "notrun")])
    );
    // With --ktap, stdout is KTAP alone; the rest went to stderr.
    let ktap = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(ktap.starts_with("KTAP version 1\n1..3\n"), "{ktap}");
    assert!(
        ktap.contains("\nok 1 pass\n") && ktap.contains("not ok 2 fail"),
        "{ktap}"
    );
    assert!(
        !ktap.contains("pass ran as pass"),
        "the test's output is not KTAP: {ktap}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(r#"<testcase name="fail" classname="subtests""#),
        "{xml}"
    );
    assert!(xml.contains(r#"<failure message="exit status 3""#), "{xml}");
    // The run is in the results history.
    let last = s.ktest().args(["results"]).output().unwrap();
    let shown = text(&last);
    assert_eq!(last.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("exit status 3") && shown.contains("notrun"),
        "{shown}"
    );
    let hist = s
        .ktest()
        .args(["results", "--history", "subtests:pass"])
        .output()
        .unwrap();
    assert_eq!(hist.status.code(), Some(0), "{}", text(&hist));
    assert!(text(&hist).contains("pass"), "{}", text(&hist));
    s.assert_clean();
}

#[test]
fn loop_until_failure_and_allowed_taint() {
    let s = Sandbox::new();
    let test = s.script(
        "allowed",
        r#"#!/bin/sh
case "$1" in
deps) echo MEM=128M; echo SUBTESTS=yes; echo ALLOW=taint; exit 0 ;;
list-tests) echo taint; echo fails; exit 0 ;;
esac
case "$2" in
taint) echo 512 >/proc/sys/kernel/tainted ;;
fails) exit 1 ;;
esac
"#,
    );
    let t = test.to_str().unwrap();
    let out = s.run(&["--loop", "2", &format!("{t}:taint")]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("iteration 2"), "{shown}");
    assert!(shown.contains("all 2 iterations passed"), "{shown}");
    // The allowed finding is kept in the log, marked.
    let log = std::fs::read_to_string(s.run_dir("allowed").join("taint.log")).unwrap();
    assert!(log.contains("(allowed)"), "{log}");
    // Without a limit, the loop ends at the first failure.
    let out = s.run(&[t, "--loop"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("iteration 1 did not pass"), "{shown}");
    s.assert_clean();
}

#[test]
fn a_file_without_subtests_is_never_asked_for_them() {
    let s = Sandbox::new();
    // Answering list-tests would run its body on the host: ktest must not ask.
    let marker = s.path().join("ran-on-host");
    let test = s.script(
        "plain",
        &format!(
            "#!/bin/sh\n[ \"$1\" = deps ] && {{ echo MEM=128M; exit 0; }}\n[ \"$1\" = list-tests ] && touch {}\necho plain ran\n",
            marker.display()
        ),
    );
    let list = s
        .ktest()
        .args(["list", test.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).ends_with(":plain\n"));
    let sel = s.run(&["-s", "x", test.to_str().unwrap()]);
    assert_eq!(sel.status.code(), Some(2));
    assert!(text(&sel).contains("has no subtests"), "{}", text(&sel));
    assert!(!marker.exists());
    s.assert_clean();
}

#[test]
fn the_shell_library_in_a_vm() {
    let s = Sandbox::new();
    let json = s.path().join("r.json");
    let out = s.run(&["--json", json.to_str().unwrap(), &fixture("library")]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert_eq!(
        verdicts(&json),
        pairs(&[
            ("pass", "pass"),
            ("fail", "fail"),
            ("skip", "skip"),
            ("expectations", "pass"),
            ("wrong_expectation", "fail"),
            // The guest reads the kernel's own .config ($KTEST_KERNEL_CONFIG).
            ("config", "skip"),
            ("config_fail", "fail"),
            ("slow", "timeout"),
        ])
    );
    let slow = std::fs::read_to_string(s.run_dir("library").join("slow.log")).unwrap();
    assert!(
        slow.contains("timed out after 1 s (ktest_timeout)"),
        "{slow}"
    );
    s.assert_clean();
}

#[test]
fn a_library_time_limit_kills_what_the_subtest_started() {
    let s = Sandbox::new();
    let json = s.path().join("r.json");
    let out = s.run(&[
        "--json",
        json.to_str().unwrap(),
        "-s",
        "rearm",
        "-s",
        "quick",
        "-s",
        "tree",
        "-s",
        "child_gone",
        "-s",
        "ignores_term",
        &fixture("library-corners"),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert_eq!(
        verdicts(&json),
        pairs(&[
            ("rearm", "pass"),
            ("quick", "pass"),
            ("tree", "timeout"),
            // In the same VM: tree's child is gone.
            ("child_gone", "pass"),
            ("ignores_term", "timeout"),
        ])
    );
    s.assert_clean();
}
