//! `ktest gdb` (qemu's gdb stub: the whole machine, stopped on attach) and
//! `ktest kgdb` (the guest kernel's own debugger on the second serial port).

use super::{current_vm, exec, recorded_path, socket_path, vm_arch};
use crate::arch::Arch;
use crate::error::{Code, Context, Error, Result};
use crate::plan::names;
use crate::state::VmRow;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `ktest gdb [ARGS...]`.
pub fn gdb(db: &Path, vm: Option<&str>, args: Vec<String>) -> Result<Code> {
    let vm = current_vm(db, vm)?;
    let vmlinux = vmlinux(&vm)?;
    let cwd = std::env::current_dir().context(|| "current directory".into())?;
    let target = socket_path(&vm, &cwd, names::GDB);
    run_gdb(
        vm_arch(&vm),
        &gdb_args(&vmlinux, scripts(&vmlinux).as_deref(), &target, &args),
    )
}

/// `ktest kgdb [ARGS...]`: breaks into kgdb with sysrq-g, then connects.
pub fn kgdb(db: &Path, vm: Option<&str>, args: Vec<String>) -> Result<Code> {
    let vm = current_vm(db, vm)?;
    let arch = vm_arch(&vm);
    if arch.kgdb_serial.is_none() {
        return Err(Error::usage(format!(
            "ktest kgdb needs a second serial port, which qemu's {} machine ({}) lacks\n  use ktest gdb (qemu's gdb stub) instead",
            arch.machine, arch.name
        )));
    }
    let vmlinux = vmlinux(&vm)?;
    let cwd = std::env::current_dir().context(|| "current directory".into())?;
    let target = socket_path(&vm, &cwd, names::KGDB);
    // The keyboard's sysrq reaches the kernel whatever the console is doing.
    crate::qmp::hmp(&vm.vm_dir, "sendkey alt-sysrq-g").map_err(|e| {
        Error::infra(format!(
            "cannot break into kgdb in the VM from {}: {e}",
            vm.dir.display()
        ))
    })?;
    crate::errln!(
        "ktest: sent sysrq-g; the guest kernel is stopped in kgdb until gdb continues or detaches"
    );
    run_gdb(
        arch,
        &gdb_args(&vmlinux, scripts(&vmlinux).as_deref(), &target, &args),
    )
}

/// Runs the gdb that reads `arch`'s vmlinux: the host's own gdb for its
/// architecture, else the multi-architecture one.
fn run_gdb(arch: &Arch, args: &[String]) -> Result<Code> {
    let (program, package) = if crate::arch::is_host(arch) {
        ("gdb", "gdb")
    } else {
        (arch.gdb, arch.gdb_package)
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    exec(cmd, package)
}

/// The vmlinux the VM booted, as ktest recorded it at start.
fn vmlinux(vm: &VmRow) -> Result<PathBuf> {
    let Some(path) = recorded_path(vm, names::VMLINUX) else {
        return Err(Error::usage(format!(
            "ktest does not know the vmlinux of the kernel the VM from {} booted: it was given as a bare image\n  boot with --kernel BUILD_DIR (a kernel build directory with vmlinux) to debug it",
            vm.dir.display()
        )));
    };
    if !path.is_file() {
        return Err(Error::usage(format!(
            "{}: the vmlinux the VM booted is gone (rebuilt or removed?)",
            path.display()
        )));
    }
    Ok(path)
}

/// The kernel's gdb scripts (`lx-*` commands), when its build made them
/// (CONFIG_GDB_SCRIPTS): `vmlinux-gdb.py` beside vmlinux.
fn scripts(vmlinux: &Path) -> Option<PathBuf> {
    let p = vmlinux.with_file_name("vmlinux-gdb.py");
    p.is_file().then_some(p)
}

/// gdb's arguments: vmlinux's symbols, the kernel's scripts sourced
/// explicitly (gdb's auto-load would refuse them outside its safe path),
/// the connection, then the user's arguments, which run after it so
/// `-batch -ex 'print ...'` sees a connected target.
pub fn gdb_args(
    vmlinux: &Path,
    scripts: Option<&Path>,
    target: &str,
    user: &[String],
) -> Vec<String> {
    let mut args = vec!["-q".to_string(), vmlinux.to_string_lossy().into_owned()];
    if let Some(s) = scripts {
        args.extend(["-ex".to_string(), format!("source {}", s.display())]);
    }
    args.extend(["-ex".to_string(), format!("target remote {target}")]);
    args.extend(user.iter().cloned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connects_before_the_users_commands() {
        let a = gdb_args(
            Path::new("/b/vmlinux"),
            Some(Path::new("/b/vmlinux-gdb.py")),
            "/src/.ktest/vm/gdb.sock",
            &["-batch".into(), "-ex".into(), "print jiffies".into()],
        );
        assert_eq!(
            a,
            [
                "-q",
                "/b/vmlinux",
                "-ex",
                "source /b/vmlinux-gdb.py",
                "-ex",
                "target remote /src/.ktest/vm/gdb.sock",
                "-batch",
                "-ex",
                "print jiffies"
            ]
        );
        let plain = gdb_args(Path::new("/b/vmlinux"), None, "kgdb.sock", &[]);
        assert_eq!(
            plain,
            ["-q", "/b/vmlinux", "-ex", "target remote kgdb.sock"]
        );
    }

    #[test]
    fn scripts_are_found_beside_vmlinux() {
        let t = tempfile::tempdir().unwrap();
        let vmlinux = t.path().join("vmlinux");
        assert_eq!(scripts(&vmlinux), None);
        std::fs::write(t.path().join("vmlinux-gdb.py"), "").unwrap();
        assert_eq!(scripts(&vmlinux), Some(t.path().join("vmlinux-gdb.py")));
    }
}
