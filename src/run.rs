//! `ktest run`: read the test's declarations, find the kernel, allocate a
//! slot and scratch disks, boot, watch, clean up, report.

use crate::accel;
use crate::cli::RunArgs;
use crate::deps;
use crate::error::{Code, Context, Error, Result};
use crate::guest;
use crate::kernel::{self, Kernel};
use crate::outcome;
use crate::plan::{self, names, PlanInput, Root};
use crate::require::{self, Required};
use crate::signals;
use crate::size;
use crate::spec::TestSpec;
use crate::state::{self, State, VmRow};
use crate::supervise;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Time limit when neither the test nor the command line gives one.
pub const DEFAULT_TIMEOUT: u64 = 600;
/// Virtual CPUs when neither the test nor the command line gives a number.
pub const DEFAULT_CPUS: u32 = 2;

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

/// Checks the test's KCONFIG against the kernel's config, when known.
fn check_kconfig(test: &Path, spec: &TestSpec, kernel: &Kernel) -> Result<()> {
    if spec.kconfig.is_empty() {
        return Ok(());
    }
    let Some(config) = &kernel.config else {
        eprintln!(
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
    let text =
        std::fs::read_to_string(config).context(|| format!("reading {}", config.display()))?;
    let missing = kernel::missing_options(&kernel::parse_config(&text), &spec.kconfig);
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::usage(format!(
        "{}: KCONFIG: the kernel lacks {} (config {})\n  rebuild the kernel with them",
        test.display(),
        missing
            .iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        config.display()
    )))
}

/// Everything decided before a VM exists.
struct Prepared {
    test: PathBuf,
    spec: TestSpec,
    kernel: Kernel,
    requires: Vec<Required>,
    qemu: PathBuf,
    timeout: u64,
    cpus: u32,
    init: PathBuf,
}

fn prepare(args: &RunArgs) -> Result<Prepared> {
    let test = args
        .test
        .canonicalize()
        .map_err(|e| Error::usage(format!("{}: {e}", args.test.display())))?;
    let mut spec = deps::read(&test)?;
    if let Some(mem) = &args.mem {
        spec.mem = size::parse(mem).map_err(|e| Error::usage(format!("--mem: {e}")))?;
    }
    let kernel = match &args.kernel {
        Some(k) => kernel::from_arg(k)?,
        None => crate::build::kernel_for_run(&args.build, &spec.kconfig)?,
    };
    check_kconfig(&test, &spec, &kernel)?;
    let requires = resolve_requires(&test, &spec, &kernel)?;
    let qemu = find_qemu()?;
    let timeout = args.timeout.or(spec.timeout).unwrap_or(DEFAULT_TIMEOUT);
    let cpus = args.cpus.or(spec.cpus).unwrap_or(DEFAULT_CPUS);
    let init = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context(|| "finding the ktest binary (the guest's init)".into())?;
    Ok(Prepared {
        test,
        spec,
        kernel,
        requires,
        qemu,
        timeout,
        cpus,
        init,
    })
}

fn plan_input(p: &Prepared, accel: plan::Accel, vm_dir: &Path, slot: u32, port: u32) -> PlanInput {
    PlanInput {
        qemu: p.qemu.clone(),
        kernel: p.kernel.image.clone(),
        mem: p.spec.mem,
        cpus: p.cpus,
        accel,
        scratch: p.spec.scratch.len(),
        ssh_port: port,
        mac: state::mac(slot),
        vm_dir: vm_dir.to_path_buf(),
        append: p.spec.append.clone(),
        root: Root::Host,
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

fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
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

/// Fills the per-VM directory: init, assignments, pid, scratch disks.
fn populate(p: &Prepared, args: &RunArgs, vm_dir: &Path) -> Result<()> {
    write_private(&vm_dir.join(names::INIT), guest::INIT.as_bytes(), 0o700)?;
    let env = guest::env_file(&p.test, &p.requires, &args.args);
    write_private(&vm_dir.join(names::ENV), env.as_bytes(), 0o600)?;
    write_private(
        &vm_dir.join(names::PID),
        format!("{}\n", std::process::id()).as_bytes(),
        0o600,
    )?;
    for (n, bytes) in p.spec.scratch.iter().enumerate() {
        let path = vm_dir.join(names::scratch(n));
        write_private(&path, b"", 0o600)?;
        // set_len makes a sparse file: zero-filled, no disk used until written.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(*bytes))
            .context(|| format!("sizing scratch disk {}", path.display()))?;
    }
    Ok(())
}

/// Runs `ktest run`.
pub fn run(db: &Path, args: RunArgs) -> Result<Code> {
    signals::install();
    let prepared = prepare(&args)?;
    let cwd = std::env::current_dir()
        .and_then(|d| d.canonicalize())
        .context(|| "current directory".into())?;
    let ktest_dir = cwd.join(".ktest");
    let vm_dir = ktest_dir.join("vm");
    let mut state = State::open(db)?;

    if args.dry_run {
        let accel = accel::choose(args.accel, &prepared.qemu, &state, &std::env::temp_dir())?;
        let plan = plan::plan(&plan_input(
            &prepared,
            accel,
            &vm_dir,
            0,
            state::SSH_PORT_BASE,
        ));
        println!("# kernel command line:\n{}", plan.cmdline);
        println!(
            "# qemu (run in {}; slot 0 shown, the real one is allocated at run time):",
            vm_dir.display()
        );
        println!("{}", plan.shell_line());
        return Ok(Code::Passed);
    }

    create_private_dir(&ktest_dir)?;
    let accel = accel::choose(args.accel, &prepared.qemu, &state, &ktest_dir)?;
    let test_name = prepared.test.to_string_lossy().into_owned();
    let row = state.allocate(&cwd, &vm_dir, &test_name)?;
    state.add_file(row.id, &vm_dir)?;
    let guard = VmGuard { state, row };
    // A directory left by a ktest that died belongs to no live VM: replace it.
    state::remove_path(&vm_dir);
    create_private_dir(&vm_dir)?;
    populate(&prepared, &args, &vm_dir)?;
    let plan = plan::plan(&plan_input(
        &prepared,
        accel,
        &vm_dir,
        guard.row.slot,
        guard.row.ssh_port,
    ));
    if args.verbose {
        eprintln!("ktest: {}", plan.shell_line());
    }
    let log_dir = ktest_dir.join("log");
    create_private_dir(&log_dir)?;
    let log = log_dir.join(format!(
        "{}.log",
        prepared
            .test
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
    ));
    if signals::interrupted() {
        return Ok(Code::Interrupted);
    }
    let opts = supervise::Options {
        timeout: Duration::from_secs(prepared.timeout),
        verbose: args.verbose,
        log: log.clone(),
    };
    let observed = supervise::run(&plan, &vm_dir, &opts, |pid| {
        // Lets a later ktest kill this qemu if both ktest and its
        // parent-death signal somehow failed.
        let _ = guard.state.set_qemu(guard.row.id, pid);
    });
    drop(guard);
    let observed = observed?;
    let verdict = outcome::decide(&observed);
    let name = args.test.display();
    match verdict.code {
        Code::Passed => eprintln!("ktest: {name}: {}", verdict.summary),
        _ => eprintln!(
            "ktest: {name}: {}\nktest: console log: {}",
            verdict.summary,
            log.display()
        ),
    }
    Ok(verdict.code)
}
