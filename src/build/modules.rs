//! Installing the kernel's modules into the build directory, only when the
//! build produced something the installed copy lacks.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The kernel release (`uname -r` in the guest) of a configured build.
pub fn release(build: &Path) -> Option<String> {
    let r = std::fs::read_to_string(build.join("include/config/kernel.release")).ok()?;
    let r = r.trim();
    (!r.is_empty()).then(|| r.to_string())
}

/// Where `make modules_install INSTALL_MOD_PATH=<build>` puts a release.
pub fn installed_dir(build: &Path, release: &str) -> PathBuf {
    build.join("lib/modules").join(release)
}

/// The files whose change means the installed modules are stale: the
/// modules kbuild built (listed in modules.order), the list itself and
/// modules.builtin.
pub fn built_files(build: &Path) -> Vec<PathBuf> {
    let mut files = vec![build.join("modules.order"), build.join("modules.builtin")];
    if let Ok(order) = std::fs::read_to_string(build.join("modules.order")) {
        for line in order.lines().map(str::trim).filter(|l| !l.is_empty()) {
            // Newer kernels list the objects (foo.o), older ones the modules.
            let ko = match line.strip_suffix(".o") {
                Some(stem) => format!("{stem}.ko"),
                None => line.to_string(),
            };
            files.push(build.join(ko));
        }
    }
    files
}

/// Install when nothing is installed yet, or when a built file is newer than
/// the installation (depmod writes modules.dep last, so its time is the
/// installation's).
pub fn install_needed(installed: Option<SystemTime>, built: &[Option<SystemTime>]) -> bool {
    match installed {
        None => true,
        Some(at) => built.iter().flatten().any(|t| *t > at),
    }
}

/// `install_needed` for a build directory on disk.
pub fn needs_install(build: &Path, release: &str) -> bool {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let installed = mtime(&installed_dir(build, release).join("modules.dep"));
    let built: Vec<Option<SystemTime>> = built_files(build).iter().map(|p| mtime(p)).collect();
    install_needed(installed, &built)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn install_decision() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let later = t0 + Duration::from_secs(5);
        assert!(install_needed(None, &[]));
        assert!(!install_needed(Some(t0), &[Some(t0), None]));
        assert!(install_needed(Some(t0), &[Some(t0), Some(later)]));
        assert!(!install_needed(Some(later), &[Some(t0)]));
    }

    #[test]
    fn lists_built_modules() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("modules.order"), "fs/a.ko\ndrivers/b.o\n\n").unwrap();
        std::fs::create_dir_all(t.path().join("include/config")).unwrap();
        std::fs::write(t.path().join("include/config/kernel.release"), "6.1.0\n").unwrap();
        let files = built_files(t.path());
        assert!(files.contains(&t.path().join("fs/a.ko")));
        assert!(files.contains(&t.path().join("drivers/b.ko")));
        assert_eq!(release(t.path()).as_deref(), Some("6.1.0"));
        assert!(needs_install(t.path(), "6.1.0"));
        let inst = installed_dir(t.path(), "6.1.0");
        std::fs::create_dir_all(&inst).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(inst.join("modules.dep"), "").unwrap();
        assert!(!needs_install(t.path(), "6.1.0"));
    }
}
