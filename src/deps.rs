//! Running `TEST deps` on the host and turning its output into a `TestSpec`.
//!
//! deps is someone's script, run before anything else: it must not be able
//! to hang ktest or leave processes behind. So it runs in its own process
//! group with stdin from /dev/null; its stdout is read up to a bound and its
//! stderr is kept up to a bound; ktest does not wait for EOF (a background
//! child may hold the pipes), and the whole group is killed when deps exits,
//! when the time limit or the output bound is passed, and on Ctrl-C or
//! SIGTERM.

use crate::error::{Code, Error, Result};
use crate::process_group::Group;
use crate::signals;
use crate::spec::{self, TestSpec};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long `deps` may take by default; it only prints a few lines.
const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(30);
/// The environment variable that overrides the time limit, in seconds.
pub const TIME_LIMIT_VAR: &str = "KTEST_DEPS_TIMEOUT";
/// The most `deps` may print on stdout: declarations are a few lines.
const OUTPUT_LIMIT: usize = 1 << 20;
/// How much of `deps`' stderr is kept to show when it fails.
const STDERR_KEPT: usize = 16 << 10;
/// How often the clock, Ctrl-C and the process are checked while deps is
/// silent.
const POLL: Duration = Duration::from_millis(20);
/// Reads per stream per wake-up, so a fast writer cannot keep ktest from
/// checking the clock and Ctrl-C; together they cover a full pipe.
const READS_PER_WAKEUP: usize = 16;
const READ_SIZE: usize = 64 << 10;

/// Checks that `test` is an executable file, with a message saying how to
/// fix it otherwise.
pub fn check_executable(test: &Path) -> Result<()> {
    let meta =
        std::fs::metadata(test).map_err(|e| Error::usage(format!("{}: {e}", test.display())))?;
    if !meta.is_file() {
        return Err(Error::usage(format!(
            "{} is not a file; give the test script's path",
            test.display()
        )));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(Error::usage(format!(
            "{} is not executable; chmod +x it",
            test.display()
        )));
    }
    Ok(())
}

/// The time limit for `deps`: `KTEST_DEPS_TIMEOUT` seconds if set, else
/// the default.
fn time_limit(var: Option<&OsStr>) -> Result<Duration> {
    let Some(v) = var else {
        return Ok(DEFAULT_TIME_LIMIT);
    };
    match v.to_str().and_then(|s| s.trim().parse::<u64>().ok()) {
        Some(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
        _ => Err(Error::usage(format!(
            "{TIME_LIMIT_VAR}={}: expected a whole number of seconds, at least 1 (the default is {})",
            v.to_string_lossy(),
            DEFAULT_TIME_LIMIT.as_secs()
        ))),
    }
}

/// The start of a stream, up to `keep` bytes, and how much there was.
#[derive(Debug)]
struct Capture {
    kept: Vec<u8>,
    keep: usize,
    total: usize,
}

impl Capture {
    fn new(keep: usize) -> Capture {
        Capture {
            kept: Vec::new(),
            keep,
            total: 0,
        }
    }

    fn add(&mut self, bytes: &[u8]) {
        let room = self.keep.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.total = self.total.saturating_add(bytes.len());
    }

    /// True when more came than was kept.
    fn truncated(&self) -> bool {
        self.total > self.keep
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.kept).into_owned()
    }
}

/// One of deps' output pipes, read without blocking.
struct Stream {
    /// `None` after EOF.
    file: Option<File>,
    got: Capture,
}

impl Stream {
    fn new(fd: impl Into<OwnedFd>, keep: usize) -> std::io::Result<Stream> {
        let file = File::from(fd.into());
        fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        Ok(Stream {
            file: Some(file),
            got: Capture::new(keep),
        })
    }

    /// Reads what the pipe holds now (up to `READS_PER_WAKEUP` reads).
    fn drain(&mut self) {
        let Some(f) = &mut self.file else {
            return;
        };
        let mut buf = vec![0u8; READ_SIZE];
        for _ in 0..READS_PER_WAKEUP {
            match f.read(&mut buf) {
                Ok(n) if n > 0 => self.got.add(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                // EOF, or a pipe that cannot be read any more.
                _ => {
                    self.file = None;
                    return;
                }
            }
        }
    }
}

/// Waits up to `timeout` for output on the streams still open.
fn wait_for_output(streams: &[Stream], timeout: Duration) {
    let mut fds: Vec<PollFd> = streams
        .iter()
        .filter_map(|s| s.file.as_ref())
        .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
        .collect();
    if fds.is_empty() {
        // deps closed its output: it is exiting, or (rarely) runs on
        // without it. Look again soon, so an exit is seen at once.
        std::thread::sleep(timeout.min(Duration::from_millis(2)));
        return;
    }
    let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::ZERO);
    // EINTR (a signal) just means: look at everything again.
    let _ = poll(&mut fds, ms);
}

/// How a deps run ended, if it ended by itself.
struct Finished {
    status: ExitStatus,
    stdout: Capture,
    stderr: Capture,
}

/// Why ktest stopped deps.
#[derive(Debug, PartialEq, Eq)]
enum Stopped {
    TimeLimit(Duration),
    TooMuchOutput,
    Interrupted,
}

/// Runs `test MODE` (`deps` or `list-tests`) and collects its output; see
/// the module comment.
fn run(test: &Path, mode: &str, limit: Duration) -> Result<std::result::Result<Finished, Stopped>> {
    let shown = test.display();
    let lib = crate::testlib::HostCopy::create()?;
    let mut cmd = Command::new(test);
    cmd.arg(mode)
        .env(crate::testlib::VAR, lib.path())
        .current_dir(test.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut group = Group::spawn(&mut cmd, Signal::SIGKILL)
        .map_err(|e| Error::usage(format!("{shown}: cannot run '{shown} {mode}': {e}")))?;
    let pipes = group.child().stdout.take().zip(group.child().stderr.take());
    let (out, err) = pipes.ok_or_else(|| Error::infra("deps: no output pipes"))?;
    let pipe_err = |e: std::io::Error| Error::infra(format!("deps: setting up its output: {e}"));
    let mut streams = [
        Stream::new(out, OUTPUT_LIMIT).map_err(pipe_err)?,
        Stream::new(err, STDERR_KEPT).map_err(pipe_err)?,
    ];
    let deadline = Instant::now() + limit;
    loop {
        if signals::interrupted() {
            return Ok(Err(Stopped::Interrupted));
        }
        let exited = group.exited();
        if exited {
            // Everything deps printed is in the pipes now; what it left
            // running must not add more or hold them open.
            group.signal(Signal::SIGKILL);
        }
        wait_for_output(&streams, if exited { Duration::ZERO } else { POLL });
        streams.iter_mut().for_each(Stream::drain);
        if streams[0].got.truncated() {
            return Ok(Err(Stopped::TooMuchOutput));
        }
        if exited {
            break;
        }
        if Instant::now() >= deadline {
            return Ok(Err(Stopped::TimeLimit(limit)));
        }
    }
    let status = group
        .finish()
        .map_err(|e| Error::infra(format!("waiting for '{shown} {mode}': {e}")))?;
    let [out, err] = streams;
    Ok(Ok(Finished {
        status,
        stdout: out.got,
        stderr: err.got,
    }))
}

/// The error for a query stopped by ktest.
fn stopped_error(shown: &str, mode: &str, why: Stopped) -> Error {
    match why {
        Stopped::TimeLimit(limit) => Error::usage(format!(
            "{shown}: '{shown} {mode}' did not finish within {} s and was killed with everything it started; {mode} mode must only print and exit ({TIME_LIMIT_VAR} sets the limit in seconds)",
            limit.as_secs()
        )),
        Stopped::TooMuchOutput => Error::usage(format!(
            "{shown}: '{shown} {mode}' printed more than {} MiB and was killed; {mode} mode must only print a few lines and exit",
            OUTPUT_LIMIT >> 20
        )),
        Stopped::Interrupted => Error::new(
            Code::Interrupted,
            format!("interrupted: '{shown} {mode}' was stopped"),
        ),
    }
}

/// Runs `test MODE` on the host in the test's directory, sandboxed as the
/// module comment says, and returns its stdout; `what` tells the user what
/// the mode must do when it fails.
fn query(test: &Path, mode: &str, what: &str) -> Result<String> {
    check_executable(test)?;
    // `ktest build TEST` gets here before anything else installs them.
    signals::install();
    let limit = time_limit(std::env::var_os(TIME_LIMIT_VAR).as_deref())?;
    let shown = test.display().to_string();
    let done = run(test, mode, limit)?.map_err(|why| stopped_error(&shown, mode, why))?;
    if !done.status.success() {
        let detail = done.stderr.text();
        let detail = detail.trim();
        return Err(Error::usage(format!(
            "{shown}: '{shown} {mode}' failed ({}){}{detail}{}\n  {what}",
            done.status,
            if detail.is_empty() { "" } else { ":\n  " },
            if done.stderr.truncated() {
                "\n  ..."
            } else {
                ""
            }
        )));
    }
    Ok(done.stdout.text())
}

/// Runs `test deps` in the test's directory and parses what it declares.
pub fn read(test: &Path) -> Result<TestSpec> {
    let out = query(
        test,
        "deps",
        "a test must handle its first argument 'deps' by printing KEY=VALUE lines and exiting 0",
    )?;
    let shown = test.display();
    spec::parse(&out).map_err(|e| Error::usage(format!("{shown}: deps: {e}")))
}

/// Runs `test list-tests` (only for a file that declared `SUBTESTS=yes`)
/// and returns its subtest names.
pub fn list(test: &Path) -> Result<Vec<String>> {
    let out = query(
        test,
        "list-tests",
        "a test that declares SUBTESTS=yes must answer 'list-tests' with its subtest names, one per line",
    )?;
    crate::suite::parse_list(&out)
        .map_err(|e| Error::usage(format!("{}: list-tests: {e}", test.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_limit_from_the_environment() {
        assert_eq!(time_limit(None).unwrap(), DEFAULT_TIME_LIMIT);
        assert_eq!(
            time_limit(Some(OsStr::new("5"))).unwrap(),
            Duration::from_secs(5)
        );
        for bad in ["0", "-1", "1.5", "soon", ""] {
            let e = time_limit(Some(OsStr::new(bad))).unwrap_err();
            assert_eq!(e.code, Code::Usage, "{bad}");
            assert!(e.message.contains(TIME_LIMIT_VAR), "{}", e.message);
        }
    }

    #[test]
    fn capture_keeps_the_start_and_counts_the_rest() {
        let mut c = Capture::new(4);
        c.add(b"ab");
        assert!(!c.truncated());
        c.add(b"cd");
        assert!(!c.truncated());
        assert_eq!(c.text(), "abcd");
        c.add(b"e");
        assert!(c.truncated());
        assert_eq!(c.text(), "abcd");
        assert_eq!(c.total, 5);
    }
}
