//! `ktest results merge`: the JSON reports of a sharded run's parts
//! joined into one report, then written as `ktest run` writes its own.
//!
//! The parts must have been cut from one plan (`ShardPlan::plan`, the same
//! selection and durations): then they are disjoint and together the whole
//! selection. Parts of different plans, a part given twice, a missing part
//! or a subtest in two parts are refused (exit 2), so a merged report that
//! says "all passed" means every selected subtest passed.

use super::{json, Event, Reporters};
use crate::cli::MergeArgs;
use crate::error::{Code, Error, Result};
use crate::results::{RunReport, TestReport};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Reads a `--json` report back, checking its schema.
pub fn read(path: &Path) -> Result<RunReport> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::usage(format!("{}: {e}", path.display())))?;
    let bad = |why: String| Error::usage(format!("{}: {why}", path.display()));
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    match value.get("schema").and_then(|s| s.as_str()) {
        Some(json::SCHEMA) => {}
        other => {
            return Err(bad(format!(
                "schema {}, and ktest reads {} (a `ktest run --json` report)",
                other.map_or("missing".into(), |s| format!("'{s}'")),
                json::SCHEMA
            )))
        }
    }
    serde_json::from_value(value).map_err(|e| bad(format!("not a ktest report: {e}")))
}

/// The parts joined: every test file once, its subtests in the parts'
/// order; the kernel of the first part; from the earliest start to the
/// latest end. Also the warnings to print.
pub fn merge(parts: &[(PathBuf, RunReport)]) -> Result<(RunReport, Vec<String>)> {
    check_shards(parts)?;
    let mut warnings = Vec::new();
    let Some((first_path, first)) = parts.first() else {
        return Err(Error::usage("no reports to merge"));
    };
    let mut tests: Vec<TestReport> = Vec::new();
    let mut seen: Vec<(PathBuf, String, &Path)> = Vec::new();
    for (path, r) in parts {
        if r.kernel.key() != first.kernel.key() {
            warnings.push(format!(
                "{} ran another kernel than {} ({} and {}); the report names the first",
                path.display(),
                first_path.display(),
                r.kernel.key(),
                first.kernel.key()
            ));
        }
        for t in &r.tests {
            for s in &t.subtests {
                if let Some((_, _, other)) =
                    seen.iter().find(|(f, n, _)| *f == t.test && *n == s.name)
                {
                    return Err(Error::usage(format!(
                        "the parts overlap: {}:{} is in {} and {}",
                        t.test.display(),
                        s.name,
                        other.display(),
                        path.display()
                    )));
                }
                seen.push((t.test.clone(), s.name.clone(), path));
            }
            match tests.iter_mut().find(|m| m.test == t.test) {
                Some(m) => {
                    m.subtests.extend(t.subtests.iter().cloned());
                    m.console_logs.extend(t.console_logs.iter().cloned());
                }
                None => tests.push(t.clone()),
            }
        }
    }
    let start = parts.iter().map(|(_, r)| r.started_at).min().unwrap_or(0);
    let end_ms = parts
        .iter()
        .map(|(_, r)| r.started_at * 1000 + r.duration.as_millis() as i64)
        .max()
        .unwrap_or(0);
    Ok((
        RunReport {
            run_id: first.run_id.clone(),
            started_at: start,
            duration: Duration::from_millis((end_ms - start * 1000).max(0) as u64),
            kernel: first.kernel.clone(),
            tests,
            shard: None,
            target: parts.first().and_then(|(_, r)| r.target.clone()),
        },
        warnings,
    ))
}

/// Refuses parts that are not the N parts of one plan, each once.
fn check_shards(parts: &[(PathBuf, RunReport)]) -> Result<()> {
    let Some(plan) = parts.iter().find_map(|(_, r)| r.shard.as_ref()) else {
        return Ok(());
    };
    let mut got = Vec::new();
    for (path, r) in parts {
        let Some(s) = &r.shard else {
            return Err(Error::usage(format!(
                "{} is not a shard's report (no --shard), and the others are",
                path.display()
            )));
        };
        if s.count != plan.count || s.plan != plan.plan {
            return Err(Error::usage(format!(
                "{} is part {}/{} of plan {}, and the others of {}/{} plan {}: the shards saw different selections or histories, so they may overlap or leave subtests out\n  give every shard the same tests and the same results history (none, or one copy)",
                path.display(),
                s.index,
                s.count,
                s.plan,
                plan.index,
                plan.count,
                plan.plan
            )));
        }
        if got.contains(&s.index) {
            return Err(Error::usage(format!(
                "part {}/{} is given twice ({})",
                s.index,
                s.count,
                path.display()
            )));
        }
        got.push(s.index);
    }
    let missing: Vec<String> = (1..=plan.count)
        .filter(|k| !got.contains(k))
        .map(|k| format!("{k}/{}", plan.count))
        .collect();
    if !missing.is_empty() {
        return Err(Error::usage(format!(
            "the report of part {} is missing: without it the merged report would not cover the selection",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// Runs `ktest results merge`.
pub fn command(args: &MergeArgs) -> Result<Code> {
    let mut parts = Vec::new();
    for p in &args.inputs {
        parts.push((p.clone(), read(p)?));
    }
    let (report, warnings) = merge(&parts)?;
    for w in warnings {
        crate::errln!("ktest: warning: {w}");
    }
    let mut r = Reporters::default();
    if let Some(path) = &args.json {
        r.add(Box::new(json::reporter(path.clone())));
    }
    if let Some(path) = &args.junit {
        r.add(Box::new(super::junit::reporter(path.clone())));
    }
    if args.ktap {
        r.add(Box::new(super::ktap::Ktap::new()));
    }
    let style = super::terminal::Style {
        color: super::terminal::use_color(
            true,
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR"),
        ),
    };
    for l in super::terminal::summary_lines(&report, style) {
        crate::errln!("ktest: {l}");
    }
    let code = crate::outcome::exit_code(
        report
            .tests
            .iter()
            .flat_map(|t| t.subtests.iter().map(|s| s.verdict)),
        false,
    );
    r.emit(Event::RunFinished { report });
    r.finish()?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::run_report;
    use crate::results::{ShardPlan, SubtestResult, Verdict};

    /// Part `index` of `count` of plan `plan`, with `subtests` of `test`.
    fn part(
        index: u32,
        count: u32,
        plan: &str,
        test: &str,
        subtests: &[(&str, Verdict)],
    ) -> (PathBuf, RunReport) {
        let mut r = run_report();
        r.run_id = format!("20260101-12000{index}-000{index}");
        r.started_at = 1000 + i64::from(index);
        r.duration = Duration::from_secs(10);
        r.tests = vec![TestReport {
            test: PathBuf::from(test),
            subtests: subtests
                .iter()
                .map(|(n, v)| SubtestResult::new(*n, *v))
                .collect(),
            console_logs: vec![PathBuf::from(format!("/r/{index}/console.log"))],
        }];
        r.shard = Some(ShardPlan {
            index,
            count,
            plan: plan.into(),
        });
        (PathBuf::from(format!("shard-{index}.json")), r)
    }

    #[test]
    fn the_parts_of_one_file_are_joined_in_order() {
        let parts = [
            part(
                1,
                2,
                "p",
                "/t/a",
                &[("one", Verdict::Pass), ("two", Verdict::Fail)],
            ),
            part(2, 2, "p", "/t/a", &[("three", Verdict::Pass)]),
        ];
        let (m, warnings) = merge(&parts).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(m.tests.len(), 1);
        let names: Vec<&str> = m.tests[0]
            .subtests
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["one", "two", "three"]);
        assert_eq!(m.tests[0].console_logs.len(), 2);
        assert_eq!((m.started_at, m.duration), (1001, Duration::from_secs(11)));
        assert_eq!(m.shard, None);
    }

    #[test]
    fn parts_that_do_not_make_one_whole_are_refused() {
        let one = part(1, 2, "p", "/t/a", &[("x", Verdict::Pass)]);
        let two = part(2, 2, "p", "/t/a", &[("y", Verdict::Pass)]);
        let msg = |parts: &[(PathBuf, RunReport)]| merge(parts).unwrap_err().message;
        assert!(msg(std::slice::from_ref(&one)).contains("part 2/2 is missing"));
        assert!(msg(&[one.clone(), one.clone()]).contains("given twice"));
        let other_plan = part(2, 2, "q", "/t/a", &[("y", Verdict::Pass)]);
        assert!(msg(&[one.clone(), other_plan]).contains("different selections or histories"));
        let overlap = part(2, 2, "p", "/t/a", &[("x", Verdict::Pass)]);
        assert!(msg(&[one.clone(), overlap])
            .contains("overlap: /t/a:x is in shard-1.json and shard-2.json"));
        let mut plain = two.clone();
        plain.1.shard = None;
        assert!(msg(&[one.clone(), plain]).contains("not a shard's report"));
        assert!(merge(&[one, two]).is_ok());
    }

    #[test]
    fn another_kernel_is_a_warning_naming_both() {
        let one = part(1, 2, "p", "/t/a", &[("x", Verdict::Pass)]);
        let mut two = part(2, 2, "p", "/t/b", &[("y", Verdict::Pass)]);
        two.1.kernel.release = Some("6.2".into());
        let (m, warnings) = merge(&[one, two]).unwrap();
        assert_eq!(m.tests.len(), 2);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("shard-2.json ran another kernel than shard-1.json"));
    }

    #[test]
    fn a_written_report_reads_back_the_same() {
        let t = tempfile::tempdir().unwrap();
        let r = run_report();
        let path = t.path().join("r.json");
        std::fs::write(&path, json::to_json(&r).unwrap()).unwrap();
        assert_eq!(read(&path).unwrap(), r);
        std::fs::write(&path, "{\"schema\": \"other/2\"}").unwrap();
        let e = read(&path).unwrap_err();
        assert_eq!(e.code, Code::Usage);
        assert!(
            e.message
                .contains("schema 'other/2', and ktest reads ktest-results/1"),
            "{}",
            e.message
        );
        std::fs::write(&path, "<testsuites/>").unwrap();
        assert!(read(&path).unwrap_err().message.contains("not JSON"));
    }
}
