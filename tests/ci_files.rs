//! The CI engine files users copy (contrib/ci/): they parse, have the
//! shape docs/ci.md describes, use only flags ktest has, and their own
//! shell steps, run here for two shards under TCG with this build of
//! ktest, test every selected subtest exactly once and merge the reports.
//!
//! GitHub's runner is emulated only as far as these files need: `env:`
//! values with `${{ matrix.shard }}` and `${{ strategy.job-total }}`,
//! `if: always()`, and the artifact actions as directory copies. Steps
//! whose id starts with `install` set up a runner and are skipped.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

fn load(name: &str) -> Vec<Yaml> {
    let path = repo().join("contrib/ci").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn workflow() -> Yaml {
    load("github-actions.yml").remove(0)
}

fn jobs_yaml() -> Vec<Yaml> {
    load("kubernetes-job.yaml")
}

fn s(y: &Yaml) -> &str {
    y.as_str().unwrap_or_else(|| panic!("not a string: {y:?}"))
}

/// The shard numbers of the workflow's matrix: 1 to N.
fn matrix(w: &Yaml) -> Vec<i64> {
    w["jobs"]["shards"]["strategy"]["matrix"]["shard"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

/// A Job's container.
fn container(job: &Yaml) -> &Yaml {
    &job["spec"]["template"]["spec"]["containers"][0]
}

/// A container's environment as a map.
fn container_env(job: &Yaml) -> BTreeMap<String, String> {
    container(job)["env"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|e| (s(&e["name"]).to_string(), s(&e["value"]).to_string()))
        .collect()
}

/// A container's shell script (`sh -c SCRIPT`).
fn container_script(job: &Yaml) -> String {
    let c = container(job);
    let cmd: Vec<&str> = c["command"].as_vec().unwrap().iter().map(s).collect();
    assert_eq!(cmd, ["/bin/sh", "-c"]);
    s(&c["args"][0]).to_string()
}

#[test]
fn the_workflow_builds_once_shards_and_merges() {
    let w = workflow();
    let jobs = w["jobs"].as_hash().unwrap();
    let names: Vec<&str> = jobs.keys().map(s).collect();
    assert_eq!(names, ["build", "shards", "merge"]);
    assert_eq!(s(&w["jobs"]["shards"]["needs"]), "build");
    assert_eq!(s(&w["jobs"]["merge"]["needs"]), "shards");
    assert_eq!(s(&w["jobs"]["merge"]["if"]), "always()");
    let n = matrix(&w);
    assert!(n.len() >= 2);
    assert_eq!(
        n,
        (1..=n.len() as i64).collect::<Vec<_>>(),
        "the matrix is 1 to N"
    );
    assert_eq!(
        w["jobs"]["shards"]["strategy"]["fail-fast"].as_bool(),
        Some(false),
        "one shard's failures must not cancel the others"
    );
    // Reports are uploaded even when the shard's tests failed.
    let uploads: Vec<&Yaml> = w["jobs"]["shards"]["steps"]
        .as_vec()
        .unwrap()
        .iter()
        .filter(|st| {
            st["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact"))
        })
        .collect();
    assert_eq!(uploads.len(), 1);
    assert_eq!(s(&uploads[0]["if"]), "always()");
    // Every shell step is valid bash.
    for (_, job) in jobs {
        for step in job["steps"].as_vec().unwrap() {
            if let Some(script) = step["run"].as_str() {
                let ok = Command::new("bash")
                    .args(["-n", "-c", script])
                    .status()
                    .unwrap();
                assert!(ok.success(), "{script}");
            }
        }
    }
}

#[test]
fn the_kubernetes_job_is_indexed_with_one_n() {
    let docs = jobs_yaml();
    assert_eq!(docs.len(), 2);
    let (shards, merge) = (&docs[0], &docs[1]);
    for d in &docs {
        assert_eq!((s(&d["apiVersion"]), s(&d["kind"])), ("batch/v1", "Job"));
    }
    assert_eq!(s(&shards["spec"]["completionMode"]), "Indexed");
    let n = shards["spec"]["completions"].as_i64().unwrap();
    assert!(n >= 2);
    assert_eq!(shards["spec"]["parallelism"].as_i64(), Some(n));
    assert_eq!(container_env(shards)["SHARDS"], n.to_string());
    assert_eq!(container_env(merge)["SHARDS"], n.to_string());
    assert_eq!(
        s(&shards["spec"]["template"]["spec"]["restartPolicy"]),
        "Never"
    );
    // KVM through a device plugin; --accel auto falls back to TCG.
    assert!(!container(shards)["resources"]["limits"]["devices.kubevirt.io/kvm"].is_badvalue());
    for d in &docs {
        let ok = Command::new("sh")
            .args(["-n", "-c", &container_script(d)])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

/// Every shell script of both files.
fn all_scripts() -> Vec<String> {
    let w = workflow();
    let mut out: Vec<String> = w["jobs"]
        .as_hash()
        .unwrap()
        .values()
        .flat_map(|j| j["steps"].as_vec().unwrap().clone())
        .filter_map(|st| st["run"].as_str().map(String::from))
        .collect();
    out.extend(jobs_yaml().iter().map(container_script));
    out
}

/// Each `ktest` command in `script`: its subcommand words and its
/// `--flags`, continuation lines joined.
fn ktest_commands(script: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let joined = script.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let code = line.split(" #").next().unwrap_or(line);
        // Comments, and `cargo install ... ktest`, name ktest but do not run it.
        if code.trim_start().starts_with('#') || code.trim_start().starts_with("cargo ") {
            continue;
        }
        let words: Vec<&str> = code.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            if *w != "ktest" {
                continue;
            }
            let rest = &words[i + 1..];
            let subs: Vec<String> = rest
                .iter()
                .map(|w| w.trim_end_matches(')'))
                .take_while(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
                .map(String::from)
                .collect();
            let flags = rest
                .iter()
                .take_while(|w| !matches!(**w, "||" | "&&" | ";" | "|"))
                .filter(|w| w.starts_with("--"))
                .map(|w| w.split('=').next().unwrap().to_string())
                .collect();
            out.push((subs, flags));
        }
    }
    out
}

#[test]
fn every_ktest_command_uses_flags_ktest_has() {
    let mut seen = 0;
    for script in all_scripts() {
        for (subs, flags) in ktest_commands(&script) {
            assert!(!subs.is_empty(), "a bare ktest in {script}");
            let help = Command::new(env!("CARGO_BIN_EXE_ktest"))
                .args(&subs)
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                help.status.success(),
                "ktest {subs:?} --help: {}",
                text(&help)
            );
            let help = String::from_utf8_lossy(&help.stdout).into_owned();
            for f in &flags {
                assert!(
                    help.contains(&format!("{f} "))
                        || help.contains(&format!("{f}\n"))
                        || help.contains(&format!("{f},")),
                    "ktest {} has no {f}",
                    subs.join(" ")
                );
            }
            seen += 1;
        }
    }
    // build, run and merge in the workflow; run and merge in the Jobs.
    assert_eq!(seen, 5);
}

/// Where the local runs keep the runner's state.
struct Runner {
    root: tempfile::TempDir,
    /// What every step gets besides its own `env:`.
    env: Vec<(String, String)>,
}

impl Runner {
    fn new() -> Runner {
        let bin = Path::new(env!("CARGO_BIN_EXE_ktest")).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Runner {
            root: tempfile::tempdir().unwrap(),
            env: vec![("PATH".into(), path)],
        }
    }

    fn artifacts(&self) -> PathBuf {
        self.root.path().join("artifacts")
    }

    /// Runs job `name` of the workflow on a fresh "machine" (workspace and
    /// database of its own) as shard `shard` of `total`, with `overrides`
    /// replacing `env:` values.
    fn job(&self, w: &Yaml, name: &str, shard: i64, total: i64, overrides: &[(&str, &Path)]) {
        let ws = self.root.path().join(format!("{name}-{shard}"));
        std::fs::create_dir_all(&ws).unwrap();
        let expand = |v: &str| {
            let v = v
                .replace("${{ matrix.shard }}", &shard.to_string())
                .replace("${{ strategy.job-total }}", &total.to_string());
            assert!(
                !v.contains("${{"),
                "an expression the local run does not know: {v}"
            );
            v
        };
        let mut failed = false;
        for step in w["jobs"][name]["steps"].as_vec().unwrap() {
            if failed && step["if"].as_str() != Some("always()") {
                continue;
            }
            let with = |k: &str| step["with"][k].as_str().map(expand);
            match step["uses"].as_str() {
                Some(u) if u.starts_with("actions/checkout") => continue,
                Some(u) if u.starts_with("actions/upload-artifact") => {
                    let to = self.artifacts().join(with("name").unwrap());
                    copy_dir(&ws.join(with("path").unwrap()), &to);
                    continue;
                }
                Some(u) if u.starts_with("actions/download-artifact") => {
                    let to = ws.join(with("path").unwrap());
                    let from: Vec<PathBuf> = match (with("name"), with("pattern")) {
                        (Some(n), _) => vec![self.artifacts().join(n)],
                        (None, Some(p)) => {
                            assert_eq!(step["with"]["merge-multiple"].as_bool(), Some(true));
                            let pat = glob::Pattern::new(&p).unwrap();
                            std::fs::read_dir(self.artifacts())
                                .unwrap()
                                .flatten()
                                .filter(|e| pat.matches(&e.file_name().to_string_lossy()))
                                .map(|e| e.path())
                                .collect()
                        }
                        _ => panic!("download-artifact without name or pattern"),
                    };
                    assert!(!from.is_empty(), "nothing to download for {name}");
                    for f in from {
                        copy_dir(&f, &to);
                    }
                    continue;
                }
                Some(u) => panic!("an action the local run does not know: {u}"),
                None => {}
            }
            if s(&step["id"]).starts_with("install") {
                continue;
            }
            let mut cmd = Command::new("bash");
            cmd.args([
                "--noprofile",
                "--norc",
                "-eo",
                "pipefail",
                "-c",
                s(&step["run"]),
            ])
            .current_dir(&ws)
            .env("KTEST_DB", ws.join("state/state.db"))
            .envs(self.env.iter().map(|(k, v)| (k, v)));
            if let Some(env) = step["env"].as_hash() {
                for (k, v) in env {
                    let v = match v {
                        Yaml::Integer(i) => i.to_string(),
                        v => expand(s(v)),
                    };
                    cmd.env(s(k), v);
                }
            }
            for (k, v) in overrides {
                cmd.env(k, v);
            }
            let out = cmd.output().unwrap();
            if !out.status.success() {
                failed = true;
                eprintln!("{name} step {} failed:\n{}", s(&step["id"]), text(&out));
            }
        }
        assert!(!failed, "job {name} (shard {shard}) failed");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let ok = Command::new("cp")
        .args(["-a", "-T"])
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success(), "cp {} {}", from.display(), to.display());
}

/// Every (file name, subtest, verdict) of a JSON report, sorted.
fn merged(json: &Path) -> Vec<(String, String, String)> {
    let mut out = report_results(json);
    out.sort();
    out
}

/// Everything tests/fixtures/ci selects, each once, all passing.
fn every_ci_fixture() -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = [
        ("a.ktest", "a.ktest"),
        ("b.ktest", "b.ktest"),
        ("three.ktest", "x"),
        ("three.ktest", "y"),
        ("three.ktest", "z"),
    ]
    .iter()
    .map(|(f, n)| (f.to_string(), n.to_string(), "pass".to_string()))
    .collect();
    v.sort();
    v
}

/// The kernel tree the test kernel was built in (tests/test-kernel.sh
/// builds it with `ktest build` there: TREE/.ktest/build/HASH).
fn kernel_tree() -> PathBuf {
    let tree = kernel_dir().ancestors().nth(3).unwrap().to_path_buf();
    assert!(
        tree.join("Makefile").is_file() && kernel_dir().starts_with(tree.join(".ktest/build")),
        "KTEST_TEST_KERNEL={} is not a ktest build in a kernel tree; use tests/test-kernel.sh",
        kernel_dir().display()
    );
    tree
}

#[test]
fn the_workflows_steps_run_locally_for_two_shards() {
    let w = workflow();
    let r = Runner::new();
    let tests = repo().join("tests/fixtures/ci");
    // `ktest build` in the cached tree is the test kernel's build: no-op.
    let tree = kernel_tree();
    r.job(&w, "build", 0, 2, &[("KERNEL_TREE", &tree)]);
    let kernel = r.artifacts().join("ktest-kernel");
    assert!(kernel.join("arch/x86/boot/bzImage").is_file() && kernel.join(".config").is_file());
    for k in 1..=2 {
        r.job(&w, "shards", k, 2, &[("KTEST_TESTS", &tests)]);
    }
    r.job(&w, "merge", 0, 2, &[]);
    let out = r.artifacts().join("ktest-merged");
    assert_eq!(merged(&out.join("results.json")), every_ci_fixture());
    assert!(std::fs::read_to_string(out.join("results.xml"))
        .unwrap()
        .contains("tests=\"5\""));
    // Each shard ran a part, not the whole.
    for k in 1..=2 {
        let part = merged(
            &r.artifacts()
                .join(format!("ktest-reports-{k}/shard-{k}.json")),
        );
        assert!(!part.is_empty() && part.len() < 5, "shard {k}: {part:?}");
    }
}

#[test]
fn the_kubernetes_jobs_commands_run_locally_for_two_shards() {
    let docs = jobs_yaml();
    let reports = tempfile::tempdir().unwrap();
    let tests = repo().join("tests/fixtures/ci");
    let r = Runner::new();
    let sh = |job: &Yaml, index: Option<u32>, db: &Path| {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(container_script(job))
            .envs(container_env(job))
            .envs(r.env.iter().map(|(k, v)| (k, v)))
            .env("SHARDS", "2")
            .env("KERNEL_DIR", kernel_dir())
            .env("KTEST_TESTS", &tests)
            .env("REPORTS", reports.path())
            .env("KTEST_DB", db);
        if let Some(i) = index {
            c.env("JOB_COMPLETION_INDEX", i.to_string());
        }
        c.output().unwrap()
    };
    // Each pod is a machine of its own: its own database, so no history.
    for i in 0..2 {
        let out = sh(
            &docs[0],
            Some(i),
            &r.root.path().join(format!("pod-{i}/state.db")),
        );
        assert!(out.status.success(), "{}", text(&out));
        let status =
            std::fs::read_to_string(reports.path().join(format!("shard-{}.status", i + 1)))
                .unwrap();
        assert_eq!(status.trim(), "0");
    }
    let out = sh(&docs[1], None, &r.root.path().join("merge/state.db"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        merged(&reports.path().join("merged.json")),
        every_ci_fixture()
    );
    assert!(reports.path().join("merged.xml").is_file());
}
