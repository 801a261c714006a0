//! `--update`: re-applying ktest's configuration to an existing image.
//!
//! The image is copied into the work directory (sparsely; qcow2 is
//! converted to raw), the configuration entries are written into the copy
//! with `debugfs -w`, read back, the copy is checked with `e2fsck -fn`, and
//! only then renamed over PATH. A failure or Ctrl-C leaves PATH untouched,
//! and a VM still running from the old image keeps its open file.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::{dev_null, install, keep_log, progress};
use crate::buildlog;
use crate::cleanup::WorkDir;
use crate::cli::{Cli, Format};
use crate::configure::{self, Entry};
use crate::debugfs;
use crate::error::{build, usage, Result};
use crate::exec::Runner;
use crate::host;
use crate::image::{self, Existing};
use crate::marker::{self, Marker, FORMAT_VERSION};
use crate::signals::Interrupt;
use crate::target;

/// An update whose inputs were checked.
#[derive(Debug)]
pub struct Request {
    /// Absolute path of the image.
    pub target: PathBuf,
    /// Its format, from its first bytes.
    pub format: Format,
}

/// Checks that PATH is an image this tool can update.
pub fn prepare(cli: &Cli) -> Result<Request> {
    let mut tools = vec![host::DEBUGFS, host::E2FSCK, host::CP];
    let target = target::resolve(&cli.path)?;
    let mut quiet = Runner::new(dev_null()?, Interrupt::default());
    let p = target.display();
    // Tools first: classifying an ext4 image needs debugfs.
    host::require_tools(&tools)?;
    let format = match image::classify(&target, &mut quiet)? {
        Existing::Missing => {
            return Err(usage(format!(
                "{p} does not exist; build it first with `create-vm-image {p}`"
            )))
        }
        Existing::NotRegular(kind) => return Err(usage(format!("{p} is {kind}, not an image"))),
        Existing::KtestImage(_) => Format::Raw,
        Existing::Qcow2 => Format::Qcow2,
        Existing::ForeignExt4 | Existing::OtherFile => {
            return Err(usage(format!(
                "{p} is not a ktest image (no /etc/ktest-image); refusing to update it"
            )))
        }
    };
    if format == Format::Qcow2 {
        tools.push(host::QEMU_IMG);
        host::require_tools(&tools)?;
    }
    Ok(Request { target, format })
}

/// Updates the image; the log is kept at `PATH.update.log`.
pub fn run(req: &Request, interrupt: &Interrupt) -> Result<PathBuf> {
    let parent = req.target.parent().unwrap_or(Path::new("/"));
    let work = WorkDir::create_in(parent)?;
    let work_log = work.path().join("update.log");
    let kept_log = buildlog::kept_log_path(&req.target, ".update.log");
    let log = File::create(&work_log)
        .map_err(|e| build(format!("cannot create {}: {e}", work_log.display())))?;
    let mut runner = Runner::new(log, interrupt.clone());
    let result = update_in(&work, req, &mut runner);
    drop(runner);
    let result = keep_log(result, &work_log, &kept_log);
    drop(work);
    result.map(|()| kept_log)
}

fn update_in(work: &WorkDir, req: &Request, runner: &mut Runner) -> Result<()> {
    let original = fs::metadata(&req.target)
        .map_err(|e| build(format!("cannot stat {}: {e}", req.target.display())))?;
    let raw = work.path().join("image.raw");
    progress(&format!("copying {}", req.target.display()));
    match req.format {
        Format::Raw => {
            let mut cp = Command::new("cp");
            cp.arg("--sparse=always").arg(&req.target).arg(&raw);
            runner.run("cp", &mut cp)?;
        }
        Format::Qcow2 => image::convert(&req.target, Format::Qcow2, &raw, Format::Raw, runner)?,
    }
    let old = image::read_marker(&raw, runner)?.ok_or_else(|| {
        usage(format!(
            "{} is not a ktest image (no /etc/ktest-image); refusing to update it",
            req.target.display()
        ))
    })?;

    if old.format > FORMAT_VERSION {
        return Err(usage(format!(
            "{} has image format {}, newer than this create-vm-image knows ({FORMAT_VERSION}); \
             update it with a newer create-vm-image",
            req.target.display(),
            old.format
        )));
    }

    progress("configuring (debugfs)");
    let new = Marker {
        format: FORMAT_VERSION,
        updated: Some(marker::now_utc()),
        tool: marker::tool_id(),
        ..old
    };
    let mut entries = configure::ktest_entries(&new);
    entries.push(locked_shadow(&raw, runner)?);
    entries.extend(missing_host_keys(&raw, work.path(), runner)?);
    write_entries(&raw, &entries, work.path(), runner)?;
    verify(&raw, &entries, runner)?;

    progress("checking (e2fsck -fn)");
    let mut fsck = Command::new("e2fsck");
    fsck.arg("-fn").arg(&raw);
    runner.run("e2fsck", &mut fsck)?;

    let finished = match req.format {
        Format::Raw => raw,
        Format::Qcow2 => {
            let qcow2 = work.path().join("image.qcow2");
            image::convert(&raw, Format::Raw, &qcow2, Format::Qcow2, runner)?;
            qcow2
        }
    };
    runner.interrupt().check()?;
    install(&finished, &req.target)?;
    // Keep the original's mode and owner rather than install()'s 0644 root.
    let _ = fs::set_permissions(
        &req.target,
        fs::Permissions::from_mode(original.mode() & 0o7777),
    );
    let _ = std::os::unix::fs::chown(&req.target, Some(original.uid()), Some(original.gid()));
    Ok(())
}

/// /etc/shadow with root locked, keeping the file's owner and mode.
fn locked_shadow(raw: &Path, runner: &mut Runner) -> Result<Entry> {
    let text = image::read_file(raw, "/etc/shadow", runner)?
        .ok_or_else(|| build("the image has no /etc/shadow"))?;
    let locked = configure::lock_root(&String::from_utf8_lossy(&text)).map_err(build)?;
    let meta = debugfs::parse_stat(&stat(raw, "/etc/shadow", runner)?)
        .ok_or_else(|| build("cannot read the owner and mode of /etc/shadow in the image"))?;
    Ok(Entry::File {
        path: "/etc/shadow".into(),
        contents: locked.into_bytes(),
        mode: meta.mode,
        uid: meta.uid,
        gid: meta.gid,
    })
}

/// Host keys for an image that lacks them, made with the host's ssh-keygen
/// (nothing can run inside the image without mounting it).
fn missing_host_keys(raw: &Path, work: &Path, runner: &mut Runner) -> Result<Vec<Entry>> {
    let probe = "/etc/ssh/ssh_host_ed25519_key.pub";
    if image::read_file(raw, probe, runner)?.is_some() {
        return Ok(Vec::new());
    }
    host::require_tools(&[host::Tool {
        program: "ssh-keygen",
        package: "openssh-client",
    }])?;
    let prefix = work.join("keys");
    let etc_ssh = prefix.join("etc/ssh");
    fs::create_dir_all(&etc_ssh).map_err(|e| build(format!("{}: {e}", etc_ssh.display())))?;
    let mut keygen = Command::new("ssh-keygen");
    keygen.arg("-A").arg("-f").arg(&prefix);
    runner.run("ssh-keygen -A", &mut keygen)?;
    let listing =
        fs::read_dir(&etc_ssh).map_err(|e| build(format!("{}: {e}", etc_ssh.display())))?;
    let mut private = Vec::new();
    for item in listing {
        let name = item
            .map_err(|e| build(format!("{}: {e}", etc_ssh.display())))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if !name.ends_with(".pub") {
            private.push(name);
        }
    }
    private.sort();
    let mut entries = Vec::new();
    for name in private {
        // Add a key type only when the image lacks it, as a pair, so no
        // existing host key changes.
        if image::read_file(raw, &format!("/etc/ssh/{name}"), runner)?.is_some() {
            continue;
        }
        for (file, mode) in [(name.clone(), 0o600), (format!("{name}.pub"), 0o644)] {
            let contents =
                fs::read(etc_ssh.join(&file)).map_err(|e| build(format!("{file}: {e}")))?;
            entries.push(Entry::File {
                path: format!("/etc/ssh/{file}"),
                contents,
                mode,
                uid: 0,
                gid: 0,
            });
        }
    }
    Ok(entries)
}

fn write_entries(raw: &Path, entries: &[Entry], work: &Path, runner: &mut Runner) -> Result<()> {
    let stage = work.join("stage");
    fs::create_dir(&stage).map_err(|e| build(format!("{}: {e}", stage.display())))?;
    for (index, entry) in entries.iter().enumerate() {
        if let Entry::File { contents, .. } = entry {
            let staged = stage.join(debugfs::staged_name(index));
            fs::write(&staged, contents)
                .map_err(|e| build(format!("{}: {e}", staged.display())))?;
        }
    }
    let present = present_paths(raw, entries, runner)?;
    let script = debugfs::script(entries, &present).map_err(build)?;
    let script_path = work.join("debugfs.cmds");
    fs::write(&script_path, &script)
        .map_err(|e| build(format!("{}: {e}", script_path.display())))?;
    let mut cmd = Command::new("debugfs");
    cmd.arg("-w")
        .arg("-f")
        .arg(&script_path)
        .arg(raw)
        .current_dir(&stage);
    runner.run("debugfs -w", &mut cmd)
}

/// What is already in the image at each entry's path.
fn present_paths(
    raw: &Path,
    entries: &[Entry],
    runner: &mut Runner,
) -> Result<HashMap<String, debugfs::Present>> {
    let mut present = HashMap::new();
    for entry in entries {
        let out = stat(raw, entry.path(), runner)?;
        if let Some(kind) = debugfs::parse_present(&out) {
            present.insert(entry.path().to_string(), kind);
        }
    }
    Ok(present)
}

/// `debugfs -R 'stat PATH'` output; empty when PATH does not exist.
fn stat(raw: &Path, path: &str, runner: &mut Runner) -> Result<String> {
    let mut cmd = Command::new("debugfs");
    cmd.arg("-R").arg(format!("stat {path}")).arg(raw);
    let out = runner.capture(&format!("debugfs stat {path}"), &mut cmd)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Reads every written file and link back: debugfs reports failures only
/// as text, so this is how we know the update really happened.
fn verify(raw: &Path, entries: &[Entry], runner: &mut Runner) -> Result<()> {
    for entry in entries {
        match entry {
            Entry::File { path, contents, .. } if !contents.is_empty() => {
                let got = image::read_file(raw, path, runner)?;
                if got.as_deref() != Some(contents.as_slice()) {
                    return Err(build(format!("debugfs did not write {path} correctly")));
                }
            }
            Entry::Symlink { path, target } => {
                let got = debugfs::parse_link_target(&stat(raw, path, runner)?);
                if got.as_deref() != Some(target.as_str()) {
                    return Err(build(format!("debugfs did not create the link {path}")));
                }
            }
            _ => {}
        }
    }
    Ok(())
}
