//! Building the kernel from a source tree into `.ktest/` (`ktest build`,
//! `oldconfig`, `config`, and `run` without `--kernel`).
//!
//! Stages: plan (pure: tree, inputs, build directory, make variables) →
//! configure (only when the inputs are new) → check the requested options →
//! make → install modules (only when stale). docs/build.md describes the
//! design and its costs.

mod exec;
mod inputs;
pub mod kconfig;
mod make;
mod modules;
use crate::arch::Arch;
use crate::variant::Variants;
pub use inputs::fnv1a64;
pub use modules::release;
mod progress;
mod tree;

use crate::cli::{BuildArgs, BuildOpts};
use crate::config_file::{self, FileConfig};
use crate::deps;
use crate::error::{Code, Context, Error, Result};
use crate::kernel::Kernel;
use crate::signals;
use crate::spec::KconfigOption;
use exec::Show;
use inputs::{Base, ConfigAction, Inputs};
use kconfig::{Request, Setting};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

/// Where the build directories go inside the source tree.
const BUILD_SUBDIR: &str = ".ktest/build";
/// The link to the most recently built directory, beside the others.
const LAST_LINK: &str = "last";
/// The build log inside a build directory.
const LOG: &str = "build.log";
/// Where a `.config` waits while a new one is generated, so an unchanged
/// result can be put back with its old mtime.
const PREVIOUS_CONFIG: &str = "ktest-previous.config";
/// The lock serializing ktests that build the same directory.
const LOCK: &str = "ktest.lock";

/// Everything decided before anything is written.
struct Plan {
    src: PathBuf,
    root: PathBuf,
    dir: PathBuf,
    inputs: Inputs,
    vars: Vec<(String, String)>,
    jobs: u32,
    /// The settings layered over the base: ktest's fragment, then the test's.
    settings: Vec<Setting>,
    requests: Vec<Request>,
    show: Show,
    /// The architecture built for.
    arch: &'static Arch,
    /// The configuration variants built with.
    variants: Variants,
    /// Whether `root/last` follows this build (not for a bisect's own
    /// build directory, which is outside `root`).
    link_last: bool,
}

impl Plan {
    fn make_args(&self, jobs: bool, extra: &[(&str, String)], targets: &[&str]) -> Vec<String> {
        make::args(
            &self.src,
            &self.dir,
            jobs.then_some(self.jobs),
            &self.vars,
            extra,
            targets,
        )
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(LOG)
    }
}

fn plan(opts: &BuildOpts, file: &FileConfig, kconfig: &[KconfigOption]) -> Result<Plan> {
    let cwd = std::env::current_dir().context(|| "current directory".into())?;
    let src = tree::find(opts.kernel_src.as_deref(), &cwd)?;
    let base_value = opts
        .base_config
        .as_deref()
        .or(file.base_config.as_deref())
        .unwrap_or(inputs::DEFAULT_BASE);
    let base = Base::parse(base_value, &cwd).map_err(Error::usage)?;
    let base_digest = match &base {
        Base::File(p) => {
            let bytes = std::fs::read(p)
                .map_err(|e| Error::usage(format!("base config {}: {e}", p.display())))?;
            Some(inputs::fnv1a64(&bytes))
        }
        Base::Target(_) => None,
    };
    let user_vars = make::merge_vars(&file.make_vars, &opts.make_vars).map_err(Error::usage)?;
    let arch = arch_for(opts, file, &user_vars)?;
    let native = arch == crate::arch::default();
    let mut vars = user_vars.clone();
    vars.extend(crate::arch::make_vars(arch, &user_vars, native));
    vars.sort();
    check_compiler(arch, &vars)?;
    let fragment = kconfig::parse_fragment(arch.fragment)
        .map_err(|e| Error::infra(format!("ktest's built-in Kconfig fragment: {e}")))?;
    let variants = variants_for(opts, file)?;
    let mut variant_layers = Vec::new();
    // Without variants the text is the architecture's fragment alone, so
    // plain builds keep their directories.
    let mut fragment_text = arch.fragment.to_string();
    for v in variants.iter() {
        let settings = kconfig::parse_fragment(v.fragment)
            .map_err(|e| Error::infra(format!("{}: {e}", v.fragment_path)))?;
        variant_layers.push((v.name, settings));
        fragment_text.push_str(v.fragment);
    }
    let layered: Vec<&[Setting]> = std::iter::once(fragment.as_slice())
        .chain(variant_layers.iter().map(|(_, s)| s.as_slice()))
        .collect();
    let ours = kconfig::resolve(&layered);
    let test: Vec<Setting> = kconfig.iter().map(Setting::from_option).collect();
    let test = kconfig::resolve(&[&test]);
    let jobs = match opts.jobs.or(file.jobs) {
        Some(0) => return Err(Error::usage("--jobs must be at least 1")),
        Some(j) => j,
        None => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
    };
    let inputs = Inputs::new(base, base_digest, &fragment_text, &ours, &test, &vars);
    let root = file
        .build_dir
        .clone()
        .unwrap_or_else(|| src.join(BUILD_SUBDIR));
    let dir = root.join(inputs.dir_name());
    let show = if opts.build_log {
        Show::Full
    } else if std::io::stderr().is_terminal() {
        Show::Progress
    } else {
        Show::Quiet
    };
    Ok(Plan {
        src,
        root,
        dir,
        inputs,
        vars,
        jobs,
        settings: kconfig::resolve(&[&ours, &test]),
        requests: kconfig::requests(&fragment, &variant_layers, kconfig),
        show,
        arch,
        variants,
        link_last: true,
    })
}

/// The configuration variants asked for: `--variant`, else `variant` in
/// `.ktest.toml`.
pub fn variants_for(opts: &BuildOpts, file: &FileConfig) -> Result<Variants> {
    if opts.variants.is_empty() {
        return Ok(file.variants.clone());
    }
    Variants::parse(&opts.variants).map_err(|e| Error::usage(format!("--variant: {e}")))
}

/// The architecture of a build: `--arch`, else `.ktest.toml`'s `arch`,
/// else what a user's `ARCH` make variable names, else the host's.
fn arch_for(
    opts: &BuildOpts,
    file: &FileConfig,
    vars: &[(String, String)],
) -> Result<&'static Arch> {
    let from_var = match make::var(vars, "ARCH") {
        None => None,
        Some(v) => Some(crate::arch::from_make_arch(v).ok_or_else(|| {
            Error::usage(format!(
                "ARCH={v}: ktest builds and boots {} only",
                crate::arch::ALL
                    .iter()
                    .map(|a| a.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?),
    };
    let chosen = opts.arch.or(file.arch);
    if let (Some(c), Some(v)) = (chosen, from_var) {
        if c != v {
            return Err(Error::usage(format!(
                "the build is for {} (--arch or arch in .ktest.toml), and the make variable ARCH says {}\n  drop one of them",
                c.name, v.name
            )));
        }
    }
    Ok(chosen.or(from_var).unwrap_or_else(crate::arch::default))
}

/// Refuses, before configuring, a cross build whose compiler is missing.
fn check_compiler(arch: &Arch, vars: &[(String, String)]) -> Result<()> {
    if make::var(vars, "LLVM").is_some() {
        return Ok(());
    }
    let gcc = format!("{}gcc", make::var(vars, "CROSS_COMPILE").unwrap_or(""));
    if which::which(&gcc).is_ok() {
        return Ok(());
    }
    Err(Error::usage(format!(
        "building for {} needs {gcc}, and it is not in PATH\n  install it (Debian: apt-get install {}), or build with clang: -m LLVM=1",
        arch.name,
        if make::var(vars, "CROSS_COMPILE").is_some() { arch.cross_package } else { "gcc" }
    )))
}

/// An exclusive lock on a build directory, held while it is configured and
/// built: two ktests building one directory at once would corrupt it.
struct DirLock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

fn lock(dir: &Path) -> Result<DirLock> {
    use nix::fcntl::{Flock, FlockArg};
    let path = dir.join(LOCK);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .context(|| format!("opening {}", path.display()))?;
    let mut said = false;
    // Polled rather than blocking, so Ctrl-C ends the wait.
    loop {
        f = match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(DirLock(l)),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => f,
            Err((_, e)) => return Err(Error::infra(format!("locking {}: {e}", path.display()))),
        };
        if !said {
            said = true;
            crate::errln!(
                "ktest: waiting for another ktest building in {}",
                dir.display()
            );
        }
        if signals::interrupted() {
            return Err(Error::new(
                Code::Interrupted,
                "interrupted while waiting for the other ktest's build",
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn open_log(path: &Path, truncate: bool) -> Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true);
    if truncate {
        o.write(true).truncate(true);
    } else {
        o.append(true);
    }
    o.open(path)
        .context(|| format!("opening {}", path.display()))
}

/// Runs one make step; a failure is a build failure (exit 6) showing make's
/// error lines.
fn make_step(
    plan: &Plan,
    log: &mut std::fs::File,
    args: &[String],
    label: &str,
    show: Show,
) -> Result<()> {
    let done = exec::run(args, log, show, label)?;
    if done.status.success() {
        return Ok(());
    }
    let target = args.last().map(String::as_str).unwrap_or("");
    if let Base::Target(t) = &plan.inputs.base {
        let unknown = format!("No rule to make target '{t}'");
        if target == t && done.errors.iter().any(|l| l.contains(&unknown)) {
            return Err(Error::usage(format!(
                "base config '{t}' is not a config target of {} (use tinyconfig, defconfig, another *config target, or a file path with a '/')",
                plan.src.display()
            )));
        }
    }
    Err(Error::new(
        Code::BuildFailed,
        format!(
            "{label} failed ({}):\n{}\n  full log: {}",
            describe_status(done.status),
            done.errors
                .iter()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
            plan.log_path().display()
        ),
    ))
}

fn describe_status(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("make exited with status {c}"),
        (_, Some(sig)) => format!("make was killed by signal {sig}"),
        _ => "make failed".into(),
    }
}

fn unsatisfied_message(plan: &Plan, config: &str, failed: &[&Request]) -> String {
    // One line per option: which one, why it is missing, where to look.
    let lines = kconfig::explain(failed, config, |name| {
        kconfig::find_definition(&plan.src, name)
    });
    format!(
        "the kernel configuration lacks {} requested option{}:\n{}\n  fix the test's KCONFIG (or the base config), then run again",
        failed.len(),
        if failed.len() == 1 { "" } else { "s" },
        lines
            .iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).context(|| format!("writing {}", path.display()))
}

/// Makes `.config` from the inputs: base, the layered settings,
/// olddefconfig. When the result equals the `.config` already there, the
/// old file is put back so its mtime does not change.
fn generate(plan: &Plan, log: &mut std::fs::File, strict: bool) -> Result<()> {
    let config = plan.dir.join(".config");
    let previous = plan.dir.join(PREVIOUS_CONFIG);
    if !config.exists() && previous.exists() {
        // A generation was interrupted after moving the old config aside.
        std::fs::rename(&previous, &config)
            .context(|| format!("restoring {}", config.display()))?;
    }
    let had = config.exists();
    if had {
        std::fs::rename(&config, &previous)
            .context(|| format!("moving {} aside", config.display()))?;
    }
    let show = if plan.show == Show::Full {
        Show::Full
    } else {
        Show::Quiet
    };
    let made = (|| -> Result<String> {
        match &plan.inputs.base {
            Base::Target(t) => make_step(
                plan,
                log,
                &plan.make_args(false, &[], &["-s", t]),
                "configuring",
                show,
            )?,
            Base::File(p) => {
                std::fs::copy(p, &config)
                    .map_err(|e| Error::usage(format!("base config {}: {e}", p.display())))?;
            }
        }
        let merged = kconfig::merge(&read(&config)?, &plan.settings);
        write(&config, &merged)?;
        make_step(
            plan,
            log,
            &plan.make_args(false, &[], &["-s", "olddefconfig"]),
            "configuring",
            show,
        )?;
        let text = read(&config)?;
        let failed = kconfig::unsatisfied(&text, &plan.requests);
        if strict && !failed.is_empty() {
            return Err(Error::usage(unsatisfied_message(plan, &text, &failed)));
        }
        Ok(text)
    })();
    match made {
        Err(e) => {
            if had {
                let _ = std::fs::rename(&previous, &config);
            } else {
                let _ = std::fs::remove_file(&config);
            }
            Err(e)
        }
        Ok(text) => {
            if had && std::fs::read_to_string(&previous).ok().as_deref() == Some(text.as_str()) {
                std::fs::rename(&previous, &config)
                    .context(|| format!("restoring {}", config.display()))?;
            } else {
                let _ = std::fs::remove_file(&previous);
            }
            let stamp = plan.dir.join(inputs::STAMP);
            let tmp = plan.dir.join(format!("{}.tmp", inputs::STAMP));
            write(&tmp, &plan.inputs.key_text())?;
            std::fs::rename(&tmp, &stamp).context(|| format!("writing {}", stamp.display()))
        }
    }
}

/// Makes sure the build directory has the `.config` its inputs call for.
/// Returns true when it had to be generated. With `strict`, a requested
/// option missing from the final config is an error; otherwise a warning.
fn ensure_config(plan: &Plan, strict: bool) -> Result<bool> {
    let config = plan.dir.join(".config");
    let stamp = std::fs::read_to_string(plan.dir.join(inputs::STAMP)).ok();
    let key = plan.inputs.key_text();
    let generated = match inputs::config_action(stamp.as_deref(), &key, config.exists()) {
        ConfigAction::Keep => false,
        ConfigAction::Generate => {
            crate::errln!(
                "ktest: configuring {} ({}{})",
                plan.dir.display(),
                describe_inputs(&plan.inputs),
                if plan.variants.is_empty() {
                    String::new()
                } else {
                    format!(", variant {}", plan.variants)
                }
            );
            let mut log = open_log(&plan.log_path(), true)?;
            generate(plan, &mut log, strict)?;
            true
        }
    };
    // Checked every time, not only after generating: `ktest config` may
    // have removed an option since.
    let text = read(&config)?;
    let failed = kconfig::unsatisfied(&text, &plan.requests);
    if !failed.is_empty() {
        let msg = unsatisfied_message(plan, &text, &failed);
        if strict {
            return Err(Error::usage(format!(
                "{msg}\n  or, if {} was edited with ktest config, delete it to regenerate it",
                config.display()
            )));
        }
        crate::errln!("ktest: warning: {msg}");
    }
    Ok(generated)
}

fn describe_inputs(i: &Inputs) -> String {
    let base = match &i.base {
        Base::Target(t) => t.clone(),
        Base::File(p) => p.display().to_string(),
    };
    let mut parts = vec![format!("base {base}")];
    if !i.options.is_empty() {
        parts.push(
            i.options
                .iter()
                .map(|o| o.line())
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    if !i.make_vars.is_empty() {
        parts.push(
            i.make_vars
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    parts.join(", ")
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Points `root/last` at the directory just built, for gdb and `--kernel`.
fn update_last_link(plan: &Plan) {
    let link = plan.root.join(LAST_LINK);
    let target = PathBuf::from(plan.inputs.dir_name());
    if std::fs::read_link(&link).ok().as_deref() == Some(target.as_path()) {
        return;
    }
    let tmp = plan
        .root
        .join(format!(".{LAST_LINK}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    if std::os::unix::fs::symlink(&target, &tmp).is_ok() {
        let _ = std::fs::rename(&tmp, &link);
    }
}

/// The image kbuild made: the architecture's boot image.
fn image(plan: &Plan) -> PathBuf {
    plan.dir.join(plan.arch.image)
}

/// Configures (if needed) and builds; installs modules when stale.
fn build_planned(plan: &Plan) -> Result<Kernel> {
    signals::install();
    let fresh = !plan.dir.exists();
    std::fs::create_dir_all(&plan.dir).context(|| format!("creating {}", plan.dir.display()))?;
    let _lock = lock(&plan.dir)?;
    let generated = match ensure_config(plan, true) {
        Ok(g) => g,
        Err(e) => {
            if fresh {
                // Nothing was built there; leave no litter for a typo.
                let _ = std::fs::remove_dir_all(&plan.dir);
            }
            return Err(e);
        }
    };
    let mut log = open_log(&plan.log_path(), !generated)?;
    let vmlinux = plan.dir.join("vmlinux");
    let before = mtime(&vmlinux);
    let start = Instant::now();
    if generated && plan.show != Show::Full {
        crate::errln!(
            "ktest: building the kernel with make -j{} (log: {})",
            plan.jobs,
            plan.log_path().display()
        );
    }
    make_step(
        plan,
        &mut log,
        &plan.make_args(true, &[], &[]),
        "kernel build",
        plan.show,
    )?;
    let config_path = plan.dir.join(".config");
    let config = crate::kernel::parse_config(&read(&config_path)?);
    let release = modules::release(&plan.dir);
    let mut modules = None;
    if config.get("MODULES").map(String::as_str) == Some("y") {
        if let Some(rel) = &release {
            if modules::needs_install(&plan.dir, rel) {
                make_step(
                    plan,
                    &mut log,
                    &plan.make_args(
                        false,
                        &[("INSTALL_MOD_PATH", plan.dir.display().to_string())],
                        &["modules_install"],
                    ),
                    "installing modules",
                    plan.show,
                )?;
            }
            let tree = modules::installed_dir(&plan.dir, rel);
            if tree.join("modules.dep").is_file() {
                modules = Some(tree);
            }
        }
    }
    let image = image(plan);
    if !image.is_file() {
        return Err(Error::new(
            Code::BuildFailed,
            format!(
                "the build finished but {} is missing\n  full log: {}",
                image.display(),
                plan.log_path().display()
            ),
        ));
    }
    if mtime(&vmlinux) != before {
        crate::errln!(
            "ktest: built {} in {} s",
            plan.dir.display(),
            start.elapsed().as_secs()
        );
    }
    if plan.link_last {
        update_last_link(plan);
    }
    Ok(Kernel {
        image,
        vmlinux: vmlinux.is_file().then_some(vmlinux),
        config: Some(config_path),
        source: Some(plan.src.clone()),
        build_dir: Some(plan.dir.clone()),
        modules,
        release,
        arch: Some(plan.arch),
    })
}

/// The kernel for a run or boot: built from the source tree (the current
/// directory or `--kernel-src`) with the options the test declared.
pub fn kernel_for_run(opts: &BuildOpts, kconfig: &[KconfigOption]) -> Result<Kernel> {
    let plan = plan(opts, config_file::get()?, kconfig)?;
    build_planned(&plan)
}

/// The kernel of the tree `opts` names, built in `dir` whatever its
/// inputs: `ktest bisect` builds every step in one directory, so that a
/// step recompiles only what changed since the last.
pub fn kernel_in(opts: &BuildOpts, kconfig: &[KconfigOption], dir: &Path) -> Result<Kernel> {
    let mut plan = plan(opts, config_file::get()?, kconfig)?;
    plan.root = dir.parent().unwrap_or(dir).to_path_buf();
    plan.dir = dir.to_path_buf();
    plan.link_last = false;
    build_planned(&plan)
}

/// The KCONFIG a `build`/`oldconfig`/`config` test argument declares.
fn test_kconfig(test: Option<&Path>) -> Result<Vec<KconfigOption>> {
    match test {
        None => Ok(Vec::new()),
        Some(t) => {
            let t = t
                .canonicalize()
                .map_err(|e| Error::usage(format!("{}: {e}", t.display())))?;
            Ok(deps::read(&t)?.kconfig)
        }
    }
}

/// `ktest build [TEST]`: configures and builds, then prints the build
/// directory (which `ktest run --kernel` accepts) on stdout.
pub fn build(args: &BuildArgs) -> Result<Code> {
    let kconfig = test_kconfig(args.test.as_deref())?;
    let plan = plan(&args.build, config_file::get()?, &kconfig)?;
    let k = build_planned(&plan)?;
    crate::outln!("{}", k.build_dir.unwrap_or(plan.dir).display());
    Ok(Code::Passed)
}

/// `ktest oldconfig [TEST]` (`interactive` false) or `ktest config [TEST]`
/// (true, `make nconfig`): on the `.config` of the build directory `run`
/// uses for the same inputs, with the same make variables.
pub fn configure(args: &BuildArgs, interactive: bool) -> Result<Code> {
    let kconfig = test_kconfig(args.test.as_deref())?;
    let plan = plan(&args.build, config_file::get()?, &kconfig)?;
    std::fs::create_dir_all(&plan.dir).context(|| format!("creating {}", plan.dir.display()))?;
    let _lock = lock(&plan.dir)?;
    ensure_config(&plan, false)?;
    let target = if interactive { "nconfig" } else { "oldconfig" };
    // The terminal stays ktest's and make's together: nconfig draws on it
    // and oldconfig asks on it.
    let status = std::process::Command::new(exec::MAKE)
        .args(plan.make_args(false, &[], &[target]))
        .status()
        .map_err(|e| Error::infra(format!("cannot run make: {e}")))?;
    if signals::interrupted() {
        // Ctrl-C reached make too, through the terminal.
        return Err(Error::new(
            Code::Interrupted,
            format!("interrupted: make {target} was stopped"),
        ));
    }
    if !status.success() {
        return Err(Error::new(
            Code::BuildFailed,
            format!(
                "make {target} failed ({}){}",
                describe_status(status),
                if interactive {
                    "\n  nconfig needs ncurses (Debian: apt-get install libncurses-dev)"
                } else {
                    ""
                }
            ),
        ));
    }
    let text = read(&plan.dir.join(".config"))?;
    let failed = kconfig::unsatisfied(&text, &plan.requests);
    if !failed.is_empty() {
        crate::errln!(
            "ktest: warning: {}",
            unsatisfied_message(&plan, &text, &failed)
        );
    }
    crate::errln!("ktest: {}", plan.dir.join(".config").display());
    Ok(Code::Passed)
}
