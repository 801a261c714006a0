//! `ktest results`: the last run, or one test's past results, as aligned
//! text for people or as JSON for scripts. The queries are the parent
//! module's; rendering is pure (lines in, lines out), printing is `results`.

use super::{
    by_kernel, flaky, history, last_run, split_test_subtest, subtests, tallies, utc, HistoryRow,
    KernelSummary, Scope, StoredRun, Tally,
};
use crate::cli::ResultsArgs;
use crate::error::{Code, Error, Result};
use crate::results::{counts, KernelIdentity, SubtestResult, Verdict};
use crate::state::State;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Runs `ktest results`. Exit 0 with something to show; exit 2 when the
/// history has no run at all, or nothing of the test asked for.
pub fn results(db: &Path, args: &ResultsArgs) -> Result<Code> {
    let state = State::open(db)?;
    if is_empty(&state)? {
        return Err(Error::usage(format!(
            "the results history in {} has no runs yet\n  every `ktest run` records its results there",
            db.display()
        )));
    }
    match &args.history {
        Some(arg) => show_history(&state, arg, args.limit as usize, args.json),
        None => show_last(&state, args.json),
    }
}

fn is_empty(state: &State) -> Result<bool> {
    state
        .conn()
        .query_row("SELECT NOT EXISTS (SELECT 1 FROM runs)", [], |r| r.get(0))
        .map_err(super::db)
}

fn print_json<T: Serialize>(doc: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(doc)
        .map_err(|e| Error::infra(format!("cannot write the results as JSON: {e}")))?;
    crate::outln!("{text}");
    Ok(())
}

/// `--json` without `--history`: the run in `--json`'s format, plus where
/// it ran and what was flaky in it.
#[derive(Serialize)]
struct LastRunDoc<'a> {
    #[serde(flatten)]
    run: &'a StoredRun,
    /// Its subtests and cases that passed and failed on its kernel.
    flaky: &'a [Tally],
}

fn show_last(state: &State, json: bool) -> Result<Code> {
    let here = crate::launch::start_dir().ok();
    let Some(run) = last_run(state, here.as_deref())? else {
        return Err(Error::usage("the results history has no runs yet"));
    };
    let key = run.report.kernel.key();
    let mut flaky_here = Vec::new();
    for t in &run.report.tests {
        flaky_here.extend(
            flaky(state, &t.test.to_string_lossy(), Scope::All)?
                .into_iter()
                .filter(|f| f.kernel.key() == key),
        );
    }
    if json {
        print_json(&LastRunDoc {
            run: &run,
            flaky: &flaky_here,
        })?;
    } else {
        let marks: Vec<(PathBuf, String)> = flaky_here
            .into_iter()
            .map(|f| (f.test, f.subtest))
            .collect();
        for line in render_last(&run, here.as_deref(), &marks, &|p: &Path| p.exists()) {
            crate::outln!("{line}");
        }
    }
    Ok(Code::Passed)
}

/// `--history --json`: what was asked, the results, and the per-kernel
/// summary.
#[derive(Serialize)]
struct HistoryDoc<'a> {
    test: &'a str,
    subtest: Option<&'a str>,
    results: &'a [HistoryRow],
    kernels: &'a [KernelSummary],
}

fn show_history(state: &State, arg: &str, limit: usize, json: bool) -> Result<Code> {
    let (given, subtest) = split_test_subtest(arg, |p: &Path| p.exists());
    // A file that is there is known by its canonical path, as runs record
    // it; one that is not may still be known by its file name.
    let test = Path::new(&given)
        .canonicalize()
        .map_or(given.clone(), |p| p.to_string_lossy().into_owned());
    let rows = history(state, &test, subtest.as_deref(), limit)?;
    if rows.is_empty() {
        return Err(not_found(
            &given,
            subtest.as_deref(),
            &subtests(state, &test)?,
        ));
    }
    let kernels = by_kernel(&tallies(state, &test, Scope::of(subtest.as_deref()))?);
    if json {
        print_json(&HistoryDoc {
            test: &test,
            subtest: subtest.as_deref(),
            results: &rows,
            kernels: &kernels,
        })?;
    } else {
        for line in render_history(&rows, &kernels, subtest.is_none()) {
            crate::outln!("{line}");
        }
    }
    Ok(Code::Passed)
}

/// The error for a test or subtest the history does not have: what it has
/// instead, and how to name a test.
fn not_found(test: &str, subtest: Option<&str>, known: &[String]) -> Error {
    match subtest {
        Some(s) if !known.is_empty() => Error::usage(format!(
            "{test} has no subtest '{s}' in the results history\n  its subtests: {}",
            known.join(", ")
        )),
        _ => Error::usage(format!(
            "no results for {test} in the results history\n  name the test file by its path or its file name, as `ktest results` shows it"
        )),
    }
}

/// A kernel in a few words: release, `git describe`, build hash; else the
/// image.
pub fn kernel_label(k: &KernelIdentity) -> String {
    let mut parts: Vec<String> = Vec::new();
    parts.extend(k.release.clone());
    parts.extend(k.describe.clone());
    if let Some(h) = &k.build_hash {
        parts.push(format!("build {}", h.get(..12).unwrap_or(h)));
    }
    if parts.is_empty() {
        return k.image.display().to_string();
    }
    parts.join(" ")
}

/// `2 pass, 1 fail`: the verdicts that occurred, in `Verdict::ALL` order.
fn counts_text<'a>(counts: impl IntoIterator<Item = (&'a Verdict, &'a usize)>) -> String {
    let by: BTreeMap<Verdict, usize> = counts.into_iter().map(|(v, n)| (*v, *n)).collect();
    let parts: Vec<String> = Verdict::ALL
        .iter()
        .filter_map(|v| {
            by.get(v)
                .filter(|n| **n > 0)
                .map(|n| format!("{n} {}", v.name()))
        })
        .collect();
    match parts.is_empty() {
        true => "no results".into(),
        false => parts.join(", "),
    }
}

fn seconds(ms: u128) -> String {
    format!("{}.{:02} s", ms / 1000, ms % 1000 / 10)
}

/// Rows as aligned columns two spaces apart; trailing blanks trimmed.
fn table(rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(x) => *x = (*x).max(w),
                None => widths.push(w),
            }
        }
    }
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

/// Whether a verdict counts as failed for flakiness and the failed list.
fn failed(v: Verdict) -> bool {
    matches!(v, Verdict::Fail | Verdict::Timeout | Verdict::Crash)
}

/// The last run as text: a header, then per test file one line per
/// subtest (and per KTAP case that did not pass or is flaky), its counts,
/// the failed subtests with their logs, and its console logs. `flaky`
/// holds (test, subtest path) pairs flaky on the run's kernel; `exists`
/// tells which logs are still there.
pub fn render_last(
    run: &StoredRun,
    here: Option<&Path>,
    flaky: &[(PathBuf, String)],
    exists: &dyn Fn(&Path) -> bool,
) -> Vec<String> {
    let r = &run.report;
    let mut out = vec![format!(
        "run {} at {} UTC, {}, kernel {}",
        r.run_id,
        utc(r.started_at),
        seconds(r.duration.as_millis()),
        kernel_label(&r.kernel)
    )];
    if let Some(here) = here.filter(|h| *h != run.host_dir) {
        out.push(format!(
            "(no run from {}; this one ran in {})",
            here.display(),
            run.host_dir.display()
        ));
    }
    for t in &r.tests {
        out.push(t.test.display().to_string());
        let is_flaky = |path: &str| flaky.iter().any(|(ft, s)| *ft == t.test && s == path);
        let mut rows = Vec::new();
        let mut failures: Vec<(String, Option<PathBuf>)> = Vec::new();
        fn walk(
            r: &SubtestResult,
            path: String,
            top: bool,
            is_flaky: &dyn Fn(&str) -> bool,
            rows: &mut Vec<Vec<String>>,
            failures: &mut Vec<(String, Option<PathBuf>)>,
        ) {
            let flaky = is_flaky(&path);
            if top || !r.verdict.is_ok() || flaky {
                let mut note = r.reason.clone().unwrap_or_default();
                if flaky {
                    note = format!("{note} [flaky]").trim_start().to_string();
                }
                rows.push(vec![
                    String::new(),
                    r.verdict.name().into(),
                    path.clone(),
                    seconds(r.duration.as_millis()),
                    note,
                ]);
            }
            if failed(r.verdict) && (top || r.log.is_some()) {
                failures.push((path.clone(), r.log.clone()));
            }
            for c in &r.children {
                walk(
                    c,
                    format!("{path}/{}", c.name),
                    false,
                    is_flaky,
                    rows,
                    failures,
                );
            }
        }
        for s in &t.subtests {
            walk(s, s.name.clone(), true, &is_flaky, &mut rows, &mut failures);
        }
        out.extend(table(&rows));
        let c = counts(&t.subtests);
        out.push(format!("  {}", counts_text(c.iter().map(|(v, n)| (v, n)))));
        if !failures.is_empty() {
            let names: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
            out.push(format!("  failed: {}", names.join(", ")));
            for (name, log) in &failures {
                if let Some(log) = log {
                    let gone = if exists(log) { "" } else { " (removed)" };
                    out.push(format!("    {name}: {}{gone}", log.display()));
                }
            }
        }
        for log in &t.console_logs {
            let gone = if exists(log) { "" } else { " (removed)" };
            out.push(format!("  console: {}{gone}", log.display()));
        }
    }
    out
}

/// A test's history as text: one line per result, newest first (with a
/// SUBTEST column when `per_subtest`, a TEST column when the name matched
/// several files), then one line per kernel.
pub fn render_history(
    rows: &[HistoryRow],
    kernels: &[KernelSummary],
    per_subtest: bool,
) -> Vec<String> {
    let several_tests = rows.iter().any(|r| r.test != rows[0].test);
    let mut header = vec!["RUN", "STARTED (UTC)", "VERDICT", "DURATION"];
    if several_tests {
        header.push("TEST");
    }
    if per_subtest {
        header.push("SUBTEST");
    }
    header.extend(["KERNEL", "NOTE"]);
    let mut table_rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for r in rows {
        let mut row = vec![
            r.run_id.clone(),
            utc(r.started_at),
            r.verdict.name().to_string(),
            seconds(r.duration_ms.into()),
        ];
        if several_tests {
            row.push(r.test.display().to_string());
        }
        if per_subtest {
            row.push(r.subtest.clone());
        }
        let mut note = r.reason.clone().unwrap_or_default();
        if r.flaky {
            note = format!("{note} [flaky]").trim_start().to_string();
        }
        row.extend([kernel_label(&r.kernel), note]);
        table_rows.push(row);
    }
    let mut out = table(&table_rows);
    out.push("per kernel (all results in the history):".into());
    for k in kernels {
        let mut line = format!(
            "  {}: {}; last {}",
            kernel_label(&k.kernel),
            counts_text(&k.counts),
            utc(k.last)
        );
        if !k.flaky.is_empty() {
            line.push_str(&format!("; flaky: {}", k.flaky.join(", ")));
        }
        out.push(line);
    }
    out
}
