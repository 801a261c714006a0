//! VM ids, enforced on the directory itself. A VM started from `DIR` has
//! a small id, unique among the live VMs from `DIR`: the lowest `N` whose
//! lock file `DIR/.ktest/vms/N.lock` no live ktest holds. Its ktest holds
//! an exclusive `flock` on that file from before it touches the per-VM
//! directory `DIR/.ktest/vms/N/` until after it removed it. Any other ktest
//! (whatever database it uses, or after the database was deleted) and the
//! reaper take the same lock before they touch a per-VM directory, so the
//! id is decided by the directory, not by a database anyone could write.
//!
//! Lock files stay: removing one would let two ktests lock two different
//! files of the same name. Each holds its owner's pid, for messages.
//! Directories of older ktests (`DIR/.ktest/vm`, locked by
//! `DIR/.ktest/vm.lock`) follow the same rule: a per-VM directory's lock
//! is its path with `.lock` appended.

use crate::error::{Context, Error, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where the per-VM directories go in `.ktest/`.
pub const VMS_DIR: &str = "vms";

/// The lock on one VM's directory; dropping it releases it.
pub struct VmLock {
    _file: Flock<File>,
}

/// The lock file of a per-VM directory: its path with `.lock` appended.
pub fn lock_path(vm_dir: &Path) -> PathBuf {
    let mut p = vm_dir.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Opens (creating, 0600) a lock file without following a symlink, and
/// close-on-exec so qemu and other children never hold the lock.
fn open(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .context(|| format!("opening {}", path.display()))
}

/// Takes the lock of the per-VM directory `vm_dir` if nobody holds it;
/// `None` if someone does.
pub fn try_lock(vm_dir: &Path) -> Result<Option<VmLock>> {
    let path = lock_path(vm_dir);
    match Flock::lock(open(&path)?, FlockArg::LockExclusiveNonblock) {
        Ok(file) => Ok(Some(VmLock { _file: file })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::infra(format!("locking {}: {e}", path.display()))),
    }
}

/// A VM's id and directory, claimed: the lock is held while it lives.
pub struct Claim {
    /// The id (`1`, `2`, ...).
    pub id: String,
    /// `DIR/.ktest/vms/ID`, not created yet.
    pub vm_dir: PathBuf,
    /// Held until the VM's directory is gone again.
    _lock: VmLock,
}

/// Claims the lowest free VM id of the directory whose `.ktest/` is
/// `ktest_dir`, records this process's pid in its lock file, and returns
/// it with its per-VM directory's path. A directory left there by a ktest
/// that died belongs to no live VM (its lock is free): the caller replaces
/// it.
pub fn claim(ktest_dir: &Path) -> Result<Claim> {
    let vms = ktest_dir.join(VMS_DIR);
    crate::launch::create_private_dir(&vms)?;
    for n in 1..=crate::state::MAX_SLOTS {
        let vm_dir = vms.join(n.to_string());
        if let Some(lock) = try_lock(&vm_dir)? {
            let path = lock_path(&vm_dir);
            let mut file = open(&path)?;
            file.set_len(0)
                .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
                .context(|| format!("writing {}", path.display()))?;
            return Ok(Claim {
                id: n.to_string(),
                vm_dir,
                _lock: lock,
            });
        }
    }
    Err(Error::infra(format!(
        "all {} VM ids of {} are taken; see ktest status",
        crate::state::MAX_SLOTS,
        ktest_dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_lowest_free_and_freed_when_dropped() {
        let t = tempfile::tempdir().unwrap();
        // flock locks belong to the open file, so claims in one process
        // conflict just as claims of two processes would.
        let one = claim(t.path()).unwrap();
        let two = claim(t.path()).unwrap();
        assert_eq!((one.id.as_str(), two.id.as_str()), ("1", "2"));
        assert_eq!(two.vm_dir, t.path().join("vms/2"));
        assert!(try_lock(&one.vm_dir).unwrap().is_none());
        let pid = std::fs::read_to_string(t.path().join("vms/1.lock")).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        drop(one);
        assert_eq!(claim(t.path()).unwrap().id, "1");
        drop(two);
    }

    #[test]
    fn lock_files_are_private_and_not_followed_symlinks() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        drop(claim(t.path()).unwrap());
        let mode = std::fs::metadata(t.path().join("vms/1.lock"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let u = tempfile::tempdir().unwrap();
        let target = u.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, u.path().join("vm.lock")).unwrap();
        assert!(try_lock(&u.path().join("vm")).is_err());
        assert!(!target.exists());
        assert_eq!(
            lock_path(Path::new("/d/.ktest/vm")),
            Path::new("/d/.ktest/vm.lock")
        );
    }
}
