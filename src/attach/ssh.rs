//! `ktest ssh`: logs in as root to the VM over its slot's forwarded port,
//! with ktest's own client key and the guests' pinned host key, so it never
//! prompts and never touches `~/.ssh/known_hosts`.

use super::{console_log, current_vm, exec};
use crate::error::{Code, Error, Result};
use crate::sshkey::{Keys, HOST_ALIAS};
use crate::state::VmRow;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long to wait for the guest's sshd: it starts in the background
/// while the guest boots, which under TCG on a busy machine can take a while.
const SSHD_WAIT: Duration = Duration::from_secs(60);
/// When to tell the user what ktest is waiting for.
const SSHD_NOTICE: Duration = Duration::from_secs(3);

/// Marks a VM whose sshd has greeted once, in its per-VM directory, so
/// later logins skip the probe (each costs the guest an sshd fork and exec:
/// about 0.4 s under TCG).
const READY: &str = "sshd.ready";

/// The console line the guest init prints when it cannot start sshd; keep
/// in sync with lib/guest/init.sh.
const UNAVAILABLE: &str = "ktest-guest: ssh unavailable: ";

/// `ktest ssh [-- COMMAND...]`.
pub fn ssh(db: &Path, vm: Option<&str>, command: Vec<String>) -> Result<Code> {
    let vm = current_vm(db, vm)?;
    let keys = Keys::beside(db);
    if !keys.exist() {
        return Err(Error::usage(format!(
            "ktest's ssh keys are missing from {}; they are made when a VM starts, so restart the VM (ktest stop, then ktest boot)",
            keys.dir.display()
        )));
    }
    wait_for_sshd(&vm)?;
    let mut cmd = Command::new("ssh");
    cmd.args(ssh_args(&keys, vm.ssh_port, &command));
    exec(cmd, "openssh-client")
}

/// ssh's arguments: ktest's identity only (no agent, no other keys), the
/// guests' host key checked against ktest's own known_hosts under one
/// alias, no prompts, no connection sharing with the user's other
/// sessions; then root@127.0.0.1 and the remote command, if any.
pub fn ssh_args(keys: &Keys, port: u32, command: &[String]) -> Vec<String> {
    let opt = |o: &str| ["-o".to_string(), o.to_string()];
    let mut args = vec![
        "-i".to_string(),
        keys.identity().to_string_lossy().into_owned(),
        "-p".to_string(),
        port.to_string(),
    ];
    for o in [
        "IdentitiesOnly=yes".to_string(),
        "IdentityAgent=none".to_string(),
        format!("UserKnownHostsFile={}", keys.known_hosts().display()),
        "GlobalKnownHostsFile=/dev/null".to_string(),
        format!("HostKeyAlias={HOST_ALIAS}"),
        "StrictHostKeyChecking=yes".to_string(),
        "CheckHostIP=no".to_string(),
        "UpdateHostKeys=no".to_string(),
        "BatchMode=yes".to_string(),
        "ControlMaster=no".to_string(),
        "ControlPath=none".to_string(),
        "LogLevel=ERROR".to_string(),
    ] {
        args.extend(opt(&o));
    }
    args.push("root@127.0.0.1".to_string());
    if let Some(remote) = remote_command(command) {
        args.push("--".to_string());
        args.push(remote);
    }
    args
}

/// The command line the guest's shell runs. ssh joins its arguments with
/// spaces, which would lose `sh -c 'exit 7'`'s quoting, so several
/// arguments are a command and its arguments, quoted to arrive exactly as
/// given; a single argument is a shell command line (`'dmesg | tail'`).
pub fn remote_command(command: &[String]) -> Option<String> {
    match command {
        [] => None,
        [line] => Some(line.clone()),
        words => Some(shell_words::join(words)),
    }
}

/// Waits until the guest's sshd greets, failing early when the guest said
/// it cannot run sshd or the VM went away.
fn wait_for_sshd(vm: &VmRow) -> Result<()> {
    let ready = vm.vm_dir.join(READY);
    if ready.exists() {
        return Ok(());
    }
    let start = Instant::now();
    let mut told = false;
    loop {
        // See greets: short attempts while the guest may still be booting.
        let patience = if start.elapsed() < Duration::from_secs(10) {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(5)
        };
        if greets(vm.ssh_port, patience) {
            // The directory belongs to the VM's ktest, which removes it
            // with everything else; failing to mark only costs a probe.
            let _ = std::fs::write(&ready, b"");
            return Ok(());
        }
        if let Some(why) = console_log(vm).and_then(|log| unavailable(&log)) {
            return Err(Error::infra(format!(
                "ssh is unavailable in the VM from {}: {why}",
                vm.dir.display()
            )));
        }
        if !vm.vm_dir.exists() {
            return Err(Error::infra(format!(
                "the VM from {} stopped",
                vm.dir.display()
            )));
        }
        if start.elapsed() > SSHD_WAIT {
            let log = console_log(vm)
                .map(|l| format!("\n  its console log may say why: {}", l.display()))
                .unwrap_or_default();
            return Err(Error::infra(format!(
                "no ssh server answered in the VM from {} (127.0.0.1:{}) within {} s{log}",
                vm.dir.display(),
                vm.ssh_port,
                SSHD_WAIT.as_secs()
            )));
        }
        if !told && start.elapsed() > SSHD_NOTICE {
            crate::errln!(
                "ktest: waiting for sshd in the VM (127.0.0.1:{})...",
                vm.ssh_port
            );
            told = true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// True if an ssh server greets on the port within `patience`. qemu
/// accepts the connection whether or not the guest listens, so only the
/// banner tells. A connection made before the guest's network was up hangs
/// in qemu's retransmission backoff (3 s and more), so early attempts give
/// up after a second and make a fresh connection; later ones wait longer,
/// for a guest that is merely slow.
fn greets(port: u32, patience: Duration) -> bool {
    let Ok(port) = u16::try_from(port) else {
        return false;
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(patience));
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).is_ok() && &buf == b"SSH-"
}

/// Why the guest said it cannot offer ssh, from its console log.
fn unavailable(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(UNAVAILABLE))
        .map(|why| why.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn several_arguments_keep_their_quoting() {
        assert_eq!(remote_command(&[]), None);
        assert_eq!(
            remote_command(&words(&["sh", "-c", "exit 7"])).as_deref(),
            Some("sh -c 'exit 7'")
        );
        assert_eq!(
            remote_command(&words(&["dmesg | tail -3"])).as_deref(),
            Some("dmesg | tail -3")
        );
    }

    #[test]
    fn ssh_never_prompts_and_uses_only_ktest_files() {
        let keys = Keys {
            dir: "/st/ssh".into(),
        };
        let a = ssh_args(&keys, 22203, &words(&["uname", "-r"]));
        let joined = a.join(" ");
        for needle in [
            "-i /st/ssh/id_ed25519 -p 22203",
            "UserKnownHostsFile=/st/ssh/known_hosts",
            "GlobalKnownHostsFile=/dev/null",
            "HostKeyAlias=ktest-vm",
            "StrictHostKeyChecking=yes",
            "BatchMode=yes",
            "IdentitiesOnly=yes",
        ] {
            assert!(joined.contains(needle), "{needle} missing: {joined}");
        }
        assert_eq!(
            a[a.len() - 3..],
            words(&["root@127.0.0.1", "--", "uname -r"])
        );
        let login = ssh_args(&keys, 22200, &[]);
        assert_eq!(login.last().map(String::as_str), Some("root@127.0.0.1"));
    }

    #[test]
    fn the_guests_reason_is_found_in_the_log() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("boot.log");
        std::fs::write(
            &log,
            "Linux version 6.1\nktest-guest: ssh unavailable: /usr/sbin/sshd not found (install openssh-server)\n",
        )
        .unwrap();
        assert_eq!(
            unavailable(&log).as_deref(),
            Some("/usr/sbin/sshd not found (install openssh-server)")
        );
        std::fs::write(&log, "Linux version 6.1\n").unwrap();
        assert_eq!(unavailable(&log), None);
    }

    #[test]
    fn a_silent_port_does_not_greet() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port() as u32;
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            use std::io::Write;
            s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
            let (s, _) = l.accept().unwrap();
            drop(s);
        });
        let patience = Duration::from_secs(5);
        assert!(greets(port, patience));
        assert!(!greets(port, patience));
        t.join().unwrap();
    }
}
