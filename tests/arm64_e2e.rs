//! End-to-end tests of arm64 guests on this (x86_64) host: the arm64 test
//! kernel, cross-built by `ktest build --arch arm64`, boots an arm64 Debian
//! root image under qemu-system-aarch64 with TCG, and everything ktest
//! does for an x86_64 guest works the same: verdicts, scratch disks, crash
//! and timeout reports, ssh, sysrq, gdb. Mismatches are refused before
//! anything starts.

mod common;

use common::*;
use std::ffi::OsStr;
use std::path::Path;

fn arm64_kernel() -> &'static Path {
    arm64_kernel_dir()
}

/// `ktest run --kernel <arm64 kernel> --root <arm64 image> ARGS...`
fn run_arm64(s: &Sandbox, args: &[&OsStr]) -> std::process::Output {
    s.ktest()
        .arg("run")
        .arg("--kernel")
        .arg(arm64_kernel())
        .arg("--root")
        .arg(arm64_rootfs_image())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_test_runs_on_an_arm64_guest_with_a_scratch_disk() {
    let s = Sandbox::new();
    let test = s.script(
        "on-arm64",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=256M; echo SCRATCH=32M; echo REQUIRE=busybox; exit 0; }\n\
         set -e\necho \"machine: $(uname -m)\"\n. /etc/os-release\necho \"os: $ID\"\n\
         echo \"scratch vdb: $(cat /sys/block/vdb/size) sectors\"\n\
         mkfs.ext4 -q /dev/vdb && mount /dev/vdb /mnt && echo written >/mnt/f && cat /mnt/f\n",
    );
    let out = run_arm64(&s, &[test.as_os_str()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("machine: aarch64"), "{t}");
    assert!(t.contains("os: debian"), "{t}");
    assert!(t.contains("scratch vdb: 65536 sectors"), "{t}");
    assert!(t.contains("\nwritten"), "{t}");
    // The host's busybox is copied in, and ktest says it is x86_64's.
    assert!(
        t.contains("REQUIRE=busybox") && t.contains("is an x86_64 program and the guest is arm64"),
        "{t}"
    );
    let log = s.console_log("on-arm64");
    assert!(log.contains("console=ttyAMA0"), "{log}");
    s.assert_clean();
}

#[test]
fn a_failing_test_fails() {
    let s = Sandbox::new();
    let test = s.script(
        "fails",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=256M; exit 0; }\necho about to fail\nexit 3\n",
    );
    let out = run_arm64(&s, &[test.as_os_str()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("about to fail") && t.contains("exit status 3"),
        "{t}"
    );
    s.assert_clean();
}

#[test]
fn a_kernel_panic_is_a_crash_with_its_trace() {
    let s = Sandbox::new();
    let test = s.script(
        "panics",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=256M; exit 0; }\necho c >/proc/sysrq-trigger\nsleep 60\n",
    );
    let out = run_arm64(
        &s,
        &[OsStr::new("--timeout"), OsStr::new("300"), test.as_os_str()],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("kernel crashed"), "{t}");
    assert!(
        t.contains("Kernel panic - not syncing: sysrq triggered crash"),
        "{t}"
    );
    // arm64 spells its backtrace header so.
    assert!(t.contains("Call trace:"), "{t}");
    s.assert_clean();
}

#[test]
fn a_hanging_test_times_out_with_task_stacks_from_a_break_on_the_pl011() {
    let s = Sandbox::new();
    let test = s.script(
        "hangs",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=256M; echo TIMEOUT=10; exit 0; }\necho hanging\nsleep 1000\n",
    );
    let out = run_arm64(&s, &[test.as_os_str()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(t.contains("timed out after 10 s"), "{t}");
    let log = s.console_log("hangs");
    assert!(
        log.contains("sysrq: Show State"),
        "no sysrq-t output in the log:\n{log}"
    );
    s.assert_clean();
}

#[test]
fn a_booted_arm64_vm_answers_ssh_sysrq_and_gdb_multiarch() {
    let s = Sandbox::new();
    let vm = s.start_in(
        s.path(),
        &[
            OsStr::new("boot"),
            OsStr::new("--kernel"),
            arm64_kernel().as_os_str(),
            OsStr::new("--root"),
            arm64_rootfs_image().as_os_str(),
        ],
    );
    let log = s.path().join(".ktest/log/boot.log");
    let ktest = |args: &[&str]| s.ktest().args(args).output().unwrap();

    let out = ktest(&["ssh", "--", "uname", "-m"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "aarch64");
    let out = ktest(&["ssh", "--", "uname", "-r"]);
    let release = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(release.starts_with("6."), "{}", text(&out));

    // sysrq on the virtio keyboard ktest adds to virt.
    let out = ktest(&["sysrq", "h"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        wait_for(30, || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("sysrq: HELP")),
        "no sysrq help in {}",
        log.display()
    );

    // gdb-multiarch reads the arm64 vmlinux through qemu's stub.
    let out = ktest(&["gdb", "-batch", "-ex", "print init_uts_ns.name.release"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains(&format!("\"{release}\"")), "{t}");
    let out = ktest(&["ssh", "--", "echo", "resumed"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "resumed");

    // virt has one serial port, the console: no kgdb, said so.
    let out = ktest(&["kgdb", "-batch"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("lacks") && t.contains("use ktest gdb"), "{t}");

    let out = ktest(&["stop"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let boot = vm.wait(60);
    assert_eq!(boot.status.code(), Some(0), "{}", text(&boot));
    s.assert_clean();
}

/// `ktest run -I`: the shell after the test is on arm64's console
/// (ttyAMA0), with job control: Ctrl-C reaches the guest's shell.
#[test]
fn run_interactive_gives_a_shell_on_the_pl011_console() {
    let s = Sandbox::new();
    let test = s.script(
        "quick",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=256M; exit 0; }\necho quick test ran\n",
    );
    let mut pty = common::pty::Pty::new();
    let vm = pty.spawn(
        s.ktest()
            .args(["run", "-I", "--kernel"])
            .arg(arm64_kernel())
            .arg("--root")
            .arg(arm64_rootfs_image())
            .arg(&test),
    );
    pty.wait_for(120, "the test ended; the VM stays up");
    pty.type_keys(b"echo on-$(basename $(tty))-$((6*7))\r");
    pty.wait_for(90, "on-ttyAMA0-42");
    pty.type_keys(b"sleep 300\r");
    std::thread::sleep(std::time::Duration::from_secs(1));
    pty.type_keys(b"\x03");
    pty.type_keys(b"echo after-$((1+1))\r");
    pty.wait_for(60, "after-2");
    pty.type_keys(b"\x01x");
    let out = vm.wait(30);
    assert_eq!(out.status.code(), Some(0), "{}", pty.shown());
    s.assert_clean();
}

/// What cannot work is refused before any VM starts, with nothing left.
#[test]
fn mismatches_are_refused_before_booting() {
    let s = Sandbox::new();
    let test = s.script(
        "t",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=256M; exit 0; }\ntrue\n",
    );
    let run = |args: &[&OsStr]| s.ktest().arg("run").args(args).arg(&test).output().unwrap();
    let k = arm64_kernel().as_os_str();
    // The host's x86_64 root cannot be an arm64 guest's.
    let out = run(&[
        OsStr::new("--kernel"),
        k,
        OsStr::new("--root"),
        OsStr::new("host"),
    ]);
    check(&out, 2, &["arm64", "root image"]);
    // An arm64 kernel is not an x86_64 guest.
    let out = run(&[
        OsStr::new("--arch"),
        OsStr::new("x86_64"),
        OsStr::new("--kernel"),
        k,
    ]);
    check(&out, 2, &["arm64", "x86_64"]);
    // KVM cannot run another architecture's guest.
    let out = run(&[
        OsStr::new("--accel"),
        OsStr::new("kvm"),
        OsStr::new("--kernel"),
        k,
        OsStr::new("--root"),
        arm64_rootfs_image().as_os_str(),
    ]);
    check(&out, 2, &["KVM", "arm64"]);
    s.assert_clean();
}

/// The kernel tree the arm64 test kernel was built from
/// (`TREE/.ktest/build/KEY`).
fn arm64_tree() -> &'static Path {
    arm64_kernel()
        .ancestors()
        .nth(3)
        .expect("the arm64 test kernel is a ktest build in a kernel tree")
}

#[test]
fn a_kernel_tree_is_cross_built_for_arch_from_the_flag_or_ktest_toml() {
    let s = Sandbox::new();
    let test = s.script(
        "which-machine",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=256M; exit 0; }\necho \"machine: $(uname -m)\"\n",
    );
    let run = |extra: &[&str]| {
        let out = s
            .ktest()
            .arg("run")
            .args(extra)
            .arg("--kernel-src")
            .arg(arm64_tree())
            .arg("--root")
            .arg(arm64_rootfs_image())
            .arg(&test)
            .output()
            .unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{t}");
        // The cached arm64 build: its key is the same, so nothing rebuilds.
        assert!(!t.contains("ktest: built"), "{t}");
        t
    };
    assert!(run(&["--arch", "arm64"]).contains("machine: aarch64"));
    std::fs::write(s.path().join(".ktest.toml"), "arch = \"arm64\"\n").unwrap();
    assert!(run(&[]).contains("machine: aarch64"));
    s.assert_clean();
}
