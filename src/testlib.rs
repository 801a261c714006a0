//! ktest's shell library for test authors (lib/ktest.sh). It is built into
//! the binary, like the guest init, so an installed ktest needs no data
//! files; tests find it through `$KTEST_LIB`, on the host (deps,
//! list-tests) and in the VM alike.

use crate::error::{Context, Result};
use std::path::PathBuf;

/// The library's text.
pub const TEXT: &str = include_str!("../lib/ktest.sh");
/// The environment variable that names the library's path.
pub const VAR: &str = "KTEST_LIB";
/// Its file name in the per-VM directory (and so under /run/ktest).
pub const FILE_NAME: &str = "ktest.sh";

/// A private copy of the library on the host, for the test's `deps` and
/// `list-tests` runs; removed when dropped.
pub struct HostCopy {
    dir: PathBuf,
}

impl HostCopy {
    /// Writes the library into a fresh directory only this user can
    /// enter: a shared, predictable path would let another user replace
    /// what a root-run test sources.
    pub fn create() -> Result<HostCopy> {
        let template = std::env::temp_dir().join("ktest-lib-XXXXXX");
        let dir = nix::unistd::mkdtemp(&template)
            .context(|| format!("creating a directory like {}", template.display()))?;
        let copy = HostCopy { dir };
        std::fs::write(copy.path(), TEXT)
            .context(|| format!("writing {}", copy.path().display()))?;
        Ok(copy)
    }

    /// The library's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }
}

impl Drop for HostCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn host_copy_is_private_and_removed() {
        let copy = HostCopy::create().unwrap();
        let dir = copy.path().parent().unwrap().to_path_buf();
        assert_eq!(std::fs::read_to_string(copy.path()).unwrap(), TEXT);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        drop(copy);
        assert!(!dir.exists());
    }
}
