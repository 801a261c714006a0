//! Command line of `create-vm-image`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::size::parse_size;

/// The Debian mirror used when `--mirror` is not given.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

const AFTER_HELP: &str = "\
Packages always installed: openssh-server kmod util-linux e2fsprogs iproute2
procps, plus systemd-sysv and udev so the image can also boot its own systemd.

Must run as root to build (debootstrap needs it); --update does not.
The build log is kept next to the image as PATH.log.

Exit codes:
  0    success
  1    the build or update failed (debootstrap, mkfs.ext4, debugfs, ...)
  2    bad usage or input: not root, missing tool, unknown release,
       PATH exists and --force not given, --size too small, ...
  130  interrupted (SIGINT, SIGTERM or SIGHUP); temporary files removed

See docs/create-vm-image.md for what the image contains and how ktest uses it.";

/// On-disk format of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A raw ext4 file system image, sparse.
    Raw,
    /// qcow2, converted from the raw image with qemu-img.
    Qcow2,
}

/// Build a minimal Debian root image for ktest VMs.
#[derive(Debug, Parser)]
#[command(name = "create-vm-image", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Image file to create (or, with --update, to update).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// Debian release to install, e.g. bookworm [default: the host's
    /// VERSION_CODENAME from /etc/os-release]
    #[arg(long, value_name = "CODENAME")]
    pub release: Option<String>,

    /// Debian mirror to debootstrap from.
    #[arg(long, value_name = "URL", default_value = DEFAULT_MIRROR)]
    pub mirror: String,

    /// Debian architecture [default: the host's, from dpkg --print-architecture]
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,

    /// Extra packages to install, comma separated (may be repeated).
    #[arg(long, value_name = "A,B,C", value_delimiter = ',')]
    pub packages: Vec<String>,

    /// Size of the file system: 512M, 4G, ... or bytes; the file is sparse,
    /// so unused space costs no disk.
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_size)]
    pub size: u64,

    /// Image format.
    #[arg(long, value_enum, default_value_t = Format::Raw)]
    pub format: Format,

    /// Replace PATH if it exists (a regular file only).
    #[arg(long)]
    pub force: bool,

    /// Re-apply ktest's configuration to the existing image at PATH, without
    /// a new debootstrap.
    #[arg(
        long,
        conflicts_with_all = ["release", "mirror", "arch", "packages", "size", "format", "force"]
    )]
    pub update: bool,
}

/// Turns a clap error into the one-line form every other error has: the
/// message lines before clap's usage block, joined. Help and version are
/// not errors and are returned as `None` (the caller prints them).
pub fn one_line_error(err: &clap::Error) -> Option<String> {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        return None;
    }
    let rendered = err.render().to_string();
    Some(flatten_clap_message(&rendered))
}

fn flatten_clap_message(rendered: &str) -> String {
    let mut parts = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    format!("{}; see --help", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::GIB;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("create-vm-image").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let cli = parse(&["img"]).unwrap();
        assert_eq!(cli.mirror, DEFAULT_MIRROR);
        assert_eq!(cli.size, 4 * GIB);
        assert_eq!(cli.format, Format::Raw);
        assert!(cli.release.is_none() && cli.arch.is_none() && cli.packages.is_empty());
        assert!(!cli.force && !cli.update);
    }

    #[test]
    fn packages_split_on_commas_and_repeat() {
        let cli = parse(&["--packages", "a,b", "--packages", "c", "img"]).unwrap();
        assert_eq!(cli.packages, ["a", "b", "c"]);
    }

    #[test]
    fn update_conflicts_with_build_options_but_not_defaults() {
        assert!(parse(&["--update", "img"]).is_ok());
        let err = parse(&["--update", "--size", "8G", "img"]).unwrap_err();
        let line = one_line_error(&err).unwrap();
        assert!(line.contains("cannot be used with"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn clap_errors_become_one_line() {
        let err = parse(&[]).unwrap_err();
        let line = one_line_error(&err).unwrap();
        assert!(line.contains("<PATH>"), "{line}");
        assert!(line.ends_with("; see --help"));
        let err = parse(&["--size", "4X", "img"]).unwrap_err();
        assert!(one_line_error(&err).unwrap().contains("unknown unit"));
        assert!(one_line_error(&parse(&["--help"]).unwrap_err()).is_none());
    }

    #[test]
    fn help_documents_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        for needle in ["130", "Exit codes", "--update", "[default: 4G]"] {
            assert!(help.contains(needle), "help lacks {needle}");
        }
    }
}
