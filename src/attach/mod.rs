//! Commands that work on the VM started from the current directory: `ssh`,
//! `gdb`, `kgdb`, `mon`, `sysrq` and `stop`.
//!
//! "The VM from here" is the live VM in the state database whose directory
//! is the current directory or the nearest one above it, so the commands
//! work from anywhere inside the kernel tree the VM was started from.
//! Everything else they need sits in its per-VM directory
//! (`.ktest/vms/ID`). When several VMs run from that directory, `--vm ID`
//! (or `KTEST_VM`) chooses one.

mod gdb;
mod monitor;
mod ssh;

pub use gdb::{gdb, kgdb};
pub use monitor::{mon, sysrq};
pub use ssh::ssh;

use crate::error::{Code, Context, Error, Result};
use crate::plan::names;
use crate::state::{State, VmRow};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The VM to attach to: of the VMs started from the current directory
/// (or the nearest directory above it that has any), the one with id
/// `want`, else the only one; or the error every attach command gives.
fn current_vm(db: &Path, want: Option<&str>) -> Result<VmRow> {
    let cwd = std::env::current_dir()
        .and_then(|d| d.canonicalize())
        .context(|| "current directory".into())?;
    let live = State::open(db)?.list()?;
    choose(&cwd, &live, want, unix_now()).cloned()
}

/// The VMs started from `dir`, else from the nearest directory above it
/// that has any.
fn nearest<'a>(dir: &Path, live: &'a [VmRow]) -> Vec<&'a VmRow> {
    dir.ancestors()
        .map(|d| live.iter().filter(|row| row.dir == d).collect::<Vec<_>>())
        .find(|rows| !rows.is_empty())
        .unwrap_or_default()
}

/// The VM `want` names (or the only one) among those `nearest` finds.
fn choose<'a>(dir: &Path, live: &'a [VmRow], want: Option<&str>, now: i64) -> Result<&'a VmRow> {
    let rows = nearest(dir, live);
    let Some(first) = rows.first() else {
        return Err(no_vm(dir));
    };
    let list = || {
        rows.iter()
            .map(|r| {
                let test = if r.test.is_empty() { "(boot)" } else { &r.test };
                format!(
                    "\n  {:<4} {test} (up {} s)",
                    r.vm_id,
                    (now - r.started_at).max(0)
                )
            })
            .collect::<String>()
    };
    match want {
        Some(id) => rows.iter().copied().find(|r| r.vm_id == id).ok_or_else(|| {
            Error::usage(format!(
                "no VM {id} runs from {}; these do:{}",
                first.dir.display(),
                list()
            ))
        }),
        None if rows.len() == 1 => Ok(first),
        None => Err(Error::usage(format!(
            "{} VMs run from {}; choose one with --vm ID:{}",
            rows.len(),
            first.dir.display(),
            list()
        ))),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The error for "nothing to attach to" (exit 2).
fn no_vm(dir: &Path) -> Error {
    Error::usage(format!(
        "no VM is running from {} (start one with ktest run -I or ktest boot)",
        dir.display()
    ))
}

/// Reads a one-line path file ktest wrote into the per-VM directory.
fn recorded_path(vm: &VmRow, name: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(vm.vm_dir.join(name)).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| PathBuf::from(line))
}

/// The VM's architecture, as ktest recorded it at start.
fn vm_arch(vm: &VmRow) -> &'static crate::arch::Arch {
    std::fs::read_to_string(vm.vm_dir.join(names::ARCH))
        .ok()
        .and_then(|t| crate::arch::parse(t.trim()).ok())
        .unwrap_or(&crate::arch::X86_64)
}

/// The VM's console log, as ktest recorded it at start.
fn console_log(vm: &VmRow) -> Option<PathBuf> {
    recorded_path(vm, names::LOG)
}

/// A path to `name` in the VM's directory that fits in a unix socket
/// address (108 bytes) for programs ktest hands it to (gdb): absolute if
/// short enough, else relative to the current directory, which is at or
/// below the VM's directory `vm.dir`.
fn socket_path(vm: &VmRow, cwd: &Path, name: &str) -> String {
    let absolute = vm.vm_dir.join(name);
    if absolute.as_os_str().len() < 100 {
        return absolute.to_string_lossy().into_owned();
    }
    let depth = cwd
        .strip_prefix(&vm.dir)
        .map(|rel| rel.components().count())
        .unwrap_or(0);
    let mut rel = PathBuf::new();
    for _ in 0..depth {
        rel.push("..");
    }
    rel.push(
        vm.vm_dir
            .strip_prefix(&vm.dir)
            .unwrap_or(Path::new(".ktest/vms")),
    );
    rel.push(name);
    rel.to_string_lossy().into_owned()
}

/// How long `ktest stop` waits for the owning ktest to clean up before it
/// kills it and cleans up itself.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// `ktest stop`: asks the ktest that owns the VM to stop (SIGTERM, the
/// same cleanup path as Ctrl-C), and waits until its row is gone so the
/// slot is free when this returns. A ktest running several VMs (`--vms`)
/// stops them all: that is its run ending.
pub fn stop(db: &Path, want: Option<&str>) -> Result<Code> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let vm = current_vm(db, want)?;
    if !vm.pid_ns.is_empty() && vm.pid_ns != crate::procinfo::pid_namespace() {
        return Err(Error::usage(format!(
            "this VM belongs to a ktest (pid {}) in another pid namespace (a container?), which cannot be signalled from here\n  stop it where it runs",
            vm.owner_pid
        )));
    }
    let mut state = State::open(db)?;
    let siblings: Vec<String> = state
        .list()?
        .into_iter()
        .filter(|r| r.owner_pid == vm.owner_pid && r.id != vm.id)
        .map(|r| r.vm_id)
        .collect();
    let owner = Pid::from_raw(vm.owner_pid as i32);
    kill(owner, Signal::SIGTERM).map_err(|e| {
        Error::infra(format!(
            "cannot signal ktest (pid {}) that owns the VM: {e}",
            vm.owner_pid
        ))
    })?;
    let deadline = Instant::now() + STOP_GRACE;
    loop {
        if !state.list()?.iter().any(|r| r.id == vm.id) {
            break;
        }
        if Instant::now() >= deadline {
            // The owner is stuck: kill it; the reaper then kills its qemu
            // and removes its files, as for any ktest that died.
            crate::errln!(
                "ktest: pid {} did not stop within {} s; killing it",
                vm.owner_pid,
                STOP_GRACE.as_secs()
            );
            let _ = kill(owner, Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(200));
            state.reap()?;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    crate::errln!(
        "ktest: stopped VM {} from {} (slot {})",
        vm.vm_id,
        vm.dir.display(),
        vm.slot
    );
    if !siblings.is_empty() {
        crate::errln!(
            "ktest: its ktest (pid {}) also ran VM {}: its whole run was stopped",
            vm.owner_pid,
            siblings.join(", ")
        );
    }
    Ok(Code::Passed)
}

/// Replaces ktest with `cmd` (ssh, gdb): the user's terminal, signals and
/// exit status then belong to that program, as if they had run it.
fn exec(mut cmd: std::process::Command, package: &str) -> Result<Code> {
    use std::os::unix::process::CommandExt;
    let e = cmd.exec();
    Err(Error::infra(format!(
        "cannot run {}: {e}\n  install it (Debian: apt-get install {package})",
        cmd.get_program().to_string_lossy()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(dir: &str) -> VmRow {
        vm(dir, "1")
    }

    fn vm(dir: &str, vm_id: &str) -> VmRow {
        VmRow {
            vm_id: vm_id.into(),
            id: vm_id.parse().unwrap_or(1),
            slot: 0,
            owner_pid: 1,
            pid_ns: String::new(),
            dir: dir.into(),
            vm_dir: Path::new(dir).join(".ktest/vms").join(vm_id),
            test: String::new(),
            qemu_pid: 0,
            started_at: 0,
            ssh_port: 22200,
        }
    }

    #[test]
    fn the_nearest_directory_with_a_vm_wins() {
        let rows = [row("/src/linux"), row("/src/linux/fs")];
        let hit = |cwd: &str| {
            choose(Path::new(cwd), &rows, None, 0)
                .ok()
                .map(|r| r.dir.clone())
        };
        assert_eq!(hit("/src/linux"), Some("/src/linux".into()));
        assert_eq!(hit("/src/linux/mm/damon"), Some("/src/linux".into()));
        assert_eq!(hit("/src/linux/fs/ext4"), Some("/src/linux/fs".into()));
        assert_eq!(hit("/src"), None);
    }

    #[test]
    fn several_vms_from_one_directory_are_chosen_by_id() {
        let mut two = vm("/src/linux", "2");
        two.test = "/src/linux/t/b.ktest".into();
        two.started_at = 40;
        let rows = [vm("/src/linux", "1"), two, vm("/other", "2")];
        let dir = Path::new("/src/linux/fs");
        let e = choose(dir, &rows, None, 100).unwrap_err();
        assert_eq!(e.code, Code::Usage);
        assert_eq!(
            e.message,
            "2 VMs run from /src/linux; choose one with --vm ID:\n  1    (boot) (up 100 s)\n  2    /src/linux/t/b.ktest (up 60 s)"
        );
        let got = choose(dir, &rows, Some("2"), 100).unwrap();
        assert_eq!(
            (got.dir.as_path(), got.vm_id.as_str()),
            (Path::new("/src/linux"), "2")
        );
        let e = choose(dir, &rows, Some("3"), 100).unwrap_err();
        assert!(
            e.message
                .starts_with("no VM 3 runs from /src/linux; these do:"),
            "{}",
            e.message
        );
        // Where one VM runs, no id is needed, and its own id works too.
        assert_eq!(
            choose(Path::new("/other"), &rows, None, 0).unwrap().vm_id,
            "2"
        );
        assert!(choose(Path::new("/other"), &rows, Some("2"), 0).is_ok());
    }

    #[test]
    fn no_vm_error_says_what_to_do() {
        let e = no_vm(Path::new("/src/linux"));
        assert_eq!(e.code, Code::Usage);
        assert_eq!(
            e.message,
            "no VM is running from /src/linux (start one with ktest run -I or ktest boot)"
        );
    }

    #[test]
    fn socket_paths_stay_short() {
        let short = row("/src/linux");
        assert_eq!(
            socket_path(&short, Path::new("/src/linux/fs"), "gdb.sock"),
            "/src/linux/.ktest/vms/1/gdb.sock"
        );
        let deep = format!("/{}", "d".repeat(120));
        let long = row(&deep);
        assert_eq!(
            socket_path(&long, Path::new(&deep), "gdb.sock"),
            ".ktest/vms/1/gdb.sock"
        );
        assert_eq!(
            socket_path(&long, &Path::new(&deep).join("fs/ext4"), "kgdb.sock"),
            "../../.ktest/vms/1/kgdb.sock"
        );
    }
}
