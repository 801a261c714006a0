//! Whether well-formed values can work on this host: memory the host has,
//! PCI slots qemu's machine has, file sizes the file system takes. The
//! checks are pure functions of the values and host facts; the facts are
//! read by the small functions at the end. A misfit is a usage error (exit
//! 2) found before any VM, slot or file exists, not a qemu failure after.

use crate::error::Error;
use crate::values::{show_size, DiskSize, Memory};
use std::fmt;
use std::path::{Path, PathBuf};

/// PCI slots for devices in qemu's `pc` machine: bus 0 has 32, slot 0 is
/// the host bridge and slot 1 the PIIX3. Each virtio device takes one.
pub const PCI_DEVICE_SLOTS: usize = 30;

/// A value this host cannot give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misfit {
    /// More guest memory than the host has.
    Memory {
        /// What asked for it: `--mem`, "the test's MEM", ...
        from: String,
        /// What was asked.
        wanted: Memory,
        /// The host's MemTotal in bytes.
        host: u64,
    },
    /// More scratch disks than free PCI slots.
    Slots {
        /// What declared them: "TEST: SCRATCH".
        from: String,
        /// Scratch disks declared.
        scratch: usize,
        /// Slots the plan's other devices take.
        others: usize,
    },
    /// A scratch disk larger than the file system takes a file.
    FileSize {
        /// What declared it: "TEST: SCRATCH".
        from: String,
        /// The size declared.
        size: DiskSize,
        /// The largest file the file system takes, in bytes.
        limit: u64,
        /// Where the scratch files go.
        dir: PathBuf,
    },
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misfit::Memory { from, wanted, host } => write!(
                f,
                "{from}: {wanted} is more than this host's memory (MemTotal {})\n  ask for less memory",
                about(*host)
            ),
            Misfit::Slots {
                from,
                scratch,
                others,
            } => write!(
                f,
                "{from}: {scratch} scratch disks do not fit: qemu's pc machine has {PCI_DEVICE_SLOTS} PCI slots and the VM's other devices take {others}\n  declare at most {} scratch disks",
                PCI_DEVICE_SLOTS.saturating_sub(*others)
            ),
            Misfit::FileSize {
                from,
                size,
                limit,
                dir,
            } => write!(
                f,
                "{from}: {size} is larger than the file system holding {} takes a file (at most {}, about {})\n  declare a smaller scratch disk, or run from a directory on another file system",
                dir.display(),
                show_size(*limit),
                about(*limit)
            ),
        }
    }
}

/// A size to one decimal in its largest unit: `16.0T`.
fn about(bytes: u64) -> String {
    let shift = [60, 50, 40, 30, 20, 10]
        .into_iter()
        .find(|s| bytes >> s > 0)
        .unwrap_or(0);
    let unit = show_size(1 << shift);
    let unit = unit.trim_start_matches('1');
    format!("{:.1}{unit}", bytes as f64 / (1u64 << shift) as f64)
}

impl From<Misfit> for Error {
    fn from(m: Misfit) -> Self {
        Error::usage(m.to_string())
    }
}

/// Refuses more memory than the host has (`host`: MemTotal in bytes, when
/// known).
pub fn memory(wanted: Memory, from: &str, host: Option<u64>) -> Result<(), Misfit> {
    match host {
        Some(host) if wanted.bytes() > host => Err(Misfit::Memory {
            from: from.to_string(),
            wanted,
            host,
        }),
        _ => Ok(()),
    }
}

/// Refuses more scratch disks than the PCI slots the plan's `others`
/// devices leave.
pub fn slots(scratch: usize, from: &str, others: usize) -> Result<(), Misfit> {
    if scratch.saturating_add(others) > PCI_DEVICE_SLOTS {
        return Err(Misfit::Slots {
            from: from.to_string(),
            scratch,
            others,
        });
    }
    Ok(())
}

/// Refuses a scratch size above `limit`, the largest file the file system
/// under `dir` takes (`None`: no limit found).
pub fn scratch_size(
    sizes: &[DiskSize],
    from: &str,
    limit: Option<u64>,
    dir: &Path,
) -> Result<(), Misfit> {
    let too_big = sizes.iter().find(|s| limit.is_some_and(|l| s.bytes() > l));
    match (too_big, limit) {
        (Some(&size), Some(limit)) => Err(Misfit::FileSize {
            from: from.to_string(),
            size,
            limit,
            dir: dir.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// MemTotal from the text of /proc/meminfo, in bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    meminfo_field(meminfo, "MemTotal:")
}

/// A `kB` field of /proc/meminfo's text, in bytes.
fn meminfo_field(meminfo: &str, field: &str) -> Option<u64> {
    let kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    kb.checked_mul(1024)
}

/// This host's MemTotal in bytes, if /proc/meminfo says.
pub fn mem_total() -> Option<u64> {
    parse_mem_total(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// The memory this host can give new programs now (MemAvailable), in
/// bytes, if /proc/meminfo says.
pub fn mem_available() -> Option<u64> {
    meminfo_field(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "MemAvailable:",
    )
}

/// Sizes `file` to `bytes` (sparse). When the file system refuses the size
/// (EFBIG, or EINVAL as some do), returns the largest size it takes, found
/// by bisection on the same file; other failures are I/O errors.
pub fn set_len(file: &std::fs::File, bytes: u64) -> std::io::Result<Option<u64>> {
    let refused = |r: std::io::Result<()>| match r {
        Ok(()) => Ok(false),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EFBIG | libc::EINVAL)) => Ok(true),
        Err(e) => Err(e),
    };
    if !refused(file.set_len(bytes))? {
        return Ok(None);
    }
    // Invariant: `ok` is taken, `bad` refused.
    let (mut ok, mut bad) = (0, bytes);
    while bad - ok > 1 {
        let mid = ok + (bad - ok) / 2;
        if refused(file.set_len(mid))? {
            bad = mid;
        } else {
            ok = mid;
        }
    }
    Ok(Some(ok))
}

/// The largest file the file system under `dir` takes if it is less than
/// `bytes`; `None` if it takes `bytes`, or if ktest cannot tell (no
/// anonymous files there: `populate` still catches it). Probes with an
/// unnamed `O_TMPFILE`, so nothing is left behind whatever happens.
pub fn file_limit(dir: &Path, bytes: u64) -> Option<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = dir.ancestors().find(|d| d.is_dir())?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(dir)
        .ok()?;
    set_len(&file, bytes).ok().flatten()
}

/// Checks memory against this host's (`mem_from` says who asked for it)
/// and the scratch sizes against the file system under `vm_dir`, where the
/// scratch files will be, reading those facts here.
pub fn check(
    (mem, mem_from): (Memory, &str),
    (scratch, scratch_from): (&[DiskSize], &str),
    vm_dir: &Path,
) -> Result<(), Misfit> {
    memory(mem, mem_from, mem_total())?;
    let largest = scratch.iter().max();
    let limit = largest.and_then(|l| file_limit(vm_dir, l.bytes()));
    scratch_size(scratch, scratch_from, limit, vm_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(t: &str) -> Memory {
        t.parse().unwrap()
    }

    #[test]
    fn memory_up_to_the_hosts() {
        let host = Some(4 << 30);
        assert_eq!(memory(mem("4G"), "--mem", host), Ok(()));
        assert_eq!(memory(mem("64G"), "--mem", None), Ok(()));
        let e = memory(mem("4097M"), "t: MEM", host).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t: MEM: 4097M is more than this host's memory (MemTotal 4.0G)\n  ask for less memory"
        );
    }

    #[test]
    fn scratch_disks_up_to_the_free_slots() {
        assert_eq!(slots(27, "t: SCRATCH", 3), Ok(()));
        assert_eq!(slots(0, "t: SCRATCH", 30), Ok(()));
        let e = slots(28, "t: SCRATCH", 3).unwrap_err().to_string();
        assert!(
            e.starts_with("t: SCRATCH: 28 scratch disks do not fit"),
            "{e}"
        );
        assert!(e.contains("declare at most 27 scratch disks"), "{e}");
        assert!(slots(usize::MAX, "t: SCRATCH", 3).is_err());
    }

    #[test]
    fn scratch_sizes_up_to_the_file_systems_limit() {
        let sizes: Vec<DiskSize> = ["1G", "16T"].map(|s| s.parse().unwrap()).to_vec();
        let dir = Path::new("/src");
        let from = "t: SCRATCH";
        assert_eq!(scratch_size(&sizes, from, None, dir), Ok(()));
        assert_eq!(scratch_size(&sizes, from, Some(16 << 40), dir), Ok(()));
        let ext4 = (16 << 40) - 4096;
        let e = scratch_size(&sizes, from, Some(ext4), dir)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t: SCRATCH: 16T is larger than the file system holding /src takes a file (at most 17179869180K, about 16.0T)"),
            "{e}"
        );
    }

    #[test]
    fn mem_total() {
        let info = "MemTotal:       24683452 kB\nMemFree:        20445328 kB\n";
        assert_eq!(parse_mem_total(info), Some(24683452 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: lots kB\n"), None);
    }

    #[test]
    fn a_size_the_file_system_refuses_gives_its_limit() {
        // The unit-test file system may have any limit (ext4: 16T - 4K,
        // tmpfs: 8E - 1); whatever it is, it is found exactly.
        let t = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(t.path().join("f")).unwrap();
        let limit = set_len(&f, i64::MAX as u64)
            .unwrap()
            .unwrap_or(i64::MAX as u64);
        assert!(f.set_len(limit).is_ok());
        if limit < i64::MAX as u64 {
            assert!(f.set_len(limit + 1).is_err());
            assert_eq!(file_limit(t.path(), limit + 1), Some(limit));
        }
        assert_eq!(set_len(&f, 1 << 20).unwrap(), None);
        assert_eq!(file_limit(&t.path().join("not/yet"), 1 << 20), None);
    }
}
