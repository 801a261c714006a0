//! ktest's shell library (lib/ktest.sh) on the host, under dash and bash:
//! what it answers to deps, list-tests and run-tests, and what its helpers
//! write to the info file ktest reads. No VM: these are the parts that do
//! not need one (tests/suite_e2e.rs runs the same file in a VM).

mod common;

use common::repo;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn shells() -> Vec<&'static str> {
    let mut v = vec!["sh"];
    if Path::new("/bin/bash").exists() {
        v.push("bash");
    }
    v
}

fn run(shell: &str, args: &[&str], info: Option<&Path>, config: Option<&Path>) -> Output {
    let mut c = Command::new(shell);
    c.arg(repo().join("tests/fixtures/library"))
        .args(args)
        .env("KTEST_LIB", repo().join("lib/ktest.sh"))
        .env_remove("KTEST_SUBTEST_INFO")
        .env_remove("KTEST_KERNEL_CONFIG");
    if let Some(i) = info {
        c.env("KTEST_SUBTEST_INFO", i);
    }
    if let Some(k) = config {
        c.env("KTEST_KERNEL_CONFIG", k);
    }
    c.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn deps_and_list_tests() {
    for sh in shells() {
        let d = run(sh, &["deps"], None, None);
        assert_eq!(d.status.code(), Some(0), "{sh}");
        assert_eq!(stdout(&d), "MEM=128M\nTIMEOUT=30\nSUBTESTS=serve\n", "{sh}");
        let l = run(sh, &["list-tests"], None, None);
        assert_eq!(
            stdout(&l).lines().collect::<Vec<_>>(),
            [
                "pass",
                "fail",
                "skip",
                "expectations",
                "wrong_expectation",
                "config",
                "config_fail",
                "slow"
            ],
            "{sh}"
        );
        let bad = run(sh, &["frobnicate"], None, None);
        assert_eq!(bad.status.code(), Some(2), "{sh}");
    }
}

#[test]
fn subtests_exit_statuses_and_info_lines() {
    let t = tempfile::tempdir().unwrap();
    let info = t.path().join("info");
    let config = t.path().join("config");
    std::fs::write(
        &config,
        "CONFIG_FOO=y\n# CONFIG_KTEST_NO_SUCH_OPTION is not set\n",
    )
    .unwrap();
    for sh in shells() {
        for (name, code, wrote) in [
            ("pass", 0, ""),
            ("fail", 1, ""),
            ("skip", 4, "skip needs a disk it does not have\n"),
            ("expectations", 0, ""),
            ("wrong_expectation", 1, ""),
            ("config", 4, "skip needs CONFIG_KTEST_NO_SUCH_OPTION\n"),
            ("config_fail", 1, ""),
            ("no_such_subtest", 2, ""),
        ] {
            std::fs::write(&info, "").unwrap();
            let o = run(sh, &["run-tests", name], Some(&info), Some(&config));
            let out = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
            assert_eq!(o.status.code(), Some(code), "{sh} {name}: {out}");
            assert_eq!(
                std::fs::read_to_string(&info).unwrap(),
                wrote,
                "{sh} {name}"
            );
            assert!(!out.contains("not reached"), "{sh} {name}: {out}");
        }
    }
}

#[test]
fn a_subtest_past_its_own_time_limit_is_killed_and_says_so() {
    let t = tempfile::tempdir().unwrap();
    let info = t.path().join("info");
    for sh in shells() {
        std::fs::write(&info, "").unwrap();
        let start = Instant::now();
        let o = run(sh, &["run-tests", "slow"], Some(&info), None);
        assert_ne!(o.status.code(), Some(0), "{sh}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{sh}: {:?}",
            start.elapsed()
        );
        assert_eq!(
            std::fs::read_to_string(&info).unwrap(),
            "timeout 1\n",
            "{sh}"
        );
    }
}

/// What ktest's guest init does with SUBTESTS=serve: names on stdin, one
/// exit status per name back on fd 5, the subtests' output elsewhere.
#[test]
fn one_process_serves_every_subtest() {
    let t = tempfile::tempdir().unwrap();
    let info = t.path().join("info");
    for sh in shells() {
        std::fs::write(&info, "").unwrap();
        let o = Command::new(sh)
            .arg("-c")
            .arg("printf 'pass\\nskip\\nfail\\nnope\\nslow\\npass\\n' | $0 $1 run-tests-serve 5>&1 >/dev/null 2>&1")
            .arg(sh)
            .arg(repo().join("tests/fixtures/library"))
            .env("KTEST_LIB", repo().join("lib/ktest.sh"))
            .env("KTEST_SUBTEST_INFO", &info)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{sh}");
        // slow: killed by its own time limit (SIGKILL); the server lives on.
        assert_eq!(stdout(&o), "0\n4\n1\n2\n137\n0\n", "{sh}");
        assert!(
            std::fs::read_to_string(&info)
                .unwrap()
                .contains("timeout 1"),
            "{sh}"
        );
    }
}

#[test]
fn without_ktest_the_helpers_write_nothing_and_still_work() {
    for sh in shells() {
        let o = run(sh, &["run-tests", "skip"], None, None);
        assert_eq!(o.status.code(), Some(4), "{sh}");
        assert!(stdout(&o).contains("skipped: needs a disk"), "{sh}");
        // Several names run in order; the first that does not pass decides.
        let o = run(sh, &["run-tests", "pass", "skip", "fail"], None, None);
        assert_eq!(o.status.code(), Some(4), "{sh}");
    }
}

/// What a subtest of tests/fixtures/library-corners did, run as ktest's
/// guest would run it.
struct Ran {
    code: Option<i32>,
    stdout: String,
    /// Its stdout and stderr, for messages.
    text: String,
    /// What it wrote to its info file.
    info: String,
    took: Duration,
    /// The live processes it left in its process group.
    left: Vec<String>,
}

/// Runs `SHELL tests/fixtures/library-corners run-tests NAME` in its own
/// process group, with an info file and TMPDIR in `dir`.
fn corner(shell: &str, name: &str, dir: &Path) -> Ran {
    let mut c = Command::new(shell);
    c.arg(repo().join("tests/fixtures/library-corners"))
        .args(["run-tests", name]);
    in_group(c, dir)
}

/// Runs `cmd` as ktest's guest would run the corners (see `corner`), and
/// collects what it did and what it left behind.
fn in_group(mut cmd: Command, dir: &Path) -> Ran {
    use std::os::unix::process::CommandExt;
    let info = dir.join("info");
    std::fs::write(&info, "").unwrap();
    let start = Instant::now();
    let child = cmd
        .env("KTEST_LIB", repo().join("lib/ktest.sh"))
        .env("KTEST_SUBTEST_INFO", &info)
        .env("TMPDIR", dir)
        .env_remove("KTEST_KERNEL_CONFIG")
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let group = child.id();
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    // A killed process takes a moment to die; a live one stays.
    let mut left = live_in_group(group);
    for _ in 0..20 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = live_in_group(group);
    }
    Ran {
        code: out.status.code(),
        stdout: stdout(&out),
        text: format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr)),
        info: std::fs::read_to_string(&info).unwrap(),
        took,
        left,
    }
}

/// The processes of process group `pgid` that are not zombies, as their
/// /proc/PID/stat lines.
fn live_in_group(pgid: u32) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // PID (COMM) STATE PPID PGRP ...: COMM may hold anything.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(2) == Some(&pgid.to_string().as_str()) && f[0] != "Z" && f[0] != "X" {
            v.push(stat.trim().to_string());
        }
    }
    v
}

#[test]
fn ktest_timeout_can_be_rearmed_and_disarmed_and_leaves_nothing_behind() {
    let t = tempfile::tempdir().unwrap();
    for sh in shells() {
        for name in ["rearm", "disarm"] {
            let r = corner(sh, name, t.path());
            assert_eq!(r.code, Some(0), "{sh} {name}: {}", r.text);
            assert!(r.stdout.contains("outlived"), "{sh} {name}: {}", r.text);
            assert_eq!(r.info, "", "{sh} {name}");
            assert!(r.took < Duration::from_secs(8), "{sh} {name}: {:?}", r.took);
            assert!(r.left.is_empty(), "{sh} {name} left {:?}", r.left);
        }
        // A subtest that ends long before its limit ends at once, and its
        // watchdog (and the watchdog's sleep) with it.
        let r = corner(sh, "quick", t.path());
        assert_eq!(r.code, Some(0), "{sh}: {}", r.text);
        assert!(r.took < Duration::from_secs(5), "{sh}: {:?}", r.took);
        assert!(r.left.is_empty(), "{sh} quick left {:?}", r.left);
    }
}

#[test]
fn ktest_timeout_kills_the_subtest_with_what_it_started_and_says_so() {
    let t = tempfile::tempdir().unwrap();
    for sh in shells() {
        for name in ["tree", "ignores_term"] {
            let r = corner(sh, name, t.path());
            assert_ne!(r.code, Some(0), "{sh} {name}: {}", r.text);
            assert!(!r.text.contains("not reached"), "{sh} {name}: {}", r.text);
            assert!(
                r.text.contains("still running after 1 s"),
                "{sh} {name}: the expiry is shown: {}",
                r.text
            );
            assert_eq!(r.info, "timeout 1\n", "{sh} {name}");
            assert!(
                r.took < Duration::from_secs(10),
                "{sh} {name}: {:?}",
                r.took
            );
            assert!(r.left.is_empty(), "{sh} {name} left {:?}", r.left);
        }
        // The child died before the subtest was seen to end.
        let r = corner(sh, "child_gone", t.path());
        assert_eq!(r.code, Some(0), "{sh}: {}", r.text);
    }
}

#[test]
fn expect_helpers_run_a_function_alike_in_every_shell() {
    let t = tempfile::tempdir().unwrap();
    for sh in shells() {
        let r = corner(sh, "expect_function", t.path());
        assert_eq!(r.code, Some(0), "{sh}: {}", r.text);
    }
}

/// Under run-tests-serve (what ktest's guest runs), one server process:
/// each subtest's watchdog is stopped at its end or kills it, and the
/// server goes on with the next.
#[test]
fn ktest_timeout_under_one_server() {
    let t = tempfile::tempdir().unwrap();
    for sh in shells() {
        let mut c = Command::new(sh);
        c.arg("-c")
            .arg("printf 'quick\\ntree\\nchild_gone\\nrearm\\nignores_term\\nquick\\n' | $0 $1 run-tests-serve 5>&1 >&2")
            .arg(sh)
            .arg(repo().join("tests/fixtures/library-corners"));
        let r = in_group(c, t.path());
        assert_eq!(r.code, Some(0), "{sh}: {}", r.text);
        assert_eq!(r.stdout, "0\n137\n0\n0\n137\n0\n", "{sh}: {}", r.text);
        assert_eq!(r.info, "timeout 1\ntimeout 1\n", "{sh}");
        assert!(r.took < Duration::from_secs(12), "{sh}: {:?}", r.took);
        assert!(r.left.is_empty(), "{sh} left {:?}", r.left);
    }
}
