//! Everything decided before a VM exists: the test's declarations and
//! subtests, the kernel and its config, REQUIRE'd files, qemu, the root, and
//! whether this machine and kernel can take the VM at all. Shared by
//! `ktest run` and `ktest boot`; nothing here starts a VM.

use crate::arch::Arch;
use crate::cli::{BootArgs, RunArgs};
use crate::config_file::FILE_NAME;
use crate::deps;
use crate::error::{Context, Error, Result};
use crate::guest::Subtests;
use crate::guest_needs;
use crate::host_fit;
use crate::initramfs;
use crate::kernel::{self, Kernel};
use crate::modules::ModuleIndex;
use crate::plan::{self, PlanInput, Root};
use crate::require::{self, Required};
use crate::rootfs;
use crate::spec::{KconfigOption, TestSpec};
use crate::state;
use crate::suite;
use crate::values::{Cpus, TimeLimit};
use crate::variant::Variants;
use std::path::{Path, PathBuf};

/// The qemu binary: `$KTEST_QEMU`, else the architecture's
/// (`qemu-system-x86_64`, `qemu-system-aarch64`) from PATH.
pub fn find_qemu(arch: &Arch) -> Result<PathBuf> {
    let name = std::env::var_os("KTEST_QEMU").unwrap_or_else(|| arch.qemu.into());
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
    which::which(&name).map_err(|_| {
        Error::infra(format!(
            "{} not found in PATH\n  install qemu (Debian: apt-get install {})",
            name.display(),
            arch.qemu_package
        ))
    })
}

/// The guest's architecture: the kernel's own when ktest can tell it,
/// which must then be the one asked for (`--arch`, `arch` in
/// `.ktest.toml`); else the one asked for, else the host's.
fn guest_arch(kernel: &Kernel, asked: Option<&'static Arch>) -> Result<&'static Arch> {
    match (kernel.arch, asked) {
        (Some(k), Some(a)) if k != a => Err(Error::usage(format!(
            "{} is an {} kernel, and the run is for {} (--arch or arch in .ktest.toml)\n  give a kernel of that architecture, or drop --arch",
            kernel.image.display(),
            k.name,
            a.name
        ))),
        (Some(k), _) => Ok(k),
        (None, Some(a)) => Ok(a),
        (None, None) => Ok(crate::arch::default()),
    }
}

/// Refuses a root that cannot serve the guest's architecture: the host's
/// own programs run only on the host's architecture.
fn check_root_arch(root: &Root, arch: &Arch) -> Result<()> {
    if *root == Root::Host && !crate::arch::is_host(arch) {
        return Err(Error::usage(format!(
            "the host's root cannot serve an {} guest: its programs are {}\n  give --root an {0} root image (create-vm-image --arch {} IMAGE), or put one at {}",
            arch.name,
            crate::arch::host().map_or("another architecture's", |h| h.name),
            arch.debian,
            rootfs::default_candidates(arch, None)[0].display()
        )));
    }
    Ok(())
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

/// Says which REQUIRE'd programs are of another architecture than the
/// guest: they are copied in all the same (a test may run them through
/// qemu-user, or only read them), but will not run there as they are.
fn note_foreign_requires(test: &Path, requires: &[Required], arch: &Arch) {
    for r in requires {
        if let Some(a) = crate::arch::of_elf_file(&r.host).filter(|a| *a != arch) {
            crate::errln!(
                "ktest: {}: REQUIRE={}: {} is an {} program and the guest is {}: it will not run there as it is",
                test.display(),
                r.name,
                r.host.display(),
                a.name,
                arch.name
            );
        }
    }
}

/// The kernel's parsed `.config` and its path, when ktest knows one.
type Config = Option<(PathBuf, std::collections::HashMap<String, String>)>;

pub fn read_config(kernel: &Kernel) -> Result<Config> {
    let Some(path) = &kernel.config else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).context(|| format!("reading {}", path.display()))?;
    Ok(Some((path.clone(), kernel::parse_config(&text))))
}

/// Checks the test's KCONFIG against the kernel's config, when known: an
/// option missing or of another value is refused; one that is a module
/// (a bare `KCONFIG=NAME` on a distribution kernel) passes, with a note
/// that the test must load it, if the guest gets the kernel's modules.
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
    let unmet = kernel::missing_options(config, &spec.kconfig);
    if !unmet.is_empty() {
        return Err(Error::usage(format!(
            "{}: KCONFIG: {} in {} (config {})\n  rebuild the kernel with them, or run the test on a kernel that has them",
            test.display(),
            unmet
                .iter()
                .map(|o| kernel::unmet_reason(config, o))
                .collect::<Vec<_>>()
                .join("; "),
            kernel.image.display(),
            path.display()
        )));
    }
    let modules: Vec<String> = spec
        .kconfig
        .iter()
        .filter(|o| o.value.is_none() && kernel::has(config, &o.name) == kernel::Has::Module)
        .map(|o| o.to_string())
        .collect();
    if modules.is_empty() {
        return Ok(());
    }
    if kernel.modules.is_none() {
        return Err(Error::usage(format!(
            "{}: KCONFIG: {} {} a module in {}, and ktest found no module tree to give the guest\n  give --modules DIR (the directory holding modules.dep)",
            test.display(),
            modules.join(", "),
            if modules.len() == 1 { "is" } else { "are" },
            kernel.image.display()
        )));
    }
    crate::errln!(
        "ktest: {}: KCONFIG: {} {} a module in this kernel: the test must load it (modprobe)",
        test.display(),
        modules.join(", "),
        if modules.len() == 1 { "is" } else { "are" }
    );
    Ok(())
}

/// Refuses a given kernel (`--kernel`) that was not built with the
/// variants asked for: the run would claim a KASAN run on a kernel without
/// KASAN. ktest's own builds have them (the build checks after
/// olddefconfig).
fn check_variants(kernel: &Kernel, config: &Config, variants: &Variants) -> Result<()> {
    if variants.is_empty() {
        return Ok(());
    }
    let Some((path, config)) = config else {
        return Err(Error::usage(format!(
            "--variant {variants}: ktest cannot tell whether {} has the variant's options: no .config known for it\n  give --kernel a build directory, or let ktest build the kernel (ktest build --variant {variants})",
            kernel.image.display()
        )));
    };
    for v in variants.iter() {
        let wanted: Vec<KconfigOption> = crate::build::kconfig::parse_fragment(v.fragment)
            .map_err(|e| Error::infra(format!("{}: {e}", v.fragment_path)))?
            .iter()
            .map(|s| s.as_check())
            .collect();
        let unmet = kernel::missing_options(config, &wanted);
        if !unmet.is_empty() {
            return Err(Error::usage(format!(
                "--variant {}: {} was not built with it: {} (config {})\n  build it with the variant (ktest build --variant {}), or drop --variant",
                v.name,
                kernel.image.display(),
                unmet
                    .iter()
                    .map(|o| kernel::unmet_reason(config, o))
                    .collect::<Vec<_>>()
                    .join("; "),
                path.display(),
                v.name
            )));
        }
    }
    Ok(())
}

/// How this kernel boots ktest's guest: as it is, when what the guest
/// needs is built in (ktest's own builds), or with an initramfs that loads
/// it, when it is modules (distribution kernels). Refuses before booting a
/// kernel that cannot do either, saying what it lacks.
fn boot_initrd(
    kernel: &Kernel,
    arch: &Arch,
    root: &Root,
    config: &Config,
) -> Result<Option<PathBuf>> {
    let index = match &kernel.modules {
        Some(tree) => Some(
            ModuleIndex::read(tree)
                .context(|| format!("reading {}/modules.dep", tree.display()))?,
        ),
        None => None,
    };
    if let (Some(tree), Some(index), Some(release)) = (&kernel.modules, &index, &kernel.release) {
        check_tree_release(tree, index, release)?;
    }
    let decision = guest_needs::decide(arch, config.as_ref().map(|(_, c)| c), index.as_ref(), root)
        .map_err(|e| unbootable(kernel, arch, config, e))?;
    let (Some(tree), Some(index)) = (&kernel.modules, &index) else {
        return Ok(None);
    };
    if decision.modules.is_empty() {
        return Ok(None);
    }
    let loads = index.resolve(&decision.modules).map_err(|missing| {
        unbootable(
            kernel,
            arch,
            config,
            guest_needs::Unbootable::NotInTree(missing),
        )
    })?;
    let contents = initramfs::Contents {
        busybox: initramfs::find_busybox(arch)?,
        tree: tree.clone(),
        loads,
        release: kernel.release.clone(),
        compression: initramfs::Compression::for_config(config.as_ref().map(|(_, c)| c)),
    };
    initramfs::get(&contents, &initramfs::cache_dir()).map(Some)
}

/// Refuses a module tree built for another kernel (`--modules` of the
/// wrong tree): its modules would not load, and the guest would fail to
/// mount its root or the test to modprobe, far from the cause.
fn check_tree_release(tree: &Path, index: &ModuleIndex, release: &str) -> Result<()> {
    let Some(sample) = index.sample() else {
        return Ok(());
    };
    let path = tree.join(sample);
    let bytes = std::fs::read(&path).context(|| format!("reading {}", path.display()))?;
    match crate::modules::vermagic_release(&bytes) {
        Some(built) if built != release => Err(Error::usage(format!(
            "the module tree {} is for kernel {built}, and the kernel is {release} ({} says so)\n  give --modules the kernel's own module tree",
            tree.display(),
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// The message for a kernel that cannot boot ktest's guest (exit 2).
fn unbootable(
    kernel: &Kernel,
    arch: &Arch,
    config: &Config,
    why: guest_needs::Unbootable,
) -> Error {
    use guest_needs::Unbootable::*;
    let image = kernel.image.display();
    let debian = arch.debian;
    let from = config
        .as_ref()
        .map_or(String::new(), |(p, _)| format!(" (config {})", p.display()));
    Error::usage(match why {
        Missing(o) => format!(
            "{image} cannot boot ktest's guest: it has {} neither built in nor as modules{from}\n  build the kernel with {} (ktest build does), or use a kernel that has them (Debian's linux-image-{debian} does; linux-image-cloud-{debian} has no 9p)",
            o.join(", "),
            arch.fragment_path
        ),
        NoModules(o) => format!(
            "{image} has {} as modules{from}, and ktest found no module tree for it ({})\n  give --modules DIR (the directory holding modules.dep), or build the kernel with them built in ({})",
            o.join(", "),
            match &kernel.release {
                Some(r) => format!("no /lib/modules/{r}/modules.dep"),
                None => "its release is unknown".into(),
            },
            arch.fragment_path,
        ),
        NotInTree(o) => format!(
            "{image}: {} should be modules{from}, and its module tree {} lacks them\n  reinstall the kernel's modules, or give --modules the kernel's own tree",
            o.join(", "),
            kernel.modules.as_deref().unwrap_or(Path::new("?")).display()
        ),
    })
}

/// Everything decided before a VM exists.
#[derive(Clone)]
pub struct Prepared {
    /// The test script; `None` for `ktest boot`.
    pub test: Option<PathBuf>,
    /// What it declared.
    pub spec: TestSpec,
    /// The subtests selected (`Single` with an empty name for `ktest boot`).
    pub subtests: Subtests,
    /// The kernel.
    pub kernel: Kernel,
    /// REQUIRE'd files, found on the host.
    pub requires: Vec<Required>,
    /// The qemu binary.
    pub qemu: PathBuf,
    /// The time limit per subtest, in seconds.
    pub timeout: u64,
    /// Virtual CPUs.
    pub cpus: u32,
    /// The guest's init with the host's root (the ktest binary).
    pub init: PathBuf,
    /// The root filesystem.
    pub root: Root,
    /// The guest's architecture.
    pub arch: &'static Arch,
    /// The initramfs that loads the modules the guest needs, for a kernel
    /// that has them as modules.
    pub initrd: Option<PathBuf>,
}

/// The subtests a run selects: from `list-tests` for a file that declared
/// `SUBTESTS=yes`, else the file itself as one subtest.
fn subtests(test: &Path, spec: &TestSpec, patterns: &[String]) -> Result<Subtests> {
    crate::kernel_log::Allow::parse(&spec.allow.join(","))
        .map_err(|e| Error::usage(format!("{}: deps: ALLOW: {}", test.display(), e.message)))?;
    if spec.subtests {
        let all = deps::list(test)?;
        let selected = suite::select(test, &all, patterns)?;
        return Ok(if spec.serve {
            Subtests::Served(selected)
        } else {
            Subtests::Named(selected)
        });
    }
    if let Some(p) = patterns.first() {
        return Err(Error::usage(format!(
            "{}: cannot select subtest '{p}': the file has no subtests (its deps does not print SUBTESTS=yes)",
            test.display()
        )));
    }
    Ok(Subtests::Single(suite::single_name(test)))
}

/// The root for a run or boot, from `--root` or the default locations of
/// the architecture's images, and checked against the architecture.
pub fn choose_root(arg: Option<&str>, arch: &Arch) -> Result<Root> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let root = rootfs::choose(arg, &rootfs::default_candidates(arch, home.as_deref()))?;
    check_root_arch(&root, arch)?;
    Ok(root)
}

/// Kernels built in this run, by the KCONFIG they were built for (sorted),
/// so that every test file needing the same configuration shares one build.
type Built = Vec<(Vec<String>, Kernel)>;

/// Prepares `ktest run` of every test file selected, in order; the kernel
/// is built once per configuration the files need.
pub fn prepare_all(args: &RunArgs, tests: &[suite::TestArg]) -> Result<Vec<Prepared>> {
    let variants = crate::build::variants_for(&args.build, crate::config_file::get()?)?;
    if variants.time_factor() > 1 || variants.mem_factor() > 1 {
        crate::errln!(
            "ktest: variant {variants}: time limits x{}, memory x{} (a --timeout or --mem is taken as given)",
            variants.time_factor(),
            variants.mem_factor()
        );
    }
    let mut built = Built::new();
    tests
        .iter()
        .map(|t| prepare(args, t, &variants, &mut built))
        .collect()
}

/// The kernel for `kconfig`: `--kernel`'s, one this run built already, or
/// a new build.
fn kernel_for(args: &RunArgs, kconfig: &[KconfigOption], built: &mut Built) -> Result<Kernel> {
    if let Some(k) = &args.kernel {
        return kernel::from_args(k, args.modules.as_deref());
    }
    let mut key: Vec<String> = kconfig.iter().map(|o| o.to_string()).collect();
    key.sort();
    key.dedup();
    if let Some((_, k)) = built.iter().find(|(k, _)| *k == key) {
        return Ok(k.clone());
    }
    let mut opts = args.build.clone();
    opts.build_log |= args.verbose;
    let k = crate::build::kernel_for_run(&opts, kconfig)?;
    built.push((key, k.clone()));
    Ok(k)
}

/// Prepares `ktest run` of one test file, with the subtest patterns given
/// for it.
fn prepare(
    args: &RunArgs,
    test: &suite::TestArg,
    variants: &Variants,
    built: &mut Built,
) -> Result<Prepared> {
    let test_path = &test.path;
    let patterns = &test.patterns;
    let test = test_path
        .canonicalize()
        .map_err(|e| Error::usage(format!("{}: {e}", test_path.display())))?;
    let mut spec = deps::read(&test)?;
    let subtests = subtests(&test, &spec, patterns)?;
    let file = crate::config_file::get()?;
    // --mem replaces the test's MEM; the file's mem is a floor under it.
    let file_name = file.path.as_deref().unwrap_or(Path::new(FILE_NAME));
    let (mem, mem_from) = match (args.mem, file.mem) {
        (Some(mem), _) => (mem, "--mem".to_string()),
        (None, Some(mem)) if mem > spec.mem => (mem, format!("{}: mem", file_name.display())),
        _ => (spec.mem, format!("{}: MEM", test.display())),
    };
    let (mem, mem_from) = match (args.mem, variants.mem_factor()) {
        (None, f) if f > 1 => (
            mem.times(f),
            format!("{mem_from} x{f} (variant {variants})"),
        ),
        _ => (mem, mem_from),
    };
    spec.mem = mem;
    host_fit::check(
        (mem, &mem_from),
        (&spec.scratch, &scratch_from(Some(&test))),
        &crate::launch::start_dir()?
            .join(".ktest")
            .join(crate::vmlock::VMS_DIR),
    )?;
    let kernel = kernel_for(args, &spec.kconfig, built)?;
    let config = read_config(&kernel)?;
    check_variants(&kernel, &config, variants)?;
    check_kconfig(&test, &spec, &kernel, &config)?;
    let requires = resolve_requires(&test, &spec, &kernel)?;
    let arch = guest_arch(&kernel, asked_arch(&args.build)?)?;
    note_foreign_requires(&test, &requires, arch);
    let qemu = find_qemu(arch)?;
    let timeout = args.timeout.unwrap_or_else(|| {
        spec.timeout
            .or(file.timeout)
            .unwrap_or(TimeLimit::DEFAULT)
            .times(variants.time_factor())
    });
    let cpus = args
        .cpus
        .or(spec.cpus)
        .or(file.cpus)
        .unwrap_or(Cpus::DEFAULT);
    let init = guest_init()?;
    let root = choose_root(args.root.as_deref(), arch)?;
    let initrd = boot_initrd(&kernel, arch, &root, &config)?;
    fits_machine(Prepared {
        arch,
        test: Some(test),
        spec,
        subtests,
        kernel,
        requires,
        qemu,
        timeout: timeout.secs(),
        cpus: cpus.get(),
        init,
        root,
        initrd,
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
pub fn scratch_from(test: Option<&Path>) -> String {
    test.map_or("SCRATCH".into(), |t| format!("{}: SCRATCH", t.display()))
}

/// The guest's init with the host root: the ktest binary itself.
pub fn guest_init() -> Result<PathBuf> {
    std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context(|| "finding the ktest binary (the guest's init)".into())
}

/// What `ktest boot` needs: a kernel, memory and CPUs, and no test.
pub fn prepare_boot(args: &BootArgs) -> Result<Prepared> {
    host_fit::memory(args.mem, "--mem", host_fit::mem_total())?;
    let kernel = match &args.kernel {
        Some(k) => kernel::from_args(k, args.modules.as_deref())?,
        None => crate::build::kernel_for_run(&args.build, &[])?,
    };
    let arch = guest_arch(&kernel, asked_arch(&args.build)?)?;
    let root = choose_root(args.root.as_deref(), arch)?;
    let initrd = boot_initrd(&kernel, arch, &root, &read_config(&kernel)?)?;
    fits_machine(Prepared {
        test: None,
        subtests: Subtests::Single(String::new()),
        spec: TestSpec {
            mem: args.mem,
            ..TestSpec::default()
        },
        kernel,
        requires: Vec::new(),
        qemu: find_qemu(arch)?,
        arch,
        timeout: 0,
        cpus: args.cpus.unwrap_or(Cpus::DEFAULT).get(),
        init: guest_init()?,
        root,
        initrd,
    })
}

pub fn plan_input(
    p: &Prepared,
    accel: plan::Accel,
    vm_dir: &Path,
    slot: u32,
    port: u32,
) -> PlanInput {
    PlanInput {
        arch: p.arch,
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
        modules: shared_modules(p),
        initrd: p.initrd.clone(),
        init: p.init.clone(),
    }
}

/// The module tree to share with the guest: none when the guest sees it
/// already, at the same place, through the host's root.
fn shared_modules(p: &Prepared) -> Option<PathBuf> {
    let tree = p.kernel.modules.clone()?;
    let own = p
        .kernel
        .release
        .as_ref()
        .is_some_and(|r| tree == Path::new("/lib/modules").join(r));
    (!(own && p.root == Root::Host)).then_some(tree)
}

/// The architecture the user asked for, if any: `--arch`, else `arch` in
/// `.ktest.toml`.
fn asked_arch(build: &crate::cli::BuildOpts) -> Result<Option<&'static Arch>> {
    Ok(build.arch.or(crate::config_file::get()?.arch))
}
