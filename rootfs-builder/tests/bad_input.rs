//! The real binary against bad input and interruptions: each case checks
//! the exit code, the message, and that nothing is left next to PATH.
//!
//! The build path refuses to run unless root, so the cases past the root
//! check skip (saying why) when the tests do not run as root, and fail
//! under CI.

mod common;

use common::require;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_create-vm-image");

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !require(
            is_root(),
            "root",
            "the build path checks for root first; run the tests as root",
        ) {
            return;
        }
    };
}

fn run(args: &[&str], setup: impl FnOnce(&mut Command)) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    setup(&mut cmd);
    cmd.output().expect("run create-vm-image")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// One `create-vm-image: ...` line, and the expected exit code.
fn assert_fails(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("create-vm-image: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// `program`, or `None` when it is not installed: the caller returns, the
/// test skipped (or failed, under CI) saying which `package` provides it.
fn need(program: &str, package: &str) -> Option<PathBuf> {
    let found = which(program);
    let how = format!("apt-get install {package}");
    if require(found.is_some(), program, &how) {
        found
    } else {
        None
    }
}

fn write_script(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The options of a build for what [`FakeDebootstrap`] knows.
const BOOKWORM_AMD64: [&str; 4] = ["--arch", "amd64", "--release", "bookworm"];

/// A PATH whose `debootstrap` is `script`, plus a DEBOOTSTRAP_DIR that
/// knows the release "bookworm", so these tests need no network.
struct FakeDebootstrap {
    dir: tempfile::TempDir,
}

impl FakeDebootstrap {
    fn new(script: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(dir.path().join("share/scripts")).unwrap();
        fs::write(dir.path().join("share/scripts/bookworm"), "").unwrap();
        write_script(&bin.join("debootstrap"), script);
        FakeDebootstrap { dir }
    }

    /// `create-vm-image [FIRST...] --arch amd64 --release bookworm IMG`,
    /// with this debootstrap.
    fn build(&self, first: &[&str], img: &Path) -> Output {
        let img = img.to_str().unwrap();
        run(&[first, &BOOKWORM_AMD64, &[img]].concat(), |c| {
            self.apply(c)
        })
    }

    fn apply(&self, cmd: &mut Command) {
        let path = format!(
            "{}:/usr/sbin:/usr/bin:/sbin:/bin",
            self.dir.path().join("bin").display()
        );
        cmd.env("PATH", path)
            .env("DEBOOTSTRAP_DIR", self.dir.path().join("share"));
    }
}

#[test]
fn help_documents_exit_codes() {
    let out = run(&["--help"], |_| {});
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["Exit codes", "130", "--update", "--force", "[default: 4G]"] {
        assert!(text.contains(needle), "help lacks {needle}");
    }
}

#[test]
fn bad_size_is_a_usage_error_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let out = run(&["--size", "4X", img.to_str().unwrap()], |_| {});
    assert_fails(&out, 2, "unknown unit");
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn not_root_is_refused_before_anything() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let img = dir.path().join("img");
    let out = if is_root() {
        let Some(setpriv) = need("setpriv", "util-linux") else {
            return;
        };
        let mut cmd = Command::new(setpriv);
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .arg(&img)
            .stdin(Stdio::null());
        cmd.output().unwrap()
    } else {
        run(&[img.to_str().unwrap()], |_| {})
    };
    assert_fails(&out, 2, "needs root");
    assert_eq!(stderr(&out).lines().count(), 1);
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn missing_debootstrap_names_the_package() {
    require_root!();
    // Everything else the build needs, but no debootstrap.
    let bin = tempfile::tempdir().unwrap();
    for tool in ["mkfs.ext4", "debugfs", "chroot", "dpkg"] {
        let Some(real) = need(tool, "e2fsprogs coreutils dpkg") else {
            return;
        };
        std::os::unix::fs::symlink(real, bin.path().join(tool)).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let out = run(&[img.to_str().unwrap()], |c| {
        c.env("PATH", bin.path());
    });
    assert_fails(&out, 2, "debootstrap not found on PATH");
    assert!(stderr(&out).contains("apt-get install debootstrap`"));
    assert!(listing(dir.path()).is_empty());

    // With nothing at all on PATH, every missing tool is named at once.
    let empty = tempfile::tempdir().unwrap();
    let out = run(&[img.to_str().unwrap()], |c| {
        c.env("PATH", empty.path());
    });
    assert_fails(&out, 2, "debootstrap, mkfs.ext4, debugfs, chroot");
    assert!(stderr(&out).contains("e2fsprogs"));
}

#[test]
fn unknown_release_is_refused_up_front() {
    require_root!();
    let fake = FakeDebootstrap::new("#!/bin/sh\necho should not run >&2\nexit 99\n");
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let out = run(
        &[
            "--release",
            "bookwrom",
            "--arch",
            "amd64",
            img.to_str().unwrap(),
        ],
        |c| fake.apply(c),
    );
    assert_fails(&out, 2, "unknown release 'bookwrom'");
    assert!(!stderr(&out).contains("should not run"));
    assert!(listing(dir.path()).is_empty());

    let out = run(&["--release", "../../etc", img.to_str().unwrap()], |c| {
        fake.apply(c)
    });
    assert_fails(&out, 2, "is not a release name");
}

#[test]
fn unknown_release_with_the_real_debootstrap() {
    require_root!();
    if !require(
        Path::new("/usr/share/debootstrap/scripts").is_dir(),
        "debootstrap",
        "apt-get install debootstrap",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let out = run(
        &["--release", "nosuchrelease", img.to_str().unwrap()],
        |c| {
            c.env_remove("DEBOOTSTRAP_DIR");
        },
    );
    assert_fails(&out, 2, "unknown release 'nosuchrelease'");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn existing_non_image_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    fs::write(&img, "precious data\n").unwrap();
    let path = img.to_str().unwrap();

    // --update needs no root: it only edits a copy of the image.
    let out = run(&["--update", path], |_| {});
    assert_fails(&out, 2, "is not a ktest image");
    assert_eq!(fs::read_to_string(&img).unwrap(), "precious data\n");
    assert_eq!(listing(dir.path()), ["img"]);

    require_root!();
    let fake = FakeDebootstrap::new("#!/bin/sh\nexit 99\n");
    let out = fake.build(&[], &img);
    assert_fails(&out, 2, "is not a ktest image; refusing to overwrite it");
    assert!(stderr(&out).contains("--force"));
    assert_eq!(fs::read_to_string(&img).unwrap(), "precious data\n");
    assert_eq!(listing(dir.path()), ["img"]);
}

#[test]
fn foreign_ext4_image_is_refused() {
    require_root!();
    let Some(mkfs) = need("mkfs.ext4", "e2fsprogs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    fs::File::create(&img).unwrap().set_len(16 << 20).unwrap();
    let made = Command::new(mkfs)
        .args(["-q", "-F"])
        .arg(&img)
        .status()
        .unwrap();
    assert!(made.success());
    let before = fs::read(&img).unwrap();
    let fake = FakeDebootstrap::new("#!/bin/sh\nexit 99\n");
    let path = img.to_str().unwrap();
    let out = fake.build(&[], &img);
    assert_fails(&out, 2, "ext4 image that is not a ktest image");
    let out = run(&["--update", path], |_| {});
    assert_fails(&out, 2, "is not a ktest image");
    assert!(fs::read(&img).unwrap() == before, "image was modified");
    assert_eq!(listing(dir.path()), ["img"]);
}

#[test]
fn directory_path_is_refused_even_with_force() {
    require_root!();
    let fake = FakeDebootstrap::new("#!/bin/sh\nexit 99\n");
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    fs::create_dir(&img).unwrap();
    let out = fake.build(&["--force"], &img);
    assert_fails(&out, 2, "is a directory; refusing");
    assert_eq!(listing(dir.path()), ["img"]);
}

#[test]
fn missing_parent_directories_are_created_like_mkdir_p() {
    require_root!();
    let fake = FakeDebootstrap::new("#!/bin/sh\necho fake debootstrap ran >&2\nexit 1\n");
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("var/lib/ktest/root");
    // Under a umask that would hide the image from ktest's users.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "umask 077; exec \"$0\" \"$@\"", BIN])
        .args(BOOKWORM_AMD64)
        .arg(&img)
        .stdin(Stdio::null());
    fake.apply(&mut cmd);
    let out = cmd.output().unwrap();
    // The build went past the checks: the fake debootstrap failed it.
    assert_fails(&out, 1, "debootstrap failed");
    let err = stderr(&out);
    for sub in ["var", "var/lib", "var/lib/ktest"] {
        let made = dir.path().join(sub);
        assert!(
            err.contains(&format!("created directory {}\n", made.display())),
            "{err}"
        );
        let meta = fs::metadata(&made).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755, "{sub}");
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0, "{sub}");
    }
    assert!(err.contains("fake debootstrap ran"), "{err}");
}

#[test]
fn a_parent_that_is_not_a_directory_is_refused() {
    require_root!();
    let fake = FakeDebootstrap::new("#!/bin/sh\nexit 99\n");
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("file"), "").unwrap();
    let img = dir.path().join("file/sub/img");
    let out = fake.build(&[], &img);
    assert_fails(
        &out,
        2,
        &format!("{} is not a directory", dir.path().join("file").display()),
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert_eq!(listing(dir.path()), ["file"]);
}

#[test]
fn update_of_a_missing_image_says_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let out = run(&["--update", img.to_str().unwrap()], |_| {});
    assert_fails(&out, 2, "does not exist; build it first");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn debootstrap_failure_shows_the_log_tail_and_keeps_the_log() {
    require_root!();
    let fake = FakeDebootstrap::new(
        "#!/bin/sh\nfor i in $(seq 1 30); do echo \"fake line $i\"; done\n\
         echo 'E: Failed getting release file' >&2\nexit 1\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let out = fake.build(&[], &img);
    assert_fails(&out, 1, "debootstrap failed (exit status 1)");
    let err = stderr(&out);
    assert!(err.contains("fake line 30") && err.contains("E: Failed getting release file"));
    assert!(!err.contains("fake line 5\n"), "{err}");
    assert!(err.contains(&format!("full log kept at {}.log", img.display())));
    // Only the log survives: no image, no work directory.
    assert_eq!(listing(dir.path()), ["img.log"]);
    let log = fs::read_to_string(dir.path().join("img.log")).unwrap();
    assert!(log.contains("fake line 1\n") && log.contains("--variant=minbase"));
}

#[test]
fn sigterm_during_debootstrap_cleans_up_and_exits_130() {
    require_root!();
    // Leaves files in the tree, as a real debootstrap would, then hangs.
    let fake = FakeDebootstrap::new(
        "#!/bin/sh\nmkdir -p \"$5/etc\" && echo x > \"$5/etc/partial\"\n\
         echo started\nsleep 60\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let mut cmd = Command::new(BIN);
    cmd.args(BOOKWORM_AMD64)
        .arg(&img)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    fake.apply(&mut cmd);
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("debootstrap (bookworm amd64"), "{first}");
    // Let the fake get going, so there is a tree and a child to stop.
    std::thread::sleep(Duration::from_millis(500));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(rest.last().unwrap().contains("interrupted"), "{rest:?}");
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
}
