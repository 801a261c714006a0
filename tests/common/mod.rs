//! Shared helpers for the end-to-end tests: the test kernel, running ktest
//! in a private directory with a private state database, and looking for
//! leftover qemu processes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$VAR` if set, else the path a cache script prints (building what it
/// caches on first use).
fn cached(var: &str, script: &str) -> PathBuf {
    cached_with(var, script, &[])
}

/// `cached`, running the script with `env` added.
fn cached_with(var: &str, script: &str, env: &[(&str, &str)]) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let out = Command::new(repo().join(script))
        .envs(env.iter().copied())
        .env("KTEST_BIN", env!("CARGO_BIN_EXE_ktest"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(out.status.success(), "{script} failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The test kernel's build directory (arch/x86/boot/bzImage, vmlinux, .config):
/// `$KTEST_TEST_KERNEL`, else built (once, cached) by tests/test-kernel.sh.
pub fn kernel_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| cached("KTEST_TEST_KERNEL", "tests/test-kernel.sh"))
}

/// Debian's linux-source-6.1, unpacked by tests/test-kernel.sh into
/// ~/.cache/ktest/linux-source-VERSION (or `$KTEST_LINUX_SRC`).
pub fn linux_tree() -> PathBuf {
    if let Some(d) = std::env::var_os("KTEST_LINUX_SRC") {
        return PathBuf::from(d);
    }
    // test-kernel.sh unpacks the tree as it builds the test kernel.
    let _ = kernel_dir();
    let version = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "linux-source-6.1"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| {
            std::fs::metadata("/usr/src/linux-source-6.1.tar.xz")
                .unwrap()
                .len()
                .to_string()
        });
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
    let tree = cache.join(format!("ktest/linux-source-{version}"));
    assert!(
        tree.join(".unpacked").exists(),
        "{} is not unpacked; run tests/test-kernel.sh",
        tree.display()
    );
    tree
}

/// The git kernel repository the bisect tests bisect:
/// `$KTEST_BISECT_REPO`, else made (once, cached) by tests/bisect-repo.sh.
pub fn bisect_repo() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| cached("KTEST_BISECT_REPO", "tests/bisect-repo.sh"))
}

/// The arm64 test kernel's build directory (arch/arm64/boot/Image,
/// vmlinux, .config): `$KTEST_TEST_KERNEL_ARM64`, else cross-built (once,
/// cached) by tests/test-kernel.sh with KTEST_TEST_ARCH=arm64.
pub fn arm64_kernel_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        cached_with(
            "KTEST_TEST_KERNEL_ARM64",
            "tests/test-kernel.sh",
            &[("KTEST_TEST_ARCH", "arm64")],
        )
    })
}

/// The arm64 Debian root image: `$KTEST_TEST_ROOTFS_ARM64`, else built
/// (once, cached) by tests/rootfs-image.sh with KTEST_ROOTFS_ARCH=arm64,
/// which needs root, the mirror and qemu-user through binfmt_misc.
pub fn arm64_rootfs_image() -> &'static Path {
    static IMG: OnceLock<PathBuf> = OnceLock::new();
    IMG.get_or_init(|| {
        cached_with(
            "KTEST_TEST_ROOTFS_ARM64",
            "tests/rootfs-image.sh",
            &[("KTEST_ROOTFS_ARCH", "arm64")],
        )
    })
}

/// Debian's generic kernel, unpacked with its modules (boot/vmlinuz-R,
/// boot/config-R, lib/modules/R): `$KTEST_DISTRO_KERNEL`, else unpacked
/// (once, cached) by tests/distro-kernel.sh.
pub fn distro_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| cached("KTEST_DISTRO_KERNEL", "tests/distro-kernel.sh"))
}

/// The distribution kernel's release (its `lib/modules` entry).
pub fn distro_release() -> String {
    let mut r: Vec<String> = std::fs::read_dir(distro_dir().join("lib/modules"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(r.len(), 1, "one release in {}", distro_dir().display());
    r.pop().unwrap()
}

/// The distribution kernel's image, `boot/vmlinuz-RELEASE`.
pub fn distro_image() -> PathBuf {
    distro_dir()
        .join("boot")
        .join(format!("vmlinuz-{}", distro_release()))
}

/// The test kernel's bzImage.
pub fn bzimage() -> PathBuf {
    kernel_dir().join("arch/x86/boot/bzImage")
}

/// A scratch working directory with its own state database.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("ktest-e2e-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// One database for every VM this test process starts, as for a real
    /// user: slots (and so ssh ports) are unique across parallel tests.
    pub fn db(&self) -> PathBuf {
        static DB: OnceLock<tempfile::TempDir> = OnceLock::new();
        DB.get_or_init(|| tempfile::tempdir().unwrap())
            .path()
            .join("state.db")
    }

    /// Writes an executable test script into the sandbox.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.path().join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// `ktest` with this sandbox as its directory and database.
    pub fn ktest(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ktest"));
        c.current_dir(self.path()).env("KTEST_DB", self.db());
        c
    }

    /// `ktest run --kernel <test kernel>`, for callers that add environment,
    /// options and the test themselves.
    pub fn run_cmd(&self) -> Command {
        let mut c = self.ktest();
        c.arg("run").arg("--kernel").arg(bzimage());
        c
    }

    /// `ktest run --kernel <test kernel> ARGS...`
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_cmd().args(args).output().unwrap()
    }

    /// The first VM's directory (`.ktest/vms/1`): the one VM of a test
    /// that starts one.
    pub fn vm_dir(&self) -> PathBuf {
        self.path().join(".ktest/vms/1")
    }

    /// The per-VM directories left under `.ktest/vms` (lock files stay by
    /// design; directories must not).
    pub fn vm_dirs_left(&self) -> Vec<PathBuf> {
        vm_dirs_left(self.path())
    }

    /// The newest run's directory for a test file named `test`:
    /// `.ktest/runs/last/TEST`, holding `console.log` and a log per subtest.
    #[allow(dead_code)]
    pub fn run_dir(&self, test: &str) -> PathBuf {
        self.path().join(".ktest/runs/last").join(test)
    }

    /// The newest run's console log for a test file named `test`.
    #[allow(dead_code)]
    pub fn console_log(&self, test: &str) -> String {
        let path = self.run_dir(test).join("console.log");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Asserts the run left nothing behind: no VM directory, no qemu, no row.
    /// (`ktest status` runs first, so it also reaps what a killed ktest left.)
    pub fn assert_clean(&self) {
        let listed = self.status_lines();
        assert!(listed.is_empty(), "status after the run: {listed:?}");
        assert_eq!(self.vm_dirs_left(), Vec::<PathBuf>::new(), "left behind");
        assert_eq!(
            qemus_in(self.path()),
            Vec::<u32>::new(),
            "qemu left running"
        );
    }

    /// The lines of `ktest status` about VMs started under this sandbox.
    pub fn status_lines(&self) -> Vec<String> {
        let out = self.ktest().arg("status").output().unwrap();
        assert!(out.status.success());
        let root = self.path().to_string_lossy().into_owned();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.ends_with(&root) || l.contains(&format!("{root}/")))
            .map(String::from)
            .collect()
    }
}

/// Everything a run printed.
/// Asserts ktest exited with `code`, said each of `needles`, and did not
/// panic.
#[allow(dead_code)]
pub fn check(out: &Output, code: i32, needles: &[&str]) {
    let t = text(out);
    assert_eq!(out.status.code(), Some(code), "{t}");
    for n in needles {
        assert!(t.contains(n), "expected {n:?} in:\n{t}");
    }
    assert!(!t.contains("panicked"), "{t}");
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The per-VM directories under `dir/.ktest/vms` (and an older ktest's
/// `dir/.ktest/vm`).
pub fn vm_dirs_left(dir: &Path) -> Vec<PathBuf> {
    let mut left: Vec<PathBuf> = std::fs::read_dir(dir.join(".ktest/vms"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    if dir.join(".ktest/vm").exists() {
        left.push(dir.join(".ktest/vm"));
    }
    left
}

/// pids of qemu processes whose working directory is under `dir`.
pub fn qemus_in(dir: &Path) -> Vec<u32> {
    processes_in(dir)
        .into_iter()
        .filter(|(_, name)| name.starts_with("qemu-system"))
        .map(|(pid, _)| pid)
        .collect()
}

/// Waits up to `secs` for `cond`.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// A ktest started in the background (a VM the test works on). Dropping it
/// stops that ktest the way `ktest stop` does (SIGTERM) and reaps it, so a
/// failing test leaves no VM behind.
pub struct Background {
    pub child: Option<std::process::Child>,
}

impl Background {
    /// Waits for the ktest to exit by itself and returns its output.
    pub fn wait(mut self, secs: u64) -> Output {
        let child = self.child.take().unwrap();
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                panic!("ktest (pid {pid}) did not exit within {secs} s");
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }
}

impl Sandbox {
    /// Starts `ktest ARGS...` in `dir` in the background, stdin closed and
    /// output captured, and waits until `ktest status` lists its VM.
    pub fn start_in(&self, dir: &Path, args: &[&std::ffi::OsStr]) -> Background {
        let child = self
            .ktest()
            .current_dir(dir)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let bg = Background { child: Some(child) };
        let dir_s = dir.to_string_lossy().into_owned();
        let listed = wait_for(120, || {
            self.status_lines()
                .iter()
                .any(|l| l.ends_with(&format!(" {dir_s}")))
        });
        assert!(listed, "the VM from {dir_s} never appeared in ktest status");
        bg
    }
}

/// The Debian root image for image-root tests: `$KTEST_TEST_ROOTFS`, else
/// built (once, cached) by tests/rootfs-image.sh, which needs root and the
/// Debian mirror.
pub fn rootfs_image() -> &'static Path {
    static IMG: OnceLock<PathBuf> = OnceLock::new();
    IMG.get_or_init(|| cached("KTEST_TEST_ROOTFS", "tests/rootfs-image.sh"))
}

mod prereq;
pub mod pty;
// Like the rest of this module: not every test file uses it.
#[allow(unused_imports)]
pub use prereq::require;

impl Sandbox {
    /// A qemu for `KTEST_QEMU` under which KVM is broken on any host: it
    /// fails at once saying "no KVM here", and so does the accelerator
    /// probe (or the probe fails earlier, at /dev/kvm).
    pub fn broken_kvm_qemu(&self) -> PathBuf {
        self.script(
            "qemu-kvm-broken",
            "#!/bin/sh\necho 'no KVM here' >&2\nexit 1\n",
        )
    }
}

/// The live processes (pid, name) whose working directory is under `dir`:
/// what a run there left behind. Zombies have none, so they do not count.
pub fn processes_in(dir: &Path) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir)) {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            found.push((pid, comm.trim().to_string()));
        }
    }
    found
}

/// Asserts that no process is left running under `dir`, allowing a few
/// seconds for SIGKILLed ones to disappear.
pub fn assert_no_processes_in(dir: &Path) {
    let gone = wait_for(5, || processes_in(dir).is_empty());
    assert!(gone, "left running: {:?}", processes_in(dir));
}

/// Every (file name, subtest, verdict) of a `--json` report, in report
/// order.
#[allow(dead_code)]
pub fn report_results(json: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for t in v["tests"].as_array().unwrap() {
        let file = Path::new(t["test"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for s in t["subtests"].as_array().unwrap() {
            out.push((
                file.clone(),
                s["name"].as_str().unwrap().to_string(),
                s["verdict"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}
