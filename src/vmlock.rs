//! One VM per directory, enforced on the directory itself: the ktest that
//! owns `DIR/.ktest/vm` holds an exclusive `flock` on `DIR/.ktest/vm.lock`
//! from before it touches `vm/` until after it removed it. Any other ktest
//! (whatever database it uses, or after the database was deleted) and the
//! reaper must take the same lock before they touch `vm/`.
//!
//! The lock file stays: removing it would let two ktests lock two different
//! files of the same name. It holds the owner's pid, for the refusal message.

use crate::error::{Code, Context, Error, Result};
use crate::procinfo;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The lock file's name in `.ktest/`.
pub const LOCK_FILE: &str = "vm.lock";

/// How long `acquire` waits for a lock held by a process that is not a
/// live VM owner (a reaper removing a dead VM's files, or an owner that
/// has not written its pid yet).
const SETTLE: Duration = Duration::from_secs(2);

/// The lock on a directory's VM; dropping it releases it.
pub struct VmLock {
    _file: Flock<File>,
}

fn lock_path(ktest_dir: &Path) -> PathBuf {
    ktest_dir.join(LOCK_FILE)
}

/// Opens (creating, 0600) the lock file without following a symlink, and
/// close-on-exec so qemu and other children never hold the lock.
fn open(ktest_dir: &Path) -> Result<File> {
    let path = lock_path(ktest_dir);
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .context(|| format!("opening {}", path.display()))
}

/// Takes the lock if nobody holds it; `None` if someone does.
pub fn try_lock(ktest_dir: &Path) -> Result<Option<VmLock>> {
    let path = lock_path(ktest_dir);
    match Flock::lock(open(ktest_dir)?, FlockArg::LockExclusiveNonblock) {
        Ok(file) => Ok(Some(VmLock { _file: file })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::infra(format!("locking {}: {e}", path.display()))),
    }
}

/// The pid the lock file names, if it names one.
fn holder(ktest_dir: &Path) -> Option<u32> {
    let mut text = String::new();
    open(ktest_dir).ok()?.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// The refusal of a second VM from one directory (exit 2).
pub fn busy_error(pid: Option<u32>) -> Error {
    let who = pid.map_or_else(|| "another ktest".to_string(), |p| format!("ktest pid {p}"));
    Error::usage(format!(
        "a VM from this directory is running ({who}); stop it first (ktest stop) or run from another directory"
    ))
}

/// Takes the lock for this process's VM and records its pid in it, or
/// refuses because a VM from this directory is running.
pub fn acquire(ktest_dir: &Path) -> Result<VmLock> {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(lock) = try_lock(ktest_dir)? {
            let mut file = open(ktest_dir)?;
            let path = lock_path(ktest_dir);
            file.set_len(0)
                .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
                .context(|| format!("writing {}", path.display()))?;
            return Ok(lock);
        }
        let pid = holder(ktest_dir);
        // A holder that is not a live process is a reaper or an owner
        // about to write its pid: both let go within moments.
        if pid.is_some_and(|p| procinfo::start_time(p).is_some()) || Instant::now() >= deadline {
            return Err(busy_error(pid));
        }
        if crate::signals::interrupted() {
            return Err(Error::new(Code::Interrupted, "interrupted"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_owners_pid() {
        let t = tempfile::tempdir().unwrap();
        let lock = acquire(t.path()).unwrap();
        // flock locks belong to the open file, so a second open in this
        // process conflicts just as another process would.
        assert!(try_lock(t.path()).unwrap().is_none());
        let e = acquire(t.path()).err().unwrap();
        assert_eq!(e.code, Code::Usage);
        assert!(
            e.message.contains(&format!(
                "a VM from this directory is running (ktest pid {})",
                std::process::id()
            )),
            "{}",
            e.message
        );
        drop(lock);
        assert!(try_lock(t.path()).unwrap().is_some());
    }

    #[test]
    fn lock_file_is_private_and_not_a_followed_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        drop(acquire(t.path()).unwrap());
        let mode = std::fs::metadata(t.path().join(LOCK_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let u = tempfile::tempdir().unwrap();
        let target = u.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, u.path().join(LOCK_FILE)).unwrap();
        assert!(try_lock(u.path()).is_err());
        assert!(!target.exists());
    }
}
