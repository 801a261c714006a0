//! A bisection and its steps in the state database, so an interrupted
//! bisection resumes where it stopped and a finished one stays on record.

use crate::error::{Error, Result};
use crate::state::State;
use rusqlite::{params, OptionalExtension};

/// What identifies a bisection: a second `ktest bisect` with the same
/// values resumes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The repository's top directory.
    pub tree: String,
    /// The good and bad commits' full ids.
    pub good: String,
    pub bad: String,
    /// The test as given, its file made absolute.
    pub test: String,
    /// The options that change verdicts (variants, crash, repeat).
    pub options: String,
}

/// One tested commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub commit: String,
    pub subject: String,
    /// `good`, `bad` or `skip`: what git was told.
    pub verdict: &'static str,
    /// The exit code of the build or run that decided it.
    pub code: i32,
    /// Why, in a line.
    pub summary: String,
    /// The log to read: the failing subtest's, or the build's.
    pub log: Option<String>,
    pub duration_ms: u64,
}

fn db(e: rusqlite::Error) -> Error {
    Error::infra(format!("state database: {e}"))
}

fn verdict(v: &str) -> &'static str {
    match v {
        "good" => "good",
        "bad" => "bad",
        _ => "skip",
    }
}

/// The unfinished bisection of `tree`, with its key.
pub fn open_one(state: &State, tree: &str) -> Result<Option<(i64, Key)>> {
    state
        .conn()
        .query_row(
            "SELECT id, good, bad, test, options FROM bisects
             WHERE tree = ?1 AND finished_at IS NULL ORDER BY id DESC LIMIT 1",
            [tree],
            |r| {
                Ok((
                    r.get(0)?,
                    Key {
                        tree: tree.to_string(),
                        good: r.get(1)?,
                        bad: r.get(2)?,
                        test: r.get(3)?,
                        options: r.get(4)?,
                    },
                ))
            },
        )
        .optional()
        .map_err(db)
}

/// Starts a bisection's record.
pub fn create(state: &State, key: &Key, now: i64) -> Result<i64> {
    state
        .conn()
        .execute(
            "INSERT INTO bisects (tree, good, bad, test, options, started_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![key.tree, key.good, key.bad, key.test, key.options, now],
        )
        .map_err(db)?;
    Ok(state.conn().last_insert_rowid())
}

/// The steps recorded so far, in order.
pub fn steps(state: &State, id: i64) -> Result<Vec<Step>> {
    let mut q = state
        .conn()
        .prepare(
            "SELECT commit_id, subject, verdict, code, summary, log_path, duration_ms
             FROM bisect_steps WHERE bisect_id = ?1 ORDER BY position",
        )
        .map_err(db)?;
    let rows = q
        .query_map([id], |r| {
            Ok(Step {
                commit: r.get(0)?,
                subject: r.get(1)?,
                verdict: verdict(&r.get::<_, String>(2)?),
                code: r.get(3)?,
                summary: r.get(4)?,
                log: r.get(5)?,
                duration_ms: r.get::<_, i64>(6)? as u64,
            })
        })
        .map_err(db)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db)
}

/// Adds a step.
pub fn add_step(state: &State, id: i64, step: &Step) -> Result<()> {
    state
        .conn()
        .execute(
            "INSERT INTO bisect_steps (bisect_id, position, commit_id, subject, verdict, code,
                                       summary, log_path, duration_ms)
             VALUES (?1, (SELECT COUNT(*) FROM bisect_steps WHERE bisect_id = ?1),
                     ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                id,
                step.commit,
                step.subject,
                step.verdict,
                step.code,
                step.summary,
                step.log,
                step.duration_ms as i64
            ],
        )
        .map_err(db)?;
    Ok(())
}

/// Closes a bisection: `found` (with the first bad commit), `ambiguous`
/// (only skipped commits left), `no-regression` (the bad commit passed) or
/// `reset`.
pub fn finish(
    state: &State,
    id: i64,
    result: &str,
    first_bad: Option<&str>,
    now: i64,
) -> Result<()> {
    state
        .conn()
        .execute(
            "UPDATE bisects SET finished_at = ?2, result = ?3, first_bad = ?4 WHERE id = ?1",
            params![id, now, result, first_bad],
        )
        .map_err(db)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bisection_is_found_again_until_finished_and_keeps_its_steps() {
        let t = tempfile::tempdir().unwrap();
        let s = State::open(&t.path().join("db")).unwrap();
        let key = Key {
            tree: "/src/linux".into(),
            good: "a".repeat(40),
            bad: "b".repeat(40),
            test: "/t/x.ktest".into(),
            options: "crash=bad repeat=1".into(),
        };
        assert_eq!(open_one(&s, &key.tree).unwrap(), None);
        let id = create(&s, &key, 1).unwrap();
        assert_eq!(open_one(&s, &key.tree).unwrap(), Some((id, key.clone())));
        let step = |c: &str, v| Step {
            commit: c.into(),
            subject: "s".into(),
            verdict: v,
            code: 0,
            summary: "passed".into(),
            log: None,
            duration_ms: 5,
        };
        add_step(&s, id, &step("c1", "skip")).unwrap();
        add_step(&s, id, &step("c2", "good")).unwrap();
        let got = steps(&s, id).unwrap();
        assert_eq!(got, vec![step("c1", "skip"), step("c2", "good")]);
        finish(&s, id, "found", Some("c3"), 2).unwrap();
        assert_eq!(open_one(&s, &key.tree).unwrap(), None);
        assert_eq!(steps(&s, id).unwrap().len(), 2);
    }
}
