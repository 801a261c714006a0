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
    /// A directory holding `lib/modules/RELEASE` for the guest, if any.
    pub modules_root: Option<PathBuf>,
}

/// Where an image may sit inside a directory given with `--kernel`.
const IMAGE_CANDIDATES: &[&str] = &[
    "arch/x86/boot/bzImage",
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

/// Finds the kernel named by `--kernel` (a file or a directory).
pub fn from_arg(arg: &Path) -> Result<Kernel> {
    let meta = std::fs::metadata(arg).map_err(|e| {
        Error::usage(format!(
            "--kernel {}: {e}; give a bzImage/vmlinuz file or a kernel build directory",
            arg.display()
        ))
    })?;
    let arg = arg
        .canonicalize()
        .map_err(|e| Error::infra(format!("{}: {e}", arg.display())))?;
    if meta.is_file() {
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
    if arg.join("lib/modules").is_dir() {
        k.modules_root = Some(arg.clone());
    }
    Ok(k)
}

/// What can be found beside a bare image: `/boot/vmlinuz-R` has
/// `/boot/config-R`.
fn around_image(image: PathBuf) -> Kernel {
    let mut k = Kernel {
        image: image.clone(),
        ..Kernel::default()
    };
    let name = image.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if let (Some(release), Some(dir)) = (name.strip_prefix("vmlinuz-"), image.parent()) {
        let config = dir.join(format!("config-{release}"));
        if config.is_file() {
            k.config = Some(config);
        }
        // An unpacked package: boot/vmlinuz-R beside lib/modules/R.
        if let Some(root) = dir.parent() {
            if root.join("lib/modules").join(release).is_dir() {
                k.modules_root = Some(root.to_path_buf());
            }
        }
    }
    k
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
        assert_eq!(
            k.modules_root.as_deref(),
            Some(pkg.canonicalize().unwrap().as_path())
        );

        let empty = t.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let e = from_arg(&empty).unwrap_err();
        assert!(e.message.contains("no kernel image found"), "{}", e.message);
        assert!(from_arg(&t.path().join("nope")).is_err());
    }
}
