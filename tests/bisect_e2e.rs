//! `ktest bisect` for real: a git repository made from Debian's
//! linux-source-6.1 with a commit that does not build and one that breaks
//! /proc/version (tests/bisect-repo.sh), bisected with real builds and real
//! VMs; and the refusals that come before anything is created.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// Passes while /proc/version says what it should.
const VERSION_TEST: &str = "#!/bin/sh
if [ \"$1\" = deps ]; then
	echo MEM=256M
	echo TIMEOUT=60
	exit 0
fi
echo \"version: $(cat /proc/version)\"
grep -q '^Linux version' /proc/version
";

fn git(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// The commit of `repo` whose subject is `subject`.
fn commit_named(repo: &Path, subject: &str) -> String {
    let (ok, id) = git(
        repo,
        &["log", "--format=%H", "--fixed-strings", "--grep", subject],
    );
    assert!(
        ok && id.len() == 40,
        "no commit '{subject}' in {}",
        repo.display()
    );
    id
}

#[test]
fn bisect_names_the_regression_skips_what_does_not_build_and_resumes_after_ctrl_c() {
    let s = Sandbox::new();
    let repo = bisect_repo();
    let test = s.script("version.ktest", VERSION_TEST);
    let regression = commit_named(repo, "proc: /proc/version says Lunix");
    let broken = commit_named(repo, "proc: uptime.c does not compile");
    let head = git(repo, &["rev-parse", "HEAD"]).1;
    let status = git(repo, &["status", "--porcelain", "--ignored=no"]).1;
    let bisect = || {
        let mut c = s.ktest();
        c.current_dir(repo)
            .args(["bisect", "--good", "base", "--bad", "master"])
            .arg(&test);
        c
    };

    // Interrupted as its second step starts: exit 130, resumable.
    let mut child = bisect()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        first.push_str(&line);
        first.push('\n');
        if line.contains("ktest: bisect: step 2:") {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            )
            .unwrap();
        }
    }
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130), "{first}");
    assert!(
        first.contains("run the same ktest bisect again to resume"),
        "{first}"
    );
    // The first step was the commit that does not build.
    assert!(
        first.contains(&format!("{} does not build: skipped", &broken[..12])),
        "{first}"
    );
    assert!(
        first.contains("ktest bisect test: this commit does not build"),
        "{first}"
    );

    // Another bisection of the tree is refused while this one is unfinished.
    let other = s
        .ktest()
        .current_dir(repo)
        .args(["bisect", "--good", "base", "--bad", "master~1"])
        .arg(&test)
        .output()
        .unwrap();
    check(&other, 2, &["is not finished", "ktest bisect --reset"]);

    // The same command resumes, and names the regression.
    let out = bisect().output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("resuming the bisection") && t.contains("(1 step done)"),
        "{t}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        format!("{regression} proc: /proc/version says Lunix"),
        "{t}"
    );
    assert!(t.contains("the first bad commit is"), "{t}");
    // Its failing log is shown: the test's output at that commit.
    assert!(
        t.contains("its log") && t.contains("| version: Lunix version"),
        "{t}"
    );

    // Every step is in the database, none twice, with git's verdicts.
    let db = rusqlite::Connection::open(s.db()).unwrap();
    let steps: Vec<(String, String)> = db
        .prepare("SELECT commit_id, verdict FROM bisect_steps ORDER BY position")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(steps[0], (broken.clone(), "skip".to_string()), "{steps:?}");
    assert!(
        steps.contains(&(regression.clone(), "bad".to_string())),
        "{steps:?}"
    );
    let mut ids: Vec<&String> = steps.iter().map(|(c, _)| c).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        steps.len(),
        "a commit was tested twice: {steps:?}"
    );
    let (result, first_bad): (String, String) = db
        .query_row("SELECT result, first_bad FROM bisects", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(
        (result.as_str(), first_bad.as_str()),
        ("found", regression.as_str())
    );

    // The user's checkout is as it was, and not bisecting.
    assert_eq!(git(repo, &["rev-parse", "HEAD"]).1, head);
    assert_eq!(
        git(repo, &["status", "--porcelain", "--ignored=no"]).1,
        status
    );
    assert!(
        !git(repo, &["bisect", "log"]).0,
        "the user's checkout is bisecting"
    );
    s.assert_clean();
}

/// A small git repository: two commits, no kernel.
fn tiny_repo(s: &Sandbox) -> std::path::PathBuf {
    let r = s.path().join("repo");
    std::fs::create_dir(&r).unwrap();
    let g = |args: &[&str]| {
        let ok = Command::new("git")
            .arg("-C")
            .arg(&r)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "git {args:?}");
    };
    g(&["init", "-q"]);
    for i in 0..2 {
        std::fs::write(r.join("f"), format!("{i}\n")).unwrap();
        g(&["add", "f"]);
        g(&["commit", "-q", "-m", &format!("c{i}")]);
    }
    r
}

#[test]
fn bisect_refuses_bad_requests_before_creating_anything() {
    let s = Sandbox::new();
    let repo = tiny_repo(&s);
    let test = s.script("t.ktest", VERSION_TEST);
    let bad_deps = s.script(
        "bad.ktest",
        "#!/bin/sh\n[ \"$1\" = deps ] && echo MEM=lots\nexit 0\n",
    );
    let run = |dir: &Path, args: &[&str]| {
        s.ktest()
            .current_dir(dir)
            .arg("bisect")
            .args(args)
            .output()
            .unwrap()
    };
    let t = test.to_str().unwrap();
    check(
        &run(s.path(), &["--good", "HEAD~1", "--bad", "HEAD", t]),
        2,
        &["not in a git repository"],
    );
    check(
        &run(&repo, &["--good", "nope", "--bad", "HEAD", t]),
        2,
        &["--good nope: no such commit"],
    );
    check(
        &run(&repo, &["--good", "HEAD", "--bad", "HEAD~1", t]),
        2,
        &["is not an ancestor of --bad"],
    );
    check(
        &run(
            &repo,
            &[
                "--good",
                "HEAD~1",
                "--bad",
                "HEAD",
                bad_deps.to_str().unwrap(),
            ],
        ),
        2,
        &["MEM"],
    );
    check(
        &run(
            &repo,
            &["--good", "HEAD~1", "--bad", "HEAD", "--repeat", "0", t],
        ),
        2,
        &["repeat"],
    );
    check(&run(&repo, &["--good", "HEAD~1", t]), 2, &["--bad"]);
    let reset = run(&repo, &["--reset"]);
    check(&reset, 0, &["no unfinished bisection"]);
    assert!(!repo.join(".ktest").exists(), "something was created");
    s.assert_clean();
}
