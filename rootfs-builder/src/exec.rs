//! Running external commands with their output in the build log, and
//! stopping them when we are interrupted.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::error::{build, Error, Result};
use crate::signals::Interrupt;

/// How long a child gets between SIGTERM and SIGKILL once we are stopping.
const GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// Runs commands with stdout and stderr appended to one log file.
pub struct Runner {
    log: File,
    interrupt: Interrupt,
}

impl Runner {
    /// A runner writing into `log` and watching `interrupt`.
    pub fn new(log: File, interrupt: Interrupt) -> Self {
        Runner { log, interrupt }
    }

    /// The interrupt flag this runner watches.
    pub fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }

    /// Appends a note to the log (failures to log are not worth failing for).
    pub fn note(&mut self, text: &str) {
        let _ = writeln!(self.log, "{text}");
    }

    /// Runs `cmd` to completion; `what` names it in errors.
    ///
    /// The child gets its own process group so that a Ctrl-C reaches only
    /// us: we then stop the whole group (debootstrap runs dpkg and friends
    /// under it) and wait, instead of racing it while deleting its files.
    pub fn run(&mut self, what: &str, cmd: &mut Command) -> Result<()> {
        self.interrupt.check()?;
        self.note(&format!("\n$ {}", describe(cmd)));
        let out = self
            .log
            .try_clone()
            .map_err(|e| build(format!("cannot write the build log: {e}")))?;
        let err = self
            .log
            .try_clone()
            .map_err(|e| build(format!("cannot write the build log: {e}")))?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| build(format!("cannot run {}: {e}", program_name(cmd))))?;
        let pgid = Pid::from_raw(child.id() as i32);
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| build(format!("waiting for {what}: {e}")))?
            {
                return check_status(what, status);
            }
            if self.interrupt.is_set() {
                self.note(&format!("interrupted: stopping {what}"));
                let _ = killpg(pgid, Signal::SIGTERM);
                let deadline = Instant::now() + GRACE;
                while child.try_wait().ok().flatten().is_none() {
                    if Instant::now() > deadline {
                        let _ = killpg(pgid, Signal::SIGKILL);
                        let _ = child.wait();
                        break;
                    }
                    std::thread::sleep(POLL);
                }
                // Grandchildren may outlive the leader for a moment.
                let _ = killpg(pgid, Signal::SIGKILL);
                return Err(Error::Interrupted);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Runs `cmd` and returns its stdout; stderr goes to the log. For short
    /// queries such as `debugfs -R 'cat FILE'`.
    pub fn capture(&mut self, what: &str, cmd: &mut Command) -> Result<Vec<u8>> {
        self.interrupt.check()?;
        self.note(&format!("\n$ {}", describe(cmd)));
        let err = self
            .log
            .try_clone()
            .map_err(|e| build(format!("cannot write the build log: {e}")))?;
        let output = cmd
            .stdin(Stdio::null())
            .stderr(err)
            .output()
            .map_err(|e| build(format!("cannot run {}: {e}", program_name(cmd))))?;
        self.interrupt.check()?;
        check_status(what, output.status)?;
        Ok(output.stdout)
    }
}

fn check_status(what: &str, status: ExitStatus) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    let status = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown status".into(),
    };
    Err(Error::Command {
        what: what.into(),
        status,
    })
}

fn program_name(cmd: &Command) -> String {
    cmd.get_program().to_string_lossy().into_owned()
}

/// The command as one line for the log.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner() -> (Runner, tempfile::NamedTempFile) {
        let log = tempfile::NamedTempFile::new().unwrap();
        let file = log.reopen().unwrap();
        (Runner::new(file, Interrupt::default()), log)
    }

    #[test]
    fn success_and_failure_are_reported_with_output_logged() {
        let (mut r, log) = runner();
        r.run(
            "echo",
            Command::new("sh").args(["-c", "echo hello; echo oops >&2"]),
        )
        .unwrap();
        let err = r
            .run("false", Command::new("sh").args(["-c", "exit 3"]))
            .unwrap_err();
        assert_eq!(err.to_string(), "false failed (exit status 3)");
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(text.contains("$ sh -c echo hello"));
        assert!(text.contains("hello\noops\n"));
    }

    #[test]
    fn missing_program_is_a_build_error() {
        let (mut r, _log) = runner();
        let err = r
            .run("nothing", &mut Command::new("/nonexistent/prog"))
            .unwrap_err();
        assert!(err.to_string().starts_with("cannot run /nonexistent/prog"));
    }

    #[test]
    fn capture_returns_stdout() {
        let (mut r, _log) = runner();
        let out = r
            .capture(
                "echo",
                Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            )
            .unwrap();
        assert_eq!(out, b"out\n");
    }

    #[test]
    fn interrupt_stops_a_running_child() {
        let (mut r, _log) = runner();
        let flag = r.interrupt().clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            flag.trigger();
        });
        let start = Instant::now();
        let err = r.run("sleep", Command::new("sleep").arg("30")).unwrap_err();
        t.join().unwrap();
        assert!(matches!(err, Error::Interrupted));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn describes_commands_on_one_line() {
        let mut cmd = Command::new("mkfs.ext4");
        cmd.args(["-F", "img"]);
        assert_eq!(describe(&cmd), "mkfs.ext4 -F img");
    }
}
