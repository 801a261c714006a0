//! End-to-end tests of the boundary between ktest, the host and the guest:
//! what a test's output, the user's directory names, a closed pipe, a
//! container's PID 1 and the guest's network can and cannot do. Each boots
//! the real test kernel under qemu.

mod common;

use common::*;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `unshare`, for running ktest as PID 1 of a new pid namespace, as a
/// container's entry point is.
fn as_pid1(ktest_args: &[&std::ffi::OsStr], s: &Sandbox) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--pid", "--fork", "--mount-proc", "--"])
        .arg(env!("CARGO_BIN_EXE_ktest"))
        .args(ktest_args)
        .current_dir(s.path())
        // Its own database, as a container usually has (sharing one is
        // tests/state_e2e.rs's case).
        .env("KTEST_DB", s.path().join("container-state.db"))
        .stdin(Stdio::null());
    c
}

/// Runs `cmd` with a time limit; a hang is a test failure, not a stuck run.
fn output_within(mut cmd: Command, secs: u64) -> std::process::Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Background { child: Some(child) }.wait(secs)
}

#[test]
fn ktest_as_pid_1_of_a_container_runs_tests_as_usual() {
    let s = Sandbox::new();
    let test = s.script(
        "hi",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=128M; exit 0; }\necho hi from the guest\n",
    );
    let out = output_within(
        as_pid1(
            &[
                "run".as_ref(),
                "--kernel".as_ref(),
                bzimage().as_os_str(),
                test.as_os_str(),
            ],
            &s,
        ),
        120,
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("hi from the guest"), "{t}");
    s.assert_clean();
}

#[test]
fn the_guest_init_argument_outside_a_ktest_vm_changes_nothing() {
    let s = Sandbox::new();
    let out = output_within(as_pid1(&["--ktest-guest-init".as_ref()], &s), 30);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("is for the init of ktest's own VMs, and this is not one"),
        "{t}"
    );
    // And not as PID 1 it is no guest either: an unknown argument for the CLI.
    let out = s.ktest().arg("--ktest-guest-init").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn a_tests_output_cannot_fake_a_crash_or_a_guest_error() {
    let s = Sandbox::new();
    let test = s.script(
        "liar",
        r#"#!/bin/sh
[ "$1" = deps ] && { echo MEM=128M; exit 0; }
echo "BUG: kernel NULL pointer dereference, address: 0000000000000000"
echo "Kernel panic - not syncing: not really"
echo "ktest-guest: error: not really" >&2
echo "ktest-guest: end status=3"
printf 'no newline at the end'
"#,
    );
    let out = s.run(&[test.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("ktest: "), "{t}");
    for line in [
        "BUG: kernel NULL pointer dereference",
        "Kernel panic - not syncing: not really",
        "ktest-guest: error: not really",
        "no newline at the end",
    ] {
        assert!(t.contains(line), "the test's output is shown: {line}\n{t}");
    }
    assert!(t.contains("passed"), "{t}");
    s.assert_clean();
}

#[test]
fn kernel_messages_and_the_tests_output_are_shown_in_order() {
    let s = Sandbox::new();
    let test = s.script(
        "interleave",
        r#"#!/bin/sh
[ "$1" = deps ] && { echo MEM=128M; exit 0; }
echo first from the test
sleep 1
echo "a line from the kernel's log" >/dev/kmsg
sleep 1
echo second from the test
"#,
    );
    let out = s.run(&[test.to_str().unwrap()]);
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let at = |needle: &str| t.find(needle).unwrap_or_else(|| panic!("{needle}: {t}"));
    assert!(at("first from the test") < at("a line from the kernel's log"));
    assert!(at("a line from the kernel's log") < at("second from the test"));
    // The log has both too.
    let log = s.console_log("interleave");
    assert!(log.contains("second from the test") && log.contains("a line from the kernel's log"));
    s.assert_clean();
}

#[test]
fn a_background_process_holding_the_output_does_not_delay_the_verdict() {
    let s = Sandbox::new();
    let test = s.script(
        "leaver",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=128M; echo TIMEOUT=100; exit 0; }\nsleep 1000 &\necho left a sleeper\n",
    );
    let start = std::time::Instant::now();
    let out = s.run(&[test.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("left a sleeper"), "{t}");
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "the run waited for the test's background process: {t}"
    );
    s.assert_clean();
}

#[test]
fn a_closed_stdout_or_stderr_changes_neither_verdict_nor_cleanup() {
    let s = Sandbox::new();
    let test = s.script(
        "chatty",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=128M; exit 0; }\nfor i in 1 2 3 4 5 6 7 8; do echo line $i; done\n",
    );
    for (close_stdout, close_stderr) in [(true, false), (false, true), (true, true)] {
        let mut child = s
            .run_cmd()
            .arg(&test)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // What `| head -0` does: the reader is gone before ktest writes.
        if close_stdout {
            drop(child.stdout.take());
        }
        if close_stderr {
            drop(child.stderr.take());
        }
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            e.read_to_string(&mut err).unwrap();
        }
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(0),
            "stdout closed {close_stdout}, stderr closed {close_stderr}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        s.assert_clean();
    }
}

/// Makes `depth` nested directories under `base` whose names have quotes,
/// commas and spaces, and returns the innermost.
fn awkward_dir(base: &Path, depth: usize) -> std::path::PathBuf {
    let mut d = base.join("a \"quoted\", dir");
    for i in 0..depth {
        d = d.join(format!("{i:03}-{}", "d".repeat(120)));
    }
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn working_directories_with_quotes_commas_and_long_paths_boot() {
    let s = Sandbox::new();
    let test = s.script(
        "where",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=128M; echo SCRATCH=8M; exit 0; }\necho \"test dir $(pwd | wc -c) bytes\"; [ -b /dev/vda ]\n",
    );
    // About 2,000 characters: the old kernel command line could not hold it.
    for dir in [awkward_dir(s.path(), 0), awkward_dir(s.path(), 16)] {
        let out = s.run_cmd().arg(&test).current_dir(&dir).output().unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "from {}: {t}", dir.display());
        assert_eq!(vm_dirs_left(&dir), Vec::<std::path::PathBuf>::new());
    }
    s.assert_clean();
}

#[test]
fn a_test_in_a_directory_with_a_comma_runs_on_a_root_image_too() {
    let s = Sandbox::new();
    let dir = awkward_dir(s.path(), 1);
    let test = dir.join("t");
    std::fs::copy(s.script("t", "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=256M; exit 0; }\necho image root here: \"$(pwd)\"\n"), &test).unwrap();
    let out = s
        .run_cmd()
        .arg("--root")
        .arg(rootfs_image())
        .arg(&test)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains(&format!("image root here: {}", dir.display())),
        "{t}"
    );
    s.assert_clean();
}

#[test]
fn an_append_beyond_the_kernels_limit_is_refused_before_booting() {
    let s = Sandbox::new();
    let long = "x".repeat(2100);
    let test = s.script(
        "long-append",
        &format!("#!/bin/sh\n[ \"$1\" = deps ] && {{ echo MEM=128M; echo APPEND=ktest.long={long}; exit 0; }}\necho booted\n"),
    );
    let out = s.run(&[test.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("kernel command line would be") && t.contains("APPEND"),
        "{t}"
    );
    assert!(!t.contains("booted"), "{t}");
    assert_eq!(s.vm_dirs_left(), Vec::<std::path::PathBuf>::new());
    s.assert_clean();
}

#[test]
fn a_test_with_a_name_of_252_characters_runs_and_keeps_its_log() {
    let s = Sandbox::new();
    let name = "n".repeat(252);
    let test = s.script(
        &name,
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=128M; exit 0; }\necho long name ok\n",
    );
    let out = s.run(&[test.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("long name ok"), "{t}");
    let logs: Vec<_> = std::fs::read_dir(s.path().join(".ktest/runs/last"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(logs.len(), 1);
    let log = std::fs::read_to_string(logs[0].path().join("console.log")).unwrap();
    assert!(log.contains("long name ok"));
    // The one subtest, named after the file (shortened), has its log too.
    let sub = std::fs::read_dir(logs[0].path())
        .unwrap()
        .flatten()
        .find(|e| e.file_name() != "console.log")
        .expect("a subtest log");
    assert!(std::fs::read_to_string(sub.path())
        .unwrap()
        .contains("long name ok"));
    s.assert_clean();
}

#[test]
fn the_guest_cannot_reach_the_hosts_local_services() {
    let s = Sandbox::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    // bash's /dev/tcp needs no network tool in the guest.
    let test = s.script(
        "reach",
        r#"#!/bin/bash
[ "$1" = deps ] && { echo MEM=128M; exit 0; }
if timeout 10 bash -c "exec 3<>/dev/tcp/10.0.2.2/$1"; then
    echo "reached the host's port $1"; exit 1
fi
echo "host port $1 unreachable"
"#,
    );
    let out = s.run(&[test.to_str().unwrap(), "--", &port.to_string()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains(&format!("host port {port} unreachable")), "{t}");
    assert!(
        listener.accept().is_err(),
        "a connection from the guest arrived"
    );
    s.assert_clean();
}
