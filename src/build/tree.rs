//! Finding the kernel source tree to build, and checking that kbuild will
//! accept it for an out-of-tree (`O=`) build.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// True when `dir` is the top of a kernel source tree.
pub fn is_kernel_tree(dir: &Path) -> bool {
    dir.join("Makefile").is_file()
        && dir.join("Kconfig").is_file()
        && dir.join("scripts/kconfig").is_dir()
        && dir.join("arch").is_dir()
}

/// What makes `dir` unusable for `make O=`: kbuild refuses a source tree
/// that holds the output of an in-tree build.
pub fn unclean_reason(dir: &Path) -> Option<&'static str> {
    if dir.join(".config").exists() {
        Some("it has a .config")
    } else if dir.join("include/config").exists() {
        Some("it has include/config/")
    } else {
        None
    }
}

/// The tree to build: `--kernel-src`, else the current directory. Errors
/// say what to do: go to the top of the tree, clean it, or pass --kernel.
pub fn find(kernel_src: Option<&Path>, cwd: &Path) -> Result<PathBuf> {
    let dir = match kernel_src {
        Some(d) => {
            let d = cwd.join(d);
            if !is_kernel_tree(&d) {
                return Err(Error::usage(format!(
                    "--kernel-src {}: not the top of a kernel source tree (no Makefile, Kconfig, arch/ and scripts/kconfig/ there)",
                    d.display()
                )));
            }
            d
        }
        None if is_kernel_tree(cwd) => cwd.to_path_buf(),
        None => {
            if let Some(top) = cwd.ancestors().skip(1).find(|d| is_kernel_tree(d)) {
                return Err(Error::usage(format!(
                    "no kernel: {} is inside the kernel tree {}; run ktest from its top directory, or give --kernel-src {}",
                    cwd.display(),
                    top.display(),
                    top.display()
                )));
            }
            return Err(Error::usage(format!(
                "no kernel: {} is not a kernel source tree\n  run ktest from the top of one, give --kernel-src DIR, or --kernel PATH (a bzImage or build directory)",
                cwd.display()
            )));
        }
    };
    let dir = dir
        .canonicalize()
        .map_err(|e| Error::usage(format!("{}: {e}", dir.display())))?;
    if let Some(why) = unclean_reason(&dir) {
        return Err(Error::usage(format!(
            "{} is not a clean source tree ({why}), and kbuild refuses one for the out-of-tree build ktest does\n  run 'make mrproper' there (it deletes the in-tree build), or boot that build with --kernel {}",
            dir.display(),
            dir.display()
        )));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_tree(dir: &Path) {
        std::fs::create_dir_all(dir.join("scripts/kconfig")).unwrap();
        std::fs::create_dir_all(dir.join("arch/x86")).unwrap();
        std::fs::create_dir_all(dir.join("fs")).unwrap();
        std::fs::write(dir.join("Makefile"), "").unwrap();
        std::fs::write(dir.join("Kconfig"), "").unwrap();
        std::fs::write(dir.join("fs/Makefile"), "").unwrap();
        std::fs::write(dir.join("fs/Kconfig"), "").unwrap();
    }

    #[test]
    fn finds_the_tree_and_explains_what_is_not() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("linux");
        fake_tree(&top);
        let top = top.canonicalize().unwrap();
        assert_eq!(find(None, &top).unwrap(), top);
        assert_eq!(find(Some(Path::new("linux")), t.path()).unwrap(), top);

        let e = find(None, &top.join("fs")).unwrap_err();
        assert!(
            e.message.contains("run ktest from its top"),
            "{}",
            e.message
        );
        let e = find(None, t.path()).unwrap_err();
        assert!(
            e.message.contains("not a kernel source tree"),
            "{}",
            e.message
        );
        let e = find(Some(Path::new("nope")), t.path()).unwrap_err();
        assert!(e.message.starts_with("--kernel-src"), "{}", e.message);

        std::fs::write(top.join(".config"), "").unwrap();
        let e = find(None, &top).unwrap_err();
        assert!(e.message.contains("make mrproper"), "{}", e.message);
        assert_eq!(e.code, crate::error::Code::Usage);
    }
}
