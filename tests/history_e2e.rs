//! `ktest results` on a private database: the command line, the exit codes
//! and the output, with a history written as `ktest run` writes it (no VM:
//! the rows go in with SQL).

mod common;

use common::check;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A directory holding a test file `t.sh`, and a database of its own.
struct Setup {
    _dir: tempfile::TempDir,
    /// The directory, canonical, as ktest records it.
    dir: PathBuf,
    db: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        std::fs::write(dir.join("t.sh"), "#!/bin/sh\n").unwrap();
        Setup {
            db: dir.join("db/state.db"),
            dir,
            _dir: tmp,
        }
    }

    fn results(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ktest"))
            .current_dir(&self.dir)
            .env_remove("KTEST_DB")
            .arg("--db")
            .arg(&self.db)
            .arg("results")
            .args(args)
            .output()
            .unwrap()
    }

    /// Records run `n` of `t.sh` with subtests a and b, on kernel
    /// `release`, as ktest run in this directory does.
    fn record(&self, n: i64, release: &str, a: &str, b: &str) {
        let c = rusqlite::Connection::open(&self.db).unwrap();
        let id = format!("20250101-00000{n}-000{n}");
        let test = self.dir.join("t.sh").to_string_lossy().into_owned();
        let host = self.dir.to_string_lossy().into_owned();
        c.execute(
            // The columns named, as ktest writes them: later schema
            // versions add columns.
            "INSERT INTO runs (id, started_at, duration_ms, kernel_release, kernel_build_hash,
                               kernel_describe, kernel_key, kernel_image, host_dir)
             VALUES (?1, ?2, 4000, ?3, NULL, 'v6.1', ?4, '/k/bzImage', ?5)",
            rusqlite::params![
                id,
                1_735_689_600 + n,
                release,
                format!("{release}||v6.1"),
                host
            ],
        )
        .unwrap();
        c.execute(
            "INSERT INTO run_tests VALUES (?1, 0, ?2, '[]')",
            rusqlite::params![id, test],
        )
        .unwrap();
        for (pos, (name, verdict)) in [("a", a), ("b", b)].into_iter().enumerate() {
            c.execute(
                "INSERT INTO results VALUES (?1, ?2, 0, NULL, ?3, 't.sh', ?4, ?5, NULL, 1500, ?6, NULL)",
                rusqlite::params![id, pos, test, name, verdict, format!("{host}/{name}.log")],
            )
            .unwrap();
        }
    }
}

#[test]
fn an_empty_history_is_a_usage_error() {
    let s = Setup::new();
    check(&s.results(&[]), 2, &["has no runs yet", "ktest run"]);
    check(&s.results(&["--history", "t.sh"]), 2, &["has no runs yet"]);
    check(&s.results(&["--json"]), 2, &["has no runs yet"]);
}

#[test]
fn the_last_run_as_text_and_json() {
    let s = Setup::new();
    s.results(&[]);
    s.record(1, "6.1.0", "pass", "pass");
    s.record(2, "6.1.0", "fail", "pass");
    let out = s.results(&[]);
    check(
        &out,
        0,
        &[
            "run 20250101-000002-0002 at 2025-01-01 00:00:02 UTC, 4.00 s, kernel 6.1.0 v6.1",
            "  fail  a  1.50 s  [flaky]",
            "  pass  b  1.50 s\n",
            "  1 pass, 1 fail",
            "  failed: a",
            &format!("    a: {}/a.log (removed)", s.dir.display()),
        ],
    );
    let out = s.results(&["--json"]);
    check(&out, 0, &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["run_id"], "20250101-000002-0002");
    assert_eq!(v["host_dir"], s.dir.to_str().unwrap());
    assert_eq!(v["tests"][0]["subtests"][0]["verdict"], "fail");
    assert_eq!(v["tests"][0]["subtests"][1]["duration_ms"], 1500);
    assert_eq!(v["flaky"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["flaky"][0]["subtest"], "a");
}

#[test]
fn a_tests_history_by_path_or_name() {
    let s = Setup::new();
    s.results(&[]);
    s.record(1, "6.1.0", "pass", "pass");
    s.record(2, "6.1.0", "fail", "pass");
    s.record(3, "6.2.0", "fail", "skip");
    let out = s.results(&["--history", "t.sh:a"]);
    check(&out, 0, &[]);
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(
        lines,
        [
            "RUN                   STARTED (UTC)        VERDICT  DURATION  KERNEL      NOTE",
            "20250101-000003-0003  2025-01-01 00:00:03  fail     1.50 s    6.2.0 v6.1",
            "20250101-000002-0002  2025-01-01 00:00:02  fail     1.50 s    6.1.0 v6.1  [flaky]",
            "20250101-000001-0001  2025-01-01 00:00:01  pass     1.50 s    6.1.0 v6.1  [flaky]",
            "per kernel (all results in the history):",
            "  6.2.0 v6.1: 1 fail; last 2025-01-01 00:00:03",
            "  6.1.0 v6.1: 1 pass, 1 fail; last 2025-01-01 00:00:02; flaky: a",
        ]
    );
    // By file name from elsewhere, limited, and as JSON.
    let out = Command::new(env!("CARGO_BIN_EXE_ktest"))
        .current_dir("/")
        .args(["results", "--json", "-n", "2", "--history", "t.sh"])
        .arg("--db")
        .arg(&s.db)
        .output()
        .unwrap();
    check(&out, 0, &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let subtests: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["subtest"].as_str().unwrap())
        .collect();
    assert_eq!(subtests, ["a", "b"]);
    assert_eq!(v["kernels"][0]["kernel"]["release"], "6.2.0");
    assert_eq!(v["kernels"][1]["flaky"][0], "a");
}

#[test]
fn what_the_history_does_not_have_is_a_usage_error() {
    let s = Setup::new();
    s.results(&[]);
    s.record(1, "6.1.0", "pass", "pass");
    check(
        &s.results(&["--history", "t.sh:nope"]),
        2,
        &["has no subtest 'nope'", "its subtests: a, b"],
    );
    check(
        &s.results(&["--history", "other.sh"]),
        2,
        &["no results for other.sh"],
    );
    check(
        &s.results(&["--history", "t.sh", "-n", "0"]),
        2,
        &["invalid value '0' for '--limit"],
    );
    check(&s.results(&["-n", "3"]), 2, &["--history"]);
    assert!(Path::new(&s.db).exists());
}
