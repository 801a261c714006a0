//! Bad input: each case gives one clear message, its documented exit code,
//! starts no VM and leaves nothing behind.

mod common;

use common::*;

fn check(s: &Sandbox, out: std::process::Output, code: i32, needles: &[&str]) {
    let t = text(&out);
    assert_eq!(out.status.code(), Some(code), "{t}");
    for n in needles {
        assert!(t.contains(n), "expected {n:?} in:\n{t}");
    }
    assert!(!t.contains("panicked"), "{t}");
    assert_eq!(s.vm_dirs_left(), Vec::<std::path::PathBuf>::new());
    assert!(qemus_in(s.path()).is_empty());
}

#[test]
fn malformed_deps_line() {
    let s = Sandbox::new();
    let t = s.script("bad", "#!/bin/sh\necho MEM=128M\necho SCRATCH=1G,lots\n");
    let out = s.run(&[t.to_str().unwrap()]);
    check(&s, out, 2, &["bad: deps: line 2, SCRATCH:", "'lots'"]);
}

#[test]
fn unknown_key() {
    let s = Sandbox::new();
    let t = s.script("typo", "#!/bin/sh\necho MEM=128M\necho SCRACH=1G\n");
    check(
        &s,
        s.run(&[t.to_str().unwrap()]),
        2,
        &["line 2, SCRACH: unknown key"],
    );
}

#[test]
fn deps_fails_or_prints_nothing() {
    let s = Sandbox::new();
    let t = s.script("broken", "#!/bin/sh\necho oops >&2\nexit 7\n");
    check(
        &s,
        s.run(&[t.to_str().unwrap()]),
        2,
        &["deps' failed", "oops"],
    );
    let t = s.script("silent", "#!/bin/sh\nexit 0\n");
    check(
        &s,
        s.run(&[t.to_str().unwrap()]),
        2,
        &["printed no KEY=VALUE lines"],
    );
}

#[test]
fn missing_require() {
    let s = Sandbox::new();
    let t = s.script(
        "needy",
        "#!/bin/sh\necho MEM=128M\necho REQUIRE=no-such-helper\n",
    );
    check(
        &s,
        s.run(&[t.to_str().unwrap()]),
        2,
        &["REQUIRE=no-such-helper: not found"],
    );
}

#[test]
fn lrequire_without_a_source_tree() {
    let s = Sandbox::new();
    let t = s.script(
        "tree",
        "#!/bin/sh\necho MEM=128M\necho LREQUIRE=tools/foo\n",
    );
    check(
        &s,
        s.run(&[t.to_str().unwrap()]),
        2,
        &["LREQUIRE=tools/foo needs the kernel source tree"],
    );
}

#[test]
fn test_not_executable() {
    let s = Sandbox::new();
    let t = s.path().join("plain");
    std::fs::write(&t, "echo MEM=128M\n").unwrap();
    check(
        &s,
        s.run(&[t.to_str().unwrap()]),
        2,
        &["is not executable; chmod +x"],
    );
    check(&s, s.run(&["no-such-test"]), 2, &["no-such-test"]);
}

#[test]
fn no_kernel() {
    let s = Sandbox::new();
    let t = s.script("ok", "#!/bin/sh\necho MEM=128M\n");
    let out = s.ktest().args(["run"]).arg(&t).output().unwrap();
    check(&s, out, 2, &["no kernel"]);
    let out = s
        .ktest()
        .args(["run", "--kernel", "/nonexistent"])
        .arg(&t)
        .output()
        .unwrap();
    check(&s, out, 2, &["--kernel /nonexistent"]);
}

#[test]
fn no_qemu() {
    let s = Sandbox::new();
    let t = s.script("ok", "#!/bin/sh\necho MEM=128M\n");
    let out = s
        .run_cmd()
        .env("PATH", "/nonexistent")
        .arg(&t)
        .output()
        .unwrap();
    check(
        &s,
        out,
        5,
        &[
            "qemu-system-x86_64 not found",
            "apt-get install qemu-system-x86",
        ],
    );
}

#[test]
fn forced_kvm_that_does_not_work_is_an_error() {
    // Whether the real KVM works depends on the host, so the test breaks it
    // itself: the probe guest's qemu fails. (Without /dev/kvm the probe
    // fails before running qemu, with the same outcome.)
    let s = Sandbox::new();
    let qemu = s.broken_kvm_qemu();
    let t = repo().join("tests/hello");
    let out = s
        .run_cmd()
        .env("KTEST_QEMU", &qemu)
        .args(["--accel", "kvm"])
        .arg(&t)
        .output()
        .unwrap();
    check(
        &s,
        out,
        5,
        &[
            "KVM was requested but does not work here",
            "use --accel tcg",
        ],
    );
}

#[test]
fn a_kernel_with_modular_9p_and_no_module_tree_is_refused_before_booting() {
    // Like a distribution kernel whose modules are not where ktest looks:
    // what the guest needs is only a module, and there is no tree to load
    // it from.
    let s = Sandbox::new();
    let k = s.path().join("distro-kernel");
    std::fs::create_dir(&k).unwrap();
    std::fs::copy(bzimage(), k.join("bzImage")).unwrap();
    let config = std::fs::read_to_string(kernel_dir().join(".config")).unwrap();
    std::fs::write(
        k.join(".config"),
        config.replace("CONFIG_9P_FS=y", "CONFIG_9P_FS=m"),
    )
    .unwrap();
    let t = s.script("ok", "#!/bin/sh\necho MEM=128M\n");
    let out = s
        .ktest()
        .args(["run", "--kernel"])
        .arg(&k)
        .arg(&t)
        .output()
        .unwrap();
    check(
        &s,
        out,
        2,
        &[
            "has CONFIG_9P_FS as modules",
            "found no module tree for it",
            "give --modules DIR",
            "lib/kconfig/ktest.config",
        ],
    );
}
