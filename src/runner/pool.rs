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
