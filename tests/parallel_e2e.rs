//! End-to-end tests of many test files at once (issue "Many test files at
//! once"): real VMs under TCG, several at a time from one directory,
//! checked in the JSON reports, the logs and what was left behind.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn many() -> PathBuf {
    repo().join("tests/fixtures/many")
}

fn triples(v: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    v.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

/// What the whole fixture directory runs to, in the order given.
fn whole_directory() -> Vec<(String, String, String)> {
    triples(&[
        ("hello.ktest", "hello.ktest", "pass"),
        ("skip.ktest", "skip.ktest", "skip"),
        ("deep.ktest", "deep.ktest", "pass"),
        ("suite.ktest", "one", "pass"),
        ("suite.ktest", "two", "pass"),
        ("suite.ktest", "three", "fail"),
        ("suite.ktest", "four", "pass"),
    ])
}

/// Makes `db` (ktest's own schema) and records a past run in which each
/// of `subtests` of `test` took 60 s, as ktest's history would.
fn long_history(s: &Sandbox, db: &Path, test: &Path, subtests: &[&str]) {
    let out = s
        .ktest()
        .env("KTEST_DB", db)
        .arg("status")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let c = rusqlite::Connection::open(db).unwrap();
    let test = test.canonicalize().unwrap();
    let test = test.to_str().unwrap();
    c.execute(
        "INSERT INTO runs (id, started_at, duration_ms, kernel_release, kernel_build_hash,
                           kernel_describe, kernel_key, kernel_image, host_dir)
         VALUES ('20260101-000000-0000', 1767225600, 240000, NULL, NULL, NULL, 'k', '/k', '/w')",
        [],
    )
    .unwrap();
    c.execute(
        "INSERT INTO run_tests VALUES ('20260101-000000-0000', 0, ?1, '[]')",
        [test],
    )
    .unwrap();
    for (i, name) in subtests.iter().enumerate() {
        c.execute(
            "INSERT INTO results VALUES ('20260101-000000-0000', ?1, 0, NULL, ?2, 'suite.ktest', ?3, 'pass', NULL, 60000, NULL, NULL)",
            rusqlite::params![i as i64, test, name],
        )
        .unwrap();
    }
}

#[test]
fn a_directory_runs_in_parallel_vms_as_one_run() {
    let s = Sandbox::new();
    let json = s.path().join("r.json");
    let mark = s.path().join("helper-ran");
    // A database of its own, whose history says suite.ktest is long.
    let db = s.path().join("db/state.db");
    long_history(
        &s,
        &db,
        &many().join("suite.ktest"),
        &["one", "two", "three", "four"],
    );
    let out = s
        .run_cmd()
        .env("KTEST_DB", &db)
        .env("KTEST_E2E_MARK", &mark)
        .args(["--vms", "2", "--json", json.to_str().unwrap()])
        .arg(many())
        .output()
        .unwrap();
    let t = text(&out);
    // suite.ktest:three fails; everything else passes or skips.
    check(
        &out,
        1,
        &["FAIL    suite.ktest:three", "PASS    hello.ktest"],
    );
    // Every file of the directory, each subtest once.
    let mut got = report_results(&json);
    let want = whole_directory();
    assert_eq!(got.len(), want.len(), "{t}");
    got.sort();
    let mut sorted = want.clone();
    sorted.sort();
    assert_eq!(got, sorted, "{t}");
    // suite.ktest's subtests are reported in the file's order, though two
    // VMs ran them (its history: 4 x 60 s, cut for two VMs).
    let suite: Vec<String> = report_results(&json)
        .into_iter()
        .filter(|r| r.0 == "suite.ktest")
        .map(|r| r.1)
        .collect();
    assert_eq!(suite, ["one", "two", "three", "four"]);
    let dir = s.run_dir("suite.ktest");
    assert!(dir.join("console.log").exists() && dir.join("console-2.log").exists());
    // Two VMs ran at once: ids are the lowest free in the directory, so a
    // second id means a VM started while another ran.
    assert!(t.contains("vm 1:") && t.contains("vm 2:"), "{t}");
    // Without a terminal: one plain line per event, no cursor movement.
    assert!(!t.contains("\x1b["), "{t}");
    assert!(
        !mark.exists(),
        "a file not named *.ktest, or not executable, was run"
    );
    s.assert_clean();
}

/// Runs shard K/2 of the fixture directory with the state database `db`;
/// returns its results and its plan fingerprint.
fn shard(s: &Sandbox, k: u32, db: &Path) -> (Vec<(String, String, String)>, String) {
    let json = s.path().join(format!("shard-{k}.json"));
    let out = s
        .run_cmd()
        .env("KTEST_DB", db)
        .args([
            "--shard",
            &format!("{k}/2"),
            "--json",
            json.to_str().unwrap(),
        ])
        .arg(many())
        .output()
        .unwrap();
    let code = out.status.code();
    assert!(code == Some(0) || code == Some(1), "{}", text(&out));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["shard"]["index"], k);
    assert_eq!(v["shard"]["count"], 2);
    (
        report_results(&json),
        v["shard"]["plan"].as_str().unwrap().to_string(),
    )
}

/// Both shards' parts are disjoint, non-empty and together the whole
/// directory, and were cut from one plan.
fn check_shards(s: &Sandbox, dbs: [&Path; 2]) {
    let (one, plan1) = shard(s, 1, dbs[0]);
    let (two, plan2) = shard(s, 2, dbs[1]);
    assert!(!one.is_empty() && !two.is_empty(), "{one:?} {two:?}");
    assert_eq!(plan1, plan2);
    let mut seen: Vec<_> = one.into_iter().chain(two).collect();
    let n = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n, "a subtest ran in both shards: {seen:?}");
    let whole: BTreeSet<_> = whole_directory().into_iter().collect();
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), whole);
    check_merge(s);
}

/// `ktest results merge` of the two shards' reports: the whole directory
/// once, in JSON and JUnit, exiting 1 for suite.ktest:three; one part
/// alone is refused and writes nothing.
fn check_merge(s: &Sandbox) {
    let shard_json = |k: u32| s.path().join(format!("shard-{k}.json"));
    let (json, junit) = (s.path().join("merged.json"), s.path().join("merged.xml"));
    let _ = std::fs::remove_file(&json);
    let out = s
        .ktest()
        .args(["results", "merge", "--json"])
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .arg(shard_json(1))
        .arg(shard_json(2))
        .output()
        .unwrap();
    check(
        &out,
        1,
        &["4 test files: 5 passed, 1 skipped, 1 failed (7 subtests"],
    );
    let mut merged = report_results(&json);
    merged.sort();
    let mut whole = whole_directory();
    whole.sort();
    assert_eq!(merged, whole);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("tests=\"7\"") && xml.contains("failures=\"1\""),
        "{xml}"
    );
    let alone = s.path().join("alone.json");
    let out = s
        .ktest()
        .args(["results", "merge", "--json"])
        .arg(&alone)
        .arg(shard_json(1))
        .output()
        .unwrap();
    check(&out, 2, &["the report of part 2/2 is missing"]);
    assert!(!alone.exists());
}

#[test]
fn shards_together_run_the_whole_selection_once() {
    // As on CI machines: each shard has a database of its own. First with
    // no history at all...
    let s = Sandbox::new();
    let db = |name: &str| s.path().join(name).join("state.db");
    check_shards(&s, [&db("fresh-1"), &db("fresh-2")]);
    // ...then with the same history in both (a copy of one database that
    // has run the directory): the parts are balanced by it, and still
    // exact.
    let out = s
        .run_cmd()
        .env("KTEST_DB", db("history"))
        .arg(many())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    for copy in ["copy-1", "copy-2"] {
        std::fs::create_dir_all(s.path().join(copy)).unwrap();
        std::fs::copy(db("history"), db(copy)).unwrap();
    }
    check_shards(&s, [&db("copy-1"), &db("copy-2")]);
    s.assert_clean();
}

#[test]
fn fail_fast_stops_the_other_vms() {
    let s = Sandbox::new();
    let started = std::time::Instant::now();
    let out = s
        .run_cmd()
        .args(["--vms", "2", "--fail-fast"])
        .arg(repo().join("tests/fixtures/hang"))
        .arg(repo().join("tests/fixtures/fail"))
        .output()
        .unwrap();
    // hang's time limit is 8 s: it must not have been waited for.
    check(&out, 1, &["FAIL    fail", "not run", "--fail-fast"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let t = text(&out);
    assert!(!t.contains("TIMEOUT"), "{t}");
    s.assert_clean();
}

#[test]
fn ctrl_c_stops_every_vm_and_leaves_nothing() {
    let s = Sandbox::new();
    let child = s
        .run_cmd()
        .args(["--vms", "2"])
        .arg(repo().join("tests/fixtures/hang"))
        .arg(repo().join("tests/fixtures/success-then-hang"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let bg = Background { child: Some(child) };
    assert!(
        wait_for(120, || qemus_in(s.path()).len() == 2),
        "two VMs never ran at once"
    );
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = bg.wait(60);
    check(&out, 130, &["interrupted"]);
    s.assert_clean();
}

#[test]
fn a_terminal_gets_a_live_status_block() {
    let s = Sandbox::new();
    let cmd = format!(
        "{} run --kernel {} --vms 2 {} {}",
        env!("CARGO_BIN_EXE_ktest"),
        bzimage().display(),
        repo().join("tests/fixtures/many/hello.ktest").display(),
        repo().join("tests/fixtures/many/sub/deep.ktest").display(),
    );
    // script(1) gives ktest a terminal and keeps what it drew.
    let typescript = s.path().join("typescript");
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd])
        .arg(&typescript)
        .current_dir(s.path())
        .env("KTEST_DB", s.db())
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let drawn = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
    assert!(out.status.success(), "{}{drawn}", text(&out));
    // The block: a line per running VM, the counts, redrawn in place.
    assert!(drawn.contains("(booting)"), "{drawn}");
    assert!(drawn.contains("passed, 0 failed, 0 skipped;"), "{drawn}");
    assert!(drawn.contains("\x1b[J"), "{drawn}");
    assert!(drawn.contains("PASS"), "{drawn}");
    // Plain per-event lines are only for logs.
    assert!(!drawn.contains("VM booting for"), "{drawn}");
    s.assert_clean();
}
