//! What ktest does with git: worktrees (for `ktest bisect` and for
//! targets at a revision), and for `ktest bisect` `git bisect` driven with
//! `--no-checkout` (ktest checks each step out itself, once, so a step
//! recompiles only what differs from the last one built), and reading what
//! `git bisect` answered.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs git in `dir` with messages untranslated (they are parsed) and
/// returns its exit status and its output, stdout then stderr.
fn git(dir: &Path, args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("LC_ALL", "C")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::infra(format!("cannot run git: {e}\n  install git")))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// Runs git and returns its trimmed stdout, or an error with its output.
fn git_ok(dir: &Path, args: &[&str]) -> Result<String> {
    match git(dir, args)? {
        (true, out) => Ok(out.trim().to_string()),
        (false, out) => Err(Error::infra(format!(
            "git {} in {} failed:\n  {}",
            args.join(" "),
            dir.display(),
            out.trim().replace('\n', "\n  ")
        ))),
    }
}

/// The top of the git repository holding `dir`.
pub fn toplevel(dir: &Path) -> Result<PathBuf> {
    match git(dir, &["rev-parse", "--show-toplevel"])? {
        (true, out) => Ok(PathBuf::from(out.lines().next().unwrap_or("").trim())),
        (false, _) => Err(Error::usage(format!(
            "{} is not in a git repository: ktest bisect needs the kernel's git history\n  run it in a git kernel tree, or give --kernel-src one",
            dir.display()
        ))),
    }
}

/// The full commit id of `rev`.
pub fn commit(top: &Path, rev: &str, what: &str) -> Result<String> {
    let spec = format!("{rev}^{{commit}}");
    match git(top, &["rev-parse", "--verify", "--quiet", &spec])? {
        (true, out) => Ok(out.trim().to_string()),
        (false, _) => Err(Error::usage(format!(
            "{what} {rev}: no such commit in {}",
            top.display()
        ))),
    }
}

/// Whether `ancestor` is an ancestor of `of`.
pub fn is_ancestor(top: &Path, ancestor: &str, of: &str) -> Result<bool> {
    Ok(git(top, &["merge-base", "--is-ancestor", ancestor, of])?.0)
}

/// A commit's subject line.
pub fn subject(top: &Path, commit: &str) -> Result<String> {
    git_ok(top, &["log", "-1", "--format=%s", commit])
}

/// The git directory shared by a repository's worktrees.
fn common_dir(dir: &Path) -> Result<PathBuf> {
    let out = git_ok(
        dir,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )?;
    Ok(PathBuf::from(out))
}

/// Makes sure `wt` is a worktree of `top` (creating it, detached at
/// `at`) for `user` (`bisect`, `target NAME`): ktest builds there, so the
/// user's checkout, index and build stay as they are. Refuses a directory
/// there that is something else.
pub fn ensure_worktree(top: &Path, wt: &Path, at: &str, user: &str) -> Result<()> {
    if wt.exists() {
        let ours = wt.join(".git").is_file()
            && common_dir(wt).ok().as_deref() == Some(common_dir(top)?.as_path());
        if !ours {
            return Err(Error::usage(format!(
                "{} exists and is not a worktree of {}: ktest's {user} keeps its worktree there\n  move it away",
                wt.display(),
                top.display()
            )));
        }
        return Ok(());
    }
    // A worktree directory removed by hand leaves git's record behind.
    let _ = git(top, &["worktree", "prune"]);
    crate::errln!(
        "ktest: {user}: creating the worktree {} (once; later runs reuse it and its build)",
        wt.display()
    );
    git_ok(
        top,
        &["worktree", "add", "--detach", &wt.to_string_lossy(), at],
    )?;
    Ok(())
}

/// Where a bisection stands after git's last answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// This commit is the next to test.
    Test(String),
    /// git named the first bad commit.
    Found(String),
    /// Only skipped commits are left: the first bad commit is one of these.
    OnlySkipped(Vec<String>),
}

/// Reads `git bisect start|good|bad|skip`'s answer (in the C locale).
pub fn parse_answer(out: &str) -> Option<Progress> {
    if let Some(line) = out
        .lines()
        .find(|l| l.ends_with(" is the first bad commit"))
    {
        return Some(Progress::Found(line.split(' ').next()?.to_string()));
    }
    if out.contains("There are only 'skip'ped commits left to test.") {
        let ids = out
            .lines()
            .map(str::trim)
            .filter(|l| l.len() >= 40 && l.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(String::from)
            .collect();
        return Some(Progress::OnlySkipped(ids));
    }
    let next = out.lines().find_map(|l| {
        let rest = l.strip_prefix('[')?;
        let (id, _) = rest.split_once(']')?;
        (id.len() >= 40 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
    })?;
    Some(Progress::Test(next))
}

/// Runs one `git bisect` command in the worktree and reads its answer.
fn bisect(wt: &Path, args: &[&str]) -> Result<Progress> {
    let mut all = vec!["bisect"];
    all.extend_from_slice(args);
    let (_, out) = git(wt, &all)?;
    parse_answer(&out).ok_or_else(|| {
        Error::infra(format!(
            "git bisect {} gave an answer ktest does not understand:\n  {}",
            args.join(" "),
            out.trim().replace('\n', "\n  ")
        ))
    })
}

/// Starts a bisection of `good..bad` in the worktree afresh and replays
/// the verdicts already reached, without touching its files.
pub fn start(wt: &Path, good: &str, bad: &str, done: &[(String, &str)]) -> Result<Progress> {
    let _ = git(wt, &["bisect", "reset"]);
    let mut p = bisect(wt, &["start", "--no-checkout", bad, good])?;
    for (commit, verdict) in done {
        p = bisect(wt, &[verdict, commit])?;
    }
    Ok(p)
}

/// Records a step's verdict (`good`, `bad` or `skip`).
pub fn mark(wt: &Path, commit: &str, verdict: &str) -> Result<Progress> {
    bisect(wt, &[verdict, commit])
}

/// Ends git's bisection in the worktree (its files stay as they are).
pub fn reset(wt: &Path) {
    let _ = git(wt, &["bisect", "reset"]);
}

/// Checks `commit` out in the worktree; only files that differ from what
/// is there are written, so make rebuilds only what the commits changed.
pub fn checkout(wt: &Path, commit: &str) -> Result<()> {
    git_ok(wt, &["checkout", "--quiet", "--force", "--detach", commit]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "35109c599fa9583567b4f0480280cf122da1ac46";
    const B: &str = "f9658cfa71caf457886b6eb7dca3626597e01ce4";

    #[test]
    fn answers_of_git_2_39_are_read() {
        let next =
            format!("Bisecting: 2 revisions left to test after this (roughly 1 step)\n[{A}] c2\n");
        assert_eq!(parse_answer(&next), Some(Progress::Test(A.into())));
        let found = format!("{B} is the first bad commit\ncommit {B}\nAuthor: t <a@b>\n\n    c4\n");
        assert_eq!(parse_answer(&found), Some(Progress::Found(B.into())));
        let skipped = format!(
            "There are only 'skip'ped commits left to test.\nThe first bad commit could be any of:\n{A}\n{B}\nWe cannot bisect more!\n"
        );
        assert_eq!(
            parse_answer(&skipped),
            Some(Progress::OnlySkipped(vec![A.into(), B.into()]))
        );
        assert_eq!(parse_answer("fatal: something else\n"), None);
    }
}
