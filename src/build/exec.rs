//! Running make: its output goes to a log file, through the error-line
//! filter, and to the progress line or the terminal; Ctrl-C and SIGTERM
//! stop it.

use super::make::{progress_text, ErrorLines};
use super::progress::ProgressLine;
use crate::error::{Code, Error, Result};
use crate::process_group::Group;
use crate::signals;
use nix::sys::signal::Signal;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// How long make may take to stop after SIGINT before its group is killed.
/// make normally stops at once; only one that ignores SIGINT, or waits on
/// a child that does, gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long make's output is still read after make's group is gone: only a
/// process that left the group can hold the pipe open longer.
const LAST_OUTPUT: Duration = Duration::from_secs(2);
/// How often Ctrl-C and make's exit are checked while make is silent.
const POLL: Duration = Duration::from_millis(100);
/// How often make's exit is checked once its output has ended.
const EXIT_POLL: Duration = Duration::from_millis(2);

/// Where stopping make stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Not asked to stop.
    Running,
    /// SIGINT sent at this time: make deletes the half-written targets of
    /// the recipes it was running, so the next build redoes them.
    Asked(Instant),
    /// SIGKILL sent: make did not stop within `STOP_GRACE`.
    Killed,
}

/// The next step in stopping make, and the signal to send for it, if any.
fn next_stop(stop: Stop, interrupted: bool, now: Instant) -> (Stop, Option<Signal>) {
    match stop {
        Stop::Running if interrupted => (Stop::Asked(now), Some(Signal::SIGINT)),
        Stop::Asked(at) if now.duration_since(at) >= STOP_GRACE => {
            (Stop::Killed, Some(Signal::SIGKILL))
        }
        s => (s, None),
    }
}

fn spawn(args: &[String], merged: std::os::fd::OwnedFd) -> Result<Group> {
    let out = merged
        .try_clone()
        .map_err(|e| Error::infra(format!("pipe: {e}")))?;
    let mut cmd = Command::new(MAKE);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(merged));
    // Its own process group, so ktest can stop make and every compiler it
    // started at once; SIGTERM (make's way to stop) if ktest dies.
    Group::spawn(&mut cmd, Signal::SIGTERM).map_err(|e| {
        Error::infra(format!(
            "cannot run make: {e}\n  install the kernel build tools (Debian: apt-get install build-essential flex bison bc libelf-dev libssl-dev)"
        ))
    })
}

/// Where make's output lines go.
struct Sink<'a> {
    log: &'a mut std::fs::File,
    show: Show,
    progress: Option<ProgressLine>,
    errors: ErrorLines,
}

impl Sink<'_> {
    fn line(&mut self, line: String) {
        let _ = writeln!(self.log, "{line}");
        self.errors.push(&line);
        match (&mut self.progress, self.show) {
            (Some(p), _) => {
                if let Some(text) = progress_text(&line) {
                    p.update(text);
                }
            }
            (None, Show::Full) => crate::errln!("{line}"),
            _ => {}
        }
    }
}

/// Runs `make ARGS`, its output appended to `log` and shown as `show` says.
/// `label` names the step on the progress line. Ctrl-C or SIGTERM stops
/// make's whole process group and is an `Interrupted` error.
pub fn run(args: &[String], log: &mut std::fs::File, show: Show, label: &str) -> Result<Finished> {
    // Whoever runs make relies on the flag.
    signals::install();
    let (read, write) = nix::unistd::pipe().map_err(|e| Error::infra(format!("pipe: {e}")))?;
    let _ = writeln!(log, "$ make {}", args.join(" "));
    let mut make = spawn(args, write)?;
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
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
    let mut sink = Sink {
        log,
        show,
        progress: (show == Show::Progress).then(|| ProgressLine::new(label)),
        errors: ErrorLines::default(),
    };
    let mut stop = Stop::Running;
    // Until make exits: not until EOF, which a child of make that survived
    // it would hold off.
    while !make.exited() {
        match rx.recv_timeout(POLL) {
            Ok(line) => sink.line(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // make closed its output: it is exiting, or (rarely) runs on
            // without it. Look again soon, so an exit is seen at once.
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(EXIT_POLL),
        }
        let (next, sig) = next_stop(stop, signals::interrupted(), Instant::now());
        stop = next;
        if let Some(sig) = sig {
            make.signal(sig);
        }
    }
    // Nothing make started may go on compiling.
    let status = make
        .finish()
        .map_err(|e| Error::infra(format!("waiting for make: {e}")))?;
    let end = Instant::now() + LAST_OUTPUT;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => sink.line(line),
            Err(_) => break,
        }
    }
    let errors = std::mem::take(&mut sink.errors).finish();
    drop(sink);
    match stop {
        Stop::Running if !signals::interrupted() => Ok(Finished { status, errors }),
        Stop::Killed => Err(Error::new(
            Code::Interrupted,
            format!(
                "interrupted: make did not stop within {} s of SIGINT and was killed; files it was writing may be incomplete, so if the next build fails oddly, delete its build directory",
                STOP_GRACE.as_secs()
            ),
        )),
        _ => Err(Error::new(
            Code::Interrupted,
            "interrupted: the kernel build was stopped (the next run picks it up where it stopped)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopping_asks_first_then_kills() {
        let t0 = Instant::now();
        assert_eq!(next_stop(Stop::Running, false, t0), (Stop::Running, None));
        let (asked, sig) = next_stop(Stop::Running, true, t0);
        assert_eq!((asked, sig), (Stop::Asked(t0), Some(Signal::SIGINT)));
        // Asked once only, whatever the flag says later.
        assert_eq!(
            next_stop(asked, true, t0 + Duration::from_secs(1)),
            (asked, None)
        );
        let late = t0 + STOP_GRACE;
        assert_eq!(
            next_stop(asked, false, late),
            (Stop::Killed, Some(Signal::SIGKILL))
        );
        assert_eq!(next_stop(Stop::Killed, true, late), (Stop::Killed, None));
    }
}
