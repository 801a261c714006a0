//! The work directory: created next to the image so the final rename is
//! atomic, and always removed, on success, failure, interruption or panic.
//!
//! debootstrap mounts /proc, /sys and sometimes /dev inside the tree it
//! builds and may leave them mounted when it fails or is killed, so removal
//! first unmounts everything under the directory, then deletes without ever
//! descending into another file system: a bind mount of the host's /dev that
//! escaped unmounting must not be emptied.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

use crate::error::{build, usage, Result};

/// Name prefix of work directories, so a leftover one is recognizable.
pub const WORK_PREFIX: &str = ".create-vm-image.";

/// A private directory next to the target, removed when dropped.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    dev: u64,
}

impl WorkDir {
    /// Creates `.create-vm-image.XXXXXX` in `parent` (mode 0700).
    pub fn create_in(parent: &Path) -> Result<Self> {
        let template = parent.join(format!("{WORK_PREFIX}XXXXXX"));
        let path = nix::unistd::mkdtemp(&template).map_err(|e| {
            usage(format!(
                "cannot create a work directory in {}: {e}; is it writable?",
                parent.display()
            ))
        })?;
        let dev = fs::symlink_metadata(&path)
            .map_err(|e| build(format!("cannot stat {}: {e}", path.display())))?
            .dev();
        Ok(WorkDir { path, dev })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unmounts everything below `dir` (which must be inside the work
    /// directory), deepest first.
    pub fn unmount_below(&self, dir: &Path) -> std::result::Result<(), String> {
        let table = fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut failed = Vec::new();
        for mount in mounts_under(&table, dir) {
            // MNT_DETACH: a busy mount is detached now and released when its
            // last user goes away; it no longer pins the tree we delete.
            if let Err(e) = umount2(&mount, MntFlags::MNT_DETACH) {
                failed.push(format!("{} ({e})", mount.display()));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("cannot unmount {}", failed.join(", ")))
        }
    }

    fn remove(&self) -> std::result::Result<(), String> {
        let unmounted = self.unmount_below(&self.path);
        let removed = remove_tree(&self.path, self.dev)
            .map_err(|e| format!("cannot remove {}: {e}", self.path.display()));
        unmounted.and(removed)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(msg) = self.remove() {
            errln!(
                "create-vm-image: warning: {msg}; remove {} by hand",
                self.path.display()
            );
        }
    }
}

/// Mount points at or below `dir` in a /proc/mounts table, deepest first
/// so that nested mounts come off before their parents.
pub fn mounts_under(proc_mounts: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = proc_mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(|field| PathBuf::from(unescape_mount_field(field)))
        .filter(|mount| mount.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Undoes the octal escapes (`\040` for a space, ...) the kernel uses in
/// /proc/mounts.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0')));
        match octal {
            Some(v) if v <= 0xff => {
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Deletes `path` recursively without following symlinks and without
/// entering directories on a device other than `dev` (mount points).
pub fn remove_tree(path: &Path, dev: u64) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    if meta.dev() != dev {
        return Err(io::Error::other(format!(
            "{} is still a mount point; not entering it",
            path.display()
        )));
    }
    let mut first_error = None;
    for entry in fs::read_dir(path)? {
        let result = entry.and_then(|e| remove_tree(&e.path(), dev));
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => fs::remove_dir(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
/dev/vda / ext4 rw 0 0
proc /proc proc rw 0 0
proc /srv/.create-vm-image.ab/root/proc proc rw 0 0
sysfs /srv/.create-vm-image.ab/root/sys sysfs rw 0 0
devpts /srv/.create-vm-image.ab/root/dev/pts devpts rw 0 0
udev /srv/.create-vm-image.ab/root/dev devtmpfs rw 0 0
tmpfs /srv/.create-vm-image.abc/root/proc tmpfs rw 0 0
tmpfs /srv/with\\040space/.create-vm-image.x/root/proc tmpfs rw 0 0
";

    #[test]
    fn finds_mounts_below_a_dir_deepest_first() {
        let found = mounts_under(MOUNTS, Path::new("/srv/.create-vm-image.ab"));
        assert_eq!(found.len(), 4);
        assert_eq!(
            found[0],
            PathBuf::from("/srv/.create-vm-image.ab/root/dev/pts")
        );
        // A sibling whose name merely shares the prefix is not below it.
        assert!(!found
            .iter()
            .any(|p| p.starts_with("/srv/.create-vm-image.abc")));
    }

    #[test]
    fn decodes_escaped_mount_points() {
        let found = mounts_under(MOUNTS, Path::new("/srv/with space"));
        assert_eq!(
            found,
            [PathBuf::from(
                "/srv/with space/.create-vm-image.x/root/proc"
            )]
        );
        assert_eq!(unescape_mount_field("a\\011b\\134"), "a\tb\\");
        assert_eq!(unescape_mount_field("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn work_dir_is_removed_on_drop_without_following_symlinks() {
        let parent = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        let work = WorkDir::create_in(parent.path()).unwrap();
        let path = work.path().to_path_buf();
        assert!(path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(WORK_PREFIX));
        std::fs::create_dir_all(path.join("root/etc")).unwrap();
        std::fs::write(path.join("root/etc/hostname"), "ktest").unwrap();
        std::os::unix::fs::symlink(outside.path(), path.join("root/escape")).unwrap();
        drop(work);
        assert!(!path.exists());
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn refuses_to_enter_another_device() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let err = remove_tree(dir.path(), u64::MAX).unwrap_err();
        assert!(err.to_string().contains("mount point"));
        assert!(dir.path().join("d").exists());
    }
}
