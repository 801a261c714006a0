//! `--update` on small hand-made images: no debootstrap, no network, no
//! root (mkfs.ext4 -d and debugfs work on a file as any user).

mod common;

use common::require;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_create-vm-image");

fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A PATH with /usr/sbin, where e2fsprogs lives, whatever the caller's.
fn path_var() -> String {
    format!(
        "/usr/sbin:/sbin:{}",
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    )
}

fn debugfs(img: &Path, request: &str) -> String {
    let out = Command::new(tool("debugfs").unwrap())
        .arg("-R")
        .arg(request)
        .arg(img)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fsck_clean(img: &Path) -> bool {
    Command::new(tool("e2fsck").unwrap())
        .arg("-fn")
        .arg(img)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// A minimal tree shaped like a Debian root, made into a 64M ext4 image.
fn make_image(dir: &Path, marker: Option<&str>) -> PathBuf {
    let root = dir.join("tree");
    for d in [
        "etc/ssh/sshd_config.d",
        "etc/systemd/system/multi-user.target.wants",
        "etc/systemd/network",
        "root",
        "mnt",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(
        root.join("etc/shadow"),
        "root:$y$secret:19000:0:99999:7:::\ndaemon:*:19000::::::\n",
    )
    .unwrap();
    fs::write(root.join("etc/hostname"), "builder\n").unwrap();
    fs::write(root.join("etc/ssh/ssh_host_ed25519_key"), "KEEP-PRIVATE\n").unwrap();
    fs::write(
        root.join("etc/ssh/ssh_host_ed25519_key.pub"),
        "KEEP-PUBLIC\n",
    )
    .unwrap();
    fs::write(root.join("etc/ssh/ssh_host_rsa_key"), "RSA\n").unwrap();
    fs::write(root.join("etc/ssh/ssh_host_ecdsa_key"), "ECDSA\n").unwrap();
    if let Some(m) = marker {
        fs::write(root.join("etc/ktest-image"), m).unwrap();
    }
    let img = dir.join("root.img");
    fs::File::create(&img).unwrap().set_len(64 << 20).unwrap();
    let ok = Command::new(tool("mkfs.ext4").unwrap())
        .args(["-q", "-F", "-d"])
        .arg(&root)
        .arg(&img)
        .status()
        .unwrap();
    assert!(ok.success());
    fs::remove_dir_all(&root).unwrap();
    img
}

fn update(img: &Path) -> Output {
    Command::new(BIN)
        .arg("--update")
        .arg(img)
        .env("PATH", path_var())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// e2fsprogs is installed, or the caller skips (fails under CI).
fn have_e2fsprogs() -> bool {
    let ok = ["mkfs.ext4", "debugfs", "e2fsck"]
        .iter()
        .all(|t| tool(t).is_some());
    require(ok, "e2fsprogs", "apt-get install e2fsprogs")
}

const MARKER: &str = "# ktest root image\nformat=1\nrelease=bookworm\narch=amd64\n\
                      mirror=http://m\npackages=\nbuilt=2026-01-01T00:00:00Z\ntool=t\n";

#[test]
fn update_rewrites_the_configuration_in_place_of_the_image() {
    if !have_e2fsprogs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), Some(MARKER));
    fs::set_permissions(&img, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    for round in 0..2 {
        let out = update(&img);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "round {round}: {err}");
        assert!(err.contains("done: "), "{err}");
        assert!(fsck_clean(&img), "round {round}: e2fsck found damage");

        assert_eq!(debugfs(&img, "cat /etc/hostname"), "ktest\n");
        assert!(debugfs(&img, "cat /etc/shadow").starts_with("root:*:19000:"));
        assert!(debugfs(&img, "cat /etc/shadow").contains("\ndaemon:*:19000::::::\n"));
        assert!(debugfs(&img, "cat /etc/ssh/sshd_config.d/ktest.conf")
            .contains("PasswordAuthentication no"));
        assert!(debugfs(&img, "cat /etc/fstab").contains("/dev/vda"));
        assert!(debugfs(
            &img,
            "stat /etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"
        )
        .contains("serial-getty@.service"));
        assert!(debugfs(&img, "stat /root/.ssh").contains("Mode:  0700"));
        // Existing host keys are kept.
        assert_eq!(
            debugfs(&img, "cat /etc/ssh/ssh_host_ed25519_key"),
            "KEEP-PRIVATE\n"
        );
        let marker = debugfs(&img, "cat /etc/ktest-image");
        assert!(marker.contains("\nrelease=bookworm\n") && marker.contains("\nupdated="));
        assert!(marker.contains("\nbuilt=2026-01-01T00:00:00Z\n"));
    }
    let mode = fs::metadata(&img).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    assert_eq!(names(dir.path()), ["root.img", "root.img.update.log"]);
}

#[test]
fn update_refuses_images_it_does_not_understand() {
    if !have_e2fsprogs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), None);
    let before = fs::read(&img).unwrap();
    let out = update(&img);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a ktest image"));
    assert!(fs::read(&img).unwrap() == before);
    assert_eq!(names(dir.path()), ["root.img"]);

    let newer = tempfile::tempdir().unwrap();
    let img = make_image(newer.path(), Some("format=2\n"));
    let before = fs::read(&img).unwrap();
    let out = update(&img);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("image format 2, newer"), "{err}");
    assert!(fs::read(&img).unwrap() == before);
    // The work directory is gone; only the log of the refused update stays.
    assert_eq!(names(newer.path()), ["root.img", "root.img.update.log"]);
}
