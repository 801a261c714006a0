//! End-to-end tests of working inside a running VM: `ktest boot`, `run -I`,
//! `ssh`, `gdb`, `kgdb`, `mon`, `sysrq`, `status` and `stop`, each against
//! the real test kernel under qemu, with the VM started in the background.

mod common;

use common::pty::Pty;
use common::*;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A kernel directory like the test kernel's, plus a stand-in for the
/// kernel's gdb scripts that announces itself when gdb loads it.
fn kernel_with_gdb_scripts(s: &Sandbox) -> PathBuf {
    let k = s.path().join("kernel");
    std::fs::create_dir(&k).unwrap();
    std::os::unix::fs::symlink(bzimage(), k.join("bzImage")).unwrap();
    for f in ["vmlinux", ".config"] {
        std::os::unix::fs::symlink(kernel_dir().join(f), k.join(f)).unwrap();
    }
    std::fs::write(
        k.join("vmlinux-gdb.py"),
        "import gdb\ngdb.write('ktest-e2e: kernel gdb scripts loaded\\n')\n",
    )
    .unwrap();
    k
}

fn ok_stdout(out: std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `ktest ARGS...` in the sandbox.
fn ktest(s: &Sandbox, args: &[&str]) -> std::process::Output {
    ktest_in(s, s.path(), args)
}

/// Runs `ktest ARGS...` from `dir`.
fn ktest_in(s: &Sandbox, dir: &Path, args: &[&str]) -> std::process::Output {
    s.ktest().current_dir(dir).args(args).output().unwrap()
}

/// The `Linux version ...` line of a console log, without its timestamp.
fn version_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("Linux version "))
        .expect("no Linux version line in the console log");
    line[line.find("Linux version ").unwrap()..]
        .trim()
        .to_string()
}

/// The SSH column of `ktest status` for the VM started from `dir`.
fn ssh_port(s: &Sandbox, dir: &Path) -> u32 {
    let dir = dir.to_string_lossy().into_owned();
    let lines = s.status_lines();
    let line = lines
        .iter()
        .find(|l| l.ends_with(&format!(" {dir}")))
        .unwrap_or_else(|| panic!("{dir} not in ktest status: {lines:?}"));
    // ID SLOT PID SSH ...
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[test]
fn a_booted_vm_answers_ssh_gdb_kgdb_mon_sysrq_status_and_stop() {
    let s = Sandbox::new();
    let kernel = kernel_with_gdb_scripts(&s);
    let vm = s.start_in(
        s.path(),
        &[
            OsStr::new("boot"),
            OsStr::new("--kernel"),
            kernel.as_os_str(),
        ],
    );
    let log = s.path().join(".ktest/log/boot.log");
    let known_hosts = Path::new(&std::env::var("HOME").unwrap()).join(".ssh/known_hosts");
    let known_before = std::fs::read(&known_hosts).ok();

    // ssh: the booted kernel, the remote status, and quoting kept.
    let version = ok_stdout(ktest(&s, &["ssh", "--", "cat", "/proc/version"]));
    assert_eq!(version.trim(), version_line(&log));
    let out = ktest(&s, &["ssh", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let release = ok_stdout(ktest(&s, &["ssh", "--", "uname", "-r"]));
    let release = release.trim();
    assert!(release.starts_with("6."), "{release}");
    // A single argument is a shell command line.
    let piped = ok_stdout(ktest(&s, &["ssh", "--", "echo a b | wc -w"]));
    assert_eq!(piped.trim(), "2");
    // ktest never touches the user's known_hosts.
    assert_eq!(std::fs::read(&known_hosts).ok(), known_before);

    // gdb through qemu's stub, with the kernel's scripts loaded.
    let out = ktest(
        &s,
        &["gdb", "-batch", "-ex", "print init_uts_ns.name.release"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains(&format!("\"{release}\"")), "{t}");
    assert!(t.contains("ktest-e2e: kernel gdb scripts loaded"), "{t}");

    // The monitor: one command, and a session fed from a pipe.
    let status = ok_stdout(ktest(&s, &["mon", "-c", "info status"]));
    assert_eq!(status.trim(), "VM status: running");
    let mut mon = s
        .ktest()
        .arg("mon")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    mon.stdin
        .take()
        .unwrap()
        .write_all(b"info name\r\ninfo status\r\n")
        .unwrap();
    let t = ok_stdout(mon.wait_with_output().unwrap());
    assert!(t.contains("VM status: running"), "{t}");

    // sysrq on the keyboard: the kernel's help appears on the console.
    let out = ktest(&s, &["sysrq", "h"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        wait_for(30, || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("sysrq: HELP")),
        "no sysrq help in {}",
        log.display()
    );
    let out = ktest(&s, &["sysrq", "hh"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // kgdb: sysrq-g stops the kernel, gdb reads it, detaching resumes it.
    let out = ktest(
        &s,
        &["kgdb", "-batch", "-ex", "print init_uts_ns.name.release"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains(&format!("\"{release}\"")), "{t}");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("KGDB: Entering KGDB"),
        "kgdb was not entered"
    );
    let after = ok_stdout(ktest(&s, &["ssh", "--", "echo", "resumed"]));
    assert_eq!(after.trim(), "resumed");

    // status lists it; stop ends it, its ktest exits 0, and nothing is left.
    assert_eq!(s.status_lines().len(), 1);
    let stopped = s.ktest().arg("stop").output().unwrap();
    assert_eq!(stopped.status.code(), Some(0), "{}", text(&stopped));
    assert!(
        s.status_lines().is_empty(),
        "stop returned before the slot was free"
    );
    let boot = vm.wait(30);
    assert_eq!(boot.status.code(), Some(0), "{}", text(&boot));
    s.assert_clean();
}

#[test]
fn two_vms_from_two_directories_have_their_own_ports() {
    let s = Sandbox::new();
    let test = s.script(
        "sleeper",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=256M; exit 0; }\nsleep 1000\n",
    );
    let dirs: Vec<PathBuf> = ["a", "b"].iter().map(|d| s.path().join(d)).collect();
    let mut vms = Vec::new();
    for d in &dirs {
        std::fs::create_dir_all(d.join("sub")).unwrap();
        vms.push(s.start_in(
            d,
            &[
                OsStr::new("run"),
                OsStr::new("--kernel"),
                bzimage().as_os_str(),
                test.as_os_str(),
            ],
        ));
    }
    assert_ne!(ssh_port(&s, &dirs[0]), ssh_port(&s, &dirs[1]));
    for d in &dirs {
        // The guest's /run/ktest is the VM's own directory (it names its
        // log); a subdirectory reaches the same VM.
        let want = format!("{}/.ktest/runs/", d.display());
        for from in [d.clone(), d.join("sub")] {
            let log = ok_stdout(ktest_in(
                &s,
                &from,
                &["ssh", "--", "cat", "/run/ktest/log.path"],
            ));
            assert!(log.starts_with(&want), "from {}: {log}", from.display());
        }
    }
    for (d, vm) in dirs.iter().zip(vms) {
        let out = ktest_in(&s, d, &["stop"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        // A test that was still running when stopped was interrupted.
        assert_eq!(vm.wait(30).status.code(), Some(130));
        assert_eq!(vm_dirs_left(d), Vec::<std::path::PathBuf>::new());
    }
    s.assert_clean();
}

#[test]
fn every_command_says_clearly_when_there_is_no_vm() {
    let s = Sandbox::new();
    let want = format!(
        "ktest: no VM is running from {} (start one with ktest run -I or ktest boot)",
        s.path().display()
    );
    for args in [
        &["ssh"][..],
        &["ssh", "--", "true"],
        &["gdb"],
        &["kgdb"],
        &["mon"],
        &["mon", "-c", "info status"],
        &["sysrq", "h"],
        &["stop"],
    ] {
        let out = s.ktest().args(args).output().unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {t}");
        assert_eq!(t.trim(), want, "{args:?}");
    }
}

#[test]
fn run_interactive_gives_a_console_shell_after_the_test() {
    let s = Sandbox::new();
    let test = s.script(
        "quick",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=256M; exit 0; }\necho quick test ran\n",
    );
    let mut pty = Pty::new();
    let before = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
    let vm = pty.spawn(
        s.ktest()
            .args(["run", "-I", "--kernel"])
            .arg(bzimage())
            .arg(&test),
    );
    pty.wait_for(120, "quick test ran");
    pty.wait_for(60, "the test ended; the VM stays up");
    // The VM outlived its test.
    assert_eq!(s.status_lines().len(), 1);
    pty.type_keys(b"echo ktest-$((6*7))\r");
    pty.wait_for(90, "ktest-42");
    // Ctrl-C goes to the guest's shell, not to ktest.
    pty.type_keys(b"sleep 300\r");
    std::thread::sleep(Duration::from_secs(1));
    pty.type_keys(b"\x03");
    pty.type_keys(b"echo after-$((1+1))\r");
    pty.wait_for(60, "after-2");
    // Ctrl-A X leaves; the verdict is the test's.
    pty.type_keys(b"\x01x");
    let out = vm.wait(30);
    assert_eq!(out.status.code(), Some(0), "{}", pty.shown());
    pty.wait_for(5, "quick: 1 passed");
    let after = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
    assert_eq!(
        (after.local_flags, after.input_flags, after.output_flags),
        (before.local_flags, before.input_flags, before.output_flags),
        "the terminal was not restored"
    );
    s.assert_clean();
}

#[test]
fn two_vms_from_one_directory_are_chosen_by_id() {
    let s = Sandbox::new();
    let sleeper = |name: &str| {
        s.script(
            name,
            "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=256M; exit 0; }\nsleep 1000\n",
        )
    };
    let (a, b) = (sleeper("sleeper-a"), sleeper("sleeper-b"));
    let run = |t: &Path| {
        [
            OsStr::new("run"),
            OsStr::new("--kernel"),
            bzimage().as_os_str(),
            t.as_os_str(),
        ]
        .map(OsStr::to_os_string)
    };
    let first = s.start_in(
        s.path(),
        &run(&a).iter().map(|o| o.as_os_str()).collect::<Vec<_>>(),
    );
    let second = Background {
        child: Some(
            s.ktest()
                .args(run(&b))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        ),
    };
    assert!(
        wait_for(120, || s.status_lines().len() == 2),
        "{:?}",
        s.status_lines()
    );
    let ids: Vec<String> = s
        .status_lines()
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["1", "2"]);
    // Without --vm: refused, with the list.
    let out = ktest(&s, &["mon", "-c", "info status"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("2 VMs run from") && t.contains("--vm ID"), "{t}");
    assert!(t.contains("sleeper-a") && t.contains("sleeper-b"), "{t}");
    let out = ktest(&s, &["ssh", "--vm", "3", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no VM 3 runs from"), "{}", text(&out));
    // --vm 2 reaches the second: its /run/ktest names its test.
    let env = ok_stdout(ktest(
        &s,
        &["ssh", "--vm", "2", "--", "cat", "/run/ktest/run.env"],
    ));
    assert!(
        env.contains("sleeper-b") && !env.contains("sleeper-a"),
        "{env}"
    );
    let env = ok_stdout(
        s.ktest()
            .env("KTEST_VM", "1")
            .args(["ssh", "--", "cat", "/run/ktest/run.env"])
            .output()
            .unwrap(),
    );
    assert!(env.contains("sleeper-a"), "{env}");
    // Stopping VM 1 leaves VM 2 running; then it is the only one.
    ok_stdout(ktest(&s, &["stop", "--vm", "1"]));
    assert_eq!(first.wait(30).status.code(), Some(130));
    let left = s.status_lines();
    assert!(left.len() == 1 && left[0].starts_with("2 "), "{left:?}");
    ok_stdout(ktest(&s, &["mon", "-c", "info status"]));
    ok_stdout(ktest(&s, &["stop"]));
    assert_eq!(second.wait(30).status.code(), Some(130));
    s.assert_clean();
}
