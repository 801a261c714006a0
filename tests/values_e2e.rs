//! Values from the command line, `.ktest.toml` and `deps` go through the
//! same typed checks: a malformed, out-of-range or overflowing value, or one
//! this host cannot give (memory, PCI slots, file size), is one clear
//! message and exit 2 before any VM, slot or file exists.

mod common;

use common::*;
use std::process::Output;

/// Asserts exit 2 with `needles` in the output, no panic, and nothing left
/// behind: no VM directory, no database row, no qemu.
fn refused(s: &Sandbox, out: Output, needles: &[&str]) {
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    for n in needles {
        assert!(t.contains(n), "expected {n:?} in:\n{t}");
    }
    assert!(!t.contains("panicked"), "{t}");
    assert!(!t.contains("internal error"), "{t}");
    assert_eq!(s.vm_dirs_left(), Vec::<std::path::PathBuf>::new());
    s.assert_clean();
}

/// A test that declares `decl` and runs `body` (shell lines).
fn test_script(s: &Sandbox, decl: &str, body: &str) -> String {
    s.script(
        "t",
        &format!("#!/bin/sh\nif [ \"$1\" = deps ]; then\n{decl}\nexit 0\nfi\n{body}\n"),
    )
    .to_string_lossy()
    .into_owned()
}

/// A test that declares `decl` and would pass if it ran.
fn declaring(s: &Sandbox, decl: &str) -> String {
    test_script(s, decl, "true")
}

/// This host's MemTotal in MiB.
fn host_mib() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap();
    kb / 1024
}

#[test]
fn bad_command_line_values_are_refused_by_the_parser() {
    let s = Sandbox::new();
    let t = declaring(&s, "echo MEM=128M");
    for (args, needles) in [
        (["--mem", "1"], &["--mem", "at least 64M"][..]),
        (["--mem", "1K"], &["--mem", "'1K'", "at least 64M"]),
        (["--mem", "lots"], &["--mem", "'lots' is not a size"]),
        (["--cpus", "0"], &["--cpus", "at least 1"]),
        (["--cpus", "1000"], &["--cpus", "at most 255"]),
        (["--timeout", "0"], &["--timeout", "at least 1s"]),
        (
            ["--timeout", "99999999999999999999"],
            &["--timeout", "at most 2592000s"],
        ),
    ] {
        let out = s.run_cmd().args(args).arg(&t).output().unwrap();
        refused(&s, out, needles);
    }
}

#[test]
fn bad_deps_values_name_the_line_and_key() {
    let s = Sandbox::new();
    for (decl, needles) in [
        ("echo MEM=1K", &["line 1, MEM:", "at least 64M"][..]),
        (
            "echo MEM=128M; echo CPUS=1000",
            &["line 2, CPUS:", "at most 255"],
        ),
        (
            "echo MEM=128M; echo TIMEOUT=18446744073709551615",
            &["line 2, TIMEOUT:", "at most 2592000s"],
        ),
        (
            "echo MEM=128M; echo SCRATCH=16E",
            &["line 2, SCRATCH:", "'16E' is too large"],
        ),
        ("echo MEM=99999999999T", &["line 1, MEM:", "too large"]),
    ] {
        let t = declaring(&s, decl);
        refused(&s, s.run(&[&t]), needles);
    }
}

#[test]
fn more_memory_than_the_host_has_is_refused() {
    let s = Sandbox::new();
    let too_much = format!("{}M", host_mib() + 1024);
    let t = declaring(&s, &format!("echo MEM={too_much}"));
    refused(
        &s,
        s.run(&[&t]),
        &["t: MEM:", &too_much, "more than this host's memory"],
    );
    let t = declaring(&s, "echo MEM=128M");
    refused(
        &s,
        s.run(&["--mem", &too_much, &t]),
        &["--mem", "more than this host's memory"],
    );
    let out = s
        .ktest()
        .args(["boot", "--kernel"])
        .arg(bzimage())
        .args(["--mem", &too_much])
        .output()
        .unwrap();
    refused(&s, out, &["--mem", "more than this host's memory"]);
}

#[test]
fn a_huge_value_in_ktest_toml_is_refused() {
    let s = Sandbox::new();
    let t = declaring(&s, "echo MEM=128M");
    for (file, needles) in [
        ("mem = 9223372036854775807\n", &["1: mem:", "too large"][..]),
        ("mem = \"99999999999T\"\n", &["1: mem:", "too large"]),
        (
            "\ntimeout = 99999999999\n",
            &["2: timeout:", "at most 2592000s"],
        ),
        ("cpus = 0\n", &["1: cpus:", "at least 1"]),
        ("mem = \"1K\"\n", &["1: mem:", "at least 64M"]),
    ] {
        std::fs::write(s.path().join(".ktest.toml"), file).unwrap();
        refused(&s, s.run(&[&t]), needles);
    }
}

/// The number of virtio PCI devices in a `--dry-run` plan.
fn virtio_devices(out: &Output) -> usize {
    text(out)
        .split_whitespace()
        .map(|w| w.trim_start_matches('\''))
        .filter(|w| w.starts_with("virtio-") && w.split(',').next().unwrap().ends_with("-pci"))
        .count()
}

#[test]
fn scratch_disks_fill_the_pci_slots_and_no_more() {
    // qemu's pc machine has 32 slots on PCI bus 0; the host bridge and the
    // PIIX3 take two, each virtio device one.
    let s = Sandbox::new();
    let run = |t: &str, extra: &[&str]| {
        s.ktest()
            .args(["run", "--kernel"])
            .arg(kernel_dir())
            .args(extra)
            .arg(t)
            .output()
            .unwrap()
    };
    let plan = run(&declaring(&s, "echo MEM=128M"), &["--dry-run"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let others = virtio_devices(&plan);
    assert!(
        others >= 3,
        "virtio-serial, 9p root and net at least:\n{}",
        text(&plan)
    );
    let room = 30 - others;
    let disks = |n: usize| format!("echo MEM=128M; echo SCRATCH={}", vec!["1M"; n].join(","));
    refused(
        &s,
        run(&declaring(&s, &disks(room + 1)), &[]),
        &["SCRATCH", &format!("{} scratch disks", room + 1)],
    );
    refused(
        &s,
        run(&declaring(&s, &disks(40)), &[]),
        &["40 scratch disks"],
    );
    // Exactly full boots, and the guest sees every disk.
    let count =
        format!("n=$(ls -d /sys/block/vd* | wc -l)\necho \"disks: $n\"\n[ \"$n\" -eq {room} ]");
    let out = run(&test_script(&s, &disks(room), &count), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains(&format!("disks: {room}")));
    s.assert_clean();
}

#[test]
fn a_scratch_size_the_file_system_refuses_is_a_declaration_error() {
    let s = Sandbox::new();
    // ext4 (4K blocks) takes files smaller than 16T. This test needs a file
    // system with such a limit under the sandbox; say so rather than pass.
    let probe = s.path().join("probe");
    let f = std::fs::File::create(&probe).unwrap();
    assert!(
        f.set_len(16 << 40).is_err(),
        "{} takes a 16T file: run this test with TMPDIR on ext4",
        s.path().display()
    );
    drop(f);
    std::fs::remove_file(&probe).unwrap();
    let t = declaring(&s, "echo MEM=128M; echo SCRATCH=1M,16T");
    refused(
        &s,
        s.run(&[&t]),
        &["SCRATCH", "16T", "file system", "at most"],
    );
    assert_eq!(
        std::fs::read_dir(s.path()).unwrap().count(),
        1,
        "only the test script should be in the sandbox"
    );
}
