//! Choosing the guest's root filesystem: the host's own `/` (over 9p), or a
//! root image made by `create-vm-image`.

use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::plan::{ImageFormat, Root};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where ktest looks for a root image when `--root` is not given, in order
/// (the original ktest's locations): `root` for the host's architecture,
/// `root-ARCH` (Debian's name: `root-arm64`) for another.
pub fn default_candidates(arch: &Arch, home: Option<&Path>) -> Vec<PathBuf> {
    let name = if crate::arch::is_host(arch) {
        "root".to_string()
    } else {
        format!("root-{}", arch.debian)
    };
    let mut v = vec![Path::new("/var/lib/ktest").join(&name)];
    if let Some(h) = home {
        v.push(h.join(".ktest").join(&name));
    }
    v
}

/// Tells a raw ext4 image from a qcow2 one by their magic numbers.
pub fn sniff(header: &[u8]) -> Option<ImageFormat> {
    if header.starts_with(b"QFI\xfb") {
        return Some(ImageFormat::Qcow2);
    }
    // ext2/3/4 superblock magic 0xEF53, little-endian, at byte 1080.
    if header.get(1080..1082) == Some(&[0x53, 0xef]) {
        return Some(ImageFormat::Raw);
    }
    None
}

fn image(path: &Path, shown: &str) -> Result<Root> {
    let mut header = vec![0u8; 2048];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut header))
        .map_err(|e| Error::usage(format!("{shown} {}: {e}", path.display())))?;
    header.truncate(n);
    let format = sniff(&header).ok_or_else(|| {
        Error::usage(format!(
            "{shown} {}: not a root image (neither ext4 nor qcow2); build one with create-vm-image",
            path.display()
        ))
    })?;
    let path = path
        .canonicalize()
        .map_err(|e| Error::usage(format!("{shown} {}: {e}", path.display())))?;
    Ok(Root::Image { path, format })
}

/// The root for a run: `--root host`, `--root PATH`, else the first image
/// found among `candidates`, else the host's root.
pub fn choose(arg: Option<&str>, candidates: &[PathBuf]) -> Result<Root> {
    match arg {
        Some("host") => Ok(Root::Host),
        Some(p) => image(Path::new(p), "--root"),
        None => match candidates.iter().find(|c| c.is_file()) {
            Some(c) => image(c, "default root image"),
            None => Ok(Root::Host),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext4_header() -> Vec<u8> {
        let mut h = vec![0u8; 2048];
        h[1080] = 0x53;
        h[1081] = 0xef;
        h
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(&ext4_header()), Some(ImageFormat::Raw));
        assert_eq!(sniff(b"QFI\xfb\0\0\0\x03"), Some(ImageFormat::Qcow2));
        assert_eq!(sniff(b"#!/bin/sh\n"), None);
        assert_eq!(sniff(&[]), None);
    }

    #[test]
    fn choosing() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("root");
        std::fs::write(&img, ext4_header()).unwrap();
        let junk = t.path().join("junk");
        std::fs::write(&junk, "hello").unwrap();
        let missing = t.path().join("missing");

        assert_eq!(
            choose(Some("host"), std::slice::from_ref(&img)).unwrap(),
            Root::Host
        );
        assert!(matches!(
            choose(Some(img.to_str().unwrap()), &[]).unwrap(),
            Root::Image {
                format: ImageFormat::Raw,
                ..
            }
        ));
        let e = choose(Some(junk.to_str().unwrap()), &[]).unwrap_err();
        assert!(e.message.contains("not a root image"), "{}", e.message);
        assert!(choose(Some(missing.to_str().unwrap()), &[]).is_err());
        // Defaults: the first existing candidate, else the host.
        assert!(matches!(
            choose(None, &[missing.clone(), img.clone()]).unwrap(),
            Root::Image { .. }
        ));
        assert_eq!(choose(None, &[missing]).unwrap(), Root::Host);
        assert_eq!(
            default_candidates(&crate::arch::X86_64, Some(Path::new("/home/u"))),
            vec![
                PathBuf::from("/var/lib/ktest/root"),
                PathBuf::from("/home/u/.ktest/root")
            ]
        );
        // This host is x86_64 (ktest's CI); another architecture's images
        // have their own names.
        assert_eq!(
            default_candidates(&crate::arch::ARM64, None),
            vec![PathBuf::from("/var/lib/ktest/root-arm64")]
        );
    }
}
