//! The accelerator choice as the user sees it: the TCG fallback is
//! explained when the probe runs, and after that only with `-v`.

mod common;

use common::*;

#[test]
fn the_tcg_fallback_is_said_when_probed_then_only_with_v() {
    // Only an answer that got past opening /dev/kvm is cached; without
    // /dev/kvm the probe, and so the line, comes on every run.
    let kvm_opens = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !require(
        kvm_opens,
        "a /dev/kvm that opens read-write",
        "modprobe kvm_intel or kvm_amd; run as root or in group kvm",
    ) {
        return;
    }
    let s = Sandbox::new();
    let qemu = s.broken_kvm_qemu();
    let t = s.script("t", "#!/bin/sh\necho MEM=128M\n");
    // A database of its own, so the first run is the one that probes.
    let db = s.path().join("accel.db");
    let dry_run = |extra: &[&str]| {
        let out = s
            .run_cmd()
            .env("KTEST_DB", &db)
            .env("KTEST_QEMU", &qemu)
            .arg("--dry-run")
            .args(extra)
            .arg(&t)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let note = "ktest: using TCG (slow): KVM unusable";
    let probed = dry_run(&[]);
    assert!(
        probed.contains(note) && probed.contains("no KVM here"),
        "{probed}"
    );
    let cached = dry_run(&[]);
    assert!(
        !cached.contains(note),
        "said again from the cache: {cached}"
    );
    let verbose = dry_run(&["-v"]);
    assert!(
        verbose.contains(&format!("{note} (probed earlier this boot)")),
        "{verbose}"
    );
}
