//! `.ktest.toml`: per-project defaults for building and running, found in
//! the current directory or at the root of the enclosing git repository.
//!
//! Every key is optional and documented in docs/configuration.md. Command
//! line flags win over the file; the file wins over ktest's built-in
//! defaults. Relative paths in the file are relative to the file's own
//! directory, so the file means the same thing wherever ktest is started.

use crate::accel::Choice;
use crate::error::{Error, Result};
use crate::values::{Cpus, Memory, TimeLimit, VmCount};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file's name.
pub const FILE_NAME: &str = ".ktest.toml";

/// The keys as written in the file. Unknown keys are errors so that a typo
/// does not silently fall back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    base_config: Option<String>,
    build_dir: Option<PathBuf>,
    jobs: Option<u32>,
    make: Option<BTreeMap<String, toml::Value>>,
    mem: Option<Memory>,
    cpus: Option<Cpus>,
    timeout: Option<TimeLimit>,
    accel: Option<String>,
    db: Option<PathBuf>,
    history_runs: Option<u32>,
    vms: Option<VmCount>,
    arch: Option<String>,
    variant: Option<String>,
    target: Option<BTreeMap<String, crate::target::RawTarget>>,
}

/// The defaults a `.ktest.toml` gave, with paths made absolute. Everything
/// is `None` (or empty) when there is no file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// The file these values came from, if any.
    pub path: Option<PathBuf>,
    /// Base configuration: a config target name, or an absolute file path
    /// (a value with a `/` in the file, resolved against the file's dir).
    pub base_config: Option<String>,
    /// Directory holding the per-configuration build directories.
    pub build_dir: Option<PathBuf>,
    /// Parallel make jobs.
    pub jobs: Option<u32>,
    /// Make variables (`[make]` table), sorted by name.
    pub make_vars: Vec<(String, String)>,
    /// Minimum guest memory.
    pub mem: Option<Memory>,
    /// Virtual CPUs for tests that do not declare CPUS.
    pub cpus: Option<Cpus>,
    /// Time limit for tests that do not declare TIMEOUT.
    pub timeout: Option<TimeLimit>,
    /// Accelerator choice.
    pub accel: Option<Choice>,
    /// The state database.
    pub db: Option<PathBuf>,
    /// How many runs the results history keeps.
    pub history_runs: Option<u32>,
    /// VMs at once for `ktest run` (`--vms`).
    pub vms: Option<VmCount>,
    /// The guest architecture (`--arch`).
    pub arch: Option<&'static crate::arch::Arch>,
    /// The configuration variants (`--variant`).
    pub variants: crate::variant::Variants,
    /// The `[target.NAME]` tables: kernels to run tests on
    /// (`ktest run --target`), sorted by name.
    pub targets: Vec<crate::target::Target>,
}

/// Where the file is: `cwd/.ktest.toml`, else `.ktest.toml` at the root of
/// the git repository enclosing `cwd`.
pub fn find(cwd: &Path) -> Option<PathBuf> {
    let here = cwd.join(FILE_NAME);
    if here.is_file() {
        return Some(here);
    }
    let root = cwd.ancestors().find(|d| d.join(".git").exists())?;
    let there = root.join(FILE_NAME);
    there.is_file().then_some(there)
}

/// The file that applies to this process (its current directory), loaded
/// once: `main` needs its database path and `run` its defaults.
pub fn get() -> Result<&'static FileConfig> {
    static LOADED: std::sync::OnceLock<std::result::Result<FileConfig, String>> =
        std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| load().map_err(|e| e.message))
        .as_ref()
        .map_err(|m| Error::usage(m.clone()))
}

/// Loads the file that applies to the current directory, if there is one.
pub fn load() -> Result<FileConfig> {
    let Ok(cwd) = std::env::current_dir() else {
        return Ok(FileConfig::default());
    };
    let Some(path) = find(&cwd) else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::usage(format!("{}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut cfg = parse(&text, dir).map_err(|e| {
        Error::usage(format!(
            "{}:{e}\n  fix the file (its keys are in docs/configuration.md)",
            path.display()
        ))
    })?;
    cfg.path = Some(path);
    Ok(cfg)
}

/// 1-based line of a byte offset, for error messages.
fn line_of(text: &str, offset: usize) -> usize {
    // Bytes, not a str slice: an offset inside a UTF-8 character must not panic.
    let before = &text.as_bytes()[..offset.min(text.len())];
    before.iter().filter(|b| **b == b'\n').count() + 1
}

/// `p`, relative to `dir` unless absolute (paths in the file are the file's).
pub fn absolute(dir: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        dir.join(p)
    }
}

/// Parses the file's text; relative paths are resolved against `dir`.
/// Errors start with the line number (`"3: ..."`).
pub fn parse(text: &str, dir: &Path) -> std::result::Result<FileConfig, String> {
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let Some(span) = e.span() else {
            return format!("1: {}", e.message().trim());
        };
        // A bad value's error does not name its key: take it from the line.
        let key = key_before(text, span.start).map_or(String::new(), |k| format!("{k}: "));
        format!("{}: {key}{}", line_of(text, span.start), e.message().trim())
    })?;
    // Key names are not in serde's errors for values, so say which key.
    let key_err = |key: &str, msg: String| format!("{}: {key}: {msg}", key_line(text, key));
    let mut cfg = FileConfig {
        jobs: raw.jobs,
        mem: raw.mem,
        cpus: raw.cpus,
        timeout: raw.timeout,
        history_runs: raw.history_runs,
        vms: raw.vms,
        ..FileConfig::default()
    };
    if raw.jobs == Some(0) {
        return Err(key_err("jobs", "must be at least 1".into()));
    }
    if raw.history_runs == Some(0) {
        return Err(key_err(
            "history_runs",
            "must be at least 1 (the history always keeps the last run)".into(),
        ));
    }
    if let Some(base) = raw.base_config {
        if base.trim().is_empty() {
            return Err(key_err(
                "base_config",
                "is empty (use tinyconfig, defconfig or a file)".into(),
            ));
        }
        cfg.base_config = Some(if base.contains('/') {
            absolute(dir, PathBuf::from(base))
                .to_string_lossy()
                .into_owned()
        } else {
            base
        });
    }
    cfg.build_dir = raw.build_dir.map(|p| absolute(dir, p));
    cfg.db = raw.db.map(|p| absolute(dir, p));
    for (name, value) in raw.make.unwrap_or_default() {
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => u8::from(b).to_string(),
            other => {
                return Err(key_err(
                    &name,
                    format!(
                        "make variables are strings or numbers, not {}",
                        other.type_str()
                    ),
                ))
            }
        };
        cfg.make_vars.push((name, value));
    }
    if let Some(a) = raw.arch {
        cfg.arch = Some(crate::arch::parse(&a).map_err(|e| key_err("arch", e))?);
    }
    if let Some(v) = raw.variant {
        cfg.variants = crate::variant::Variants::parse(&[v]).map_err(|e| key_err("variant", e))?;
    }
    for (name, t) in raw.target.unwrap_or_default() {
        let line = key_line_of_table(text, &name);
        cfg.targets.push(
            crate::target::Target::from_raw(&name, t, dir)
                .map_err(|e| format!("{line}: target.{name}: {e}"))?,
        );
    }
    if let Some(a) = raw.accel {
        use clap::ValueEnum;
        cfg.accel = Some(
            Choice::from_str(&a, true)
                .map_err(|_| key_err("accel", format!("'{a}' is not one of auto, kvm, tcg")))?,
        );
    }
    Ok(cfg)
}

/// The key of the `key = value` line holding byte `offset` if the offset
/// is in its value.
fn key_before(text: &str, offset: usize) -> Option<&str> {
    let before = text.as_bytes().get(..offset)?;
    let start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let line = std::str::from_utf8(&before[start..]).ok()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    .then_some(key)
}

/// The line of a `[target.NAME]` header, or 1.
fn key_line_of_table(text: &str, name: &str) -> usize {
    let header = format!("[target.{name}]");
    text.lines()
        .position(|l| l.trim() == header)
        .map_or(1, |i| i + 1)
}

/// The line a key is first written on, or 1.
fn key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(1, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("", Path::new("/p")).unwrap(), FileConfig::default());
    }

    #[test]
    fn every_key() {
        let text = r#"
base_config = "defconfig"
build_dir = "out"
jobs = 8
mem = "2G"
cpus = 4
timeout = 900
accel = "TCG"
db = "/var/tmp/ktest.db"
history_runs = 50
vms = 3

[make]
LLVM = 1
CROSS_COMPILE = "x86_64-linux-gnu-"
"#;
        let c = parse(text, Path::new("/proj")).unwrap();
        assert_eq!(c.base_config.as_deref(), Some("defconfig"));
        assert_eq!(c.build_dir, Some(PathBuf::from("/proj/out")));
        assert_eq!(c.jobs, Some(8));
        assert_eq!(c.mem.map(Memory::bytes), Some(2 << 30));
        assert_eq!(c.cpus.map(Cpus::get), Some(4));
        assert_eq!(c.timeout.map(TimeLimit::secs), Some(900));
        assert_eq!(c.accel, Some(Choice::Tcg));
        assert_eq!(c.db, Some(PathBuf::from("/var/tmp/ktest.db")));
        assert_eq!(c.history_runs, Some(50));
        assert_eq!(c.vms.map(VmCount::get), Some(3));
        assert_eq!(
            c.make_vars,
            vec![
                ("CROSS_COMPILE".to_string(), "x86_64-linux-gnu-".to_string()),
                ("LLVM".to_string(), "1".to_string())
            ]
        );
    }

    #[test]
    fn base_file_is_relative_to_the_file() {
        let c = parse("base_config = \"configs/my.config\"", Path::new("/proj")).unwrap();
        assert_eq!(c.base_config.as_deref(), Some("/proj/configs/my.config"));
        let c = parse("mem = 512", Path::new("/proj")).unwrap();
        assert_eq!(c.mem.map(Memory::bytes), Some(512 << 20));
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = parse("jobs = 2\ntiemout = 3\n", Path::new("/")).unwrap_err();
        assert!(e.starts_with("2: "), "{e}");
        assert!(e.contains("tiemout"), "{e}");
        assert_eq!(line_of("é\nx", 1), 1);
        let e = parse("cpus = 2\naccel = \"fast\"\n", Path::new("/")).unwrap_err();
        assert_eq!(e, "2: accel: 'fast' is not one of auto, kvm, tcg");
        let e = parse("mem = \"lots\"\n", Path::new("/")).unwrap_err();
        assert!(e.starts_with("1: mem: "), "{e}");
        let e = parse("jobs = 1\nhistory_runs = 0\n", Path::new("/")).unwrap_err();
        assert!(e.starts_with("2: history_runs: must be at least 1"), "{e}");
        let e = parse("timeout = 0\n", Path::new("/")).unwrap_err();
        assert!(e.contains("timeout"), "{e}");
        let e = parse("[make]\nX = [1]\n", Path::new("/")).unwrap_err();
        assert!(e.contains("X: make variables"), "{e}");
        assert!(parse("cpus = \"two\"\n", Path::new("/")).is_err());
    }

    #[test]
    fn values_are_checked_as_on_the_command_line() {
        let e = |t: &str| parse(t, Path::new("/")).unwrap_err();
        // An integer mem is MiB; this many overflowed bytes.
        let huge = e("jobs = 2\nmem = 9223372036854775807\n");
        assert!(
            huge.starts_with("2: mem: '9223372036854775807' is too large"),
            "{huge}"
        );
        assert!(e("mem = \"99999999999T\"").starts_with("1: mem: '99999999999T' is too large"));
        assert!(e("mem = \"1K\"").contains("at least 64M"));
        assert!(e("cpus = 0").starts_with("1: cpus: '0' is too small"));
        assert!(e("cpus = 300").contains("at most 255"));
        assert!(e("timeout = 99999999999").starts_with("1: timeout: '99999999999' is too large"));
        assert!(e("timeout = 0").contains("at least 1s"));
        assert!(e("mem = -1").starts_with("1: mem: '-1' is not a size"));
    }

    #[test]
    fn found_here_or_at_the_git_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let sub = root.join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        assert_eq!(find(&sub), None);
        std::fs::create_dir(root.join(".git")).unwrap();
        assert_eq!(find(&sub), None);
        std::fs::write(root.join(FILE_NAME), "").unwrap();
        assert_eq!(find(&sub), Some(root.join(FILE_NAME)));
        std::fs::write(sub.join(FILE_NAME), "").unwrap();
        assert_eq!(find(&sub), Some(sub.join(FILE_NAME)));
    }
}
