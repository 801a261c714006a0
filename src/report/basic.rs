//! A minimal terminal reporter (temporary, until terminal.rs lands).

use super::{Event, Reporter};
use crate::error::Result;

/// Prints output and one line per subtest.
pub struct Basic {
    _verbose: bool,
}

impl Basic {
    /// A reporter.
    pub fn new(verbose: bool) -> Basic {
        Basic { _verbose: verbose }
    }
}

impl Reporter for Basic {
    fn event(&mut self, event: &Event) -> Result<()> {
        use std::io::Write;
        match event {
            Event::Output { line } | Event::Console { line } => crate::outln!("{line}"),
            Event::Raw { bytes } => {
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(bytes);
                let _ = o.flush();
            }
            Event::Note { text } => crate::errln!("ktest: {text}"),
            Event::SubtestFinished { result } => crate::errln!(
                "ktest: {} {}{} ({:.2} s)",
                result.verdict.name().to_uppercase(),
                result.name,
                result
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default(),
                result.duration.as_secs_f64()
            ),
            Event::RunFinished { report } => {
                for t in &report.tests {
                    let c = crate::results::counts(&t.subtests);
                    let text: Vec<String> = c
                        .iter()
                        .filter(|(_, n)| *n > 0)
                        .map(|(v, n)| format!("{n} {}", v.name()))
                        .collect();
                    crate::errln!("ktest: {}: {}", t.test.display(), text.join(", "));
                    for r in t.subtests.iter().filter(|r| !r.verdict.is_ok()) {
                        if let Some(l) = &r.log {
                            crate::errln!("ktest:   {} log: {}", r.name, l.display());
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}
