//! `ktest bisect`: finds the commit that broke a test, unattended.
//!
//! The bisection runs in a worktree of the user's repository under
//! `.ktest/bisect/tree`, built in one directory (`.ktest/bisect/build`), so
//! the user's checkout and builds stay as they are and each step recompiles
//! only what changed. Each step is built and run as `ktest run --kernel`
//! would run it; its outcome becomes git's verdict (`verdict_of`). Every
//! step is stored in the database; git's own bisection state is replayed
//! from those records, so an interrupted bisection resumes where it stopped.
//! docs/bisect.md describes it.

mod record;

use crate::cli::{BisectArgs, CrashIs, RunArgs};
use crate::error::{Code, Error, Result};
use crate::git::{self, Progress};
use crate::state::State;
use record::{Key, Step};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// What a step's outcome tells git.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Good,
    Bad,
    /// The commit cannot be judged (it does not build, or the machinery
    /// failed): git picks a neighbour.
    Skip,
    /// Interrupted: stop, and resume later.
    Stop,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Good => "good",
            Verdict::Bad => "bad",
            Verdict::Skip | Verdict::Stop => "skip",
        }
    }
}

/// The verdict of a run's exit code: a pass is good; a failure or a
/// time-out is bad; a crash is bad or skip as asked; an infrastructure
/// error or a kernel that does not build is skip. A usage error is not
/// mapped: the test cannot run as declared, at any commit.
pub fn verdict_of(code: Code, crash: CrashIs) -> Option<Verdict> {
    Some(match code {
        Code::Passed => Verdict::Good,
        Code::TestFailed | Code::Timeout => Verdict::Bad,
        Code::Crash => match crash {
            CrashIs::Bad => Verdict::Bad,
            CrashIs::Skip => Verdict::Skip,
        },
        Code::Infra | Code::BuildFailed => Verdict::Skip,
        Code::Interrupted => Verdict::Stop,
        Code::Usage => return None,
    })
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// Everything a bisection needs, decided before anything is written.
struct Setup {
    top: PathBuf,
    worktree: PathBuf,
    build: PathBuf,
    key: Key,
    /// The test as `ktest run` takes it (`FILE` or `FILE:GLOB`).
    test: PathBuf,
    /// The test's KCONFIG, which every step's build gets.
    kconfig: Vec<crate::spec::KconfigOption>,
}

/// The top of the repository bisected: that of `--kernel-src`, else of
/// the current directory.
fn repo_top(args: &BisectArgs) -> Result<PathBuf> {
    let cwd =
        std::env::current_dir().map_err(|e| Error::infra(format!("current directory: {e}")))?;
    let src = match &args.build.kernel_src {
        Some(p) => cwd.join(p),
        None => cwd,
    };
    git::toplevel(&src)
}

fn setup(args: &BisectArgs) -> Result<Setup> {
    let top = repo_top(args)?;
    let (Some(good), Some(bad), Some(test)) = (&args.good, &args.bad, &args.test) else {
        return Err(Error::usage(
            "ktest bisect needs --good REV, --bad REV and a TEST",
        ));
    };
    let good = git::commit(&top, good, "--good")?;
    let bad = git::commit(&top, bad, "--bad")?;
    if good == bad || !git::is_ancestor(&top, &good, &bad)? {
        return Err(Error::usage(format!(
            "--good {} is not an ancestor of --bad {}: there is nothing between them to bisect",
            short(&good),
            short(&bad)
        )));
    }
    // The test's declarations are read now: a malformed deps line fails
    // before the worktree or any build exists.
    let selected = crate::discover::tests(std::slice::from_ref(test), &[])?;
    let [arg] = selected.as_slice() else {
        return Err(Error::usage(format!(
            "{}: ktest bisect takes one test file (TEST or TEST:SUBTEST)",
            test.display()
        )));
    };
    let file = arg
        .path
        .canonicalize()
        .map_err(|e| Error::usage(format!("{}: {e}", arg.path.display())))?;
    let kconfig = crate::deps::read(&file)?.kconfig;
    let variants = crate::build::variants_for(&args.build, crate::config_file::get()?)?;
    let mut shown = file.display().to_string();
    if !arg.patterns.is_empty() {
        shown = format!("{shown}:{}", arg.patterns.join(","));
    }
    let dir = top.join(".ktest").join("bisect");
    Ok(Setup {
        worktree: dir.join("tree"),
        build: dir.join("build"),
        key: Key {
            tree: top.display().to_string(),
            good,
            bad,
            test: shown.clone(),
            options: format!(
                "variants={variants} crash={:?} repeat={}",
                args.crash, args.repeat
            ),
        },
        test: PathBuf::from(shown),
        kconfig,
        top,
    })
}

/// Runs `ktest bisect`.
pub fn bisect(db: &Path, args: &BisectArgs) -> Result<Code> {
    crate::signals::install();
    let state = State::open(db)?;
    if args.reset {
        return reset(&state, args);
    }
    let s = setup(args)?;
    let (id, done) = match record::open_one(&state, &s.key.tree)? {
        Some((id, key)) if key == s.key => {
            let done = record::steps(&state, id)?;
            crate::errln!(
                "ktest: bisect: resuming the bisection of {} ({} step{} done)",
                s.key.test,
                done.len(),
                if done.len() == 1 { "" } else { "s" }
            );
            (id, done)
        }
        Some((_, key)) => {
            return Err(Error::usage(format!(
                "a bisection of {} in {} is not finished (good {}, bad {}, {})\n  run it again with the same arguments to resume it, or drop it: ktest bisect --reset",
                key.test,
                key.tree,
                short(&key.good),
                short(&key.bad),
                key.options
            )))
        }
        None => {
            crate::launch::create_private_dir(s.worktree.parent().unwrap_or(&s.top))?;
            (record::create(&state, &s.key, now())?, Vec::new())
        }
    };
    git::ensure_worktree(&s.top, &s.worktree, &s.key.bad, "bisect")?;
    let replay: Vec<(String, &str)> = done.iter().map(|d| (d.commit.clone(), d.verdict)).collect();
    let mut progress = git::start(&s.worktree, &s.key.good, &s.key.bad, &replay)?;
    let mut steps = done;
    loop {
        match progress {
            Progress::Test(commit) => {
                let step = match run_step(db, args, &s, &commit, steps.len() + 1) {
                    Ok(Some(step)) => step,
                    Ok(None) => return Ok(interrupted()),
                    Err(e) if e.code == Code::Interrupted => {
                        crate::errln!("ktest: {e}");
                        return Ok(interrupted());
                    }
                    Err(e) => return Err(e),
                };
                record::add_step(&state, id, &step)?;
                progress = git::mark(&s.worktree, &commit, step.verdict)?;
                steps.push(step);
            }
            Progress::Found(first_bad) => {
                if first_bad == s.key.bad && !steps.iter().any(|st| st.commit == first_bad) {
                    // Every commit tested was good: whether the bad one is
                    // bad was only the user's word. Confirm it.
                    let confirmed = match run_step(db, args, &s, &first_bad, steps.len() + 1) {
                        Err(e) if e.code == Code::Interrupted => {
                            crate::errln!("ktest: {e}");
                            Ok(None)
                        }
                        other => other,
                    };
                    match confirmed? {
                        None => return Ok(interrupted()),
                        Some(step) => {
                            record::add_step(&state, id, &step)?;
                            let good = step.verdict == "good";
                            steps.push(step);
                            if good {
                                git::reset(&s.worktree);
                                record::finish(&state, id, "no-regression", None, now())?;
                                crate::errln!(
                                    "ktest: bisect: the --bad commit {} passes the test: there is no regression to find between {} and it",
                                    short(&s.key.bad),
                                    short(&s.key.good)
                                );
                                return Ok(Code::TestFailed);
                            }
                        }
                    }
                }
                git::reset(&s.worktree);
                record::finish(&state, id, "found", Some(&first_bad), now())?;
                report_found(&s, &first_bad, &steps)?;
                return Ok(Code::Passed);
            }
            Progress::OnlySkipped(candidates) => {
                git::reset(&s.worktree);
                record::finish(&state, id, "ambiguous", None, now())?;
                let mut lines = Vec::new();
                for c in &candidates {
                    lines.push(format!("  {} {}", short(c), git::subject(&s.top, c)?));
                }
                crate::errln!(
                    "ktest: bisect: only commits that could not be tested are left; the first bad commit is one of:\n{}",
                    lines.join("\n")
                );
                summary(&steps);
                return Ok(Code::TestFailed);
            }
        }
    }
}

/// Says how to go on after an interruption; the steps done are kept.
fn interrupted() -> Code {
    crate::errln!("ktest: bisect: interrupted; run the same ktest bisect again to resume");
    Code::Interrupted
}

/// Builds `commit` and runs the test on it (`--repeat` times, stopping at
/// the first that does not pass). `None` when interrupted.
fn run_step(
    db: &Path,
    args: &BisectArgs,
    s: &Setup,
    commit: &str,
    number: usize,
) -> Result<Option<Step>> {
    let subject = git::subject(&s.top, commit)?;
    crate::errln!("ktest: bisect: step {number}: {} {subject}", short(commit));
    let clock = Instant::now();
    git::checkout(&s.worktree, commit)?;
    let mut opts = args.build.clone();
    opts.kernel_src = Some(s.worktree.clone());
    opts.build_log |= args.verbose;
    let step = |code: Code, verdict: Verdict, summary: String, log: Option<String>| Step {
        commit: commit.to_string(),
        subject: subject.clone(),
        verdict: verdict.word(),
        code: code.status(),
        summary,
        log,
        duration_ms: clock.elapsed().as_millis() as u64,
    };
    let kernel = match crate::build::kernel_in(&opts, &s.kconfig, &s.build) {
        Ok(k) => k,
        Err(e) if e.code == Code::Interrupted => return Ok(None),
        // A commit whose Kconfig cannot give the test's options is as
        // untestable as one that does not compile.
        Err(e) if matches!(e.code, Code::BuildFailed | Code::Usage) => {
            // The compiler's error says more than "make failed".
            let first = e
                .message
                .lines()
                .find(|l| l.contains("error"))
                .or(e.message.lines().next())
                .unwrap_or("")
                .trim()
                .to_string();
            crate::errln!(
                "ktest: bisect: {} does not build: skipped\n  {first}",
                short(commit)
            );
            return Ok(Some(step(
                Code::BuildFailed,
                Verdict::Skip,
                format!("build failed: {first}"),
                Some(s.build.join("build.log").display().to_string()),
            )));
        }
        Err(e) => return Err(e),
    };
    let report = s.build.join("ktest-bisect-step.json");
    let mut outcome = (Code::Passed, String::from("passed"), None);
    for i in 1..=args.repeat {
        let _ = std::fs::remove_file(&report);
        let run = RunArgs::for_bisect(args, &kernel, &s.test, &report);
        let code = match crate::run::run(db, run) {
            Ok(c) => c,
            Err(e) if e.code == Code::Usage => return Err(e),
            Err(e) => {
                crate::errln!("ktest: {e}");
                e.code
            }
        };
        let (why, log) = failing_subtest(&report);
        outcome = (code, why, log);
        if code != Code::Passed {
            if args.repeat > 1 {
                crate::errln!("ktest: bisect: run {i} of {} did not pass", args.repeat);
            }
            break;
        }
    }
    let (code, why, log) = outcome;
    let Some(verdict) = verdict_of(code, args.crash) else {
        return Err(Error::usage(format!(
            "the test cannot run as declared (exit {}): {why}",
            code.status()
        )));
    };
    if verdict == Verdict::Stop {
        return Ok(None);
    }
    crate::errln!(
        "ktest: bisect: {} is {} ({why})",
        short(commit),
        verdict.word()
    );
    Ok(Some(step(code, verdict, why, log)))
}

/// The first subtest of a step's JSON report that did not pass or skip:
/// why, and its log.
fn failing_subtest(report: &Path) -> (String, Option<String>) {
    let json: Option<serde_json::Value> = std::fs::read(report)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let subtests = json
        .iter()
        .flat_map(|j| j["tests"].as_array().cloned().unwrap_or_default())
        .flat_map(|t| t["subtests"].as_array().cloned().unwrap_or_default());
    for st in subtests {
        let verdict = st["verdict"].as_str().unwrap_or("");
        if verdict != "pass" && verdict != "skip" {
            let reason = st["reason"].as_str().unwrap_or(verdict);
            return (
                format!(
                    "{}: {verdict}: {reason}",
                    st["name"].as_str().unwrap_or("?")
                ),
                st["log"].as_str().map(String::from),
            );
        }
    }
    if json.is_none() {
        return ("no report".into(), None);
    }
    ("passed".into(), None)
}

/// Prints the steps, one line each.
fn summary(steps: &[Step]) {
    let lines: Vec<String> = steps
        .iter()
        .map(|s| {
            format!(
                "  {:<4} {} {}  ({:.0} s: {})",
                s.verdict,
                short(&s.commit),
                s.subject,
                s.duration_ms as f64 / 1000.0,
                s.summary
            )
        })
        .collect();
    crate::errln!("ktest: bisect: steps:\n{}", lines.join("\n"));
}

/// Tells the first bad commit: on stdout its id and subject (for
/// scripts), on stderr the steps and the end of its failing log.
fn report_found(s: &Setup, first_bad: &str, steps: &[Step]) -> Result<()> {
    let subject = git::subject(&s.top, first_bad)?;
    summary(steps);
    crate::outln!("{first_bad} {subject}");
    crate::errln!(
        "ktest: bisect: the first bad commit is {} {subject}",
        short(first_bad)
    );
    if let Some(step) = steps.iter().rev().find(|st| st.commit == first_bad) {
        crate::errln!("ktest: bisect: there: {}", step.summary);
        if let Some(log) = &step.log {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(20)..];
            crate::errln!(
                "ktest: bisect: its log ({log}), last lines:\n{}",
                tail.iter()
                    .map(|l| format!("  | {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    Ok(())
}

/// `ktest bisect --reset`: drops the unfinished bisection of this tree.
fn reset(state: &State, args: &BisectArgs) -> Result<Code> {
    let top = repo_top(args)?;
    let tree = top.display().to_string();
    match record::open_one(state, &tree)? {
        None => crate::errln!("ktest: bisect: no unfinished bisection in {tree}"),
        Some((id, key)) => {
            let wt = top.join(".ktest").join("bisect").join("tree");
            if wt.exists() {
                git::reset(&wt);
            }
            record::finish(state, id, "reset", None, now())?;
            crate::errln!("ktest: bisect: dropped the bisection of {}", key.test);
        }
    }
    Ok(Code::Passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_verdicts() {
        use Verdict::*;
        let v = |c| verdict_of(c, CrashIs::Bad);
        assert_eq!(v(Code::Passed), Some(Good));
        assert_eq!(v(Code::TestFailed), Some(Bad));
        assert_eq!(v(Code::Timeout), Some(Bad));
        assert_eq!(v(Code::Crash), Some(Bad));
        assert_eq!(verdict_of(Code::Crash, CrashIs::Skip), Some(Skip));
        assert_eq!(v(Code::BuildFailed), Some(Skip));
        assert_eq!(v(Code::Infra), Some(Skip));
        assert_eq!(v(Code::Interrupted), Some(Stop));
        assert_eq!(v(Code::Usage), None);
    }

    #[test]
    fn the_failing_subtest_and_its_log_come_from_the_report() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("r.json");
        std::fs::write(
            &p,
            r#"{"tests":[{"subtests":[{"name":"a","verdict":"pass"},
               {"name":"b","verdict":"fail","reason":"exit status 1","log":"/l/b.log"}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            failing_subtest(&p),
            ("b: fail: exit status 1".into(), Some("/l/b.log".into()))
        );
        assert_eq!(failing_subtest(&t.path().join("none")).0, "no report");
    }
}
