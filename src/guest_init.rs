//! The guest's PID 1 with the host's root: ktest itself.
//!
//! The kernel runs the ktest binary (visible through the 9p root) as init.
//! It sets up the root overlay and the standard mounts with plain system
//! calls, then hands over to lib/guest/init.sh for the test. Under TCG every
//! exec of a dynamically linked tool costs 50-500 ms (mount, ip, hostname),
//! so doing this part without forking is most of the difference between
//! ktest's boot and a bare kernel's.
//!
//! Failures print the console markers src/console.rs knows, so the host
//! reports them instead of a mysterious "attempted to kill init" panic.
//!
//! Being PID 1 is not enough to be a guest: ktest is also a container's
//! entry point. src/main.rs comes here only with the argument the kernel
//! command line passes (`plan::names::GUEST_INIT_ARG`), and nothing here
//! mounts, pivots or reboots before /proc/cmdline shows the marker every
//! ktest VM has (`plan::names::GUEST_MARKER`).

use crate::plan::names;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, chroot, execv, pivot_root, sethostname};
use std::ffi::CString;
use std::path::Path;

type R<T> = std::result::Result<T, String>;

fn mnt(src: &str, target: &str, fstype: &str, flags: MsFlags, data: Option<&str>) -> R<()> {
    mount(Some(src), target, Some(fstype), flags, data)
        .map_err(|e| format!("mount {fstype} on {target}: {e}"))
}

fn mkdir_p(p: &str) -> R<()> {
    std::fs::create_dir_all(p).map_err(|e| format!("mkdir {p}: {e}"))
}

/// Puts a tmpfs overlay over the read-only 9p root and pivots into it.
fn overlay_root() -> R<()> {
    mnt(
        "ktest-rw",
        "/tmp",
        "tmpfs",
        MsFlags::empty(),
        Some("mode=0755"),
    )?;
    for d in ["/tmp/upper", "/tmp/work", "/tmp/root"] {
        mkdir_p(d)?;
    }
    mnt(
        "ktest-root",
        "/tmp/root",
        "overlay",
        MsFlags::empty(),
        Some("lowerdir=/,upperdir=/tmp/upper,workdir=/tmp/work"),
    )
    .map_err(|e| format!("{e} (is CONFIG_OVERLAY_FS set?)"))?;
    mkdir_p("/tmp/root/.oldroot")?;
    chdir("/tmp/root").map_err(|e| format!("cd /tmp/root: {e}"))?;
    pivot_root(".", ".oldroot").map_err(|e| format!("pivot_root: {e}"))?;
    chroot(".").map_err(|e| format!("chroot: {e}"))?;
    chdir("/").map_err(|e| format!("cd /: {e}"))?;
    Ok(())
}

/// proc, sysfs, devtmpfs, devpts, shm, a private /run with the per-VM
/// directory in it, debugfs, modules.
fn standard_mounts() -> R<()> {
    let none = MsFlags::empty();
    mnt("proc", "/proc", "proc", none, None)?;
    mnt("sysfs", "/sys", "sysfs", none, None)?;
    mnt("devtmpfs", "/dev", "devtmpfs", none, None)?;
    mkdir_p("/dev/pts")?;
    mkdir_p("/dev/shm")?;
    mnt(
        "devpts",
        "/dev/pts",
        "devpts",
        none,
        Some("gid=5,mode=620,ptmxmode=666"),
    )?;
    mnt("tmpfs", "/dev/shm", "tmpfs", none, None)?;
    let _ = umount2("/.oldroot", MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir("/.oldroot");
    // Host daemons' pid files and sockets in /run would confuse the guest.
    mnt("tmpfs", "/run", "tmpfs", none, Some("mode=0755"))?;
    mkdir_p(names::GUEST_VM_DIR)?;
    mnt(
        names::SHARE_TAG,
        names::GUEST_VM_DIR,
        "9p",
        MsFlags::MS_RDONLY,
        Some("trans=virtio,version=9p2000.L"),
    )?;
    let _ = mnt("debugfs", "/sys/kernel/debug", "debugfs", none, None);
    if let Ok(tag) = std::env::var("KTEST_MODULES") {
        // The kernel's own tree, where modprobe looks for it.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_err(|e| format!("/proc/sys/kernel/osrelease: {e}"))?;
        let dir = format!("/lib/modules/{}", release.trim());
        mkdir_p(&dir)?;
        mnt(
            &tag,
            &dir,
            "9p",
            MsFlags::MS_RDONLY,
            Some("trans=virtio,version=9p2000.L"),
        )?;
    }
    Ok(())
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    req
}

fn sockaddr_in(ip: [u8; 4]) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; this is how the
    // ioctl interface takes IPv4 addresses.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// One network ioctl on an AF_INET socket.
fn ioctl<T>(request: libc::c_ulong, arg: &mut T, what: &str) -> R<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsRawFd;
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::empty(),
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    // SAFETY: `arg` is the structure `request` reads or writes.
    if unsafe { libc::ioctl(sock.as_raw_fd(), request, arg as *mut T) } < 0 {
        return Err(format!("{what}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Brings an interface up (what `ip link set NAME up` does).
fn link_up(name: &str) -> R<()> {
    let mut req = ifreq(name);
    ioctl(libc::SIOCGIFFLAGS, &mut req, &format!("{name} flags"))?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    ioctl(libc::SIOCSIFFLAGS, &mut req, &format!("{name} up"))
}

/// Configures eth0 for qemu's user network, which is always 10.0.2.0/24
/// with the host at .2 and its DNS at .3, so no DHCP client is needed.
/// Done here rather than with `ip` in the init script: that one exec costs
/// about 0.15 s of guest CPU under TCG on every run.
fn eth0_up() -> R<()> {
    let mut req = ifreq("eth0");
    req.ifr_ifru.ifru_addr = sockaddr_in([10, 0, 2, 15]);
    ioctl(libc::SIOCSIFADDR, &mut req, "eth0 address")?;
    req.ifr_ifru.ifru_netmask = sockaddr_in([255, 255, 255, 0]);
    ioctl(libc::SIOCSIFNETMASK, &mut req, "eth0 netmask")?;
    link_up("eth0")?;
    // SAFETY: rtentry is plain old data; all zeroes is a valid value.
    let mut route: libc::rtentry = unsafe { std::mem::zeroed() };
    route.rt_dst = sockaddr_in([0, 0, 0, 0]);
    route.rt_genmask = sockaddr_in([0, 0, 0, 0]);
    route.rt_gateway = sockaddr_in([10, 0, 2, 2]);
    route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    ioctl(libc::SIOCADDRT, &mut route, "default route")?;
    // A link into systemd-resolved's /run would lead nowhere in the guest.
    let _ = std::fs::remove_file("/etc/resolv.conf");
    std::fs::write("/etc/resolv.conf", "nameserver 10.0.2.3\n")
        .map_err(|e| format!("/etc/resolv.conf: {e}"))
}

/// The /dev node of the virtio-serial port named `name`.
fn find_port(name: &str) -> R<String> {
    let ports = std::fs::read_dir("/sys/class/virtio-ports")
        .map_err(|e| format!("/sys/class/virtio-ports: {e} (is CONFIG_VIRTIO_CONSOLE set?)"))?;
    for p in ports.flatten() {
        let n = std::fs::read_to_string(p.path().join("name")).unwrap_or_default();
        if n.trim() == name {
            return Ok(format!("/dev/{}", p.file_name().to_string_lossy()));
        }
    }
    Err(format!("no virtio-serial port named {name}"))
}

/// Sets the guest up; returns the result port and the output port.
fn setup() -> R<(String, String)> {
    if std::env::var("KTEST_ROOT").as_deref() == Ok("host") {
        overlay_root()?;
    }
    standard_mounts()?;
    let _ = sethostname("ktest");
    link_up("lo")?;
    // Without a network `ktest ssh` says why (lib/guest/init.sh); the test
    // itself runs either way.
    match eth0_up() {
        Ok(()) => std::env::set_var("KTEST_NET", "up"),
        Err(e) => std::env::set_var("KTEST_NET", e),
    }
    Ok((
        find_port(names::RESULT_PORT)?,
        find_port(names::OUTPUT_PORT)?,
    ))
}

/// Whether a kernel command line is a ktest VM's.
fn is_guest_cmdline(cmdline: &str) -> bool {
    cmdline.split_whitespace().any(|w| w == names::GUEST_MARKER)
}

/// Reads the running kernel's command line through a private /proc mount,
/// taken away again so the overlay setup finds /proc as it was.
fn kernel_cmdline() -> R<String> {
    mnt("proc", "/proc", "proc", MsFlags::empty(), None)?;
    let text = std::fs::read_to_string("/proc/cmdline");
    let _ = umount2("/proc", MntFlags::MNT_DETACH);
    text.map_err(|e| format!("/proc/cmdline: {e}"))
}

/// Reports a failure on the console and ends the VM (qemu runs with
/// -no-reboot, so a reboot ends it). Only reached once the kernel command
/// line showed this is a ktest guest; no file is written to reboot.
fn fail(msg: &str) -> ! {
    crate::outln!("ktest-guest: error: {msg}");
    crate::outln!("ktest-guest: end status=125");
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// Runs as the guest's PID 1; never returns. Outside a ktest VM (PID 1 of a
/// container started with the guest argument) it changes nothing and exits.
pub fn main() -> ! {
    match kernel_cmdline() {
        Ok(c) if is_guest_cmdline(&c) => {}
        other => {
            let why = other.err().unwrap_or_else(|| "no ktest marker".into());
            crate::errln!(
                "ktest: {} is for the init of ktest's own VMs, and this is not one ({why})",
                names::GUEST_INIT_ARG
            );
            std::process::exit(2);
        }
    }
    let (result, output) = match setup() {
        Ok(p) => p,
        Err(e) => fail(&e),
    };
    std::env::set_var("KTEST_RESULT_PORT", &result);
    std::env::set_var("KTEST_OUTPUT_PORT", &output);
    let init = format!("{}/{}", names::GUEST_VM_DIR, names::INIT);
    if !Path::new(&init).exists() {
        fail(&format!("{init} is missing"));
    }
    let sh = shell(Path::new(BASH).exists());
    let argv = [
        CString::new(sh).unwrap_or_default(),
        CString::new(init).unwrap_or_default(),
        CString::new("stage2").unwrap_or_default(),
    ];
    let e = execv(&argv[0], &argv).unwrap_err();
    fail(&format!("exec {sh}: {e}"))
}

const BASH: &str = "/bin/bash";

/// The shell that runs the init script: bash when the root has it. dash's
/// `read` takes one byte per read(2), and /proc/sys/kernel/tainted (an
/// integer sysctl) answers only the first: "512" reads as "5". bash reads
/// a seekable file in blocks. Without bash, the init reports the taint as
/// unknown and ktest skips the taint check.
fn shell(have_bash: bool) -> &'static str {
    if have_bash {
        BASH
    } else {
        "/bin/sh"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_runs_under_bash_when_there_is_one() {
        assert_eq!(shell(true), "/bin/bash");
        assert_eq!(shell(false), "/bin/sh");
    }

    #[test]
    fn only_the_marker_word_makes_a_guest() {
        assert!(is_guest_cmdline(
            "ktest.guest=1 console=ttyS0 init=/usr/bin/ktest -- --ktest-guest-init\n"
        ));
        assert!(!is_guest_cmdline(
            "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet\n"
        ));
        assert!(!is_guest_cmdline("xktest.guest=1 ktest.guest=10"));
    }
}
