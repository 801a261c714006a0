//! Someone else's code that ktest runs on the host, `TEST deps` and make,
//! cannot hang ktest, exhaust the host or leave processes behind, and
//! Ctrl-C or SIGTERM stops them with exit 130.
//!
//! No VM starts: deps runs before one would (`run --dry-run` stops before
//! too), and the kernel build runs a stand-in make from PATH.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `ktest run --dry-run TEST` with the test kernel: reads deps, starts nothing.
fn dry_run(s: &Sandbox, test: &Path) -> Command {
    let mut c = s.run_cmd();
    c.args(["--dry-run", "--accel", "tcg"]).arg(test);
    c
}

/// A ktest started by a test. Dropping it SIGKILLs that ktest: unlike
/// `Background`'s SIGTERM, that also ends a stuck one, so a check that
/// fails fails the test instead of hanging it.
struct Started(Background);

impl Started {
    fn spawn(cmd: &mut Command) -> Started {
        Started(Background {
            child: Some(cmd.stdin(Stdio::null()).spawn().unwrap()),
        })
    }

    /// Sends `sig` to the ktest.
    fn signal(&self, sig: Signal) {
        let pid = self.0.child.as_ref().unwrap().id();
        kill(Pid::from_raw(pid as i32), sig).unwrap();
    }

    /// Waits up to `secs` for the ktest to exit; its output.
    fn wait(mut self, secs: u64) -> Output {
        let child = self.0.child.take();
        Background { child }.wait(secs)
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.0.child.is_some() {
            self.signal(Signal::SIGKILL);
        }
    }
}

/// Starts `cmd` in the background, output captured.
fn start(mut cmd: Command) -> Started {
    Started::spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()))
}

/// Caps the address space of what `cmd` starts: a ktest that reads without
/// bound dies instead of taking the host's memory.
fn limit_memory(cmd: &mut Command, bytes: u64) {
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A deps that leaves a child running, marks that it started, and hangs.
fn hanging_deps(s: &Sandbox, name: &str) -> PathBuf {
    s.script(
        name,
        "#!/bin/sh\n[ \"$1\" = deps ] || exit 1\nsleep 1000 &\ntouch started\nsleep 1000\n",
    )
}

#[test]
fn deps_background_child_neither_delays_nor_outlives_it() {
    let s = Sandbox::new();
    let t = s.script(
        "bg",
        "#!/bin/sh\nif [ \"$1\" = deps ]; then\n\tsleep 1000 &\n\techo MEM=1G\n\texit 0\nfi\n",
    );
    let out = start(dry_run(&s, &t)).wait(30);
    check(&out, 0, &["-m 1024M"]);
    assert_no_processes_in(s.path());
}

#[test]
fn deps_endless_output_is_cut_off() {
    let s = Sandbox::new();
    let t = s.script("chatty", "#!/bin/sh\nexec yes MEM=1G\n");
    let mut cmd = dry_run(&s, &t);
    limit_memory(&mut cmd, 1 << 30);
    let out = start(cmd).wait(30);
    check(&out, 2, &["chatty deps' printed more than 1 MiB"]);
    assert_no_processes_in(s.path());
}

#[test]
fn deps_stderr_is_kept_bounded() {
    let s = Sandbox::new();
    let t = s.script(
        "noisy",
        "#!/bin/sh\necho first >&2\nhead -c 20000000 /dev/zero | tr '\\0' x >&2\nexit 3\n",
    );
    let out = start(dry_run(&s, &t)).wait(30);
    check(&out, 2, &["noisy deps' failed", "first", "..."]);
    assert!(out.stderr.len() < 100_000, "{} bytes", out.stderr.len());
}

#[test]
fn deps_time_limit_kills_everything_it_started() {
    let s = Sandbox::new();
    let t = hanging_deps(&s, "slow");
    let mut cmd = dry_run(&s, &t);
    cmd.env("KTEST_DEPS_TIMEOUT", "2");
    let out = start(cmd).wait(30);
    check(&out, 2, &["slow deps' did not finish within 2 s"]);
    assert_no_processes_in(s.path());
    // A bad limit is a usage error before deps runs.
    let mut cmd = dry_run(&s, &t);
    cmd.env("KTEST_DEPS_TIMEOUT", "soon");
    check(&cmd.output().unwrap(), 2, &["KTEST_DEPS_TIMEOUT=soon"]);
}

/// Starts `cmd`, waits until deps or make marks `started`, sends `sig`, and
/// expects exit 130 and nothing left running under the sandbox.
fn interrupt_once_started(s: &Sandbox, cmd: Command, started: &Path, sig: Signal) -> Output {
    let bg = start(cmd);
    assert!(wait_for(60, || started.exists()), "never started");
    bg.signal(sig);
    let out = bg.wait(30);
    check(&out, 130, &["interrupted"]);
    assert_no_processes_in(s.path());
    out
}

#[test]
fn deps_stops_on_ctrl_c_and_sigterm() {
    let s = Sandbox::new();
    let t = hanging_deps(&s, "hang");
    let started = s.path().join("started");
    interrupt_once_started(&s, dry_run(&s, &t), &started, Signal::SIGINT);
    // `ktest build TEST` reads deps before it looks for a kernel tree.
    std::fs::remove_file(&started).unwrap();
    let mut build = s.ktest();
    build.arg("build").arg(&t);
    interrupt_once_started(&s, build, &started, Signal::SIGTERM);
}

// ---------------------------------------------------------------------------
// The kernel build, with a make from PATH that configures at once and then
// builds forever.

const FAKE_MAKE: &str = r#"#!/bin/sh
for a; do case $a in O=*) out=${a#O=};; esac; done
case "$*" in *config) touch "$out/.config"; exit 0;; esac
# The kind of make that does not stop on SIGINT (nor SIGTERM).
[ -n "$FAKE_MAKE_IGNORES_INT" ] && trap '' INT TERM
echo "  CC      init/main.o"
sleep 1000 &
touch make-started
sleep 1000
"#;

/// A kernel tree (the files ktest looks for) and PATH with the fake make.
fn fake_build(s: &Sandbox) -> (PathBuf, String) {
    let tree = s.path().join("linux");
    for d in ["scripts/kconfig", "arch/x86"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::write(tree.join("Makefile"), "").unwrap();
    std::fs::write(tree.join("Kconfig"), "").unwrap();
    let bin = s.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let make = s.script("make", FAKE_MAKE);
    std::fs::rename(make, bin.join("make")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (tree, path)
}

fn build_in(s: &Sandbox, tree: &Path, path: &str) -> Command {
    let mut c = s.ktest();
    c.current_dir(tree).env("PATH", path).arg("build");
    c
}

#[test]
fn build_stops_on_ctrl_c_and_is_not_taken_as_built() {
    let s = Sandbox::new();
    let (tree, path) = fake_build(&s);
    let out = interrupt_once_started(
        &s,
        build_in(&s, &tree, &path),
        &tree.join("make-started"),
        Signal::SIGINT,
    );
    assert!(out.stdout.is_empty(), "printed a build directory");
    assert!(!tree.join(".ktest/build/last").exists());
}

#[test]
fn build_make_ignoring_sigint_is_killed_on_sigterm() {
    let s = Sandbox::new();
    let (tree, path) = fake_build(&s);
    let mut cmd = build_in(&s, &tree, &path);
    cmd.env("FAKE_MAKE_IGNORES_INT", "1");
    interrupt_once_started(&s, cmd, &tree.join("make-started"), Signal::SIGTERM);
}

#[test]
fn build_waiting_for_another_build_stops_on_ctrl_c() {
    let s = Sandbox::new();
    let (tree, path) = fake_build(&s);
    let first = start(build_in(&s, &tree, &path));
    assert!(wait_for(60, || tree.join("make-started").exists()));
    let said = s.path().join("second.err");
    let mut cmd = build_in(&s, &tree, &path);
    cmd.stderr(std::fs::File::create(&said).unwrap());
    let second = Started::spawn(&mut cmd);
    let read = || std::fs::read_to_string(&said).unwrap_or_default();
    assert!(wait_for(60, || read().contains("waiting for another ktest")));
    second.signal(Signal::SIGINT);
    let out = second.wait(30);
    assert_eq!(out.status.code(), Some(130), "{}", read());
    assert!(read().contains("interrupted"), "{}", read());
    first.signal(Signal::SIGINT);
    check(&first.wait(30), 130, &["interrupted"]);
    assert_no_processes_in(s.path());
}
