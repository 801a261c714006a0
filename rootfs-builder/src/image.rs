//! The image file: recognizing what is already at PATH, building the ext4
//! image from a directory (no loop mount), converting to and from qcow2.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::cli::Format;
use crate::error::{build, Result};
use crate::exec::Runner;
use crate::marker::{Marker, MARKER_PATH};
use crate::size::MIB;

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// An ext2/3/4 file system (superblock magic 0xEF53 at byte 1080).
    Ext4,
    /// A qcow2 image ("QFI\xfb" at byte 0).
    Qcow2,
    /// Anything else.
    Other,
}

/// Enough of a file's start for [`sniff`].
pub const SNIFF_LEN: usize = 1082;

/// Recognizes ext4 and qcow2 from a file's first [`SNIFF_LEN`] bytes.
pub fn sniff(head: &[u8]) -> Sniff {
    if head.starts_with(b"QFI\xfb") {
        Sniff::Qcow2
    } else if head.get(1080..1082) == Some(&[0x53, 0xEF]) {
        Sniff::Ext4
    } else {
        Sniff::Other
    }
}

/// What is at the image path before we start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    /// Nothing.
    Missing,
    /// Something that is not a regular file (directory, device, symlink...).
    NotRegular(&'static str),
    /// A raw ext4 image carrying ktest's marker.
    KtestImage(Marker),
    /// An ext4 image without (readable) marker.
    ForeignExt4,
    /// A qcow2 image; its marker cannot be read without converting it.
    Qcow2,
    /// Some other regular file.
    OtherFile,
}

/// Looks at what is at `path` without changing it.
pub fn classify(path: &Path, runner: &mut Runner) -> Result<Existing> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Missing),
        Err(e) => return Err(build(format!("cannot stat {}: {e}", path.display()))),
    };
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "a directory"
        } else if ft.is_symlink() {
            "a symlink"
        } else {
            "not a regular file"
        };
        return Ok(Existing::NotRegular(kind));
    }
    let mut head = Vec::with_capacity(SNIFF_LEN);
    fs::File::open(path)
        .and_then(|f| f.take(SNIFF_LEN as u64).read_to_end(&mut head))
        .map_err(|e| build(format!("cannot read {}: {e}", path.display())))?;
    Ok(match sniff(&head) {
        Sniff::Qcow2 => Existing::Qcow2,
        Sniff::Other => Existing::OtherFile,
        Sniff::Ext4 => match read_marker(path, runner)? {
            Some(marker) => Existing::KtestImage(marker),
            None => Existing::ForeignExt4,
        },
    })
}

/// Reads a file out of a raw ext4 image with debugfs; `None` if absent.
pub fn read_file(image: &Path, path: &str, runner: &mut Runner) -> Result<Option<Vec<u8>>> {
    let mut cmd = Command::new("debugfs");
    cmd.arg("-R").arg(format!("cat {path}")).arg(image);
    let out = runner.capture(&format!("debugfs cat {path}"), &mut cmd)?;
    // debugfs exits 0 even when the file is missing and says so on stderr;
    // an empty answer is "missing" for every file we ask about but
    // /etc/machine-id, which nobody reads back.
    Ok(if out.is_empty() { None } else { Some(out) })
}

/// The ktest marker of a raw ext4 image, if it has a valid one.
pub fn read_marker(image: &Path, runner: &mut Runner) -> Result<Option<Marker>> {
    let text = read_file(image, MARKER_PATH, runner)?;
    Ok(text.and_then(|t| Marker::parse(&String::from_utf8_lossy(&t)).ok()))
}

/// mkfs.ext4's arguments to fill `image` from `root`, `size` bytes.
/// `prezeroed`: the target is a new sparse file, so mkfs may skip writing
/// zeros to the journal and inode tables (64 MiB of a 4G image).
pub fn mkfs_argv(root: &Path, image: &Path, size: u64, prezeroed: bool) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec!["-F".into(), "-L".into(), "ktest-root".into()];
    if prezeroed {
        argv.extend(["-E".into(), "assume_storage_prezeroed=1".into()]);
    }
    argv.extend([
        "-d".into(),
        root.into(),
        image.into(),
        format!("{}k", size / 1024).into(),
    ]);
    argv
}

/// Whether a `mke2fs -V` banner is from e2fsprogs 1.47 or later, the first
/// to know `assume_storage_prezeroed` (older ones reject it).
pub fn knows_prezeroed(banner: &str) -> bool {
    let Some(version) = banner
        .split_whitespace()
        .skip_while(|w| *w != "mke2fs")
        .nth(1)
    else {
        return false;
    };
    let mut parts = version.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .unwrap_or(0)
    });
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= (1, 47)
}

/// Creates a sparse file of `size` bytes and makes an ext4 file system in
/// it populated from `root`: no loop device, no mount.
pub fn build_ext4(root: &Path, image: &Path, size: u64, runner: &mut Runner) -> Result<()> {
    let file = fs::File::create(image)
        .map_err(|e| build(format!("cannot create {}: {e}", image.display())))?;
    file.set_len(size)
        .map_err(|e| build(format!("cannot size {}: {e}", image.display())))?;
    drop(file);
    let banner = Command::new("mkfs.ext4")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    let mut cmd = Command::new("mkfs.ext4");
    cmd.args(mkfs_argv(root, image, size, knows_prezeroed(&banner)));
    runner.run("mkfs.ext4", &mut cmd)
}

/// `qemu-img convert` between formats, keeping the output sparse.
pub fn convert(
    src: &Path,
    from: Format,
    dst: &Path,
    to: Format,
    runner: &mut Runner,
) -> Result<()> {
    let name = |f: Format| match f {
        Format::Raw => "raw",
        Format::Qcow2 => "qcow2",
    };
    let mut cmd = Command::new("qemu-img");
    cmd.args(["convert", "-f", name(from), "-O", name(to)])
        .arg(src)
        .arg(dst);
    runner.run("qemu-img convert", &mut cmd)
}

/// Bytes actually allocated on disk for a (sparse) file.
pub fn allocated_bytes(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.blocks() * 512).unwrap_or(0)
}

/// Disk use of a directory tree, counting each hard-linked inode once,
/// without leaving its file system.
pub fn tree_usage(root: &Path) -> std::io::Result<u64> {
    let dev = fs::symlink_metadata(root)?.dev();
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.nlink() > 1 && !meta.is_dir() && !seen.insert(meta.ino()) {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() && meta.dev() == dev {
                stack.push(entry.path());
            }
        }
    }
    Ok(total)
}

/// The smallest file system that holds `tree` bytes comfortably: ext4's
/// metadata (inode tables, journal) plus headroom so tests have space.
pub fn minimum_size_for(tree: u64) -> u64 {
    let needed = tree + tree / 4 + 128 * MIB;
    needed.div_ceil(MIB) * MIB
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::GIB;

    #[test]
    fn sniffs_ext4_and_qcow2() {
        let mut ext4 = vec![0u8; SNIFF_LEN];
        ext4[1080] = 0x53;
        ext4[1081] = 0xEF;
        assert_eq!(sniff(&ext4), Sniff::Ext4);
        assert_eq!(sniff(b"QFI\xfb\0\0\0\x03"), Sniff::Qcow2);
        assert_eq!(sniff(b"hello"), Sniff::Other);
        assert_eq!(sniff(&vec![0u8; SNIFF_LEN]), Sniff::Other);
    }

    #[test]
    fn mkfs_argv_populates_from_the_directory() {
        let argv = |prezeroed| -> Vec<String> {
            mkfs_argv(
                Path::new("/w/root"),
                Path::new("/w/img"),
                4 * GIB,
                prezeroed,
            )
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
        };
        let plain = [
            "-F",
            "-L",
            "ktest-root",
            "-d",
            "/w/root",
            "/w/img",
            "4194304k",
        ];
        assert_eq!(argv(false), plain);
        assert_eq!(argv(true)[3..5], ["-E", "assume_storage_prezeroed=1"]);
    }

    #[test]
    fn prezeroed_needs_e2fsprogs_1_47() {
        assert!(knows_prezeroed(
            "mke2fs 1.47.0 (5-Feb-2023)\n\tUsing EXT2FS Library version 1.47.0"
        ));
        assert!(knows_prezeroed("mke2fs 1.48-WIP (1-Jan-2027)"));
        assert!(knows_prezeroed("mke2fs 2.0 (x)"));
        assert!(!knows_prezeroed("mke2fs 1.46.2 (28-Feb-2021)"));
        assert!(!knows_prezeroed(""));
    }

    #[test]
    fn minimum_size_leaves_headroom() {
        assert_eq!(minimum_size_for(0), 128 * MIB);
        assert_eq!(minimum_size_for(400 * MIB), 628 * MIB);
        assert!(minimum_size_for(400 * MIB + 1) > 628 * MIB);
    }

    #[test]
    fn tree_usage_counts_hard_links_once() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), vec![1u8; 64 * 1024]).unwrap();
        let one = tree_usage(dir.path()).unwrap();
        fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        assert_eq!(tree_usage(dir.path()).unwrap(), one);
        assert!(one >= 64 * 1024);
    }
}
