//! Facts about the build host: who we run as, which tools are installed,
//! which Debian release and architecture it is, which releases debootstrap
//! knows.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{usage, Result};

/// A program the tool runs, and the Debian package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// Name looked up on PATH.
    pub program: &'static str,
    /// Debian package to install when it is missing.
    pub package: &'static str,
}

/// `debootstrap`, from the package of the same name.
pub const DEBOOTSTRAP: Tool = Tool {
    program: "debootstrap",
    package: "debootstrap",
};
/// `mkfs.ext4`, from e2fsprogs.
pub const MKFS_EXT4: Tool = Tool {
    program: "mkfs.ext4",
    package: "e2fsprogs",
};
/// `debugfs`, from e2fsprogs: reads and writes files inside an image.
pub const DEBUGFS: Tool = Tool {
    program: "debugfs",
    package: "e2fsprogs",
};
/// `e2fsck`, from e2fsprogs.
pub const E2FSCK: Tool = Tool {
    program: "e2fsck",
    package: "e2fsprogs",
};
/// `chroot`, from coreutils: runs ssh-keygen inside the new tree.
pub const CHROOT: Tool = Tool {
    program: "chroot",
    package: "coreutils",
};
/// `cp`, from coreutils: copies an image sparsely for --update.
pub const CP: Tool = Tool {
    program: "cp",
    package: "coreutils",
};
/// `qemu-img`, from qemu-utils: qcow2 conversion.
pub const QEMU_IMG: Tool = Tool {
    program: "qemu-img",
    package: "qemu-utils",
};
/// `dpkg`, for the host's architecture.
pub const DPKG: Tool = Tool {
    program: "dpkg",
    package: "dpkg",
};

/// Whether we run with root's effective uid.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Looks `program` up in a PATH-style list of directories, as a shell would.
pub fn find_in_path(program: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let dirs = path_var?;
    std::env::split_paths(dirs)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Fails with one line naming every missing tool and the package to install.
pub fn require_tools(tools: &[Tool]) -> Result<()> {
    let path_var = std::env::var_os("PATH");
    let missing: Vec<Tool> = tools
        .iter()
        .copied()
        .filter(|t| find_in_path(t.program, path_var.as_deref()).is_none())
        .collect();
    match missing_tools_message(&missing) {
        None => Ok(()),
        Some(msg) => Err(usage(msg)),
    }
}

/// The message for missing tools, or `None` when nothing is missing.
pub fn missing_tools_message(missing: &[Tool]) -> Option<String> {
    if missing.is_empty() {
        return None;
    }
    let programs: Vec<&str> = missing.iter().map(|t| t.program).collect();
    let mut packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    packages.dedup();
    Some(format!(
        "{} not found on PATH; install with `apt-get install {}` \
         (or add /usr/sbin:/sbin to PATH if already installed)",
        programs.join(", "),
        packages.join(" ")
    ))
}

/// The Debian codename in an os-release file, or why there is none.
pub fn debian_codename(os_release: &str) -> std::result::Result<String, String> {
    let mut id = None;
    let mut id_like = None;
    let mut codename = None;
    for line in os_release.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        match key.trim() {
            "ID" => id = Some(value.to_string()),
            "ID_LIKE" => id_like = Some(value.to_string()),
            "VERSION_CODENAME" => codename = Some(value.to_string()),
            _ => {}
        }
    }
    let debianish = id.as_deref() == Some("debian")
        || id_like
            .as_deref()
            .is_some_and(|l| l.split_whitespace().any(|w| w == "debian"));
    match codename {
        Some(c) if debianish && !c.is_empty() => Ok(c),
        _ if !debianish => Err(format!(
            "the host is not Debian (ID={}); pass --release, e.g. --release bookworm",
            id.unwrap_or_else(|| "unknown".into())
        )),
        _ => Err(
            "/etc/os-release has no VERSION_CODENAME; pass --release, e.g. --release bookworm"
                .into(),
        ),
    }
}

/// The release to install: `--release` or the host's own.
pub fn resolve_release(explicit: Option<&str>) -> Result<String> {
    if let Some(r) = explicit {
        return Ok(r.to_string());
    }
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .map_err(|_| {
            usage("cannot read /etc/os-release; pass --release, e.g. --release bookworm")
        })?;
    debian_codename(&text).map_err(usage)
}

/// The host's Debian architecture, from `dpkg --print-architecture`.
pub fn host_arch() -> Result<String> {
    let out = Command::new(DPKG.program)
        .arg("--print-architecture")
        .output()
        .map_err(|e| {
            usage(format!(
                "cannot run dpkg ({e}) to learn the host's architecture"
            ))
        })?;
    let arch = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || arch.is_empty() {
        return Err(usage(
            "dpkg --print-architecture failed; ktest needs the host's architecture",
        ));
    }
    Ok(arch)
}

/// qemu-user's name for a Debian architecture, as binfmt-support
/// registers it (`qemu-aarch64` runs arm64 programs).
pub fn qemu_user_name(debian_arch: &str) -> &str {
    match debian_arch {
        "arm64" => "aarch64",
        "amd64" => "x86_64",
        "armhf" | "armel" => "arm",
        "ppc64el" => "ppc64le",
        other => other,
    }
}

/// Whether programs of `arch` run on this host (`host` being its own
/// architecture): natively, or through an enabled binfmt_misc entry for
/// qemu-user in `binfmt_dir` (`/proc/sys/fs/binfmt_misc`). debootstrap
/// runs the new system's own programs to configure it.
pub fn can_run(arch: &str, host: &str, binfmt_dir: &Path) -> bool {
    if arch == host || (host == "amd64" && arch == "i386") {
        return true;
    }
    let entry = binfmt_dir.join(format!("qemu-{}", qemu_user_name(arch)));
    std::fs::read_to_string(entry).is_ok_and(|t| t.lines().next() == Some("enabled"))
}

/// Refuses, before anything is created, an image whose programs this host
/// cannot run.
pub fn require_runnable(arch: &str, host: &str) -> Result<()> {
    if can_run(arch, host, Path::new("/proc/sys/fs/binfmt_misc")) {
        return Ok(());
    }
    let q = qemu_user_name(arch);
    Err(usage(format!(
        "building an {arch} image on this {host} host runs {arch} programs through qemu-user, and binfmt_misc has no enabled qemu-{q} entry\n  apt-get install qemu-user-static binfmt-support, then: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-{q} (scripts/install-deps.sh does all of this)"
    )))
}

/// Where debootstrap keeps its per-release scripts (it honours
/// DEBOOTSTRAP_DIR itself, so we do too).
pub fn debootstrap_scripts_dir() -> PathBuf {
    match std::env::var_os("DEBOOTSTRAP_DIR") {
        Some(dir) => Path::new(&dir).join("scripts"),
        None => PathBuf::from("/usr/share/debootstrap/scripts"),
    }
}

/// Whether a release name is plausible before touching the file system:
/// a codename or suite, never a path.
pub fn valid_release_name(release: &str) -> bool {
    !release.is_empty()
        && !release.starts_with('.')
        && release
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(c))
}

/// Checks up front that debootstrap knows `release`, so a typo fails in a
/// second instead of after contacting the mirror.
pub fn require_known_release(release: &str, scripts: &Path) -> Result<()> {
    let hint = "pass a Debian codename such as bookworm or trixie";
    if !valid_release_name(release) {
        return Err(usage(format!("'{release}' is not a release name; {hint}")));
    }
    if scripts.join(release).is_file() {
        return Ok(());
    }
    Err(usage(format!(
        "unknown release '{release}': debootstrap has no script {}; {hint} \
         (a newer debootstrap may know newer releases)",
        scripts.join(release).display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_programs_need_an_enabled_binfmt_entry() {
        let d = tempfile::tempdir().unwrap();
        assert!(can_run("amd64", "amd64", d.path()));
        assert!(can_run("i386", "amd64", d.path()));
        assert!(!can_run("arm64", "amd64", d.path()));
        std::fs::write(d.path().join("qemu-aarch64"), "disabled\ninterpreter x\n").unwrap();
        assert!(!can_run("arm64", "amd64", d.path()));
        std::fs::write(d.path().join("qemu-aarch64"), "enabled\ninterpreter x\n").unwrap();
        assert!(can_run("arm64", "amd64", d.path()));
        assert!(!can_run("amd64", "arm64", d.path()));
    }

    #[test]
    fn finds_executables_only() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths(["/nonexistent".as_ref(), dir.path()]).unwrap();
        assert_eq!(find_in_path("tool", Some(&path)), Some(exe));
        assert_eq!(find_in_path("plain", Some(&path)), None);
        assert_eq!(find_in_path("tool", None), None);
    }

    #[test]
    fn missing_tools_name_programs_and_packages() {
        assert_eq!(missing_tools_message(&[]), None);
        let msg = missing_tools_message(&[DEBOOTSTRAP, MKFS_EXT4, DEBUGFS]).unwrap();
        assert!(msg.starts_with("debootstrap, mkfs.ext4, debugfs not found on PATH"));
        assert!(
            msg.contains("apt-get install debootstrap e2fsprogs`"),
            "{msg}"
        );
    }

    #[test]
    fn codename_from_os_release() {
        let bookworm = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n";
        assert_eq!(debian_codename(bookworm).unwrap(), "bookworm");
        let quoted = "ID=\"debian\"\nVERSION_CODENAME=\"trixie\"\n";
        assert_eq!(debian_codename(quoted).unwrap(), "trixie");
        let like = "ID=raspbian\nID_LIKE=debian\nVERSION_CODENAME=bookworm\n";
        assert_eq!(debian_codename(like).unwrap(), "bookworm");
        let fedora = "ID=fedora\nVERSION_ID=40\n";
        assert!(debian_codename(fedora).unwrap_err().contains("not Debian"));
        let sid = "ID=debian\nPRETTY_NAME=\"Debian GNU/Linux trixie/sid\"\n";
        assert!(debian_codename(sid).unwrap_err().contains("--release"));
    }

    #[test]
    fn release_names_are_never_paths() {
        assert!(valid_release_name("bookworm"));
        assert!(valid_release_name("bookworm-backports"));
        assert!(!valid_release_name("../../etc/passwd"));
        assert!(!valid_release_name("a/b"));
        assert!(!valid_release_name(""));
        assert!(!valid_release_name("Bookworm"));
    }

    #[test]
    fn known_release_needs_a_script() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bookworm"), "").unwrap();
        assert!(require_known_release("bookworm", dir.path()).is_ok());
        let err = require_known_release("bookwrom", dir.path()).unwrap_err();
        assert!(err.to_string().contains("unknown release 'bookwrom'"));
        assert_eq!(err.exit_code(), 2);
    }
}
