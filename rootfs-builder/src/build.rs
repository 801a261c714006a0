//! Building a new image: checks, debootstrap, configuration, ext4, rename.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::buildlog;
use crate::cleanup::WorkDir;
use crate::cli::{Cli, Format};
use crate::configure;
use crate::debootstrap::{self, Plan};
use crate::error::{build, usage, Error, Result};
use crate::exec::Runner;
use crate::host;
use crate::image;
use crate::marker::{self, Marker, FORMAT_VERSION};
use crate::signals::Interrupt;
use crate::size::{format_size, mib_ceil, MIB};
use crate::target;

/// A build whose inputs were all checked.
#[derive(Debug)]
pub struct Request {
    /// Absolute path of the image to write.
    pub target: PathBuf,
    /// What to debootstrap.
    pub plan: Plan,
    /// File system size in bytes.
    pub size: u64,
    /// Output format.
    pub format: Format,
}

/// What a successful build reports.
#[derive(Debug)]
pub struct Outcome {
    /// Bytes the image file takes on disk.
    pub used: u64,
    /// Wall time of the build.
    pub elapsed: Duration,
    /// Where the build log was kept.
    pub log: PathBuf,
}

/// Runs every check that needs no work done, in the order the user should
/// hear about problems: root, tools, release, other input, then PATH.
pub fn prepare(cli: &Cli) -> Result<Request> {
    if !host::is_root() {
        return Err(usage(
            "building an image needs root (debootstrap installs packages as root); \
             run it with sudo, or as root",
        ));
    }
    let mut tools = vec![
        host::DEBOOTSTRAP,
        host::MKFS_EXT4,
        host::DEBUGFS,
        host::CHROOT,
    ];
    if cli.format == Format::Qcow2 {
        tools.push(host::QEMU_IMG);
    }
    tools.push(host::DPKG);
    host::require_tools(&tools)?;
    let release = host::resolve_release(cli.release.as_deref())?;
    host::require_known_release(&release, &host::debootstrap_scripts_dir())?;
    let native = host::host_arch()?;
    let arch = cli.arch.clone().unwrap_or_else(|| native.clone());
    let plan = Plan::new(&release, &arch, &cli.mirror, &cli.packages).map_err(usage)?;
    host::require_runnable(&plan.arch, &native)?;
    // The last check, so nothing is created for a build refused above.
    for dir in target::missing_parents(&cli.path)? {
        if target::create_parent(&dir)? {
            progress(&format!("created directory {}", dir.display()));
        }
    }
    let target = target::resolve(&cli.path)?;
    let mut quiet = Runner::new(dev_null()?, Interrupt::default());
    let existing = image::classify(&target, &mut quiet)?;
    target::check_build_target(&target, &existing, cli.force)?;
    Ok(Request {
        target,
        plan,
        size: cli.size,
        format: cli.format,
    })
}

/// Builds the image; the work directory is gone when this returns, however
/// it returns. The log is kept at `PATH.log` unless interrupted.
pub fn run(req: &Request, interrupt: &Interrupt) -> Result<Outcome> {
    let start = Instant::now();
    let parent = req.target.parent().unwrap_or(Path::new("/"));
    let work = WorkDir::create_in(parent)?;
    let work_log = work.path().join("build.log");
    let kept_log = buildlog::kept_log_path(&req.target, ".log");
    let log = File::create(&work_log)
        .map_err(|e| build(format!("cannot create {}: {e}", work_log.display())))?;
    let mut runner = Runner::new(log, interrupt.clone());
    let result = build_in(&work, req, &mut runner);
    drop(runner);
    let result = keep_log(result, &work_log, &kept_log);
    drop(work);
    result.map(|used| Outcome {
        used,
        elapsed: start.elapsed(),
        log: kept_log,
    })
}

/// Moves the log out of the work directory before it is removed and, when
/// a command failed, shows its tail and says where the rest is.
pub fn keep_log<T>(result: Result<T>, work_log: &Path, kept: &Path) -> Result<T> {
    if matches!(result, Err(Error::Interrupted)) {
        return result;
    }
    let kept_ok = fs::rename(work_log, kept).is_ok();
    match result {
        Err(e @ Error::Command { .. }) if kept_ok => {
            buildlog::print_tail(kept);
            Err(build(format!("{e}; full log kept at {}", kept.display())))
        }
        Err(Error::Build(msg)) if kept_ok => {
            Err(build(format!("{msg}; log kept at {}", kept.display())))
        }
        other => other,
    }
}

fn build_in(work: &WorkDir, req: &Request, runner: &mut Runner) -> Result<u64> {
    let plan = &req.plan;
    let root = work.path().join("root");
    fs::create_dir(&root)
        .and_then(|_| fs::set_permissions(&root, fs::Permissions::from_mode(0o755)))
        .map_err(|e| build(format!("cannot create {}: {e}", root.display())))?;

    progress(&format!(
        "debootstrap ({} {}, {})…",
        plan.release, plan.arch, plan.mirror
    ));
    debootstrap::run(plan, &root, runner)?;
    work.unmount_below(&root).map_err(build)?;

    progress("configuring");
    let marker = Marker {
        format: FORMAT_VERSION,
        release: plan.release.clone(),
        arch: plan.arch.clone(),
        mirror: plan.mirror.clone(),
        packages: plan.extra_packages().to_vec(),
        built: marker::now_utc(),
        updated: None,
        tool: marker::tool_id(),
    };
    configure::configure_tree(&root, &marker, runner)?;
    runner.interrupt().check()?;

    let tree = image::tree_usage(&root)
        .map_err(|e| build(format!("measuring {}: {e}", root.display())))?;
    let needed = image::minimum_size_for(tree);
    if needed > req.size {
        let suggest = needed.div_ceil(256 * MIB) * 256 * MIB;
        return Err(usage(format!(
            "--size {} is too small: the installed system uses {} MiB; use --size {} or more",
            format_size(req.size),
            mib_ceil(tree),
            format_size(suggest)
        )));
    }
    // Nothing may be mounted in the tree when mkfs copies it.
    work.unmount_below(&root).map_err(build)?;

    progress(&format!("building ext4 image ({})", format_size(req.size)));
    let raw = work.path().join("image.raw");
    image::build_ext4(&root, &raw, req.size, runner)?;
    let finished = match req.format {
        Format::Raw => raw,
        Format::Qcow2 => {
            progress("converting to qcow2");
            let qcow2 = work.path().join("image.qcow2");
            image::convert(&raw, Format::Raw, &qcow2, Format::Qcow2, runner)?;
            qcow2
        }
    };
    runner.interrupt().check()?;
    install(&finished, &req.target)?;
    Ok(image::allocated_bytes(&req.target))
}

/// Renames a finished image over the target: readers see the old image or
/// the new one, never half of one.
pub fn install(finished: &Path, target: &Path) -> Result<()> {
    fs::set_permissions(finished, fs::Permissions::from_mode(0o644))
        .and_then(|_| File::open(finished)?.sync_all())
        .and_then(|_| fs::rename(finished, target))
        .map_err(|e| {
            build(format!(
                "cannot move the image to {}: {e}",
                target.display()
            ))
        })?;
    if let Some(dir) = target.parent() {
        // Best effort: make the rename itself durable.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// One progress line per stage, on stderr so stdout stays clean.
pub fn progress(line: &str) {
    errln!("{line}");
}

/// A log sink for checks whose output nobody needs.
pub fn dev_null() -> Result<File> {
    fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|e| build(format!("cannot open /dev/null: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_log_moves_the_log_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let work_log = dir.path().join("work.log");
        let kept = dir.path().join("img.log");
        fs::write(&work_log, "one\ntwo\n").unwrap();
        let failed: Result<()> = Err(Error::Command {
            what: "debootstrap".into(),
            status: "exit status 1".into(),
        });
        let err = keep_log(failed, &work_log, &kept).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "debootstrap failed (exit status 1); full log kept at {}",
                kept.display()
            )
        );
        assert_eq!(err.exit_code(), 1);
        assert!(kept.exists() && !work_log.exists());
    }

    #[test]
    fn keep_log_drops_the_log_when_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let work_log = dir.path().join("work.log");
        fs::write(&work_log, "x").unwrap();
        let kept = dir.path().join("img.log");
        let r: Result<()> = keep_log(Err(Error::Interrupted), &work_log, &kept);
        assert!(matches!(r, Err(Error::Interrupted)));
        assert!(!kept.exists());
    }

    #[test]
    fn install_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new");
        let target = dir.path().join("img");
        fs::write(&new, "new").unwrap();
        fs::write(&target, "old").unwrap();
        install(&new, &target).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert!(!new.exists());
    }
}
