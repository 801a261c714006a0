//! ktest's own ssh keys: a client key `ktest ssh` logs in with, and a host
//! key every guest's sshd presents, pinned in a ktest-owned known_hosts.
//!
//! Both live in `ssh/` beside the state database, are generated on first use
//! with ssh-keygen, and are private to the user (directory 0700, keys 0600).
//! Giving every guest the same host key, made on the host, means the guest
//! spends no boot time generating one and `ktest ssh` can check the host key
//! for real without ever prompting or touching `~/.ssh/known_hosts`.

use crate::error::{Context, Error, Result};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The name every guest's host key is recorded under in `known_hosts`
/// (ssh's `HostKeyAlias`), whatever port the VM has.
pub const HOST_ALIAS: &str = "ktest-vm";

/// ktest's key directory and the files in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The directory (`STATE_DIR/ssh`).
    pub dir: PathBuf,
}

impl Keys {
    /// The key directory beside the state database `db`.
    pub fn beside(db: &Path) -> Keys {
        let state_dir = match db.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Keys {
            dir: state_dir.join("ssh"),
        }
    }

    /// The client's private key.
    pub fn identity(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    /// The client's public key, which the guest authorizes for root.
    pub fn authorized(&self) -> PathBuf {
        self.dir.join("id_ed25519.pub")
    }

    /// The guests' private host key.
    pub fn host_key(&self) -> PathBuf {
        self.dir.join("host_ed25519")
    }

    /// The known_hosts file pinning the guests' host key.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// True if the key directory is complete.
    pub fn exist(&self) -> bool {
        [
            self.identity(),
            self.authorized(),
            self.host_key(),
            self.known_hosts(),
        ]
        .iter()
        .all(|p| p.is_file())
    }

    /// Generates the keys unless they exist. Concurrent ktests may race
    /// here: each builds a complete directory under a private name and
    /// renames it into place, so a loser's rename fails harmlessly and
    /// everyone ends up using the winner's keys.
    pub fn ensure(&self) -> Result<()> {
        if self.exist() {
            return Ok(());
        }
        let parent = self.dir.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .context(|| format!("creating {}", parent.display()))?;
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let tmp = parent.join(format!(
            "ssh.tmp-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .context(|| format!("creating {}", tmp.display()))?;
        let made = Keys { dir: tmp.clone() }.generate();
        let placed = made.is_ok()
            && (std::fs::rename(&tmp, &self.dir).is_ok()
                || self.exist()
                // Only an incomplete directory (a user removed a file) is
                // in the way: replace it.
                || (std::fs::remove_dir_all(&self.dir).is_ok()
                    && std::fs::rename(&tmp, &self.dir).is_ok()));
        let _ = std::fs::remove_dir_all(&tmp);
        made?;
        if placed || self.exist() {
            Ok(())
        } else {
            Err(Error::infra(format!(
                "cannot create ktest's ssh keys in {}\n  check that directory's permissions",
                self.dir.display()
            )))
        }
    }

    fn generate(&self) -> Result<()> {
        keygen(&self.identity(), "ktest")?;
        keygen(&self.host_key(), "ktest guest host key")?;
        let host_pub = std::fs::read_to_string(self.host_key().with_extension("pub"))
            .context(|| format!("reading {}.pub", self.host_key().display()))?;
        std::fs::write(self.known_hosts(), known_hosts_line(&host_pub))
            .context(|| format!("writing {}", self.known_hosts().display()))?;
        for f in [self.identity(), self.host_key(), self.known_hosts()] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600))
                .context(|| format!("chmod {}", f.display()))?;
        }
        Ok(())
    }

    /// The assignments the guest init reads to start sshd: the authorized
    /// public key and the host key, shell-quoted.
    pub fn guest_env(&self) -> Result<String> {
        let authorized = std::fs::read_to_string(self.authorized())
            .context(|| format!("reading {}", self.authorized().display()))?;
        let host_key = std::fs::read_to_string(self.host_key())
            .context(|| format!("reading {}", self.host_key().display()))?;
        Ok(format!(
            "ktest_ssh_authorized={}\nktest_ssh_host_key={}\n",
            shell_words::quote(authorized.trim()),
            shell_words::quote(host_key.trim())
        ))
    }
}

/// The known_hosts line for the guests' host key (`TYPE KEY [COMMENT]`).
pub fn known_hosts_line(host_pub: &str) -> String {
    let mut words = host_pub.split_whitespace();
    let kind = words.next().unwrap_or_default();
    let key = words.next().unwrap_or_default();
    format!("{HOST_ALIAS} {kind} {key}\n")
}

fn keygen(path: &Path, comment: &str) -> Result<()> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::infra(format!(
                "cannot run ssh-keygen: {e}\n  install openssh-client (Debian: apt-get install openssh-client)"
            ))
        })?;
    if !out.status.success() {
        return Err(Error::infra(format!(
            "ssh-keygen -f {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ssh-keygen is on PATH, or the caller skips (fails under CI).
    fn have_ssh_keygen() -> bool {
        let found = Command::new("ssh-keygen").arg("-?").output().is_ok();
        crate::prereq::require(found, "ssh-keygen", "apt-get install openssh-client")
    }

    #[test]
    fn keys_live_beside_the_database() {
        let k = Keys::beside(Path::new("/home/u/.local/state/ktest/state.db"));
        assert_eq!(k.dir, Path::new("/home/u/.local/state/ktest/ssh"));
        assert_eq!(
            k.identity(),
            Path::new("/home/u/.local/state/ktest/ssh/id_ed25519")
        );
        assert_eq!(Keys::beside(Path::new("state.db")).dir, Path::new("./ssh"));
    }

    #[test]
    fn known_hosts_pins_the_alias() {
        assert_eq!(
            known_hosts_line("ssh-ed25519 AAAAC3Nz ktest guest host key\n"),
            "ktest-vm ssh-ed25519 AAAAC3Nz\n"
        );
    }

    #[test]
    fn generated_once_private_and_usable_by_the_guest() {
        if !have_ssh_keygen() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let keys = Keys::beside(&t.path().join("state/state.db"));
        keys.ensure().unwrap();
        assert!(keys.exist());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&keys.dir), 0o700);
        assert_eq!(mode(&keys.identity()), 0o600);
        assert_eq!(mode(&keys.host_key()), 0o600);
        let first = std::fs::read(keys.identity()).unwrap();
        keys.ensure().unwrap();
        assert_eq!(
            std::fs::read(keys.identity()).unwrap(),
            first,
            "regenerated"
        );
        let env = keys.guest_env().unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{env}\nprintf '%s\\n' \"$ktest_ssh_authorized\"; printf '%s\\n' \"$ktest_ssh_host_key\""
            ))
            .output()
            .unwrap();
        let printed = String::from_utf8(out.stdout).unwrap();
        assert!(printed.starts_with("ssh-ed25519 "), "{printed}");
        assert!(printed.contains("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(printed.ends_with("-----END OPENSSH PRIVATE KEY-----\n"));
    }

    #[test]
    fn racing_generators_agree() {
        if !have_ssh_keygen() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let db = t.path().join("state.db");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let k = Keys::beside(&db);
                    k.ensure().unwrap();
                    (
                        std::fs::read(k.identity()).unwrap(),
                        std::fs::read(k.authorized()).unwrap(),
                    )
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(results.windows(2).all(|w| w[0] == w[1]));
    }
}
