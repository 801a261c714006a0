//! A child process leading its own process group, so ktest can signal it
//! together with everything it started, and so the whole group is gone on
//! every path out of ktest's code (`deps`, make).
//!
//! The leader is not reaped until `finish`: while it is a zombie its pid
//! still names the group, so signalling the group cannot hit an unrelated
//! process that reused the pid.

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

/// How long `Group::spawn` retries an executable that is open for writing.
const TEXT_BUSY_WAIT: Duration = Duration::from_secs(2);
const TEXT_BUSY_STEP: Duration = Duration::from_millis(10);

/// Sets `cmd` up to lead a process group of its own (Ctrl-C on the
/// terminal reaches ktest only, which stops the group in order) and to get
/// `on_parent_death` when ktest dies, even by SIGKILL. Call `spawn` from the
/// main thread: that signal follows the thread that forked.
pub fn own_group_dying_with_ktest(cmd: &mut Command, on_parent_death: Signal) {
    let parent = std::process::id() as i32;
    cmd.process_group(0);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // ktest died before the signal was armed: do not run orphaned.
            if nix::sys::prctl::set_pdeathsig(on_parent_death).is_err()
                || nix::unistd::getppid().as_raw() != parent
            {
                return Err(std::io::Error::other("parent died"));
            }
            Ok(())
        });
    }
}

/// `cmd.spawn()`, waiting a little for an executable that is still open
/// for writing. A freshly written one can be briefly busy: until another
/// thread's fork execs, it holds the writer's descriptor too (test
/// harnesses, an editor saving), and exec fails with ETXTBSY meanwhile.
pub fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    let mut waited = Duration::ZERO;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && waited < TEXT_BUSY_WAIT => {
                std::thread::sleep(TEXT_BUSY_STEP);
                waited += TEXT_BUSY_STEP;
            }
            other => return other,
        }
    }
}

/// A running process group; dropping it kills the group and reaps the
/// leader.
pub struct Group {
    child: Child,
    /// Set once the leader is reaped; the group is never signalled after.
    status: Option<ExitStatus>,
}

impl Group {
    /// Starts `cmd` as the leader of a new process group. The leader gets
    /// `on_parent_death` if ktest dies first, even by SIGKILL. Call it from
    /// the main thread: that signal follows the thread that forked.
    pub fn spawn(cmd: &mut Command, on_parent_death: Signal) -> std::io::Result<Group> {
        own_group_dying_with_ktest(cmd, on_parent_death);
        Ok(Group {
            child: spawn(cmd)?,
            status: None,
        })
    }

    /// The leader, for taking its pipes.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// True once the leader has exited (or cannot be waited for). Others
    /// in its group may still run.
    pub fn exited(&self) -> bool {
        if self.status.is_some() {
            return true;
        }
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        !matches!(
            waitid(Id::Pid(self.pgid()), flags),
            Ok(WaitStatus::StillAlive)
        )
    }

    /// Sends `sig` to every process in the group.
    pub fn signal(&self, sig: Signal) {
        if self.status.is_none() {
            // ESRCH only: the group is already empty.
            let _ = killpg(self.pgid(), sig);
        }
    }

    /// Kills what is left of the group and reaps the leader.
    pub fn finish(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        self.signal(Signal::SIGKILL);
        let s = self.child.wait()?;
        self.status = Some(s);
        Ok(s)
    }

    fn pgid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn alive(pid: i32) -> bool {
        // A killed process may linger briefly as a zombie of init.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").starts_with(" Z"))
    }

    #[test]
    fn an_executable_still_open_for_writing_is_waited_for() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let t = tempfile::tempdir().unwrap();
        let script = t.path().join("script");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&script)
            .unwrap();
        f.write_all(b"#!/bin/sh\nexit 7\n").unwrap();
        // The writer lets go a little later, as another thread's fork does
        // once it execs.
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(f);
        });
        let mut g = Group::spawn(&mut Command::new(&script), Signal::SIGKILL).unwrap();
        writer.join().unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while !g.exited() {
            assert!(Instant::now() < end, "the script did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(g.finish().unwrap().code(), Some(7));
    }

    #[test]
    fn finish_kills_what_the_leader_left_behind() {
        let t = tempfile::tempdir().unwrap();
        let pidfile = t.path().join("pid");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("sleep 1000 & echo $! > {}", pidfile.display()));
        let mut g = Group::spawn(&mut cmd, Signal::SIGKILL).unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while !g.exited() {
            assert!(Instant::now() < end, "sh did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
        let bg: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(alive(bg));
        assert!(g.finish().unwrap().success());
        let end = Instant::now() + Duration::from_secs(10);
        while alive(bg) {
            assert!(Instant::now() < end, "the background sleep survived");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn dropping_a_running_group_kills_it() {
        let mut cmd = Command::new("sleep");
        cmd.arg("1000");
        let g = Group::spawn(&mut cmd, Signal::SIGKILL).unwrap();
        let pid = g.child.id() as i32;
        assert!(!g.exited());
        drop(g);
        assert!(!alive(pid));
    }
}
