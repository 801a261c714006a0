//! `ktest run`: read the test's declarations, find the kernel, allocate a
//! slot and scratch disks, boot, watch, clean up, report.

use crate::accel;
use crate::cli::{BootArgs, RunArgs};
use crate::config_file::FILE_NAME;
use crate::deps;
use crate::error::{Code, Context, Error, Result};
use crate::guest;
use crate::host_fit;
use crate::kernel::{self, Kernel};
use crate::outcome::{self, Observed};
use crate::plan::{self, names, PlanInput, Root};
use crate::require::{self, Required};
use crate::rootfs;
use crate::signals;
use crate::spec::{KconfigOption, TestSpec};
use crate::sshkey;
use crate::state::{self, State, VmRow};
use crate::supervise;
use crate::values::{Cpus, TimeLimit};
use crate::vmlock;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The qemu binary: `$KTEST_QEMU`, else `qemu-system-x86_64` from PATH.
fn find_qemu() -> Result<PathBuf> {
    let name = std::env::var_os("KTEST_QEMU").unwrap_or_else(|| "qemu-system-x86_64".into());
    let name = PathBuf::from(name);
    if name.components().count() > 1 {
        return if name.is_file() {
            Ok(name)
        } else {
            Err(Error::infra(format!(
                "KTEST_QEMU={} does not exist",
                name.display()
            )))
        };
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::infra(format!(
                "{} not found in PATH\n  install qemu (Debian: apt-get install qemu-system-x86)",
                name.display()
            ))
        })
}

/// Finds every REQUIRE and LREQUIRE file, or says which is missing.
fn resolve_requires(test: &Path, spec: &TestSpec, kernel: &Kernel) -> Result<Vec<Required>> {
    let dir = test.parent().unwrap_or(Path::new("/"));
    let path = std::env::var("PATH").ok();
    let shown = test.display();
    let mut found = Vec::new();
    for entry in &spec.require {
        let p = require::find(entry, dir, path.as_deref()).ok_or_else(|| {
            Error::usage(format!(
                "{shown}: REQUIRE={entry}: not found beside the test or in PATH"
            ))
        })?;
        found.push((entry.clone(), p));
    }
    if !spec.lrequire.is_empty() {
        let Some(tree) = &kernel.source else {
            return Err(Error::usage(format!(
                "{shown}: LREQUIRE={} needs the kernel source tree, and ktest does not know it\n  run from the kernel tree or give --kernel a build directory",
                spec.lrequire.join(",")
            )));
        };
        for entry in &spec.lrequire {
            let p = require::find_in_tree(entry, tree).ok_or_else(|| {
                Error::usage(format!(
                    "{shown}: LREQUIRE={entry}: not found in {} (build it first, e.g. make -C {} {entry})",
                    tree.display(),
                    tree.display()
                ))
            })?;
            found.push((entry.clone(), p));
        }
    }
    require::place(found, dir).map_err(|e| Error::usage(format!("{shown}: REQUIRE: {e}")))
}

/// The kernel's parsed `.config` and its path, when ktest knows one.
type Config = Option<(PathBuf, std::collections::HashMap<String, String>)>;

fn read_config(kernel: &Kernel) -> Result<Config> {
    let Some(path) = &kernel.config else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).context(|| format!("reading {}", path.display()))?;
    Ok(Some((path.clone(), kernel::parse_config(&text))))
}

/// The options of `wanted` the config does not satisfy, for a message;
/// `None` when it satisfies all.
fn unmet(
    config: &std::collections::HashMap<String, String>,
    wanted: &[KconfigOption],
) -> Option<String> {
    let missing = kernel::missing_options(config, wanted);
    (!missing.is_empty()).then(|| {
        missing
            .iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Checks the test's KCONFIG against the kernel's config, when known.
fn check_kconfig(test: &Path, spec: &TestSpec, kernel: &Kernel, config: &Config) -> Result<()> {
    if spec.kconfig.is_empty() {
        return Ok(());
    }
    let Some((path, config)) = config else {
        crate::errln!(
            "ktest: warning: cannot check KCONFIG ({}): no .config known for {}",
            spec.kconfig
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            kernel.image.display()
        );
        return Ok(());
    };
    match unmet(config, &spec.kconfig) {
        None => Ok(()),
        Some(missing) => Err(Error::usage(format!(
            "{}: KCONFIG: the kernel lacks {missing} (config {})\n  rebuild the kernel with them",
            test.display(),
            path.display()
        ))),
    }
}

/// Options ktest's guest cannot boot without, built in (not modules: ktest
/// boots with no initramfs).
const GUEST_NEEDS: &[&str] = &[
    "DEVTMPFS",
    "TMPFS",
    "SERIAL_8250_CONSOLE",
    "VIRTIO_PCI",
    "VIRTIO_CONSOLE",
    "NET_9P",
    "NET_9P_VIRTIO",
    "9P_FS",
];
/// Also needed with the host's root.
const HOST_ROOT_NEEDS: &[&str] = &["OVERLAY_FS"];
/// Also needed with a root image (ext4 on virtio-blk).
const IMAGE_ROOT_NEEDS: &[&str] = &["VIRTIO_BLK", "EXT4_FS"];

/// Refuses, before booting, a kernel whose config shows it cannot run
/// ktest's guest (a distribution kernel has virtio and 9p as modules), so
/// the user gets the reason instead of a panic in the VM.
fn check_bootable(kernel: &Kernel, root: &Root, config: &Config) -> Result<()> {
    let Some((path, config)) = config else {
        return Ok(());
    };
    let extra = if *root == Root::Host {
        HOST_ROOT_NEEDS
    } else {
        IMAGE_ROOT_NEEDS
    };
    let wanted: Vec<KconfigOption> = GUEST_NEEDS
        .iter()
        .chain(extra)
        .map(|n| KconfigOption {
            name: n.to_string(),
            value: Some("y".into()),
        })
        .collect();
    match unmet(config, &wanted) {
        None => Ok(()),
        Some(missing) => Err(Error::usage(format!(
            "{} cannot boot ktest's guest: it needs {missing} built in (config {})\n  ktest boots without an initramfs; build the kernel with lib/kconfig/ktest.config (ktest build does)",
            kernel.image.display(),
            path.display()
        ))),
    }
}

/// Everything decided before a VM exists.
struct Prepared {
    /// The test script; `None` for `ktest boot`.
    test: Option<PathBuf>,
    spec: TestSpec,
    kernel: Kernel,
    requires: Vec<Required>,
    qemu: PathBuf,
    timeout: u64,
    cpus: u32,
    init: PathBuf,
    root: Root,
}

/// The root for a run or boot, from `--root` or the default locations.
fn choose_root(arg: Option<&str>) -> Result<Root> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    rootfs::choose(arg, &rootfs::default_candidates(home.as_deref()))
}

fn prepare(args: &RunArgs) -> Result<Prepared> {
    let test = args
        .test
        .canonicalize()
        .map_err(|e| Error::usage(format!("{}: {e}", args.test.display())))?;
    let mut spec = deps::read(&test)?;
    let file = crate::config_file::get()?;
    // --mem replaces the test's MEM; the file's mem is a floor under it.
    let file_name = file.path.as_deref().unwrap_or(Path::new(FILE_NAME));
    let (mem, mem_from) = match (args.mem, file.mem) {
        (Some(mem), _) => (mem, "--mem".to_string()),
        (None, Some(mem)) if mem > spec.mem => (mem, format!("{}: mem", file_name.display())),
        _ => (spec.mem, format!("{}: MEM", test.display())),
    };
    spec.mem = mem;
    host_fit::check(
        (mem, &mem_from),
        (&spec.scratch, &scratch_from(Some(&test))),
        &start_dir()?.join(".ktest/vm"),
    )?;
    let kernel = match &args.kernel {
        Some(k) => kernel::from_arg(k)?,
        None => {
            let mut opts = args.build.clone();
            opts.build_log |= args.verbose;
            crate::build::kernel_for_run(&opts, &spec.kconfig)?
        }
    };
    let config = read_config(&kernel)?;
    check_kconfig(&test, &spec, &kernel, &config)?;
    let requires = resolve_requires(&test, &spec, &kernel)?;
    let qemu = find_qemu()?;
    let timeout = args
        .timeout
        .or(spec.timeout)
        .or(file.timeout)
        .unwrap_or(TimeLimit::DEFAULT);
    let cpus = args
        .cpus
        .or(spec.cpus)
        .or(file.cpus)
        .unwrap_or(Cpus::DEFAULT);
    let init = guest_init()?;
    let root = choose_root(args.root.as_deref())?;
    check_bootable(&kernel, &root, &config)?;
    fits_machine(Prepared {
        test: Some(test),
        spec,
        kernel,
        requires,
        qemu,
        timeout: timeout.secs(),
        cpus: cpus.get(),
        init,
        root,
    })
}

/// Refuses, before anything starts, a VM the machine or the kernel cannot
/// take: more scratch disks than the PCI slots its other devices leave
/// (counted in the plan itself), or a kernel command line the kernel would
/// cut or an init path it cannot quote. Nothing checked depends on the
/// slot or the directory, so a stand-in plan without scratch disks does.
fn fits_machine(p: Prepared) -> Result<Prepared> {
    let input = PlanInput {
        scratch: 0,
        ..plan_input(
            &p,
            plan::Accel::Tcg,
            Path::new(".ktest/vm"),
            0,
            state::SSH_PORT_BASE,
        )
    };
    let without_scratch = plan::plan(&input);
    plan::check(&input, &without_scratch).map_err(|e| Error::usage(e.to_string()))?;
    let others = plan::virtio_pci_devices(&without_scratch);
    host_fit::slots(
        p.spec.scratch.len(),
        &scratch_from(p.test.as_deref()),
        others,
    )?;
    Ok(p)
}

/// Who declared the scratch disks, for messages.
fn scratch_from(test: Option<&Path>) -> String {
    test.map_or("SCRATCH".into(), |t| format!("{}: SCRATCH", t.display()))
}

/// The guest's init with the host root: the ktest binary itself.
fn guest_init() -> Result<PathBuf> {
    std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context(|| "finding the ktest binary (the guest's init)".into())
}

/// What `ktest boot` needs: a kernel, memory and CPUs, and no test.
fn prepare_boot(args: &BootArgs) -> Result<Prepared> {
    host_fit::memory(args.mem, "--mem", host_fit::mem_total())?;
    let kernel = match &args.kernel {
        Some(k) => kernel::from_arg(k)?,
        None => crate::build::kernel_for_run(&args.build, &[])?,
    };
    let root = choose_root(args.root.as_deref())?;
    check_bootable(&kernel, &root, &read_config(&kernel)?)?;
    fits_machine(Prepared {
        test: None,
        spec: TestSpec {
            mem: args.mem,
            ..TestSpec::default()
        },
        kernel,
        requires: Vec::new(),
        qemu: find_qemu()?,
        timeout: 0,
        cpus: args.cpus.unwrap_or(Cpus::DEFAULT).get(),
        init: guest_init()?,
        root,
    })
}

fn plan_input(p: &Prepared, accel: plan::Accel, vm_dir: &Path, slot: u32, port: u32) -> PlanInput {
    PlanInput {
        qemu: p.qemu.clone(),
        kernel: p.kernel.image.clone(),
        mem: p.spec.mem.bytes(),
        cpus: p.cpus,
        accel,
        scratch: p.spec.scratch.len(),
        ssh_port: port,
        mac: state::mac(slot),
        vm_dir: vm_dir.to_path_buf(),
        append: p.spec.append.clone(),
        root: p.root.clone(),
        test_dir: p
            .test
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf),
        modules_root: p.kernel.modules_root.clone(),
        init: p.init.clone(),
    }
}

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
fn create_private_dir(dir: &Path) -> Result<()> {
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
        Some(test) => guest::env_file(test, &guest_requires(p, vm_dir)?, &l.output_end, l.args),
        None => String::new(),
    };
    env.push_str(&guest::session_env(&guest::Session {
        ssh: ssh_env(&l.keys),
        shell: l.interactive.is_some(),
        term: std::env::var("TERM").ok(),
        size: crate::terminal::size(),
    }));
    write_private(&vm_dir.join(names::ENV), env.as_bytes(), 0o600)?;
    if let Some(vmlinux) = &p.kernel.vmlinux {
        let text = format!("{}\n", vmlinux.display());
        write_private(&vm_dir.join(names::VMLINUX), text.as_bytes(), 0o600)?;
    }
    let text = format!("{}\n", log.display());
    write_private(&vm_dir.join(names::LOG), text.as_bytes(), 0o600)?;
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
struct Launch<'a> {
    accel: accel::Choice,
    verbose: bool,
    interactive: Option<supervise::Interactive>,
    /// Arguments for the test.
    args: &'a [String],
    /// The console log's file name (`log_file_name`).
    name: String,
    /// ktest's ssh keys.
    keys: sshkey::Keys,
    /// The line that ends the test's output (`guest::output_end_marker`).
    output_end: String,
}

/// The directory ktest runs from (where `.ktest/` goes), canonical.
fn start_dir() -> Result<PathBuf> {
    std::env::current_dir()
        .and_then(|d| d.canonicalize())
        .context(|| "current directory".into())
}

/// Allocates a slot, fills the per-VM directory, boots and watches the VM,
/// and removes everything again. Returns what happened and the log's path.
fn launch(db: &Path, p: &Prepared, l: &Launch) -> Result<(Observed, PathBuf)> {
    let cwd = start_dir()?;
    let ktest_dir = cwd.join(".ktest");
    create_private_dir(&ktest_dir)?;
    // Held until every attempt's VM directory is gone again: no other
    // ktest, whatever database it uses, can touch `.ktest/vm` meanwhile.
    let _lock = vmlock::acquire(&ktest_dir)?;
    let accel = accel::choose(l.accel, &p.qemu, &State::open(db)?, &ktest_dir, l.verbose)?;
    let log_dir = ktest_dir.join("log");
    create_private_dir(&log_dir)?;
    let log = log_dir.join(&l.name);
    let mut attempt = 1;
    loop {
        let observed = boot_once(State::open(db)?, &cwd, p, l, accel, &log)?;
        // Allocation skips ports that are in use, but a ktest using another
        // database (another user) can take the port before qemu binds it.
        // Then qemu fails at once, and a new slot is the cure.
        let port_taken = !observed.started
            && observed
                .qemu_exit
                .as_deref()
                .is_some_and(|e| e.contains("Could not set up host forwarding rule"));
        if !port_taken || attempt == PORT_ATTEMPTS {
            return Ok((observed, log));
        }
        crate::errln!(
            "ktest: the VM's ssh port was taken before qemu could use it; trying another slot"
        );
        attempt += 1;
    }
}

/// How many slots `launch` tries when their ports are taken under it.
const PORT_ATTEMPTS: u32 = 3;

/// Allocates a slot, fills the per-VM directory and runs the VM once.
fn boot_once(
    mut state: State,
    cwd: &Path,
    p: &Prepared,
    l: &Launch,
    accel: plan::Accel,
    log: &Path,
) -> Result<Observed> {
    let vm_dir = cwd.join(".ktest/vm");
    let test_name = p
        .test
        .as_ref()
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default();
    let row = state.allocate(cwd, &vm_dir, &test_name)?;
    let guard = VmGuard { state, row };
    // A directory left by a ktest that died belongs to no live VM (this
    // ktest holds the directory's lock): replace it.
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
        crate::errln!("ktest: {}", plan.shell_line());
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
    };
    let observed = supervise::run(&plan, &vm_dir, &opts, |pid| {
        // Lets a later ktest kill this qemu if both ktest and its
        // parent-death signal somehow failed.
        let _ = guard.state.set_qemu(guard.row.id, pid);
    });
    drop(guard);
    observed
}

/// The longest file name most Linux file systems take (NAME_MAX).
const NAME_MAX: usize = 255;

/// The console log's file name for a test file name: `NAME.log`, or, for a
/// name too long for that, its start and a hash of the whole.
fn log_file_name(name: &str) -> String {
    const SUFFIX: &str = ".log";
    if name.len() + SUFFIX.len() <= NAME_MAX {
        return format!("{name}{SUFFIX}");
    }
    // FNV-1a: stable across Rust versions, unlike DefaultHasher.
    let hash = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    let tag = format!("-{hash:016x}{SUFFIX}");
    let mut end = NAME_MAX - tag.len();
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{tag}", &name[..end])
}

/// Runs `ktest run`.
pub fn run(db: &Path, args: RunArgs) -> Result<Code> {
    signals::install();
    let prepared = prepare(&args)?;
    let accel = args
        .accel
        .or(crate::config_file::get()?.accel)
        .unwrap_or(accel::Choice::Auto);

    if args.dry_run {
        let vm_dir = start_dir()?.join(".ktest/vm");
        let state = State::open(db)?;
        let accel = accel::choose(
            accel,
            &prepared.qemu,
            &state,
            &std::env::temp_dir(),
            args.verbose,
        )?;
        let plan = plan::plan(&plan_input(
            &prepared,
            accel,
            &vm_dir,
            0,
            state::SSH_PORT_BASE,
        ));
        crate::outln!("# kernel command line:\n{}", plan.cmdline);
        crate::outln!(
            "# qemu (run in {}; slot 0 shown, the real one is allocated at run time):",
            vm_dir.display()
        );
        crate::outln!("{}", plan.shell_line());
        return Ok(Code::Passed);
    }

    let launch_opts = Launch {
        accel,
        verbose: args.verbose,
        interactive: args
            .interactive
            .then_some(supervise::Interactive::AfterTest),
        args: &args.args,
        name: log_file_name(&args.test.file_name().unwrap_or_default().to_string_lossy()),
        keys: sshkey::Keys::beside(db),
        output_end: guest::output_end_marker(),
    };
    let (observed, log) = launch(db, &prepared, &launch_opts)?;
    let verdict = outcome::decide(&observed);
    let name = args.test.display();
    match verdict.code {
        Code::Passed => crate::errln!("ktest: {name}: {}", verdict.summary),
        _ => crate::errln!(
            "ktest: {name}: {}\nktest: console log: {}",
            verdict.summary,
            log.display()
        ),
    }
    Ok(verdict.code)
}

/// Runs `ktest boot`: a VM with no test and the console attached, until
/// the guest powers off, the user quits (Ctrl-A X) or ktest is stopped.
pub fn boot(db: &Path, args: BootArgs) -> Result<Code> {
    signals::install();
    let prepared = prepare_boot(&args)?;
    let launch_opts = Launch {
        accel: args.accel,
        // The whole console is shown anyway.
        verbose: false,
        interactive: Some(supervise::Interactive::FromBoot),
        args: &[],
        name: log_file_name("boot"),
        keys: sshkey::Keys::beside(db),
        output_end: guest::output_end_marker(),
    };
    let (observed, log) = launch(db, &prepared, &launch_opts)?;
    let verdict = boot_verdict(&observed);
    crate::errln!("ktest: boot: {}", verdict.summary);
    if verdict.code != Code::Passed {
        crate::errln!("ktest: console log: {}", log.display());
    }
    Ok(verdict.code)
}

/// How a `ktest boot` session ended. There is no test, so ending it by
/// quitting or stopping it is a success; the kernel crashing is not.
fn boot_verdict(o: &Observed) -> outcome::Verdict {
    if o.crash.is_some() || o.guest_error.is_some() {
        // Judged as for a test: quitting afterwards does not hide a crash.
        return outcome::decide(&Observed {
            interrupted: false,
            ..o.clone()
        });
    }
    let v = |code, summary: String| outcome::Verdict { code, summary };
    match &o.qemu_exit {
        Some(how) if !o.started => v(Code::Infra, format!("qemu {how} before the guest started")),
        _ => v(Code::Passed, "VM stopped".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_file_names_fit_the_file_system() {
        assert_eq!(log_file_name("hello"), "hello.log");
        let long = "t".repeat(251);
        assert_eq!(log_file_name(&long), format!("{long}.log"));
        for name in ["t".repeat(252), "é".repeat(200)] {
            let log = log_file_name(&name);
            assert!(log.len() <= NAME_MAX && log.ends_with(".log"), "{log}");
            assert_ne!(log, log_file_name(&format!("{name}x")));
        }
    }

    #[test]
    fn boot_ends_well_unless_the_kernel_or_qemu_failed() {
        let started = Observed {
            started: true,
            ..Observed::default()
        };
        let quit = Observed {
            interrupted: true,
            ..started.clone()
        };
        assert_eq!(boot_verdict(&quit).code, Code::Passed);
        let powered_off = Observed {
            qemu_exit: Some("exited with status 0".into()),
            ..started.clone()
        };
        assert_eq!(boot_verdict(&powered_off).code, Code::Passed);
        let no_start = Observed {
            qemu_exit: Some("exited with status 1:\n  bad kernel".into()),
            ..Observed::default()
        };
        assert_eq!(boot_verdict(&no_start).code, Code::Infra);
        let crash = Observed {
            crash: Some("Kernel panic - not syncing".into()),
            ..quit
        };
        assert_eq!(boot_verdict(&crash).code, Code::Crash);
    }

    #[test]
    fn private_dir_is_never_reached_through_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = t.path().join("vm");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = create_private_dir(&link).unwrap_err();
        assert!(e.message.contains("symbolic link"), "{}", e.message);
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        create_private_dir(&target.join("a/b")).unwrap();
        let mode = std::fs::metadata(target.join("a/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
