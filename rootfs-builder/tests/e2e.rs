//! A real build: debootstrap from the Debian mirror into a real image, then
//! the checks ktest relies on, then `--update`.
//!
//! Needs root, network access to the mirror, and about a minute on a fast
//! mirror (several on a slow one), so it only runs with KTEST_E2E=1, and
//! under CI (CI=true) fails without it.

mod common;

use common::require;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_create-vm-image");

fn tool(name: &str) -> Command {
    // e2fsprogs lives in /usr/sbin, which a non-login PATH may lack.
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Command::new(p);
        }
    }
    Command::new(name)
}

fn debugfs(img: &Path, request: &str) -> String {
    let out = tool("debugfs")
        .arg("-R")
        .arg(request)
        .arg(img)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fsck_clean(img: &Path) -> bool {
    tool("e2fsck")
        .arg("-fn")
        .arg(img)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn run(args: &[&str], img: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg(img)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn builds_checks_and_updates_a_real_image() {
    if !require(
        std::env::var("KTEST_E2E").as_deref() == Ok("1"),
        "KTEST_E2E=1",
        "set it to run this test: root, network to the Debian mirror, 1-5 min",
    ) || !require(
        nix::unistd::geteuid().is_root(),
        "root",
        "debootstrap runs as root; run the tests as root",
    ) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("cvi-e2e.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let img = dir.path().join("root.img");

    let start = Instant::now();
    let out = run(&["--size", "1G", "--packages", "strace"], &img);
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let stages: Vec<&str> = err.lines().collect();
    assert!(stages[0].starts_with("debootstrap ("), "{err}");
    assert_eq!(&stages[1..3], ["configuring", "building ext4 image (1G)"]);
    assert!(stages[3].starts_with(&format!("done: {} (", img.display())));
    eprintln!("build took {took:?}: {}", stages[3]);

    let marker = debugfs(&img, "cat /etc/ktest-image");
    assert!(marker.contains("\nformat=1\n"), "{marker}");
    assert!(marker.contains("\npackages=strace\n"), "{marker}");
    assert!(fsck_clean(&img));
    let allocated = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&img).unwrap()) * 512;
    assert!(allocated < 700 << 20, "image not sparse: {allocated} bytes");

    // What ktest's init and tests use.
    for path in [
        "/usr/sbin/sshd",
        "/usr/bin/strace",
        "/usr/bin/mount",
        "/usr/bin/kmod",
        "/usr/sbin/mkfs.ext4",
        "/usr/bin/ip",
        "/usr/bin/ps",
        "/usr/bin/sh",
        "/mnt",
        "/etc/ssh/ssh_host_ed25519_key",
        "/lib/systemd/system/serial-getty@.service",
        "/lib/systemd/system/systemd-networkd.service",
    ] {
        assert!(
            debugfs(&img, &format!("stat {path}")).contains("Inode:"),
            "{path} missing"
        );
    }
    assert!(debugfs(&img, "cat /etc/shadow").starts_with("root:*:"));
    assert!(debugfs(&img, "cat /etc/ssh/sshd_config.d/ktest.conf")
        .contains("PermitRootLogin prohibit-password"));
    assert_eq!(debugfs(&img, "cat /etc/machine-id"), "");
    assert!(debugfs(&img, "ls /var/cache/apt/archives").contains("partial"));
    assert!(!debugfs(&img, "ls /var/lib/apt/lists").contains("Packages"));

    // A second build without --force is refused, pointing at the options.
    let out = run(&[], &img);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--update"));

    let out = run(&["--update"], &img);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(debugfs(&img, "cat /etc/ktest-image").contains("\nupdated="));
    assert!(fsck_clean(&img));
    assert_eq!(
        names(dir.path()),
        ["root.img", "root.img.log", "root.img.update.log"]
    );

    // --update of a qcow2 image goes through raw and back.
    let has_qemu_img = tool("qemu-img")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if require(has_qemu_img, "qemu-img", "apt-get install qemu-utils") {
        let q = dir.path().join("root.qcow2");
        let ok = tool("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&img)
            .arg(&q)
            .status()
            .unwrap();
        assert!(ok.success());
        let out = run(&["--update"], &q);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let head = std::fs::read(&q).unwrap();
        assert!(head.starts_with(b"QFI\xfb"), "no longer qcow2");
    }
}

/// The real build's own test binary, run for that one test with `env`.
fn real_build_test(env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "builds_checks_and_updates_a_real_image"])
        .env_remove("CI")
        .env_remove("KTEST_E2E")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd.output().unwrap()
}

#[test]
fn the_real_build_skips_visibly_and_never_under_ci() {
    let out = real_build_test(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("SKIPPED builds_checks_and_updates_a_real_image: needs KTEST_E2E=1 ("),
        "{err}"
    );
    let out = real_build_test(&[("CI", "true")]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "a CI run skipped it: {all}");
    assert!(all.contains("needs KTEST_E2E=1: set it"), "{all}");
}
