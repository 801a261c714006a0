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

/// proc, sysfs, devtmpfs, devpts, shm, a private /run, debugfs, modules.
fn standard_mounts(vm_dir: &str) -> R<()> {
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
    if !vm_dir.starts_with("/run/") {
        mnt("tmpfs", "/run", "tmpfs", none, Some("mode=0755"))?;
    }
    let _ = mnt("debugfs", "/sys/kernel/debug", "debugfs", none, None);
    if let Ok(tag) = std::env::var("KTEST_MODULES") {
        mkdir_p("/lib/modules")?;
        mnt(
            &tag,
            "/lib/modules",
            "9p",
            MsFlags::MS_RDONLY,
            Some("trans=virtio,version=9p2000.L"),
        )?;
    }
    Ok(())
}

/// Brings the loopback interface up (what `ip link set lo up` does).
fn loopback_up() -> R<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsRawFd;
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::empty(),
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    // SAFETY: ifreq is plain old data; the ioctls read and write only it.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(format!(
                "SIOCGIFFLAGS lo: {}",
                std::io::Error::last_os_error()
            ));
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(format!(
                "SIOCSIFFLAGS lo: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
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

fn setup(vm_dir: &str) -> R<String> {
    if std::env::var("KTEST_ROOT").as_deref() == Ok("host") {
        overlay_root()?;
    }
    standard_mounts(vm_dir)?;
    let _ = sethostname("ktest");
    loopback_up()?;
    find_port(crate::plan::names::RESULT_PORT)
}

fn fail(msg: &str) -> ! {
    println!("ktest-guest: error: {msg}");
    println!("ktest-guest: end status=125");
    let _ = std::fs::write("/proc/sysrq-trigger", "b");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// Runs as the guest's PID 1; never returns.
pub fn main() -> ! {
    let Ok(vm_dir) = std::env::var("KTEST_DIR") else {
        fail("KTEST_DIR is not set on the kernel command line");
    };
    let port = match setup(&vm_dir) {
        Ok(p) => p,
        Err(e) => fail(&e),
    };
    std::env::set_var("KTEST_RESULT_PORT", &port);
    let init = format!("{vm_dir}/{}", crate::plan::names::INIT);
    if !Path::new(&init).exists() {
        fail(&format!("{init} is missing"));
    }
    let argv = [
        CString::new("/bin/sh").unwrap_or_default(),
        CString::new(init).unwrap_or_default(),
        CString::new("stage2").unwrap_or_default(),
    ];
    let e = execv(&argv[0], &argv).unwrap_err();
    fail(&format!("exec /bin/sh: {e}"))
}
