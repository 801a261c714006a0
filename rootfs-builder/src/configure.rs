//! ktest's configuration of the image.
//!
//! [`ktest_entries`] is the single description of the files ktest needs;
//! a fresh build writes it into the debootstrapped directory
//! ([`configure_tree`]), `--update` writes the same entries into an existing
//! image with debugfs (see `update.rs`). Steps that only make sense on a
//! fresh tree (cleaning apt's caches) are not part of the entries.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use crate::error::{build, Result};
use crate::exec::Runner;
use crate::marker::{Marker, MARKER_PATH};

/// One thing the configuration puts into the image. Owner is root unless
/// stated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory with this mode (created with parents if missing).
    Dir {
        /// Absolute path inside the image.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// A regular file, replaced whole.
    File {
        /// Absolute path inside the image.
        path: String,
        /// Full contents.
        contents: Vec<u8>,
        /// Permission bits.
        mode: u32,
        /// Owner uid.
        uid: u32,
        /// Owner gid.
        gid: u32,
    },
    /// A symbolic link, replacing whatever was there.
    Symlink {
        /// Absolute path inside the image.
        path: String,
        /// Link target, as stored.
        target: String,
    },
}

impl Entry {
    /// The entry's path inside the image.
    pub fn path(&self) -> &str {
        match self {
            Entry::Dir { path, .. } | Entry::File { path, .. } | Entry::Symlink { path, .. } => {
                path
            }
        }
    }
}

fn dir(path: &str, mode: u32) -> Entry {
    Entry::Dir {
        path: path.into(),
        mode,
    }
}

fn file(path: &str, contents: &str, mode: u32) -> Entry {
    Entry::File {
        path: path.into(),
        contents: contents.as_bytes().to_vec(),
        mode,
        uid: 0,
        gid: 0,
    }
}

fn symlink(path: &str, target: &str) -> Entry {
    Entry::Symlink {
        path: path.into(),
        target: target.into(),
    }
}

/// Hostname of every ktest VM.
pub const HOSTNAME: &str = "ktest";

/// The sshd drop-in: root may log in with a key (ktest's init installs
/// ktest's public key at each boot; none is baked in), never a password.
pub const SSHD_DROP_IN: &str = "\
# Written by create-vm-image for ktest: root logs in with a key only.
# ktest's init installs its public key in /root/.ssh at boot.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
";

const HOSTS: &str = "\
127.0.0.1\tlocalhost
127.0.1.1\tktest
::1\tlocalhost ip6-localhost ip6-loopback
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
";

const FSTAB: &str = "\
# ktest attaches this image as the first virtio disk.
/dev/vda\t/\text4\tdefaults\t0\t1
";

const NETWORK: &str = "\
# Written by create-vm-image: DHCP on the VM's wired interface, for when the
# image boots its own systemd (ktest's init configures the network itself).
[Match]
Name=en* eth*

[Network]
DHCP=yes
";

// debootstrap copies the build host's resolv.conf into the tree; that says
// nothing about the VM's network, so replace it with qemu user networking's
// resolver.
const RESOLV_CONF: &str = "\
# qemu user-mode networking answers DNS here; ktest's init may replace this.
nameserver 10.0.2.3
";

const UNITS: &str = "/lib/systemd/system";
const ETC_UNITS: &str = "/etc/systemd/system";

/// Everything ktest's configuration writes, in the order to apply it
/// (directories before what goes in them).
pub fn ktest_entries(marker: &Marker) -> Vec<Entry> {
    let wants = |target: &str| format!("{ETC_UNITS}/{target}.wants");
    let unit = |name: &str| format!("{UNITS}/{name}");
    vec![
        dir("/etc/ssh/sshd_config.d", 0o755),
        file("/etc/ssh/sshd_config.d/ktest.conf", SSHD_DROP_IN, 0o644),
        file("/etc/hostname", &format!("{HOSTNAME}\n"), 0o644),
        file("/etc/hosts", HOSTS, 0o644),
        file("/etc/fstab", FSTAB, 0o644),
        file("/etc/resolv.conf", RESOLV_CONF, 0o644),
        // Empty: systemd makes a fresh id per boot instead of every VM
        // sharing the one debootstrap generated.
        file("/etc/machine-id", "", 0o444),
        dir("/etc/systemd/network", 0o755),
        file("/etc/systemd/network/80-ktest-dhcp.network", NETWORK, 0o644),
        dir(&wants("getty.target"), 0o755),
        symlink(
            &format!("{}/serial-getty@ttyS0.service", wants("getty.target")),
            &unit("serial-getty@.service"),
        ),
        dir(&wants("multi-user.target"), 0o755),
        symlink(
            &format!("{}/systemd-networkd.service", wants("multi-user.target")),
            &unit("systemd-networkd.service"),
        ),
        dir(&wants("sockets.target"), 0o755),
        symlink(
            &format!("{}/systemd-networkd.socket", wants("sockets.target")),
            &unit("systemd-networkd.socket"),
        ),
        dir("/root/.ssh", 0o700),
        file(MARKER_PATH, &marker.render(), 0o644),
    ]
}

/// Sets root's password field in an /etc/shadow text to `*`: no password
/// works, for ssh or the console.
pub fn lock_root(shadow: &str) -> std::result::Result<String, String> {
    let mut found = false;
    let mut out = String::with_capacity(shadow.len() + 2);
    for line in shadow.split_inclusive('\n') {
        match line.strip_prefix("root:") {
            Some(rest) if !found => {
                found = true;
                let after_password = rest.find(':').map_or("\n", |i| &rest[i..]);
                out.push_str("root:*");
                out.push_str(after_password);
            }
            _ => out.push_str(line),
        }
    }
    if found {
        Ok(out)
    } else {
        Err("/etc/shadow has no root entry".into())
    }
}

/// Applies ktest's configuration to a freshly debootstrapped tree at `root`.
pub fn configure_tree(root: &Path, marker: &Marker, runner: &mut Runner) -> Result<()> {
    for entry in ktest_entries(marker) {
        apply_entry(root, &entry)
            .map_err(|e| build(format!("configuring {}: {e}", entry.path())))?;
    }
    let shadow = inside(root, "/etc/shadow").map_err(build)?;
    let text = fs::read_to_string(&shadow)
        .map_err(|e| build(format!("reading {}: {e}", shadow.display())))?;
    let locked = lock_root(&text).map_err(build)?;
    rewrite_in_place(&shadow, locked.as_bytes())
        .map_err(|e| build(format!("writing {}: {e}", shadow.display())))?;

    runner.interrupt().check()?;
    // openssh-server's postinst normally made them already; -A only fills
    // gaps, so sshd never starts by generating keys inside a test VM.
    let mut keygen = Command::new("chroot");
    keygen
        .arg(root)
        .args(["/usr/bin/ssh-keygen", "-A"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    runner.run("ssh-keygen -A in the image", &mut keygen)?;

    clean_apt(root).map_err(|e| build(format!("cleaning apt caches: {e}")))?;
    empty_runtime_dirs(root).map_err(|e| build(format!("emptying /run and /tmp: {e}")))
}

/// Empties /run and /tmp: debootstrap leaves state from its package
/// scripts there, and both are fresh tmpfs in a booted VM anyway.
fn empty_runtime_dirs(root: &Path) -> std::io::Result<()> {
    for dir in ["/run", "/tmp"] {
        let Ok(dir) = inside(root, dir) else { continue };
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let dev = std::os::unix::fs::MetadataExt::dev(&fs::symlink_metadata(&dir)?);
        for entry in entries {
            crate::cleanup::remove_tree(&entry?.path(), dev)?;
        }
    }
    Ok(())
}

/// Maps an absolute image path into `root`, refusing `..` and symlinked
/// ancestors: the tree is untrusted content and a link such as
/// /etc -> /host/etc must never make us write outside it.
pub fn inside(root: &Path, path: &str) -> std::result::Result<PathBuf, String> {
    let rel = Path::new(path)
        .strip_prefix("/")
        .map_err(|_| format!("{path} is not absolute"))?;
    let mut host = root.to_path_buf();
    let comps: Vec<Component> = rel.components().collect();
    for (i, comp) in comps.iter().enumerate() {
        let Component::Normal(name) = comp else {
            return Err(format!("{path} is not a plain path"));
        };
        host.push(name);
        let is_last = i + 1 == comps.len();
        if !is_last {
            if let Ok(meta) = fs::symlink_metadata(&host) {
                if meta.file_type().is_symlink() {
                    return Err(format!(
                        "{} is a symlink in the image; refusing to follow it",
                        host.display()
                    ));
                }
            }
        }
    }
    Ok(host)
}

fn apply_entry(root: &Path, entry: &Entry) -> std::result::Result<(), String> {
    let host = inside(root, entry.path())?;
    let err = |e: std::io::Error| format!("{}: {e}", host.display());
    match entry {
        Entry::Dir { mode, .. } => {
            match fs::symlink_metadata(&host) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => remove_non_dir(&host)?,
                Err(_) => {}
            }
            fs::create_dir_all(&host).map_err(err)?;
            fs::set_permissions(&host, fs::Permissions::from_mode(*mode)).map_err(err)?;
        }
        Entry::File {
            contents,
            mode,
            uid,
            gid,
            ..
        } => {
            remove_non_dir(&host)?;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(*mode)
                .open(&host)
                .map_err(err)?;
            f.write_all(contents).map_err(err)?;
            // The umask may have cut bits from `mode`.
            f.set_permissions(fs::Permissions::from_mode(*mode))
                .map_err(err)?;
            std::os::unix::fs::fchown(&f, Some(*uid), Some(*gid)).map_err(err)?;
        }
        Entry::Symlink { target, .. } => {
            remove_non_dir(&host)?;
            std::os::unix::fs::symlink(target, &host).map_err(err)?;
        }
    }
    Ok(())
}

/// Removes a file or symlink at `path` if there is one; a directory there
/// is an error (we never replace directories).
fn remove_non_dir(path: &Path) -> std::result::Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(format!("{} is a directory", path.display())),
        Ok(_) => fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display())),
        Err(_) => Ok(()),
    }
}

/// Rewrites a regular file keeping its inode, hence owner and mode.
fn rewrite_in_place(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(contents)
}

/// Deletes downloaded packages and package lists: they are most of the
/// tree's size after debootstrap and `apt-get update` brings lists back.
fn clean_apt(root: &Path) -> std::io::Result<()> {
    let plan = [
        ("/var/cache/apt/archives", None),
        ("/var/cache/apt/archives/partial", None),
        ("/var/cache/apt", Some(".bin")),
        ("/var/lib/apt/lists", None),
        ("/var/lib/apt/lists/partial", None),
    ];
    for (dir, suffix) in plan {
        let Ok(dir) = inside(root, dir) else { continue };
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let keep = entry.file_type()?.is_dir()
                || name == "lock"
                || suffix.is_some_and(|s| !name.ends_with(s));
            if !keep {
                fs::remove_file(entry.path())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marker::FORMAT_VERSION;
    use std::os::unix::fs::MetadataExt;

    fn marker() -> Marker {
        Marker {
            format: FORMAT_VERSION,
            release: "bookworm".into(),
            arch: "amd64".into(),
            mirror: "http://deb.debian.org/debian".into(),
            packages: vec![],
            built: "2026-11-22T00:00:00Z".into(),
            updated: None,
            tool: "create-vm-image test".into(),
        }
    }

    fn find<'a>(entries: &'a [Entry], path: &str) -> &'a Entry {
        entries.iter().find(|e| e.path() == path).unwrap()
    }

    fn text(entry: &Entry) -> String {
        match entry {
            Entry::File { contents, .. } => String::from_utf8(contents.clone()).unwrap(),
            other => panic!("not a file: {other:?}"),
        }
    }

    #[test]
    fn entries_configure_ssh_network_console_and_marker() {
        let entries = ktest_entries(&marker());
        let sshd = text(find(&entries, "/etc/ssh/sshd_config.d/ktest.conf"));
        for line in [
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
        ] {
            assert!(sshd.lines().any(|l| l == line), "{line}");
        }
        assert_eq!(text(find(&entries, "/etc/hostname")), "ktest\n");
        assert!(text(find(&entries, "/etc/fstab")).contains("/dev/vda\t/\text4\tdefaults\t0\t1"));
        assert!(text(find(&entries, "/etc/hosts")).contains("127.0.1.1\tktest"));
        assert_eq!(text(find(&entries, "/etc/machine-id")), "");
        let net = text(find(&entries, "/etc/systemd/network/80-ktest-dhcp.network"));
        assert!(net.contains("Name=en* eth*") && net.contains("DHCP=yes"));
        assert_eq!(
            find(
                &entries,
                "/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"
            ),
            &symlink(
                "/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service",
                "/lib/systemd/system/serial-getty@.service"
            )
        );
        assert!(text(find(&entries, MARKER_PATH)).contains("format=1"));
        assert_eq!(find(&entries, "/root/.ssh"), &dir("/root/.ssh", 0o700));
    }

    #[test]
    fn directories_come_before_their_contents() {
        let entries = ktest_entries(&marker());
        for (i, e) in entries.iter().enumerate() {
            let parent = Path::new(e.path()).parent().unwrap();
            if let Some(j) = entries.iter().position(|d| Path::new(d.path()) == parent) {
                assert!(j < i, "{} comes before its directory", e.path());
            }
        }
    }

    #[test]
    fn root_is_locked() {
        let shadow = "root:$y$j9T$abc:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n";
        assert_eq!(
            lock_root(shadow).unwrap(),
            "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
        );
        assert_eq!(lock_root("root::1:::::\n").unwrap(), "root:*:1:::::\n");
        assert_eq!(
            lock_root("root").unwrap_err(),
            "/etc/shadow has no root entry"
        );
        assert!(lock_root("rooty:x:1\n").is_err());
        assert_eq!(lock_root("root:\n").unwrap(), "root:*\n");
    }

    #[test]
    fn inside_refuses_escapes() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", root.path().join("evil")).unwrap();
        assert_eq!(
            inside(root.path(), "/etc/hostname").unwrap(),
            root.path().join("etc/hostname")
        );
        assert!(inside(root.path(), "/evil/passwd").is_err());
        assert!(inside(root.path(), "/etc/../../x").is_err());
        assert!(inside(root.path(), "etc").is_err());
        // A symlink as the last component is replaced, not followed.
        assert!(inside(root.path(), "/evil").is_ok());
    }

    #[test]
    fn entries_apply_to_a_tree() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("resolv.conf");
        std::fs::write(&victim, "host\n").unwrap();
        // debootstrap may leave resolv.conf as a link; writing must replace
        // the link, not the file it points to.
        std::os::unix::fs::symlink(&victim, root.path().join("etc/resolv.conf")).unwrap();
        for e in ktest_entries(&marker()) {
            apply_entry(root.path(), &e).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host\n");
        let resolv = root.path().join("etc/resolv.conf");
        assert!(std::fs::symlink_metadata(&resolv).unwrap().is_file());
        let ssh = std::fs::metadata(root.path().join("root/.ssh")).unwrap();
        assert_eq!(ssh.mode() & 0o777, 0o700);
        let id = std::fs::metadata(root.path().join("etc/machine-id")).unwrap();
        assert_eq!((id.len(), id.mode() & 0o777), (0, 0o444));
        let link = root
            .path()
            .join("etc/systemd/system/sockets.target.wants/systemd-networkd.socket");
        assert_eq!(
            std::fs::read_link(link).unwrap(),
            Path::new("/lib/systemd/system/systemd-networkd.socket")
        );
        // Applying twice is fine (that is what --update does).
        for e in ktest_entries(&marker()) {
            apply_entry(root.path(), &e).unwrap();
        }
    }

    #[test]
    fn runtime_dirs_are_emptied_but_kept() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("run/systemd/x")).unwrap();
        std::fs::write(r.join("run/adduser"), "").unwrap();
        std::os::unix::fs::symlink("/dev/shm", r.join("run/shm")).unwrap();
        std::fs::create_dir_all(r.join("tmp")).unwrap();
        std::fs::write(r.join("tmp/f"), "").unwrap();
        empty_runtime_dirs(r).unwrap();
        assert_eq!(std::fs::read_dir(r.join("run")).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(r.join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn apt_caches_are_emptied_but_locks_and_dirs_kept() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in [
            "var/cache/apt/archives/partial",
            "var/lib/apt/lists/partial",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        for f in [
            "var/cache/apt/archives/x.deb",
            "var/cache/apt/archives/lock",
            "var/cache/apt/pkgcache.bin",
            "var/cache/apt/other",
            "var/lib/apt/lists/deb_Packages",
            "var/lib/apt/lists/lock",
        ] {
            std::fs::write(r.join(f), "x").unwrap();
        }
        clean_apt(r).unwrap();
        assert!(!r.join("var/cache/apt/archives/x.deb").exists());
        assert!(!r.join("var/cache/apt/pkgcache.bin").exists());
        assert!(!r.join("var/lib/apt/lists/deb_Packages").exists());
        assert!(r.join("var/cache/apt/archives/lock").exists());
        assert!(r.join("var/cache/apt/other").exists());
        assert!(r.join("var/lib/apt/lists/lock").exists());
        assert!(r.join("var/lib/apt/lists/partial").is_dir());
    }
}
