//! Running make: its output goes to a log file, through the error-line
//! filter, and to the progress line or the terminal; Ctrl-C and SIGTERM
//! stop it.

use super::make::{progress_text, ErrorLines};
use super::progress::ProgressLine;
use crate::error::{Code, Error, Result};
use crate::signals;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How make's output is shown while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// One status line, redrawn in place (stderr is a terminal).
    Progress,
    /// Every line, as make prints it (`-v`, `--build-log`).
    Full,
    /// Nothing; the log file and the error lines keep it.
    Quiet,
}

/// How a make run ended.
pub struct Finished {
    /// make's exit status.
    pub status: ExitStatus,
    /// The lines that explain a failure (see `ErrorLines`).
    pub errors: Vec<String>,
}

/// The make program, from PATH.
pub const MAKE: &str = "make";

fn spawn(args: &[String], merged: std::os::fd::OwnedFd) -> Result<Child> {
    let out = merged
        .try_clone()
        .map_err(|e| Error::infra(format!("pipe: {e}")))?;
    let mut cmd = Command::new(MAKE);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(merged));
    let parent = std::process::id() as i32;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Its own process group, so ktest can stop make and every
            // compiler it started at once; and make dies with ktest.
            let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            if nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).is_err()
                || nix::unistd::getppid().as_raw() != parent
            {
                return Err(std::io::Error::other("parent died"));
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| {
        Error::infra(format!(
            "cannot run make: {e}\n  install the kernel build tools (Debian: apt-get install build-essential flex bison bc libelf-dev libssl-dev)"
        ))
    })
}

/// Runs `make ARGS`, its output appended to `log` and shown as `show` says.
/// `label` names the step on the progress line.
pub fn run(args: &[String], log: &mut std::fs::File, show: Show, label: &str) -> Result<Finished> {
    let (read, write) = nix::unistd::pipe().map_err(|e| Error::infra(format!("pipe: {e}")))?;
    let _ = writeln!(log, "$ make {}", args.join(" "));
    let mut child = spawn(args, write)?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(std::fs::File::from(read));
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut progress = (show == Show::Progress).then(|| ProgressLine::new(label));
    let mut errors = ErrorLines::default();
    let mut stopping = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let _ = writeln!(log, "{line}");
                errors.push(&line);
                match (&mut progress, show) {
                    (Some(p), _) => {
                        if let Some(text) = progress_text(&line) {
                            p.update(text);
                        }
                    }
                    (None, Show::Full) => crate::errln!("{line}"),
                    _ => {}
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if signals::interrupted() && !stopping {
            stopping = true;
            // SIGINT lets make delete the half-written targets of the
            // recipes it was running, so the next build redoes them.
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGINT);
        }
    }
    let _ = reader.join();
    let status = child
        .wait()
        .map_err(|e| Error::infra(format!("waiting for make: {e}")))?;
    drop(progress);
    if stopping || signals::interrupted() {
        return Err(Error::new(
            Code::Interrupted,
            "interrupted: the kernel build was stopped (the next run picks it up where it stopped)",
        ));
    }
    Ok(Finished {
        status,
        errors: errors.finish(),
    })
}
