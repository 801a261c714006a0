//! What the kernel log says went wrong while a subtest ran.
//!
//! The runner feeds a subtest's share of the console, line by line, to a
//! [`Scanner`]; it recognises the kernel's own report formats (WARN splats,
//! `BUG:` reports, oopses, the sanitizers, lockdep, the hung-task, RCU-stall
//! and lockup watchdogs) and keeps each report's lines as a bounded excerpt.
//! [`taint_finding`] turns a change of /proc/sys/kernel/tainted into a
//! finding; [`Allow`] is the set of kinds a test declared harmless.
//!
//! This module is also the one place that knows what a report's first line
//! looks like: the console classifier asks [`ends_kernel`] which of them
//! stop the kernel, so the two can never disagree.
//!
//! Reports are recognised only at the start of a message (after the printk
//! timestamp), never in the middle of a line, and lines the guest init wrote
//! (`ktest-guest: ...`) are never findings: a test cannot print its way into
//! or out of a finding through them.

use crate::console::MARKER;
use crate::error::{Error, Result};
use crate::results::KernelLogFinding;

/// The kinds of kernel-log findings. Their [`name`](Kind::name)s are what
/// `ALLOW=` (in a test's deps) and `ktest_allow` take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A `BUG:` report that is none of the more specific kinds (sleeping in
    /// atomic context, bad page state, a SLUB debug report, KMSAN...).
    Bug,
    /// A `WARN()` splat: `WARNING: CPU: 0 PID: 1 at file:line`.
    Warning,
    /// The kernel died in a task: an oops, `kernel BUG at`, a general
    /// protection fault, a NULL dereference. With ktest's `oops=panic`
    /// this also crashes the VM.
    Oops,
    /// A KASAN report (`BUG: KASAN: ...`).
    Kasan,
    /// An UBSAN report (`UBSAN: ...`).
    Ubsan,
    /// A KCSAN data-race report (`BUG: KCSAN: ...`).
    Kcsan,
    /// A KFENCE report (`BUG: KFENCE: ...`): sampled memory-safety errors,
    /// a kind of its own so KFENCE's tests can allow exactly it.
    Kfence,
    /// A lockdep splat: circular or recursive locking, inconsistent lock
    /// state, bad unlock balance, suspicious RCU usage (lockdep's RCU
    /// checker), lockdep running out of table space.
    Lockdep,
    /// `INFO: task NAME:PID blocked for more than N seconds.`
    HungTask,
    /// `rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:` and the
    /// self-detected and expedited variants.
    RcuStall,
    /// A CPU stuck: the soft-lockup watchdog (`watchdog: BUG: soft lockup`)
    /// or the hard-lockup one (`Watchdog detected hard LOCKUP`).
    SoftLockup,
    /// The kernel's taint flags gained a flag that means trouble (see
    /// [`taint_finding`]).
    Taint,
}

impl Kind {
    /// Every kind, in the order messages list them.
    pub const ALL: [Kind; 12] = [
        Kind::Bug,
        Kind::Warning,
        Kind::Oops,
        Kind::Kasan,
        Kind::Ubsan,
        Kind::Kcsan,
        Kind::Kfence,
        Kind::Lockdep,
        Kind::HungTask,
        Kind::RcuStall,
        Kind::SoftLockup,
        Kind::Taint,
    ];

    /// The lowercase name reports show and `ALLOW=` takes.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Bug => "bug",
            Kind::Warning => "warning",
            Kind::Oops => "oops",
            Kind::Kasan => "kasan",
            Kind::Ubsan => "ubsan",
            Kind::Kcsan => "kcsan",
            Kind::Kfence => "kfence",
            Kind::Lockdep => "lockdep",
            Kind::HungTask => "hung_task",
            Kind::RcuStall => "rcu_stall",
            Kind::SoftLockup => "soft_lockup",
            Kind::Taint => "taint",
        }
    }

    /// Parses [`name`](Kind::name)'s output (exactly: findings carry the
    /// name, and the runner compares names).
    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Every name, comma-separated, for error messages.
    pub fn known_names() -> String {
        Kind::ALL.map(Kind::name).join(", ")
    }

    /// The taint flags a report of this kind sets by itself (kernel/panic.c,
    /// and the reporters' `add_taint` calls), so a test that allows the
    /// report is not failed by the taint that comes with it.
    fn taints(self) -> u64 {
        match self {
            Kind::Warning => TAINT_WARN,
            // "scheduling while atomic" and friends taint W; bad page state
            // and SLUB reports taint B.
            Kind::Bug => TAINT_WARN | TAINT_BAD_PAGE,
            Kind::Oops => TAINT_DIE,
            Kind::Kasan | Kind::Kfence => TAINT_BAD_PAGE,
            Kind::SoftLockup => TAINT_SOFTLOCKUP,
            Kind::Taint => u64::MAX,
            Kind::Ubsan | Kind::Kcsan | Kind::Lockdep | Kind::HungTask | Kind::RcuStall => 0,
        }
    }
}

/// A set of kinds a test allows: their findings are kept and shown, but do
/// not fail the subtest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allow {
    kinds: Vec<Kind>,
}

impl Allow {
    /// Parses a list of kind names separated by commas and/or blanks
    /// (`warning,taint`, `warning taint`); empty means none.
    pub fn parse(list: &str) -> Result<Allow> {
        let mut allow = Allow::default();
        for word in list.split([',', ' ', '\t']).filter(|w| !w.is_empty()) {
            let kind = Kind::from_name(word).ok_or_else(|| {
                Error::usage(format!(
                    "'{word}' is not a kind of kernel-log report ktest checks; the kinds are: {}",
                    Kind::known_names()
                ))
            })?;
            allow.insert(kind);
        }
        Ok(allow)
    }

    /// Adds a kind.
    pub fn insert(&mut self, kind: Kind) {
        if !self.kinds.contains(&kind) {
            self.kinds.push(kind);
        }
    }

    /// Adds every kind of `other` (the file's `ALLOW=` plus a subtest's
    /// `ktest_allow`).
    pub fn extend(&mut self, other: &Allow) {
        for k in &other.kinds {
            self.insert(*k);
        }
    }

    /// Whether the set holds `kind`.
    pub fn contains(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }

    /// Whether a finding is of an allowed kind (by its name).
    pub fn allows(&self, finding: &KernelLogFinding) -> bool {
        Kind::from_name(&finding.kind).is_some_and(|k| self.contains(k))
    }
}

/// Everything a subtest's share of the console and its taint change show,
/// each finding marked allowed or not: the one call the runner needs.
///
/// `taint` is /proc/sys/kernel/tainted at the subtest's begin and end, when
/// both are known. A taint finding is allowed when `taint` is, and also
/// when every flag it reports comes with an allowed finding of this
/// subtest (a test that allows warnings is not failed by the W taint its
/// warning sets).
pub fn check<'a>(
    console: impl IntoIterator<Item = &'a str>,
    taint: Option<(u64, u64)>,
    allow: &Allow,
) -> Vec<KernelLogFinding> {
    let mut scan = Scanner::new();
    for line in console {
        scan.line(line);
    }
    let mut found = scan.finish();
    for f in &mut found {
        f.allowed = allow.allows(f);
    }
    if let Some((before, after)) = taint {
        let explained = allow
            .kinds
            .iter()
            .filter(|k| **k == Kind::Taint || found.iter().any(|f| f.allowed && f.kind == k.name()))
            .fold(0, |m, k| m | k.taints());
        if let Some(mut f) = taint_finding(before, after) {
            f.allowed = trouble(before, after) & !explained == 0;
            found.push(f);
        }
    }
    found
}

/// Most lines an excerpt keeps. Sanitizer reports with their allocation
/// and free stacks run to about 80 lines; a bound keeps a flood (a WARN in
/// a loop, a stall repeated every 20 s) from filling the results.
pub const EXCERPT_LINES: usize = 100;

/// Longest excerpt line kept, in bytes.
const LINE_BYTES: usize = 512;

/// Most findings of one kind kept per scan; later reports of that kind are
/// skipped, so a flood of one kind cannot push another kind out.
pub const FINDINGS_PER_KIND: usize = 10;

/// How a report's end shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// A `====` banner closes it (KASAN, KCSAN, KFENCE, UBSAN, KMSAN).
    Banner,
    /// `---[ end trace ... ]---` (WARN, oops).
    EndTrace,
    /// The end of its stack dump, `</TASK>` on x86-64; elsewhere the bound.
    StackEnd,
}

/// A report's first line: what it is and how it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Start {
    kind: Kind,
    end: Closing,
}

/// Report openings by message prefix, most specific first.
const STARTS: &[(&str, Kind, Closing)] = &[
    ("BUG: KASAN: ", Kind::Kasan, Closing::Banner),
    ("BUG: KCSAN: ", Kind::Kcsan, Closing::Banner),
    ("BUG: KFENCE: ", Kind::Kfence, Closing::Banner),
    ("BUG: KMSAN: ", Kind::Bug, Closing::Banner),
    ("UBSAN: ", Kind::Ubsan, Closing::Banner),
    // The lines that open an oops on x86 and arm64; the die line itself
    // (`Oops: 0002 [#1]`, `invalid opcode: 0000 [#1]`) is matched apart.
    ("Oops: ", Kind::Oops, Closing::EndTrace),
    ("Oops - ", Kind::Oops, Closing::EndTrace),
    ("kernel BUG at ", Kind::Oops, Closing::EndTrace),
    ("general protection fault", Kind::Oops, Closing::EndTrace),
    ("Unable to handle kernel ", Kind::Oops, Closing::EndTrace),
    ("Internal error: ", Kind::Oops, Closing::EndTrace),
    (
        "BUG: kernel NULL pointer dereference",
        Kind::Oops,
        Closing::EndTrace,
    ),
    ("BUG: unable to handle ", Kind::Oops, Closing::EndTrace),
    (
        "BUG: stack guard page was hit",
        Kind::Oops,
        Closing::EndTrace,
    ),
    (
        "BUG: TASK stack guard page was hit",
        Kind::Oops,
        Closing::EndTrace,
    ),
    // KASAN's note before a general protection fault on x86.
    ("KASAN: ", Kind::Kasan, Closing::StackEnd),
    ("WARNING: CPU: ", Kind::Warning, Closing::EndTrace),
    ("WARNING: at ", Kind::Warning, Closing::EndTrace),
    (
        "watchdog: BUG: soft lockup",
        Kind::SoftLockup,
        Closing::StackEnd,
    ),
    ("BUG: soft lockup", Kind::SoftLockup, Closing::StackEnd),
    (
        "NMI watchdog: Watchdog detected hard LOCKUP",
        Kind::SoftLockup,
        Closing::StackEnd,
    ),
    (
        "Watchdog detected hard LOCKUP",
        Kind::SoftLockup,
        Closing::StackEnd,
    ),
    // kernel/locking/lockdep.c's reports that do not start with WARNING:.
    (
        "[ BUG: Invalid wait context ]",
        Kind::Lockdep,
        Closing::StackEnd,
    ),
    ("BUG: MAX_", Kind::Lockdep, Closing::StackEnd),
    ("BUG: key ", Kind::Lockdep, Closing::StackEnd),
    (
        "BUG: looking up invalid subclass",
        Kind::Lockdep,
        Closing::StackEnd,
    ),
    (
        "INFO: trying to register non-static key",
        Kind::Lockdep,
        Closing::StackEnd,
    ),
    ("BUG: ", Kind::Bug, Closing::StackEnd),
];

/// lockdep's `WARNING: ...` titles (kernel/locking/lockdep.c), after the
/// `WARNING: `. `suspicious RCU usage` comes from lockdep's RCU checker,
/// so it counts as lockdep.
const LOCKDEP_WARNINGS: &[&str] = &[
    "possible circular locking dependency detected",
    "possible recursive locking detected",
    "inconsistent lock state",
    "possible irq lock inversion dependency detected",
    "chain_key collision",
    "Nested lock was not taken",
    "bad unlock balance detected!",
    "bad contention detected!",
    "held lock freed!",
    "lock held when returning to user space!",
    "suspicious RCU usage",
];

/// What report, if any, a message (a console line without its timestamp)
/// opens. `after_banner`: the line before was a `====` banner, which is
/// how SLUB's `BUG kmalloc-64 (Not tainted): ...` reports open.
fn report_start(msg: &str, after_banner: bool) -> Option<Start> {
    let start = |kind, end| Some(Start { kind, end });
    if let Some(title) = msg.strip_prefix("WARNING: ") {
        let lockdep = LOCKDEP_WARNINGS.iter().any(|w| title.starts_with(w))
            || title.ends_with(" still has locks held!")
            || (title.contains("-safe -> ") && title.ends_with("-unsafe lock order detected"));
        if lockdep {
            return start(Kind::Lockdep, Closing::StackEnd);
        }
    }
    if let Some(&(_, kind, end)) = STARTS.iter().find(|(p, ..)| msg.starts_with(p)) {
        return start(kind, end);
    }
    if is_die_line(msg) {
        return start(Kind::Oops, Closing::EndTrace);
    }
    if msg.starts_with("INFO: task ") && msg.contains(" blocked for more than ") {
        return start(Kind::HungTask, Closing::StackEnd);
    }
    if is_rcu_stall(msg) {
        return start(Kind::RcuStall, Closing::StackEnd);
    }
    if after_banner && msg.starts_with("BUG ") {
        return start(Kind::Bug, Closing::StackEnd);
    }
    None
}

/// x86's die line, `<what>: <error code> [#<n>]`: `Oops: 0002 [#1] SMP`,
/// `invalid opcode: 0000 [#1]`, `general protection fault, probably for
/// non-canonical address 0x...: 0000 [#1]`, `divide error: 0000 [#1]`.
fn is_die_line(msg: &str) -> bool {
    let Some((head, tail)) = msg.split_once(" [#") else {
        return false;
    };
    let Some((what, code)) = head.rsplit_once(": ") else {
        return false;
    };
    let count = tail.split(']').next().unwrap_or("");
    !what.is_empty()
        && what.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && (1..=16).contains(&code.len())
        && code.chars().all(|c| c.is_ascii_hexdigit())
        && tail.contains(']')
        && !count.is_empty()
        && count.chars().all(|c| c.is_ascii_digit())
}

/// `rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:`, `INFO:
/// rcu_sched self-detected stall on CPU`, `INFO: rcu_tasks detected stalls
/// on tasks:`, `... detected expedited stalls ...` (kernel/rcu/tree_stall.h,
/// tree_exp.h, tasks.h; older kernels lack the `rcu: ` prefix).
fn is_rcu_stall(msg: &str) -> bool {
    let msg = msg.strip_prefix("rcu: ").unwrap_or(msg);
    let Some((flavour, rest)) = msg.strip_prefix("INFO: ").and_then(|m| m.split_once(' ')) else {
        return false;
    };
    flavour.starts_with("rcu")
        && [
            "detected stall",
            "self-detected stall",
            "detected expedited stall",
        ]
        .iter()
        .any(|s| rest.starts_with(s))
}

/// A `====` banner: sanitizer and lockdep reports open (and the
/// sanitizers close) with one.
fn is_banner(msg: &str) -> bool {
    let m = msg.trim_end();
    m.len() >= 20 && m.bytes().all(|b| b == b'=')
}

/// Whether a console line means the kernel is going down: a panic, or an
/// oops (ktest boots with `oops=panic`). Everything else the scanner
/// recognises leaves the kernel running and is judged per subtest.
pub fn ends_kernel(line: &str) -> bool {
    let msg = message(line);
    msg.starts_with("Kernel panic - not syncing")
        || report_start(msg, false).is_some_and(|s| s.kind == Kind::Oops)
}

/// Strips a printk timestamp (`[    1.234567] `) and the caller id that
/// CONFIG_PRINTK_CALLER adds (`[    T1] `), keeping what follows as it is
/// but for the one separating blank. `None` when the line has no
/// timestamp.
pub fn strip_printk_prefix(line: &str) -> Option<&str> {
    fn bracket(s: &str, ok: impl Fn(&str) -> bool) -> Option<&str> {
        let rest = s.strip_prefix('[')?;
        let (inside, after) = rest.split_once(']')?;
        ok(inside.trim_start()).then_some(after)
    }
    let time = |t: &str| {
        t.split_once('.').is_some_and(|(s, us)| {
            !s.is_empty()
                && !us.is_empty()
                && (s.bytes().chain(us.bytes())).all(|b| b.is_ascii_digit())
        })
    };
    let caller = |c: &str| {
        c.strip_prefix(['T', 'C'])
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let after = bracket(line, time)?;
    let after = bracket(after, caller).unwrap_or(after);
    Some(after.strip_prefix(' ').unwrap_or(after))
}

/// The message of a console line: without leading blanks, the printk
/// timestamp and caller id, and the blanks after them.
pub fn message(line: &str) -> &str {
    let t = line.trim_start_matches(|c: char| c.is_whitespace() || c == '\0');
    strip_printk_prefix(t).unwrap_or(t).trim_start()
}

/// Collects the reports in console lines fed one at a time.
#[derive(Debug, Default)]
pub struct Scanner {
    found: Vec<KernelLogFinding>,
    open: Option<Open>,
    /// The previous line, when it was a `====` banner.
    banner: Option<String>,
    /// A line with a printk timestamp came by: the kernel stamps its
    /// lines, so one without a stamp is not the kernel's (a shell or a
    /// program writing to the console) and opens no report.
    stamped: bool,
}

/// The report being collected.
#[derive(Debug)]
struct Open {
    start: Start,
    finding: KernelLogFinding,
    /// Past the per-kind limit: its lines are consumed, not kept.
    dropped: bool,
}

impl Scanner {
    /// A scanner that has seen nothing.
    pub fn new() -> Self {
        Scanner::default()
    }

    /// Feeds one console line (its line ending may still be there). Feed
    /// the guest init's `ktest-guest:` lines too: they are never findings,
    /// but their timestamps tell the kernel's lines from others.
    pub fn line(&mut self, line: &str) {
        let line = line.trim_end_matches(['\r', '\n']);
        let has_stamp = strip_printk_prefix(line.trim_start()).is_some();
        self.stamped |= has_stamp;
        let msg = message(line);
        if msg.starts_with(MARKER) {
            return;
        }
        let start = report_start(msg, self.banner.is_some()).filter(|_| has_stamp || !self.stamped);
        if let Some(open) = &mut self.open {
            // An oops opens with a line or two before its die line, and
            // KASAN annotates a general protection fault: one report, not
            // three.
            let in_oops = open.start.kind == Kind::Oops;
            let goes_on = match start {
                None => true,
                Some(s) => in_oops && (s.kind == Kind::Oops || msg.starts_with("KASAN: ")),
            };
            if goes_on {
                open.push(line);
                if ends(open.start.end, msg) || open.finding.excerpt.len() >= EXCERPT_LINES {
                    self.close();
                }
                self.banner = None;
                return;
            }
            self.close();
        }
        if let Some(start) = start {
            let kept = self
                .found
                .iter()
                .filter(|f| f.kind == start.kind.name())
                .count();
            let mut open = Open {
                start,
                finding: KernelLogFinding {
                    kind: start.kind.name().to_string(),
                    title: clip(msg.trim_end()).to_string(),
                    excerpt: Vec::new(),
                    allowed: false,
                },
                dropped: kept >= FINDINGS_PER_KIND,
            };
            if let Some(b) = self.banner.take() {
                open.push(&b);
            }
            open.push(line);
            self.open = Some(open);
            self.banner = None;
            return;
        }
        self.banner = is_banner(msg).then(|| line.to_string());
    }

    /// The findings, in the order their reports began.
    pub fn finish(mut self) -> Vec<KernelLogFinding> {
        self.close();
        self.found
    }

    fn close(&mut self) {
        if let Some(open) = self.open.take() {
            if !open.dropped {
                self.found.push(open.finding);
            }
        }
    }
}

impl Open {
    fn push(&mut self, line: &str) {
        if !self.dropped {
            self.finding.excerpt.push(clip(line).to_string());
        }
    }
}

/// Whether `msg` is the last line of a report that ends the `end` way. A
/// panic ends any report: nothing after it is the report's.
fn ends(end: Closing, msg: &str) -> bool {
    if msg.starts_with("---[ end ") || msg.starts_with("Kernel panic - not syncing") {
        return true;
    }
    match end {
        Closing::Banner => is_banner(msg),
        Closing::EndTrace => false,
        Closing::StackEnd => msg.trim_end() == "</TASK>",
    }
}

/// `s` cut to at most [`LINE_BYTES`] bytes, at a character boundary.
fn clip(s: &str) -> &str {
    if s.len() <= LINE_BYTES {
        return s;
    }
    let mut end = LINE_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

const TAINT_BAD_PAGE: u64 = 1 << 5;
const TAINT_DIE: u64 = 1 << 7;
const TAINT_WARN: u64 = 1 << 9;
const TAINT_SOFTLOCKUP: u64 = 1 << 14;

/// The taint flags, by bit: the letter the kernel prints
/// (kernel/panic.c's `taint_flags`) and what it means
/// (Documentation/admin-guide/tainted-kernels.rst).
const TAINT_FLAGS: &[(char, &str)] = &[
    ('P', "proprietary module was loaded"),
    ('F', "module was force loaded"),
    ('S', "kernel running on an out of specification system"),
    ('R', "module was force unloaded"),
    ('M', "processor reported a Machine Check Exception (MCE)"),
    ('B', "bad page referenced or some unexpected page flags"),
    ('U', "taint requested by userspace application"),
    ('D', "kernel died recently, i.e. there was an OOPS or BUG"),
    ('A', "ACPI table overridden by user"),
    ('W', "kernel issued warning"),
    ('C', "staging driver was loaded"),
    ('I', "workaround for bug in platform firmware applied"),
    ('O', "externally-built (\"out-of-tree\") module was loaded"),
    ('E', "unsigned module was loaded"),
    ('L', "soft lockup occurred"),
    ('K', "kernel has been live patched"),
    ('X', "auxiliary taint, defined for and used by distros"),
    ('T', "kernel was built with the struct randomization plugin"),
    ('N', "an in-kernel test has been run"),
    ('J', "userspace used a mutating debug operation in fwctl"),
];

/// The flags that mean the kernel went wrong: S, M, B, D, W, L. The others
/// say what was loaded or done to it (a test's out-of-tree or unsigned
/// module, KUnit's N), which is what tests do, not a fault.
const TROUBLE: u64 =
    (1 << 2) | (1 << 4) | TAINT_BAD_PAGE | TAINT_DIE | TAINT_WARN | TAINT_SOFTLOCKUP;

/// The trouble flags set in `after` and not in `before`.
fn trouble(before: u64, after: u64) -> u64 {
    after & !before & TROUBLE
}

/// A finding for the taint flags that `after` has and `before` had not,
/// when one of them means trouble (S, M, B, D, W, L); flags only cleared
/// never count (the kernel never clears them). The title names the new
/// flags as the kernel prints them, trouble first; the excerpt explains
/// each. `None` when nothing troubling was added.
pub fn taint_finding(before: u64, after: u64) -> Option<KernelLogFinding> {
    let bad = trouble(before, after);
    if bad == 0 {
        return None;
    }
    let new = after & !before;
    let describe = |bit: u32| match TAINT_FLAGS.get(bit as usize) {
        Some((letter, what)) => (letter.to_string(), format!("{letter}: {what}")),
        None => (format!("bit {bit}"), format!("bit {bit}: unknown to ktest")),
    };
    let (troubling, other): (Vec<u32>, Vec<u32>) = (0..64)
        .filter(|b| new & (1 << b) != 0)
        .partition(|b| bad & (1 << b) != 0);
    let mut letters = Vec::new();
    let mut excerpt = Vec::new();
    for bit in troubling.iter().chain(&other) {
        let (letter, line) = describe(*bit);
        letters.push(letter);
        excerpt.push(line);
    }
    excerpt.push(format!("/proc/sys/kernel/tainted: {before} -> {after}"));
    Some(KernelLogFinding {
        kind: Kind::Taint.name().to_string(),
        title: format!("kernel tainted: {}", letters.join(" ")),
        excerpt,
        allowed: false,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn data(name: &str) -> String {
        let path = format!(
            "{}/tests/data/kernel_log/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn scan(text: &str) -> Vec<KernelLogFinding> {
        let mut s = Scanner::new();
        for l in text.lines() {
            s.line(l);
        }
        s.finish()
    }

    /// The one finding `text` must produce: its kind, title and excerpt.
    fn only(text: &str) -> KernelLogFinding {
        let mut f = scan(text);
        assert_eq!(f.len(), 1, "{f:#?}");
        f.remove(0)
    }

    #[test]
    fn kind_names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.name()), Some(k));
            assert_eq!(k.name(), k.name().to_lowercase());
        }
        assert_eq!(Kind::from_name("Warning"), None);
        assert_eq!(Kind::from_name("warnings"), None);
        assert!(Kind::known_names().starts_with("bug, warning, oops"));
    }

    #[test]
    fn printk_prefixes() {
        assert_eq!(message("[    1.234567] BUG: x"), "BUG: x");
        assert_eq!(
            message("[    0.060000][    T1] Oops: 0002 [#1]"),
            "Oops: 0002 [#1]"
        );
        assert_eq!(message("[ 3.3]    indented"), "indented");
        assert_eq!(message("  no stamp\r"), "no stamp\r");
        assert_eq!(message("[foo] BUG: x"), "[foo] BUG: x");
        assert_eq!(message("[] BUG: x"), "[] BUG: x");
        assert_eq!(message("[    1.] x"), "[    1.] x");
        // KTAP needs the indentation after the stamp kept.
        assert_eq!(
            strip_printk_prefix("[    0.060000] \t# Subtest: example"),
            Some("\t# Subtest: example")
        );
        assert_eq!(strip_printk_prefix("[    0.060000]"), Some(""));
        assert_eq!(strip_printk_prefix("ok 1 a"), None);
    }

    #[test]
    fn kasan_report_from_the_docs() {
        let f = only(&data("kasan.log"));
        assert_eq!(f.kind, "kasan");
        assert_eq!(
            f.title,
            "BUG: KASAN: slab-out-of-bounds in kmalloc_oob_right+0xa8/0xbc [test_kasan]"
        );
        // From the opening banner to the closing one, nothing around it.
        assert!(is_banner(message(&f.excerpt[0])), "{:?}", f.excerpt[0]);
        assert!(f.excerpt[1].ends_with(&f.title));
        assert!(is_banner(message(f.excerpt.last().unwrap())));
        assert_eq!(f.excerpt.len(), 70);
        assert!(f.excerpt.iter().all(|l| !l.contains("test_kasan: ")));
        assert!(!f.allowed);
    }

    #[test]
    fn sanitizer_reports_from_the_docs() {
        for (file, kind, title) in [
            (
                "kcsan.log",
                "kcsan",
                "BUG: KCSAN: data-race in test_kernel_read / test_kernel_write",
            ),
            (
                "kfence.log",
                "kfence",
                "BUG: KFENCE: out-of-bounds read in test_out_of_bounds_read+0xa6/0x234",
            ),
            (
                "ubsan-4.4.log",
                "ubsan",
                "UBSAN: Undefined behaviour in ../include/linux/bitops.h:110:33",
            ),
        ] {
            let text = data(file);
            let f = only(&text);
            assert_eq!((f.kind.as_str(), f.title.as_str()), (kind, title), "{file}");
            assert_eq!(f.excerpt.len(), text.lines().count(), "{file}");
        }
    }

    #[test]
    fn two_ubsan_reports_back_to_back() {
        let f = scan(&data("ubsan-6.1.log"));
        let titles: Vec<&str> = f.iter().map(|f| f.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "UBSAN: array-index-out-of-bounds in lib/test_ubsan.c:86:14",
                "UBSAN: shift-out-of-bounds in lib/test_ubsan.c:44:14"
            ]
        );
        assert_eq!(f[0].excerpt.len(), 13);
        assert_eq!(f[1].excerpt.len(), 4);
    }

    #[test]
    fn warn_splat_ends_at_its_end_trace() {
        let f = only(&data("warn.log"));
        assert_eq!(f.kind, "warning");
        assert_eq!(
            f.title,
            "WARNING: CPU: 1 PID: 28102 at kernel/module.c:1108 module_put+0x57/0x70"
        );
        assert!(
            message(f.excerpt.last().unwrap()).starts_with("---[ end trace 6ebc60ef3981792f ]---")
        );
        assert_eq!(f.excerpt.len(), 32);
    }

    #[test]
    fn an_oops_is_one_finding_from_its_first_line_to_the_panic() {
        let text = data("oops-null.log");
        let f = only(&text);
        assert_eq!(f.kind, "oops");
        assert_eq!(
            f.title,
            "BUG: kernel NULL pointer dereference, address: 0000000000000000"
        );
        assert!(f
            .excerpt
            .iter()
            .any(|l| l.contains("Oops: 0002 [#1] PREEMPT SMP NOPTI")));
        assert!(message(f.excerpt.last().unwrap()).starts_with("---[ end trace"));
        // The kernel is going down from the first line on.
        let fatal: Vec<&str> = text
            .lines()
            .filter(|l| ends_kernel(l))
            .map(message)
            .collect();
        assert_eq!(
            fatal,
            [
                "BUG: kernel NULL pointer dereference, address: 0000000000000000",
                "Oops: 0002 [#1] PREEMPT SMP NOPTI",
                "Kernel panic - not syncing: Fatal exception",
            ]
        );
    }

    #[test]
    fn oops_openings_on_x86_and_arm64() {
        for l in [
            "[    1.0] kernel BUG at fs/bcachefs/btree_iter.c:1234!",
            "invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
            "general protection fault, probably for non-canonical address 0xdffffc0000000001: 0000 [#1] PREEMPT SMP KASAN NOPTI",
            "general protection fault: 0000 [#1] SMP",
            "divide error: 0000 [#1] PREEMPT SMP NOPTI",
            "Oops: general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] SMP",
            "BUG: unable to handle page fault for address: ffffffffc0201000",
            "BUG: unable to handle kernel NULL pointer dereference at   (null)",
            "BUG: stack guard page was hit at 00000000b3a1c8e5 (stack is 00000000d6b4c2c0..00000000a6c3f6a3)",
            "Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000",
            "Unable to handle kernel paging request at virtual address ffff800008f1b000",
            "Internal error: Oops: 0000000096000005 [#1] PREEMPT SMP",
            "Internal error: Oops - BUG: 00000000f2000800 [#1] PREEMPT SMP",
        ] {
            assert_eq!(report_start(message(l), false).map(|s| s.kind), Some(Kind::Oops), "{l}");
            assert!(ends_kernel(l), "{l}");
        }
        // KASAN's note under a general protection fault belongs to it.
        let f = only(
            "general protection fault, probably for non-canonical address 0xdffffc0000000000: 0000 [#1] PREEMPT SMP KASAN\n\
             KASAN: null-ptr-deref in range [0x0000000000000000-0x0000000000000007]\n\
             CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0 #1\n\
             ---[ end trace 0000000000000000 ]---\n",
        );
        assert_eq!((f.kind.as_str(), f.excerpt.len()), ("oops", 4));
    }

    #[test]
    fn reports_that_leave_the_kernel_running_are_not_fatal() {
        for file in [
            "kasan.log",
            "kcsan.log",
            "kfence.log",
            "ubsan-6.1.log",
            "warn.log",
            "rcu-lockdep.log",
            "lockdep-circular.log",
            "hung-task.log",
            "soft-lockup.log",
            "rcu-stall.log",
            "sleeping.log",
        ] {
            let text = data(file);
            assert!(!scan(&text).is_empty(), "{file}");
            assert!(!text.lines().any(ends_kernel), "{file}");
        }
        assert!(ends_kernel(
            "[    5.1] Kernel panic - not syncing: sysrq triggered crash"
        ));
    }

    #[test]
    fn watchdogs_and_lockdep() {
        let f = only(&data("hung-task.log"));
        assert_eq!(
            (f.kind.as_str(), f.title.as_str()),
            (
                "hung_task",
                "INFO: task mount:812 blocked for more than 122 seconds."
            )
        );
        assert!(message(f.excerpt.last().unwrap()) == "</TASK>");

        let f = only(&data("soft-lockup.log"));
        assert_eq!(f.kind, "soft_lockup");
        assert_eq!(f.excerpt.len(), 16);

        let f = scan(&data("rcu-stall.log"));
        let got: Vec<(&str, &str)> = f
            .iter()
            .map(|f| (f.kind.as_str(), f.title.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "rcu_stall",
                    "rcu: INFO: rcu_preempt self-detected stall on CPU"
                ),
                (
                    "rcu_stall",
                    "INFO: rcu_sched detected stalls on CPUs/tasks:"
                ),
            ]
        );

        let f = only(&data("sleeping.log"));
        assert_eq!(f.kind, "bug");
        assert!(f.excerpt.iter().all(|l| !l.contains("foo: wrote")));

        let f = only(&data("lockdep-circular.log"));
        assert_eq!(
            (f.kind.as_str(), f.title.as_str()),
            (
                "lockdep",
                "WARNING: possible circular locking dependency detected"
            )
        );
        assert!(is_banner(message(&f.excerpt[0])));
        assert!(message(f.excerpt.last().unwrap()) == "</TASK>");

        let f = only(&data("rcu-lockdep.log"));
        assert_eq!(
            (f.kind.as_str(), f.title.as_str()),
            ("lockdep", "WARNING: suspicious RCU usage")
        );

        for l in [
            "WARNING: possible recursive locking detected",
            "WARNING: inconsistent lock state",
            "WARNING: HARDIRQ-safe -> HARDIRQ-unsafe lock order detected",
            "WARNING: bad unlock balance detected!",
            "WARNING: sh/245 still has locks held!",
            "[ BUG: Invalid wait context ]",
            "BUG: MAX_LOCKDEP_ENTRIES too low!",
            "INFO: trying to register non-static key.",
        ] {
            assert_eq!(
                report_start(l, true).map(|s| s.kind),
                Some(Kind::Lockdep),
                "{l}"
            );
        }
        for (l, kind) in [
            ("NMI watchdog: Watchdog detected hard LOCKUP on cpu 1", Kind::SoftLockup),
            ("rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: { 0-... } 21119 jiffies s: 73 root: 0x1/.", Kind::RcuStall),
            ("INFO: rcu_tasks detected stalls on tasks:", Kind::RcuStall),
            ("BUG: KMSAN: uninit-value in __crc32c_le_base+0x2c1/0x500", Kind::Bug),
            ("BUG: scheduling while atomic: sh/245/0x00000002", Kind::Bug),
            ("BUG: Bad page state in process sh  pfn:0a1b2", Kind::Bug),
        ] {
            assert_eq!(report_start(l, false).map(|s| s.kind), Some(kind), "{l}");
        }
        // SLUB's reports open with a banner and "BUG cache (...)".
        let slub = "=============================================================================\n\
                    BUG kmalloc-64 (Not tainted): Redzone overwritten\n\
                    -----------------------------------------------------------------------------\n";
        assert_eq!(
            only(slub).title,
            "BUG kmalloc-64 (Not tainted): Redzone overwritten"
        );
    }

    #[test]
    fn only_report_openings_at_the_start_of_a_kernel_message_count() {
        for l in [
            "my test says BUG: nothing",
            "[    1.0] sysrq: Trigger a crash",
            "[    1.0] ktest-guest: subtest-begin BUG: x",
            "ktest-guest: WARNING: CPU: 0 PID: 1 at x",
            "[    9.9] INFO: lockdep is turned off.",
            "[    9.9] INFO: task sh:12 exited",
            "[    9.9] rcu: INFO: rcu_preempt is fine",
            "[    9.9] ------------[ cut here ]------------",
            "[    9.9] ==================================================================",
            "[    9.9] BUGS: none",
            "[    9.9] Oopsie",
        ] {
            assert_eq!(scan(l), vec![], "{l}");
        }
        // Once the console shows the kernel stamping its lines, a line
        // without a stamp is not the kernel's (a shell on the console).
        let text =
            "[    1.000000] ktest-guest: subtest-begin a\nBUG: printed on the console\n[    1.1] x";
        assert_eq!(scan(text), vec![]);
        // A kernel without printk timestamps still has its reports seen.
        assert_eq!(only("BUG: scheduling while atomic: sh/1/0x2").kind, "bug");
    }

    #[test]
    fn excerpts_and_findings_are_bounded() {
        let mut text =
            String::from("[    1.0] BUG: sleeping function called from invalid context\n");
        for i in 0..500 {
            text.push_str(&format!("[    1.0]  frame_{i}+0x1/0x2\n"));
        }
        text.push_str(&format!("[    1.0]  {}\n", "é".repeat(1000)));
        let f = only(&text);
        assert_eq!(f.excerpt.len(), EXCERPT_LINES);

        let long = format!("BUG: {}", "ü".repeat(1000));
        let f = only(&long);
        assert!(f.title.len() <= LINE_BYTES && f.title.starts_with("BUG: üü"));

        let mut text = String::new();
        for i in 0..30 {
            text.push_str(&format!(
                "WARNING: CPU: 0 PID: {i} at x.c:1 f+0x1/0x2\n---[ end trace 0 ]---\n"
            ));
        }
        text.push_str(&data("kasan.log"));
        let f = scan(&text);
        assert_eq!(
            f.iter().filter(|f| f.kind == "warning").count(),
            FINDINGS_PER_KIND
        );
        assert_eq!(f.last().unwrap().kind, "kasan");
        assert_eq!(f.last().unwrap().excerpt.len(), 70);
    }

    /// Texts of up to 30 lines, each a few of `pieces` end to end, the
    /// same on every run: fuzz-ish input for the parsers here and in
    /// src/ktap.rs, without a dependency.
    pub(crate) fn garbage(pieces: &[&str], texts: usize) -> Vec<String> {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as usize
        };
        (0..texts)
            .map(|_| {
                (0..next() % 30)
                    .map(|_| {
                        let line: String = (0..next() % 8)
                            .map(|_| pieces[next() % pieces.len()])
                            .collect();
                        line + "\n"
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn scanning_garbage_never_panics() {
        let pieces = [
            "[",
            "]",
            " ",
            "    1.5",
            "T1",
            "BUG: ",
            "WARNING: CPU: ",
            "Oops: ",
            ": 00ff [#",
            "1]",
            "=====================",
            "---[ end trace",
            "</TASK>",
            "INFO: task ",
            " blocked for more than ",
            "rcu: INFO: rcu",
            " detected stall",
            "ktest-guest: ",
            "é",
            "\u{1F600}",
            "\r",
            "\t",
            "\0",
            "BUG ",
            "KASAN: ",
        ];
        let mut found = 0;
        for text in garbage(&pieces, 3000) {
            let mut s = Scanner::new();
            for line in text.lines() {
                s.line(line);
                let _ = ends_kernel(line);
            }
            for f in s.finish() {
                found += 1;
                assert!(Kind::from_name(&f.kind).is_some(), "{f:?}");
                assert!(!f.title.is_empty() && f.title.len() <= LINE_BYTES, "{f:?}");
                assert!((1..=EXCERPT_LINES).contains(&f.excerpt.len()), "{f:?}");
            }
        }
        assert!(found > 100, "the pieces should make reports: {found}");
    }

    #[test]
    fn taint_names_the_new_troubling_flags() {
        let f = taint_finding(0, 512).unwrap();
        assert_eq!(
            (f.kind.as_str(), f.title.as_str()),
            ("taint", "kernel tainted: W")
        );
        assert_eq!(
            f.excerpt,
            [
                "W: kernel issued warning",
                "/proc/sys/kernel/tainted: 0 -> 512"
            ]
        );
        // Only newly set bits; cleared ones never count.
        assert_eq!(taint_finding(512, 512), None);
        assert_eq!(taint_finding(512 | 128, 512), None);
        // A test's own module (O, E) or KUnit (N) is not trouble...
        assert_eq!(taint_finding(0, (1 << 12) | (1 << 13) | (1 << 18)), None);
        // ...but is named next to trouble, after it.
        let f = taint_finding(1, 1 | (1 << 12) | (1 << 7) | (1 << 5)).unwrap();
        assert_eq!(f.title, "kernel tainted: B D O");
        assert_eq!(
            taint_finding(0, (1 << 14) | (1 << 40)).unwrap().title,
            "kernel tainted: L bit 40"
        );
        for (bit, letter) in [(0, 'P'), (9, 'W'), (17, 'T'), (18, 'N')] {
            assert_eq!(TAINT_FLAGS[bit].0, letter);
        }
    }

    #[test]
    fn allow_lists() {
        let a = Allow::parse("warning,taint").unwrap();
        assert!(a.contains(Kind::Warning) && a.contains(Kind::Taint) && !a.contains(Kind::Bug));
        assert_eq!(Allow::parse(" warning  taint,").unwrap(), a);
        assert_eq!(Allow::parse("").unwrap(), Allow::default());
        let e = Allow::parse("warning,warnings").unwrap_err();
        assert_eq!(e.code, crate::error::Code::Usage);
        assert!(e.message.contains("'warnings'"), "{}", e.message);
        assert!(e.message.contains(&Kind::known_names()), "{}", e.message);
        let mut b = Allow::parse("kasan").unwrap();
        b.extend(&a);
        assert!(b.contains(Kind::Kasan) && b.contains(Kind::Warning));
    }

    #[test]
    fn check_marks_allowed_findings_and_the_taint_they_cause() {
        let warn = data("warn.log");
        let lines = || warn.lines();
        let w = Some((0, 512));

        let f = check(lines(), w, &Allow::default());
        assert_eq!(
            f.iter()
                .map(|f| (f.kind.as_str(), f.allowed))
                .collect::<Vec<_>>(),
            [("warning", false), ("taint", false)]
        );

        // Allowing warnings allows the W taint that came with one...
        let f = check(lines(), w, &Allow::parse("warning").unwrap());
        assert!(f.iter().all(|f| f.allowed), "{f:#?}");
        // ...but not a taint no allowed report explains.
        let f = check(
            lines(),
            Some((0, 512 | 128)),
            &Allow::parse("warning").unwrap(),
        );
        assert_eq!(
            f.iter().map(|f| f.allowed).collect::<Vec<_>>(),
            [true, false]
        );
        // Nor a W without the warning in this subtest's log.
        let f = check(std::iter::empty(), w, &Allow::parse("warning").unwrap());
        assert_eq!(f.iter().map(|f| f.allowed).collect::<Vec<_>>(), [false]);

        // Allowing taint allows any taint, not the reports.
        let f = check(lines(), w, &Allow::parse("taint").unwrap());
        assert_eq!(
            f.iter().map(|f| f.allowed).collect::<Vec<_>>(),
            [false, true]
        );

        // KASAN taints B.
        let kasan = data("kasan.log");
        let f = check(
            kasan.lines(),
            Some((512, 512 | 32)),
            &Allow::parse("kasan").unwrap(),
        );
        assert!(f.len() == 2 && f.iter().all(|f| f.allowed), "{f:#?}");

        assert_eq!(check(std::iter::empty(), None, &Allow::default()), vec![]);
    }
}
