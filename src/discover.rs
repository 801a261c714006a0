//! Which test files a `ktest run` names: files as given, `TEST:GLOB`, and
//! directories, where every executable `*.ktest` file under them is a test.
//!
//! A directory's files are chosen by name, not by trying them: ktest runs
//! `TEST deps` on the host before any VM exists, so treating every
//! executable under a directory as a test would run helper scripts and
//! binaries on the host, as whoever runs ktest (often root).

use crate::error::{Error, Result};
use crate::suite::{self, TestArg};
use std::path::{Path, PathBuf};

/// The suffix that marks a test file inside a directory.
pub const SUFFIX: &str = ".ktest";

/// The test files `args` select, in the order given (a directory's files
/// sorted by path), each with its subtest patterns: those of `TEST:GLOB`
/// and every `-s`. A file named twice is run once, with the patterns of
/// both (all of its subtests if either named it whole).
pub fn tests(args: &[PathBuf], subtest_patterns: &[String]) -> Result<Vec<TestArg>> {
    let mut out: Vec<(PathBuf, TestArg)> = Vec::new();
    for arg in args {
        let t = suite::split_test_arg(arg);
        let found = if t.path.is_dir() {
            if !t.patterns.is_empty() {
                return Err(Error::usage(format!(
                    "{}: a directory takes no :GLOB; use -s GLOB to select subtests in every file",
                    arg.display()
                )));
            }
            in_dir(&t.path)?
                .into_iter()
                .map(|path| TestArg {
                    path,
                    patterns: Vec::new(),
                })
                .collect()
        } else {
            vec![t]
        };
        for t in found {
            let key = t
                .path
                .canonicalize()
                .map_err(|e| Error::usage(format!("{}: {e}", t.path.display())))?;
            match out.iter_mut().find(|(k, _)| *k == key) {
                Some((_, seen)) => merge_patterns(&mut seen.patterns, t.patterns),
                None => out.push((key, t)),
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|(_, mut t)| {
            t.patterns.extend(subtest_patterns.iter().cloned());
            t
        })
        .collect())
}

/// Joins a second naming's patterns into the first's: empty means every
/// subtest, so either being empty makes the union empty.
fn merge_patterns(seen: &mut Vec<String>, more: Vec<String>) {
    if seen.is_empty() || more.is_empty() {
        seen.clear();
        return;
    }
    for p in more {
        if !seen.contains(&p) {
            seen.push(p);
        }
    }
}

/// The executable `*.ktest` files under `dir`, sorted by path; hidden
/// files and directories are skipped and symbolic links are not followed.
/// None at all is an error: a run that selects nothing passes vacuously.
pub fn in_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walk {
        let entry = entry.map_err(|e| Error::usage(format!("{}: {e}", dir.display())))?;
        let is_test = entry.file_type().is_file()
            && entry.file_name().to_string_lossy().ends_with(SUFFIX)
            && entry
                .metadata()
                .is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
        if is_test {
            found.push(entry.into_path());
        }
    }
    if found.is_empty() {
        return Err(Error::usage(format!(
            "{} holds no test files (executable files named *{SUFFIX}); name test files directly, or chmod +x them",
            dir.display()
        )));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(path: &Path, mode: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_directory_selects_its_executable_ktest_files_only() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        file(&d.join("b.ktest"), 0o755);
        file(&d.join("a.ktest"), 0o755);
        file(&d.join("sub/c.ktest"), 0o700);
        file(&d.join("helper.sh"), 0o755);
        file(&d.join("notes.ktest"), 0o644);
        file(&d.join(".hidden/d.ktest"), 0o755);
        file(&d.join(".e.ktest"), 0o755);
        std::os::unix::fs::symlink(d.join("a.ktest"), d.join("link.ktest")).unwrap();
        let names: Vec<_> = in_dir(d)
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(d).unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.ktest", "b.ktest", "sub/c.ktest"]);
        let empty = tempfile::tempdir().unwrap();
        file(&empty.path().join("helper.sh"), 0o755);
        let e = in_dir(empty.path()).unwrap_err();
        assert_eq!(e.code, crate::error::Code::Usage);
        assert!(e.message.contains("holds no test files"), "{}", e.message);
    }

    #[test]
    fn files_named_twice_run_once_with_both_selections() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        file(&d.join("x.ktest"), 0o755);
        file(&d.join("y"), 0o755);
        let x = d.join("x.ktest");
        let arg = |s: &str| PathBuf::from(format!("{}{s}", x.display()));
        let got = tests(&[arg(":a*"), d.join("y"), arg(":b*")], &[]).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].patterns, ["a*", "b*"]);
        assert!(got[1].patterns.is_empty());
        // Named whole anywhere: all of its subtests.
        let got = tests(&[arg(":a*"), d.to_path_buf()], &[]).unwrap();
        assert_eq!(got.len(), 1, "the directory holds only x.ktest");
        assert!(got[0].patterns.is_empty());
        // -s applies to every file.
        let got = tests(&[d.to_path_buf(), d.join("y")], &["t1".into()]).unwrap();
        assert!(got.iter().all(|t| t.patterns == ["t1"]));
        let e = tests(&[PathBuf::from(format!("{}:x", d.display()))], &[]);
        assert!(e.is_err());
        let missing = tests(&[d.join("nope")], &[]).unwrap_err();
        assert_eq!(missing.code, crate::error::Code::Usage);
    }
}
