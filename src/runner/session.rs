//! One VM's worth of subtests: turns what the supervisor saw (result-port
//! messages, the console cut by the init's kernel-log marks, the output cut
//! by its output marks) into one result per subtest. Pure: no I/O, the
//! clock is passed in.
//!
//! A subtest is judged once all three channels have closed it (the result
//! port's `end`, the kernel log's `subtest-end`, the output's `end` mark),
//! so its share of the kernel log is complete when its log is checked.
//! Whatever is still open when the VM ends is judged by how the VM ended.

use crate::console::{self, ResultMsg, Sentinel};
use crate::kernel_log;
use crate::outcome::Observed;
use crate::results::{KernelLogFinding, SubtestResult, Verdict};
use crate::supervise::{Mark, VmEvent};
use std::time::{Duration, Instant};

/// Console lines kept per subtest (its share of the kernel log); the
/// console log file has everything.
const CONSOLE_KEPT: usize = 5000;
/// Output lines kept per subtest for its log and KTAP.
const OUTPUT_KEPT: usize = 100_000;

/// A judged subtest and the lines its log file gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The verdict and the rest; `log` is filled in by whoever writes it.
    pub result: SubtestResult,
    /// The test's output during the subtest.
    pub output: Vec<String>,
    /// The kernel's messages during the subtest.
    pub console: Vec<String>,
}

#[derive(Debug)]
struct Sub {
    name: String,
    begun: Instant,
    taint_begin: Option<u64>,
    /// When it ended, its exit status and taint then.
    ended: Option<(Instant, i32, Option<u64>)>,
    info: Vec<String>,
    output: Vec<String>,
    console: Vec<String>,
    console_open: bool,
    console_done: bool,
    output_done: bool,
    sentinel: Option<Sentinel>,
    judged: bool,
}

/// Tracks the subtests of one VM.
#[derive(Debug)]
pub struct Tracker {
    planned: Vec<String>,
    /// Kinds every subtest of the file may produce (`ALLOW=`).
    allow: kernel_log::Allow,
    subs: Vec<Sub>,
    /// The subtest whose output is arriving.
    output_current: Option<usize>,
    /// The guest's kernel release, once it said.
    pub release: Option<String>,
}

impl Tracker {
    /// A tracker for a VM asked to run `planned`, in order.
    pub fn new(planned: Vec<String>, allow: kernel_log::Allow) -> Tracker {
        Tracker {
            planned,
            allow,
            subs: Vec::new(),
            output_current: None,
            release: None,
        }
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.subs.iter().position(|s| s.name == name)
    }

    /// The subtest `name`, created at its first mention on any channel:
    /// the three channels race, and any of them may speak first. Only what
    /// ktest asked for: the guest must not invent subtests.
    fn mention(&mut self, name: &str, now: Instant) -> Option<usize> {
        if let Some(i) = self.find(name) {
            return Some(i);
        }
        if !self.planned.iter().any(|p| p == name) {
            return None;
        }
        self.subs.push(Sub {
            name: name.to_string(),
            begun: now,
            taint_begin: None,
            ended: None,
            info: Vec::new(),
            output: Vec::new(),
            console: Vec::new(),
            console_open: false,
            console_done: false,
            output_done: false,
            sentinel: None,
            judged: false,
        });
        Some(self.subs.len() - 1)
    }

    /// Takes one event seen at `now`; returns the subtests it completed.
    pub fn feed(&mut self, event: &VmEvent, now: Instant) -> Vec<Finished> {
        match event {
            VmEvent::Result(msg) => self.result(msg, now),
            VmEvent::Console { line, .. } => self.console(line, now),
            VmEvent::Output { line, .. } => {
                if let Some(s) = self.output_current.map(|i| &mut self.subs[i]) {
                    if s.output.len() < OUTPUT_KEPT {
                        s.output.push(line.clone());
                    }
                    s.sentinel = console::sentinel(line).or(s.sentinel);
                }
            }
            VmEvent::OutputMark(Mark::Begin(name)) => {
                self.output_current = self.mention(name, now);
            }
            VmEvent::OutputMark(Mark::End(name)) => {
                if let Some(i) = self.mention(name, now) {
                    self.subs[i].output_done = true;
                }
                self.output_current = None;
            }
            _ => {}
        }
        self.complete()
    }

    fn result(&mut self, msg: &ResultMsg, now: Instant) {
        match msg {
            ResultMsg::Kernel(r) => self.release = Some(r.clone()),
            ResultMsg::Begin { name, taint } => {
                if let Some(i) = self.mention(name, now) {
                    let s = &mut self.subs[i];
                    if s.taint_begin.is_none() {
                        s.taint_begin = *taint;
                    }
                }
            }
            ResultMsg::Info { name, text } => {
                if let Some(s) = self.mention(name, now).map(|i| &mut self.subs[i]) {
                    if s.info.len() < 64 {
                        s.info.push(text.clone());
                    }
                }
            }
            ResultMsg::End {
                name,
                status,
                taint,
            } => {
                if let Some(s) = self.mention(name, now).map(|i| &mut self.subs[i]) {
                    s.ended.get_or_insert((now, *status, *taint));
                }
            }
            _ => {}
        }
    }

    fn console(&mut self, line: &str, now: Instant) {
        match console::classify(line) {
            console::Line::SubtestBegin(name) => {
                for s in &mut self.subs {
                    s.console_open = false;
                }
                if let Some(i) = self.mention(&name, now) {
                    // Kept: it shows the scanner that this kernel stamps
                    // its lines, so an unstamped line (written to the
                    // console by a program) opens no report.
                    self.subs[i].console.push(line.to_string());
                    self.subs[i].console_open = true;
                }
            }
            console::Line::SubtestEnd(name) => {
                if let Some(i) = self.mention(&name, now) {
                    self.subs[i].console_open = false;
                    self.subs[i].console_done = true;
                }
            }
            _ => {
                if let Some(s) = self.subs.iter_mut().find(|s| s.console_open) {
                    if s.console.len() < CONSOLE_KEPT {
                        s.console.push(line.to_string());
                    }
                }
            }
        }
    }

    fn complete(&mut self) -> Vec<Finished> {
        let allow = self.allow.clone();
        self.subs
            .iter_mut()
            .filter(|s| !s.judged && s.ended.is_some() && s.console_done && s.output_done)
            .map(|s| {
                s.judged = true;
                judge_ended(s, &allow)
            })
            .collect()
    }

    #[cfg(test)]
    fn new_for_test(planned: Vec<String>) -> Tracker {
        Tracker::new(planned, kernel_log::Allow::default())
    }

    /// Judges what is left once the VM has stopped, by how it ended.
    /// Returns those results and the planned subtests that never began.
    pub fn finish(mut self, obs: &Observed, now: Instant) -> (Vec<Finished>, Vec<String>) {
        let allow = self.allow.clone();
        let mut out = Vec::new();
        for s in self.subs.iter_mut().filter(|s| !s.judged) {
            s.judged = true;
            out.push(if s.ended.is_some() {
                judge_ended(s, &allow)
            } else {
                judge_unfinished(s, obs, now, &allow)
            });
        }
        let begun: Vec<&str> = self.subs.iter().map(|s| s.name.as_str()).collect();
        let rest = self
            .planned
            .iter()
            .filter(|n| !begun.contains(&n.as_str()))
            .cloned()
            .collect();
        (out, rest)
    }
}

/// What the subtest's info lines said.
#[derive(Debug, Default, PartialEq, Eq)]
struct Info {
    skip: Option<String>,
    timeout: Option<String>,
    allow: Vec<String>,
}

fn parse_info(lines: &[String]) -> Info {
    let mut info = Info::default();
    for l in lines {
        let (word, rest) = l.split_once(' ').unwrap_or((l, ""));
        let rest = rest.trim().to_string();
        match word {
            "skip" => info.skip = Some(rest),
            "timeout" => info.timeout = Some(rest),
            "allow" => info.allow.extend(
                rest.split([' ', ','])
                    .filter(|k| !k.is_empty())
                    .map(str::to_lowercase),
            ),
            _ => {}
        }
    }
    info
}

/// The kernel-log findings of a subtest's share of the console, and its
/// taint change, each marked allowed or not; or why its own allowances
/// are wrong.
fn findings(
    s: &Sub,
    allow: &kernel_log::Allow,
    info: &Info,
) -> Result<Vec<KernelLogFinding>, String> {
    let mut allow = allow.clone();
    let own = kernel_log::Allow::parse(&info.allow.join(","))
        .map_err(|e| format!("ktest_allow: {}", e.message))?;
    allow.extend(&own);
    let taint_end = s.ended.and_then(|(_, _, t)| t);
    Ok(kernel_log::check(
        s.console.iter().map(String::as_str),
        s.taint_begin.zip(taint_end),
        &allow,
    ))
}

fn result(s: &Sub, verdict: Verdict, reason: Option<String>, end: Instant) -> SubtestResult {
    SubtestResult {
        reason,
        duration: end.saturating_duration_since(s.begun),
        ..SubtestResult::new(&s.name, verdict)
    }
}

/// Applies the kernel log and KTAP to a verdict the exit status gave.
fn refine(mut r: SubtestResult, s: &Sub, allow: &kernel_log::Allow, info: &Info) -> SubtestResult {
    if let Some(cases) = crate::ktap::parse(&s.output.join("\n")) {
        let failed = crate::ktap::failing(&cases);
        let total = crate::ktap::leaves(&cases);
        if r.verdict == Verdict::Pass && failed > 0 {
            r.verdict = Verdict::Fail;
            r.reason = Some(format!("KTAP: {failed} of {total} cases failed"));
        }
        r.children = cases;
    }
    match findings(s, allow, info) {
        Ok(found) => r.findings = found,
        Err(why) => {
            r.verdict = Verdict::Fail;
            r.reason = Some(why);
            return r;
        }
    }
    if let Some(f) = r.findings.iter().find(|f| !f.allowed) {
        if r.verdict.is_ok() {
            r.verdict = Verdict::Fail;
            r.reason = Some(format!("kernel log: {}", f.title));
        }
    }
    r
}

/// Exit status 0 passes, 4 (kselftest's KSFT_SKIP) skips, anything else
/// fails; the sentinels and the library's info lines refine that.
fn judge_ended(s: &Sub, allow: &kernel_log::Allow) -> Finished {
    let (end, status, _) = s.ended.expect("judge_ended needs an end");
    let info = parse_info(&s.info);
    let (verdict, reason) = if let Some(limit) = &info.timeout {
        (
            Verdict::Timeout,
            Some(format!("timed out after {limit} s (ktest_timeout)")),
        )
    } else if s.sentinel == Some(Sentinel::Failed) {
        (
            Verdict::Fail,
            Some(format!("printed TEST FAILED (exit status {status})")),
        )
    } else {
        match status {
            0 => (Verdict::Pass, None),
            4 => (
                Verdict::Skip,
                Some(
                    info.skip
                        .clone()
                        .filter(|r| !r.is_empty())
                        .unwrap_or_else(|| "exit status 4".into()),
                ),
            ),
            n => (Verdict::Fail, Some(format!("exit status {n}"))),
        }
    };
    let r = refine(result(s, verdict, reason, end), s, allow, &info);
    finished(s, r)
}

/// A subtest that began but never ended: the VM crashed, timed out, was
/// stopped, or ended under it.
fn judge_unfinished(s: &Sub, obs: &Observed, now: Instant, allow: &kernel_log::Allow) -> Finished {
    let info = parse_info(&s.info);
    let (verdict, reason) = if let Some(line) = &obs.crash {
        (
            Verdict::Crash,
            Some(format!("kernel crashed: {}", line.trim())),
        )
    } else if obs.interrupted {
        (Verdict::NotRun, Some("interrupted".to_string()))
    } else if obs.stopped {
        (
            Verdict::NotRun,
            Some("stopped: a subtest failed and --fail-fast was given".to_string()),
        )
    } else if s.sentinel == Some(Sentinel::Success) {
        (
            Verdict::Pass,
            Some("printed TEST SUCCESS, then did not exit".into()),
        )
    } else if s.sentinel == Some(Sentinel::Failed) {
        (Verdict::Fail, Some("printed TEST FAILED".into()))
    } else if let Some(secs) = obs.timed_out {
        (Verdict::Timeout, Some(format!("timed out after {secs} s")))
    } else {
        let how = obs
            .qemu_exit
            .as_deref()
            .map(|q| format!(" (qemu {q})"))
            .unwrap_or_default();
        (
            Verdict::Crash,
            Some(format!(
                "the VM stopped while it ran{how}; did it reboot or kill init?"
            )),
        )
    };
    let mut r = result(s, verdict, reason, now);
    r.findings = findings(s, allow, &info).unwrap_or_default();
    finished(s, r)
}

fn finished(s: &Sub, result: SubtestResult) -> Finished {
    Finished {
        result,
        output: s.output.clone(),
        console: s.console.clone(),
    }
}

/// How long a subtest took, for a result that has none (never began).
pub fn not_run(name: &str, reason: &str) -> SubtestResult {
    SubtestResult {
        reason: Some(reason.to_string()),
        duration: Duration::ZERO,
        ..SubtestResult::new(name, Verdict::NotRun)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn res(m: &str) -> VmEvent {
        VmEvent::Result(console::parse_result(m).unwrap())
    }

    fn con(l: &str) -> VmEvent {
        VmEvent::Console {
            line: l.into(),
            shown: true,
        }
    }

    fn out(l: &str) -> VmEvent {
        VmEvent::Output {
            line: l.into(),
            shown: true,
        }
    }

    /// Feeds one subtest's events in the order the guest writes them.
    fn run_one(
        t: &mut Tracker,
        name: &str,
        status: i32,
        lines: &[&str],
        t0: Instant,
    ) -> Vec<Finished> {
        let mut done = Vec::new();
        let mut feed = |e: VmEvent| done.extend(t.feed(&e, t0));
        feed(con(&format!("[ 1.0] ktest-guest: subtest-begin {name}")));
        feed(VmEvent::OutputMark(Mark::Begin(name.into())));
        feed(res(&format!("begin {name} 0")));
        for l in lines {
            feed(out(l));
        }
        feed(VmEvent::OutputMark(Mark::End(name.into())));
        feed(con(&format!("[ 1.1] ktest-guest: subtest-end {name}")));
        feed(res(&format!("end {name} {status} 0")));
        done
    }

    #[test]
    fn exit_statuses_decide_once_every_channel_closed_the_subtest() {
        let t0 = Instant::now();
        let mut t = Tracker::new_for_test(names(&["a", "b", "c"]));
        let a = run_one(&mut t, "a", 0, &["hello"], t0);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].result.verdict, Verdict::Pass);
        assert_eq!(a[0].output, names(&["hello"]));
        let b = run_one(&mut t, "b", 4, &[], t0);
        assert_eq!(b[0].result.verdict, Verdict::Skip);
        assert_eq!(b[0].result.reason.as_deref(), Some("exit status 4"));
        let c = run_one(&mut t, "c", 3, &[], t0);
        assert_eq!(c[0].result.verdict, Verdict::Fail);
        assert_eq!(c[0].result.reason.as_deref(), Some("exit status 3"));
        let (rest, not_begun) = t.finish(&Observed::default(), t0);
        assert!(rest.is_empty() && not_begun.is_empty());
    }

    #[test]
    fn a_result_waits_for_the_kernel_log_mark() {
        let t0 = Instant::now();
        let mut t = Tracker::new_for_test(names(&["a"]));
        assert!(t.feed(&res("begin a 0"), t0).is_empty());
        t.feed(&con("ktest-guest: subtest-begin a"), t0);
        t.feed(&VmEvent::OutputMark(Mark::Begin("a".into())), t0);
        t.feed(&VmEvent::OutputMark(Mark::End("a".into())), t0);
        assert!(t.feed(&res("end a 0 0"), t0).is_empty());
        t.feed(&con("[ 2.0] late kernel line"), t0);
        let done = t.feed(&con("ktest-guest: subtest-end a"), t0);
        assert_eq!(done.len(), 1);
        // Its share: from its begin mark (kept) up to its end mark.
        assert_eq!(
            done[0].console,
            names(&["ktest-guest: subtest-begin a", "[ 2.0] late kernel line"])
        );
    }

    #[test]
    fn info_lines_skip_with_a_reason_and_time_out() {
        let t0 = Instant::now();
        let mut t = Tracker::new_for_test(names(&["s", "t"]));
        t.feed(&res("begin s 0"), t0);
        t.feed(&res("info s skip no scratch disk"), t0);
        let s = run_one(&mut t, "s", 4, &[], t0);
        assert_eq!(s[0].result.reason.as_deref(), Some("no scratch disk"));
        t.feed(&res("begin t 0"), t0);
        t.feed(&res("info t timeout 2"), t0);
        let r = run_one(&mut t, "t", 143, &[], t0);
        assert_eq!(r[0].result.verdict, Verdict::Timeout);
    }

    #[test]
    fn sentinels_refine_the_status() {
        let t0 = Instant::now();
        let mut t = Tracker::new_for_test(names(&["a"]));
        let a = run_one(&mut t, "a", 0, &["TEST FAILED"], t0);
        assert_eq!(a[0].result.verdict, Verdict::Fail);
        // Said success, then hung until ktest stopped the VM.
        let mut t = Tracker::new_for_test(names(&["h", "next"]));
        t.feed(&res("begin h 0"), t0);
        t.feed(&VmEvent::OutputMark(Mark::Begin("h".into())), t0);
        t.feed(&out("TEST SUCCESS"), t0);
        let (r, rest) = t.finish(&Observed::default(), t0);
        assert_eq!(r[0].result.verdict, Verdict::Pass);
        assert_eq!(rest, names(&["next"]));
    }

    #[test]
    fn a_crash_marks_the_running_subtest_and_leaves_the_rest() {
        let t0 = Instant::now();
        let mut t = Tracker::new_for_test(names(&["a", "b", "c", "d"]));
        run_one(&mut t, "a", 0, &[], t0);
        t.feed(&con("ktest-guest: subtest-begin b"), t0);
        t.feed(&res("begin b 0"), t0);
        t.feed(
            &con("[ 3.0] Kernel panic - not syncing: sysrq triggered crash"),
            t0,
        );
        let obs = Observed {
            crash: Some("[ 3.0] Kernel panic - not syncing: sysrq triggered crash".into()),
            started: true,
            ..Observed::default()
        };
        let (r, rest) = t.finish(&obs, t0 + Duration::from_secs(2));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].result.name, "b");
        assert_eq!(r[0].result.verdict, Verdict::Crash);
        assert!(r[0]
            .result
            .reason
            .as_deref()
            .unwrap()
            .contains("Kernel panic"));
        assert_eq!(r[0].result.duration, Duration::from_secs(2));
        assert_eq!(r[0].console.len(), 2, "its begin mark and the panic");
        assert_eq!(rest, names(&["c", "d"]));
    }

    #[test]
    fn time_outs_and_interrupts() {
        let t0 = Instant::now();
        let mut t = Tracker::new_for_test(names(&["a", "b"]));
        t.feed(&res("begin a 0"), t0);
        let obs = Observed {
            timed_out: Some(60),
            started: true,
            ..Observed::default()
        };
        let (r, rest) = t.finish(&obs, t0);
        assert_eq!(r[0].result.verdict, Verdict::Timeout);
        assert_eq!(r[0].result.reason.as_deref(), Some("timed out after 60 s"));
        assert_eq!(rest, names(&["b"]));
        let mut t = Tracker::new_for_test(names(&["a"]));
        t.feed(&res("begin a 0"), t0);
        let obs = Observed {
            interrupted: true,
            ..Observed::default()
        };
        assert_eq!(t.finish(&obs, t0).0[0].result.verdict, Verdict::NotRun);
    }

    #[test]
    fn the_guest_cannot_invent_or_repeat_subtests() {
        let t0 = Instant::now();
        let mut t = Tracker::new_for_test(names(&["a"]));
        t.feed(&res("begin zzz 0"), t0);
        run_one(&mut t, "a", 0, &[], t0);
        t.feed(&res("begin a 0"), t0);
        let (r, rest) = t.finish(&Observed::default(), t0);
        assert!(r.is_empty() && rest.is_empty(), "{r:?} {rest:?}");
    }

    #[test]
    fn kernel_log_findings_fail_a_subtest_unless_allowed() {
        let t0 = Instant::now();
        let warn = [
            "[    5.100000] ------------[ cut here ]------------",
            "[    5.100001] WARNING: CPU: 0 PID: 42 at drivers/misc/lkdtm/bugs.c:90 lkdtm_WARNING_MESSAGE+0x1c/0x20",
            "[    5.100002] ---[ end trace 0000000000000000 ]---",
        ];
        let feed = |t: &mut Tracker, name: &str, info: Option<&str>| {
            t.feed(
                &con(&format!("[ 5.0] ktest-guest: subtest-begin {name}")),
                t0,
            );
            t.feed(&VmEvent::OutputMark(Mark::Begin(name.into())), t0);
            t.feed(&res(&format!("begin {name} 0")), t0);
            for l in warn {
                t.feed(&con(l), t0);
            }
            if let Some(i) = info {
                t.feed(&res(&format!("info {name} {i}")), t0);
            }
            t.feed(&VmEvent::OutputMark(Mark::End(name.into())), t0);
            t.feed(&con(&format!("[ 5.2] ktest-guest: subtest-end {name}")), t0);
            t.feed(&res(&format!("end {name} 0 512")), t0)
        };
        let mut t = Tracker::new_for_test(names(&["w", "ok", "typo"]));
        let w = feed(&mut t, "w", None);
        assert_eq!(w[0].result.verdict, Verdict::Fail);
        assert!(
            w[0].result
                .reason
                .as_deref()
                .unwrap()
                .starts_with("kernel log: WARNING: CPU: 0"),
            "{:?}",
            w[0].result.reason
        );
        let ok = feed(&mut t, "ok", Some("allow warning"));
        assert_eq!(ok[0].result.verdict, Verdict::Pass, "{:?}", ok[0].result);
        assert!(ok[0].result.findings.iter().all(|f| f.allowed));
        let typo = feed(&mut t, "typo", Some("allow warnings"));
        assert_eq!(typo[0].result.verdict, Verdict::Fail);
        assert!(typo[0]
            .result
            .reason
            .as_deref()
            .unwrap()
            .contains("ktest_allow"));
        // The file's ALLOW= covers every subtest.
        let allow = kernel_log::Allow::parse("warning").unwrap();
        let mut t = Tracker::new(names(&["w"]), allow);
        assert_eq!(feed(&mut t, "w", None)[0].result.verdict, Verdict::Pass);
    }

    #[test]
    fn info_parsing() {
        let i = parse_info(&names(&[
            "skip needs CONFIG_X",
            "allow warning,taint",
            "allow lockdep",
            "junk",
        ]));
        assert_eq!(i.skip.as_deref(), Some("needs CONFIG_X"));
        assert_eq!(i.allow, names(&["warning", "taint", "lockdep"]));
        assert_eq!(i.timeout, None);
    }
}
