//! `--ktap`: the run as KTAP version 1 on stdout
//! (Documentation/dev-tools/ktap.rst), streamed: the version and plan
//! lines when a test file starts, each subtest's lines when it finishes.
//!
//! A subtest's KTAP cases nest under it as the kernel nests them: two
//! spaces a level, `KTAP version 1`, `# Subtest: NAME`, the plan, their
//! results, then the parent's result line. Skip, timeout and crash use the
//! directives KTAP defines (`SKIP`, `TIMEOUT`, `ERROR`); a plain failure's
//! reason and the kernel-log findings go in `# ` diagnostic lines right
//! before the result line, where KTAP parsers attach them. docs/results.md
//! shows an example.

use super::{Event, Reporter};
use crate::error::Result;
use crate::results::{counts, RunReport, SubtestResult, Verdict};
use std::path::PathBuf;

/// One nesting level.
const INDENT: &str = "  ";

/// The version and plan lines of a document of `n` results.
pub fn header(n: usize, depth: usize) -> Vec<String> {
    let indent = INDENT.repeat(depth);
    vec![format!("{indent}KTAP version 1"), format!("{indent}1..{n}")]
}

/// A description may not contain `#` (it would start the directive) nor a
/// line break.
fn description(name: &str) -> String {
    name.replace('#', "_").replace(['\n', '\r'], " ")
}

/// Diagnostic data is one line.
fn one_line(s: &str) -> String {
    s.trim().replace(['\n', '\r'], " ")
}

/// The lines of result number `number`: its cases nested, its diagnostics,
/// its result line, all at nesting `depth` (0 for a top-level subtest).
pub fn result_lines(number: usize, r: &SubtestResult, depth: usize) -> Vec<String> {
    let mut out = Vec::new();
    push_result(&mut out, number, r, depth);
    out
}

fn push_result(out: &mut Vec<String>, number: usize, r: &SubtestResult, depth: usize) {
    let indent = INDENT.repeat(depth);
    let name = description(&r.name);
    if !r.children.is_empty() {
        let inner = INDENT.repeat(depth + 1);
        // kunit.py reads the `# Subtest:` header between version and plan.
        out.push(format!("{inner}KTAP version 1"));
        out.push(format!("{inner}# Subtest: {name}"));
        out.push(format!("{inner}1..{}", r.children.len()));
        for (i, c) in r.children.iter().enumerate() {
            push_result(out, i + 1, c, depth + 1);
        }
    }
    for f in &r.findings {
        let head = if f.allowed {
            "kernel (allowed)"
        } else {
            "kernel"
        };
        out.push(format!("{indent}# {head}: {}", one_line(&f.title)));
        if !f.allowed {
            for line in f.excerpt.iter().filter(|l| l.trim() != f.title.trim()) {
                out.push(format!("{indent}#   {}", line.trim_end()));
            }
        }
    }
    let reason = r.reason.as_deref().map(one_line);
    let reason_or = |fallback: &str| reason.clone().unwrap_or_else(|| fallback.to_string());
    let (ok, directive) = match r.verdict {
        Verdict::Pass => (true, None),
        Verdict::Skip => (true, Some(format!("SKIP {}", reason_or("")))),
        Verdict::Timeout => (false, Some(format!("TIMEOUT {}", reason_or("")))),
        Verdict::Crash => (
            false,
            Some(format!("ERROR {}", reason_or("kernel crashed"))),
        ),
        Verdict::Fail | Verdict::NotRun => (false, None),
    };
    // Without a directive the reason is a diagnostic line; as directive
    // data a word like "exit" could be taken for an unknown directive.
    if directive.is_none() {
        match (r.verdict, &reason) {
            (Verdict::NotRun, Some(why)) => out.push(format!("{indent}# not run: {why}")),
            (Verdict::NotRun, None) => out.push(format!("{indent}# not run")),
            (_, Some(why)) => out.push(format!("{indent}# {why}")),
            (_, None) => {}
        }
    }
    if !r.verdict.is_ok() && depth == 0 {
        if let Some(log) = &r.log {
            out.push(format!("{indent}# log: {}", log.display()));
        }
    }
    let result = if ok { "ok" } else { "not ok" };
    let directive = directive
        .map(|d| format!(" # {}", d.trim_end()))
        .unwrap_or_default();
    out.push(format!("{indent}{result} {number} {name}{directive}"));
}

/// kselftest's closing line, `# Totals: pass:P fail:F xfail:0 xpass:0
/// skip:S error:E`, over the top-level subtests: timeouts, crashes and
/// subtests that never ran count as errors (they did not complete).
pub fn totals_line<'a>(results: impl IntoIterator<Item = &'a SubtestResult>) -> String {
    let c = counts(results);
    let n = |v: Verdict| c.iter().find(|(w, _)| *w == v).map_or(0, |(_, n)| *n);
    format!(
        "# Totals: pass:{} fail:{} xfail:0 xpass:0 skip:{} error:{}",
        n(Verdict::Pass),
        n(Verdict::Fail),
        n(Verdict::Skip),
        n(Verdict::Timeout) + n(Verdict::Crash) + n(Verdict::NotRun)
    )
}

/// The whole output for a finished run: one document per test file, then
/// the totals. The streaming reporter prints the same lines as they come.
pub fn document_lines(report: &RunReport) -> Vec<String> {
    let mut out = Vec::new();
    for t in &report.tests {
        out.extend(header(t.subtests.len(), 0));
        for (i, r) in t.subtests.iter().enumerate() {
            out.extend(result_lines(i + 1, r, 0));
        }
    }
    out.push(totals_line(report.tests.iter().flat_map(|t| &t.subtests)));
    out
}

/// The document being streamed: one test file's.
struct Document {
    test: PathBuf,
    /// The selected subtests, in run order.
    planned: Vec<String>,
    /// How many results were printed.
    printed: usize,
}

/// The KTAP reporter.
pub struct Ktap {
    sink: Box<dyn FnMut(&str)>,
    current: Option<Document>,
    /// Some document was started (a run that ends without one prints its
    /// report whole).
    any: bool,
    /// Several jobs run at once: print the report whole at the end.
    whole: bool,
}

impl Ktap {
    /// KTAP on stdout. Give the terminal reporter `Terminal::stderr_only`
    /// alongside it.
    pub fn new() -> Self {
        Self::with_sink(Box::new(|line| crate::outln!("{line}")))
    }

    /// KTAP to `sink`, a line (without its newline) at a time.
    pub fn with_sink(sink: Box<dyn FnMut(&str)>) -> Self {
        Ktap {
            sink,
            current: None,
            any: false,
            whole: false,
        }
    }

    fn emit(&mut self, lines: Vec<String>) {
        for l in lines {
            (self.sink)(&l);
        }
    }

    /// Ends the current document: subtests it planned but never reported
    /// are printed as not run, with the report's result for them if it has
    /// one, so the plan always matches.
    fn close(&mut self, report: Option<&RunReport>) {
        let Some(doc) = self.current.take() else {
            return;
        };
        let known = report
            .and_then(|r| r.tests.iter().find(|t| t.test == doc.test))
            .map(|t| t.subtests.as_slice())
            .unwrap_or_default();
        let mut lines = Vec::new();
        for (i, name) in doc.planned.iter().enumerate().skip(doc.printed) {
            let r = known
                .iter()
                .find(|r| &r.name == name)
                .cloned()
                .unwrap_or_else(|| {
                    let mut r = SubtestResult::new(name.clone(), Verdict::NotRun);
                    r.reason = Some("the run ended before it".into());
                    r
                });
            lines.extend(result_lines(i + 1, &r, 0));
        }
        self.emit(lines);
    }
}

impl Default for Ktap {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for Ktap {
    fn event(&mut self, event: &Event) -> Result<()> {
        match event {
            // Several jobs finish in any order: the document is written
            // whole at the end, in the report's order.
            Event::RunStarted { jobs, .. } if jobs.len() != 1 => self.whole = true,
            Event::SubtestFinished { .. } if self.whole => {}
            Event::RunStarted { jobs, .. } => {
                let (test, subtests) = (&jobs[0].test, &jobs[0].subtests);
                self.close(None);
                self.emit(header(subtests.len(), 0));
                self.current = Some(Document {
                    test: test.clone(),
                    planned: subtests.clone(),
                    printed: 0,
                });
                self.any = true;
            }
            Event::SubtestFinished { result, .. } => {
                let number = match &mut self.current {
                    Some(doc) => {
                        doc.printed += 1;
                        doc.printed
                    }
                    // No plan was announced; KTAP allows leaving it out.
                    None => {
                        self.emit(vec!["KTAP version 1".into()]);
                        self.current = Some(Document {
                            test: PathBuf::new(),
                            planned: Vec::new(),
                            printed: 1,
                        });
                        self.any = true;
                        1
                    }
                };
                self.emit(result_lines(number, result, 0));
            }
            Event::RunFinished { report } => {
                if self.any {
                    self.close(Some(report));
                    self.emit(vec![totals_line(
                        report.tests.iter().flat_map(|t| &t.subtests),
                    )]);
                } else {
                    self.emit(document_lines(report));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{case, kunit_example, run_report};
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A reporter that collects its lines.
    fn collecting() -> (Ktap, Rc<RefCell<Vec<String>>>) {
        let lines = Rc::new(RefCell::new(Vec::new()));
        let l = lines.clone();
        let k = Ktap::with_sink(Box::new(move |s| l.borrow_mut().push(s.to_string())));
        (k, lines)
    }

    /// The events a runner sends for `report`.
    fn events(report: &RunReport) -> Vec<Event> {
        let mut ev = vec![Event::RunStarted {
            run_id: report.run_id.clone(),
            jobs: report
                .tests
                .iter()
                .map(|t| crate::report::JobInfo {
                    test: t.test.clone(),
                    subtests: t.subtests.iter().map(|r| r.name.clone()).collect(),
                    estimate: std::time::Duration::ZERO,
                })
                .collect(),
            vms: 1,
        }];
        for (job, t) in report.tests.iter().enumerate() {
            for r in &t.subtests {
                ev.push(Event::SubtestStarted {
                    job,
                    name: r.name.clone(),
                });
                ev.push(Event::Output {
                    job,
                    line: "not ok 1 this is the test's own output".into(),
                });
                ev.push(Event::SubtestFinished {
                    job,
                    result: r.clone(),
                });
            }
        }
        ev.push(Event::RunFinished {
            report: report.clone(),
        });
        ev
    }

    #[test]
    fn the_kunit_example_nests_like_the_kernel_documents_it() {
        assert_eq!(
            result_lines(1, &kunit_example(), 0),
            [
                "  KTAP version 1",
                "  # Subtest: example",
                "  1..3",
                "  ok 1 example_simple_test",
                "  ok 2 example_skip_test # SKIP this test should be skipped",
                "  # Expected 1 == 2, but 2 == 2",
                "  not ok 3 example_fail_test",
                "not ok 1 example",
            ]
        );
    }

    #[test]
    fn every_verdict_maps_to_ok_not_ok_and_a_directive() {
        let report = run_report();
        let by_name = |n: &str| {
            let r = report.tests[0].subtests.iter().find(|r| r.name == n);
            result_lines(7, r.unwrap(), 0)
        };
        let logs = "/src/linux/.ktest/runs/20260101-120000-ab12/bcache";
        assert_eq!(
            by_name("discard"),
            ["ok 7 discard # SKIP CONFIG_BCACHE_ASYNC_REGISTRATION is not set"]
        );
        assert_eq!(
            by_name("resize"),
            [
                format!("# log: {logs}/resize.log"),
                "not ok 7 resize # TIMEOUT timed out after 60 s".into()
            ]
        );
        assert_eq!(
            by_name("detach"),
            ["# not run: --fail-fast", "not ok 7 detach"]
        );
        let crash = by_name("stop_reregister");
        assert_eq!(
            crash[0],
            "# kernel: BUG: KASAN: slab-out-of-bounds in kmalloc_oob_right+0xa8/0xbc [test_kasan]"
        );
        assert_eq!(
            crash[1],
            "#   Write of size 1 at addr ffff8801f44ec37b by task insmod/2760"
        );
        assert_eq!(
            crash.last().unwrap(),
            "not ok 7 stop_reregister # ERROR Kernel panic - not syncing: Fatal exception"
        );
        // An allowed finding is named, its excerpt left to the log.
        assert_eq!(
            by_name("writeback"),
            [
                "# kernel (allowed): WARNING: CPU: 1 PID: 28102 at kernel/module.c:1108 module_put+0x57/0x70",
                "ok 7 writeback"
            ]
        );
    }

    #[test]
    fn a_bare_skip_and_a_reasonless_crash_still_read_well() {
        let skip = case("a", Verdict::Skip, None);
        assert_eq!(result_lines(1, &skip, 0), ["ok 1 a # SKIP"]);
        let crash = case("b", Verdict::Crash, None);
        assert_eq!(
            result_lines(2, &crash, 0),
            ["not ok 2 b # ERROR kernel crashed"]
        );
        let fail = case("c", Verdict::Fail, None);
        assert_eq!(result_lines(3, &fail, 1), ["  not ok 3 c"]);
    }

    #[test]
    fn a_hash_in_a_name_cannot_start_a_directive() {
        let r = case("odd # SKIP name", Verdict::Fail, Some("a\nb"));
        assert_eq!(
            result_lines(1, &r, 0),
            ["# a b", "not ok 1 odd _ SKIP name"]
        );
    }

    #[test]
    fn streaming_prints_the_same_document_as_the_finished_report() {
        let report = run_report();
        let (mut k, lines) = collecting();
        for e in events(&report) {
            k.event(&e).unwrap();
        }
        let got = lines.borrow().clone();
        assert_eq!(got, document_lines(&report));
        assert_eq!(got[..2], ["KTAP version 1", "1..8"]);
        assert_eq!(
            got.last().unwrap(),
            "# Totals: pass:1 fail:3 xfail:0 xpass:0 skip:1 error:3"
        );
        // The test's own output is not KTAP ktest vouches for.
        assert!(!got.iter().any(|l| l.contains("own output")));
        // Top-level results are numbered 1..=8 in order.
        let numbers: Vec<usize> = got
            .iter()
            .filter_map(|l| l.strip_prefix("ok ").or(l.strip_prefix("not ok ")))
            .map(|l| l.split(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(numbers, (1..=8).collect::<Vec<_>>());
    }

    #[test]
    fn a_run_cut_short_still_matches_its_plan() {
        let report = run_report();
        let (mut k, lines) = collecting();
        let ev = events(&report);
        // The run started, one subtest finished, then the run ended.
        for e in ev.iter().take(4) {
            k.event(e).unwrap();
        }
        let mut short = report.clone();
        short.tests[0].subtests.truncate(1);
        k.event(&Event::RunFinished { report: short }).unwrap();
        let got = lines.borrow().clone();
        let results: Vec<&String> = got
            .iter()
            .filter(|l| l.starts_with("ok ") || l.starts_with("not ok "))
            .collect();
        assert_eq!(results.len(), 8);
        assert_eq!(results[1], "not ok 2 writethrough");
        assert!(got.contains(&"# not run: the run ended before it".to_string()));
    }

    #[test]
    fn a_run_that_never_announced_itself_prints_its_report_whole() {
        let report = run_report();
        let (mut k, lines) = collecting();
        k.event(&Event::RunFinished {
            report: report.clone(),
        })
        .unwrap();
        assert_eq!(*lines.borrow(), document_lines(&report));
    }

    #[test]
    fn every_document_line_is_a_ktap_line() {
        // Version, plan, result, or diagnostic, at an even indentation.
        for line in document_lines(&run_report()) {
            let body = line.trim_start_matches(' ');
            assert_eq!((line.len() - body.len()) % 2, 0, "{line}");
            let known = body == "KTAP version 1"
                || body.starts_with("1..")
                || body.starts_with("ok ")
                || body.starts_with("not ok ")
                || body.starts_with("# ");
            assert!(known, "not a KTAP line: {line:?}");
        }
    }
}
