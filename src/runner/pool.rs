//! Runs a run's jobs in up to N VMs at once, one thread per running VM.
//! Workers send every event to the calling thread, which alone feeds the
//! reporters (so they need no locking and see one ordered stream) and
//! decides what starts next: the next job in the planned order, when a VM
//! is free and the job's memory fits beside the running ones.

use super::{Boot, SuiteOutcome, SuitePlan};
use crate::error::Result;
use crate::report::{Emit, Event, JobId, Reporters};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Duration;

/// One job, ready to run.
pub struct Job<'a> {
    /// What to run.
    pub plan: SuitePlan,
    /// The guest memory its VM takes, in bytes.
    pub mem: u64,
    /// What boots its VMs.
    pub boot: Box<dyn Boot + Send + 'a>,
}

/// How many at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// VMs at once.
    pub vms: u32,
    /// Guest memory all running VMs may take together; one VM always runs,
    /// whatever its size (the host has been checked to hold it).
    pub mem: Option<u64>,
}

enum Msg {
    Event(Event),
    Done(JobId, Result<SuiteOutcome>),
}

/// A worker's way to the reporters.
struct Channel(Sender<Msg>);

impl Emit for Channel {
    fn emit(&mut self, event: Event) {
        // The receiver outlives every worker (they are scoped threads).
        let _ = self.0.send(Msg::Event(event));
    }
}

/// How often the reporters hear the clock while nothing happens (the live
/// view's elapsed times).
const TICK: Duration = Duration::from_millis(250);

/// Whether `next` may start now beside `running` VMs using `mem_used`.
pub fn may_start(limits: Limits, running: u32, mem_used: u64, next_mem: u64) -> bool {
    running == 0 || (running < limits.vms && limits.mem.map_or(true, |m| mem_used + next_mem <= m))
}

/// Runs every job, in order, at most `limits` at once; returns each job's
/// outcome, in job order. `tick` is called with the reporters at least
/// every `TICK` while VMs run. A job that fails (ktest's own error, not a
/// test's) sets `stop`, which every job shares, so the run ends soon and
/// the error is returned.
pub fn run(
    jobs: Vec<Job<'_>>,
    limits: Limits,
    stop: &AtomicBool,
    reporters: &mut Reporters,
    mut tick: impl FnMut(&mut Reporters),
) -> Result<Vec<SuiteOutcome>> {
    let n = jobs.len();
    let mut outcomes: Vec<Option<Result<SuiteOutcome>>> = (0..n).map(|_| None).collect();
    let (tx, rx) = mpsc::channel::<Msg>();
    std::thread::scope(|scope| {
        let mut queue = jobs.into_iter().enumerate().peekable();
        let (mut running, mut mem_used) = (0u32, 0u64);
        // The memory of the jobs that hold a VM now.
        let mut held: Vec<Option<u64>> = vec![None; n];
        loop {
            while let Some((_, next)) = queue.peek() {
                // A stopped run (fail fast) or an interrupted one starts no
                // VM; the job still runs, to mark its subtests not run.
                let boots =
                    !next.plan.stop.load(Ordering::SeqCst) && !crate::signals::interrupted();
                if boots && !may_start(limits, running, mem_used, next.mem) {
                    break;
                }
                let Some((i, mut job)) = queue.next() else {
                    break;
                };
                if !boots {
                    let mut emit = Channel(tx.clone());
                    let r = super::run(&job.plan, job.boot.as_mut(), &mut emit);
                    let _ = tx.send(Msg::Done(i, r));
                    continue;
                }
                running += 1;
                mem_used += job.mem;
                held[i] = Some(job.mem);
                let tx = tx.clone();
                scope.spawn(move || {
                    let mut emit = Channel(tx.clone());
                    let r = super::run(&job.plan, job.boot.as_mut(), &mut emit);
                    let _ = tx.send(Msg::Done(i, r));
                });
            }
            let all_done = outcomes.iter().all(Option::is_some);
            if all_done && queue.peek().is_none() {
                break;
            }
            match rx.recv_timeout(TICK) {
                Ok(Msg::Event(e)) => reporters.emit(e),
                Ok(Msg::Done(i, r)) => {
                    if r.is_err() {
                        stop.store(true, Ordering::SeqCst);
                    }
                    if let Some(mem) = held[i].take() {
                        running -= 1;
                        mem_used -= mem;
                    }
                    outcomes[i] = Some(r);
                    reporters.emit(Event::JobFinished { job: i });
                }
                Err(RecvTimeoutError::Timeout) => tick(reporters),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| Err(crate::error::Error::infra("a job ended without an outcome")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::Subtests;
    use crate::outcome::Observed;
    use crate::results::Verdict;
    use crate::supervise::VmEvent;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::AtomicU32;
    use std::sync::{Arc, Barrier};

    /// A VM whose subtests pass, or fail when named `bad`; it waits at
    /// `barrier` first, so a test can see that two ran at once.
    struct Fake {
        barrier: Option<Arc<Barrier>>,
    }

    impl Boot for Fake {
        fn boot(
            &mut self,
            subtests: &Subtests,
            _log: &Path,
            _stop: &Arc<AtomicBool>,
            sink: &mut dyn FnMut(VmEvent),
        ) -> Result<Observed> {
            if let Some(b) = &self.barrier {
                b.wait();
            }
            sink(VmEvent::Allocated { id: "7".into() });
            for name in subtests.names() {
                let status = if name == "bad" { 1 } else { 0 };
                for m in [format!("begin {name} 0"), format!("end {name} {status} 0")] {
                    sink(VmEvent::Result(crate::console::parse_result(&m).unwrap()));
                }
                sink(VmEvent::OutputMark(crate::supervise::Mark::Begin(
                    name.clone(),
                )));
                sink(VmEvent::OutputMark(crate::supervise::Mark::End(
                    name.clone(),
                )));
                for edge in ["begin", "end"] {
                    sink(VmEvent::Console {
                        line: format!("ktest-guest: subtest-{edge} {name}"),
                        shown: false,
                    });
                }
            }
            Ok(Observed {
                started: true,
                done: true,
                ..Observed::default()
            })
        }
    }

    struct Collect(Vec<Event>);
    impl crate::report::Reporter for Arc<std::sync::Mutex<Collect>> {
        fn event(&mut self, e: &Event) -> Result<()> {
            self.lock().unwrap().0.push(e.clone());
            Ok(())
        }
    }

    fn job(
        dir: &Path,
        i: usize,
        names: &[&str],
        stop: &Arc<AtomicBool>,
        fake: Fake,
    ) -> Job<'static> {
        Job {
            plan: SuitePlan {
                test: PathBuf::from(format!("/t/{i}")),
                subtests: Subtests::Named(names.iter().map(|s| s.to_string()).collect()),
                allow: crate::kernel_log::Allow::default(),
                fail_fast: true,
                dir: dir.to_path_buf(),
                job: i,
                stop: stop.clone(),
                consoles: Arc::new(AtomicU32::new(0)),
            },
            mem: 1 << 30,
            boot: Box::new(fake),
        }
    }

    #[test]
    fn jobs_run_at_once_and_every_event_names_its_job() {
        let t = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..3).map(|i| t.path().join(i.to_string())).collect();
        for d in &dirs {
            std::fs::create_dir(d).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        // Jobs 0 and 1 meet at a barrier: they pass only if both run at once.
        let both = Arc::new(Barrier::new(2));
        let jobs = vec![
            job(
                &dirs[0],
                0,
                &["a", "b"],
                &stop,
                Fake {
                    barrier: Some(both.clone()),
                },
            ),
            job(
                &dirs[1],
                1,
                &["c"],
                &stop,
                Fake {
                    barrier: Some(both),
                },
            ),
            job(&dirs[2], 2, &["d"], &stop, Fake { barrier: None }),
        ];
        let seen = Arc::new(std::sync::Mutex::new(Collect(Vec::new())));
        let mut reporters = Reporters::default();
        reporters.add(Box::new(seen.clone()));
        let limits = Limits { vms: 2, mem: None };
        let out = run(jobs, limits, &stop, &mut reporters, |_| {}).unwrap();
        let names: Vec<Vec<String>> = out
            .iter()
            .map(|o| o.report.subtests.iter().map(|r| r.name.clone()).collect())
            .collect();
        assert_eq!(names, [vec!["a", "b"], vec!["c"], vec!["d"]]);
        assert!(out
            .iter()
            .all(|o| o.report.subtests.iter().all(|r| r.verdict == Verdict::Pass)));
        let events = &seen.lock().unwrap().0;
        let finished: Vec<(usize, String)> = events
            .iter()
            .filter_map(|e| match e {
                Event::SubtestFinished { job, result } => Some((*job, result.name.clone())),
                _ => None,
            })
            .collect();
        for (job, name) in [(0, "a"), (0, "b"), (1, "c"), (2, "d")] {
            assert!(finished.contains(&(job, name.to_string())), "{finished:?}");
        }
        let ups = events
            .iter()
            .filter(|e| matches!(e, Event::VmUp { id, .. } if id == "7"))
            .count();
        assert_eq!(ups, 3);
        let done = events
            .iter()
            .filter(|e| matches!(e, Event::JobFinished { .. }))
            .count();
        assert_eq!(done, 3);
    }

    #[test]
    fn fail_fast_in_one_job_leaves_the_jobs_not_started_unrun() {
        let t = tempfile::tempdir().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let jobs = vec![
            job(t.path(), 0, &["bad"], &stop, Fake { barrier: None }),
            job(t.path(), 1, &["never"], &stop, Fake { barrier: None }),
        ];
        let limits = Limits { vms: 1, mem: None };
        let out = run(jobs, limits, &stop, &mut Reporters::default(), |_| {}).unwrap();
        assert_eq!(out[0].report.subtests[0].verdict, Verdict::Fail);
        let never = &out[1].report.subtests[0];
        assert_eq!(never.verdict, Verdict::NotRun);
        assert!(never.reason.as_deref().unwrap().contains("--fail-fast"));
        assert!(out[1].report.console_logs.is_empty(), "no VM was booted");
    }

    #[test]
    fn a_job_starts_when_a_vm_is_free_and_its_memory_fits() {
        const G: u64 = 1 << 30;
        let l = Limits {
            vms: 2,
            mem: Some(3 * G),
        };
        assert!(may_start(l, 0, 0, 8 * G), "one VM always runs");
        assert!(may_start(l, 1, G, 2 * G));
        assert!(!may_start(l, 1, 2 * G, 2 * G), "memory");
        assert!(!may_start(l, 2, 0, 0), "VMs");
        let no_mem = Limits { vms: 4, mem: None };
        assert!(may_start(no_mem, 3, 100 * G, 100 * G));
    }
}
