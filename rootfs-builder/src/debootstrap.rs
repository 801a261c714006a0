//! What to debootstrap: the release, mirror, architecture and package list,
//! checked and turned into debootstrap's command line.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use crate::error::Result;
use crate::exec::Runner;

/// Packages every ktest image has: what ktest's init and tests use
/// (sshd, modprobe, mount, mkfs, ip, ps), plus systemd and udev so the image
/// can also boot on its own with networkd and a serial getty.
pub const BASE_PACKAGES: &[&str] = &[
    "openssh-server",
    "kmod",
    "util-linux",
    "e2fsprogs",
    "iproute2",
    "procps",
    "systemd-sysv",
    "udev",
];

/// A checked request for a debootstrap run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Debian codename, e.g. bookworm.
    pub release: String,
    /// Debian architecture, e.g. amd64.
    pub arch: String,
    /// Mirror URL.
    pub mirror: String,
    /// Every package to `--include`: [`BASE_PACKAGES`] then the extra ones,
    /// without duplicates.
    pub packages: Vec<String>,
}

impl Plan {
    /// Checks the user's input and builds the plan.
    pub fn new(
        release: &str,
        arch: &str,
        mirror: &str,
        extra: &[String],
    ) -> std::result::Result<Plan, String> {
        check_mirror(mirror)?;
        if arch.is_empty() || !arch.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("'{arch}' is not a Debian architecture, e.g. amd64"));
        }
        let mut packages: Vec<String> = BASE_PACKAGES.iter().map(|p| p.to_string()).collect();
        for name in extra.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            if !valid_package_name(name) {
                return Err(format!(
                    "'{name}' is not a Debian package name (lower case letters, digits, + - .)"
                ));
            }
            if !packages.iter().any(|p| p == name) {
                packages.push(name.to_string());
            }
        }
        Ok(Plan {
            release: release.into(),
            arch: arch.into(),
            mirror: mirror.trim_end_matches('/').into(),
            packages,
        })
    }

    /// debootstrap's arguments to install into `target`.
    pub fn argv(&self, target: &Path) -> Vec<OsString> {
        vec![
            "--variant=minbase".into(),
            format!("--arch={}", self.arch).into(),
            format!("--include={}", self.packages.join(",")).into(),
            self.release.clone().into(),
            target.into(),
            self.mirror.clone().into(),
        ]
    }

    /// The extra packages only, in the order given (for the image marker).
    pub fn extra_packages(&self) -> &[String] {
        &self.packages[BASE_PACKAGES.len()..]
    }
}

/// Debian policy for package names: `[a-z0-9][a-z0-9+.-]+`.
pub fn valid_package_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

fn check_mirror(mirror: &str) -> std::result::Result<(), String> {
    let schemes = ["http://", "https://", "file:///"];
    let Some(rest) = schemes.iter().find_map(|s| mirror.strip_prefix(s)) else {
        return Err(format!(
            "mirror '{mirror}' must be an http://, https:// or file:/// URL"
        ));
    };
    if rest.is_empty() || mirror.chars().any(char::is_whitespace) {
        return Err(format!("mirror '{mirror}' is not a URL"));
    }
    Ok(())
}

/// Runs debootstrap into `target`, its output going to the runner's log.
pub fn run(plan: &Plan, target: &Path, runner: &mut Runner) -> Result<()> {
    let mut cmd = Command::new("debootstrap");
    cmd.args(plan.argv(target));
    runner.run("debootstrap", &mut cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(extra: &[&str]) -> std::result::Result<Plan, String> {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Plan::new("bookworm", "amd64", "http://deb.debian.org/debian/", &extra)
    }

    #[test]
    fn argv_is_minbase_with_includes() {
        let p = plan(&["strace", "kmod", " gdb "]).unwrap();
        let argv: Vec<String> = p
            .argv(Path::new("/w/root"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            argv,
            [
                "--variant=minbase",
                "--arch=amd64",
                "--include=openssh-server,kmod,util-linux,e2fsprogs,iproute2,procps,\
                 systemd-sysv,udev,strace,gdb",
                "bookworm",
                "/w/root",
                "http://deb.debian.org/debian",
            ]
        );
        assert_eq!(p.extra_packages(), ["strace", "gdb"]);
    }

    #[test]
    fn rejects_bad_packages_mirrors_and_arches() {
        assert!(plan(&["Foo"])
            .unwrap_err()
            .contains("'Foo' is not a Debian package"));
        assert!(plan(&["a;rm -rf /"]).is_err());
        assert!(plan(&["x"]).is_err());
        assert!(plan(&["", "libc6"]).is_ok());
        let bad = |m: &str| Plan::new("bookworm", "amd64", m, &[]);
        assert!(bad("ftp://x").unwrap_err().contains("http://"));
        assert!(bad("deb.debian.org/debian").is_err());
        assert!(bad("http://").is_err());
        assert!(bad("file:///srv/mirror").is_ok());
        assert!(Plan::new("bookworm", "amd 64", "http://m", &[]).is_err());
    }

    #[test]
    fn package_names_follow_policy() {
        for ok in ["g++", "libc6", "linux-image-6.1.0-13-amd64", "0ad"] {
            assert!(valid_package_name(ok), "{ok}");
        }
        for bad in ["", "a", "-x", "Abc", "a b", "a_b", "a/b"] {
            assert!(!valid_package_name(bad), "{bad}");
        }
    }
}
