//! What a run found: one result per subtest, and the run around them. Pure
//! data, shared by the runner that fills it and every reporter (terminal,
//! JUnit, JSON, KTAP, the results history) that reads it.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// How one subtest ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Exit status 0 (or `TEST SUCCESS`), and a clean kernel log.
    Pass,
    /// Exit status 4 (kselftest's KSFT_SKIP), or a KTAP `# SKIP`.
    Skip,
    /// Any other exit status, `TEST FAILED`, or a kernel-log finding.
    Fail,
    /// Its time limit expired.
    Timeout,
    /// The kernel panicked or the VM died while it ran.
    Crash,
    /// Selected but never run: an earlier subtest failed under
    /// `--fail-fast`, or the run was interrupted.
    NotRun,
}

impl Verdict {
    /// Every verdict, in the order summaries list them.
    pub const ALL: [Verdict; 6] = [
        Verdict::Pass,
        Verdict::Skip,
        Verdict::Fail,
        Verdict::Timeout,
        Verdict::Crash,
        Verdict::NotRun,
    ];

    /// The lowercase name used in reports and the database.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Skip => "skip",
            Verdict::Fail => "fail",
            Verdict::Timeout => "timeout",
            Verdict::Crash => "crash",
            Verdict::NotRun => "notrun",
        }
    }

    /// Parses `name()`'s output.
    pub fn from_name(s: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.name() == s)
    }

    /// Whether this verdict lets ktest exit 0.
    pub fn is_ok(self) -> bool {
        matches!(self, Verdict::Pass | Verdict::Skip)
    }
}

/// A kernel-log finding: what kind of report, and its lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelLogFinding {
    /// The kind's name as tests allow it (`warning`, `bug`, `kasan`, `taint`...).
    pub kind: String,
    /// The report's first line, or for taint the flags that changed.
    pub title: String,
    /// The report's lines as the console showed them (bounded).
    pub excerpt: Vec<String>,
    /// The test allowed this kind (`ALLOW=` in deps, `ktest_allow` in the
    /// library): shown and kept, but it did not fail the subtest.
    pub allowed: bool,
}

/// One subtest's result. KTAP output nests: a subtest's `children` are the
/// cases its KTAP reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtestResult {
    /// The subtest's name (`list-tests`' line, the file's name for a file
    /// without subtests, or a KTAP case's description).
    pub name: String,
    /// How it ended.
    pub verdict: Verdict,
    /// Why, in one line, when not a plain pass: "exit status 3", a skip
    /// reason, "timed out after 60 s", the crash line.
    pub reason: Option<String>,
    /// Wall time, from the guest's start event to its end event.
    #[serde(with = "duration_ms", rename = "duration_ms")]
    pub duration: Duration,
    /// Its log: the subtest's output, then its part of the kernel log.
    pub log: Option<PathBuf>,
    /// What the kernel log showed while it ran: findings that failed it,
    /// and allowed ones.
    pub findings: Vec<KernelLogFinding>,
    /// Cases its KTAP output reported, nested.
    pub children: Vec<SubtestResult>,
}

impl SubtestResult {
    /// A result with only a name and a verdict.
    pub fn new(name: impl Into<String>, verdict: Verdict) -> Self {
        SubtestResult {
            name: name.into(),
            verdict,
            reason: None,
            duration: Duration::ZERO,
            log: None,
            findings: Vec::new(),
            children: Vec::new(),
        }
    }
}

/// Which kernel ran the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelIdentity {
    /// `uname -r` as the guest reported it, or the build's release.
    pub release: Option<String>,
    /// The build-inputs hash of a kernel ktest built (its build directory's
    /// name), if it built it.
    pub build_hash: Option<String>,
    /// `git describe` of the source tree, if it is a git tree.
    pub describe: Option<String>,
    /// The image booted.
    pub image: PathBuf,
}

impl KernelIdentity {
    /// One string that tells kernels apart, for flakiness: the same string
    /// means the same kernel.
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.release.as_deref().unwrap_or(""),
            self.build_hash.as_deref().unwrap_or(""),
            self.describe.as_deref().unwrap_or("")
        )
    }
}

/// One test file's results in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestReport {
    /// The test file as given (canonical path).
    pub test: PathBuf,
    /// Its subtests' results, in the order they were selected.
    pub subtests: Vec<SubtestResult>,
    /// The console log of each VM that ran it, in order (a crash starts a
    /// new VM).
    pub console_logs: Vec<PathBuf>,
}

/// A whole `ktest run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// Unique, sortable: `YYYYMMDD-HHMMSS-XXXX`.
    pub run_id: String,
    /// Start, seconds since the Unix epoch.
    pub started_at: i64,
    /// Wall time of the whole run.
    #[serde(with = "duration_ms", rename = "duration_ms")]
    pub duration: Duration,
    /// The kernel.
    pub kernel: KernelIdentity,
    /// Per test file.
    pub tests: Vec<TestReport>,
    /// For a run of `--shard K/N`: which part, and the plan it was cut
    /// from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardPlan>,
    /// The `.ktest.toml` target the run was of (`--target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Which part of a sharded selection a run was. Shards cut from the same
/// plan (the same selection and durations) are disjoint and together the
/// whole selection; `ktest results merge` checks that they were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlan {
    /// K of `--shard K/N`.
    pub index: u32,
    /// N.
    pub count: u32,
    /// A fingerprint of what the partition was computed from
    /// (`schedule::plan_key`).
    pub plan: String,
}

/// Counts per verdict (top-level subtests only).
pub fn counts<'a>(results: impl IntoIterator<Item = &'a SubtestResult>) -> Vec<(Verdict, usize)> {
    let mut n = [0usize; 6];
    for r in results {
        n[Verdict::ALL
            .iter()
            .position(|v| *v == r.verdict)
            .unwrap_or(0)] += 1;
    }
    Verdict::ALL.into_iter().zip(n).collect()
}

/// Durations as whole milliseconds in JSON.
mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_names_round_trip() {
        for v in Verdict::ALL {
            assert_eq!(Verdict::from_name(v.name()), Some(v));
        }
        assert_eq!(Verdict::from_name("ok"), None);
    }

    #[test]
    fn counts_cover_every_verdict() {
        let r = [
            SubtestResult::new("a", Verdict::Pass),
            SubtestResult::new("b", Verdict::Fail),
            SubtestResult::new("c", Verdict::Pass),
        ];
        let c = counts(&r);
        assert_eq!(c.len(), 6);
        assert_eq!(c[0], (Verdict::Pass, 2));
        assert_eq!(c[2], (Verdict::Fail, 1));
    }
}
