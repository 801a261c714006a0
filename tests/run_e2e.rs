//! End-to-end tests of `ktest run`: each boots the real test kernel under
//! qemu (TCG on machines where KVM does not work) and checks the verdict,
//! the exit code, and that nothing is left behind.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn fixture(name: &str) -> String {
    repo()
        .join("tests")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn hello_passes() {
    let s = Sandbox::new();
    let out = s.run(&[&fixture("hello")]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("hello from 6.1"), "{t}");
    assert!(t.contains("passed"), "{t}");
    // The boot log is not shown without -v, but it is in the log file.
    assert!(!t.contains("Linux version"), "{t}");
    let log = s.console_log("hello");
    assert!(log.contains("Linux version"));
    s.assert_clean();
}

#[test]
fn failing_test_exits_1_with_its_status() {
    let s = Sandbox::new();
    let out = s.run(&[&fixture("fixtures/fail")]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("about to fail"), "{t}");
    assert!(t.contains("exit status 3"), "{t}");
    s.assert_clean();
}

#[test]
fn kernel_panic_is_reported_fast() {
    let s = Sandbox::new();
    let start = Instant::now();
    // A long limit: the crash must be noticed long before it.
    let out = s.run(&["--timeout", "300", &fixture("fixtures/panic")]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("kernel crashed"), "{t}");
    assert!(
        t.contains("Kernel panic - not syncing: sysrq triggered crash"),
        "{t}"
    );
    assert!(
        t.contains("Call Trace"),
        "the report shows the lines around the panic: {t}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(120),
        "took {:?}",
        start.elapsed()
    );
    s.assert_clean();
}

#[test]
fn hanging_test_times_out_with_task_stacks() {
    let s = Sandbox::new();
    let out = s.run(&[&fixture("fixtures/hang")]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(t.contains("timed out after 8 s"), "{t}");
    let log = s.console_log("hang");
    assert!(
        log.contains("sysrq: Show State"),
        "no sysrq-t output in the log:\n{log}"
    );
    s.assert_clean();
}

#[test]
fn sentinels_are_honoured() {
    let s = Sandbox::new();
    let out = s.run(&[&fixture("fixtures/success-then-hang")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    s.assert_clean();
    let out = s.run(&[&fixture("fixtures/say-failed")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    s.assert_clean();
}

#[test]
fn scratch_disks_exist_during_the_run_and_are_removed_after() {
    let s = Sandbox::new();
    // The guest sees the host's root, so it can check the host-side files.
    let test = s.script(
        "scratch-files",
        r#"#!/bin/sh
[ "$1" = deps ] && { echo MEM=128M; echo SCRATCH=16M,32M; exit 0; }
for f in scratch-0.img scratch-1.img; do
    [ -f "$KTEST_DIR/$f" ] && echo "host has $f"
done
"#,
    );
    let out = s.run(&[test.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("host has scratch-0.img") && t.contains("host has scratch-1.img"),
        "{t}"
    );
    s.assert_clean();

    // And the example test checks sizes, order and zero fill in the guest.
    let out = s.run(&[&fixture("scratch")]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("vda 67108864 bytes, vdb 134217728 bytes, data verified"),
        "{t}"
    );
    s.assert_clean();
}

#[test]
fn required_files_sit_beside_the_test_and_arguments_pass_through() {
    let s = Sandbox::new();
    // A program only the host's PATH has.
    let bin = s.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    s.script("bin/ktest-e2e-tool", "#!/bin/sh\necho tool\n");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = s
        .run_cmd()
        .env("PATH", path)
        .args([&fixture("fixtures/require"), "--", "one", "two words"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("helper loaded"), "{t}");
    assert!(t.contains("args: one two words"), "{t}");
    s.assert_clean();
}

#[test]
fn concurrent_runs_get_distinct_slots() {
    let s = Sandbox::new();
    let test = s.script(
        "wait-a-bit",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=96M; exit 0; }\nsleep 45\n",
    );
    let dirs: Vec<_> = (0..16).map(|i| s.path().join(format!("d{i}"))).collect();
    let children: Vec<_> = dirs
        .iter()
        .map(|d| {
            std::fs::create_dir_all(d).unwrap();
            Command::new(env!("CARGO_BIN_EXE_ktest"))
                .current_dir(d)
                .env("KTEST_DB", s.db())
                .args(["run", "--cpus", "1", "--kernel"])
                .arg(bzimage())
                .arg(&test)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut listing = Vec::new();
    let all_up = wait_for(90, || {
        listing = s.status_lines();
        listing.len() == 16
    });
    assert!(all_up, "status never listed 16 VMs:\n{listing:#?}");
    let mut slots: Vec<u32> = listing
        .iter()
        // ID, then SLOT.
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), 16, "{listing:#?}");
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    for d in &dirs {
        assert_eq!(vm_dirs_left(d), Vec::<std::path::PathBuf>::new());
    }
    s.assert_clean();
}

fn start_hanging(s: &Sandbox) -> std::process::Child {
    let test = s.script(
        "sleeper",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=128M; echo SCRATCH=8M; exit 0; }\necho sleeping\nsleep 1000\n",
    );
    let child = s
        .run_cmd()
        .arg(&test)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = s.run_dir("sleeper").join("console.log");
    assert!(
        wait_for(120, || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("sleeping")),
        "the test never started"
    );
    assert!(s.vm_dir().join("scratch-0.img").exists());
    assert_eq!(qemus_in(s.path()).len(), 1);
    child
}

#[test]
fn ctrl_c_stops_the_vm_and_cleans_up() {
    let s = Sandbox::new();
    let child = start_hanging(&s);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    s.assert_clean();
}

#[test]
fn sigkill_of_ktest_takes_qemu_with_it_and_the_next_start_reaps() {
    let s = Sandbox::new();
    let mut child = start_hanging(&s);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_for(10, || qemus_in(s.path()).is_empty()),
        "qemu outlived a SIGKILLed ktest"
    );
    // The files are still there until someone reaps them...
    assert!(s.vm_dir().exists());
    // ...which any ktest start does.
    s.assert_clean();
}

#[test]
fn dry_run_prints_both_command_lines_and_boots_nothing() {
    let s = Sandbox::new();
    let out = s.run(&["--dry-run", &fixture("scratch")]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("# kernel command line:"), "{t}");
    assert!(t.contains("console=ttyS0"), "{t}");
    assert!(t.contains("qemu-system-x86_64 -nodefaults"), "{t}");
    assert!(t.contains("scratch-1.img"), "{t}");
    assert_eq!(s.vm_dirs_left(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn kconfig_is_checked_against_the_kernel_config() {
    let s = Sandbox::new();
    let test = s.script(
        "needs-options",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=128M; echo KCONFIG=VIRTIO_BLK,NO_SUCH_OPTION; exit 0; }\n",
    );
    let out = s
        .ktest()
        .args(["run", "--kernel"])
        .arg(kernel_dir())
        .arg(&test)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("CONFIG_NO_SUCH_OPTION") && !t.contains("CONFIG_VIRTIO_BLK,"),
        "{t}"
    );
    assert_eq!(s.vm_dirs_left(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn a_port_taken_under_qemu_moves_the_vm_to_another_slot() {
    // Another user's ktest (another database) can bind a slot's port between
    // ktest's check and qemu's start. Simulate that race with a qemu that
    // fails the way qemu does, once.
    let s = Sandbox::new();
    let marker = s.path().join("failed-once");
    let wrapper = s.script(
        "qemu-wrapper",
        &format!(
            "#!/bin/sh\ncase \"$*\" in *hostfwd*) [ -e {m} ] || {{\n  touch {m}\n  echo \"qemu-system-x86_64: -netdev user: Could not set up host forwarding rule 'tcp:127.0.0.1:1-:22'\" >&2\n  exit 1; }};;\nesac\nexec qemu-system-x86_64 \"$@\"\n",
            m = marker.display()
        ),
    );
    let out = s
        .run_cmd()
        .env("KTEST_QEMU", &wrapper)
        .arg(fixture("hello"))
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(marker.exists());
    assert!(t.contains("trying another slot"), "{t}");
    s.assert_clean();
}

#[test]
fn the_kernels_modules_are_in_the_guest() {
    // The test kernel is a ktest build directory, with its modules installed
    // under lib/modules; the guest must find them where modprobe looks.
    let s = Sandbox::new();
    let test = s.script(
        "modules",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=128M; exit 0; }\nset -e\n\
         modprobe --dry-run --verbose x86_pkg_temp_thermal\n",
    );
    let out = s
        .ktest()
        .args(["run", "--kernel"])
        .arg(kernel_dir())
        .arg(&test)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("insmod /lib/modules/6.1"), "{t}");
    assert!(t.contains("x86_pkg_temp_thermal.ko"), "{t}");
    s.assert_clean();
}
