//! Reporters: everything a run tells the world goes through here. The runner
//! emits `Event`s; each reporter (terminal, JUnit, JSON, KTAP, the results
//! history) consumes them and decides what to show or write. The runner and
//! the supervision loop print nothing themselves.

pub mod file;
#[cfg(test)]
mod fixtures;
pub mod history;
pub mod json;
pub mod junit;
pub mod ktap;
pub mod terminal;

use crate::error::Result;
use crate::results::{RunReport, SubtestResult};
use std::path::PathBuf;

/// Something that happened during a run, in the order it happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// The run begins: which test file, which subtests were selected.
    RunStarted {
        /// The run's id (`RunReport::run_id`).
        run_id: String,
        /// The test file.
        test: PathBuf,
        /// The selected subtests, in run order.
        subtests: Vec<String>,
    },
    /// A VM booted to run `subtests` (the first, or a fresh one after a
    /// crash or a time-out).
    VmStarted {
        /// 1 for the first VM of a test, then 2, 3...
        attempt: u32,
        /// The subtests it is to run.
        subtests: Vec<String>,
        /// Its console log.
        console_log: PathBuf,
    },
    /// A subtest started in the guest.
    SubtestStarted {
        /// Its name.
        name: String,
    },
    /// A line of the test's own output (stdout and stderr).
    Output {
        /// The line, without its newline.
        line: String,
    },
    /// A console line worth showing live (the boot log with `-v`, the kernel's
    /// messages while a test runs).
    Console {
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
        /// One line.
        text: String,
    },
    /// A subtest ended, with its verdict.
    SubtestFinished {
        /// Its result.
        result: SubtestResult,
    },
    /// The run ended.
    RunFinished {
        /// Everything it found.
        report: RunReport,
    },
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
pub fn for_run(db: &std::path::Path, args: &crate::cli::RunArgs) -> Result<Reporters> {
    let mut r = Reporters::default();
    if args.ktap {
        r.add(Box::new(terminal::Terminal::stderr_only(
            true,
            true,
            args.verbose,
        )));
        r.add(Box::new(ktap::Ktap::new()));
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
        for e in crate::runner::display(&ev) {
            let _ = t.event(&e);
        }
    }
}
