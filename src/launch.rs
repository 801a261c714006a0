//! Running one prepared VM: a slot and the per-VM directory, filled; qemu
//! booted and supervised; everything removed again on every path out.

use crate::accel;
use crate::error::{Context, Error, Result};
use crate::guest::{self, Subtests};
use crate::host_fit;
use crate::outcome::Observed;
use crate::plan::{self, names, Root};
use crate::prepare::{plan_input, scratch_from, Prepared};
use crate::require::Required;
use crate::signals;
use crate::sshkey;
use crate::state::{self, State, VmRow};
use crate::supervise::{self, VmEvent};
use crate::vmlock;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// A VM's resources: its row in the database and its directory. Dropping it
/// removes both, on every path out of `run`.
struct VmGuard {
    state: State,
    row: VmRow,
}

impl Drop for VmGuard {
    fn drop(&mut self) {
        state::remove_path(&self.row.vm_dir);
        let _ = self.state.release(self.row.id);
    }
}

/// Creates `dir` (and what is missing above it) 0700, or makes an existing
/// one 0700 after checking it is a real directory of this user: a symlink
/// there would have ktest chmod, fill and later remove whatever it names.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .context(|| format!("creating {}", dir.display()))?;
    let not_ours = || {
        Error::infra(format!(
            "{} is a symbolic link, not a directory, or not yours\n  remove it; ktest creates it itself",
            dir.display()
        ))
    };
    let d = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
        .map_err(|_| not_ours())?;
    let m = d.metadata().context(|| format!("stat {}", dir.display()))?;
    if m.uid() != state::euid() {
        return Err(not_ours());
    }
    d.set_permissions(std::fs::Permissions::from_mode(0o700))
        .context(|| format!("chmod {}", dir.display()))
}

fn write_private(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .context(|| format!("creating {}", path.display()))?;
    f.write_all(contents)
        .context(|| format!("writing {}", path.display()))
}

/// Fills the per-VM directory: init, assignments, pid, scratch disks, and
/// what `ktest gdb`/`ssh`/`sysrq` look up later (vmlinux, console log).
fn populate(p: &Prepared, l: &Launch, vm_dir: &Path, log: &Path) -> Result<()> {
    write_private(&vm_dir.join(names::INIT), guest::INIT.as_bytes(), 0o700)?;
    let mut env = match &p.test {
        Some(test) => guest::env_file(
            test,
            &guest_requires(p, vm_dir)?,
            &l.output_end,
            &l.subtests,
            p.kernel.config.is_some(),
            l.args,
        ),
        None => String::new(),
    };
    env.push_str(&guest::session_env(&guest::Session {
        ssh: ssh_env(&l.keys),
        shell: l.interactive.is_some(),
        term: std::env::var("TERM").ok(),
        size: crate::terminal::size(),
        console: p.arch.console.to_string(),
    }));
    write_private(&vm_dir.join(names::ENV), env.as_bytes(), 0o600)?;
    // The share is read-only in the guest; the library and the kernel's
    // config are for the test to read.
    write_private(
        &vm_dir.join(crate::testlib::FILE_NAME),
        crate::testlib::TEXT.as_bytes(),
        0o644,
    )?;
    if let Some(config) = &p.kernel.config {
        let text = std::fs::read(config).context(|| format!("reading {}", config.display()))?;
        write_private(&vm_dir.join(KERNEL_CONFIG), &text, 0o644)?;
    }
    if let Some(vmlinux) = &p.kernel.vmlinux {
        let text = format!("{}\n", vmlinux.display());
        write_private(&vm_dir.join(names::VMLINUX), text.as_bytes(), 0o600)?;
    }
    let text = format!("{}\n", log.display());
    write_private(&vm_dir.join(names::LOG), text.as_bytes(), 0o600)?;
    // For `ktest gdb` and `ktest sysrq`, which drive the VM by its arch.
    let text = format!("{}\n", p.arch.name);
    write_private(&vm_dir.join(names::ARCH), text.as_bytes(), 0o600)?;
    write_private(
        &vm_dir.join(names::PID),
        format!("{}\n", std::process::id()).as_bytes(),
        0o600,
    )?;
    for (n, size) in p.spec.scratch.iter().enumerate() {
        let path = vm_dir.join(names::scratch(n));
        write_private(&path, b"", 0o600)?;
        // set_len makes a sparse file: zero-filled, no disk used until written.
        let limit = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| host_fit::set_len(&f, size.bytes()))
            .context(|| format!("sizing scratch disk {}", path.display()))?;
        // prepare's probe missed it (a file system without O_TMPFILE):
        // still the test's declaration, not ktest's failure.
        let from = scratch_from(p.test.as_deref());
        host_fit::scratch_size(std::slice::from_ref(size), &from, limit, vm_dir)?;
    }
    Ok(())
}

/// The REQUIRE'd files as the guest sees them. With the host's root they are
/// where they are on the host; a root image has none of the host's files,
/// so those outside the test's directory (which is shared) are copied into
/// the per-VM directory, which the guest mounts at /run/ktest.
fn guest_requires(p: &Prepared, vm_dir: &Path) -> Result<Vec<Required>> {
    if p.root == Root::Host {
        return Ok(p.requires.clone());
    }
    let test_dir = p.test.as_deref().and_then(Path::parent);
    let dir = vm_dir.join(names::REQUIRE_DIR);
    let mut out = Vec::new();
    for r in &p.requires {
        if r.host.parent() == test_dir {
            out.push(r.clone());
            continue;
        }
        create_private_dir(&dir)?;
        let copy = dir.join(&r.name);
        copy_tree(&r.host, &copy)?;
        out.push(Required {
            host: Path::new(IMAGE_SHARE)
                .join(names::REQUIRE_DIR)
                .join(&r.name),
            name: r.name.clone(),
        });
    }
    Ok(out)
}

/// The kernel's `.config` in the per-VM directory (`$KTEST_KERNEL_CONFIG`
/// in the guest; lib/guest/init.sh).
const KERNEL_CONFIG: &str = "kernel.config";

/// Where an image-root guest mounts the per-VM directory (lib/guest/init.sh).
const IMAGE_SHARE: &str = "/run/ktest";

/// Copies a file, or a directory recursively, keeping permissions.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    if from.is_dir() {
        create_private_dir(to)?;
        for entry in std::fs::read_dir(from).context(|| format!("reading {}", from.display()))? {
            let entry = entry.context(|| format!("reading {}", from.display()))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .context(|| format!("copying {} to {}", from.display(), to.display()))
}

/// The guest's sshd settings, or why the guest cannot offer ssh.
fn ssh_env(keys: &sshkey::Keys) -> std::result::Result<String, String> {
    keys.ensure().and_then(|()| keys.guest_env()).map_err(|e| {
        format!(
            "ktest could not set up its ssh keys: {}",
            e.message.replace('\n', ";")
        )
    })
}

/// How a prepared VM is run.
pub struct Launch<'a> {
    /// The accelerator asked for (probed once per boot, cached).
    pub accel: accel::Choice,
    /// Show the boot log too.
    pub verbose: bool,
    /// Whether the console becomes the user's terminal, and when.
    pub interactive: Option<supervise::Interactive>,
    /// Arguments for a test without subtests.
    pub args: &'a [String],
    /// The subtests this VM runs.
    pub subtests: Subtests,
    /// The console log.
    pub log: PathBuf,
    /// ktest's ssh keys.
    pub keys: sshkey::Keys,
    /// The line that ends the test's output (`guest::output_end_marker`).
    pub output_end: String,
    /// Set to stop the VM early (fail fast).
    pub stop: Arc<AtomicBool>,
}

/// The directory ktest runs from (where `.ktest/` goes), canonical.
pub fn start_dir() -> Result<PathBuf> {
    std::env::current_dir()
        .and_then(|d| d.canonicalize())
        .context(|| "current directory".into())
}

/// `.ktest/` in the directory ktest runs from, created private.
pub fn ktest_dir() -> Result<PathBuf> {
    let dir = start_dir()?.join(".ktest");
    create_private_dir(&dir)?;
    Ok(dir)
}

/// Allocates a slot, fills the per-VM directory, boots and watches the VM,
/// and removes everything again. Returns what happened.
pub fn launch(
    db: &Path,
    p: &Prepared,
    l: &Launch,
    sink: &mut dyn FnMut(VmEvent),
) -> Result<Observed> {
    let cwd = start_dir()?;
    let ktest_dir = ktest_dir()?;
    // Before the VM is listed (allocation): `ktest ssh` checks the keys as
    // soon as `ktest status` shows the VM. A failure is reported to the
    // guest (ssh unavailable) when populate asks again.
    let _ = l.keys.ensure();
    // Held until every attempt's VM directory is gone again: no other
    // ktest, whatever database it uses, can touch that directory meanwhile.
    let claim = vmlock::claim(&ktest_dir)?;
    let accel = accel::choose(
        l.accel,
        p.arch,
        &p.qemu,
        &State::open(db)?,
        &ktest_dir,
        l.verbose,
    )?;
    let mut attempt = 1;
    loop {
        let observed = boot_once(State::open(db)?, &cwd, &claim, p, l, accel, sink)?;
        // Allocation skips ports that are in use, but a ktest using another
        // database (another user) can take the port before qemu binds it.
        // Then qemu fails at once, and a new slot is the cure.
        let port_taken = !observed.started
            && observed
                .qemu_exit
                .as_deref()
                .is_some_and(|e| e.contains("Could not set up host forwarding rule"));
        if !port_taken || attempt == PORT_ATTEMPTS {
            return Ok(observed);
        }
        sink(VmEvent::Note(
            "the VM's ssh port was taken before qemu could use it; trying another slot".into(),
        ));
        attempt += 1;
    }
}

/// How many slots `launch` tries when their ports are taken under it.
const PORT_ATTEMPTS: u32 = 3;

/// Allocates a slot, fills the per-VM directory and runs the VM once.
fn boot_once(
    mut state: State,
    cwd: &Path,
    claim: &vmlock::Claim,
    p: &Prepared,
    l: &Launch,
    accel: plan::Accel,
    sink: &mut dyn FnMut(VmEvent),
) -> Result<Observed> {
    let log = l.log.as_path();
    let vm_dir = claim.vm_dir.clone();
    let test_name = p
        .test
        .as_ref()
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default();
    let row = state.allocate(cwd, &vm_dir, &test_name, &claim.id)?;
    let guard = VmGuard { state, row };
    sink(VmEvent::Allocated {
        id: claim.id.clone(),
    });
    // A directory left by a ktest that died belongs to no live VM (this
    // ktest holds its lock): replace it.
    state::remove_path(&vm_dir);
    create_private_dir(&vm_dir)?;
    populate(p, l, &vm_dir, log)?;
    let plan = plan::plan(&plan_input(
        p,
        accel,
        &vm_dir,
        guard.row.slot,
        guard.row.ssh_port,
    ));
    if l.verbose {
        sink(VmEvent::Note(plan.shell_line()));
    }
    if signals::interrupted() {
        return Ok(Observed {
            interrupted: true,
            ..Observed::default()
        });
    }
    let opts = supervise::Options {
        // A person driving the VM decides when it ends.
        timeout: l
            .interactive
            .is_none()
            .then(|| Duration::from_secs(p.timeout)),
        verbose: l.verbose,
        log: log.to_path_buf(),
        interactive: l.interactive,
        output_end: l.output_end.clone(),
        stop: l.stop.clone(),
    };
    let observed = supervise::run(
        &plan,
        &vm_dir,
        &opts,
        |pid| {
            // Lets a later ktest kill this qemu if both ktest and its
            // parent-death signal somehow failed.
            let _ = guard.state.set_qemu(guard.row.id, pid);
        },
        sink,
    );
    drop(guard);
    observed
}
