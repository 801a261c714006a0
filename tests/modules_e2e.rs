//! End-to-end tests of kernels whose guest drivers are modules: Debian's
//! generic kernel (tests/distro-kernel.sh unpacks it as an installed
//! kernel is laid out, boot/vmlinuz-R beside lib/modules/R), booted with
//! the initramfs ktest makes from its modules, on the host's root and on a
//! root image, with tests that modprobe more of its modules; and the
//! errors for kernels whose modules ktest cannot find.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// ramdisk (brd) as a module: load it, make a file system on it, use it.
/// virtio_pci must be a loaded module: the initramfs loaded it.
const BRD: &str = r#"#!/bin/sh
if [ "$1" = deps ]; then
	echo MEM=512M
	echo KCONFIG=BLK_DEV_RAM
	exit 0
fi
set -e
grep -q '^virtio_pci ' /proc/modules
modprobe brd rd_nr=1 rd_size=32768
mkfs.ext4 -q /dev/ram0
mkdir -p /mnt/ram
mount /dev/ram0 /mnt/ram
echo data >/mnt/ram/f
[ "$(cat /mnt/ram/f)" = data ]
umount /mnt/ram
echo "brd ok on $(uname -r)"
"#;

/// A ktest run with its own initramfs cache under the sandbox.
fn run(s: &Sandbox, kernel: &Path) -> Command {
    let mut c = s.ktest();
    c.env("XDG_CACHE_HOME", s.path().join("cache"))
        .arg("run")
        .arg("--kernel")
        .arg(kernel);
    c
}

/// The initramfs archives cached for the sandbox.
fn archives(s: &Sandbox) -> Vec<PathBuf> {
    let dir = s.path().join("cache/ktest/initramfs");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.to_string_lossy().contains(".cpio"));
    v
}

#[test]
fn distribution_kernel_on_the_host_root_loads_its_modules() {
    let s = Sandbox::new();
    let test = s.script("brd.ktest", BRD);
    let out = run(&s, &distro_image()).arg(&test).output().unwrap();
    check(
        &out,
        0,
        &[
            &format!("brd ok on {}", distro_release()),
            "CONFIG_BLK_DEV_RAM is a module in this kernel",
            "brd.ktest: 1 passed",
        ],
    );
    s.assert_clean();
    let built = archives(&s);
    assert_eq!(built.len(), 1, "{built:?}");
    assert_eq!(std::fs::metadata(&built[0]).unwrap().mode() & 0o077, 0);

    // The second run builds nothing: the same archive, untouched.
    let ino = std::fs::metadata(&built[0]).unwrap().ino();
    let dry = run(&s, &distro_image())
        .arg("--dry-run")
        .arg(&test)
        .output()
        .unwrap();
    check(&dry, 0, &[&format!("-initrd {}", built[0].display())]);
    assert_eq!(archives(&s), built);
    assert_eq!(std::fs::metadata(&built[0]).unwrap().ino(), ino);
}

#[test]
fn distribution_kernel_on_a_root_image_loads_its_modules() {
    let s = Sandbox::new();
    let test = s.script(
        "loop.ktest",
        r#"#!/bin/sh
if [ "$1" = deps ]; then
	echo MEM=512M
	exit 0
fi
set -e
grep -q '^format=1$' /etc/ktest-image
grep -q '^virtio_blk ' /proc/modules
modprobe loop
truncate -s 64M /tmp/disk
dev=$(losetup -f --show /tmp/disk)
mkfs.ext4 -q "$dev"
mkdir -p /mnt/loop
mount "$dev" /mnt/loop
echo data >/mnt/loop/f
[ "$(cat /mnt/loop/f)" = data ]
umount /mnt/loop
echo "loop ok on $(uname -r)"
"#,
    );
    let out = run(&s, &distro_image())
        .arg("--root")
        .arg(rootfs_image())
        .arg(&test)
        .output()
        .unwrap();
    check(
        &out,
        0,
        &[&format!("loop ok on {}", distro_release()), "1 passed"],
    );
    s.assert_clean();
}

#[test]
fn a_kernel_whose_modules_are_missing_is_refused_before_booting() {
    let s = Sandbox::new();
    let test = s.script(
        "plain.ktest",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=256M; exit 0; }\necho ran\n",
    );
    // The kernel and its config without lib/modules: what copying a
    // distribution's /boot/vmlinuz-R elsewhere gives.
    let boot = s.path().join("pkg/boot");
    std::fs::create_dir_all(&boot).unwrap();
    let release = distro_release();
    for f in [format!("vmlinuz-{release}"), format!("config-{release}")] {
        std::fs::copy(distro_dir().join("boot").join(&f), boot.join(&f)).unwrap();
    }
    let image = boot.join(format!("vmlinuz-{release}"));
    let out = run(&s, &image).arg(&test).output().unwrap();
    check(
        &out,
        2,
        &[
            "CONFIG_VIRTIO_PCI",
            "as modules",
            &format!("no /lib/modules/{release}/modules.dep"),
            "give --modules DIR",
        ],
    );
    assert!(!text(&out).contains("ran"));

    // --modules of a directory without a tree, and of another kernel's.
    let empty = s.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run(&s, &image)
        .arg("--modules")
        .arg(&empty)
        .arg(&test)
        .output()
        .unwrap();
    check(&out, 2, &["no module tree there"]);
    let other = std::fs::read_dir(kernel_dir().join("lib/modules"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let out = run(&s, &image)
        .arg("--modules")
        .arg(&other)
        .arg(&test)
        .output()
        .unwrap();
    check(&out, 2, &[&format!("and the kernel is {release}")]);

    // Each was refused before anything started, and nothing was built.
    s.assert_clean();
    assert!(!s.path().join(".ktest/vms/1").exists());
    assert_eq!(archives(&s), Vec::<PathBuf>::new());
}

#[test]
fn the_running_kernel_is_host() {
    let s = Sandbox::new();
    let release = uname_r();
    let out = run(&s, Path::new("host"))
        .arg("--dry-run")
        .arg(repo().join("tests/hello"))
        .output()
        .unwrap();
    let image = PathBuf::from(format!("/boot/vmlinuz-{release}"));
    if image.exists() {
        // This machine runs a kernel it has the image of: ktest plans to
        // boot exactly that one (or says why it cannot).
        let t = text(&out);
        match out.status.code() {
            Some(0) => assert!(t.contains(&format!("-kernel {}", image.display())), "{t}"),
            _ => check(&out, 2, &["cannot boot ktest's guest"]),
        }
    } else {
        check(
            &out,
            2,
            &[&format!(
                "--kernel host: this machine runs {release}, and {} does not exist",
                image.display()
            )],
        );
    }
    s.assert_clean();
}

fn uname_r() -> String {
    let out = Command::new("uname").arg("-r").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
