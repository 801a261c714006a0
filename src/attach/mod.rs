//! Commands that work on the VM started from the current directory: `ssh`,
//! `gdb`, `kgdb`, `mon`, `sysrq` and `stop`.
//!
//! "The VM from here" is the live VM in the state database whose directory
//! is the current directory or the nearest one above it, so the commands
//! work from anywhere inside the kernel tree the VM was started from.
//! Everything else they need sits in its per-VM directory (`.ktest/vm`).

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

/// The VM started from the current directory (or the nearest directory
/// above it that has one), or the error every attach command gives.
fn current_vm(db: &Path) -> Result<VmRow> {
    let cwd = std::env::current_dir()
        .and_then(|d| d.canonicalize())
        .context(|| "current directory".into())?;
    let live = State::open(db)?.list()?;
    nearest(&cwd, &live).cloned().ok_or_else(|| no_vm(&cwd))
}

/// The VM started from `dir`, else from the nearest directory above it.
fn nearest<'a>(dir: &Path, live: &'a [VmRow]) -> Option<&'a VmRow> {
    dir.ancestors()
        .find_map(|d| live.iter().find(|row| row.dir == d))
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
            .unwrap_or(Path::new(".ktest/vm")),
    );
    rel.push(name);
    rel.to_string_lossy().into_owned()
}

/// How long `ktest stop` waits for the owning ktest to clean up before it
/// kills it and cleans up itself.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// `ktest stop`: asks the ktest that owns this directory's VM to stop
/// (SIGTERM, the same cleanup path as Ctrl-C), and waits until its row is
/// gone so the slot is free when this returns.
pub fn stop(db: &Path) -> Result<Code> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let vm = current_vm(db)?;
    if !vm.pid_ns.is_empty() && vm.pid_ns != crate::procinfo::pid_namespace() {
        return Err(Error::usage(format!(
            "this directory's VM belongs to a ktest (pid {}) in another pid namespace (a container?), which cannot be signalled from here\n  stop it where it runs",
            vm.owner_pid
        )));
    }
    let owner = Pid::from_raw(vm.owner_pid as i32);
    kill(owner, Signal::SIGTERM).map_err(|e| {
        Error::infra(format!(
            "cannot signal ktest (pid {}) that owns the VM: {e}",
            vm.owner_pid
        ))
    })?;
    let mut state = State::open(db)?;
    let deadline = Instant::now() + STOP_GRACE;
    loop {
        if state.find_by_dir(&vm.dir)?.map(|r| r.id) != Some(vm.id) {
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
        "ktest: stopped the VM from {} (slot {})",
        vm.dir.display(),
        vm.slot
    );
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
        VmRow {
            id: 1,
            slot: 0,
            owner_pid: 1,
            pid_ns: String::new(),
            dir: dir.into(),
            vm_dir: Path::new(dir).join(".ktest/vm"),
            test: String::new(),
            qemu_pid: 0,
            started_at: 0,
            ssh_port: 22200,
        }
    }

    #[test]
    fn the_nearest_directory_with_a_vm_wins() {
        let rows = [row("/src/linux"), row("/src/linux/fs")];
        let hit = |cwd: &str| nearest(Path::new(cwd), &rows).map(|r| r.dir.clone());
        assert_eq!(hit("/src/linux"), Some("/src/linux".into()));
        assert_eq!(hit("/src/linux/mm/damon"), Some("/src/linux".into()));
        assert_eq!(hit("/src/linux/fs/ext4"), Some("/src/linux/fs".into()));
        assert_eq!(hit("/src"), None);
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
            "/src/linux/.ktest/vm/gdb.sock"
        );
        let deep = format!("/{}", "d".repeat(120));
        let long = row(&deep);
        assert_eq!(
            socket_path(&long, Path::new(&deep), "gdb.sock"),
            ".ktest/vm/gdb.sock"
        );
        assert_eq!(
            socket_path(&long, &Path::new(&deep).join("fs/ext4"), "kgdb.sock"),
            "../../.ktest/vm/kgdb.sock"
        );
    }
}
