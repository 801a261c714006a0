//! Targets (`[target.NAME]` in .ktest.toml) for real: one test file on
//! ktest's test kernel and on Debian's distribution kernel with its modules,
//! plus a target whose kernel does not exist; the target x test table, the
//! per-target reports and the results history's targets.

mod common;

use common::*;

const UNAME_TEST: &str = "#!/bin/sh
if [ \"$1\" = deps ]; then
	echo MEM=256M
	echo TIMEOUT=60
	exit 0
fi
echo \"on $(uname -r)\"
";

/// `ktest run ARGS` in the sandbox: its output and all it printed.
fn run(s: &Sandbox, args: &[&str]) -> (std::process::Output, String) {
    let out = s.ktest().arg("run").args(args).output().unwrap();
    let t = text(&out);
    (out, t)
}

/// The lines of the target x test table in a run's output.
fn table(t: &str) -> Vec<&str> {
    t.split("ktest: targets:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no table: {t}"))
        .lines()
        .collect()
}

#[test]
fn all_targets_run_each_kernel_and_sum_up_in_a_table() {
    let s = Sandbox::new();
    s.script("uname.ktest", UNAME_TEST);
    std::fs::write(
        s.path().join(".ktest.toml"),
        format!(
            "[target.plain]\nkernel = \"{}\"\ntests = [\"uname.ktest\"]\n\n\
             [target.debian]\nkernel = \"{}\"\nmodules = \"{}\"\ntests = [\"uname.ktest\"]\n\n\
             [target.missing]\nkernel = \"no/such/bzImage\"\ntests = [\"uname.ktest\"]\n",
            kernel_dir().display(),
            distro_image().display(),
            distro_dir()
                .join("lib/modules")
                .join(distro_release())
                .display()
        ),
    )
    .unwrap();
    let (out, t) = run(&s, &["--all-targets", "--json", "r.json"]);
    // The missing kernel is a usage error, the gravest outcome here.
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains(&format!("on {}", distro_release())), "{t}");
    let table = table(&t);
    assert!(
        table[0].starts_with("target") && table[0].contains("uname.ktest"),
        "{t}"
    );
    // Targets run in name order.
    assert!(
        table[1].starts_with("debian ") && table[1].contains("pass 1/1"),
        "{t}"
    );
    assert!(
        table[2].starts_with("missing ") && table[2].contains("error (exit 2)"),
        "{t}"
    );
    assert!(
        table[3].starts_with("plain ") && table[3].contains("pass 1/1"),
        "{t}"
    );
    // One report per target that ran, naming it.
    for name in ["debian", "plain"] {
        let r: serde_json::Value = serde_json::from_slice(
            &std::fs::read(s.path().join(format!("r.{name}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(r["target"], name);
    }
    assert!(!s.path().join("r.missing.json").exists());
    // The results history keeps each run's target.
    let db = rusqlite::Connection::open(s.db()).unwrap();
    let mut targets: Vec<String> = db
        .prepare("SELECT target FROM runs")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    targets.sort();
    assert_eq!(targets, ["debian", "plain"]);
    s.assert_clean();

    // One target by name; an unknown one is refused before anything runs.
    let (out, t) = run(&s, &["--target", "plain"]);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(!t.contains("target debian"), "{t}");
    let (out, _) = run(&s, &["--target", "nope"]);
    check(
        &out,
        2,
        &["no target 'nope'", "it has debian, missing, plain"],
    );
    s.assert_clean();
}

/// Passes only on a kernel whose /proc/version says "Lunix": the
/// regression of tests/bisect-repo.sh, so only a build of that revision.
const LUNIX_TEST: &str = "#!/bin/sh
if [ \"$1\" = deps ]; then
	echo MEM=256M
	echo TIMEOUT=60
	exit 0
fi
cat /proc/version
grep -q '^Lunix version ' /proc/version
";

/// Passes only on a KASAN kernel.
const KASAN_TEST: &str = "#!/bin/sh
if [ \"$1\" = deps ]; then
	echo MEM=256M
	echo TIMEOUT=120
	exit 0
fi
set -e
zcat /proc/config.gz | grep -x CONFIG_KASAN=y
dmesg | grep 'KernelAddressSanitizer initialized'
";

fn git(repo: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn report(s: &Sandbox, name: &str) -> serde_json::Value {
    let path = s.path().join(format!("r.{name}.json"));
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// The part of a run's output that target `name` printed.
fn section<'a>(t: &'a str, name: &str) -> &'a str {
    let start = format!("ktest: target {name}\n");
    let rest = t
        .split(&start)
        .nth(1)
        .unwrap_or_else(|| panic!("no {start:?} in:\n{t}"));
    rest.split("ktest: target").next().unwrap()
}

#[test]
fn rev_and_variant_targets_build_their_own_kernels_once() {
    let s = Sandbox::new();
    s.script("lunix.ktest", LUNIX_TEST);
    s.script("kasan.ktest", KASAN_TEST);
    let repo = bisect_repo();
    let head = git(repo, &["rev-parse", "HEAD"]);
    let branch = git(repo, &["symbolic-ref", "HEAD"]);
    let lunix = git(repo, &["rev-parse", "master~1"]);
    let tree = linux_tree();
    std::fs::write(
        s.path().join(".ktest.toml"),
        format!(
            "[target.lunix]\nkernel_src = \"{repo}\"\nrev = \"master~1\"\ntests = [\"lunix.ktest\"]\n\n\
             [target.kasan]\nkernel_src = \"{tree}\"\nvariant = \"kasan\"\ntests = [\"kasan.ktest\"]\n\n\
             [target.kasan-again]\nkernel_src = \"{tree}\"\nvariant = \"kasan\"\ntests = [\"kasan.ktest\"]\n\n\
             [target.plain]\nkernel = \"{plain}\"\ntests = [\"lunix.ktest\", \"kasan.ktest\"]\n",
            repo = repo.display(),
            tree = tree.display(),
            plain = kernel_dir().display(),
        ),
    )
    .unwrap();
    let (out, t) = run(&s, &["--all-targets", "--json", "r.json"]);
    // The plain kernel fails both tests: each needs what a target adds.
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    let table = table(&t);
    // Columns in the order the tests first ran: kasan.ktest, lunix.ktest.
    let row = |name: &str| -> Vec<&str> {
        table
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name}: {t}"))
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect()
    };
    assert_eq!(
        row("target"),
        ["target", "kasan.ktest", "lunix.ktest"],
        "{t}"
    );
    assert_eq!(row("kasan"), ["kasan", "pass 1/1", "-"], "{t}");
    assert_eq!(row("kasan-again"), ["kasan-again", "pass 1/1", "-"], "{t}");
    assert_eq!(row("lunix"), ["lunix", "-", "pass 1/1"], "{t}");
    assert_eq!(row("plain"), ["plain", "fail 1/1", "fail 1/1"], "{t}");

    // The two KASAN targets have the same inputs: one build directory,
    // and the second target built nothing.
    let (a, b) = (report(&s, "kasan"), report(&s, "kasan-again"));
    assert!(a["kernel"]["build_hash"].is_string(), "{a}");
    assert_eq!(a["kernel"]["build_hash"], b["kernel"]["build_hash"]);
    assert!(!section(&t, "kasan-again").contains("ktest: built"), "{t}");

    // The rev target was built from that commit, in a worktree of its own
    // under the tree's .ktest/rev; the user's checkout did not move.
    let r = report(&s, "lunix");
    // `base` is a lightweight tag, so describe --always gives the commit's
    // abbreviated id (TAG-N-gID with an annotated tag); never -dirty.
    let describe = r["kernel"]["describe"].as_str().unwrap_or_default();
    let id = describe.rsplit("-g").next().unwrap_or_default();
    assert!(id.len() >= 7 && lunix.starts_with(id), "{r}");
    let wt = repo.join(".ktest/rev").join(&lunix[..12]);
    assert_eq!(git(&wt, &["rev-parse", "HEAD"]), lunix);
    assert_eq!(git(repo, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(repo, &["symbolic-ref", "HEAD"]), branch);
    s.assert_clean();

    // Again: the worktree and its build are reused, nothing is built.
    let worktrees = git(repo, &["worktree", "list"]);
    let (out, t) = run(&s, &["--target", "lunix"]);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("Lunix version"), "{t}");
    assert!(!t.contains("ktest: built"), "{t}");
    assert_eq!(git(repo, &["worktree", "list"]), worktrees);
    s.assert_clean();

    // The worktree is ktest's, named by its commit: moved elsewhere, it is
    // put back before the build.
    git(&wt, &["checkout", "--quiet", "--detach", "master"]);
    let (out, t) = run(&s, &["--target", "lunix"]);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(git(&wt, &["rev-parse", "HEAD"]), lunix);
    s.assert_clean();
}
