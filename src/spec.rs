//! What a test declares about itself in `deps` mode, and the pure parser for
//! it.
//!
//! `tests/foo deps` prints `KEY=VALUE` lines. Values may be shell-quoted.
//! Lines that do not look like `KEY=VALUE` are ignored, so a test can print
//! whatever else it likes; a line that does look like one must use a known
//! key and a valid value.

use crate::values::{Cpus, DiskSize, Memory, TimeLimit, ValueError};

/// A kernel config option a test needs, e.g. `BCACHE` or `HZ=1000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KconfigOption {
    /// The name without the `CONFIG_` prefix.
    pub name: String,
    /// The value required; `None` means built in or a module.
    pub value: Option<String>,
}

impl std::fmt::Display for KconfigOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(v) => write!(f, "CONFIG_{}={v}", self.name),
            None => write!(f, "CONFIG_{}", self.name),
        }
    }
}

/// Everything a test declared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestSpec {
    /// Guest memory (`MEM`, required).
    pub mem: Memory,
    /// Virtual CPUs (`CPUS`).
    pub cpus: Option<Cpus>,
    /// Scratch disk sizes, in declared order (`SCRATCH`).
    pub scratch: Vec<DiskSize>,
    /// Files the test needs beside it (`REQUIRE`), as declared.
    pub require: Vec<String>,
    /// Files from the kernel source tree (`LREQUIRE`), as declared.
    pub lrequire: Vec<String>,
    /// Time limit (`TIMEOUT`).
    pub timeout: Option<TimeLimit>,
    /// Extra kernel command line (`APPEND`), one entry per declaration.
    pub append: Vec<String>,
    /// Kernel options the test needs (`KCONFIG`).
    pub kconfig: Vec<KconfigOption>,
    /// The file answers `list-tests` and `run-tests NAME` (`SUBTESTS=yes`).
    /// Without it ktest never asks: a plain script would run its body on
    /// the host.
    pub subtests: bool,
    /// It also answers `run-tests-serve`: one process runs every subtest,
    /// named one per line on its stdin, and writes each exit status on fd
    /// 5 (`SUBTESTS=serve`; ktest's shell library does). Saves an exec per
    /// subtest, 50 ms or more under TCG.
    pub serve: bool,
    /// Kernel-log kinds its subtests may produce without failing (`ALLOW`),
    /// as declared; checked against the known kinds when the run starts.
    pub allow: Vec<String>,
}

/// A declaration error: which line, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclError {
    /// 1-based line number in the `deps` output; 0 when not about one line.
    pub line: usize,
    /// The key concerned, if any.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for DeclError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.key, self.line) {
            (Some(k), l) if l > 0 => write!(f, "line {l}, {k}: {}", self.message),
            (Some(k), _) => write!(f, "{k}: {}", self.message),
            (None, l) if l > 0 => write!(f, "line {l}: {}", self.message),
            (None, _) => f.write_str(&self.message),
        }
    }
}

/// The keys ktest understands, for error messages.
pub const KEYS: &[&str] = &[
    "MEM", "CPUS", "SCRATCH", "REQUIRE", "LREQUIRE", "TIMEOUT", "APPEND", "KCONFIG", "SUBTESTS",
    "ALLOW",
];

/// Splits a line into key and raw value if it has the form `KEY=VALUE`.
fn key_value(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once('=')?;
    let mut chars = key.chars();
    let first = chars.next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some((key, value))
}

/// Comma-separated list, empty items dropped.
fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_kconfig(item: &str) -> Result<KconfigOption, String> {
    let (name, value) = match item.split_once('=') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (item, None),
    };
    let name = name.strip_prefix("CONFIG_").unwrap_or(name);
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "'{item}' is not a kernel option name (expected e.g. BCACHE or CONFIG_HZ=1000)"
        ));
    }
    Ok(KconfigOption {
        name: name.to_string(),
        value,
    })
}

/// Parses `deps` output into a `TestSpec`.
///
/// Keys that may appear several times accumulate (`SCRATCH`, `REQUIRE`,
/// `LREQUIRE`, `APPEND`, `KCONFIG`); for `MEM`, `CPUS` and `TIMEOUT` the
/// largest value wins, so shared test libraries can each state a minimum.
pub fn parse(output: &str) -> Result<TestSpec, DeclError> {
    let mut spec = TestSpec::default();
    let mut saw_mem = false;
    let mut saw_any = false;
    for (index, raw) in output.lines().enumerate() {
        let line = index + 1;
        let Some((key, raw_value)) = key_value(raw.trim()) else {
            continue;
        };
        saw_any = true;
        let err = |message: String| DeclError {
            line,
            key: Some(key.to_string()),
            message,
        };
        let words = shell_words::split(raw_value)
            .map_err(|e| err(format!("cannot unquote '{raw_value}': {e}")))?;
        let value = match words.as_slice() {
            [] => String::new(),
            [one] => one.clone(),
            _ => {
                return Err(err(format!(
                    "'{raw_value}' is several words; quote it if it is one value"
                )))
            }
        };
        let value_err = |e: ValueError| err(e.to_string());
        match key {
            "MEM" => {
                spec.mem = spec.mem.max(value.parse().map_err(value_err)?);
                saw_mem = true;
            }
            "CPUS" => spec.cpus = spec.cpus.max(Some(value.parse().map_err(value_err)?)),
            "TIMEOUT" => spec.timeout = spec.timeout.max(Some(value.parse().map_err(value_err)?)),
            "SCRATCH" => {
                for item in list(&value) {
                    spec.scratch.push(item.parse().map_err(value_err)?);
                }
            }
            "REQUIRE" => spec.require.extend(list(&value).map(String::from)),
            "LREQUIRE" => spec.lrequire.extend(list(&value).map(String::from)),
            "APPEND" => {
                if !value.trim().is_empty() {
                    spec.append.push(value);
                }
            }
            "SUBTESTS" => {
                (spec.subtests, spec.serve) = match value.as_str() {
                    "yes" | "1" => (true, false),
                    "serve" => (true, true),
                    "no" | "0" => (false, false),
                    _ => return Err(err(format!("'{value}': expected yes, serve or no"))),
                }
            }
            "ALLOW" => spec.allow.extend(list(&value).map(str::to_lowercase)),
            "KCONFIG" => {
                for item in list(&value) {
                    spec.kconfig.push(parse_kconfig(item).map_err(err)?);
                }
            }
            _ => {
                return Err(err(format!(
                    "unknown key (ktest knows {})",
                    KEYS.join(", ")
                )))
            }
        }
    }
    if !saw_any {
        return Err(DeclError {
            line: 0,
            key: None,
            message:
                "printed no KEY=VALUE lines; a test must at least declare MEM (e.g. echo MEM=512M)"
                    .into(),
        });
    }
    if !saw_mem {
        return Err(DeclError {
            line: 0,
            key: Some("MEM".into()),
            message: "is required (e.g. echo MEM=512M)".into(),
        });
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_declaration() {
        let out = "\
checking things...
MEM=512M
CPUS=2
SCRATCH=512M,2G
SCRATCH=1G
REQUIRE=test-libs.sh,make-bcache
LREQUIRE=tools/testing/foo
TIMEOUT=30
APPEND=\"foo=1 bar\"
KCONFIG=BCACHE,CONFIG_HZ=1000
";
        let s = parse(out).unwrap();
        assert_eq!(s.mem.bytes(), 512 << 20);
        assert_eq!(s.cpus.map(Cpus::get), Some(2));
        assert_eq!(
            s.scratch.iter().map(|d| d.bytes()).collect::<Vec<_>>(),
            vec![512 << 20, 2 << 30, 1 << 30]
        );
        assert_eq!(s.require, vec!["test-libs.sh", "make-bcache"]);
        assert_eq!(s.lrequire, vec!["tools/testing/foo"]);
        assert_eq!(s.timeout.map(TimeLimit::secs), Some(30));
        assert_eq!(s.append, vec!["foo=1 bar"]);
        assert_eq!(
            s.kconfig,
            vec![
                KconfigOption {
                    name: "BCACHE".into(),
                    value: None
                },
                KconfigOption {
                    name: "HZ".into(),
                    value: Some("1000".into())
                },
            ]
        );
    }

    #[test]
    fn subtests_and_allowances() {
        let s = parse("MEM=256M\nSUBTESTS=yes\nALLOW=Warning,taint\nALLOW=lockdep").unwrap();
        assert!(s.subtests && !s.serve);
        assert_eq!(s.allow, vec!["warning", "taint", "lockdep"]);
        let s = parse("MEM=256M\nSUBTESTS=serve").unwrap();
        assert!(s.subtests && s.serve);
        assert!(!parse("MEM=256M").unwrap().subtests);
        let e = parse("MEM=256M\nSUBTESTS=maybe").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("SUBTESTS"));
    }

    #[test]
    fn largest_minimum_wins() {
        let s = parse("MEM=2G\nMEM=512M\nTIMEOUT=10\nTIMEOUT=60\nCPUS=4\nCPUS=1").unwrap();
        assert_eq!(s.mem.bytes(), 2 << 30);
        assert_eq!(s.timeout.map(TimeLimit::secs), Some(60));
        assert_eq!(s.cpus.map(Cpus::get), Some(4));
    }

    #[test]
    fn bare_mem_is_mib_and_quotes_work() {
        assert_eq!(parse("MEM=1024").unwrap().mem.bytes(), 1 << 30);
        assert_eq!(parse("MEM='256M'").unwrap().mem.bytes(), 256 << 20);
        assert_eq!(parse("  MEM=256M  ").unwrap().mem.bytes(), 256 << 20);
    }

    #[test]
    fn noise_is_ignored() {
        let s = parse("hello world\n# comment\n= oops\n1X=2\nMEM=128M\n").unwrap();
        assert_eq!(s.mem.bytes(), 128 << 20);
    }

    fn error(out: &str) -> DeclError {
        parse(out).unwrap_err()
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = error("MEM=128M\nSCRACH=1G\n");
        assert_eq!(e.line, 2);
        assert_eq!(e.key.as_deref(), Some("SCRACH"));
        assert!(e.to_string().contains("unknown key"), "{e}");
        assert_eq!(error("MEM=128M\nmem=1\n").key.as_deref(), Some("mem"));
    }

    #[test]
    fn bad_values() {
        let e = error("MEM=lots\n");
        assert_eq!((e.line, e.key.as_deref()), (1, Some("MEM")));
        let e = error("MEM=128M\nSCRATCH=1G,big\n");
        assert_eq!((e.line, e.key.as_deref()), (2, Some("SCRATCH")));
        assert!(error("MEM=128M\nSCRATCH=0\n")
            .to_string()
            .contains("'0' is too small: a scratch disk is at least 1M"));
        assert!(error("MEM=32M\n")
            .to_string()
            .contains("'32M' is too small: guest memory is at least 64M"));
        assert_eq!(error("MEM=128M\nCPUS=0\n").key.as_deref(), Some("CPUS"));
        assert_eq!(
            error("MEM=128M\nTIMEOUT=soon\n").key.as_deref(),
            Some("TIMEOUT")
        );
        assert_eq!(
            error("MEM=128M\nKCONFIG=bcache\n").key.as_deref(),
            Some("KCONFIG")
        );
        assert!(error("MEM=512M 1G\n").to_string().contains("several words"));
        assert!(error("MEM='512M\n").to_string().contains("unquote"));
    }

    #[test]
    fn values_are_bounded_and_cannot_overflow() {
        let e = error("MEM=128M\nCPUS=1000\n");
        assert_eq!((e.line, e.key.as_deref()), (2, Some("CPUS")));
        assert!(e.to_string().contains("at most 255"), "{e}");
        let e = error("MEM=128M\nTIMEOUT=18446744073709551615\n");
        assert_eq!((e.line, e.key.as_deref()), (2, Some("TIMEOUT")));
        assert!(e.to_string().contains("at most 2592000s"), "{e}");
        let e = error("MEM=128M\nSCRATCH=1G,16E\n");
        assert_eq!(e.to_string(), "line 2, SCRATCH: '16E' is too large: a scratch disk is at most just under 8E (the largest file Linux can hold)");
        assert!(error("MEM=1K\n").to_string().contains("at least 64M"));
    }

    #[test]
    fn nothing_declared() {
        let e = error("just some text\n");
        assert_eq!(e.line, 0);
        assert!(e.to_string().contains("no KEY=VALUE"));
        let e = error("REQUIRE=foo\n");
        assert_eq!(e.key.as_deref(), Some("MEM"));
    }

    #[test]
    fn kconfig_display() {
        let o = parse_kconfig("CONFIG_HZ=1000").unwrap();
        assert_eq!(o.to_string(), "CONFIG_HZ=1000");
        assert_eq!(parse_kconfig("MD").unwrap().to_string(), "CONFIG_MD");
    }
}
