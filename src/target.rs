//! Targets: the kernels a `.ktest.toml` names (`[target.NAME]`), each a
//! tree (at a revision, or as it is), a prebuilt or distribution kernel, with
//! a variant and an architecture, and the tests to run on it.
//! `ktest run --target NAME` runs one, `--all-targets` all, and the summary
//! is a target x test table. docs/targets.md describes them.

use crate::arch::Arch;
use crate::cli::RunArgs;
use crate::config_file::absolute;
use crate::error::{Code, Error, Result};
use crate::results::{RunReport, Verdict};
use crate::variant::Variants;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A `[target.NAME]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    kernel: Option<PathBuf>,
    modules: Option<PathBuf>,
    kernel_src: Option<PathBuf>,
    rev: Option<String>,
    variant: Option<String>,
    arch: Option<String>,
    root: Option<String>,
    tests: Option<Vec<PathBuf>>,
}

/// Where a target's kernel comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelFrom {
    /// Built from a tree (the run's, when `None`), at a revision when one
    /// is given (checked out in a worktree under the tree's `.ktest/rev`).
    Tree {
        src: Option<PathBuf>,
        rev: Option<String>,
    },
    /// A prebuilt kernel or `host`, as `--kernel` takes it.
    Given {
        kernel: PathBuf,
        modules: Option<PathBuf>,
    },
}

/// One target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub kernel: KernelFrom,
    pub variants: Variants,
    pub arch: Option<&'static Arch>,
    /// The root, as `--root` takes it (paths made absolute).
    pub root: Option<String>,
    /// The tests (paths made absolute; `:GLOB` kept); empty: the command
    /// line's.
    pub tests: Vec<PathBuf>,
}

impl Target {
    /// Checks a table and makes its paths absolute against the file's
    /// directory.
    pub fn from_raw(name: &str, raw: RawTarget, dir: &Path) -> std::result::Result<Target, String> {
        let named = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !named {
            return Err("a target's name is letters, digits, '-', '_' and '.'".into());
        }
        let kernel = match (raw.kernel, raw.kernel_src, raw.rev) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(
                    "give kernel (a prebuilt kernel), or kernel_src and rev (a tree), not both"
                        .into(),
                )
            }
            (Some(k), None, None) => KernelFrom::Given {
                kernel: if k == Path::new("host") {
                    k
                } else {
                    absolute(dir, k)
                },
                modules: raw.modules.map(|m| absolute(dir, m)),
            },
            (None, src, rev) => {
                if raw.modules.is_some() {
                    return Err("modules goes with kernel (a prebuilt kernel)".into());
                }
                if rev.as_deref().is_some_and(|r| r.trim().is_empty()) {
                    return Err("rev is empty".into());
                }
                KernelFrom::Tree {
                    src: src.map(|s| absolute(dir, s)),
                    rev,
                }
            }
        };
        let variants = Variants::parse(&raw.variant.into_iter().collect::<Vec<_>>())
            .map_err(|e| format!("variant: {e}"))?;
        let arch = raw
            .arch
            .map(|a| crate::arch::parse(&a).map_err(|e| format!("arch: {e}")))
            .transpose()?;
        let root = raw.root.map(|r| {
            if r == "host" {
                r
            } else {
                absolute(dir, PathBuf::from(&r)).display().to_string()
            }
        });
        let tests = raw
            .tests
            .unwrap_or_default()
            .iter()
            .map(|t| absolute(dir, t.clone()))
            .collect();
        Ok(Target {
            name: name.to_string(),
            kernel,
            variants,
            arch,
            root,
            tests,
        })
    }
}

/// The targets a run selects, in the file's (name) order.
pub fn select<'a>(
    all: &'a [Target],
    names: &[String],
    every: bool,
) -> std::result::Result<Vec<&'a Target>, String> {
    if all.is_empty() {
        return Err("no targets: .ktest.toml has no [target.NAME] tables".into());
    }
    if every {
        return Ok(all.iter().collect());
    }
    let mut out = Vec::new();
    for n in names {
        let t = all.iter().find(|t| t.name == *n).ok_or_else(|| {
            format!(
                "no target '{n}' in .ktest.toml (it has {})",
                all.iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// `FILE` for target `name` when several targets write reports:
/// `results.json` becomes `results.NAME.json`.
pub fn report_path(path: &Path, name: &str, several: bool) -> PathBuf {
    if !several {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let file = match path.extension() {
        Some(ext) => format!("{stem}.{name}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{name}"),
    };
    path.with_file_name(file)
}

/// The `ktest run` of one target: the command line's options with the
/// target's kernel, variant, architecture, root and tests over them.
/// `tree` is the tree to build (a revision's worktree), when the target
/// builds one.
pub fn run_args(base: &RunArgs, t: &Target, tree: Option<PathBuf>, several: bool) -> RunArgs {
    let mut a = base.clone();
    a.target = Vec::new();
    a.all_targets = false;
    match &t.kernel {
        KernelFrom::Given { kernel, modules } => {
            a.kernel = Some(kernel.clone());
            a.modules = modules.clone();
        }
        KernelFrom::Tree { src, .. } => {
            a.kernel = None;
            a.modules = None;
            if let Some(s) = tree.or_else(|| src.clone()) {
                a.build.kernel_src = Some(s);
            }
        }
    }
    if !t.variants.is_empty() {
        a.build.variants = vec![t.variants.to_string()];
    }
    if t.arch.is_some() {
        a.build.arch = t.arch;
    }
    if t.root.is_some() {
        a.root = t.root.clone();
    }
    if !t.tests.is_empty() && base.tests.is_empty() {
        a.tests = t.tests.clone();
    }
    a.json = base
        .json
        .as_deref()
        .map(|p| report_path(p, &t.name, several));
    a.junit = base
        .junit
        .as_deref()
        .map(|p| report_path(p, &t.name, several));
    a
}

/// One cell of the table: how a test file did on a target.
fn cell(subtests: &[crate::results::SubtestResult]) -> String {
    let n = subtests.len();
    let worst = subtests
        .iter()
        .map(|s| s.verdict)
        .filter(|v| !v.is_ok())
        .max_by_key(|v| match v {
            Verdict::Crash => 4,
            Verdict::Timeout => 3,
            Verdict::Fail => 2,
            _ => 1,
        });
    match worst {
        None => format!("pass {n}/{n}"),
        Some(v) => {
            let bad = subtests.iter().filter(|s| s.verdict == v).count();
            format!("{} {bad}/{n}", v.name())
        }
    }
}

/// What one target's run gave: its report, or the error that stopped it.
pub enum TargetOutcome {
    Ran(Code, Box<RunReport>),
    Failed(Error),
}

/// The target x test table: a row per target, a column per test file
/// (by file name), `pass 3/3`, `fail 1/3`, ..., or the target's error.
pub fn table(rows: &[(String, TargetOutcome)]) -> String {
    let name = |p: &Path| {
        p.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    };
    let mut tests: Vec<String> = Vec::new();
    for (_, o) in rows {
        if let TargetOutcome::Ran(_, r) = o {
            for t in &r.tests {
                let n = name(&t.test);
                if !tests.contains(&n) {
                    tests.push(n);
                }
            }
        }
    }
    let mut grid: Vec<Vec<String>> = vec![std::iter::once("target".to_string())
        .chain(tests.iter().cloned())
        .collect()];
    for (target, o) in rows {
        let mut line = vec![target.clone()];
        match o {
            TargetOutcome::Ran(_, r) => {
                for t in &tests {
                    line.push(
                        r.tests
                            .iter()
                            .find(|x| name(&x.test) == *t)
                            .map_or("-".into(), |x| cell(&x.subtests)),
                    );
                }
            }
            TargetOutcome::Failed(e) => {
                line.push(format!(
                    "error (exit {}): {}",
                    e.code.status(),
                    e.message.lines().next().unwrap_or("")
                ));
            }
        }
        grid.push(line);
    }
    let columns = grid.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            grid.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    grid.iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(c, s)| {
                    if c + 1 == r.len() {
                        s.clone()
                    } else {
                        format!("{s:<w$}", w = widths[c])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The tree a target builds: a worktree at its revision (made once under
/// the tree's `.ktest/rev/COMMIT`, reused after), or the tree as it is.
fn tree_for(t: &Target) -> Result<Option<PathBuf>> {
    let KernelFrom::Tree {
        src,
        rev: Some(rev),
    } = &t.kernel
    else {
        return Ok(None);
    };
    let cwd =
        std::env::current_dir().map_err(|e| Error::infra(format!("current directory: {e}")))?;
    let top = crate::git::toplevel(src.as_deref().unwrap_or(&cwd))?;
    let commit = crate::git::commit(&top, rev, &format!("target.{}: rev", t.name))?;
    let dir = top.join(".ktest").join("rev");
    crate::launch::create_private_dir(&dir)?;
    let wt = dir.join(&commit[..12]);
    crate::git::ensure_worktree(&top, &wt, &commit, &format!("target {}", t.name))?;
    // The worktree is ktest's, named by its commit: put it back there if
    // someone moved it.
    if crate::git::commit(&wt, "HEAD", "the worktree's HEAD")? != commit {
        crate::git::checkout(&wt, &commit)?;
    }
    Ok(Some(wt))
}

/// Runs `ktest run --target ...` / `--all-targets`: each target in turn,
/// then the table. A target that fails to build or prepare is a cell of
/// the table, and the others still run.
pub fn run_all(db: &Path, args: &RunArgs) -> Result<Code> {
    let file = crate::config_file::get()?;
    let chosen = select(&file.targets, &args.target, args.all_targets).map_err(Error::usage)?;
    let several = chosen.len() > 1;
    if several && args.ktap {
        return Err(Error::usage(
            "--ktap prints one KTAP document on stdout: give it one target",
        ));
    }
    if let Some(t) = chosen
        .iter()
        .find(|t| t.tests.is_empty() && args.tests.is_empty())
    {
        return Err(Error::usage(format!(
            "target {} names no tests (tests = [...] in .ktest.toml) and none were given",
            t.name
        )));
    }
    let mut rows = Vec::new();
    for t in chosen {
        crate::errln!("ktest: target {}", t.name);
        let outcome = tree_for(t).and_then(|tree| {
            crate::run::run_reporting(db, &run_args(args, t, tree, several), Some(&t.name))
        });
        let outcome = match outcome {
            Ok((code, Some(report))) => TargetOutcome::Ran(code, Box::new(report)),
            // --dry-run: the command lines were printed; no table.
            Ok((_, None)) => continue,
            Err(e) if e.code == Code::Interrupted => return Err(e),
            Err(e) => {
                crate::errln!("ktest: target {}: {e}", t.name);
                TargetOutcome::Failed(e)
            }
        };
        rows.push((t.name.clone(), outcome));
    }
    crate::errln!("ktest: targets:\n{}", table(&rows));
    Ok(crate::outcome::gravest(rows.iter().map(|(_, o)| match o {
        TargetOutcome::Ran(c, _) => *c,
        TargetOutcome::Failed(e) => e.code,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> std::result::Result<Target, String> {
        let r: RawTarget = toml::from_str(text).map_err(|e| e.to_string())?;
        Target::from_raw("t", r, Path::new("/proj"))
    }

    #[test]
    fn tables_read_into_kernels_and_paths_are_the_files() {
        let t = raw(
            "kernel = \"k/bzImage\"\nmodules = \"m\"\ntests = [\"a.ktest\", \"/x/b.ktest:s*\"]\n",
        )
        .unwrap();
        assert_eq!(
            t.kernel,
            KernelFrom::Given {
                kernel: "/proj/k/bzImage".into(),
                modules: Some("/proj/m".into())
            }
        );
        assert_eq!(
            t.tests,
            [PathBuf::from("/proj/a.ktest"), "/x/b.ktest:s*".into()]
        );
        let t = raw("kernel = \"host\"\n").unwrap();
        assert!(
            matches!(t.kernel, KernelFrom::Given { kernel, .. } if kernel == Path::new("host"))
        );
        let t =
            raw("rev = \"v6.1\"\nvariant = \"lockdep,kasan\"\narch = \"arm64\"\nroot = \"img\"\n")
                .unwrap();
        assert_eq!(
            t.kernel,
            KernelFrom::Tree {
                src: None,
                rev: Some("v6.1".into())
            }
        );
        assert_eq!(t.variants.to_string(), "kasan,lockdep");
        assert_eq!(t.arch.map(|a| a.name), Some("arm64"));
        assert_eq!(t.root.as_deref(), Some("/proj/img"));
        for (bad, why) in [
            ("kernel = \"k\"\nrev = \"v1\"\n", "not both"),
            ("modules = \"m\"\n", "modules goes with kernel"),
            ("variant = \"kasn\"\n", "unknown variant"),
            ("arch = \"mips\"\n", "arch"),
            ("kernal = \"k\"\n", "unknown field"),
        ] {
            let e = raw(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = Target::from_raw("a b", RawTarget::default(), Path::new("/")).unwrap_err();
        assert!(e.contains("name"), "{e}");
    }

    #[test]
    fn selection_and_report_names() {
        let all: Vec<Target> = ["a", "b"]
            .iter()
            .map(|n| Target::from_raw(n, RawTarget::default(), Path::new("/")).unwrap())
            .collect();
        let names = |v: Vec<&Target>| v.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(select(&all, &[], true).unwrap()), ["a", "b"]);
        assert_eq!(
            names(select(&all, &["b".into(), "b".into()], false).unwrap()),
            ["b"]
        );
        assert!(select(&all, &["c".into()], false)
            .unwrap_err()
            .contains("it has a, b"));
        assert!(select(&[], &[], true).unwrap_err().contains("no targets"));
        assert_eq!(
            report_path(Path::new("/o/r.json"), "kasan", true),
            Path::new("/o/r.kasan.json")
        );
        assert_eq!(
            report_path(Path::new("/o/r"), "x", true),
            Path::new("/o/r.x")
        );
        assert_eq!(
            report_path(Path::new("/o/r.json"), "x", false),
            Path::new("/o/r.json")
        );
    }

    #[test]
    fn the_table_has_a_row_per_target_and_a_column_per_test() {
        let mut passing = crate::report::fixtures::passing_report();
        passing.tests.truncate(1);
        let failing = crate::report::fixtures::run_report();
        let rows = vec![
            (
                "plain".to_string(),
                TargetOutcome::Ran(Code::Passed, Box::new(passing)),
            ),
            (
                "kasan".to_string(),
                TargetOutcome::Ran(Code::TestFailed, Box::new(failing)),
            ),
            (
                "old".to_string(),
                TargetOutcome::Failed(Error::new(Code::BuildFailed, "kernel build failed\n  more")),
            ),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("target"), "{t}");
        assert!(
            lines[1].starts_with("plain ") && lines[1].contains("pass "),
            "{t}"
        );
        assert!(
            lines[2].starts_with("kasan ") && lines[2].contains("crash 1/8"),
            "{t}"
        );
        assert!(
            lines[1].contains(" -"),
            "a test the target did not run: {t}"
        );
        assert!(
            lines[3].contains("error (exit 6): kernel build failed"),
            "{t}"
        );
        assert!(!lines[3].contains("more"), "{t}");
    }
}
