//! The initramfs ktest boots a kernel with when the drivers its guest
//! needs are modules, as in distribution kernels: static busybox, the
//! modules that reach the root (resolved through the kernel's own
//! `modules.dep`, `modules.alias` and `modules.softdep`), and an init
//! (lib/initramfs/init) that loads them, mounts the root, and runs what
//! would have been init without an initramfs. The rest of the kernel's
//! module tree reaches the guest over 9p, for `modprobe` in tests.
//!
//! Archives are cached under `$XDG_CACHE_HOME/ktest/initramfs/`, keyed by
//! everything that goes into them, so the second boot builds nothing.

use crate::error::{Context, Error, Result};
use crate::modules::{self, Load};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The options of the 9p root mount, with and without an initramfs.
pub const ROOTFLAGS: &str = "trans=virtio,version=9p2000.L,cache=loose,msize=262144";

/// The initramfs's PID 1, with `@…@` for what the kernel command line of
/// a VM without an initramfs has (src/plan.rs).
const INIT: &str = include_str!("../lib/initramfs/init");

/// [`INIT`] as it goes into the archive.
fn init_script() -> String {
    INIT.replace("@ROOTFLAGS@", ROOTFLAGS)
        .replace("@GUEST_INIT_ARG@", crate::plan::names::GUEST_INIT_ARG)
        .replace("@IMAGE_INIT@", &crate::plan::image_init())
}

/// How the archive is compressed: what the kernel can unpack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip, which nearly every kernel reads (`CONFIG_RD_GZIP`).
    Gzip,
    /// A plain cpio archive: every kernel with initramfs support reads it.
    None,
}

impl Compression {
    /// gzip when the config allows it or is unknown (distribution kernels
    /// all read gzip), else none.
    pub fn for_config(config: Option<&HashMap<String, String>>) -> Compression {
        match config.map(|c| c.get("RD_GZIP").map(String::as_str)) {
            Some(Some("y")) | None => Compression::Gzip,
            Some(_) => Compression::None,
        }
    }
}

/// Everything an archive holds, named; [`get`] reads the files.
#[derive(Debug, Clone)]
pub struct Contents {
    /// A statically linked busybox (the archive's only program).
    pub busybox: PathBuf,
    /// The module tree the loads are relative to.
    pub tree: PathBuf,
    /// The modules to load, in order.
    pub loads: Vec<Load>,
    /// The kernel's release, when known: every module must be built for it.
    pub release: Option<String>,
    /// How the archive is compressed.
    pub compression: Compression,
}

/// A file's identity for the cache key: path, size, change time, inode.
/// A rebuilt or replaced file changes at least one of them.
fn identity(path: &Path) -> Result<String> {
    let m = std::fs::metadata(path).context(|| format!("reading {}", path.display()))?;
    Ok(format!(
        "{} {} {}.{} {}",
        path.display(),
        m.size(),
        m.ctime(),
        m.ctime_nsec(),
        m.ino()
    ))
}

/// The cache key: a hash of the init, the flags, the compression, the
/// release and the identity of every file that goes in.
pub fn key(c: &Contents) -> Result<String> {
    let mut text = format!(
        "{}\n{:?}\n{:?}\n{}\n",
        init_script(),
        c.compression,
        c.release,
        identity(&c.busybox)?
    );
    for l in &c.loads {
        text.push_str(&format!(
            "{} {}\n",
            l.optional,
            identity(&c.tree.join(&l.path))?
        ));
    }
    Ok(format!("{:016x}", crate::build::fnv1a64(text.as_bytes())))
}

/// Where archives are cached: `$XDG_CACHE_HOME/ktest/initramfs`, else
/// `~/.cache/ktest/initramfs`, else `/tmp/ktest-UID/cache/initramfs`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/ktest-{}/cache", crate::state::euid())));
    base.join("ktest").join("initramfs")
}

/// How many archives the cache keeps: the most recently used.
const KEEP: usize = 16;

/// The archive for `c`: from the cache, or built into it. The cache
/// directory is the user's own, 0700 (checked: whoever could write an
/// archive there would run code as root in every guest).
pub fn get(c: &Contents, cache: &Path) -> Result<PathBuf> {
    crate::launch::create_private_dir(cache)?;
    let suffix = match c.compression {
        Compression::Gzip => "cpio.gz",
        Compression::None => "cpio",
    };
    let path = cache.join(format!("{}.{suffix}", key(c)?));
    if std::fs::symlink_metadata(&path)
        .is_ok_and(|m| m.is_file() && m.uid() == crate::state::euid())
    {
        // Used now: the pruning keeps the most recently used.
        let _ = std::fs::File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        return Ok(path);
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".building-")
        .tempfile_in(cache)
        .context(|| format!("creating a file in {}", cache.display()))?;
    let archive = archive(c)?;
    let bytes = match c.compression {
        Compression::None => archive,
        Compression::Gzip => {
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&archive)
                .and_then(|_| z.finish())
                .context(|| "compressing the initramfs".into())?
        }
    };
    tmp.write_all(&bytes)
        .context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(&path)
        .map_err(|e| Error::infra(format!("{}: {}", path.display(), e.error)))?;
    prune(cache, KEEP);
    Ok(path)
}

/// Removes all but the `keep` most recently used archives.
fn prune(cache: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    let mut archives: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            !n.starts_with('.') && n.contains(".cpio")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    archives.sort();
    let excess = archives.len().saturating_sub(keep);
    for (_, p) in archives.into_iter().take(excess) {
        let _ = std::fs::remove_file(p);
    }
}

/// A module's bytes, uncompressed: busybox's insmod takes plain `.ko`.
fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".ko.xz") {
        "xz"
    } else if name.ends_with(".ko.zst") {
        "zstd"
    } else if name.ends_with(".ko.gz") {
        "gzip"
    } else {
        return std::fs::read(path).context(|| format!("reading {}", path.display()));
    };
    let out = std::process::Command::new(tool)
        .args(["-dc", "--"])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            Error::infra(format!(
                "{} is compressed, and running {tool} to uncompress it failed: {e}\n  install {tool}",
                path.display()
            ))
        })?;
    if !out.status.success() {
        return Err(Error::infra(format!(
            "{tool} -dc {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// The uncompressed cpio (newc) archive.
pub fn archive(c: &Contents) -> Result<Vec<u8>> {
    let mut files: Vec<(String, u32, Vec<u8>)> = Vec::new();
    let mut list = String::new();
    for l in &c.loads {
        let src = c.tree.join(&l.path);
        let bytes = module_bytes(&src)?;
        if let (Some(want), Some(have)) = (&c.release, modules::vermagic_release(&bytes)) {
            if *want != have {
                return Err(Error::usage(format!(
                    "{} is built for kernel {have}, and the kernel is {want}\n  give --modules the kernel's own module tree",
                    src.display()
                )));
            }
        }
        let name = format!("{}.ko", modules::name_of(&l.path));
        list.push_str(&format!("{}{name}\n", if l.optional { "?" } else { "" }));
        files.push((format!("ktest/modules/{name}"), 0o100644, bytes));
    }
    let busybox =
        std::fs::read(&c.busybox).context(|| format!("reading {}", c.busybox.display()))?;
    files.push(("bin/busybox".into(), 0o100755, busybox));
    files.push(("init".into(), 0o100755, init_script().into_bytes()));
    files.push(("ktest/load".into(), 0o100644, list.into_bytes()));

    let mut w = Vec::new();
    let mut ino = 1;
    let mut entry =
        |w: &mut Vec<u8>, name: &str, mode: u32, data: &[u8], rdev: Option<(u32, u32)>| {
            let mut b = cpio::newc::Builder::new(name)
                .ino(ino)
                .mode(mode)
                .nlink(if mode & 0o170000 == 0o040000 { 2 } else { 1 });
            if let Some((major, minor)) = rdev {
                b = b.rdev_major(major).rdev_minor(minor);
            }
            ino += 1;
            let mut f = b.write(w, data.len() as u32);
            f.write_all(data)?;
            f.finish().map(|_| ())
        };
    let io = |e: std::io::Error| Error::infra(format!("writing the initramfs: {e}"));
    for dir in ["dev", "bin", "newroot", "ktest", "ktest/modules"] {
        entry(&mut w, dir, 0o040755, &[], None).map_err(io)?;
    }
    // The kernel opens /dev/console for init before anything mounts /dev:
    // without the node, init has no stdout.
    entry(&mut w, "dev/console", 0o020600, &[], Some((5, 1))).map_err(io)?;
    for (name, mode, data) in &files {
        entry(&mut w, name, *mode, data, None).map_err(io)?;
    }
    cpio::newc::trailer(&mut w).map_err(io)?;
    Ok(w)
}

/// Whether an ELF file has no program interpreter: it runs with no
/// libraries, as busybox must in an initramfs that has none.
pub fn is_static_elf(head: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| {
        head.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |o: usize| {
        head.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
    };
    // ELF64, little-endian: what busybox is on the hosts ktest boots from.
    if head.get(0..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        head.get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != PT_INTERP)
    })
}

/// The static busybox for a guest of `arch`: `$KTEST_BUSYBOX`, else
/// `busybox` in PATH (which is the host's architecture's).
pub fn find_busybox(arch: &crate::arch::Arch) -> Result<PathBuf> {
    let how =
        "install a static busybox (Debian: apt-get install busybox-static) or set KTEST_BUSYBOX";
    let path = match std::env::var_os("KTEST_BUSYBOX") {
        Some(p) => PathBuf::from(p),
        None => which::which("busybox").map_err(|_| {
            Error::infra(format!(
                "busybox not found in PATH; ktest needs it for the initramfs that loads this kernel's modules\n  {how}"
            ))
        })?,
    };
    let mut head = vec![0u8; 4096];
    let n = std::fs::File::open(&path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .context(|| format!("reading {}", path.display()))?;
    head.truncate(n);
    if !is_static_elf(&head) {
        return Err(Error::infra(format!(
            "{} is not a statically linked program, and the initramfs has no libraries\n  {how}",
            path.display()
        )));
    }
    match crate::arch::of_elf(&head) {
        Some(a) if a == arch => Ok(path),
        found => Err(Error::infra(format!(
            "{} is {} program, and this {} kernel's initramfs needs an {} busybox\n  set KTEST_BUSYBOX to a static {} busybox (Debian: busybox-static:{} from the archive)",
            path.display(),
            found.map_or("another architecture's".to_string(), |a| format!("an {}", a.name)),
            arch.name,
            arch.name,
            arch.name,
            arch.debian
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> HashMap<String, String> {
        crate::kernel::parse_config(text)
    }

    #[test]
    fn compression_follows_the_config() {
        assert_eq!(Compression::for_config(None), Compression::Gzip);
        assert_eq!(
            Compression::for_config(Some(&config("CONFIG_RD_GZIP=y\n"))),
            Compression::Gzip
        );
        assert_eq!(
            Compression::for_config(Some(&config("CONFIG_RD_XZ=y\n"))),
            Compression::None
        );
    }

    #[test]
    fn static_elf() {
        let mut elf = vec![0u8; 0x200];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        elf[0x40..0x44].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        elf[0x78..0x7c].copy_from_slice(&1u32.to_le_bytes());
        assert!(is_static_elf(&elf));
        elf[0x78..0x7c].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        assert!(!is_static_elf(&elf));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }

    /// A module tree with two fake modules, one of them gzip-compressed.
    fn tree(dir: &Path) -> Contents {
        let t = dir.join("lib/modules/6.1.0-9-amd64");
        std::fs::create_dir_all(t.join("kernel")).unwrap();
        std::fs::write(t.join("kernel/a.ko"), b"\0vermagic=6.1.0-9-amd64 SMP\0").unwrap();
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(b"module-b").unwrap();
        std::fs::write(t.join("kernel/b-c.ko.gz"), z.finish().unwrap()).unwrap();
        let busybox = dir.join("busybox");
        std::fs::write(&busybox, b"busybox").unwrap();
        Contents {
            busybox,
            tree: t,
            loads: vec![
                Load {
                    path: "kernel/b-c.ko.gz".into(),
                    optional: true,
                },
                Load {
                    path: "kernel/a.ko".into(),
                    optional: false,
                },
            ],
            release: Some("6.1.0-9-amd64".into()),
            compression: Compression::Gzip,
        }
    }

    /// An archive entry: mode, device number, data.
    type Entry = (u32, (u32, u32), Vec<u8>);

    /// The archive's entries by name.
    fn entries(archive: &[u8]) -> HashMap<String, Entry> {
        let mut out = HashMap::new();
        let mut r = archive;
        loop {
            let mut reader = cpio::newc::Reader::new(r).unwrap();
            if reader.entry().is_trailer() {
                return out;
            }
            let e = reader.entry();
            let (name, mode, rdev) = (
                e.name().to_string(),
                e.mode(),
                (e.rdev_major(), e.rdev_minor()),
            );
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut data).unwrap();
            out.insert(name, (mode, rdev, data));
            r = reader.finish().unwrap();
        }
    }

    #[test]
    fn the_archive_holds_init_busybox_console_and_modules_in_order() {
        let t = tempfile::tempdir().unwrap();
        let c = tree(t.path());
        let e = entries(&archive(&c).unwrap());
        assert_eq!(e["dev/console"].0, 0o020600);
        assert_eq!(e["dev/console"].1, (5, 1));
        assert_eq!(e["init"].0, 0o100755);
        let init = String::from_utf8(e["init"].2.clone()).unwrap();
        assert!(init.starts_with("#!/bin/busybox sh\n"));
        assert!(
            init.contains(&format!("-o ro,{ROOTFLAGS} /dev/root /newroot")),
            "{init}"
        );
        assert!(
            init.contains("\"$KTEST_INIT\" --ktest-guest-init\n"),
            "{init}"
        );
        assert!(
            init.contains("/bin/sh -c \"mkdir -p /run/ktest && mount"),
            "{init}"
        );
        assert!(
            !init.contains("@ROOTFLAGS@") && !init.contains("_INIT@"),
            "every placeholder is filled: {init}"
        );
        assert_eq!(e["bin/busybox"].2, b"busybox");
        assert_eq!(e["ktest/load"].2, b"?b_c.ko\na.ko\n");
        assert_eq!(e["ktest/modules/b_c.ko"].2, b"module-b", "uncompressed");
        assert!(e.contains_key("newroot"));
    }

    #[test]
    fn modules_of_another_release_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let mut c = tree(t.path());
        c.release = Some("6.1.0-10-amd64".into());
        let e = archive(&c).unwrap_err();
        assert!(
            e.message
                .contains("built for kernel 6.1.0-9-amd64, and the kernel is 6.1.0-10-amd64"),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_cache_builds_once_and_keys_by_the_files() {
        let t = tempfile::tempdir().unwrap();
        let c = tree(t.path());
        let cache = t.path().join("cache");
        let a = get(&c, &cache).unwrap();
        let bytes = std::fs::read(&a).unwrap();
        assert_eq!(&bytes[..2], b"\x1f\x8b", "gzip");
        let again = get(&c, &cache).unwrap();
        assert_eq!(a, again);
        assert_eq!(std::fs::metadata(&cache).unwrap().mode() & 0o777, 0o700);
        // A module rebuilt (new inode) is another archive.
        let m = c.tree.join("kernel/a.ko");
        std::fs::remove_file(&m).unwrap();
        std::fs::write(&m, b"\0vermagic=6.1.0-9-amd64 SMP\0 new").unwrap();
        let b = get(&c, &cache).unwrap();
        assert_ne!(a, b);
        let mut plain = c.clone();
        plain.compression = Compression::None;
        let p = get(&plain, &cache).unwrap();
        assert!(p.to_string_lossy().ends_with(".cpio"));
        assert!(entries(&std::fs::read(&p).unwrap()).contains_key("init"));
        prune(&cache, 1);
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
    }
}
