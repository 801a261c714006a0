//! The human's view of a run: the test's output as it comes, one line per
//! subtest as it finishes, then a summary.
//!
//! Streams (docs/results.md, "Terminal"): the test's output, the console
//! lines the runner shows, raw interactive bytes and the per-subtest lines
//! go to stdout, so `ktest run ... > out.txt` keeps what the test said and
//! how each subtest ended; ktest's notes and the summary go to stderr, as
//! `ktest: NAME: passed` always has. With `--ktap` stdout belongs to the
//! KTAP document, and `Terminal::stderr_only` sends everything to stderr.

use super::{Event, Reporter};
use crate::error::Result;
use crate::results::{counts, KernelLogFinding, RunReport, SubtestResult, Verdict};
use std::ffi::OsString;
use std::io::{IsTerminal, Write as _};
use std::time::Duration;

/// A level with at most this many KTAP cases shows them all; a larger one
/// shows only the cases that did not pass (or hold ones that did not) and
/// counts the rest, so a 300-case kselftest does not bury its one failure.
pub const ALL_CHILDREN_UP_TO: usize = 10;

/// Excerpt lines shown under a kernel-log finding without `-v`; the whole
/// excerpt is in the subtest's log.
pub const EXCERPT_LINES: usize = 6;

/// Width of the verdict column: the longest label, `TIMEOUT`, and a space.
const LABEL_WIDTH: usize = 8;

/// One level of nesting under a subtest's line.
const INDENT: &str = "    ";

/// Which stream a line goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// Whether to colour, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Emit ANSI colour sequences.
    pub color: bool,
}

impl Style {
    /// `text` in the SGR colour `sgr` when colouring.
    fn paint(self, sgr: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// A verdict's label, padded to the label column, coloured. Padding is
    /// added outside the colour so columns line up either way.
    fn label(self, v: Verdict) -> String {
        let text = label(v);
        let pad = " ".repeat(LABEL_WIDTH.saturating_sub(text.len()));
        format!("{}{pad}", self.paint(sgr(v), text))
    }
}

/// The upper-case label of a subtest line.
pub fn label(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Skip => "SKIP",
        Verdict::Fail => "FAIL",
        Verdict::Timeout => "TIMEOUT",
        Verdict::Crash => "CRASH",
        Verdict::NotRun => "NOTRUN",
    }
}

/// How the summary says a count of this verdict.
fn past_tense(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "passed",
        Verdict::Skip => "skipped",
        Verdict::Fail => "failed",
        Verdict::Timeout => "timed out",
        Verdict::Crash => "crashed",
        Verdict::NotRun => "not run",
    }
}

/// Green for pass, yellow for skip, red for the failures (bold for a
/// crash), dim for what never ran.
fn sgr(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "32",
        Verdict::Skip => "33",
        Verdict::Fail | Verdict::Timeout => "31",
        Verdict::Crash => "1;31",
        Verdict::NotRun => "2",
    }
}

/// Whether to colour a stream: the caller allows it (`wanted`), the stream
/// is a terminal, and NO_COLOR (no-color.org: set and not empty) is not
/// set.
pub fn use_color(wanted: bool, is_tty: bool, no_color: Option<OsString>) -> bool {
    wanted && is_tty && no_color.map_or(true, |v| v.is_empty())
}

/// `1.23 s` under a minute, `2 m 03 s` under an hour, `1 h 02 m` above.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.2} s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{} m {:02} s", secs / 60, secs % 60)
    } else {
        format!("{} h {:02} m", secs / 3600, secs % 3600 / 60)
    }
}

/// The lines a finished subtest prints: its verdict line, then its
/// kernel-log findings, then its KTAP cases (the rule is
/// `ALL_CHILDREN_UP_TO`; `verbose` shows every case and whole excerpts).
pub fn subtest_lines(r: &SubtestResult, style: Style, verbose: bool) -> Vec<String> {
    let mut out = Vec::new();
    push_subtest(&mut out, r, 0, true, style, verbose);
    out
}

fn push_subtest(
    out: &mut Vec<String>,
    r: &SubtestResult,
    depth: usize,
    top: bool,
    style: Style,
    verbose: bool,
) {
    let indent = INDENT.repeat(depth);
    // A KTAP case has no duration of its own; a top-level subtest always
    // shows one, unless it never ran.
    let time = if r.verdict != Verdict::NotRun && (top || !r.duration.is_zero()) {
        format!("  ({})", human_duration(r.duration))
    } else {
        String::new()
    };
    let reason = r
        .reason
        .as_deref()
        .map(|s| format!(": {}", one_line(s)))
        .unwrap_or_default();
    out.push(format!(
        "{indent}{}{}{time}{reason}",
        style.label(r.verdict),
        r.name
    ));
    for f in &r.findings {
        push_finding(out, f, depth + 1, style, verbose);
    }
    push_children(out, &r.children, depth + 1, style, verbose);
}

fn push_finding(
    out: &mut Vec<String>,
    f: &KernelLogFinding,
    depth: usize,
    style: Style,
    verbose: bool,
) {
    let indent = INDENT.repeat(depth);
    let (head, color) = if f.allowed {
        ("kernel (allowed)", "33")
    } else {
        ("kernel", "31")
    };
    out.push(format!(
        "{indent}{}: {}",
        style.paint(color, head),
        one_line(&f.title)
    ));
    // An allowed finding is kept, not debugged: its title is enough.
    if f.allowed && !verbose {
        return;
    }
    // The excerpt usually repeats the title; do not show it twice.
    let body: Vec<&String> = f
        .excerpt
        .iter()
        .filter(|l| l.trim() != f.title.trim())
        .collect();
    let shown = if verbose {
        body.len()
    } else {
        body.len().min(EXCERPT_LINES)
    };
    for line in &body[..shown] {
        out.push(format!("{indent}  | {line}"));
    }
    if shown < body.len() {
        out.push(format!(
            "{indent}  | ... {} more lines in the log",
            body.len() - shown
        ));
    }
}

/// Whether a case or anything under it did not pass.
fn troubled(r: &SubtestResult) -> bool {
    !r.verdict.is_ok() || r.children.iter().any(troubled)
}

fn push_children(
    out: &mut Vec<String>,
    children: &[SubtestResult],
    depth: usize,
    style: Style,
    verbose: bool,
) {
    if verbose || children.len() <= ALL_CHILDREN_UP_TO {
        for c in children {
            push_subtest(out, c, depth, false, style, verbose);
        }
        return;
    }
    let (shown, hidden): (Vec<&SubtestResult>, Vec<&SubtestResult>) =
        children.iter().partition(|c| troubled(c));
    for c in shown {
        push_subtest(out, c, depth, false, style, verbose);
    }
    if !hidden.is_empty() {
        out.push(format!(
            "{}... {} more: {}",
            INDENT.repeat(depth),
            hidden.len(),
            count_words(&counts(hidden), Style { color: false })
        ));
    }
}

/// `9 passed, 1 failed`: the non-zero counts, in `Verdict::ALL` order.
fn count_words(counts: &[(Verdict, usize)], style: Style) -> String {
    let words: Vec<String> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(v, n)| {
            let text = format!("{n} {}", past_tense(*v));
            if *v == Verdict::Pass {
                text
            } else {
                style.paint(sgr(*v), &text)
            }
        })
        .collect();
    if words.is_empty() {
        "nothing ran".to_string()
    } else {
        words.join(", ")
    }
}

/// Reasons are one line by contract; a stray newline must not break the
/// layout.
fn one_line(s: &str) -> String {
    s.trim().replace(['\n', '\r'], " ")
}

/// The summary on stderr when the run ends, each line without the `ktest: `
/// prefix: counts and time, then every top-level subtest that was neither
/// passed nor skipped with its log, then the console logs of the tests
/// that crashed.
pub fn summary_lines(report: &RunReport, style: Style) -> Vec<String> {
    let all: Vec<&SubtestResult> = report.tests.iter().flat_map(|t| &t.subtests).collect();
    let what = match report.tests.as_slice() {
        [one] => test_name(&one.test),
        many => format!("{} test files", many.len()),
    };
    let n = all.len();
    let mut out = vec![format!(
        "{what}: {} ({n} subtest{}, {})",
        count_words(&counts(all.iter().copied()), style),
        if n == 1 { "" } else { "s" },
        human_duration(report.duration)
    )];
    let prefix = report.tests.len() > 1;
    for t in &report.tests {
        for r in t.subtests.iter().filter(|r| !r.verdict.is_ok()) {
            let name = if prefix {
                format!("{}:{}", test_name(&t.test), r.name)
            } else {
                r.name.clone()
            };
            let log = match &r.log {
                Some(p) => format!("  {}", p.display()),
                None => String::new(),
            };
            out.push(format!("  {}{name}{log}", style.label(r.verdict)));
        }
        if t.subtests.iter().any(|r| r.verdict == Verdict::Crash) {
            for log in &t.console_logs {
                out.push(format!("console log: {}", log.display()));
            }
        }
    }
    out
}

/// A test's name as the user knows it: its file's name.
pub fn test_name(p: &std::path::Path) -> String {
    p.file_name()
        .unwrap_or(p.as_os_str())
        .to_string_lossy()
        .into_owned()
}

/// The terminal reporter.
pub struct Terminal {
    /// Where the test's output and the subtest lines go.
    main: Stream,
    /// Colour for `main`, and for stderr.
    main_style: Style,
    err_style: Style,
    show_output: bool,
    verbose: bool,
}

impl Terminal {
    /// The usual terminal: output and subtest lines on stdout, notes and
    /// the summary on stderr. `color` is the user's permission; each
    /// stream is coloured only if it is a terminal and NO_COLOR is unset.
    /// `show_output` shows the test's output lines as they come; `verbose`
    /// adds the VMs and subtests as they start, every KTAP case and whole
    /// kernel-log excerpts.
    pub fn new(color: bool, show_output: bool, verbose: bool) -> Self {
        Self::build(Stream::Stdout, color, show_output, verbose)
    }

    /// Like `new`, but everything goes to stderr: for `--ktap`, whose
    /// document owns stdout.
    pub fn stderr_only(color: bool, show_output: bool, verbose: bool) -> Self {
        Self::build(Stream::Stderr, color, show_output, verbose)
    }

    fn build(main: Stream, color: bool, show_output: bool, verbose: bool) -> Self {
        let no_color = || std::env::var_os("NO_COLOR");
        let err_style = Style {
            color: use_color(color, std::io::stderr().is_terminal(), no_color()),
        };
        let main_style = match main {
            Stream::Stderr => err_style,
            Stream::Stdout => Style {
                color: use_color(color, std::io::stdout().is_terminal(), no_color()),
            },
        };
        Terminal {
            main,
            main_style,
            err_style,
            show_output,
            verbose,
        }
    }

    fn line(&self, stream: Stream, text: &str) {
        match stream {
            Stream::Stdout => crate::outln!("{text}"),
            Stream::Stderr => crate::errln!("{text}"),
        }
    }

    fn note(&self, text: &str) {
        self.line(Stream::Stderr, &format!("ktest: {text}"));
    }
}

impl Reporter for Terminal {
    fn event(&mut self, event: &Event) -> Result<()> {
        match event {
            Event::RunStarted { run_id, jobs, .. } => {
                if self.verbose {
                    for job in jobs {
                        self.note(&format!(
                            "run {run_id}: {}: {} subtest{} selected: {}",
                            test_name(&job.test),
                            job.subtests.len(),
                            if job.subtests.len() == 1 { "" } else { "s" },
                            job.subtests.join(" ")
                        ));
                    }
                }
            }
            Event::VmStarted {
                attempt,
                subtests,
                console_log,
                ..
            } => {
                if self.verbose {
                    self.note(&format!(
                        "VM {attempt} for {} subtest{}; console log: {}",
                        subtests.len(),
                        if subtests.len() == 1 { "" } else { "s" },
                        console_log.display()
                    ));
                }
            }
            Event::SubtestStarted { name, .. } => {
                // Output that follows needs a heading to be told apart.
                if self.show_output || self.verbose {
                    let run = self.main_style.paint("36", "RUN");
                    let pad = " ".repeat(LABEL_WIDTH - 3);
                    self.line(self.main, &format!("{run}{pad}{name}"));
                }
            }
            Event::Output { line, .. } => {
                if self.show_output {
                    self.line(self.main, line);
                }
            }
            Event::Console { line, .. } => self.line(self.main, line),
            Event::Raw { bytes } => match self.main {
                Stream::Stdout => {
                    let mut o = std::io::stdout().lock();
                    let _ = o.write_all(bytes);
                    let _ = o.flush();
                }
                Stream::Stderr => {
                    let mut e = std::io::stderr().lock();
                    let _ = e.write_all(bytes);
                    let _ = e.flush();
                }
            },
            Event::Note { text, .. } => self.note(text),
            Event::SubtestFinished { result, .. } => {
                for l in subtest_lines(result, self.main_style, self.verbose) {
                    self.line(self.main, &l);
                }
            }
            Event::RunFinished { report } => {
                for l in summary_lines(report, self.err_style) {
                    self.note(&l);
                }
            }
            Event::VmUp { .. } | Event::JobFinished { .. } | Event::Tick => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{case, run_report, subtest, warning};

    const PLAIN: Style = Style { color: false };

    fn lines_of(name: &str) -> Vec<String> {
        let report = run_report();
        let r = report.tests[0]
            .subtests
            .iter()
            .find(|r| r.name == name)
            .unwrap();
        subtest_lines(r, PLAIN, false)
    }

    #[test]
    fn colour_needs_permission_a_tty_and_no_no_color() {
        assert!(use_color(true, true, None));
        assert!(!use_color(false, true, None));
        assert!(!use_color(true, false, None));
        assert!(!use_color(true, true, Some("1".into())));
        // no-color.org: an empty NO_COLOR does not count.
        assert!(use_color(true, true, Some("".into())));
    }

    #[test]
    fn durations_read_naturally_at_every_scale() {
        assert_eq!(human_duration(Duration::from_millis(1234)), "1.23 s");
        assert_eq!(human_duration(Duration::ZERO), "0.00 s");
        assert_eq!(human_duration(Duration::from_secs(123)), "2 m 03 s");
        assert_eq!(human_duration(Duration::from_secs(3720)), "1 h 02 m");
    }

    #[test]
    fn a_pass_is_one_line_with_its_time() {
        let r = subtest("writeback", Verdict::Pass, None, 1234);
        assert_eq!(
            subtest_lines(&r, PLAIN, false),
            ["PASS    writeback  (1.23 s)"]
        );
    }

    #[test]
    fn every_verdict_has_its_label_and_reason() {
        assert_eq!(
            lines_of("discard")[0],
            "SKIP    discard  (0.05 s): CONFIG_BCACHE_ASYNC_REGISTRATION is not set"
        );
        assert_eq!(
            lines_of("resize")[0],
            "TIMEOUT resize  (1 m 00 s): timed out after 60 s"
        );
        assert_eq!(
            lines_of("stop_reregister")[0],
            "CRASH   stop_reregister  (2.50 s): Kernel panic - not syncing: Fatal exception"
        );
        // What never ran has no time to show.
        assert_eq!(lines_of("detach"), ["NOTRUN  detach: --fail-fast"]);
    }

    #[test]
    fn a_failing_finding_shows_its_title_and_a_bounded_excerpt() {
        let l = lines_of("writethrough");
        assert_eq!(l[0], "FAIL    writethrough  (0.40 s): exit status 1");
        assert_eq!(
            l[1],
            "    kernel: WARNING: CPU: 1 PID: 28102 at kernel/module.c:1108 module_put+0x57/0x70"
        );
        // The title is not repeated in the excerpt.
        assert_eq!(l[2], "      | ------------[ cut here ]------------");
        assert_eq!(
            l[3],
            "      | Modules linked in: dvb_usb_gp8psk(-) dvb_usb dvb_core"
        );
        assert_eq!(l.len(), 2 + EXCERPT_LINES + 1);
        assert_eq!(l[l.len() - 1], "      | ... 3 more lines in the log");
    }

    #[test]
    fn verbose_shows_the_whole_excerpt() {
        let mut r = subtest("writethrough", Verdict::Fail, None, 400);
        r.findings = vec![warning(false)];
        let l = subtest_lines(&r, PLAIN, true);
        assert_eq!(l.len(), 2 + 9);
        assert_eq!(l[10], "      | ---[ end trace 6ebc60ef3981792f ]---");
    }

    #[test]
    fn an_allowed_finding_shows_only_its_title() {
        assert_eq!(
            lines_of("writeback"),
            [
                "PASS    writeback  (1.23 s)",
                "    kernel (allowed): WARNING: CPU: 1 PID: 28102 at kernel/module.c:1108 module_put+0x57/0x70"
            ]
        );
    }

    #[test]
    fn few_ktap_cases_are_all_shown_nested() {
        assert_eq!(
            lines_of("kunit"),
            [
                "FAIL    kunit  (3.20 s): 1 of 3 cases failed",
                "    FAIL    example",
                "        PASS    example_simple_test",
                "        SKIP    example_skip_test: this test should be skipped",
                "        FAIL    example_fail_test: Expected 1 == 2, but 2 == 2",
            ]
        );
    }

    #[test]
    fn many_ktap_cases_show_the_troubled_and_count_the_rest() {
        assert_eq!(
            lines_of("selftests"),
            [
                "FAIL    selftests  (15.00 s): exit status 1",
                "    FAIL    case_12: got 3, want 4",
                "    ... 29 more: 28 passed, 1 skipped",
            ]
        );
    }

    #[test]
    fn a_passing_case_with_a_failing_case_inside_is_shown() {
        let mut parent = case("suite", Verdict::Pass, None);
        parent.children = vec![case("bad", Verdict::Fail, None)];
        let mut r = subtest("big", Verdict::Fail, None, 1000);
        r.children = (0..ALL_CHILDREN_UP_TO)
            .map(|i| case(&format!("c{i}"), Verdict::Pass, None))
            .collect();
        r.children.push(parent);
        let l = subtest_lines(&r, PLAIN, false);
        assert_eq!(
            l[1..],
            [
                "    PASS    suite",
                "        FAIL    bad",
                "    ... 10 more: 10 passed"
            ]
        );
        // -v shows them all.
        assert_eq!(subtest_lines(&r, PLAIN, true).len(), 1 + 11 + 1);
    }

    #[test]
    fn colour_wraps_only_the_label_and_keeps_the_columns() {
        let r = subtest("writeback", Verdict::Pass, None, 1234);
        let l = subtest_lines(&r, Style { color: true }, false);
        assert_eq!(l, ["\x1b[32mPASS\x1b[0m    writeback  (1.23 s)"]);
        let r = subtest("x", Verdict::Timeout, None, 0);
        let l = subtest_lines(&r, Style { color: true }, false);
        assert_eq!(l, ["\x1b[31mTIMEOUT\x1b[0m x  (0.00 s)"]);
    }

    #[test]
    fn the_summary_counts_lists_what_did_not_pass_and_the_crash_consoles() {
        let s = summary_lines(&run_report(), PLAIN);
        let logs = "/src/linux/.ktest/runs/20260101-120000-ab12/bcache";
        assert_eq!(
            s,
            [
                "bcache: 1 passed, 1 skipped, 3 failed, 1 timed out, 1 crashed, 1 not run (8 subtests, 1 m 23 s)".to_string(),
                format!("  FAIL    writethrough  {logs}/writethrough.log"),
                format!("  FAIL    kunit  {logs}/kunit.log"),
                format!("  FAIL    selftests  {logs}/selftests.log"),
                format!("  CRASH   stop_reregister  {logs}/stop_reregister.log"),
                format!("  TIMEOUT resize  {logs}/resize.log"),
                "  NOTRUN  detach".to_string(),
                format!("console log: {logs}/console-1.log"),
                format!("console log: {logs}/console-2.log"),
            ]
        );
    }

    #[test]
    fn a_passing_run_is_one_summary_line() {
        let s = summary_lines(&crate::report::fixtures::passing_report(), PLAIN);
        assert_eq!(s, ["smoke: 1 passed (1 subtest, 9.87 s)"]);
    }

    #[test]
    fn several_test_files_name_the_file_with_the_subtest() {
        let mut r = run_report();
        let mut second = r.tests[0].clone();
        second.test = "/src/linux/tests/kunit".into();
        second.subtests.truncate(2);
        second.console_logs.clear();
        r.tests.push(second);
        let s = summary_lines(&r, PLAIN);
        assert!(s[0].starts_with("2 test files: 2 passed, 1 skipped, 4 failed,"));
        assert!(s
            .iter()
            .any(|l| l.starts_with("  FAIL    kunit:writethrough  /")));
        assert!(s
            .iter()
            .any(|l| l.starts_with("  FAIL    bcache:writethrough  /")));
    }

    #[test]
    fn the_summary_colours_counts_but_not_passes() {
        let s = summary_lines(&run_report(), Style { color: true });
        assert!(
            s[0].starts_with("bcache: 1 passed, \x1b[33m1 skipped\x1b[0m, \x1b[31m3 failed\x1b[0m")
        );
    }
}
