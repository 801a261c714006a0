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
    let json = s.path().join("r.json");
    let out = s
        .ktest()
        .args(["run", "--all-targets", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let t = text(&out);
    // The missing kernel is a usage error, the gravest outcome here.
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains(&format!("on {}", distro_release())), "{t}");
    let table: Vec<&str> = t
        .split("ktest: targets:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no table: {t}"))
        .lines()
        .collect();
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
    let out = s
        .ktest()
        .args(["run", "--target", "plain"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(!t.contains("target debian"), "{t}");
    let out = s
        .ktest()
        .args(["run", "--target", "nope"])
        .output()
        .unwrap();
    check(
        &out,
        2,
        &["no target 'nope'", "it has debian, missing, plain"],
    );
    s.assert_clean();
}
