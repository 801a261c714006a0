//! End-to-end tests of `ktest run` on a root image made by create-vm-image:
//! the image is the guest's root, the test and its REQUIRE files are shared
//! in, scratch disks follow the root disk, and the image file never changes.

mod common;

use common::*;
use std::path::Path;

fn sha256(p: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

const ON_IMAGE: &str = r#"#!/bin/sh
if [ "$1" = deps ]; then
	echo MEM=256M
	echo SCRATCH=32M
	echo REQUIRE=ktest-e2e-helper
	exit 0
fi
set -e
grep -q '^format=1$' /etc/ktest-image
. /etc/os-release
echo "os: $ID $VERSION_CODENAME"
echo "scratch vdb: $(cat /sys/block/vdb/size) sectors"
ktest-e2e-helper
echo "written by the test" >/etc/written-by-test
rm -rf /usr/share/doc
echo "beside the test" >./beside-the-test
echo "test dir: $(pwd)"
"#;

#[test]
fn runs_on_the_image_and_never_changes_it() {
    let img = rootfs_image();
    let before = sha256(img);
    let s = Sandbox::new();
    let test = s.script("on-image", ON_IMAGE);
    let bin = s.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    s.script(
        "bin/ktest-e2e-helper",
        "#!/bin/sh\necho helper from the host ran\n",
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = s
        .run_cmd()
        .env("PATH", path)
        .arg("--root")
        .arg(img)
        .arg(&test)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("os: debian "), "{t}");
    // Scratch disks follow the root disk: /dev/vdb is the first.
    assert!(t.contains("scratch vdb: 65536 sectors"), "{t}");
    assert!(t.contains("helper from the host ran"), "{t}");
    assert!(
        t.contains(&format!("test dir: {}", s.path().display())),
        "{t}"
    );
    // Writes stayed in the guest.
    assert!(!s.path().join("beside-the-test").exists());
    assert_eq!(sha256(img), before, "the image file changed");
    s.assert_clean();
}

#[test]
fn default_image_location_and_root_host() {
    let img = rootfs_image();
    let s = Sandbox::new();
    let home = s.path().join("home");
    std::fs::create_dir_all(home.join(".ktest")).unwrap();
    std::os::unix::fs::symlink(img, home.join(".ktest/root")).unwrap();
    let test = s.script(
        "which-root",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=256M; exit 0; }\n\
         if [ -e /etc/ktest-image ]; then echo root=image; else echo root=host; fi\n",
    );
    let run = |extra: &[&str]| {
        let out = s
            .ktest()
            .env("HOME", &home)
            .arg("run")
            .args(extra)
            .arg("--kernel")
            .arg(bzimage())
            .arg(&test)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        text(&out)
    };
    // ~/.ktest/root is found when there is no /var/lib/ktest/root, which
    // is looked at first.
    if require(
        !Path::new("/var/lib/ktest/root").exists(),
        "no /var/lib/ktest/root",
        "ktest would boot it instead of ~/.ktest/root; move it aside",
    ) {
        assert!(run(&[]).contains("root=image"));
    }
    assert!(run(&["--root", "host"]).contains("root=host"));
    s.assert_clean();
}

#[test]
fn a_root_that_is_not_an_image_is_refused() {
    let s = Sandbox::new();
    let test = s.script(
        "t",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=128M; exit 0; }\n",
    );
    let junk = s.path().join("junk");
    std::fs::write(&junk, "not an image").unwrap();
    let out = s
        .run_cmd()
        .arg("--root")
        .arg(&junk)
        .arg(&test)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("not a root image"), "{t}");
    assert_eq!(s.vm_dirs_left(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn the_example_hello_test_passes_on_the_image() {
    let s = Sandbox::new();
    let out = s
        .run_cmd()
        .arg("--root")
        .arg(rootfs_image())
        .arg(repo().join("tests/hello"))
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("hello from 6.1"), "{t}");
    s.assert_clean();
}
