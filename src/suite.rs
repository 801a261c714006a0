//! A test file as a suite: its subtests, and which of them a run selects.
//!
//! A file declares `SUBTESTS=yes` in deps to say it answers `list-tests`;
//! only then does ktest ask. Any other file is one subtest, named after the
//! file, run as it always was.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The longest subtest name ktest takes: it becomes a log file name.
const NAME_MAX: usize = 200;

/// Whether `name` can be a subtest's name: it travels on the guest's
/// result port as one word and names a log file.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c))
}

/// Whether `name` is taken by ktest's own files beside the subtests' logs:
/// `console.log`, and `console-N.log` for the VMs after a crash.
fn reserved(name: &str) -> bool {
    name == "console"
        || name
            .strip_prefix("console-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses `list-tests` output: one name per line, blank lines ignored.
pub fn parse_list(out: &str) -> std::result::Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !valid_name(line) {
            return Err(format!(
                "'{line}' is not a subtest name (letters, digits and _.+- only, at most {NAME_MAX} characters, not starting with '.')"
            ));
        }
        if reserved(line) {
            return Err(format!(
                "'{line}' is reserved: ktest's console log beside the subtests' logs has that name"
            ));
        }
        if names.iter().any(|n| n == line) {
            return Err(format!("'{line}' is listed twice"));
        }
        names.push(line.to_string());
    }
    if names.is_empty() {
        return Err("listed no subtests".into());
    }
    Ok(names)
}

/// A test file and the subtest patterns given for it on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestArg {
    /// The test file, as given.
    pub path: PathBuf,
    /// Glob patterns from `TEST:GLOB`; empty for all.
    pub patterns: Vec<String>,
}

/// Splits `TEST:GLOB` into the file and the pattern. A path that exists
/// as given is a file even with a colon in it.
pub fn split_test_arg(arg: &Path) -> TestArg {
    let whole = TestArg {
        path: arg.to_path_buf(),
        patterns: Vec::new(),
    };
    if arg.exists() {
        return whole;
    }
    let text = arg.to_string_lossy();
    match text.rsplit_once(':') {
        Some((file, pattern)) if !file.is_empty() && !pattern.is_empty() => TestArg {
            path: PathBuf::from(file),
            patterns: vec![pattern.to_string()],
        },
        _ => whole,
    }
}

/// The subtests of `all` that match any of `patterns` (all of them when
/// there are none), in the file's order. A pattern matching nothing is an
/// error that lists what there is.
pub fn select(test: &Path, all: &[String], patterns: &[String]) -> Result<Vec<String>> {
    if patterns.is_empty() {
        return Ok(all.to_vec());
    }
    let mut compiled = Vec::new();
    for p in patterns {
        let glob = glob::Pattern::new(p)
            .map_err(|e| Error::usage(format!("subtest pattern '{p}': {e}")))?;
        if !all.iter().any(|n| glob.matches(n)) {
            return Err(Error::usage(format!(
                "{}: no subtest matches '{p}'; it has: {}",
                test.display(),
                all.join(" ")
            )));
        }
        compiled.push(glob);
    }
    Ok(all
        .iter()
        .filter(|n| compiled.iter().any(|g| g.matches(n)))
        .cloned()
        .collect())
}

/// The one subtest of a file without `SUBTESTS=yes`: the file's name.
pub fn single_name(test: &Path) -> String {
    let name = test
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "test".into());
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(NAME_MAX - 1)
        .collect();
    if reserved(&clean) {
        format!("{clean}_")
    } else if valid_name(&clean) {
        clean
    } else {
        format!("t{clean}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn list_output() {
        assert_eq!(
            parse_list("a\n\n b_2 \nc.d+e-f\n").unwrap(),
            names(&["a", "b_2", "c.d+e-f"])
        );
        assert!(parse_list("").unwrap_err().contains("no subtests"));
        assert!(parse_list("a b\n").unwrap_err().contains("'a b'"));
        assert!(parse_list("x/y\n").is_err());
        assert!(parse_list(".hidden\n").is_err());
        assert!(parse_list("a\na\n").unwrap_err().contains("twice"));
        assert!(parse_list("console\n").unwrap_err().contains("reserved"));
        assert!(parse_list("console-2\n").unwrap_err().contains("reserved"));
        assert!(parse_list("console-x\nconsoles\n").is_ok());
        assert!(parse_list(&"x".repeat(NAME_MAX + 1)).is_err());
    }

    #[test]
    fn test_args_split_at_the_last_colon_unless_the_file_exists() {
        let t = tempfile::tempdir().unwrap();
        let odd = t.path().join("a:b");
        std::fs::write(&odd, "").unwrap();
        assert_eq!(split_test_arg(&odd).patterns, Vec::<String>::new());
        let a = split_test_arg(Path::new("tests/bcache:write*"));
        assert_eq!(a.path, Path::new("tests/bcache"));
        assert_eq!(a.patterns, vec!["write*"]);
        let plain = split_test_arg(Path::new("tests/none"));
        assert!(plain.patterns.is_empty());
        assert!(split_test_arg(Path::new("tests/x:")).patterns.is_empty());
    }

    #[test]
    fn selection_keeps_file_order_and_rejects_empty_matches() {
        let all = names(&["writeback", "writethrough", "detach"]);
        let t = Path::new("bcache");
        assert_eq!(select(t, &all, &[]).unwrap(), all);
        assert_eq!(select(t, &all, &names(&["detach", "write*"])).unwrap(), all);
        assert_eq!(
            select(t, &all, &names(&["*through"])).unwrap(),
            names(&["writethrough"])
        );
        let e = select(t, &all, &names(&["nope"])).unwrap_err();
        assert!(
            e.message.contains("writeback writethrough detach"),
            "{}",
            e.message
        );
        assert!(select(t, &all, &names(&["[z"])).is_err());
    }

    #[test]
    fn single_subtest_is_named_after_the_file() {
        assert_eq!(single_name(Path::new("/t/hello")), "hello");
        assert_eq!(single_name(Path::new("/t/my test")), "my_test");
        assert_eq!(single_name(Path::new("/t/.hidden")), "t.hidden");
        // Its log must not be the console log.
        assert_eq!(single_name(Path::new("/t/console")), "console_");
    }
}
