//! The kernel a VM boots, however it was found: a bzImage given with
//! `--kernel`, a kernel build directory, or an unpacked kernel package.

use crate::error::{Error, Result};
use crate::spec::KconfigOption;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A kernel ready to boot, and what ktest knows around it.
#[derive(Debug, Clone, Default)]
pub struct Kernel {
    /// The image qemu boots (`-kernel`).
    pub image: PathBuf,
    /// `vmlinux` with symbols, for gdb, if known.
    pub vmlinux: Option<PathBuf>,
    /// The kernel's `.config`, if known.
    pub config: Option<PathBuf>,
    /// The kernel source tree, if known (for `LREQUIRE`).
    pub source: Option<PathBuf>,
    /// The build directory (`O=`), if the kernel came from one.
    pub build_dir: Option<PathBuf>,
    /// The kernel's module tree (a directory with `modules.dep`, as
    /// `/lib/modules/RELEASE`), shared with the guest, if known.
    pub modules: Option<PathBuf>,
    /// The kernel release (`uname -r` in the guest), if known.
    pub release: Option<String>,
    /// Its architecture, if known (from its header, or what it was built for).
    pub arch: Option<&'static crate::arch::Arch>,
}

/// Where an image may sit inside a directory given with `--kernel`.
const IMAGE_CANDIDATES: &[&str] = &[
    "arch/x86/boot/bzImage",
    "arch/arm64/boot/Image",
    "boot/vmlinuz",
    "vmlinuz",
    "bzImage",
];

fn first_match(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    found.sort();
    found.pop()
}

/// `--kernel host`: the kernel this machine runs.
pub const HOST: &str = "host";

/// Finds the kernel named by `--kernel` (a file, a directory, or `host`),
/// with its module tree: `--modules DIR` if given, else the one beside it.
pub fn from_args(arg: &Path, modules: Option<&Path>) -> Result<Kernel> {
    let mut k = if arg == Path::new(HOST) {
        host_kernel(Path::new("/boot"), &running_release()?)?
    } else {
        from_arg(arg)?
    };
    if let Some(dir) = modules {
        k.modules = Some(
            crate::modules::tree_in(dir, k.release.as_deref()).ok_or_else(|| {
                Error::usage(format!(
                    "--modules {}: no module tree there: neither {0}/modules.dep nor {0}/lib/modules/{}/modules.dep\n  give the directory holding modules.dep (run depmod there if it lacks it)",
                    dir.display(),
                    k.release.as_deref().unwrap_or("RELEASE")
                ))
            })?,
        );
    }
    Ok(k)
}

/// The running kernel's release, `uname -r`.
fn running_release() -> Result<String> {
    let u = nix::sys::utsname::uname().map_err(|e| Error::infra(format!("uname: {e}")))?;
    Ok(u.release().to_string_lossy().into_owned())
}

/// `--kernel host`: `/boot/vmlinuz-RELEASE` of the running release, with
/// its config and `/lib/modules/RELEASE`.
fn host_kernel(boot: &Path, release: &str) -> Result<Kernel> {
    let image = boot.join(format!("vmlinuz-{release}"));
    if !image.exists() {
        return Err(Error::usage(format!(
            "--kernel host: this machine runs {release}, and {} does not exist\n  install the kernel's package (Debian: linux-image-{release}) or give --kernel PATH",
            image.display()
        )));
    }
    from_arg(&image)
}

/// Finds the kernel named by `--kernel` (a file or a directory).
pub fn from_arg(arg: &Path) -> Result<Kernel> {
    let meta = std::fs::metadata(arg).map_err(|e| {
        Error::usage(format!(
            "--kernel {}: {e}; give a bzImage/vmlinuz file, a kernel build directory, or `host`",
            arg.display()
        ))
    })?;
    let arg = arg
        .canonicalize()
        .map_err(|e| Error::infra(format!("{}: {e}", arg.display())))?;
    if meta.is_file() {
        readable(&arg)?;
        return Ok(around_image(arg));
    }
    let image = IMAGE_CANDIDATES
        .iter()
        .map(|c| arg.join(c))
        .find(|p| p.is_file())
        .or_else(|| first_match(&arg.join("boot"), "vmlinuz-"));
    let Some(image) = image else {
        return Err(Error::usage(format!(
            "--kernel {}: no kernel image found there (looked for {}, boot/vmlinuz-*)",
            arg.display(),
            IMAGE_CANDIDATES.join(", ")
        )));
    };
    readable(&image)?;
    let mut k = around_image(image);
    if arg.join("vmlinux").is_file() {
        k.vmlinux = Some(arg.join("vmlinux"));
    }
    if arg.join(".config").is_file() {
        k.config = Some(arg.join(".config"));
    }
    if arg.join("Makefile").is_file() {
        k.build_dir = Some(arg.clone());
        // An O= build directory links back to its source tree.
        k.source = match arg.join("source").canonicalize() {
            Ok(src) => Some(src),
            Err(_) if arg.join("Kconfig").is_file() => Some(arg.clone()),
            Err(_) => None,
        };
    }
    if k.release.is_none() {
        k.release = crate::build::release(&arg);
    }
    if k.modules.is_none() {
        k.modules = k
            .release
            .as_deref()
            .and_then(|r| crate::modules::tree_in(&arg, Some(r)));
    }
    Ok(k)
}

/// Refuses an image qemu could not open, before anything starts (exit 5).
fn readable(image: &Path) -> Result<()> {
    match std::fs::File::open(image) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(Error::infra(format!(
            "cannot read {}: permission denied\n  some distributions (Ubuntu) install kernel images readable by root only: copy it somewhere readable, or make it readable (chmod 0644)",
            image.display()
        ))),
        Err(e) => Err(Error::infra(format!("cannot read {}: {e}", image.display()))),
    }
}

/// What can be found beside a bare image: `/boot/vmlinuz-R` has
/// `/boot/config-R`, and `/lib/modules/R` (or, in an unpacked package,
/// `boot/vmlinuz-R` beside `lib/modules/R`). The release is the image's
/// own (its header), else the file name's.
fn around_image(image: PathBuf) -> Kernel {
    let name = image.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let named = name.strip_prefix("vmlinuz-").map(String::from);
    let head = read_head(&image);
    let mut k = Kernel {
        release: image_release(&head).or_else(|| named.clone()),
        arch: crate::arch::of_image(&head),
        image: image.clone(),
        ..Kernel::default()
    };
    if let (Some(named), Some(dir)) = (named, image.parent()) {
        let config = dir.join(format!("config-{named}"));
        if config.is_file() {
            k.config = Some(config);
        }
    }
    if let (Some(release), Some(root)) = (&k.release, image.parent().and_then(Path::parent)) {
        k.modules = crate::modules::tree_in(root, Some(release));
    }
    k
}

/// The release in an x86 bzImage's setup header: the `kernel_version`
/// field (offset 0x20e) points, from 0x200, at "RELEASE (builder) #1 ...".
/// `None` for anything that is not a bzImage with that field.
pub fn image_release(head: &[u8]) -> Option<String> {
    if head.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let ptr = u16::from_le_bytes([*head.get(0x20e)?, *head.get(0x20f)?]) as usize;
    if ptr == 0 {
        return None;
    }
    let text = head.get(0x200 + ptr..)?;
    let end = text.iter().position(|&b| b == 0 || b == b' ')?;
    let r = std::str::from_utf8(&text[..end]).ok()?;
    (!r.is_empty()).then(|| r.to_string())
}

/// An image's first 64 KiB, where its header (architecture, and an x86
/// bzImage's release string) is; empty if it cannot be read.
fn read_head(image: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut head = Vec::with_capacity(1 << 16);
    if let Ok(f) = std::fs::File::open(image) {
        let _ = f.take(1 << 16).read_to_end(&mut head);
    }
    head
}

/// Parses a kernel `.config` into option name (without `CONFIG_`) → value;
/// options that are "not set" are absent.
pub fn parse_config(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("CONFIG_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// What a kernel's config has of one option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Has {
    /// `=y`.
    Builtin,
    /// `=m`: a module, which the guest must load.
    Module,
    /// Any other value (`CONFIG_HZ=250`).
    Value(String),
    /// Absent or "is not set".
    NotSet,
}

/// What `config` has of option `name` (without `CONFIG_`).
pub fn has(config: &HashMap<String, String>, name: &str) -> Has {
    match config.get(name).map(String::as_str) {
        None => Has::NotSet,
        Some("y") => Has::Builtin,
        Some("m") => Has::Module,
        Some(v) => Has::Value(v.to_string()),
    }
}

/// Why `config` does not satisfy `wanted`, in words for a message.
pub fn unmet_reason(config: &HashMap<String, String>, wanted: &KconfigOption) -> String {
    let name = &wanted.name;
    match (has(config, name), wanted.value.as_deref()) {
        (Has::NotSet, _) => format!("CONFIG_{name} is not set"),
        (Has::Module, Some(_)) => format!("{wanted}: the kernel has it as a module (=m)"),
        (Has::Builtin, Some(_)) => format!("{wanted}: the kernel has it built in (=y)"),
        (Has::Value(v), _) => format!("{wanted}: the kernel has CONFIG_{name}={v}"),
        (_, None) => format!("CONFIG_{name} is not set"),
    }
}

/// The requested options the config does not satisfy. A bare option is
/// satisfied by `y` or `m`; `NAME=VALUE` needs that exact value.
pub fn missing_options<'a>(
    config: &HashMap<String, String>,
    wanted: &'a [KconfigOption],
) -> Vec<&'a KconfigOption> {
    wanted
        .iter()
        .filter(|o| match (config.get(&o.name), &o.value) {
            (None, Some(v)) => v != "n",
            (None, None) => true,
            (Some(have), None) => have != "y" && have != "m",
            (Some(have), Some(v)) => have != v.trim_matches('"'),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(name: &str, value: Option<&str>) -> KconfigOption {
        KconfigOption {
            name: name.into(),
            value: value.map(String::from),
        }
    }

    #[test]
    fn config_check() {
        let cfg = parse_config(
            "CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_HZ=1000\nCONFIG_S=\"x\"\n",
        );
        let wanted = vec![
            opt("A", None),
            opt("B", None),
            opt("C", None),
            opt("HZ", Some("1000")),
            opt("HZ", Some("250")),
            opt("B", Some("y")),
            opt("C", Some("n")),
            opt("S", Some("\"x\"")),
            opt("D", None),
        ];
        let missing: Vec<String> = missing_options(&cfg, &wanted)
            .iter()
            .map(|o| o.to_string())
            .collect();
        assert_eq!(
            missing,
            vec!["CONFIG_C", "CONFIG_HZ=250", "CONFIG_B=y", "CONFIG_D"]
        );
        let reasons: Vec<String> = missing_options(&cfg, &wanted)
            .iter()
            .map(|o| unmet_reason(&cfg, o))
            .collect();
        assert_eq!(
            reasons,
            [
                "CONFIG_C is not set",
                "CONFIG_HZ=250: the kernel has CONFIG_HZ=1000",
                "CONFIG_B=y: the kernel has it as a module (=m)",
                "CONFIG_D is not set"
            ]
        );
        assert_eq!(has(&cfg, "B"), Has::Module);
        assert_eq!(has(&cfg, "A"), Has::Builtin);
        assert_eq!(
            unmet_reason(&cfg, &opt("A", Some("m"))),
            "CONFIG_A=m: the kernel has it built in (=y)"
        );
    }

    #[test]
    fn release_from_a_bzimage_header() {
        let mut head = vec![0u8; 0x1000];
        head[0x202..0x206].copy_from_slice(b"HdrS");
        head[0x20e..0x210].copy_from_slice(&0x300u16.to_le_bytes());
        let v = b"6.1.0-57-amd64 (debian-kernel@lists.debian.org)\0";
        head[0x500..0x500 + v.len()].copy_from_slice(v);
        assert_eq!(image_release(&head).as_deref(), Some("6.1.0-57-amd64"));
        head[0x20e] = 0;
        head[0x20f] = 0;
        assert_eq!(image_release(&head), None);
        assert_eq!(image_release(b"\x7fELF"), None);
    }

    #[test]
    fn finds_images_in_directories() {
        let t = tempfile::tempdir().unwrap();
        let build = t.path().join("build");
        std::fs::create_dir_all(build.join("arch/x86/boot")).unwrap();
        std::fs::write(build.join("arch/x86/boot/bzImage"), "x").unwrap();
        std::fs::write(build.join("vmlinux"), "x").unwrap();
        std::fs::write(build.join(".config"), "CONFIG_A=y\n").unwrap();
        std::fs::write(build.join("Makefile"), "").unwrap();
        let k = from_arg(&build).unwrap();
        assert!(k.image.ends_with("arch/x86/boot/bzImage"));
        assert!(k.vmlinux.is_some() && k.config.is_some());
        assert!(k.build_dir.is_some());

        let pkg = t.path().join("pkg");
        std::fs::create_dir_all(pkg.join("boot")).unwrap();
        std::fs::create_dir_all(pkg.join("lib/modules/6.1.0-9-amd64")).unwrap();
        std::fs::write(pkg.join("boot/vmlinuz-6.1.0-9-amd64"), "x").unwrap();
        std::fs::write(pkg.join("boot/config-6.1.0-9-amd64"), "").unwrap();
        let k = from_arg(&pkg).unwrap();
        assert!(k.image.ends_with("boot/vmlinuz-6.1.0-9-amd64"));
        assert!(k.config.unwrap().ends_with("boot/config-6.1.0-9-amd64"));
        assert_eq!(k.release.as_deref(), Some("6.1.0-9-amd64"));
        assert_eq!(k.modules, None, "a tree without modules.dep is no tree");
        let tree = pkg.join("lib/modules/6.1.0-9-amd64");
        std::fs::write(tree.join("modules.dep"), "").unwrap();
        let k = from_arg(&pkg).unwrap();
        assert_eq!(
            k.modules.as_deref(),
            Some(
                pkg.canonicalize()
                    .unwrap()
                    .join("lib/modules/6.1.0-9-amd64")
                    .as_path()
            )
        );
        let other = t.path().join("mods");
        std::fs::create_dir_all(&other).unwrap();
        let e = from_args(&pkg, Some(&other)).unwrap_err();
        assert!(e.message.contains("no module tree there"), "{}", e.message);
        std::fs::write(other.join("modules.dep"), "").unwrap();
        let k = from_args(&pkg, Some(&other)).unwrap();
        assert_eq!(k.modules.as_deref(), Some(other.as_path()));

        let e = host_kernel(&pkg.join("boot"), "6.18.44-x").unwrap_err();
        assert!(
            e.message.contains("runs 6.18.44-x")
                && e.message.contains("vmlinuz-6.18.44-x does not exist"),
            "{}",
            e.message
        );
        assert!(host_kernel(&pkg.join("boot"), "6.1.0-9-amd64").is_ok());

        let empty = t.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let e = from_arg(&empty).unwrap_err();
        assert!(e.message.contains("no kernel image found"), "{}", e.message);
        assert!(from_arg(&t.path().join("nope")).is_err());
    }
}
