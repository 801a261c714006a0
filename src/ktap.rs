//! Reading KTAP (and TAP 13/14) results out of a subtest's output.
//!
//! The format is the kernel's Documentation/dev-tools/ktap.rst, as KUnit
//! (lib/kunit) and kselftest (tools/testing/selftests/kselftest.h and its
//! runner) print it, with what kunit.py's parser (tools/testing/kunit/
//! kunit_parser.py) accepts beyond the letter of the spec. Pure: text in,
//! nested results out; it never fails and never panics, whatever the text.
//!
//! How it reads the text:
//! - Output before the first `KTAP version N` / `TAP version N` line is
//!   not KTAP and is skipped. Whatever precedes the version keyword on that
//!   line (a printk timestamp, a `# ` that kselftest's runner adds) is the
//!   prefix of every KTAP line: timestamps are stripped from each line
//!   whatever their value, other prefixes must match exactly, and lines
//!   without the prefix are other output.
//! - Nesting follows the spec: a nested test starts with a version line
//!   and/or a `# Subtest: NAME` header, its lines are indented more than
//!   its parent's, and its parent's `ok`/`not ok` line, back at the
//!   parent's indentation, ends it. Producers that do not indent are read
//!   as kunit.py reads them: a nested test ends when its plan is complete
//!   or at the result line that repeats its `# Subtest:` name.
//! - Several documents one after the other (one per KUnit module loaded)
//!   give one list of top-level cases.
//! - Unknown lines are ignored, as are TAP 13's YAML blocks (`---` ...
//!   `...`) under a result line.
//!
//! Verdicts:
//! - `ok` passes and `not ok` fails, unless a directive says otherwise:
//!   `# SKIP reason` skips (with `ok` or `not ok`, as the spec allows);
//!   `# TIMEOUT` on `not ok` is a timeout; `# ERROR` on `not ok` fails
//!   with the error as the reason.
//! - `# TODO` and `# XFAIL` mark an expected failure. As in TAP, it does
//!   not fail the run: `not ok ... # TODO` is a skip whose reason says
//!   TODO (it did not pass, so it is not shown as a pass), and `ok ... #
//!   TODO`/`# XFAIL` is a pass with the directive as its reason
//!   (kselftest prints `ok N # XFAIL` for a failure that was expected).
//! - A case with nested cases fails when its result line says `ok` but a
//!   nested case did not pass (the spec says a parent fails when a child
//!   does).
//! - A case its plan (`1..N`) announced but that never reported is
//!   `NotRun`, named by its number, with the reason "planned but never
//!   reported". kunit.py calls these "crashed"; here `Crash` means the
//!   kernel went down, which the parser cannot know: the runner gives the
//!   subtest itself `Crash` when the VM died, and these cases say what did
//!   not run. A nested test whose result line never came (the output
//!   stopped inside it) is `NotRun` too, with what it did report as its
//!   children. `NotRun` is not ok, so such a subtest fails.
//! - A failing case without a directive gets, as its reason, the first
//!   diagnostic line before it that mentions a failure (KUnit's
//!   `# name: EXPECTATION FAILED at file:line`), else the last one.

use crate::kernel_log::strip_printk_prefix;
use crate::results::{SubtestResult, Verdict};

/// Parses the KTAP in `text`: the top-level cases with their nested cases
/// as `children`. `None` when no line of `text` is a version line.
pub fn parse(text: &str) -> Option<Vec<SubtestResult>> {
    let mut lines = text.lines();
    let prefix = lines.by_ref().find_map(Prefix::of_version_line)?;
    let mut p = Parser::default();
    p.line(prefix.indent, Line::Version);
    for raw in lines {
        if let Some(content) = prefix.strip(raw) {
            let indent = content.len() - content.trim_start().len();
            p.line(indent, classify(content.trim()));
        }
    }
    Some(p.finish())
}

/// How many cases did not pass: leaves that are not ok, and cases that
/// are not ok though every case nested in them is (a suite whose own
/// setup failed). The number a summary shows as "N of M cases failed".
pub fn failing(cases: &[SubtestResult]) -> usize {
    cases
        .iter()
        .map(|c| {
            let below = failing(&c.children);
            if below == 0 && !c.verdict.is_ok() {
                1
            } else {
                below
            }
        })
        .sum()
}

/// How many leaf cases there are: the M of "N of M cases failed".
pub fn leaves(cases: &[SubtestResult]) -> usize {
    cases
        .iter()
        .map(|c| {
            if c.children.is_empty() {
                1
            } else {
                leaves(&c.children)
            }
        })
        .sum()
}

/// Deepest nesting read; a deeper version or header line is an unknown
/// line, so no input can make the result (or a reporter walking it)
/// arbitrarily deep.
pub const MAX_DEPTH: usize = 16;

/// Most unreported planned cases listed one by one; more become one
/// entry, so a plan of `1..4000000000` cannot fill memory.
const MISSING_LISTED: u64 = 100;

/// Longest description, reason or diagnostic kept, in bytes.
const TEXT_BYTES: usize = 512;

/// What precedes the KTAP on each line, as the first version line shows.
#[derive(Debug, Clone, Copy)]
struct Prefix<'a> {
    /// The lines carry printk timestamps.
    stamped: bool,
    /// Literal text before the KTAP (kselftest's runner's `#`), without
    /// the blanks that follow it.
    literal: &'a str,
    /// The version line's indentation after the prefix.
    indent: usize,
}

impl<'a> Prefix<'a> {
    /// The prefix, when `line` is a version line; the keyword may come
    /// after anything, as kunit.py allows.
    fn of_version_line(line: &'a str) -> Option<Prefix<'a>> {
        let line = line.trim_end();
        let at = ["KTAP version ", "TAP version "].iter().find_map(|k| {
            let at = line.find(k)?;
            is_number(&line[at + k.len()..]).then_some(at)
        })?;
        let before = &line[..at];
        let (stamped, rest) = match strip_printk_prefix(before.trim_start()) {
            Some(rest) => (true, rest),
            None => (false, before),
        };
        let literal = rest.trim_end();
        Some(Prefix {
            stamped,
            literal: literal.trim_start(),
            indent: rest.len() - literal.len(),
        })
    }

    /// A line's KTAP part, with its indentation; `None` for a line that
    /// does not carry the prefix (other output).
    fn strip(&self, line: &'a str) -> Option<&'a str> {
        let line = line.trim_end();
        let line = if self.stamped {
            strip_printk_prefix(line.trim_start()).unwrap_or(line)
        } else {
            line
        };
        if self.literal.is_empty() {
            return Some(line);
        }
        line.trim_start().strip_prefix(self.literal)
    }
}

/// One KTAP line, without its indentation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line<'a> {
    /// `KTAP version N`, `TAP version N`.
    Version,
    /// `1..N`, and the reason of a `# SKIP` after it (`1..0 # SKIP why`).
    Plan(u64, Option<&'a str>),
    /// `ok`/`not ok` lines.
    Result(ResultLine<'a>),
    /// `# Subtest: NAME`.
    Header(&'a str),
    /// Any other line starting with `#`, without it.
    Diagnostic(&'a str),
    /// TAP's `Bail out! reason`: the producer gave up.
    BailOut(&'a str),
    /// TAP 13's `---` that opens a YAML block.
    YamlStart,
    /// TAP 13's `...` that closes it.
    YamlEnd,
    /// Anything else.
    Unknown,
}

/// `ok 1 - name # DIRECTIVE text`, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResultLine<'a> {
    ok: bool,
    number: &'a str,
    description: &'a str,
    /// What follows the `#`, trimmed.
    directive: Option<&'a str>,
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Classifies a trimmed line.
fn classify(line: &str) -> Line<'_> {
    if ["KTAP version ", "TAP version "]
        .iter()
        .any(|k| line.strip_prefix(k).is_some_and(is_number))
    {
        return Line::Version;
    }
    if let Some(r) = result_line(line) {
        return Line::Result(r);
    }
    if let Some(rest) = line.strip_prefix("1..") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let Ok(n) = rest[..digits].parse::<u64>() {
            let after = rest[digits..].trim_start();
            let skip = after
                .strip_prefix('#')
                .map(str::trim_start)
                .and_then(skip_reason);
            return Line::Plan(n, skip);
        }
    }
    if let Some(name) = line.strip_prefix("# Subtest:") {
        return Line::Header(name.trim());
    }
    if let Some(d) = line.strip_prefix('#') {
        return Line::Diagnostic(d.trim());
    }
    if let Some(why) = line.strip_prefix("Bail out!") {
        return Line::BailOut(why.trim());
    }
    match line {
        "---" => Line::YamlStart,
        "..." => Line::YamlEnd,
        _ => Line::Unknown,
    }
}

/// `ok N ...` / `not ok N ...`; the number is required, so a line of
/// output that merely starts with "ok" is not a result.
fn result_line(line: &str) -> Option<ResultLine<'_>> {
    let (ok, rest) = match line.strip_prefix("not ok ") {
        Some(rest) => (false, rest),
        None => (true, line.strip_prefix("ok ")?),
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (number, rest) = rest.split_at(digits);
    if number.is_empty() || !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let rest = rest.trim_start();
    // The directive starts at a '#' that starts a word; a description
    // cannot hold one (the spec), but "test#2" is still a description.
    let hash = rest
        .char_indices()
        .find(|&(i, c)| c == '#' && (i == 0 || rest[..i].ends_with([' ', '\t'])))
        .map(|(i, _)| i);
    let (description, directive) = match hash {
        Some(i) => (&rest[..i], Some(rest[i + 1..].trim())),
        None => (rest, None),
    };
    let description = description.trim();
    let description = description.strip_prefix("- ").unwrap_or(description).trim();
    Some(ResultLine {
        ok,
        number,
        description: if description == "-" { "" } else { description },
        directive,
    })
}

/// The reason of a `SKIP` directive (`SKIP`, `skip`, `Skipped: why`):
/// `Some("")` when it gives none, `None` when it is not a skip.
fn skip_reason(directive: &str) -> Option<&str> {
    let (word, rest) = split_word(directive);
    word.get(..4)
        .is_some_and(|w| w.eq_ignore_ascii_case("skip"))
        .then_some(rest)
}

/// The first word (without a trailing ':') and the rest, trimmed.
fn split_word(s: &str) -> (&str, &str) {
    let (word, rest) = s.split_once([' ', '\t']).unwrap_or((s, ""));
    (word.trim_end_matches(':'), rest.trim())
}

/// `s` cut to at most [`TEXT_BYTES`], at a character boundary.
fn clip(s: &str) -> String {
    let mut end = s.len().min(TEXT_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Verdict and reason of one result line. A plain pass has no reason,
/// whatever diagnostic data follows its `#` (`ok 5 - rc # rcode=0`).
fn judge(r: &ResultLine<'_>) -> (Verdict, Option<String>) {
    let plain = if r.ok { Verdict::Pass } else { Verdict::Fail };
    let Some(d) = r.directive else {
        return (plain, None);
    };
    let reason = |s: &str| (!s.is_empty()).then(|| clip(s));
    if let Some(why) = skip_reason(d) {
        return (Verdict::Skip, reason(why));
    }
    let (word, _) = split_word(d);
    match (word.to_ascii_uppercase().as_str(), r.ok) {
        ("TODO" | "XFAIL", true) => (Verdict::Pass, reason(d)),
        ("TODO" | "XFAIL", false) => (Verdict::Skip, reason(d)),
        ("TIMEOUT", false) => (Verdict::Timeout, reason(d)),
        (_, false) => (Verdict::Fail, reason(d)),
        (_, true) => (Verdict::Pass, None),
    }
}

/// Whether a diagnostic line tells of a failure (KUnit's `EXPECTATION
/// FAILED`, kselftest's `# FAIL`), and is not a tally such as `pass:3
/// fail:0 skip:0`.
fn tells_failure(d: &str) -> bool {
    let d = d.to_ascii_lowercase();
    d.contains("fail") && !(d.contains("pass:") && d.contains("fail:"))
}

/// A test whose cases are being read.
#[derive(Debug, Default)]
struct Frame {
    indent: usize,
    /// From its `# Subtest:` header.
    name: Option<String>,
    /// A version line opened it (or followed its header).
    version: bool,
    plan: Option<u64>,
    /// `1..0 # SKIP reason`.
    plan_skip: Option<String>,
    cases: Vec<SubtestResult>,
    /// Diagnostics since its last result line.
    fail_diag: Option<String>,
    last_diag: Option<String>,
}

impl Frame {
    /// Opened by a version line, nothing else read yet.
    fn fresh(&self) -> bool {
        self.version && self.name.is_none() && self.plan.is_none() && self.cases.is_empty()
    }

    /// Opened by a `# Subtest:` header, nothing else read yet.
    fn named_only(&self) -> bool {
        !self.version && self.name.is_some() && self.plan.is_none() && self.cases.is_empty()
    }

    fn plan_done(&self) -> bool {
        self.plan.is_some_and(|p| self.cases.len() as u64 >= p)
    }

    /// Its cases, and a `NotRun` entry for each planned one that never
    /// reported; `why` says what stopped it, if known.
    fn children(mut self, why: Option<&str>) -> Vec<SubtestResult> {
        let Some(plan) = self.plan else {
            return self.cases;
        };
        let reported = self.cases.len() as u64;
        if reported >= plan {
            return self.cases;
        }
        let missing = plan - reported;
        let mut reason = format!("planned (1..{plan}) but never reported");
        if let Some(why) = why {
            reason = format!("{reason}: {why}");
        }
        let entry = |name: String| SubtestResult {
            reason: Some(reason.clone()),
            ..SubtestResult::new(name, Verdict::NotRun)
        };
        if missing <= MISSING_LISTED {
            self.cases
                .extend((reported + 1..=plan).map(|n| entry(n.to_string())));
        } else {
            self.cases.push(entry(format!("{}..{plan}", reported + 1)));
        }
        self.cases
    }

    /// The reason a failing case without a directive gets.
    fn take_diagnostic(&mut self) -> Option<String> {
        let d = self.fail_diag.take().or(self.last_diag.take());
        self.last_diag = None;
        d
    }
}

/// What the result line does to the innermost open test.
enum Action {
    /// It is one of its cases.
    Own,
    /// It is its own result: the test ends.
    Close,
    /// It belongs further out: the test ended without a result line.
    Unfinished,
}

#[derive(Debug, Default)]
struct Parser {
    /// The top-level cases of every document read so far.
    top: Vec<SubtestResult>,
    /// Open tests, outermost first.
    stack: Vec<Frame>,
    /// Inside a YAML block under a result line at this indentation.
    yaml: Option<usize>,
    /// The indentation of the last line read, if it was a result line.
    after_result: Option<usize>,
    /// A `Bail out!` ended everything; skip to the next version line.
    bailed: bool,
}

impl Parser {
    fn line(&mut self, indent: usize, line: Line<'_>) {
        if let Some(at) = self.yaml {
            if line != Line::YamlEnd && indent > at {
                return;
            }
            self.yaml = None;
            if line == Line::YamlEnd {
                return;
            }
        }
        if self.bailed && line != Line::Version {
            return;
        }
        let after_result = self.after_result.take();
        match line {
            Line::Version => self.version(indent),
            Line::Header(name) => self.header(indent, name),
            Line::Plan(n, skip) => {
                if let Some(f) = self.stack.last_mut().filter(|f| f.plan.is_none()) {
                    f.plan = Some(n);
                    f.plan_skip = skip.filter(|s| !s.is_empty()).map(clip);
                }
            }
            Line::Result(r) => {
                self.result(indent, &r);
                self.after_result = Some(indent);
            }
            Line::Diagnostic(d) => {
                if let Some(f) = self.stack.last_mut() {
                    if f.fail_diag.is_none() && tells_failure(d) {
                        f.fail_diag = Some(clip(d));
                    }
                    f.last_diag = Some(clip(d));
                }
            }
            Line::BailOut(why) => {
                let why = if why.is_empty() {
                    "Bail out!".to_string()
                } else {
                    format!("Bail out! {}", clip(why))
                };
                self.close_all(&why);
                self.bailed = true;
            }
            Line::YamlStart => {
                if let Some(at) = after_result.filter(|at| indent > *at) {
                    self.yaml = Some(at);
                }
            }
            Line::YamlEnd | Line::Unknown => {}
        }
    }

    fn version(&mut self, indent: usize) {
        self.bailed = false;
        self.unwind_to(indent);
        if let Some(top) = self.stack.last_mut() {
            if (top.named_only() || top.fresh()) && indent == top.indent {
                // KUnit's "KTAP version 1" + "# Subtest: name" pair, in
                // either order, opens one test; a repeated version line
                // opens none.
                top.version = true;
                return;
            }
            // Back at (or left of) the outermost document's level once it
            // is complete: a document of its own, as a second KUnit module
            // prints. An incomplete one gets a nested test (unindented
            // producers).
            let first = &self.stack[0];
            let complete = first.plan_done() || (first.plan.is_none() && !first.cases.is_empty());
            if indent < first.indent
                || (indent == first.indent
                    && self.stack.len() == 1
                    && first.name.is_none()
                    && complete)
            {
                self.close_all("the next KTAP document began");
            }
        }
        if self.stack.len() < MAX_DEPTH {
            self.stack.push(Frame {
                indent,
                version: true,
                ..Frame::default()
            });
        }
    }

    fn header(&mut self, indent: usize, name: &str) {
        self.unwind_to(indent);
        let name = (!name.is_empty()).then(|| clip(name));
        if let Some(top) = self.stack.last_mut() {
            if top.fresh() && indent == top.indent {
                top.name = name;
                return;
            }
        }
        if self.stack.len() < MAX_DEPTH {
            self.stack.push(Frame {
                indent,
                name,
                ..Frame::default()
            });
        }
    }

    fn result(&mut self, indent: usize, r: &ResultLine<'_>) {
        loop {
            let n = self.stack.len();
            let Some(f) = self.stack.last() else {
                // Every document ended: a stray result joins the top level.
                self.top.push(leaf(r, None));
                return;
            };
            let parent_indent = n.checked_sub(2).map(|i| self.stack[i].indent);
            // Its lines indented past its parent's: indentation tells where
            // it ends. Otherwise (a producer that does not indent), its
            // plan or its name does.
            let indented = match parent_indent {
                Some(p) => f.indent > p,
                None => f.name.is_none(),
            };
            let action = if indent >= f.indent {
                let ends = !indented && (f.name.as_deref() == Some(r.description) || f.plan_done());
                if ends {
                    Action::Close
                } else {
                    Action::Own
                }
            } else if parent_indent.map_or(true, |p| indent >= p) {
                Action::Close
            } else {
                Action::Unfinished
            };
            match action {
                Action::Own => {
                    if let Some(f) = self.stack.last_mut() {
                        let c = leaf(r, Some(f));
                        f.cases.push(c);
                    }
                    return;
                }
                Action::Close => {
                    if let Some(f) = self.stack.pop() {
                        let c = closed(f, r);
                        self.push_case(c);
                    }
                    return;
                }
                Action::Unfinished => self.pop_unfinished("its result line never came"),
            }
        }
    }

    /// Ends the indented tests a line at `indent` is outside of: they
    /// ended without a result line.
    fn unwind_to(&mut self, indent: usize) {
        while self.stack.len() >= 2 {
            let n = self.stack.len();
            let (f, parent) = (&self.stack[n - 1], &self.stack[n - 2]);
            if f.indent > parent.indent && indent < f.indent {
                self.pop_unfinished("its result line never came");
            } else {
                break;
            }
        }
    }

    /// Ends the innermost test without a result line.
    fn pop_unfinished(&mut self, why: &str) {
        let Some(f) = self.stack.pop() else { return };
        if self.stack.is_empty() && f.name.is_none() {
            // A document: its cases are the top level.
            let cases = f.children(Some(why));
            self.top.extend(cases);
            return;
        }
        let number = self.stack.last().map_or(self.top.len(), |p| p.cases.len()) + 1;
        let name = f.name.clone().unwrap_or_else(|| number.to_string());
        let c = SubtestResult {
            reason: Some(format!("no result line: {why}")),
            children: f.children(Some(why)),
            ..SubtestResult::new(name, Verdict::NotRun)
        };
        self.push_case(c);
    }

    fn push_case(&mut self, c: SubtestResult) {
        match self.stack.last_mut() {
            Some(p) => {
                p.fail_diag = None;
                p.last_diag = None;
                p.cases.push(c);
            }
            None => self.top.push(c),
        }
    }

    fn close_all(&mut self, why: &str) {
        while !self.stack.is_empty() {
            self.pop_unfinished(why);
        }
    }

    fn finish(mut self) -> Vec<SubtestResult> {
        self.close_all("the output ended");
        self.top
    }
}

/// A case from its result line; `frame` is the test it belongs to, whose
/// diagnostics explain a failure.
fn leaf(r: &ResultLine<'_>, frame: Option<&mut Frame>) -> SubtestResult {
    let (verdict, mut reason) = judge(r);
    if let Some(f) = frame {
        let diag = f.take_diagnostic();
        if reason.is_none() && !verdict.is_ok() {
            reason = diag;
        }
    }
    let name = if r.description.is_empty() {
        r.number.to_string()
    } else {
        clip(r.description)
    };
    SubtestResult {
        reason,
        ..SubtestResult::new(name, verdict)
    }
}

/// A nested test ended by its result line.
fn closed(f: Frame, r: &ResultLine<'_>) -> SubtestResult {
    let (mut verdict, mut reason) = judge(r);
    let name = match (r.description, &f.name) {
        ("", Some(n)) => n.clone(),
        ("", None) => r.number.to_string(),
        (d, _) => clip(d),
    };
    if verdict == Verdict::Skip && reason.is_none() {
        reason = f.plan_skip.clone();
    }
    let children = f.children(None);
    if verdict == Verdict::Pass && children.iter().any(|c| !c.verdict.is_ok()) {
        verdict = Verdict::Fail;
        reason = Some(format!(
            "its result line says ok, but {} of its cases did not pass",
            failing(&children)
        ));
    }
    SubtestResult {
        reason,
        children,
        ..SubtestResult::new(name, verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> String {
        let path = format!("{}/tests/data/ktap/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The results as indented `name: verdict (reason)` lines.
    fn tree(cases: &[SubtestResult]) -> Vec<String> {
        fn walk(cases: &[SubtestResult], depth: usize, out: &mut Vec<String>) {
            for c in cases {
                let reason = c
                    .reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                out.push(format!(
                    "{}{}: {}{reason}",
                    "  ".repeat(depth),
                    c.name,
                    c.verdict.name()
                ));
                walk(&c.children, depth + 1, out);
            }
        }
        let mut out = Vec::new();
        walk(cases, 0, &mut out);
        out
    }

    fn parsed(text: &str) -> Vec<String> {
        tree(&parse(text).expect("a version line"))
    }

    #[test]
    fn no_version_line_no_ktap() {
        assert_eq!(parse(""), None);
        assert_eq!(
            parse("ok 1 looks like TAP\nnot ok 2 but is not\n1..2\n"),
            None
        );
        assert_eq!(
            parse(&data("kunit-is_test_passed-no_tests_run_no_header.log")),
            None
        );
        assert_eq!(parse("TAP version thirteen\nok 1 a"), None);
        assert_eq!(parse("KTAP version 1"), Some(vec![]));
    }

    #[test]
    fn the_spec_example() {
        assert_eq!(
            parsed(&data("ktap-spec-example.log")),
            [
                "main_test: fail",
                "  example_test_1: pass",
                "    test_1: pass",
                "  example_test_2: pass",
                "    test_1: skip (test_1 skipped)",
                "    test_2: pass",
                "  example_test_3: fail",
                "    test_1: pass",
                "    test_2: fail (test_2: FAIL)",
                "    test_3: skip (test_3 skipped)",
            ]
        );
    }

    #[test]
    fn kunit_6_1_in_dmesg() {
        let cases = parse(&data("kunit-6.1-example-dmesg.log")).unwrap();
        assert_eq!(
            tree(&cases),
            [
                "example: fail",
                "  example_simple_test: fail (example_simple_test: EXPECTATION FAILED at lib/kunit/kunit-example-test.c:29)",
                "  example_skip_test: skip (this test should be skipped)",
                "  example_mark_skipped_test: skip (this test should be skipped)",
                "  example_all_expect_macros_test: pass",
                "  example_params_test: pass",
                "    example value 2: pass",
                "    example value 1: pass",
                "    example value 0: pass",
                "list-kunit-test: pass",
                "  list_test_list_init: pass",
                "  list_test_list_add: pass",
            ]
        );
        assert_eq!((failing(&cases), leaves(&cases)), (1, 9));
    }

    #[test]
    fn kunit_6_1_debugfs_results() {
        assert_eq!(
            parsed(&data("kunit-6.1-debugfs.log")),
            [
                "example: pass",
                "  example_simple_test: pass",
                "  example_skip_test: skip (this test should be skipped)",
            ]
        );
    }

    #[test]
    fn kunit_modules_one_after_the_other_and_a_crash() {
        let cases = parse(&data("kunit-6.1-modules.log")).unwrap();
        assert_eq!(
            tree(&cases),
            [
                "list-kunit-test: pass",
                "  list_test_list_init: pass",
                "  list_test_list_add: pass",
                "bitfields: notrun (no result line: the output ended)",
                "  test_bitfields_constants: pass",
                "  test_bitfields_variables: pass",
                "  3: notrun (planned (1..3) but never reported: the output ended)",
            ]
        );
        assert_eq!(failing(&cases), 1);
    }

    #[test]
    fn kunit_py_test_data() {
        assert_eq!(
            parsed(&data("kunit-is_test_passed-all_passed_nested.log")),
            [
                "sysctl_test: pass",
                "  sysctl_test_dointvec_null_tbl_data: pass",
                "  example: pass",
                "    example_simple_test: pass",
                "    example_mock_test: pass",
                "  sysctl_test_dointvec_table_len_is_zero: pass",
                "  sysctl_test_dointvec_table_read_but_position_set: pass",
                "example: pass",
                "  example_simple_test: pass",
                "  example_mock_test: pass",
            ]
        );
        let failure = parse(&data("kunit-is_test_passed-failure.log")).unwrap();
        assert_eq!(tree(&failure)[9], "example: fail");
        assert_eq!(
            tree(&failure)[10],
            "  example_simple_test: fail (example_simple_test: EXPECTATION FAILED at lib/kunit/example-test.c:30)"
        );
        assert_eq!((failing(&failure), leaves(&failure)), (1, 10));

        // No plan: the cases are whatever reported.
        let missing_plan = parse(&data("kunit-is_test_passed-missing_plan.log")).unwrap();
        assert_eq!(missing_plan.len(), 2);
        assert_eq!(missing_plan[0].children.len(), 8);

        assert_eq!(
            parsed(&data("kunit-skip_all_tests.log")),
            [
                "string-stream-test: skip",
                "  string_stream_test_empty_on_creation: skip (all tests skipped)",
                "  string_stream_test_not_empty_after_add: skip (all tests skipped)",
                "  string_stream_test_get_string: skip (all tests skipped)",
                "example: skip",
                "  example_simple_test: skip (all tests skipped)",
                "  example_skip_test: skip (this test should be skipped)",
            ]
        );
        assert_eq!(
            parsed(&data("kunit-skip_tests.log"))[6],
            "  example_skip_test: skip (this test should be skipped)"
        );
        assert_eq!(
            parsed(&data("kunit-parse_ktap_output.log")),
            [
                "suite: pass",
                "  case_1: pass",
                "  case_2: pass",
                "  case_3: pass"
            ]
        );
        assert_eq!(
            parsed(&data("kunit-parse_subtest_header.log")),
            ["suite: pass", "  test: pass"]
        );
        assert_eq!(
            parsed(&data("kunit-strip_hyphen.log")),
            [
                "sysctl_test: pass",
                "  sysctl_test_dointvec_null_tbl_data: pass",
                "example: pass",
                "  example_simple_test: pass",
            ]
        );
        assert_eq!(
            parsed(&data("kunit-is_test_passed-no_tests_no_plan.log")),
            ["suite: pass", "  case: pass"]
        );
        assert_eq!(
            parsed(&data("kunit-is_test_passed-no_tests_run_with_header.log")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn console_captures_with_timestamps_and_other_output() {
        let three_suites = [
            "kunit-resource-test: pass",
            "  kunit_resource_test_init_resources: pass",
            "  kunit_resource_test_alloc_resource: pass",
            "  kunit_resource_test_destroy_resource: pass",
            "  kunit_resource_test_cleanup_resources: pass",
            "  kunit_resource_test_proper_free_ordering: pass",
            "kunit-try-catch-test: pass",
            "  kunit_test_try_catch_successful_try_no_catch: pass",
            "  kunit_test_try_catch_unsuccessful_try_does_catch: pass",
            "string-stream-test: pass",
            "  string_stream_test_empty_on_creation: pass",
            "  string_stream_test_not_empty_after_add: pass",
            "  string_stream_test_get_string: pass",
        ];
        for file in [
            "kunit-interrupted_tap_output.log",
            "kunit-multiple_prefixes.log",
            "kunit-pound_sign.log",
            "kunit-output_with_prefix_isolated_correctly.log",
        ] {
            assert_eq!(parsed(&data(file)), three_suites, "{file}");
        }
        // The kernel died in the third suite.
        let panic = parsed(&data("kunit-kernel_panic_interrupt.log"));
        assert_eq!(
            panic[9..],
            [
                "string-stream-test: notrun (no result line: the output ended)",
                "  string_stream_test_empty_on_creation: pass",
                "  2: notrun (planned (1..3) but never reported: the output ended)",
                "  3: notrun (planned (1..3) but never reported: the output ended)",
            ]
        );
    }

    #[test]
    fn kselftest_binary() {
        let cases = parse(&data("kselftest-binary.log")).unwrap();
        assert_eq!(
            tree(&cases),
            [
                "mount_setattr_idmapped: pass",
                "mount_setattr_detached: fail (FAIL: setattr with idmap on detached mount returned 22)",
                "3: skip (no CAP_SYS_ADMIN in this namespace)",
                "4: fail (error cannot open /dev/loop-control)",
                "5: pass (XFAIL EINVAL as expected on tmpfs)",
                "mount_setattr_recursive: skip (TODO propagation not done yet)",
            ]
        );
        assert_eq!(failing(&cases), 2);
    }

    #[test]
    fn kselftest_runner() {
        assert_eq!(
            parsed(&data("kselftest-runner.log")),
            [
                "selftests: timers: posix_timers: pass",
                "selftests: timers: nanosleep: timeout (TIMEOUT 45 seconds)",
                "selftests: timers: set-timer-lat: fail (exit=1)",
                "selftests: timers: rtcpie: skip",
            ]
        );
        // The runner's own kunit.py sample: nested output stays diagnostics.
        assert_eq!(
            parsed(&data("kunit-is_test_passed-kselftest.log")),
            [
                "selftests: membarrier: membarrier_test_single_thread: pass",
                "selftests: membarrier: membarrier_test_multi_thread: pass",
            ]
        );
    }

    #[test]
    fn kselftest_output_under_the_runners_prefix() {
        // A test that prints a kselftest binary's output as the runner does,
        // behind "# ": the prefix comes from the version line.
        let text = "# selftests: x: y\n# TAP version 13\n# 1..2\n# ok 1 a\n# not ok 2 b\nok 1 selftests: x: y\n";
        assert_eq!(parsed(text), ["a: pass", "b: fail"]);
    }

    #[test]
    fn bail_out_and_yaml() {
        assert_eq!(
            parsed(&data("tap13-bailout-yaml.log")),
            [
                "mkfs: pass",
                "mount: fail",
                "write: pass",
                "4: notrun (planned (1..5) but never reported: Bail out! the device went away)",
                "5: notrun (planned (1..5) but never reported: Bail out! the device went away)",
            ]
        );
    }

    #[test]
    fn result_lines() {
        let r = result_line;
        assert_eq!(
            r("ok 1 - name # SKIP why not"),
            Some(ResultLine {
                ok: true,
                number: "1",
                description: "name",
                directive: Some("SKIP why not")
            })
        );
        assert_eq!(
            r("not ok 12"),
            Some(ResultLine {
                ok: false,
                number: "12",
                description: "",
                directive: None
            })
        );
        assert_eq!(r("ok 3 test#2 works").unwrap().description, "test#2 works");
        assert_eq!(r("ok 3 # skip").unwrap().directive, Some("skip"));
        assert_eq!(r("ok 3 -").unwrap().description, "");
        for not in [
            "ok",
            "ok so far",
            "okay 1",
            "ok 1x",
            "not ok",
            "not  ok 1",
            "ok -1 a",
        ] {
            assert_eq!(r(not), None, "{not}");
        }
        let j = |l: &str| judge(&r(l).unwrap());
        assert_eq!(
            j("ok 1 a # Skipped: no disk"),
            (Verdict::Skip, Some("no disk".into()))
        );
        assert_eq!(j("not ok 1 a # SKIP"), (Verdict::Skip, None));
        assert_eq!(j("ok 1 a # rcode=0"), (Verdict::Pass, None));
        assert_eq!(
            j("not ok 1 a # rcode=1"),
            (Verdict::Fail, Some("rcode=1".into()))
        );
        assert_eq!(j("ok 1 a # TIMEOUT"), (Verdict::Pass, None));
        assert_eq!(
            j("not ok 1 a # timeout 30 seconds"),
            (Verdict::Timeout, Some("timeout 30 seconds".into()))
        );
        assert_eq!(
            j("not ok 1 a # ERROR no fd"),
            (Verdict::Fail, Some("ERROR no fd".into()))
        );
        assert_eq!(
            j("not ok 1 a # TODO later"),
            (Verdict::Skip, Some("TODO later".into()))
        );
        assert_eq!(j("ok 1 a # todo"), (Verdict::Pass, Some("todo".into())));
    }

    #[test]
    fn plans_that_go_unfulfilled_and_results_that_contradict_children() {
        assert_eq!(
            parsed("KTAP version 1\n1..3\nok 1 a\n"),
            [
                "a: pass",
                "2: notrun (planned (1..3) but never reported: the output ended)",
                "3: notrun (planned (1..3) but never reported: the output ended)",
            ]
        );
        // A huge plan is one entry, not billions.
        let huge = parse("TAP version 13\n1..18446744073709551615\nok 1 a\n").unwrap();
        assert_eq!(tree(&huge)[1], "2..18446744073709551615: notrun (planned (1..18446744073709551615) but never reported: the output ended)");
        // A plan too big for u64 is not a plan.
        assert_eq!(
            parsed("TAP version 13\n1..99999999999999999999\nok 1 a\n"),
            ["a: pass"]
        );
        // A suite that says ok over a failed case fails.
        assert_eq!(
            parsed("KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n  not ok 1 x\nok 1 s\n"),
            [
                "s: fail (its result line says ok, but 1 of its cases did not pass)",
                "  x: fail"
            ]
        );
        // A trailing plan (TAP) counts too.
        assert_eq!(
            parsed("TAP version 13\nok 1 a\n1..2\n")[1],
            "2: notrun (planned (1..2) but never reported: the output ended)"
        );
        // A nested plan skip gives the parent's skip its reason.
        assert_eq!(
            parsed("KTAP version 1\n1..1\n  KTAP version 1\n  1..0 # SKIP no hardware\nok 1 s # SKIP\n"),
            ["s: skip (no hardware)"]
        );
    }

    #[test]
    fn unindented_nesting_is_read_by_plan_and_name() {
        // What kunit.py accepts: no indentation, a plan or a header name
        // tells where a nested test ends.
        assert_eq!(
            parsed("KTAP version 1\n1..2\nKTAP version 1\n1..2\nok 1 a\nok 2 b\nok 1 first\n# Subtest: second\nok 1 c\nok 2 second\n"),
            ["first: pass", "  a: pass", "  b: pass", "second: pass", "  c: pass"]
        );
        // Two complete documents at the same level are two documents.
        assert_eq!(
            parsed("KTAP version 1\n1..1\nok 1 a\nKTAP version 1\n1..1\nok 1 b\n"),
            ["a: pass", "b: pass"]
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let mut text = String::new();
        for depth in 0..100 {
            text.push_str(&format!(
                "{}KTAP version 1\n{}1..1\n",
                "  ".repeat(depth),
                "  ".repeat(depth)
            ));
        }
        let cases = parse(&text).unwrap();
        let mut depth = 0;
        let mut level = cases.as_slice();
        while let Some(c) = level.first() {
            depth += 1;
            level = &c.children;
        }
        // The document is the top level; under it MAX_DEPTH - 1 tests, the
        // innermost with its one planned case.
        assert_eq!(depth, MAX_DEPTH);
    }

    #[test]
    fn garbage_never_panics() {
        let pieces = [
            "KTAP version 1",
            "TAP version 13",
            "ok ",
            "not ok ",
            "1",
            "..",
            "1..",
            "3",
            " - ",
            "#",
            " # SKIP",
            " # TODO",
            "# Subtest: ",
            "Bail out!",
            "---",
            "...",
            "  ",
            "\t",
            "[    1.5] ",
            "[  T1] ",
            "é",
            "\u{1F600}",
            "\r",
            "99999999999999999999999",
            "name",
        ];
        let mut docs = crate::kernel_log::tests::garbage(&pieces, 3000);
        // Real output cut anywhere, as a crash or a time limit cuts it.
        let real = data("kunit-6.1-example-dmesg.log");
        docs.extend(
            real.char_indices()
                .step_by(7)
                .map(|(i, _)| real[..i].to_string()),
        );
        let mut parsed = 0;
        for d in &docs {
            let Some(cases) = parse(d) else { continue };
            parsed += 1;
            fn check(cases: &[SubtestResult], depth: usize) {
                assert!(depth <= MAX_DEPTH);
                for c in cases {
                    assert!(!c.name.is_empty() && c.name.len() <= TEXT_BYTES);
                    check(&c.children, depth + 1);
                }
            }
            check(&cases, 1);
            assert!(failing(&cases) <= leaves(&cases));
        }
        assert!(parsed > 1000, "the pieces should make KTAP: {parsed}");
    }
}
