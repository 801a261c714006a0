//! The VM plan: the complete qemu command line and kernel command line for
//! one run, built by a pure function so it can be unit-tested and printed
//! with `--dry-run` without booting anything.
//!
//! qemu runs with the per-VM directory as its working directory, and every
//! socket and scratch file is named relative to it, so the 108-byte limit on
//! unix socket paths never depends on how deep the user's tree is.

use crate::arch::Arch;
use std::path::{Path, PathBuf};

/// Which accelerator qemu uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization.
    Kvm,
    /// Software emulation.
    Tcg,
}

/// What the guest's root filesystem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// The host's `/`, read-only over 9p, with a tmpfs overlay in the guest.
    Host,
    /// A root image file, opened so the file itself is never written.
    Image {
        /// The image file.
        path: PathBuf,
        /// Its format.
        format: ImageFormat,
    },
}

/// The format of a root image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// A raw ext4 image, as create-vm-image writes by default.
    Raw,
    /// qcow2 (create-vm-image --format qcow2).
    Qcow2,
}

/// File names inside the per-VM directory, shared by the plan, the
/// supervisor and the commands that attach to a running VM.
pub mod names {
    /// Serial console (ttyS0); ktest listens, qemu connects.
    pub const CONSOLE: &str = "console.sock";
    /// virtio-serial port carrying ktest's own messages from the guest
    /// (the test's exit status, guest errors); ktest listens.
    pub const RESULT: &str = "result.sock";
    /// virtio-serial port carrying the test's stdout and stderr, apart from
    /// the kernel's console; ktest listens.
    pub const OUTPUT: &str = "output.sock";
    /// Human monitor; qemu listens.
    pub const MONITOR: &str = "monitor.sock";
    /// QMP; qemu listens.
    pub const QMP: &str = "qmp.sock";
    /// qemu's gdb stub; qemu listens.
    pub const GDB: &str = "gdb.sock";
    /// Second serial port (ttyS1) for kgdb; qemu listens.
    pub const KGDB: &str = "kgdb.sock";
    /// The guest init script.
    pub const INIT: &str = "init";
    /// Shell assignments the guest init reads: the test, its arguments, links.
    pub const ENV: &str = "run.env";
    /// The ktest process's pid.
    pub const PID: &str = "pid";
    /// The path of the booted kernel's vmlinux, when known (for `ktest gdb`).
    pub const VMLINUX: &str = "vmlinux.path";
    /// The path of the console log (for `ktest ssh` and `ktest sysrq`).
    pub const LOG: &str = "log.path";
    /// The guest's architecture (`Arch::name`).
    pub const ARCH: &str = "arch";
    /// The virtio-serial port name the guest writes its verdict to.
    pub const RESULT_PORT: &str = "ktest.result";
    /// The virtio-serial port name the test's output goes to.
    pub const OUTPUT_PORT: &str = "ktest.output";
    /// The argument after `--` on the kernel command line that makes the
    /// ktest binary, started as PID 1, the guest's init. Only ktest's own
    /// VMs have it: a ktest that is PID 1 of a container stays a CLI.
    pub const GUEST_INIT_ARG: &str = "--ktest-guest-init";
    /// On the kernel command line of every ktest VM; the guest checks
    /// /proc/cmdline for it before anything only a guest may do (sysrq).
    pub const GUEST_MARKER: &str = "ktest.guest=1";
    /// Where the guest mounts the per-VM directory (9p, tag `SHARE_TAG`).
    pub const GUEST_VM_DIR: &str = "/run/ktest";
    /// 9p mount tag of the per-VM directory (image mode).
    pub const SHARE_TAG: &str = "ktest";
    /// 9p mount tag of the test's directory (image root).
    pub const TEST_TAG: &str = "ktest-test";
    /// Directory in the per-VM directory holding REQUIRE'd files from
    /// outside the test's directory (image root).
    pub const REQUIRE_DIR: &str = "require";
    /// 9p mount tag of the kernel's module tree, mounted at
    /// `/lib/modules/RELEASE`.
    pub const MODULES_TAG: &str = "ktest-modules";

    /// The name of scratch disk `n`.
    pub fn scratch(n: usize) -> String {
        format!("scratch-{n}.img")
    }
}

/// Everything the plan depends on.
#[derive(Debug, Clone)]
pub struct PlanInput {
    /// The guest's architecture.
    pub arch: &'static Arch,
    /// The qemu binary.
    pub qemu: PathBuf,
    /// Kernel image (absolute).
    pub kernel: PathBuf,
    /// Guest memory in bytes.
    pub mem: u64,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Accelerator.
    pub accel: Accel,
    /// Number of scratch disks (files named by `names::scratch`).
    pub scratch: usize,
    /// Host port forwarded to the guest's port 22.
    pub ssh_port: u32,
    /// Guest MAC address.
    pub mac: String,
    /// Absolute host path of the per-VM directory.
    pub vm_dir: PathBuf,
    /// Extra kernel command line, appended last so it can override.
    pub append: Vec<String>,
    /// Root filesystem.
    pub root: Root,
    /// The test's directory, to share with an image root; `None` without a test.
    pub test_dir: Option<PathBuf>,
    /// The kernel's module tree to share with the guest, which mounts it
    /// at `/lib/modules/RELEASE`.
    pub modules: Option<PathBuf>,
    /// The initramfs that loads the modules the root needs, for a kernel
    /// that has them as modules (src/initramfs.rs).
    pub initrd: Option<PathBuf>,
    /// The guest's PID 1 with the host root: the ktest binary itself.
    pub init: PathBuf,
}

/// A planned VM: what to execute and the kernel command line in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPlan {
    /// The qemu binary.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The kernel command line (also inside `args`, after `-append`).
    pub cmdline: String,
}

impl VmPlan {
    /// The command line as a shell would accept it.
    pub fn shell_line(&self) -> String {
        let mut words = vec![self.program.to_string_lossy().into_owned()];
        words.extend(self.args.iter().cloned());
        shell_words::join(words)
    }
}

/// What every ktest qemu has, the accelerator probe's included: no default
/// devices, no user configuration, no display, and the architecture's
/// machine.
pub fn machine(arch: &Arch) -> Vec<String> {
    [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-machine",
        arch.machine,
    ]
    .map(String::from)
    .to_vec()
}

fn machine_args(input: &PlanInput) -> Vec<String> {
    let cpu = match input.accel {
        Accel::Kvm => ["-accel", "kvm", "-cpu", input.arch.kvm_cpu],
        Accel::Tcg => ["-accel", "tcg", "-cpu", input.arch.tcg_cpu],
    };
    let mut v = machine(input.arch);
    // The guest reboots (sysrq-b, panic=-1) to end the run; qemu must exit.
    v.push("-no-reboot".into());
    v.extend(cpu.map(String::from));
    v.extend([
        "-m".into(),
        format!("{}M", input.mem >> 20),
        "-smp".into(),
        input.cpus.to_string(),
    ]);
    if let Some(keyboard) = input.arch.keyboard_device {
        v.extend(["-device".into(), keyboard.into()]);
    }
    v
}

fn chardev_args(arch: &Arch) -> Vec<String> {
    use names::*;
    let mut chardevs = vec![format!("socket,id=con,path={CONSOLE}")];
    let mut serials = vec!["-serial", "chardev:con"];
    // kgdb's serial port, where the machine has a second one.
    if arch.kgdb_serial.is_some() {
        chardevs.push(format!("socket,id=kgdb,path={KGDB},server=on,wait=off"));
        serials.extend(["-serial", "chardev:kgdb"]);
    }
    chardevs.extend([
        format!("socket,id=mon,path={MONITOR},server=on,wait=off"),
        format!("socket,id=qmp,path={QMP},server=on,wait=off"),
        format!("socket,id=gdb,path={GDB},server=on,wait=off"),
        format!("socket,id=result,path={RESULT}"),
        format!("socket,id=output,path={OUTPUT}"),
    ]);
    chardevs
        .into_iter()
        .flat_map(|c| ["-chardev".to_string(), c])
        .chain(serials.into_iter().map(String::from))
        .chain(
            [
                "-mon",
                "chardev=mon,mode=readline",
                "-mon",
                "chardev=qmp,mode=control",
                "-gdb",
                "chardev:gdb",
                "-device",
                "virtio-serial-pci,id=vser",
            ]
            .map(String::from),
        )
        .chain([
            "-device".to_string(),
            format!("virtserialport,bus=vser.0,chardev=result,name={RESULT_PORT}"),
            "-device".to_string(),
            format!("virtserialport,bus=vser.0,chardev=output,name={OUTPUT_PORT}"),
        ])
        .collect()
}

/// A host path as the value of a qemu option (`path=`, `file=`): qemu's
/// option syntax splits on commas, and a doubled comma stands for one.
fn opt_path(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

/// A read-only 9p share as `-fsdev` + `-device` arguments.
fn share(id: &str, path: &Path, tag: &str) -> Vec<String> {
    let path = opt_path(path);
    vec![
        "-fsdev".into(),
        format!("local,id={id},path={path},security_model=none,multidevs=remap,readonly=on"),
        "-device".into(),
        format!("virtio-9p-pci,fsdev={id},mount_tag={tag}"),
    ]
}

fn disk_args(input: &PlanInput) -> Vec<String> {
    let mut v = Vec::new();
    if let Root::Image { path, format } = &input.root {
        let format = match format {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
        };
        // snapshot=on sends every write to a temporary overlay: the image
        // file is never modified. Listed first, the root disk is /dev/vda
        // and scratch disks follow it.
        v.extend([
            "-drive".into(),
            format!(
                "file={},if=none,id=root,format={format},snapshot=on,cache=unsafe",
                opt_path(path)
            ),
            "-device".into(),
            "virtio-blk-pci,drive=root".into(),
        ]);
    }
    for n in 0..input.scratch {
        v.extend([
            "-drive".into(),
            format!(
                "file={},if=none,id=scratch{n},format=raw,cache=unsafe,discard=unmap",
                names::scratch(n)
            ),
            "-device".into(),
            format!("virtio-blk-pci,drive=scratch{n},serial=ktest-scratch-{n}"),
        ]);
    }
    v
}

fn net_args(input: &PlanInput) -> Vec<String> {
    vec![
        "-netdev".into(),
        // restrict=on: the guest reaches nothing, neither the host's
        // 127.0.0.1 services through 10.0.2.2 (other VMs' ssh ports among
        // them) nor beyond; only the forward for `ktest ssh` comes in.
        format!(
            "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{}-:22",
            input.ssh_port
        ),
        "-device".into(),
        // No option ROM: ktest boots with -kernel, never over the network.
        format!("virtio-net-pci,netdev=net0,mac={},romfile=", input.mac),
    ]
}

/// What the image's `/bin/sh -c` runs as the guest's init: mount the
/// per-VM share and run ktest's init from it, so the image needs no ktest
/// files. The initramfs runs the same (src/initramfs.rs).
pub fn image_init() -> String {
    format!(
        "mkdir -p {dir} && mount -t 9p -o trans=virtio,version=9p2000.L {tag} {dir} && {{ [ -x /bin/bash ] && exec /bin/bash {dir}/{init}; exec {dir}/{init}; }}",
        dir = names::GUEST_VM_DIR,
        tag = names::SHARE_TAG,
        init = names::INIT
    )
}

/// Quotes a kernel command line value if it has spaces.
fn kparam(key: &str, value: &str) -> String {
    if value.contains(char::is_whitespace) {
        format!("\"{key}={value}\"")
    } else {
        format!("{key}={value}")
    }
}

/// The kernel command line. It names no host path but the guest init's (the
/// ktest binary, with the host's root): the per-VM directory reaches the
/// guest as a 9p share, so the user's directory names never need quoting.
pub fn cmdline(input: &PlanInput) -> String {
    let mut p: Vec<String> = vec![
        names::GUEST_MARKER.into(),
        format!("console={}", input.arch.console),
    ];
    // kgdb talks over the second serial port (kgdb.sock) for `ktest kgdb`.
    if let Some(port) = input.arch.kgdb_serial {
        p.push(format!("kgdboc={port}"));
    }
    p.extend([
        // The TCG CPUs (arch.rs) have a hardware RNG that seeds the
        // kernel's at boot.
        "random.trust_cpu=on".into(),
        // Crash fast: an oops panics, a panic reboots, and qemu -no-reboot exits.
        "panic=-1".into(),
        "oops=panic".into(),
        "nokaslr".into(),
        // The guest init marks each subtest's start and end in the kernel
        // log through /dev/kmsg, which by default drops all but 10 lines
        // per 5 s.
        "printk.devkmsg=on".into(),
    ]);
    p.extend(input.arch.cmdline.iter().map(|w| w.to_string()));
    match (&input.root, &input.initrd) {
        (Root::Host, None) => {
            p.extend(["root=/dev/root", "rootfstype=9p", "ro"].map(String::from));
            p.push(format!("rootflags={}", crate::initramfs::ROOTFLAGS));
            p.push(kparam("init", &input.init.to_string_lossy()));
        }
        // The initramfs's init (lib/initramfs/init) loads the modules,
        // mounts the root as the kernel would have, and execs KTEST_INIT.
        (Root::Host, Some(_)) => p.push(kparam("KTEST_INIT", &input.init.to_string_lossy())),
        (Root::Image { .. }, None) => {
            p.extend(["root=/dev/vda", "rw"].map(String::from));
            // The image's own /bin/sh mounts the per-VM share and runs
            // ktest's init from it, so the image needs no ktest files.
            p.push("init=/bin/sh".into());
        }
        // The initramfs mounts /dev/vda and runs the image's /bin/sh.
        (Root::Image { .. }, Some(_)) => {}
    }
    // Unknown parameters without a dot reach init's environment.
    p.push(format!(
        "KTEST_ROOT={}",
        if input.root == Root::Host {
            "host"
        } else {
            "image"
        }
    ));
    if input.modules.is_some() {
        p.push(format!("KTEST_MODULES={}", names::MODULES_TAG));
    }
    if matches!(input.root, Root::Image { .. }) && input.test_dir.is_some() {
        p.push(format!("KTEST_TEST_TAG={}", names::TEST_TAG));
    }
    p.extend(input.append.iter().cloned());
    // Arguments after "--" go to init.
    match input.root {
        Root::Host => p.push(format!("-- {}", names::GUEST_INIT_ARG)),
        // The image's /bin/sh. The init runs under bash when there is one
        // (see guest_init::shell).
        Root::Image { .. } => p.push(format!("-- -c \"{}\"", image_init())),
    }
    p.join(" ")
}

/// The longest kernel command line the kernel takes: COMMAND_LINE_SIZE is
/// 2048 bytes with the terminating NUL on x86 and arm64. Longer ones are
/// cut silently.
pub const CMDLINE_MAX: usize = 2047;

/// Why a plan cannot boot as planned; found before anything starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// The kernel command line is longer than the kernel takes.
    CmdlineTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The guest init's path cannot be written on the kernel command line.
    UnquotableInit(PathBuf),
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::CmdlineTooLong { len } => write!(
                f,
                "the kernel command line would be {len} bytes, and the kernel takes at most {CMDLINE_MAX}\n  shorten the test's APPEND"
            ),
            PlanError::UnquotableInit(p) => write!(
                f,
                "the ktest binary's path {} cannot be written on the kernel command line (it has a '\"' or a control character), and the guest runs it as init\n  copy or install ktest to a plain path",
                p.display()
            ),
        }
    }
}

/// Checks what the kernel would get wrong silently or fail on at boot.
pub fn check(input: &PlanInput, plan: &VmPlan) -> Result<(), PlanError> {
    let init = input.init.to_string_lossy();
    if input.root == Root::Host && init.contains(|c: char| c == '"' || c.is_control()) {
        return Err(PlanError::UnquotableInit(input.init.clone()));
    }
    if plan.cmdline.len() > CMDLINE_MAX {
        return Err(PlanError::CmdlineTooLong {
            len: plan.cmdline.len(),
        });
    }
    Ok(())
}

/// Builds the VM plan.
pub fn plan(input: &PlanInput) -> VmPlan {
    let cmdline = cmdline(input);
    let mut args = machine_args(input);
    args.extend([
        "-kernel".into(),
        input.kernel.to_string_lossy().into_owned(),
        "-append".into(),
        cmdline.clone(),
    ]);
    if let Some(initrd) = &input.initrd {
        args.extend(["-initrd".into(), initrd.to_string_lossy().into_owned()]);
    }
    args.extend(chardev_args(input.arch));
    if input.root == Root::Host {
        args.extend(share("root", Path::new("/"), "/dev/root"));
    }
    args.extend(share("share", &input.vm_dir, names::SHARE_TAG));
    if let (Root::Image { .. }, Some(dir)) = (&input.root, &input.test_dir) {
        // The image does not have the test: share its directory, which
        // the guest mounts at the same path (with a tmpfs overlay).
        args.extend(share("test", dir, names::TEST_TAG));
    }
    if let Some(m) = &input.modules {
        args.extend(share("modules", m, names::MODULES_TAG));
    }
    args.extend(disk_args(input));
    args.extend(net_args(input));
    VmPlan {
        program: input.qemu.clone(),
        args,
        cmdline,
    }
}

/// How many virtio PCI devices (`-device virtio-*-pci`) a plan has: each
/// takes one of the machine's PCI slots.
pub fn virtio_pci_devices(plan: &VmPlan) -> usize {
    plan.args
        .windows(2)
        .filter(|w| w[0] == "-device")
        .filter(|w| {
            let driver = w[1].split(',').next().unwrap_or_default();
            driver.starts_with("virtio-") && driver.ends_with("-pci")
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> PlanInput {
        PlanInput {
            arch: &crate::arch::X86_64,
            qemu: "qemu-system-x86_64".into(),
            kernel: "/k/bzImage".into(),
            mem: 512 << 20,
            cpus: 2,
            accel: Accel::Tcg,
            scratch: 2,
            ssh_port: 22203,
            mac: "52:54:00:6b:00:03".into(),
            vm_dir: "/src/.ktest/vm".into(),
            append: vec!["foo=1".into()],
            root: Root::Host,
            modules: None,
            initrd: None,
            test_dir: None,
            init: "/usr/bin/ktest".into(),
        }
    }

    fn pairs(plan: &VmPlan, flag: &str) -> Vec<String> {
        plan.args
            .windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    }

    #[test]
    fn host_root_plan() {
        let p = plan(&input());
        assert_eq!(pairs(&p, "-m"), vec!["512M"]);
        assert_eq!(pairs(&p, "-smp"), vec!["2"]);
        assert_eq!(pairs(&p, "-accel"), vec!["tcg"]);
        assert_eq!(pairs(&p, "-cpu"), vec!["qemu64,+rdrand"]);
        assert!(p.cmdline.contains(" random.trust_cpu=on "));
        assert!(p.cmdline.contains(" i8042.noaux "));
        assert!(
            !p.cmdline.contains("i8042.nokbd"),
            "sysrq needs the keyboard"
        );
        assert!(p.args.contains(&"-no-reboot".to_string()));
        assert_eq!(pairs(&p, "-kernel"), vec!["/k/bzImage"]);
        assert_eq!(pairs(&p, "-append"), vec![p.cmdline.clone()]);
        let fsdev = pairs(&p, "-fsdev");
        assert_eq!(fsdev.len(), 2);
        assert!(fsdev[0].contains("path=/,") && fsdev[0].contains("readonly=on"));
        // The per-VM directory is shared, not named on the command line.
        assert!(fsdev[1].contains("path=/src/.ktest/vm,") && fsdev[1].contains("readonly=on"));
        assert!(!p.cmdline.contains("/src"), "{}", p.cmdline);
        assert!(p.cmdline.contains("root=/dev/root rootfstype=9p"));
        assert!(p.cmdline.contains("init=/usr/bin/ktest"));
        assert!(p.cmdline.starts_with("ktest.guest=1 "));
        assert!(p.cmdline.contains(" kgdboc=ttyS1 "));
        assert!(
            p.cmdline.ends_with("foo=1 -- --ktest-guest-init"),
            "APPEND must come last, before init's argument: {}",
            p.cmdline
        );
        let net = pairs(&p, "-netdev");
        assert_eq!(
            net,
            vec!["user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:22203-:22"]
        );
        assert!(pairs(&p, "-device")
            .iter()
            .any(|d| d.contains("mac=52:54:00:6b:00:03")));
    }

    #[test]
    fn scratch_disks_in_declared_order() {
        let p = plan(&input());
        let drives = pairs(&p, "-drive");
        assert_eq!(drives.len(), 2);
        assert!(drives[0].starts_with("file=scratch-0.img,"));
        assert!(drives[1].starts_with("file=scratch-1.img,"));
        let devices: Vec<String> = pairs(&p, "-device")
            .into_iter()
            .filter(|d| d.starts_with("virtio-blk-pci"))
            .collect();
        assert_eq!(devices.len(), 2);
        assert!(devices[0].contains("drive=scratch0"));
    }

    #[test]
    fn sockets_are_relative_and_ktest_listens_on_console_and_result() {
        let p = plan(&input());
        let chardevs = pairs(&p, "-chardev");
        assert!(chardevs.iter().all(|c| !c.contains("path=/")));
        let con = chardevs.iter().find(|c| c.contains("id=con")).unwrap();
        assert!(!con.contains("server=on"));
        for id in ["id=result", "id=output"] {
            let c = chardevs.iter().find(|c| c.contains(id)).unwrap();
            assert!(!c.contains("server=on"), "{c}");
        }
        let ports = pairs(&p, "-device");
        assert!(ports
            .iter()
            .any(|d| d.ends_with("chardev=output,name=ktest.output")));
        assert!(chardevs.iter().filter(|c| c.contains("server=on")).count() == 4);
    }

    #[test]
    fn arm64_boots_the_virt_machine_on_its_console() {
        let mut i = input();
        i.arch = &crate::arch::ARM64;
        i.qemu = "qemu-system-aarch64".into();
        i.root = Root::Image {
            path: "/img".into(),
            format: ImageFormat::Raw,
        };
        let p = plan(&i);
        assert_eq!(pairs(&p, "-machine"), vec!["virt"]);
        assert_eq!(pairs(&p, "-cpu"), vec!["max,pauth-impdef=on"]);
        assert!(p.cmdline.contains(" console=ttyAMA0 "), "{}", p.cmdline);
        for x86 in ["ttyS", "kgdboc", "acpi=", "i8042"] {
            assert!(!p.cmdline.contains(x86), "{x86} in {}", p.cmdline);
        }
        // One serial port: the console; no kgdb socket.
        assert_eq!(pairs(&p, "-serial"), vec!["chardev:con"]);
        assert!(!pairs(&p, "-chardev").iter().any(|c| c.contains("kgdb")));
        assert!(p.cmdline.contains("root=/dev/vda"));
        // virt has no keyboard for sysrq: ktest adds one (x86's pc has one).
        assert!(pairs(&p, "-device").contains(&"virtio-keyboard-pci".to_string()));
        assert!(!pairs(&plan(&input()), "-device")
            .iter()
            .any(|d| d.contains("keyboard")));
    }

    #[test]
    fn kvm_uses_host_cpu() {
        let mut i = input();
        i.accel = Accel::Kvm;
        let p = plan(&i);
        assert_eq!(pairs(&p, "-accel"), vec!["kvm"]);
        assert_eq!(pairs(&p, "-cpu"), vec!["host"]);
    }

    #[test]
    fn image_root_is_snapshotted_and_first() {
        let mut i = input();
        i.root = Root::Image {
            path: "/var/lib/ktest/root".into(),
            format: ImageFormat::Raw,
        };
        i.test_dir = Some("/src/tests".into());
        let p = plan(&i);
        let drives = pairs(&p, "-drive");
        assert_eq!(drives.len(), 3);
        assert!(
            drives[0].contains("file=/var/lib/ktest/root") && drives[0].contains("snapshot=on")
        );
        assert!(p.cmdline.contains("root=/dev/vda"));
        assert!(p.cmdline.contains("init=/bin/sh"));
        assert!(p.cmdline.ends_with(
            "[ -x /bin/bash ] && exec /bin/bash /run/ktest/init; exec /run/ktest/init; }\""
        ));
        let fsdevs = pairs(&p, "-fsdev");
        assert!(fsdevs[0].contains("path=/src/.ktest/vm,"));
        assert!(fsdevs[1].contains("path=/src/tests,") && fsdevs[1].contains("readonly=on"));
        assert!(p.cmdline.contains("KTEST_TEST_TAG=ktest-test"));
        assert!(p.cmdline.contains("KTEST_ROOT=image"));
    }

    #[test]
    fn qcow2_images_are_opened_as_qcow2() {
        let mut i = input();
        i.root = Root::Image {
            path: "/img.qcow2".into(),
            format: ImageFormat::Qcow2,
        };
        assert!(pairs(&plan(&i), "-drive")[0].contains("format=qcow2,snapshot=on"));
    }

    #[test]
    fn init_paths_with_spaces_are_quoted() {
        let mut i = input();
        i.init = "/my bin/ktest".into();
        let c = cmdline(&i);
        assert!(c.contains(" \"init=/my bin/ktest\" "), "{c}");
        assert_eq!(check(&i, &plan(&i)), Ok(()));
    }

    #[test]
    fn commas_in_host_paths_are_doubled_for_qemu() {
        let mut i = input();
        i.vm_dir = "/a,b \"c\"/.ktest/vm".into();
        i.root = Root::Image {
            path: "/img,1".into(),
            format: ImageFormat::Raw,
        };
        let p = plan(&i);
        assert!(pairs(&p, "-drive")[0].starts_with("file=/img,,1,"));
        assert!(pairs(&p, "-fsdev")[0].contains("path=/a,,b \"c\"/.ktest/vm,"));
        assert!(!p.cmdline.contains("/a,"));
        assert_eq!(check(&i, &p), Ok(()));
    }

    #[test]
    fn unbootable_command_lines_are_refused() {
        let mut i = input();
        i.init = "/odd\"dir/ktest".into();
        assert_eq!(
            check(&i, &plan(&i)),
            Err(PlanError::UnquotableInit(i.init.clone()))
        );
        let mut i = input();
        i.append = vec!["x".repeat(CMDLINE_MAX)];
        let p = plan(&i);
        assert_eq!(
            check(&i, &p),
            Err(PlanError::CmdlineTooLong {
                len: p.cmdline.len()
            })
        );
        // Exactly at the limit is fine.
        let mut i = input();
        let base = plan(&i).cmdline.len();
        i.append.push("y".repeat(CMDLINE_MAX - base - 1));
        let p = plan(&i);
        assert_eq!(p.cmdline.len(), CMDLINE_MAX);
        assert_eq!(check(&i, &p), Ok(()));
    }

    #[test]
    fn an_initramfs_takes_over_mounting_the_root() {
        let mut i = input();
        i.initrd = Some("/cache/ab.cpio.gz".into());
        i.modules = Some("/lib/modules/6.1.0-57-amd64".into());
        i.init = "/my bin/ktest".into();
        let p = plan(&i);
        assert_eq!(pairs(&p, "-initrd"), vec!["/cache/ab.cpio.gz"]);
        assert!(
            p.cmdline.contains(" \"KTEST_INIT=/my bin/ktest\" "),
            "{}",
            p.cmdline
        );
        assert!(
            !p.cmdline.contains("root=") && !p.cmdline.contains("init=/"),
            "{}",
            p.cmdline
        );
        assert!(p.cmdline.contains(" KTEST_ROOT=host "));
        assert!(p.cmdline.contains(" KTEST_MODULES=ktest-modules "));
        assert!(p.cmdline.ends_with("-- --ktest-guest-init"));
        assert!(pairs(&p, "-fsdev")
            .iter()
            .any(|f| f.contains("path=/lib/modules/6.1.0-57-amd64,") && f.contains("readonly=on")));
        i.root = Root::Image {
            path: "/img".into(),
            format: ImageFormat::Raw,
        };
        let p = plan(&i);
        assert!(
            !p.cmdline.contains("root=") && !p.cmdline.contains("init="),
            "{}",
            p.cmdline
        );
        assert!(p.cmdline.contains(" KTEST_ROOT=image "));
        assert!(p.cmdline.contains("-- -c \"mkdir -p /run/ktest"));
    }

    #[test]
    fn shell_line_quotes() {
        let p = plan(&input());
        let line = p.shell_line();
        assert!(line.starts_with("qemu-system-x86_64 -nodefaults"));
        assert!(line.contains("'ktest.guest=1 console=ttyS0 "));
    }

    #[test]
    fn virtio_pci_devices_are_counted() {
        // virtio-serial, the root share, the per-VM share, two scratch
        // disks, the network; virtio-serial ports are not PCI devices.
        assert_eq!(virtio_pci_devices(&plan(&input())), 6);
        let mut i = input();
        i.scratch = 0;
        i.modules = Some("/k".into());
        assert_eq!(virtio_pci_devices(&plan(&i)), 5);
    }
}
