//! The suite runner: runs a test file's selected subtests in as many VMs
//! as it takes (a crash or a time-out ends a VM; a fresh one runs what was
//! not run yet), judges each subtest, writes its log, and tells the
//! reporters everything as it happens. It prints nothing itself.

pub mod pool;
pub mod session;

use crate::error::{Code, Context, Result};
use crate::guest::Subtests;
use crate::outcome::{self, Observed};
use crate::report::{Emit, Event, JobId};
use crate::results::{SubtestResult, TestReport, Verdict};
use crate::supervise::VmEvent;
use session::{Finished, Tracker};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What to run of one test file.
#[derive(Debug, Clone)]
pub struct SuitePlan {
    /// The test file.
    pub test: PathBuf,
    /// Its selected subtests, or its one subtest.
    pub subtests: Subtests,
    /// Kernel-log kinds the file allows (`ALLOW=`).
    pub allow: crate::kernel_log::Allow,
    /// Stop at the first subtest that does not pass; no fresh VM after a
    /// crash.
    pub fail_fast: bool,
    /// Where this test's logs go in this run.
    pub dir: PathBuf,
    /// Which job of the run this is, for the events.
    pub job: JobId,
    /// Shared by every job of a run: set when a subtest failed under
    /// `--fail-fast`, to stop every VM and start no more.
    pub stop: Arc<AtomicBool>,
    /// Shared by the jobs of one test file: how many console logs its
    /// directory has, so that each VM's log gets the next name.
    pub consoles: Arc<AtomicU32>,
}

impl SuitePlan {
    /// The next console log's path: `console.log`, then `console-2.log`...
    fn next_console_log(&self) -> PathBuf {
        let n = self.consoles.fetch_add(1, Ordering::SeqCst) + 1;
        self.dir.join(if n == 1 {
            "console.log".to_string()
        } else {
            format!("console-{n}.log")
        })
    }
}

/// Boots one VM for `subtests` with its console log at `log`, feeding
/// what it sees to the sink; returns how the VM ended. `stop` asks it to
/// stop early (fail fast).
pub trait Boot {
    /// Runs the VM to its end.
    fn boot(
        &mut self,
        subtests: &Subtests,
        log: &Path,
        stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
        sink: &mut dyn FnMut(VmEvent),
    ) -> Result<Observed>;
}

/// How a suite went: its report, ktest's exit code, the kernel release the
/// guest named.
pub struct SuiteOutcome {
    /// Every selected subtest's result, in run order.
    pub report: TestReport,
    /// How ktest exits for it.
    pub code: Code,
    /// `uname -r` in the guest.
    pub release: Option<String>,
}

/// Runs the plan's subtests to their verdicts.
pub fn run(plan: &SuitePlan, vm: &mut dyn Boot, reporters: &mut dyn Emit) -> Result<SuiteOutcome> {
    let mut todo = plan.subtests.names();
    let mut results: Vec<SubtestResult> = Vec::new();
    let mut logs = Vec::new();
    let mut release = None;
    let mut vm_code = None;
    let mut interrupted = false;
    let mut attempt = 0;
    while !todo.is_empty() {
        let interrupted_now = crate::signals::interrupted();
        if plan.stop.load(Ordering::SeqCst) || interrupted_now {
            // Ctrl-C, or another job's subtest failed under --fail-fast.
            interrupted |= interrupted_now;
            let why = if interrupted_now {
                "interrupted"
            } else {
                "not run: a subtest failed and --fail-fast was given"
            };
            for name in todo.drain(..) {
                let r = session::not_run(&name, why);
                reporters.emit(Event::SubtestFinished {
                    job: plan.job,
                    result: r.clone(),
                });
                results.push(r);
            }
            break;
        }
        attempt += 1;
        let log = plan.next_console_log();
        logs.push(log.clone());
        reporters.emit(Event::VmStarted {
            job: plan.job,
            attempt,
            subtests: todo.clone(),
            console_log: log.clone(),
        });
        let subtests = plan.subtests.with_names(todo.clone());
        let stop = plan.stop.clone();
        let mut tracker = Tracker::new(todo.clone(), plan.allow.clone());
        let mut failure = None::<String>;
        let mut io_error = None;
        let obs = {
            let mut sink = |ev: VmEvent| {
                show(&ev, plan.job, &todo, reporters);
                for f in tracker.feed(&ev, Instant::now()) {
                    match judged(plan, f, &mut failure, reporters) {
                        Ok(r) => results.push(r),
                        Err(e) => {
                            io_error.get_or_insert(e);
                        }
                    }
                    if failure.is_some() {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            };
            vm.boot(&subtests, &log, &stop, &mut sink)?
        };
        if let Some(e) = io_error {
            return Err(e);
        }
        release = release.or(tracker.release.clone());
        let (left, not_begun) = tracker.finish(&obs, Instant::now());
        for f in left {
            results.push(judged(plan, f, &mut failure, reporters)?);
        }
        let ran_any = not_begun.len() < todo.len();
        todo = not_begun;
        interrupted |= obs.interrupted;
        if todo.is_empty() {
            break;
        }
        let why = if obs.interrupted {
            "interrupted".to_string()
        } else if let Some(name) = &failure {
            format!("not run: {name} failed and --fail-fast was given")
        } else if plan.stop.load(Ordering::SeqCst) {
            "not run: a subtest failed and --fail-fast was given".to_string()
        } else if !ran_any {
            // The VM ran nothing: booting again would do the same.
            let v = outcome::vm_failure(&obs);
            vm_code = Some(v.code);
            v.summary
        } else if obs.done {
            "the guest did not run it".to_string()
        } else {
            let crashed = results
                .last()
                .map_or("a subtest".into(), |r| r.name.clone());
            reporters.emit(Event::Note {
                job: Some(plan.job),
                text: format!(
                    "the VM ended during {crashed}; a fresh VM runs the {} subtest(s) not yet run",
                    todo.len()
                ),
            });
            continue;
        };
        for name in todo.drain(..) {
            let mut r = session::not_run(&name, &why);
            if vm_code == Some(Code::Crash) {
                r.verdict = Verdict::Crash;
            }
            reporters.emit(Event::SubtestFinished {
                job: plan.job,
                result: r.clone(),
            });
            results.push(r);
        }
    }
    let code = match vm_code {
        Some(c)
            if !results
                .iter()
                .any(|r| r.verdict != Verdict::NotRun && r.verdict != Verdict::Crash) =>
        {
            c
        }
        _ => outcome::exit_code(results.iter().map(|r| r.verdict), interrupted),
    };
    Ok(SuiteOutcome {
        report: TestReport {
            test: plan.test.clone(),
            subtests: results,
            console_logs: logs,
        },
        code,
        release,
    })
}

/// The events a VM event of job `job` makes for the user to see.
pub fn display(ev: &VmEvent, job: JobId) -> Vec<Event> {
    match ev {
        VmEvent::Console { line, shown: true } => vec![Event::Console {
            job,
            line: line.clone(),
        }],
        VmEvent::Output { line, shown: true } => vec![Event::Output {
            job,
            line: line.clone(),
        }],
        VmEvent::Raw(bytes) => vec![Event::Raw {
            bytes: bytes.clone(),
        }],
        VmEvent::Note(text) => vec![Event::Note {
            job: Some(job),
            text: text.clone(),
        }],
        VmEvent::Context(lines) => std::iter::once(Event::Note {
            job: Some(job),
            text: "last console lines:".into(),
        })
        .chain(lines.iter().map(|l| Event::Console {
            job,
            line: format!("  {l}"),
        }))
        .collect(),
        VmEvent::Allocated { id } => vec![Event::VmUp {
            job,
            id: id.clone(),
        }],
        _ => Vec::new(),
    }
}

/// Passes what the user should see on to the reporters.
fn show(ev: &VmEvent, job: JobId, planned: &[String], reporters: &mut dyn Emit) {
    for e in display(ev, job) {
        reporters.emit(e);
    }
    if let VmEvent::Result(crate::console::ResultMsg::Begin { name, .. }) = ev {
        if planned.contains(name) {
            reporters.emit(Event::SubtestStarted {
                job,
                name: name.clone(),
            });
        }
    }
}

/// Writes a judged subtest's log and reports it; under `--fail-fast`,
/// remembers the first that did not pass.
fn judged(
    plan: &SuitePlan,
    f: Finished,
    failure: &mut Option<String>,
    reporters: &mut dyn Emit,
) -> Result<SubtestResult> {
    if !f.result.verdict.is_ok() && plan.fail_fast {
        failure.get_or_insert(f.result.name.clone());
    }
    finish(plan, f, reporters)
}

/// Writes a judged subtest's log and reports it.
fn finish(plan: &SuitePlan, f: Finished, reporters: &mut dyn Emit) -> Result<SubtestResult> {
    let mut r = f.result;
    let path = plan.dir.join(format!("{}.log", r.name));
    std::fs::write(&path, log_text(&r, &f.output, &f.console))
        .context(|| format!("writing {}", path.display()))?;
    r.log = Some(path);
    reporters.emit(Event::SubtestFinished {
        job: plan.job,
        result: r.clone(),
    });
    Ok(r)
}

/// A subtest's log: its verdict, its output, then its share of the kernel
/// log and what was found there.
fn log_text(r: &SubtestResult, output: &[String], console: &[String]) -> String {
    let mut s = format!("# {}: {}", r.name, r.verdict.name());
    if let Some(why) = &r.reason {
        s.push_str(&format!(" ({why})"));
    }
    s.push_str(&format!(
        " in {:.2} s\n# output:\n",
        r.duration.as_secs_f64()
    ));
    for l in output {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str("# kernel log:\n");
    for l in console {
        s.push_str(l);
        s.push('\n');
    }
    for f in &r.findings {
        s.push_str(&format!(
            "# kernel log finding{}: {}\n",
            if f.allowed { " (allowed)" } else { "" },
            f.title
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::parse_result;
    use crate::supervise::Mark;

    /// A VM that plays a script per boot: for each subtest, how it ends.
    struct Script {
        boots: Vec<Vec<(&'static str, Option<i32>)>>,
        crash_after_last: bool,
        seen: Vec<Vec<String>>,
    }

    impl Boot for Script {
        fn boot(
            &mut self,
            subtests: &Subtests,
            _log: &Path,
            _stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
            sink: &mut dyn FnMut(VmEvent),
        ) -> Result<Observed> {
            self.seen.push(subtests.names());
            let plan = self.boots.remove(0);
            let mut obs = Observed {
                started: true,
                ..Observed::default()
            };
            for (name, status) in plan {
                let res = |m: String| VmEvent::Result(parse_result(&m).unwrap());
                sink(VmEvent::Console {
                    line: format!("ktest-guest: subtest-begin {name}"),
                    shown: false,
                });
                sink(VmEvent::OutputMark(Mark::Begin(name.into())));
                sink(res(format!("begin {name} 0")));
                match status {
                    Some(s) => {
                        sink(VmEvent::OutputMark(Mark::End(name.into())));
                        sink(VmEvent::Console {
                            line: format!("ktest-guest: subtest-end {name}"),
                            shown: false,
                        });
                        sink(res(format!("end {name} {s} 0")));
                    }
                    None => {
                        obs.crash = Some("Kernel panic - not syncing: test".into());
                        return Ok(obs);
                    }
                }
            }
            if self.crash_after_last {
                obs.crash = Some("Kernel panic".into());
            } else {
                obs.done = true;
            }
            Ok(obs)
        }
    }

    fn plan(dir: &Path, names: &[&str], fail_fast: bool) -> SuitePlan {
        SuitePlan {
            test: PathBuf::from("/t/suite"),
            subtests: Subtests::Named(names.iter().map(|s| s.to_string()).collect()),
            allow: crate::kernel_log::Allow::default(),
            fail_fast,
            dir: dir.to_path_buf(),
            job: 0,
            stop: Arc::default(),
            consoles: Arc::default(),
        }
    }

    fn verdicts(o: &SuiteOutcome) -> Vec<(String, Verdict)> {
        o.report
            .subtests
            .iter()
            .map(|r| (r.name.clone(), r.verdict))
            .collect()
    }

    #[test]
    fn a_crash_is_recorded_and_a_fresh_vm_runs_the_rest() {
        let t = tempfile::tempdir().unwrap();
        let mut vm = Script {
            boots: vec![
                vec![("a", Some(0)), ("b", None)],
                vec![("c", Some(0)), ("d", Some(1))],
            ],
            crash_after_last: false,
            seen: vec![],
        };
        let o = run(
            &plan(t.path(), &["a", "b", "c", "d"], false),
            &mut vm,
            &mut crate::report::Reporters::default(),
        )
        .unwrap();
        assert_eq!(
            verdicts(&o),
            vec![
                ("a".into(), Verdict::Pass),
                ("b".into(), Verdict::Crash),
                ("c".into(), Verdict::Pass),
                ("d".into(), Verdict::Fail)
            ]
        );
        assert_eq!(vm.seen[1], vec!["c", "d"]);
        assert_eq!(o.code, Code::Crash);
        assert_eq!(o.report.console_logs.len(), 2);
        let log = std::fs::read_to_string(t.path().join("d.log")).unwrap();
        assert!(log.starts_with("# d: fail (exit status 1)"), "{log}");
    }

    #[test]
    fn an_interrupted_run_exits_130_even_with_nothing_left() {
        let t = tempfile::tempdir().unwrap();
        struct Stopped;
        impl Boot for Stopped {
            fn boot(
                &mut self,
                _: &Subtests,
                _: &Path,
                _: &std::sync::Arc<std::sync::atomic::AtomicBool>,
                sink: &mut dyn FnMut(VmEvent),
            ) -> Result<Observed> {
                sink(VmEvent::Result(parse_result("begin a 0").unwrap()));
                Ok(Observed {
                    interrupted: true,
                    started: true,
                    ..Observed::default()
                })
            }
        }
        let o = run(
            &plan(t.path(), &["a"], false),
            &mut Stopped,
            &mut crate::report::Reporters::default(),
        )
        .unwrap();
        assert_eq!(o.code, Code::Interrupted);
        assert_eq!(verdicts(&o), vec![("a".into(), Verdict::NotRun)]);
    }

    #[test]
    fn fail_fast_runs_no_fresh_vm() {
        let t = tempfile::tempdir().unwrap();
        let mut vm = Script {
            boots: vec![vec![("a", None)]],
            crash_after_last: false,
            seen: vec![],
        };
        let o = run(
            &plan(t.path(), &["a", "b"], true),
            &mut vm,
            &mut crate::report::Reporters::default(),
        )
        .unwrap();
        assert_eq!(
            verdicts(&o),
            vec![("a".into(), Verdict::Crash), ("b".into(), Verdict::NotRun)]
        );
        assert_eq!(vm.seen.len(), 1);
    }

    #[test]
    fn a_vm_that_runs_nothing_is_not_booted_again() {
        let t = tempfile::tempdir().unwrap();
        let mut vm = Script {
            boots: vec![vec![]],
            crash_after_last: true,
            seen: vec![],
        };
        let o = run(
            &plan(t.path(), &["a", "b"], false),
            &mut vm,
            &mut crate::report::Reporters::default(),
        )
        .unwrap();
        assert_eq!(vm.seen.len(), 1);
        assert_eq!(o.code, Code::Crash);
        assert!(o
            .report
            .subtests
            .iter()
            .all(|r| r.verdict == Verdict::Crash));
    }
}
