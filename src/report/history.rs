//! The results history reporter: stores each finished run in the state
//! database, for `ktest results`.

use super::{Event, Reporter};
use crate::error::Result;
use crate::state::State;
use std::path::PathBuf;

/// Writes the run to the history when it finishes; ignores other events.
pub struct History {
    db: PathBuf,
    host_dir: PathBuf,
    keep: usize,
}

impl History {
    /// A reporter recording into the database at `db`, as run in
    /// `host_dir`, keeping the newest `keep` runs.
    pub fn new(db: PathBuf, host_dir: PathBuf, keep: usize) -> History {
        History { db, host_dir, keep }
    }
}

impl Reporter for History {
    fn event(&mut self, event: &Event) -> Result<()> {
        let Event::RunFinished { report } = event else {
            return Ok(());
        };
        // Opened here, not for the whole run: the runner's own opens must
        // not wait on a connection held across a long test.
        let state = State::open(&self.db)?;
        crate::history::record(&state, report, &self.host_dir, self.keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{KernelIdentity, RunReport, SubtestResult, TestReport, Verdict};
    use std::time::Duration;

    #[test]
    fn records_the_finished_run_and_nothing_else() {
        let t = tempfile::tempdir().unwrap();
        let db = t.path().join("state.db");
        let mut h = History::new(db.clone(), PathBuf::from("/work"), 10);
        h.event(&Event::Note {
            job: None,
            text: "x".into(),
        })
        .unwrap();
        assert!(crate::history::last_run(&State::open(&db).unwrap(), None)
            .unwrap()
            .is_none());
        let report = RunReport {
            run_id: "20250101-000000-0001".into(),
            started_at: 1_735_689_600,
            duration: Duration::from_secs(3),
            kernel: KernelIdentity::default(),
            tests: vec![TestReport {
                test: PathBuf::from("/work/t.sh"),
                subtests: vec![SubtestResult::new("t.sh", Verdict::Pass)],
                console_logs: Vec::new(),
            }],
            shard: None,
            target: None,
        };
        h.event(&Event::RunFinished {
            report: report.clone(),
        })
        .unwrap();
        let stored = crate::history::last_run(&State::open(&db).unwrap(), None)
            .unwrap()
            .unwrap();
        assert_eq!(stored.report, report);
        assert_eq!(stored.host_dir, PathBuf::from("/work"));
    }
}
