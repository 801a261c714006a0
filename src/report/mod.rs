//! Reporters: everything a run tells the world goes through here. The runner
//! emits `Event`s; each reporter (terminal, JUnit, JSON, KTAP, the results
//! history) consumes them and decides what to show or write. The runner and
//! the supervision loop print nothing themselves.

pub mod file;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod history;
pub mod json;
pub mod junit;
pub mod ktap;
pub mod live;
pub mod merge;
pub mod terminal;

use crate::error::Result;
use crate::results::{RunReport, SubtestResult};
use std::path::PathBuf;
use std::time::Duration;

/// Which of a run's VM jobs an event belongs to: an index into
/// `RunStarted::jobs`. A job is one test file's subtests, or part of them,
/// run in one VM (and in fresh ones after a crash).
pub type JobId = usize;

/// A job as the run planned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// The test file.
    pub test: PathBuf,
    /// The subtests it runs, in order.
    pub subtests: Vec<String>,
    /// How long the results history says it takes (a guess without one).
    pub estimate: Duration,
}

/// Something that happened during a run, in the order it happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// The run begins: the jobs it will run, at most `vms` at once.
    RunStarted {
        /// The run's id (`RunReport::run_id`).
        run_id: String,
        /// Every job, longest first (the order they start in).
        jobs: Vec<JobInfo>,
        /// How many VMs may run at once.
        vms: u32,
    },
    /// A VM is booting for a job (its first, or a fresh one after a crash
    /// or a time-out).
    VmStarted {
        /// The job.
        job: JobId,
        /// 1 for a job's first VM, then 2, 3...
        attempt: u32,
        /// The subtests it is to run.
        subtests: Vec<String>,
        /// Its console log.
        console_log: PathBuf,
    },
    /// The VM has its id (`ktest status`, `ktest ssh --vm ID`).
    VmUp {
        /// The job.
        job: JobId,
        /// The VM's id.
        id: String,
    },
    /// A subtest started in the guest.
    SubtestStarted {
        /// The job.
        job: JobId,
        /// Its name.
        name: String,
    },
    /// A line of the test's own output (stdout and stderr).
    Output {
        /// The job.
        job: JobId,
        /// The line, without its newline.
        line: String,
    },
    /// A console line worth showing live (the boot log with `-v`, the kernel's
    /// messages while a test runs).
    Console {
        /// The job.
        job: JobId,
        /// The line, without its newline.
        line: String,
    },
    /// Bytes for the user's terminal, as they came (interactive sessions).
    Raw {
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// ktest's own remark (time-outs, a fresh VM after a crash, ...).
    Note {
        /// The job it is about, if any.
        job: Option<JobId>,
        /// One line.
        text: String,
    },
    /// A subtest ended, with its verdict.
    SubtestFinished {
        /// The job.
        job: JobId,
        /// Its result.
        result: SubtestResult,
    },
    /// A job's last VM ended; all its subtests have their verdicts.
    JobFinished {
        /// The job.
        job: JobId,
    },
    /// Time passed with nothing else to report (the live view's clock).
    Tick,
    /// The run ended.
    RunFinished {
        /// Everything it found.
        report: RunReport,
    },
}

/// Where the runner sends its events: the reporters, or a channel to them.
pub trait Emit {
    /// Takes one event.
    fn emit(&mut self, event: Event);
}

impl Emit for Reporters {
    fn emit(&mut self, event: Event) {
        Reporters::emit(self, event)
    }
}

/// A consumer of events.
pub trait Reporter {
    /// Takes one event. An error (a report file that cannot be written)
    /// ends the run with that error after the other reporters had their say.
    fn event(&mut self, event: &Event) -> Result<()>;
}

/// Several reporters fed the same events, in order.
#[derive(Default)]
pub struct Reporters {
    list: Vec<Box<dyn Reporter>>,
    /// The first error a reporter returned.
    error: Option<crate::error::Error>,
}

impl Reporters {
    /// Adds a reporter.
    pub fn add(&mut self, r: Box<dyn Reporter>) {
        self.list.push(r);
    }

    /// Feeds `event` to every reporter; keeps the first error for `finish`.
    pub fn emit(&mut self, event: Event) {
        for r in &mut self.list {
            if let Err(e) = r.event(&event) {
                self.error.get_or_insert(e);
            }
        }
    }

    /// The first error any reporter had.
    pub fn finish(self) -> Result<()> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The reporters `ktest run` feeds: the terminal (all on stderr when KTAP
/// takes stdout), KTAP, the report files the command line asks for, and
/// the results history in the state database.
pub fn for_run(
    db: &std::path::Path,
    args: &crate::cli::RunArgs,
    many_jobs: bool,
) -> Result<Reporters> {
    let mut r = Reporters::default();
    let stderr_only = args.ktap || args.quiet_stdout;
    if many_jobs {
        r.add(Box::new(live::Live::new(stderr_only, args.verbose)));
        if args.ktap {
            r.add(Box::new(ktap::Ktap::new()));
        }
    } else if stderr_only {
        r.add(Box::new(terminal::Terminal::stderr_only(
            true,
            true,
            args.verbose,
        )));
        if args.ktap {
            r.add(Box::new(ktap::Ktap::new()));
        }
    } else {
        r.add(Box::new(terminal::Terminal::new(true, true, args.verbose)));
    }
    if let Some(path) = &args.junit {
        r.add(Box::new(junit::reporter(path.clone())));
    }
    if let Some(path) = &args.json {
        r.add(Box::new(json::reporter(path.clone())));
    }
    let keep = crate::config_file::get()?
        .history_runs
        .map_or(crate::history::DEFAULT_KEEP, |n| n as usize);
    r.add(Box::new(history::History::new(
        db.to_path_buf(),
        crate::launch::start_dir()?,
        keep,
    )));
    Ok(r)
}

/// What `ktest boot` shows: the console as it comes, and ktest's notes.
pub fn terminal_for_boot() -> impl FnMut(crate::supervise::VmEvent) {
    let mut t = terminal::Terminal::new(true, true, false);
    move |ev| {
        for e in crate::runner::display(&ev, 0) {
            let _ = t.event(&e);
        }
    }
}
