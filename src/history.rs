//! The results history: every `ktest run` kept in the state database, and
//! the queries `ktest results` answers from it (the last run, one test's
//! past verdicts, the flaky subtests).
//!
//! Three tables (state.rs, schema version 1): `runs`, one row a run;
//! `run_tests`, its test files in order with their console logs; `results`,
//! one row a subtest or nested KTAP case, in preorder. A case's `subtest` is
//! its path `parent/child` and its `parent` the position of the row that
//! holds it, so the tree comes back exactly even when a KTAP description has
//! a `/` in it.
//!
//! Flaky means: passed and failed (fail, timeout or crash) on the same
//! kernel (`KernelIdentity::key`). The same subtest passing on one kernel
//! and failing on another is a regression or a fix, not a flake.

mod show;

pub use show::results;

use crate::error::{Error, Result};
use crate::results::{
    KernelIdentity, KernelLogFinding, RunReport, SubtestResult, TestReport, Verdict,
};
use crate::state::State;
use rusqlite::{params, OptionalExtension, Row as SqlRow, Transaction, TransactionBehavior};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How many runs the history keeps unless `.ktest.toml`'s `history_runs`
/// says otherwise. A thousand runs of a large KUnit suite stay well under
/// a gigabyte.
pub const DEFAULT_KEEP: usize = 1000;

/// A history error: what failed, and that the run itself is not at stake.
fn db(e: rusqlite::Error) -> Error {
    let e = crate::state::sql(e);
    match e.code {
        crate::error::Code::Infra => Error::infra(format!(
            "results history: {}\n  check the state database (--db, KTEST_DB)",
            e.message
        )),
        _ => e,
    }
}

/// Milliseconds as SQLite stores them.
fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds from SQLite (negative ones, which ktest never writes, as 0).
fn from_ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// One `results` row to write: a subtest or a case, flattened.
#[derive(Debug, PartialEq)]
struct Flat<'a> {
    /// Its index in the run's preorder.
    position: usize,
    /// Which of the run's test files it belongs to.
    test_position: usize,
    /// The position of the result holding it (a case's subtest).
    parent: Option<usize>,
    /// `subtest`, `subtest/case`, ...
    path: String,
    result: &'a SubtestResult,
}

/// A run's results in preorder: each subtest, then its cases.
fn flatten(report: &RunReport) -> Vec<Flat<'_>> {
    fn walk<'a>(
        out: &mut Vec<Flat<'a>>,
        test_position: usize,
        parent: Option<(usize, &str)>,
        result: &'a SubtestResult,
    ) {
        let path = match parent {
            Some((_, p)) => format!("{p}/{}", result.name),
            None => result.name.clone(),
        };
        let position = out.len();
        out.push(Flat {
            position,
            test_position,
            parent: parent.map(|(p, _)| p),
            path: path.clone(),
            result,
        });
        for child in &result.children {
            walk(out, test_position, Some((position, &path)), child);
        }
    }
    let mut out = Vec::new();
    for (i, t) in report.tests.iter().enumerate() {
        for r in &t.subtests {
            walk(&mut out, i, None, r);
        }
    }
    out
}

/// Stores a finished run, replacing a run of the same id, and keeps only
/// the newest `keep` runs (at least this one): all in one transaction, so
/// a reader never sees half a run and the history never outgrows `keep`.
pub fn record(state: &State, report: &RunReport, host_dir: &Path, keep: usize) -> Result<()> {
    let tx =
        Transaction::new_unchecked(state.conn(), TransactionBehavior::Immediate).map_err(db)?;
    write_run(&tx, report, host_dir).map_err(db)?;
    prune(&tx, keep.max(1)).map_err(db)?;
    tx.commit().map_err(db)
}

fn json<T: Serialize>(v: &T) -> rusqlite::Result<String> {
    serde_json::to_string(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn write_run(tx: &Transaction, report: &RunReport, host_dir: &Path) -> rusqlite::Result<()> {
    let k = &report.kernel;
    tx.execute("DELETE FROM runs WHERE id = ?1", [&report.run_id])?;
    tx.execute(
        "INSERT INTO runs (id, started_at, duration_ms, kernel_release, kernel_build_hash,
                           kernel_describe, kernel_key, kernel_image, host_dir, target)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            report.run_id,
            report.started_at,
            ms(report.duration),
            k.release,
            k.build_hash,
            k.describe,
            k.key(),
            text(&k.image),
            text(host_dir),
            report.target
        ],
    )?;
    let mut test_row = tx.prepare(
        "INSERT INTO run_tests (run_id, position, test, console_logs) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (i, t) in report.tests.iter().enumerate() {
        test_row.execute(params![
            report.run_id,
            i,
            text(&t.test),
            json(&t.console_logs)?
        ])?;
    }
    let mut result_row = tx.prepare(
        "INSERT INTO results (run_id, position, test_position, parent, test, test_name, subtest,
                              verdict, reason, duration_ms, log_path, findings)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    for f in flatten(report) {
        let test = &report.tests[f.test_position].test;
        let r = f.result;
        let findings = match r.findings.is_empty() {
            true => None,
            false => Some(json(&r.findings)?),
        };
        result_row.execute(params![
            report.run_id,
            f.position,
            f.test_position,
            f.parent,
            text(test),
            test.file_name().map(|n| n.to_string_lossy().into_owned()),
            f.path,
            r.verdict.name(),
            r.reason,
            ms(r.duration),
            r.log.as_deref().map(text),
            findings
        ])?;
    }
    Ok(())
}

/// Deletes all but the newest `keep` runs; their results go with them
/// (ON DELETE CASCADE).
fn prune(tx: &Transaction, keep: usize) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM runs WHERE id IN
           (SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT -1 OFFSET ?1)",
        [i64::try_from(keep).unwrap_or(i64::MAX)],
    )?;
    Ok(())
}

/// A run read back from the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredRun {
    /// The directory ktest ran in.
    pub host_dir: PathBuf,
    /// The run, as the runner reported it.
    #[serde(flatten)]
    pub report: RunReport,
}

/// The columns of `runs` that make a `KernelIdentity`, from index `at`.
fn kernel_at(r: &SqlRow, at: usize) -> rusqlite::Result<KernelIdentity> {
    Ok(KernelIdentity {
        release: r.get(at)?,
        build_hash: r.get(at + 1)?,
        describe: r.get(at + 2)?,
        image: PathBuf::from(r.get::<_, String>(at + 3)?),
    })
}

const KERNEL_COLUMNS: &str =
    "k.kernel_release, k.kernel_build_hash, k.kernel_describe, k.kernel_image";

/// The newest run, preferring the newest of those ktest ran in `dir`.
pub fn last_run(state: &State, dir: Option<&Path>) -> Result<Option<StoredRun>> {
    let conn = state.conn();
    // One snapshot, so that a run recorded meanwhile cannot mix in.
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Deferred).map_err(db)?;
    let newest = |filter: &str, arg: Option<String>| {
        tx.query_row(
            &format!(
                "SELECT k.id, k.started_at, k.duration_ms, {KERNEL_COLUMNS}, k.host_dir, k.target
                 FROM runs k {filter} ORDER BY k.started_at DESC, k.id DESC LIMIT 1"
            ),
            rusqlite::params_from_iter(arg),
            |r| {
                Ok(StoredRun {
                    host_dir: PathBuf::from(r.get::<_, String>(7)?),
                    report: RunReport {
                        run_id: r.get(0)?,
                        started_at: r.get(1)?,
                        duration: from_ms(r.get(2)?),
                        kernel: kernel_at(r, 3)?,
                        tests: Vec::new(),
                        shard: None,
                        target: r.get(8)?,
                    },
                })
            },
        )
        .optional()
    };
    let here = match dir {
        Some(d) => newest("WHERE k.host_dir = ?1", Some(text(d))).map_err(db)?,
        None => None,
    };
    let Some(mut run) = (match here {
        Some(r) => Some(r),
        None => newest("", None).map_err(db)?,
    }) else {
        return Ok(None);
    };
    run.report.tests = load_tests(&tx, &run.report.run_id).map_err(db)?;
    Ok(Some(run))
}

/// A `results` row read back, before it is put into its tree.
struct Loaded {
    position: i64,
    test_position: usize,
    parent: Option<i64>,
    path: String,
    result: SubtestResult,
}

/// The test files of run `id`, with their result trees.
fn load_tests(tx: &Transaction, id: &str) -> rusqlite::Result<Vec<TestReport>> {
    let mut tests: Vec<TestReport> = tx
        .prepare("SELECT test, console_logs FROM run_tests WHERE run_id = ?1 ORDER BY position")?
        .query_map([id], |r| {
            let logs: String = r.get(1)?;
            Ok(TestReport {
                test: PathBuf::from(r.get::<_, String>(0)?),
                subtests: Vec::new(),
                // A list ktest wrote; unreadable, it is only a list of logs.
                console_logs: serde_json::from_str(&logs).unwrap_or_default(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let rows: Vec<Loaded> = tx
        .prepare(
            "SELECT position, test_position, parent, subtest, verdict, reason, duration_ms,
                    log_path, findings
             FROM results WHERE run_id = ?1 ORDER BY position",
        )?
        .query_map([id], |r| {
            let verdict: String = r.get(4)?;
            let findings: Option<String> = r.get(8)?;
            let path: String = r.get(3)?;
            Ok(Loaded {
                position: r.get(0)?,
                test_position: r.get(1)?,
                parent: r.get(2)?,
                result: SubtestResult {
                    name: path.clone(),
                    // Only ktest writes verdicts; an unknown one is from a
                    // newer ktest, and "fail" is the safe reading.
                    verdict: Verdict::from_name(&verdict).unwrap_or(Verdict::Fail),
                    reason: r.get(5)?,
                    duration: from_ms(r.get(6)?),
                    log: r.get::<_, Option<String>>(7)?.map(PathBuf::from),
                    findings: findings
                        .and_then(|f| serde_json::from_str::<Vec<KernelLogFinding>>(&f).ok())
                        .unwrap_or_default(),
                    children: Vec::new(),
                },
                path,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (test_position, result) in build_trees(rows) {
        if let Some(t) = tests.get_mut(test_position) {
            t.subtests.push(result);
        }
    }
    Ok(tests)
}

/// Puts preorder rows back into trees: the top-level results, in order,
/// each with the test position it belongs to. A row whose parent is
/// missing counts as top-level.
fn build_trees(rows: Vec<Loaded>) -> Vec<(usize, SubtestResult)> {
    let paths: BTreeMap<i64, String> = rows.iter().map(|r| (r.position, r.path.clone())).collect();
    let mut pending: BTreeMap<i64, SubtestResult> = BTreeMap::new();
    let mut tops = Vec::new();
    // Last to first: a row's cases, which follow it, are complete when
    // it is reached.
    for mut row in rows.into_iter().rev() {
        if let Some(mut done) = pending.remove(&row.position) {
            done.children.reverse();
            row.result.children = done.children;
        }
        match row.parent.and_then(|p| Some((p, paths.get(&p)?))) {
            Some((p, parent_path)) => {
                if let Some(name) = row
                    .path
                    .strip_prefix(parent_path.as_str())
                    .and_then(|n| n.strip_prefix('/'))
                {
                    row.result.name = name.to_string();
                }
                pending
                    .entry(p)
                    .or_insert_with(|| SubtestResult::new("", Verdict::Pass))
                    .children
                    .push(row.result);
            }
            None => tops.push((row.test_position, row.result)),
        }
    }
    tops.reverse();
    tops
}

/// One past result of a subtest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRow {
    /// The run it came from.
    pub run_id: String,
    /// When that run started, seconds since the Unix epoch.
    pub started_at: i64,
    /// The kernel it ran on.
    pub kernel: KernelIdentity,
    /// The test file (canonical path).
    pub test: PathBuf,
    /// The subtest's path (`subtest` or `subtest/case`).
    pub subtest: String,
    /// How it ended.
    pub verdict: Verdict,
    /// Why, when not a plain pass.
    pub reason: Option<String>,
    /// Its wall time, in milliseconds.
    pub duration_ms: u64,
    /// Its log (removed by now if the run is older than `.ktest/runs` keeps).
    pub log: Option<PathBuf>,
    /// It both passed and failed on this kernel.
    pub flaky: bool,
}

/// Which of a test's results a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Its top-level subtests.
    Top,
    /// One subtest or case, by path.
    Exact(&'a str),
    /// Every subtest and case.
    All,
}

impl<'a> Scope<'a> {
    /// `subtest` if given, else the top-level subtests.
    pub fn of(subtest: Option<&'a str>) -> Scope<'a> {
        subtest.map_or(Scope::Top, Scope::Exact)
    }

    /// The SQL condition selecting `results r` of test `?1` (its canonical
    /// path or its file name) in this scope, and the value for `?2` (each
    /// condition names it, as SQLite wants every parameter used).
    fn sql(self) -> (&'static str, Option<&'a str>) {
        match self {
            Scope::Top => (
                "(r.test = ?1 OR r.test_name = ?1) AND r.parent IS NULL AND ?2 IS NULL",
                None,
            ),
            Scope::Exact(s) => (
                "(r.test = ?1 OR r.test_name = ?1) AND r.subtest = ?2",
                Some(s),
            ),
            Scope::All => ("(r.test = ?1 OR r.test_name = ?1) AND ?2 IS NULL", None),
        }
    }
}

/// The newest `limit` results of `test`'s `subtest` (its top-level
/// subtests if `None`), newest first. `test` is a canonical path or a file
/// name.
pub fn history(
    state: &State,
    test: &str,
    subtest: Option<&str>,
    limit: usize,
) -> Result<Vec<HistoryRow>> {
    let scope = Scope::of(subtest);
    let tx = Transaction::new_unchecked(state.conn(), TransactionBehavior::Deferred).map_err(db)?;
    let flaky: Vec<(PathBuf, String, String)> = tallies_in(&tx, test, scope)?
        .into_iter()
        .filter(Tally::is_flaky)
        .map(|t| (t.test, t.subtest, t.kernel.key()))
        .collect();
    let (selected, param) = scope.sql();
    let mut stmt = tx
        .prepare(&format!(
            "SELECT r.run_id, k.started_at, {KERNEL_COLUMNS}, r.test, r.subtest, r.verdict,
                    r.reason, r.duration_ms, r.log_path
             FROM results r JOIN runs k ON k.id = r.run_id
             WHERE {selected}
             ORDER BY k.started_at DESC, k.id DESC, r.position
             LIMIT ?3"
        ))
        .map_err(db)?;
    let rows = stmt
        .query_map(
            params![test, param, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                let verdict: String = r.get(8)?;
                Ok(HistoryRow {
                    run_id: r.get(0)?,
                    started_at: r.get(1)?,
                    kernel: kernel_at(r, 2)?,
                    test: PathBuf::from(r.get::<_, String>(6)?),
                    subtest: r.get(7)?,
                    verdict: Verdict::from_name(&verdict).unwrap_or(Verdict::Fail),
                    reason: r.get(9)?,
                    duration_ms: u64::try_from(r.get::<_, i64>(10)?).unwrap_or(0),
                    log: r.get::<_, Option<String>>(11)?.map(PathBuf::from),
                    flaky: false,
                })
            },
        )
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    Ok(rows
        .into_iter()
        .map(|mut row| {
            let key = row.kernel.key();
            row.flaky = flaky
                .iter()
                .any(|(t, s, k)| *t == row.test && *s == row.subtest && *k == key);
            row
        })
        .collect())
}

/// How often one subtest ended each way on one kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// The test file.
    pub test: PathBuf,
    /// The subtest's path.
    pub subtest: String,
    /// The kernel, as its newest run recorded it.
    pub kernel: KernelIdentity,
    /// When it last ran on this kernel, seconds since the Unix epoch.
    pub last: i64,
    /// Results per verdict, every verdict present.
    pub counts: BTreeMap<Verdict, usize>,
}

impl Tally {
    /// How many times it passed.
    pub fn passed(&self) -> usize {
        self.counts.get(&Verdict::Pass).copied().unwrap_or(0)
    }

    /// How many times it failed, timed out or crashed the kernel.
    pub fn failed(&self) -> usize {
        [Verdict::Fail, Verdict::Timeout, Verdict::Crash]
            .iter()
            .filter_map(|v| self.counts.get(v))
            .sum()
    }

    /// Whether it both passed and failed on this kernel.
    pub fn is_flaky(&self) -> bool {
        self.passed() > 0 && self.failed() > 0
    }
}

/// Per subtest and kernel, how `test`'s results in `scope` ended. `test`
/// is a canonical path or a file name.
pub fn tallies(state: &State, test: &str, scope: Scope) -> Result<Vec<Tally>> {
    let tx = Transaction::new_unchecked(state.conn(), TransactionBehavior::Deferred).map_err(db)?;
    tallies_in(&tx, test, scope)
}

fn tallies_in(tx: &Transaction, test: &str, scope: Scope) -> Result<Vec<Tally>> {
    let sums: Vec<String> = Verdict::ALL
        .iter()
        .map(|v| format!("SUM(r.verdict = '{}')", v.name()))
        .collect();
    let (selected, param) = scope.sql();
    // SQLite takes the bare kernel columns from the row MAX() picked: the
    // kernel as its newest run recorded it.
    let sql = format!(
        "SELECT r.test, r.subtest, MAX(k.started_at), {KERNEL_COLUMNS}, {}
         FROM results r JOIN runs k ON k.id = r.run_id
         WHERE {selected}
         GROUP BY r.test, r.subtest, k.kernel_key
         ORDER BY r.test, MIN(r.position), r.subtest, MAX(k.started_at) DESC",
        sums.join(", ")
    );
    let mut stmt = tx.prepare(&sql).map_err(db)?;
    let rows = stmt
        .query_map(params![test, param], |r| {
            let mut counts = BTreeMap::new();
            for (i, v) in Verdict::ALL.iter().enumerate() {
                let n: i64 = r.get(7 + i)?;
                counts.insert(*v, usize::try_from(n).unwrap_or(0));
            }
            Ok(Tally {
                test: PathBuf::from(r.get::<_, String>(0)?),
                subtest: r.get(1)?,
                last: r.get(2)?,
                kernel: kernel_at(r, 3)?,
                counts,
            })
        })
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    Ok(rows)
}

/// The flaky subtests of `test` (a canonical path or a file name) in
/// `scope`: those that passed and failed on one same kernel, once per
/// kernel.
pub fn flaky(state: &State, test: &str, scope: Scope) -> Result<Vec<Tally>> {
    let mut t = tallies(state, test, scope)?;
    t.retain(Tally::is_flaky);
    Ok(t)
}

/// What one kernel made of a selection of results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelSummary {
    /// The kernel.
    pub kernel: KernelIdentity,
    /// When the selection last ran on it.
    pub last: i64,
    /// Results per verdict.
    pub counts: BTreeMap<Verdict, usize>,
    /// The subtests that were flaky on it.
    pub flaky: Vec<String>,
}

/// Tallies grouped by kernel, the kernel used last first.
pub fn by_kernel(tallies: &[Tally]) -> Vec<KernelSummary> {
    let mut out: Vec<KernelSummary> = Vec::new();
    for t in tallies {
        let key = t.kernel.key();
        let i = match out.iter().position(|s| s.kernel.key() == key) {
            Some(i) => i,
            None => {
                out.push(KernelSummary {
                    kernel: t.kernel.clone(),
                    last: t.last,
                    counts: Verdict::ALL.iter().map(|v| (*v, 0)).collect(),
                    flaky: Vec::new(),
                });
                out.len() - 1
            }
        };
        let s = &mut out[i];
        if t.last > s.last {
            s.last = t.last;
            s.kernel = t.kernel.clone();
        }
        for (v, n) in &t.counts {
            *s.counts.entry(*v).or_insert(0) += n;
        }
        if t.is_flaky() && !s.flaky.contains(&t.subtest) {
            s.flaky.push(t.subtest.clone());
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.last));
    out
}

/// The subtests `test` has in the history: top-level names, in the order
/// of their newest run, then older ones.
pub fn subtests(state: &State, test: &str) -> Result<Vec<String>> {
    state
        .conn()
        .prepare(
            "SELECT r.subtest FROM results r JOIN runs k ON k.id = r.run_id
             WHERE (r.test = ?1 OR r.test_name = ?1) AND r.parent IS NULL
             GROUP BY r.subtest ORDER BY MAX(k.started_at) DESC, MIN(r.position)",
        )
        .and_then(|mut s| {
            s.query_map([test], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(db)
}

/// `TEST[:SUBTEST]` as `ktest results --history` takes it: the test as
/// given, and the subtest path if there is one.
///
/// Subtest names never hold a `:` but test paths and KTAP case names may.
/// The whole, if it is an existing file, is the test. Else the last `:`
/// whose left side is an existing file splits, if a subtest name follows
/// it, optionally with `/` and a case path; else the last `:` followed by
/// a plain subtest name (`dir:x/t.sh` stays whole: `x/t.sh` reads as a
/// path, not as subtest `x`'s case).
pub fn split_test_subtest(arg: &str, exists: impl Fn(&Path) -> bool) -> (String, Option<String>) {
    if exists(Path::new(arg)) {
        return (arg.to_string(), None);
    }
    let valid = crate::suite::valid_name;
    let is_case_path = |s: &str| {
        s.split_once('/')
            .is_some_and(|(first, rest)| valid(first) && !rest.is_empty())
    };
    let mut splits = arg
        .rmatch_indices(':')
        .map(|(i, _)| (&arg[..i], &arg[i + 1..]))
        .filter(|(test, _)| !test.is_empty());
    let chosen = splits
        .clone()
        .find(|(test, sub)| (valid(sub) || is_case_path(sub)) && exists(Path::new(test)))
        .or_else(|| splits.find(|(_, sub)| valid(sub)));
    match chosen {
        Some((test, sub)) => (test.to_string(), Some(sub.to_string())),
        None => (arg.to_string(), None),
    }
}

/// `secs` since the Unix epoch as UTC `YYYY-MM-DD HH:MM:SS` (a time
/// chrono cannot represent as the number).
pub fn utc(secs: i64) -> String {
    match chrono::DateTime::from_timestamp(secs, 0) {
        Some(t) if (0..=253_402_300_799).contains(&secs) => {
            t.format("%Y-%m-%d %H:%M:%S").to_string()
        }
        _ => format!("@{secs}"),
    }
}

#[cfg(test)]
mod tests;

/// How many past results of a subtest `durations` looks at.
const DURATION_SAMPLES: usize = 5;

/// What each subtest of `test` took lately: the median of its last few
/// results that ran (not `notrun`), for the scheduler. Subtests without a
/// result are missing from the map.
pub fn durations(state: &State, test: &Path) -> Result<BTreeMap<String, Duration>> {
    let mut stmt = state
        .conn()
        .prepare(
            "SELECT r.subtest, r.duration_ms FROM results r JOIN runs k ON k.id = r.run_id
             WHERE r.test = ?1 AND r.parent IS NULL AND r.verdict != 'notrun'
             ORDER BY k.started_at DESC, k.id DESC",
        )
        .map_err(db)?;
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let rows = stmt
        .query_map([text(test)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(db)?;
    for row in rows {
        let (subtest, ms) = row.map_err(db)?;
        let samples = seen.entry(subtest).or_default();
        if samples.len() < DURATION_SAMPLES {
            samples.push(u64::try_from(ms).unwrap_or(0));
        }
    }
    Ok(seen
        .into_iter()
        .map(|(name, mut ms)| {
            ms.sort_unstable();
            (name, Duration::from_millis(ms[ms.len() / 2]))
        })
        .collect())
}
