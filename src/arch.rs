//! The architectures ktest builds for and boots, one entry each (the way
//! kunit.py keeps one qemu_configs file per architecture): everything that
//! differs between them is here, and adding one (riscv64) is one more
//! entry.

use std::path::Path;

/// One architecture. Two are the same when their names are (the table
/// has one entry per name; comparing every field would compare fragments).
#[derive(Debug)]
pub struct Arch {
    /// ktest's name for it (`--arch`, `arch` in `.ktest.toml`).
    pub name: &'static str,
    /// Other names users give it: `uname -m`, Debian's, the kernel's.
    pub aliases: &'static [&'static str],
    /// `uname -m` of a host of this architecture.
    pub uname: &'static str,
    /// kbuild's `ARCH`.
    pub make_arch: &'static str,
    /// `CROSS_COMPILE` when the host is another architecture (and neither
    /// `CROSS_COMPILE` nor `LLVM` is set).
    pub cross_compile: &'static str,
    /// The Debian package of that cross compiler.
    pub cross_package: &'static str,
    /// ktest's config fragment for it.
    pub fragment: &'static str,
    /// The image kbuild makes, relative to the build directory.
    pub image: &'static str,
    /// The qemu binary.
    pub qemu: &'static str,
    /// The Debian package of `qemu`.
    pub qemu_package: &'static str,
    /// qemu's machine.
    pub machine: &'static str,
    /// `-cpu` under TCG.
    pub tcg_cpu: &'static str,
    /// `-cpu` under KVM.
    pub kvm_cpu: &'static str,
    /// The kernel's name for the console (the first serial port).
    pub console: &'static str,
    /// The kernel's name for a second serial port for kgdb, if the machine
    /// has one.
    pub kgdb_serial: Option<&'static str>,
    /// Kernel command line words for this machine only.
    pub cmdline: &'static [&'static str],
    /// The keyboard device ktest adds for `ktest sysrq` and `ktest kgdb`
    /// to type alt-sysrq-KEY on (qemu's `sendkey`), or `None` where the
    /// machine has one (pc's i8042). A keyboard reaches the kernel's sysrq
    /// handler whatever the console is doing.
    pub keyboard_device: Option<&'static str>,
    /// Debian's name (create-vm-image, debootstrap).
    pub debian: &'static str,
    /// The gdb that reads this architecture's vmlinux on a host of another
    /// one (on its own, plain `gdb` does).
    pub gdb: &'static str,
    /// The Debian package of that gdb.
    pub gdb_package: &'static str,
    /// How the accelerator probe's tiny guest proves KVM runs (accel.rs).
    pub probe: Probe,
    /// ELF's `e_machine` for its programs (EM_X86_64, EM_AARCH64).
    pub elf_machine: u16,
    /// The Kconfig option of its serial console (without `CONFIG_`): a
    /// kernel without it built in cannot boot ktest's guest.
    pub console_option: &'static str,
    /// Where its fragment is in ktest's sources, for messages.
    pub fragment_path: &'static str,
}

impl PartialEq for Arch {
    fn eq(&self, other: &Arch) -> bool {
        self.name == other.name
    }
}

impl Eq for Arch {}

/// The accelerator probe's guest for an architecture (src/accel.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A floppy boot sector that SeaBIOS loads and that writes to qemu's
    /// isa-debug-exit port: the firmware runs, as in a real boot.
    X86BootSector,
    /// A kernel Image whose code powers the machine off through PSCI.
    Arm64Psci,
}

/// x86_64 on qemu's `pc` machine.
pub const X86_64: Arch = Arch {
    name: "x86_64",
    aliases: &["x86", "amd64", "x86-64"],
    uname: "x86_64",
    make_arch: "x86_64",
    cross_compile: "x86_64-linux-gnu-",
    cross_package: "gcc-x86-64-linux-gnu",
    fragment: include_str!("../lib/kconfig/ktest.config"),
    image: "arch/x86/boot/bzImage",
    qemu: "qemu-system-x86_64",
    qemu_package: "qemu-system-x86",
    machine: "pc",
    // qemu64 plus RDRAND, which TCG emulates from the host's RNG: with
    // random.trust_cpu=on the guest's RNG is ready at once instead of
    // seconds into the boot (sshd and anything else calling getrandom
    // would wait for it).
    tcg_cpu: "qemu64,+rdrand",
    kvm_cpu: "host",
    console: "ttyS0",
    kgdb_serial: Some("ttyS1"),
    cmdline: &[
        // Routing PCI interrupts through ACPI's AML costs ~0.2 s per
        // device under TCG; the legacy PIRQ table is instant and just as
        // correct.
        "acpi=noirq",
        // No PS/2 mouse: without an initramfs the kernel waits for the
        // i8042 aux port's probe before it mounts the root, ~0.4 s under
        // TCG. The keyboard stays: `ktest sysrq` types alt-sysrq-KEY on it.
        "i8042.noaux",
    ],
    keyboard_device: None,
    debian: "amd64",
    gdb: "gdb-multiarch",
    gdb_package: "gdb-multiarch",
    probe: Probe::X86BootSector,
    elf_machine: 62,
    console_option: "SERIAL_8250_CONSOLE",
    fragment_path: "lib/kconfig/ktest.config",
};

/// arm64 on qemu's `virt` machine.
pub const ARM64: Arch = Arch {
    name: "arm64",
    aliases: &["aarch64"],
    uname: "aarch64",
    make_arch: "arm64",
    cross_compile: "aarch64-linux-gnu-",
    cross_package: "gcc-aarch64-linux-gnu",
    fragment: include_str!("../lib/kconfig/arm64.config"),
    image: "arch/arm64/boot/Image",
    qemu: "qemu-system-aarch64",
    qemu_package: "qemu-system-arm",
    machine: "virt",
    // max has FEAT_RNG (RNDR), which random.trust_cpu=on trusts, as
    // RDRAND on x86. Its pointer authentication, emulated with QARMA, is
    // most of TCG's time; qemu's own cheaper algorithm serves as well.
    tcg_cpu: "max,pauth-impdef=on",
    kvm_cpu: "host",
    console: "ttyAMA0",
    // virt has one PL011: kgdb would share the console.
    kgdb_serial: None,
    cmdline: &[],
    // virt has none; sysrq also works as a break on the PL011, but that
    // console belongs to the ktest process watching the VM.
    keyboard_device: Some("virtio-keyboard-pci"),
    debian: "arm64",
    gdb: "gdb-multiarch",
    gdb_package: "gdb-multiarch",
    probe: Probe::Arm64Psci,
    elf_machine: 183,
    console_option: "SERIAL_AMBA_PL011_CONSOLE",
    fragment_path: "lib/kconfig/arm64.config",
};

/// Every architecture ktest knows.
pub const ALL: &[&Arch] = &[&X86_64, &ARM64];

/// The architecture named `name` (ktest's name or an alias).
pub fn parse(name: &str) -> Result<&'static Arch, String> {
    ALL.iter()
        .copied()
        .find(|a| a.name == name || a.aliases.contains(&name))
        .ok_or_else(|| {
            format!(
                "'{name}' is not an architecture ktest boots; it knows {}",
                ALL.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
            )
        })
}

/// The architecture named by kbuild's `ARCH` value, if ktest knows it
/// (`x86` is an alias; `i386` builds on x86's tree too).
pub fn from_make_arch(value: &str) -> Option<&'static Arch> {
    match value {
        "i386" => Some(&X86_64),
        other => parse(other).ok(),
    }
}

/// The host's architecture, if ktest knows it.
pub fn host() -> Option<&'static Arch> {
    static HOST: std::sync::OnceLock<Option<&'static Arch>> = std::sync::OnceLock::new();
    *HOST.get_or_init(|| {
        let u = nix::sys::utsname::uname().ok()?;
        let m = u.machine().to_string_lossy().into_owned();
        ALL.iter().copied().find(|a| a.uname == m)
    })
}

/// The architecture of a build or guest nobody chose one for: the host's,
/// or x86_64 on a host ktest does not know.
pub fn default() -> &'static Arch {
    host().unwrap_or(&X86_64)
}

/// Whether this is the host's architecture (KVM can run it; the host's
/// userspace can be its root).
pub fn is_host(arch: &Arch) -> bool {
    host().is_some_and(|h| h == arch)
}

/// The architecture of a kernel image, from its header: an x86 bzImage
/// has "HdrS" at 0x202, an arm64 Image "ARM\x64" at 0x38.
pub fn of_image(head: &[u8]) -> Option<&'static Arch> {
    if head.get(0x202..0x206) == Some(b"HdrS") {
        Some(&X86_64)
    } else if head.get(0x38..0x3c) == Some(b"ARM\x64") {
        Some(&ARM64)
    } else {
        None
    }
}

/// The architecture of a little-endian 64-bit ELF program (or library)
/// from its first bytes; `None` for anything else, scripts included.
pub fn of_elf(head: &[u8]) -> Option<&'static Arch> {
    if head.len() < 20 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return None;
    }
    let machine = u16::from_le_bytes([head[18], head[19]]);
    ALL.iter().copied().find(|a| a.elf_machine == machine)
}

/// `of_elf` of a file.
pub fn of_elf_file(path: &Path) -> Option<&'static Arch> {
    use std::io::Read;
    let mut head = [0u8; 20];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    of_elf(&head)
}

/// The make variables a build for `arch` needs on this host beyond the
/// user's: `ARCH` when it is not the host's, and the cross compiler's
/// `CROSS_COMPILE` unless the user chose a compiler (`CROSS_COMPILE`, or
/// `LLVM`, which cross-compiles by itself). A build for the host's own
/// architecture gets nothing, as before ktest knew others.
pub fn make_vars(arch: &Arch, user: &[(String, String)], native: bool) -> Vec<(String, String)> {
    let has = |k: &str| user.iter().any(|(n, _)| n == k);
    let mut v = Vec::new();
    if !native && !has("ARCH") {
        v.push(("ARCH".into(), arch.make_arch.into()));
    }
    if !native && !has("CROSS_COMPILE") && !has("LLVM") {
        v.push(("CROSS_COMPILE".into(), arch.cross_compile.into()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_and_aliases() {
        assert_eq!(parse("arm64").unwrap(), &ARM64);
        assert_eq!(parse("aarch64").unwrap(), &ARM64);
        assert_eq!(parse("amd64").unwrap(), &X86_64);
        let e = parse("riscv64").unwrap_err();
        assert!(e.contains("knows x86_64, arm64"), "{e}");
        assert_eq!(from_make_arch("x86"), Some(&X86_64));
        assert_eq!(from_make_arch("arm64"), Some(&ARM64));
        assert_eq!(from_make_arch("mips"), None);
    }

    #[test]
    fn images_tell_their_architecture() {
        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(of_image(&bz), Some(&X86_64));
        let mut image = vec![0u8; 0x40];
        image[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert_eq!(of_image(&image), Some(&ARM64));
        assert_eq!(of_image(b"\x7fELF"), None);
    }

    #[test]
    fn programs_tell_their_architecture() {
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[18] = 183;
        assert_eq!(of_elf(&elf), Some(&ARM64));
        elf[18] = 62;
        assert_eq!(of_elf(&elf), Some(&X86_64));
        elf[18] = 243; // riscv
        assert_eq!(of_elf(&elf), None);
        assert_eq!(of_elf(b"#!/bin/sh\necho hello world\n"), None);
        // This test binary is the host's.
        let me = std::env::current_exe().unwrap();
        assert_eq!(of_elf_file(&me).map(|a| a.name), host().map(|a| a.name));
    }

    fn options(fragment: &str) -> BTreeSet<String> {
        fragment
            .lines()
            .filter_map(|l| l.strip_prefix("# ").unwrap_or(l).strip_prefix("CONFIG_"))
            .map(|l| l.split([' ', '=']).next().unwrap_or_default().to_string())
            .collect()
    }

    /// The fragments are whole, one per architecture; what is not about
    /// the machine must be the same in each.
    #[test]
    fn fragments_agree_on_what_is_not_the_machine() {
        let x86_only: BTreeSet<String> = [
            "KERNEL_GZIP",
            "ACPI",
            "HYPERVISOR_GUEST",
            "PARAVIRT",
            "KVM_GUEST",
            "SERIAL_8250",
            "SERIAL_8250_CONSOLE",
            "UNWINDER_ORC",
            "KEYBOARD_ATKBD",
            "INPUT_MOUSE",
        ]
        .map(String::from)
        .into();
        let arm64_only: BTreeSet<String> = [
            "PCI_HOST_GENERIC",
            "SERIAL_AMBA_PL011",
            "SERIAL_AMBA_PL011_CONSOLE",
            "INPUT",
            "VIRTIO_INPUT",
        ]
        .map(String::from)
        .into();
        let x86 = options(X86_64.fragment);
        let arm = options(ARM64.fragment);
        assert_eq!(
            x86.difference(&x86_only).collect::<Vec<_>>(),
            arm.difference(&arm64_only).collect::<Vec<_>>()
        );
        assert!(x86_only.is_subset(&x86) && arm64_only.is_subset(&arm));
    }

    #[test]
    fn cross_builds_get_arch_and_a_compiler() {
        let none: Vec<(String, String)> = vec![];
        assert_eq!(make_vars(&X86_64, &none, true), vec![]);
        assert_eq!(
            make_vars(&ARM64, &none, false),
            vec![
                ("ARCH".to_string(), "arm64".to_string()),
                (
                    "CROSS_COMPILE".to_string(),
                    "aarch64-linux-gnu-".to_string()
                )
            ]
        );
        let llvm = vec![("LLVM".to_string(), "1".to_string())];
        assert_eq!(
            make_vars(&ARM64, &llvm, false),
            vec![("ARCH".to_string(), "arm64".to_string())]
        );
    }
}
