//! End-to-end tests of ktest building the kernel.
//!
//! Two kinds. The fast ones use a stand-in kernel tree whose Makefile fakes
//! kbuild's config targets and build in milliseconds: they cover the
//! decisions (reuse, configuration keys, make variables, error reports and
//! exit codes). The real ones build Debian's linux-source-6.1, unpacked in
//! ~/.cache/ktest by tests/test-kernel.sh, into that tree's .ktest/ — the
//! configurations the default, tests/bcache, tests/kunit,
//! tests/fixtures/kernel-log and a loop module need, about 6 minutes each
//! on 2 cores the first time and reused by later runs — and boot the
//! results.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::SystemTime;

// ---------------------------------------------------------------------------
// A stand-in kernel tree.

const FAKE_MAKEFILE: &str = r#"# Fakes the parts of kbuild ktest uses. Honours O=.
O ?= $(CURDIR)
.PHONY: all tinyconfig defconfig olddefconfig oldconfig
all:
	@echo "  CC      init/main.o"
	@echo "LLVM=$(LLVM) W=$(W) V=$(V)" > $(O)/make-vars
	@if grep -q '^CONFIG_FAIL_BUILD=y' $(O)/.config; then \
		echo "init/main.c: In function 'start_kernel':" >&2; \
		echo "init/main.c:3:1: error: expected ';' before '}' token" >&2; \
		echo "    3 | }" >&2; \
		echo "make[2]: *** [scripts/Makefile.build:250: init/main.o] Error 1" >&2; \
		exit 2; fi
	@mkdir -p $(O)/arch/x86/boot
	@if [ ! $(O)/vmlinux -nt $(O)/.config ]; then \
		echo "  LD      vmlinux"; echo vmlinux > $(O)/vmlinux; echo bz > $(O)/arch/x86/boot/bzImage; fi
tinyconfig:
	@echo '# CONFIG_64BIT is not set' > $(O)/.config
defconfig:
	@echo 'CONFIG_64BIT=y' > $(O)/.config
# Options this tree does not have, or whose dependencies are unmet, vanish.
olddefconfig:
	@grep -v -e NO_SUCH -e NEEDS_DEP $(O)/.config > $(O)/.config.new; mv $(O)/.config.new $(O)/.config
oldconfig:
	@echo "LLVM=$(LLVM)" > $(O)/oldconfig-ran
"#;

/// A stand-in kernel tree in `dir`.
fn fake_tree(dir: &Path) -> PathBuf {
    let t = dir.join("linux");
    std::fs::create_dir_all(t.join("scripts/kconfig")).unwrap();
    std::fs::create_dir_all(t.join("arch/x86")).unwrap();
    std::fs::create_dir_all(t.join("drivers/dep")).unwrap();
    std::fs::write(t.join("Makefile"), FAKE_MAKEFILE).unwrap();
    std::fs::write(t.join("Kconfig"), "source \"drivers/dep/Kconfig\"\n").unwrap();
    std::fs::write(
        t.join("drivers/dep/Kconfig"),
        "config NEEDS_DEP\n\tbool \"x\"\n\tdepends on SOMETHING\n",
    )
    .unwrap();
    t
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `ktest ARGS` run in `dir`.
fn ktest_in(s: &Sandbox, dir: &Path, args: &[&str]) -> Output {
    s.ktest().current_dir(dir).args(args).output().unwrap()
}

/// The build directory `ktest build` printed.
fn built_dir(out: &Output) -> PathBuf {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.trim())
}

fn kconfig_test(s: &Sandbox, name: &str, kconfig: &str) -> PathBuf {
    s.script(
        name,
        &format!(
            "#!/bin/sh\n[ \"$1\" = deps ] && {{ echo MEM=128M; echo KCONFIG={kconfig}; exit 0; }}\necho never here\n"
        ),
    )
}

#[test]
fn fake_tree_builds_once_then_leaves_everything_alone() {
    let s = Sandbox::new();
    let tree = fake_tree(s.path());
    let dir = built_dir(&ktest_in(&s, &tree, &["build"]));
    assert!(
        dir.starts_with(tree.join(".ktest/build")),
        "{}",
        dir.display()
    );
    let config = std::fs::read_to_string(dir.join(".config")).unwrap();
    // ktest's fragment went in over the base.
    assert!(config.contains("CONFIG_VIRTIO_PCI=y"), "{config}");
    assert!(
        config.contains("# CONFIG_INPUT_MOUSE is not set"),
        "{config}"
    );
    let (c, v) = (mtime(&dir.join(".config")), mtime(&dir.join("vmlinux")));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = built_dir(&ktest_in(&s, &tree, &["build"]));
    assert_eq!(again, dir);
    assert_eq!(mtime(&dir.join(".config")), c, ".config was rewritten");
    assert_eq!(mtime(&dir.join("vmlinux")), v, "vmlinux was rebuilt");
    assert_eq!(
        std::fs::read_link(tree.join(".ktest/build/last")).unwrap(),
        PathBuf::from(dir.file_name().unwrap())
    );
    // The tree itself got nothing but .ktest/.
    let mut entries: Vec<String> = std::fs::read_dir(&tree)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        [".ktest", "Kconfig", "Makefile", "arch", "drivers", "scripts"]
    );

    // --kernel-src from elsewhere finds the same build.
    let from_outside = built_dir(&ktest_in(
        &s,
        s.path(),
        &["build", "--kernel-src", tree.to_str().unwrap()],
    ));
    assert_eq!(from_outside, dir);
}

#[test]
fn fake_tree_one_directory_per_configuration() {
    let s = Sandbox::new();
    let tree = fake_tree(s.path());
    let plain = built_dir(&ktest_in(&s, &tree, &["build"]));
    let t = kconfig_test(&s, "wants-md", "MD,HZ=100");
    let md = built_dir(&ktest_in(&s, &tree, &["build", t.to_str().unwrap()]));
    assert_ne!(md, plain);
    let config = std::fs::read_to_string(md.join(".config")).unwrap();
    assert!(
        config.contains("CONFIG_MD=y") && config.contains("CONFIG_HZ=100"),
        "{config}"
    );
    // Declared in another order, with an option the fragment already sets:
    // the same configuration, the same directory.
    let t2 = kconfig_test(&s, "wants-md-too", "HZ=100,EXT4_FS,CONFIG_MD");
    assert_eq!(
        built_dir(&ktest_in(&s, &tree, &["build", t2.to_str().unwrap()])),
        md
    );
    // Another base is another configuration.
    let def = built_dir(&ktest_in(
        &s,
        &tree,
        &["build", "--base-config", "defconfig"],
    ));
    assert_ne!(def, plain);
    assert!(std::fs::read_to_string(def.join(".config"))
        .unwrap()
        .contains("CONFIG_64BIT=y"));
    // A base file.
    std::fs::write(s.path().join("my.config"), "CONFIG_MYBASE=y\n").unwrap();
    let file = built_dir(&ktest_in(
        &s,
        s.path(),
        &[
            "build",
            "--kernel-src",
            tree.to_str().unwrap(),
            "--base-config",
            "./my.config",
        ],
    ));
    assert!(std::fs::read_to_string(file.join(".config"))
        .unwrap()
        .contains("CONFIG_MYBASE=y"));
}

#[test]
fn fake_tree_make_variables_from_file_and_flags() {
    let s = Sandbox::new();
    let tree = fake_tree(s.path());
    std::fs::write(tree.join(".ktest.toml"), "[make]\nLLVM = 1\nW = \"1\"\n").unwrap();
    let dir = built_dir(&ktest_in(&s, &tree, &["build"]));
    assert_eq!(
        std::fs::read_to_string(dir.join("make-vars")).unwrap(),
        "LLVM=1 W=1 V=\n"
    );
    // The command line wins; V= does not make a new configuration.
    let dir2 = built_dir(&ktest_in(&s, &tree, &["build", "-m", "LLVM=0"]));
    assert_ne!(dir2, dir);
    assert_eq!(
        std::fs::read_to_string(dir2.join("make-vars")).unwrap(),
        "LLVM=0 W=1 V=\n"
    );
    let dir3 = built_dir(&ktest_in(&s, &tree, &["build", "-m", "V=1"]));
    assert_eq!(dir3, dir);
    // oldconfig runs on the same directory with the same variables.
    let out = ktest_in(&s, &tree, &["oldconfig"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(dir.join("oldconfig-ran")).unwrap(),
        "LLVM=1\n"
    );
    // A bad file is a usage error naming the file and line.
    std::fs::write(tree.join(".ktest.toml"), "jobs = 2\nbase = \"x\"\n").unwrap();
    let out = ktest_in(&s, &tree, &["build"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains(".ktest.toml:2:"), "{t}");
}

#[test]
fn fake_tree_build_failure_shows_the_compiler_error_and_exits_6() {
    let s = Sandbox::new();
    let tree = fake_tree(s.path());
    let t = kconfig_test(&s, "breaks", "FAIL_BUILD");
    let out = ktest_in(&s, &tree, &["run", t.to_str().unwrap()]);
    let txt = text(&out);
    assert_eq!(out.status.code(), Some(6), "{txt}");
    assert!(
        txt.contains("init/main.c:3:1: error: expected ';'"),
        "{txt}"
    );
    assert!(txt.contains("In function 'start_kernel'"), "{txt}");
    assert!(txt.contains("full log: "), "{txt}");
    assert!(!txt.contains("never here"), "{txt}");
}

#[test]
fn fake_tree_options_that_do_not_survive_are_named() {
    let s = Sandbox::new();
    let tree = fake_tree(s.path());
    let t = kconfig_test(&s, "wants-missing", "NO_SUCH_OPTION,NEEDS_DEP,MD");
    let out = ktest_in(&s, &tree, &["run", t.to_str().unwrap()]);
    let txt = text(&out);
    assert_eq!(out.status.code(), Some(2), "{txt}");
    assert!(txt.contains("lacks 2 requested options"), "{txt}");
    assert!(
        txt.contains("CONFIG_NO_SUCH_OPTION: no such option in this kernel tree"),
        "{txt}"
    );
    assert!(
        txt.contains("CONFIG_NEEDS_DEP: is not set after olddefconfig: its dependencies are not met (see drivers/dep/Kconfig:1"),
        "{txt}"
    );
    assert!(!txt.contains("CONFIG_MD:"), "{txt}");
    // A configuration that failed leaves no build directory behind.
    let left: Vec<_> = std::fs::read_dir(tree.join(".ktest/build"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn fake_tree_usage_errors() {
    let s = Sandbox::new();
    let tree = fake_tree(s.path());
    let hello = repo().join("tests/hello");
    let hello = hello.to_str().unwrap();

    let out = ktest_in(&s, &tree, &["build", "--base-config", "funnyconfig"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("'funnyconfig' is not a config target"), "{t}");

    // Not a tree, inside a tree.
    let out = ktest_in(&s, s.path(), &["run", hello]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("is not a kernel source tree"), "{t}");
    let out = ktest_in(&s, &tree.join("drivers"), &["run", hello]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("run ktest from its top directory"), "{t}");

    let out = ktest_in(&s, &tree, &["build", "-m", "O=/tmp/x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = ktest_in(&s, &tree, &["build", "-j", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // An in-tree build makes the tree unusable for O= builds.
    std::fs::write(tree.join(".config"), "").unwrap();
    let out = ktest_in(&s, &tree, &["build"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("make mrproper"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
}

// ---------------------------------------------------------------------------
// The real kernel tree.

/// `ktest run --kernel-src TREE TEST` from the sandbox, so that its VM
/// files do not meet those of a run started in the tree.
fn run_from_outside(s: &Sandbox, tree: &Path, test: &Path) -> Output {
    s.ktest()
        .args(["run", "--kernel-src"])
        .arg(tree)
        .arg(test)
        .output()
        .unwrap()
}

#[test]
fn real_tree_run_builds_then_rebuilds_nothing() {
    let s = Sandbox::new();
    let tree = linux_tree();
    let hello = repo().join("tests/hello");
    // Run from the tree itself, as a kernel developer does.
    let out = ktest_in(&s, &tree, &["run", hello.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("hello from 6.1"), "{t}");
    // `ktest build` names the default configuration's directory (not
    // .ktest/build/last: the other real-tree tests build beside this one).
    let built = ktest_in(&s, &tree, &["build"]);
    assert_eq!(built.status.code(), Some(0), "{}", text(&built));
    let dir = std::path::PathBuf::from(String::from_utf8_lossy(&built.stdout).trim());
    let (c, v) = (mtime(&dir.join(".config")), mtime(&dir.join("vmlinux")));

    let out = ktest_in(&s, &tree, &["run", hello.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        !t.contains("ktest: built"),
        "the second run built something: {t}"
    );
    assert_eq!(mtime(&dir.join(".config")), c, ".config was rewritten");
    assert_eq!(mtime(&dir.join("vmlinux")), v, "vmlinux was rebuilt");
    // The kernel ktest built has its modules installed for the guest.
    let config = std::fs::read_to_string(dir.join(".config")).unwrap();
    assert!(config.contains("CONFIG_MODULES=y"));
    let release = std::fs::read_to_string(dir.join("include/config/kernel.release")).unwrap();
    assert!(dir
        .join("lib/modules")
        .join(release.trim())
        .join("modules.dep")
        .is_file());
}

#[test]
fn real_tree_bcache_test_gets_a_kernel_with_bcache() {
    let s = Sandbox::new();
    let tree = linux_tree();
    let out = run_from_outside(&s, &tree, &repo().join("tests/bcache"));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("bcache: 32 MiB verified after re-registering"),
        "{t}"
    );
    // Each behaviour is its own subtest, run one after another in one VM.
    assert!(t.contains("bcache: 4 passed (4 subtests"), "{t}");
    s.assert_clean();
}

#[test]
fn real_tree_module_option_is_built_installed_and_loaded() {
    // KCONFIG=NAME=m: ktest builds loop as a module, installs it into the
    // build directory, and the guest's modprobe finds it there.
    let s = Sandbox::new();
    let test = s.script(
        "loop-module",
        r#"#!/bin/sh
if [ "$1" = deps ]; then
	echo MEM=256M
	echo KCONFIG=BLK_DEV_LOOP=m
	exit 0
fi
set -e
! grep -q '^loop ' /proc/modules
modprobe loop
grep -q '^loop ' /proc/modules
truncate -s 32M /tmp/disk
dev=$(losetup -f --show /tmp/disk)
mkfs.ext4 -q "$dev"
mount "$dev" /mnt
echo data >/mnt/f
[ "$(cat /mnt/f)" = data ]
umount /mnt
echo "loop module ok"
"#,
    );
    let out = run_from_outside(&s, &linux_tree(), &test);
    check(&out, 0, &["loop module ok", "1 passed"]);
    s.assert_clean();
}

/// Runs the repository's test `test` with a kernel ktest builds from the
/// real tree, and returns the run's output and its `--json` report.
fn run_with_json(s: &Sandbox, test: &str) -> (Output, serde_json::Value) {
    let json = s.path().join("r.json");
    let out = s
        .ktest()
        .args(["run", "--json"])
        .arg(&json)
        .arg("--kernel-src")
        .arg(linux_tree())
        .arg(repo().join(test))
        .output()
        .unwrap();
    let report = std::fs::read_to_string(&json)
        .map(|j| serde_json::from_str(&j).unwrap())
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {}", text(&out)));
    (out, report)
}

#[test]
fn real_tree_kernel_log_checks_catch_real_reports() {
    let s = Sandbox::new();
    let (out, report) = run_with_json(&s, "tests/fixtures/kernel-log");
    let t = text(&out);
    // The BUG crashed the kernel: that outranks the WARNING's failure.
    assert_eq!(out.status.code(), Some(3), "{t}");
    let subtests = report["tests"][0]["subtests"].as_array().unwrap();
    let got: Vec<(&str, &str)> = subtests
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("clean", "pass"),
            ("warning", "fail"),
            ("allowed_warning", "pass"),
            ("bug", "crash"),
            ("after_bug", "pass")
        ],
        "{t}"
    );
    let warning = &subtests[1];
    assert!(
        warning["reason"]
            .as_str()
            .unwrap()
            .starts_with("kernel log: WARNING"),
        "{warning}"
    );
    let kinds: Vec<&str> = warning["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"warning") && kinds.contains(&"taint"),
        "{kinds:?}"
    );
    // The allowed one is kept, marked allowed.
    assert_eq!(
        subtests[2]["findings"][0]["allowed"], true,
        "{}",
        subtests[2]
    );
    let log = std::fs::read_to_string(s.run_dir("kernel-log").join("bug.log")).unwrap();
    assert!(
        log.contains("kernel BUG at drivers/misc/lkdtm/bugs.c"),
        "{log}"
    );
    s.assert_clean();
}

#[test]
fn real_tree_kunit_suites_report_each_case() {
    let s = Sandbox::new();
    let (out, report) = run_with_json(&s, "tests/kunit");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let example = &report["tests"][0]["subtests"][0];
    assert_eq!(example["name"], "example", "{example}");
    // The suite, nested under the subtest, and its cases under it.
    let suite = &example["children"][0];
    assert_eq!(suite["name"], "example", "{suite}");
    let cases: Vec<(&str, &str)> = suite["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["verdict"].as_str().unwrap()))
        .collect();
    // Linux 6.1's example suite: two passing cases, two that skip.
    assert_eq!(
        cases,
        [
            ("example_simple_test", "pass"),
            ("example_skip_test", "skip"),
            ("example_mark_skipped_test", "skip"),
            ("example_all_expect_macros_test", "pass")
        ]
    );
    // The list suite has dozens of cases, each reported.
    let list = &report["tests"][0]["subtests"][1];
    assert_eq!(list["name"], "list-kunit-test", "{list}");
    let n = list["children"][0]["children"].as_array().unwrap().len();
    assert!(n > 30, "{n}: {list}");
    s.assert_clean();
}

#[test]
fn real_tree_nonexistent_option_fails_naming_it() {
    let s = Sandbox::new();
    let tree = linux_tree();
    let t = kconfig_test(&s, "wants-nonsense", "KTEST_NO_SUCH_OPTION,BCACHE");
    let out = run_from_outside(&s, &tree, &t);
    let txt = text(&out);
    assert_eq!(out.status.code(), Some(2), "{txt}");
    assert!(
        txt.contains("CONFIG_KTEST_NO_SUCH_OPTION: no such option in this kernel tree"),
        "{txt}"
    );
    // BCACHE without MD: it exists, but its menu is off.
    assert!(
        txt.contains("CONFIG_BCACHE: is not set after olddefconfig: its dependencies are not met (see drivers/md/bcache/Kconfig:"),
        "{txt}"
    );
    assert!(!txt.contains("never here"), "{txt}");
}

/// A test that passes only on a KASAN kernel whose time limit was doubled:
/// it declares 10 s and takes 14.
const KASAN_TEST: &str = "#!/bin/sh
if [ \"$1\" = deps ]; then
	echo MEM=256M
	echo TIMEOUT=10
	exit 0
fi
set -e
zcat /proc/config.gz | grep -x CONFIG_KASAN=y
dmesg | grep 'KernelAddressSanitizer initialized'
echo \"memory: $(grep MemTotal /proc/meminfo)\"
sleep 14
echo kasan-variant-done
";

#[test]
fn real_tree_kasan_variant_builds_kasan_and_doubles_time_and_memory() {
    let s = Sandbox::new();
    let tree = linux_tree();
    let test = s.script("kasan.ktest", KASAN_TEST);
    let out = s
        .ktest()
        .args(["run", "--variant", "kasan", "--kernel-src"])
        .arg(&tree)
        .arg(&test)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("variant kasan: time limits x2, memory x2"),
        "{t}"
    );
    assert!(
        t.contains("CONFIG_KASAN=y") && t.contains("kasan-variant-done"),
        "{t}"
    );
    // 512M asked for: the guest sees most of it (the kernel keeps some).
    let kb: u64 = t
        .lines()
        .find_map(|l| l.split("MemTotal:").nth(1))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no MemTotal: {t}"));
    assert!(kb > 300 * 1024, "memory was not doubled: {kb} kB\n{t}");
    s.assert_clean();

    // The same kernel and test with the time limit taken as given (an
    // explicit --timeout is not scaled): it times out, so the factor is
    // what let it pass. The kernel is not built again.
    let out = s
        .ktest()
        .args([
            "run",
            "--variant",
            "kasan",
            "--timeout",
            "10",
            "--kernel-src",
        ])
        .arg(&tree)
        .arg(&test)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(!t.contains("ktest: built"), "{t}");

    // A given kernel without KASAN is refused for the variant, before booting.
    let out = s
        .ktest()
        .args(["run", "--variant", "kasan", "--kernel"])
        .arg(kernel_dir())
        .arg(&test)
        .output()
        .unwrap();
    check(
        &out,
        2,
        &[
            "--variant kasan",
            "was not built with it",
            "CONFIG_KASAN is not set",
            "ktest build --variant kasan",
        ],
    );
    s.assert_clean();
}

#[test]
fn real_tree_every_variant_configures_with_its_options() {
    // Each variant's options survive olddefconfig on 6.1 for both
    // architectures (a fragment that asks for what Kconfig refuses is
    // named by ktest; configuring does not build).
    let s = Sandbox::new();
    let tree = linux_tree();
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join(".ktest.toml");
    std::fs::write(
        &file,
        format!("build_dir = \"{}\"\n", scratch.path().join("b").display()),
    )
    .unwrap();
    for arch in ["x86_64", "arm64"] {
        for v in ["kasan", "kcsan", "ubsan", "lockdep", "debug"] {
            let out = s
                .ktest()
                .current_dir(scratch.path())
                .args(["oldconfig", "--arch", arch, "--variant", v, "--kernel-src"])
                .arg(&tree)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let t = text(&out);
            assert_eq!(out.status.code(), Some(0), "{arch} {v}: {t}");
            assert!(t.contains(&format!("variant {v}")), "{arch} {v}: {t}");
            assert!(!t.contains("lacks"), "{arch} {v}: {t}");
        }
    }
}

#[test]
fn variant_names_and_combinations_are_checked_before_anything() {
    let s = Sandbox::new();
    let test = s.script("t.ktest", KASAN_TEST);
    let out = s
        .ktest()
        .args(["run", "--variant", "kasn"])
        .arg(&test)
        .output()
        .unwrap();
    check(&out, 2, &["unknown variant 'kasn'", "lockdep"]);
    let out = s
        .ktest()
        .args(["run", "--variant", "kasan,kcsan"])
        .arg(&test)
        .output()
        .unwrap();
    check(&out, 2, &["kasan and kcsan cannot be combined"]);
    std::fs::write(s.path().join(".ktest.toml"), "variant = \"lockdp\"\n").unwrap();
    let out = s.ktest().args(["run"]).arg(&test).output().unwrap();
    check(
        &out,
        2,
        &[".ktest.toml:1: variant: unknown variant 'lockdp'"],
    );
    s.assert_clean();
}
