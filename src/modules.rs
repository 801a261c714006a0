//! A kernel's module tree (`/lib/modules/RELEASE`) as the kernel's own
//! index files describe it: `modules.dep` (every module and what it needs
//! loaded first), `modules.builtin` (what is compiled in), `modules.alias`
//! (other names: `fs-9p`, `crypto-crc32c`) and `modules.softdep` (modules
//! to load first that no symbol ties to). Parsing and resolution are pure;
//! only [`ModuleIndex::read`] touches the disk.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// A module's name as the kernel knows it: the file name without `.ko`
/// and a compression suffix, `-` read as `_` (modprobe treats them alike).
pub fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The index of one module tree.
#[derive(Debug, Default, Clone)]
pub struct ModuleIndex {
    /// Module name → its path relative to the tree and its dependencies'
    /// paths, as `modules.dep` lists them.
    deps: HashMap<String, (String, Vec<String>)>,
    /// Names of built-in modules.
    builtin: HashSet<String>,
    /// `modules.alias` as read. Scanned only when a name is neither a
    /// module nor built in, which the root's needs never are on the
    /// kernels ktest knows: parsing its 30000 lines up front was most of
    /// the cached initramfs step's time.
    alias: String,
    /// Module name → names or aliases to load before it.
    softdeps: HashMap<String, Vec<String>>,
}

/// One module to load, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    /// Path relative to the module tree.
    pub path: String,
    /// A soft dependency: the boot goes on if it does not load (a CPU
    /// without SSE 4.2 refuses `crc32c_intel`, and `crc32c_generic` does).
    pub optional: bool,
}

/// What a wanted module turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Compiled into the kernel: nothing to load.
    Builtin,
    /// A module file, with what must load first.
    Module,
    /// Neither a module nor built in.
    Missing,
}

impl ModuleIndex {
    /// Parses the index files' texts; `alias` and `softdep` may be empty.
    pub fn parse(dep: &str, builtin: &str, alias: &str, softdep: &str) -> ModuleIndex {
        let mut idx = ModuleIndex::default();
        for line in dep.lines() {
            let Some((module, needs)) = line.split_once(':') else {
                continue;
            };
            let needs = needs.split_whitespace().map(String::from).collect();
            idx.deps
                .insert(name_of(module), (module.trim().to_string(), needs));
        }
        idx.builtin = builtin
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(name_of)
            .collect();
        idx.alias = alias.to_string();
        for line in softdep.lines() {
            let mut w = line.split_whitespace();
            if w.next() != Some("softdep") {
                continue;
            }
            let Some(module) = w.next() else { continue };
            // "pre: a b post: c": only what comes before "post:" loads first.
            let pre: Vec<String> = w
                .skip_while(|t| *t != "pre:")
                .skip(1)
                .take_while(|t| !t.ends_with(':'))
                .map(String::from)
                .collect();
            idx.softdeps
                .entry(module.replace('-', "_"))
                .or_default()
                .extend(pre);
        }
        idx
    }

    /// Reads the index of the module tree `dir` (`/lib/modules/RELEASE`).
    /// Only `modules.dep` is required; the kernel's `make modules_install`
    /// and Debian's packages (after depmod) write the others too.
    pub fn read(dir: &Path) -> std::io::Result<ModuleIndex> {
        let dep = std::fs::read_to_string(dir.join("modules.dep"))?;
        let opt = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        Ok(ModuleIndex::parse(
            &dep,
            &opt("modules.builtin"),
            &opt("modules.alias"),
            &opt("modules.softdep"),
        ))
    }

    /// One uncompressed module of the tree (the same one every time), to
    /// read the release the tree was built for.
    pub fn sample(&self) -> Option<&str> {
        self.deps
            .values()
            .map(|(path, _)| path.as_str())
            .filter(|p| p.ends_with(".ko"))
            .min()
    }

    /// The module names `name` stands for: itself if it is a module or
    /// built in, else what `modules.alias` maps it to.
    fn names(&self, name: &str) -> Vec<String> {
        let n = name.replace('-', "_");
        if self.deps.contains_key(&n) || self.builtin.contains(&n) {
            return vec![n];
        }
        // Exact patterns only: ktest asks for plain aliases (fs-9p).
        self.alias
            .lines()
            .filter_map(|line| {
                let mut w = line.split_whitespace();
                match (w.next(), w.next(), w.next()) {
                    (Some("alias"), Some(p), Some(module)) if p == name => {
                        Some(module.replace('-', "_"))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// What `name` (a module name or an alias) is in this kernel.
    pub fn find(&self, name: &str) -> Found {
        let names = self.names(name);
        if names.iter().any(|n| self.builtin.contains(n)) {
            Found::Builtin
        } else if names.iter().any(|n| self.deps.contains_key(n)) {
            Found::Module
        } else {
            Found::Missing
        }
    }

    /// The modules to load, in order, so that every module in `wanted` is
    /// loaded: each one's dependencies and soft dependencies before it,
    /// each file once. Built-in modules need nothing. Returns the names in
    /// `wanted` that are neither modules nor built in as the error.
    pub fn resolve(&self, wanted: &[&str]) -> Result<Vec<Load>, Vec<String>> {
        let missing: Vec<String> = wanted
            .iter()
            .filter(|w| self.find(w) == Found::Missing)
            .map(|w| w.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(missing);
        }
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        for w in wanted {
            for n in self.names(w) {
                self.visit(&n, false, &mut seen, &mut order);
            }
        }
        Ok(order)
    }

    /// Depth-first, dependencies first. `modules.dep` lists every module's
    /// whole closure, but visiting each dependency's own entry too keeps
    /// the order right whatever order the file lists them in.
    fn visit(&self, name: &str, optional: bool, seen: &mut HashSet<String>, out: &mut Vec<Load>) {
        if self.builtin.contains(name) || !seen.insert(name.to_string()) {
            return;
        }
        let Some((path, needs)) = self.deps.get(name) else {
            return;
        };
        for soft in self.softdeps.get(name).into_iter().flatten() {
            for n in self.names(soft) {
                self.visit(&n, true, seen, out);
            }
        }
        for dep in needs {
            self.visit(&name_of(dep), optional, seen, out);
        }
        out.push(Load {
            path: path.clone(),
            optional,
        });
    }
}

/// The kernel release a module was built for: the first word of its
/// `vermagic=` string in `.modinfo`. Only for uncompressed modules.
pub fn vermagic_release(module: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"vermagic=";
    let at = module.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &module[at..];
    let end = rest
        .iter()
        .position(|&b| b == 0 || b == b' ')
        .unwrap_or(rest.len());
    String::from_utf8(rest[..end].to_vec()).ok()
}

/// The module tree for `release` under a directory given with `--modules`:
/// the tree itself (it has `modules.dep`), or a root holding
/// `lib/modules/RELEASE` (an unpacked package, an INSTALL_MOD_PATH).
pub fn tree_in(dir: &Path, release: Option<&str>) -> Option<PathBuf> {
    if dir.join("modules.dep").is_file() {
        return Some(dir.to_path_buf());
    }
    let tree = dir.join("lib/modules").join(release?);
    tree.join("modules.dep").is_file().then_some(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines from Debian's 6.1.0-57-amd64 index files.
    const DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/block/brd.ko.xz:
";
    const BUILTIN: &str =
        "kernel/drivers/tty/serial/8250/8250.ko\nkernel/fs/overlayfs/overlay.ko\n";
    const ALIAS: &str = "# Aliases extracted from modules themselves.\n\
alias crypto-crc32c crc32c_intel\nalias fs-9p 9p\nalias crypto-crc32c crc32c_generic\n";
    const SOFTDEP: &str =
        "# Soft dependencies\nsoftdep ext4 pre: crypto-crc32c\nsoftdep x pre: a b post: c\n";

    fn index() -> ModuleIndex {
        ModuleIndex::parse(DEP, BUILTIN, ALIAS, SOFTDEP)
    }

    fn paths(loads: &[Load]) -> Vec<&str> {
        loads.iter().map(|l| l.path.as_str()).collect()
    }

    #[test]
    fn names_drop_suffixes_and_dashes() {
        assert_eq!(
            name_of("kernel/arch/x86/crypto/crc32c-intel.ko"),
            "crc32c_intel"
        );
        assert_eq!(name_of("kernel/drivers/block/brd.ko.xz"), "brd");
        assert_eq!(name_of("9pnet_virtio.ko.zst"), "9pnet_virtio");
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let loads = index()
            .resolve(&["9pnet_virtio", "9p", "virtio_pci"])
            .unwrap();
        let p = paths(&loads);
        assert_eq!(
            p,
            [
                "kernel/net/9p/9pnet.ko",
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/net/9p/9pnet_virtio.ko",
                "kernel/fs/netfs/netfs.ko",
                "kernel/fs/fscache/fscache.ko",
                "kernel/fs/9p/9p.ko",
                "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
                "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
                "kernel/drivers/virtio/virtio_pci.ko",
            ]
        );
        assert!(loads.iter().all(|l| !l.optional));
    }

    #[test]
    fn soft_dependencies_through_aliases_are_optional_and_first() {
        let loads = index().resolve(&["ext4"]).unwrap();
        assert_eq!(
            paths(&loads),
            [
                "kernel/arch/x86/crypto/crc32c-intel.ko",
                "kernel/crypto/crc32c_generic.ko",
                "kernel/lib/crc16.ko",
                "kernel/fs/mbcache.ko",
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/fs/ext4/ext4.ko",
            ]
        );
        assert!(loads[0].optional && loads[1].optional && !loads[5].optional);
    }

    #[test]
    fn builtin_and_missing() {
        let idx = index();
        assert_eq!(idx.find("overlay"), Found::Builtin);
        assert_eq!(idx.find("fs-9p"), Found::Module);
        assert_eq!(idx.find("brd"), Found::Module);
        assert_eq!(idx.find("virtio_blk"), Found::Missing);
        assert_eq!(idx.resolve(&["overlay"]).unwrap(), vec![]);
        assert_eq!(
            idx.resolve(&["overlay", "virtio_blk", "nope"]),
            Err(vec!["virtio_blk".to_string(), "nope".to_string()])
        );
        assert_eq!(idx.softdeps["x"], ["a", "b"]);
        assert_eq!(idx.sample(), Some("kernel/arch/x86/crypto/crc32c-intel.ko"));
    }

    #[test]
    fn vermagic() {
        let m = b"\x7fELF....license=GPL\0vermagic=6.1.0-57-amd64 SMP preempt mod_unload modversions \0name=brd\0";
        assert_eq!(vermagic_release(m).as_deref(), Some("6.1.0-57-amd64"));
        assert_eq!(vermagic_release(b"no modinfo"), None);
    }

    #[test]
    fn trees_under_a_modules_directory() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("lib/modules/6.1.0-9-amd64");
        std::fs::create_dir_all(&tree).unwrap();
        assert_eq!(tree_in(t.path(), Some("6.1.0-9-amd64")), None);
        std::fs::write(tree.join("modules.dep"), "").unwrap();
        assert_eq!(tree_in(t.path(), Some("6.1.0-9-amd64")), Some(tree.clone()));
        assert_eq!(tree_in(t.path(), None), None);
        assert_eq!(tree_in(&tree, None), Some(tree.clone()));
        let idx = ModuleIndex::read(&tree).unwrap();
        assert_eq!(idx.find("x"), Found::Missing);
    }
}
