//! Finding the files a test declares with `REQUIRE` and `LREQUIRE`.
//!
//! In the guest every required file appears in the test's own directory
//! under its base name, and that directory is first in PATH; this module
//! decides which host file each name means.

use std::path::{Path, PathBuf};

/// A required file: where it is on the host, and the name it gets beside
/// the test in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Required {
    /// Absolute host path.
    pub host: PathBuf,
    /// Base name in the test's directory.
    pub name: String,
}

/// Looks up one `REQUIRE` entry: relative to the test's directory first,
/// then, for a bare name, in `path` (the host's PATH).
pub fn find(entry: &str, test_dir: &Path, path: Option<&str>) -> Option<PathBuf> {
    let local = test_dir.join(entry);
    if local.exists() {
        return Some(local);
    }
    if entry.contains('/') {
        return None;
    }
    std::env::split_paths(path.unwrap_or_default())
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(entry))
        .find(|candidate| candidate.is_file())
}

/// Looks up one `LREQUIRE` entry inside the kernel source tree.
pub fn find_in_tree(entry: &str, tree: &Path) -> Option<PathBuf> {
    let p = tree.join(entry);
    p.exists().then_some(p)
}

/// Turns found paths into `Required` entries, canonicalizing them and
/// refusing two different files that would get the same name beside the
/// test.
pub fn place(found: Vec<(String, PathBuf)>, test_dir: &Path) -> Result<Vec<Required>, String> {
    let mut out: Vec<Required> = Vec::new();
    for (entry, found_at) in found {
        // The name is the one the test asked for (sh, not dash), the link
        // target the real file.
        let name = match found_at.file_name() {
            Some(n) => n.to_string_lossy().into_owned(),
            None => return Err(format!("{entry}: {} has no file name", found_at.display())),
        };
        let host = found_at
            .canonicalize()
            .map_err(|e| format!("{entry}: {}: {e}", found_at.display()))?;
        let beside = test_dir.join(&name);
        if beside.exists() && beside.canonicalize().ok().as_deref() != Some(host.as_path()) {
            return Err(format!(
                "{entry} is {} but the test's directory already has a different {name}",
                host.display()
            ));
        }
        if let Some(other) = out.iter().find(|r| r.name == name && r.host != host) {
            return Err(format!(
                "{entry} ({}) and {} would both be {name} beside the test",
                host.display(),
                other.host.display()
            ));
        }
        if !out.iter().any(|r| r.host == host && r.name == name) {
            out.push(Required { host, name });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn lookup_order() {
        let t = tempfile::tempdir().unwrap();
        let testdir = t.path().join("tests");
        let bin = t.path().join("bin");
        fs::create_dir_all(testdir.join("lib")).unwrap();
        fs::create_dir_all(&bin).unwrap();
        fs::write(testdir.join("helper.sh"), "").unwrap();
        fs::write(testdir.join("lib/libs.sh"), "").unwrap();
        fs::write(bin.join("helper.sh"), "").unwrap();
        fs::write(bin.join("tool"), "").unwrap();
        let path = format!("relative:{}", bin.display());
        let path = Some(path.as_str());

        assert_eq!(
            find("helper.sh", &testdir, path),
            Some(testdir.join("helper.sh"))
        );
        assert_eq!(find("tool", &testdir, path), Some(bin.join("tool")));
        assert_eq!(
            find("lib/libs.sh", &testdir, path),
            Some(testdir.join("lib/libs.sh"))
        );
        assert_eq!(find("nothere", &testdir, path), None);
        assert_eq!(find("x/tool", &testdir, path), None);
        assert_eq!(find("tool", &testdir, None), None);
    }

    #[test]
    fn placing_detects_name_clashes() {
        let t = tempfile::tempdir().unwrap();
        let testdir = t.path().join("tests");
        fs::create_dir_all(testdir.join("lib")).unwrap();
        fs::create_dir_all(t.path().join("other")).unwrap();
        fs::write(testdir.join("a.sh"), "").unwrap();
        fs::write(testdir.join("lib/a.sh"), "").unwrap();
        fs::write(t.path().join("other/b.sh"), "").unwrap();
        std::os::unix::fs::symlink("b.sh", t.path().join("other/c")).unwrap();

        let ok = place(
            vec![
                ("a.sh".into(), testdir.join("a.sh")),
                ("../other/b.sh".into(), t.path().join("other/b.sh")),
                ("a.sh".into(), testdir.join("a.sh")),
                ("c".into(), t.path().join("other/c")),
            ],
            &testdir,
        )
        .unwrap();
        assert_eq!(ok.len(), 3);
        assert_eq!(ok[1].name, "b.sh");
        assert_eq!(ok[2].name, "c");
        assert!(ok[2].host.ends_with("other/b.sh"));

        let clash = place(
            vec![("lib/a.sh".into(), testdir.join("lib/a.sh"))],
            &testdir,
        );
        assert!(clash.unwrap_err().contains("already has a different a.sh"));
    }
}
