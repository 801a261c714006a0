//! The image path the user gave, made absolute, and the rules for what may
//! already be there.

use std::path::{Path, PathBuf};

use crate::error::{usage, Result};
use crate::image::Existing;

/// Resolves PATH to `canonical parent directory / file name`, so the work
/// directory lands on the same file system and the final rename is atomic.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .filter(|_| !path.as_os_str().to_string_lossy().ends_with('/'))
        .ok_or_else(|| {
            usage(format!(
                "{} does not name a file; give the image file's path, e.g. /var/lib/ktest/root.img",
                path.display()
            ))
        })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = parent.canonicalize().map_err(|e| {
        usage(format!(
            "directory {} is not usable ({e}); create it first",
            parent.display()
        ))
    })?;
    if !parent.is_dir() {
        return Err(usage(format!("{} is not a directory", parent.display())));
    }
    Ok(parent.join(name))
}

/// The directories to create so that PATH's directory exists, outermost
/// first, as `mkdir -p` (and debootstrap for its target) would: a fresh
/// machine has no /var/lib/ktest. Refuses when the nearest existing one is
/// not a directory or cannot be looked at; nothing is created here.
pub fn missing_parents(path: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let Some(parent) = path.parent() else {
        return Ok(missing);
    };
    for dir in parent.ancestors().filter(|d| !d.as_os_str().is_empty()) {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(usage(format!(
                    "{} is not a directory; give a path under a directory",
                    dir.display()
                )))
            }
            // ENOTDIR: a file further up, refused when the walk gets there.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(nix::errno::Errno::ENOTDIR as i32) =>
            {
                missing.push(dir.to_path_buf())
            }
            Err(e) => {
                return Err(usage(format!(
                    "directory {} is not usable ({e})",
                    dir.display()
                )))
            }
        }
    }
    missing.reverse();
    Ok(missing)
}

/// Creates `dir` with mode 0755 whatever the umask, so that ktest's users
/// can reach the image in it; `false` if it exists by now (a `..` in the
/// path, or a racing build).
pub fn create_parent(dir: &Path) -> Result<bool> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        return Ok(false);
    }
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)))
        .map_err(|e| usage(format!("cannot create directory {} ({e})", dir.display())))?;
    Ok(true)
}

/// Whether a build may proceed given what is at the target: `Ok` to build
/// (replacing a regular file only with `force`), else the refusal.
pub fn check_build_target(path: &Path, existing: &Existing, force: bool) -> Result<()> {
    let p = path.display();
    match existing {
        Existing::Missing => Ok(()),
        Existing::NotRegular(kind) => Err(usage(format!(
            "{p} exists and is {kind}; refusing to replace it even with --force; \
             remove it or pick another path"
        ))),
        _ if force => Ok(()),
        Existing::KtestImage(m) => Err(usage(format!(
            "{p} is already a ktest image ({} {}, built {}); use --force to rebuild it \
             or --update to re-apply the configuration",
            m.release, m.arch, m.built
        ))),
        Existing::Qcow2 => Err(usage(format!(
            "{p} exists (a qcow2 image); use --force to rebuild it or --update to \
             re-apply the configuration"
        ))),
        Existing::ForeignExt4 => Err(usage(format!(
            "{p} exists and is an ext4 image that is not a ktest image (no /etc/ktest-image); \
             refusing to overwrite it; use --force to replace it"
        ))),
        Existing::OtherFile => Err(usage(format!(
            "{p} exists and is not a ktest image; refusing to overwrite it; \
             use --force to replace it"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marker::Marker;

    #[test]
    fn resolves_relative_paths_against_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        assert_eq!(resolve(&dir.path().join("img")).unwrap(), real.join("img"));
        let err = resolve(&dir.path().join("missing/img")).unwrap_err();
        assert!(err.to_string().contains("create it first"));
        assert!(resolve(Path::new("/")).is_err());
        assert!(resolve(&dir.path().join("sub/")).is_err());
        assert_eq!(
            resolve(Path::new("img")).unwrap().file_name().unwrap(),
            "img"
        );
    }

    #[test]
    fn missing_parents_are_listed_outermost_first() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(missing_parents(&d.join("img")).unwrap().is_empty());
        assert_eq!(
            missing_parents(&d.join("a/b/img")).unwrap(),
            [d.join("a"), d.join("a/b")]
        );
        assert!(missing_parents(Path::new("img")).unwrap().is_empty());
        std::fs::write(d.join("file"), "").unwrap();
        let err = missing_parents(&d.join("file/sub/img")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("file is not a directory"), "{err}");
    }

    #[test]
    fn parents_are_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        assert!(create_parent(&a).unwrap());
        assert!(a.is_dir());
        assert!(!create_parent(&a).unwrap());
        let err = create_parent(&dir.path().join("x/y")).unwrap_err();
        assert!(err.to_string().contains("cannot create directory"), "{err}");
    }

    #[test]
    fn existing_targets_need_force_and_must_be_files() {
        let p = Path::new("/x/img");
        assert!(check_build_target(p, &Existing::Missing, false).is_ok());
        let marker = Marker::parse("format=1\nrelease=bookworm\n").unwrap();
        let ktest = Existing::KtestImage(marker);
        let msg = check_build_target(p, &ktest, false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--force") && msg.contains("--update"), "{msg}");
        assert!(check_build_target(p, &ktest, true).is_ok());
        for other in [Existing::OtherFile, Existing::ForeignExt4, Existing::Qcow2] {
            let err = check_build_target(p, &other, false).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(check_build_target(p, &other, true).is_ok());
        }
        let dir = Existing::NotRegular("a directory");
        let msg = check_build_target(p, &dir, true).unwrap_err().to_string();
        assert!(msg.contains("is a directory; refusing"), "{msg}");
    }
}
