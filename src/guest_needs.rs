//! What ktest's guest needs of a kernel, and how this kernel has each of
//! those: built in, as a module (then ktest boots it with an initramfs
//! that loads the module, src/initramfs.rs), or not at all (then it cannot
//! boot ktest's guest, and ktest says so before booting). Pure.

use crate::arch::Arch;
use crate::modules::{Found, ModuleIndex};
use crate::plan::Root;
use std::collections::HashMap;

/// One thing the guest needs.
struct Need {
    /// The Kconfig option, without `CONFIG_`.
    option: &'static str,
    /// The module it builds, if it can be one.
    module: Option<&'static str>,
    /// Which roots need it.
    roots: Roots,
    /// Without it the test still runs (no network: no `ktest ssh`).
    optional: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Roots {
    All,
    Host,
    Image,
}

const fn need(option: &'static str, module: Option<&'static str>, roots: Roots) -> Need {
    Need {
        option,
        module,
        roots,
        optional: false,
    }
}

/// In the order the modules load: transports before what uses them. The
/// serial console, whose option is the architecture's, comes first.
const NEEDS: &[Need] = &[
    need("DEVTMPFS", None, Roots::All),
    need("TMPFS", None, Roots::All),
    need("VIRTIO_PCI", Some("virtio_pci"), Roots::All),
    need("VIRTIO_CONSOLE", Some("virtio_console"), Roots::All),
    need("NET_9P", Some("9pnet"), Roots::All),
    need("NET_9P_VIRTIO", Some("9pnet_virtio"), Roots::All),
    need("9P_FS", Some("9p"), Roots::All),
    need("OVERLAY_FS", Some("overlay"), Roots::Host),
    need("VIRTIO_BLK", Some("virtio_blk"), Roots::Image),
    need("EXT4_FS", Some("ext4"), Roots::Image),
    Need {
        optional: true,
        ..need("VIRTIO_NET", Some("virtio_net"), Roots::All)
    },
];

/// Why a kernel cannot boot ktest's guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unbootable {
    /// Options it has neither built in nor as modules (`CONFIG_…`).
    Missing(Vec<String>),
    /// Options it has as modules, and ktest knows no module tree for it.
    NoModules(Vec<String>),
    /// Options its config has as modules that its module tree lacks.
    NotInTree(Vec<String>),
}

/// How the guest gets what it needs from this kernel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Modules to load from an initramfs before the root is mounted, in
    /// order (their own dependencies are resolved later, from the tree).
    /// Empty: everything needed is built in, and no initramfs is needed.
    pub modules: Vec<&'static str>,
}

/// What this kernel does for each need: from its config when ktest has
/// it, else from its module tree, else it is taken to be built in (ktest
/// knows nothing better, and the guest says what failed if it is not).
pub fn decide(
    arch: &Arch,
    config: Option<&HashMap<String, String>>,
    tree: Option<&ModuleIndex>,
    root: &Root,
) -> Result<Decision, Unbootable> {
    let console = need(arch.console_option, None, Roots::All);
    let wanted = std::iter::once(&console)
        .chain(NEEDS)
        .filter(|n| match n.roots {
            Roots::All => true,
            Roots::Host => *root == Root::Host,
            Roots::Image => *root != Root::Host,
        });
    let (mut missing, mut modules) = (Vec::new(), Vec::new());
    for n in wanted {
        let found = match (config, n.module) {
            (Some(c), module) => match c.get(n.option).map(String::as_str) {
                Some("y") => Found::Builtin,
                Some("m") if module.is_some() => Found::Module,
                _ => Found::Missing,
            },
            (None, Some(m)) => tree.map_or(Found::Builtin, |t| t.find(m)),
            (None, None) => Found::Builtin,
        };
        match (found, n.module) {
            (Found::Module, Some(m)) => modules.push((n.option, m)),
            (Found::Missing, _) if !n.optional => missing.push(format!("CONFIG_{}", n.option)),
            _ => {}
        }
    }
    // Modules come in an initramfs, which the kernel must be able to take.
    let initrd = config
        .and_then(|c| c.get("BLK_DEV_INITRD"))
        .map(String::as_str);
    if !modules.is_empty() && config.is_some() && initrd != Some("y") {
        missing.push("CONFIG_BLK_DEV_INITRD".into());
    }
    if !missing.is_empty() {
        return Err(Unbootable::Missing(missing));
    }
    let options = |v: &[(&str, &str)]| v.iter().map(|(o, _)| format!("CONFIG_{o}")).collect();
    match tree {
        None if !modules.is_empty() => return Err(Unbootable::NoModules(options(&modules))),
        Some(t) => {
            let absent: Vec<(&str, &str)> = modules
                .iter()
                .copied()
                .filter(|(_, m)| t.find(m) == Found::Missing)
                .collect();
            if !absent.is_empty() {
                return Err(Unbootable::NotInTree(options(&absent)));
            }
        }
        None => {}
    }
    Ok(Decision {
        modules: modules.into_iter().map(|(_, m)| m).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{ARM64, X86_64};
    use crate::plan::ImageFormat;

    fn config(text: &str) -> HashMap<String, String> {
        crate::kernel::parse_config(text)
    }

    const BUILTIN: &str =
        "CONFIG_DEVTMPFS=y\nCONFIG_TMPFS=y\nCONFIG_SERIAL_8250_CONSOLE=y\nCONFIG_BLK_DEV_INITRD=y\n";
    /// What Debian's 6.1.0-57-amd64 has of the guest's needs.
    const DEBIAN: &str = "CONFIG_VIRTIO_PCI=m\nCONFIG_VIRTIO_CONSOLE=m\nCONFIG_NET_9P=m\n\
CONFIG_NET_9P_VIRTIO=m\nCONFIG_9P_FS=m\nCONFIG_OVERLAY_FS=m\nCONFIG_VIRTIO_BLK=m\n\
CONFIG_EXT4_FS=m\nCONFIG_VIRTIO_NET=m\n";
    const MODULES: &str =
        "kernel/drivers/virtio/virtio_pci.ko:\nkernel/drivers/char/virtio_console.ko:\n\
kernel/net/9p/9pnet.ko:\nkernel/net/9p/9pnet_virtio.ko:\nkernel/fs/9p/9p.ko:\n\
kernel/fs/overlayfs/overlay.ko:\nkernel/drivers/block/virtio_blk.ko:\nkernel/fs/ext4/ext4.ko:\n\
kernel/drivers/net/virtio_net.ko:\n";

    fn image() -> Root {
        Root::Image {
            path: "/img".into(),
            format: ImageFormat::Raw,
        }
    }

    fn tree(dep: &str) -> ModuleIndex {
        ModuleIndex::parse(dep, "", "", "")
    }

    #[test]
    fn a_ktest_kernel_needs_nothing_loaded() {
        let c = config(&(BUILTIN.to_string() + &DEBIAN.replace("=m", "=y")));
        assert_eq!(
            decide(&X86_64, Some(&c), None, &Root::Host),
            Ok(Decision::default())
        );
        // Nothing known: taken as built in, as before ktest knew modules.
        assert_eq!(
            decide(&X86_64, None, None, &image()),
            Ok(Decision::default())
        );
    }

    #[test]
    fn the_console_needed_is_the_architectures() {
        let all = DEBIAN.replace("=m", "=y");
        let x86 = config(&(BUILTIN.to_string() + &all));
        let arm = config(&(BUILTIN.replace("8250", "AMBA_PL011") + &all));
        assert_eq!(
            decide(&ARM64, Some(&arm), None, &image()),
            Ok(Decision::default())
        );
        assert_eq!(
            decide(&ARM64, Some(&x86), None, &image()),
            Err(Unbootable::Missing(vec![
                "CONFIG_SERIAL_AMBA_PL011_CONSOLE".into()
            ]))
        );
        assert_eq!(
            decide(&X86_64, Some(&arm), None, &image()),
            Err(Unbootable::Missing(vec![
                "CONFIG_SERIAL_8250_CONSOLE".into()
            ]))
        );
    }

    #[test]
    fn a_distribution_kernel_loads_what_its_root_needs() {
        let c = config(&(BUILTIN.to_string() + DEBIAN));
        let t = tree(MODULES);
        let host = decide(&X86_64, Some(&c), Some(&t), &Root::Host).unwrap();
        assert_eq!(
            host.modules,
            [
                "virtio_pci",
                "virtio_console",
                "9pnet",
                "9pnet_virtio",
                "9p",
                "overlay",
                "virtio_net"
            ]
        );
        let img = decide(&X86_64, Some(&c), Some(&t), &image()).unwrap();
        assert!(img.modules.contains(&"virtio_blk") && img.modules.contains(&"ext4"));
        assert!(!img.modules.contains(&"overlay"));
        // Without a config, the tree tells.
        assert_eq!(decide(&X86_64, None, Some(&t), &Root::Host).unwrap(), host);
    }

    #[test]
    fn what_cannot_work_is_named() {
        // Debian's cloud kernel: no 9p at all.
        let cloud = config(&(BUILTIN.to_string() + &DEBIAN.replace("CONFIG_NET_9P=m\n", "")));
        assert_eq!(
            decide(&X86_64, Some(&cloud), Some(&tree(MODULES)), &Root::Host),
            Err(Unbootable::Missing(vec!["CONFIG_NET_9P".into()]))
        );
        let c = config(&(BUILTIN.to_string() + DEBIAN));
        assert!(matches!(
            decide(&X86_64, Some(&c), None, &Root::Host),
            Err(Unbootable::NoModules(o)) if o.len() == 7
        ));
        let partial = tree("kernel/drivers/virtio/virtio_pci.ko:\n");
        assert!(matches!(
            decide(&X86_64, Some(&c), Some(&partial), &Root::Host),
            Err(Unbootable::NotInTree(o)) if o[0] == "CONFIG_VIRTIO_CONSOLE"
        ));
        let c = config(&(BUILTIN.replace("CONFIG_BLK_DEV_INITRD=y", "") + DEBIAN));
        assert_eq!(
            decide(&X86_64, Some(&c), Some(&tree(MODULES)), &Root::Host),
            Err(Unbootable::Missing(vec!["CONFIG_BLK_DEV_INITRD".into()]))
        );
        // A bool option cannot be a module.
        let c = config(&(BUILTIN.replace("DEVTMPFS=y", "DEVTMPFS=m") + DEBIAN));
        assert_eq!(
            decide(&X86_64, Some(&c), Some(&tree(MODULES)), &Root::Host),
            Err(Unbootable::Missing(vec!["CONFIG_DEVTMPFS".into()]))
        );
    }

    #[test]
    fn no_network_driver_is_no_reason_to_refuse() {
        let c = config(&(BUILTIN.to_string() + &DEBIAN.replace("CONFIG_VIRTIO_NET=m\n", "")));
        let d = decide(&X86_64, Some(&c), Some(&tree(MODULES)), &Root::Host).unwrap();
        assert!(!d.modules.contains(&"virtio_net"));
    }
}
