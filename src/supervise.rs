//! Running qemu and watching it: console, verdict port, time limit,
//! signals. Ends with qemu stopped and an `Observed` record of what happened.
//!
//! Readers run on threads and send events over one channel; the loop here is
//! the only place that decides anything.

use crate::console::{self, Line};
use crate::error::{Context, Error, Result};
use crate::outcome::Observed;
use crate::plan::{names, VmPlan};
use crate::signals;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// How long to keep reading after a crash line, for the backtrace.
const CRASH_GRACE: Duration = Duration::from_secs(3);
/// How long a test that printed a sentinel gets to report its exit status.
const SENTINEL_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for the console to catch up with the verdict port.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// How long the guest gets to print task stacks on timeout.
const SYSRQ_GRACE: Duration = Duration::from_secs(3);
/// Console lines kept for crash reports.
const CONTEXT_LINES: usize = 40;

/// How a run is watched.
pub struct Options {
    /// Time limit for the whole VM run.
    pub timeout: Duration,
    /// Show the boot log, not only the test's part of the console.
    pub verbose: bool,
    /// Where the console log goes.
    pub log: PathBuf,
}

enum Event {
    Console(String),
    Result(i32),
    QemuExit(ExitStatus),
    QemuStderr(String),
}

/// A running qemu that is killed when dropped, whatever path leads there.
struct Qemu {
    pid: Pid,
    exited: bool,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if !self.exited {
            let _ = kill(self.pid, Signal::SIGKILL);
        }
    }
}

fn spawn_qemu(plan: &VmPlan, vm_dir: &Path) -> Result<Child> {
    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args)
        .current_dir(vm_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let parent = std::process::id() as i32;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Die with ktest, even if ktest is SIGKILLed.
            if libc_prctl_pdeathsig() != 0 || nix::unistd::getppid().as_raw() != parent {
                return Err(std::io::Error::other("parent died"));
            }
            // Own process group: Ctrl-C goes to ktest, which stops qemu in order.
            let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| {
        Error::infra(format!(
            "cannot start {}: {e}\n  install qemu (Debian: apt-get install qemu-system-x86)",
            plan.program.display()
        ))
    })
}

fn libc_prctl_pdeathsig() -> i32 {
    match nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

fn read_console(listener: UnixListener, tx: Sender<Event>, writer_slot: Sender<UnixStream>) {
    let Ok((stream, _)) = listener.accept() else {
        return;
    };
    if let Ok(w) = stream.try_clone() {
        let _ = writer_slot.send(w);
    }
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']).to_string();
                if tx.send(Event::Console(line)).is_err() {
                    return;
                }
            }
        }
    }
}

fn read_result(listener: UnixListener, tx: Sender<Event>) {
    let Ok((stream, _)) = listener.accept() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        if let Some(code) = console::parse_result(&line) {
            let _ = tx.send(Event::Result(code));
        }
    }
}

/// Asks the guest kernel for all task stacks: a serial break followed by
/// `t` is sysrq-t on the console port.
fn sysrq_over_console(vm_dir: &Path, console: Option<&mut UnixStream>, key: char) -> bool {
    let sent = crate::qmp::execute(
        vm_dir,
        "chardev-send-break",
        serde_json::json!({"id": "con"}),
    );
    match (sent, console) {
        (Ok(_), Some(c)) => c.write_all(key.to_string().as_bytes()).is_ok(),
        _ => false,
    }
}

/// What the loop is waiting for besides events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Test,
    Crash,
    Sentinel,
    Drain,
    Sysrq,
}

/// Boots the plan and watches it to the end. qemu is stopped when this
/// returns, on every path.
pub fn run(
    plan: &VmPlan,
    vm_dir: &Path,
    opts: &Options,
    on_spawn: impl FnOnce(u32),
) -> Result<Observed> {
    let console_listener = crate::sock::bind(vm_dir, names::CONSOLE)
        .context(|| format!("listening on {}/{}", vm_dir.display(), names::CONSOLE))?;
    let result_listener = crate::sock::bind(vm_dir, names::RESULT)
        .context(|| format!("listening on {}/{}", vm_dir.display(), names::RESULT))?;
    let mut log =
        std::fs::File::create(&opts.log).context(|| format!("creating {}", opts.log.display()))?;

    let (tx, rx) = channel();
    let mut child = spawn_qemu(plan, vm_dir)?;
    on_spawn(child.id());
    let mut qemu = Qemu {
        pid: Pid::from_raw(child.id() as i32),
        exited: false,
    };
    let (wtx, wrx) = channel();
    {
        let tx = tx.clone();
        std::thread::spawn(move || read_console(console_listener, tx, wtx));
    }
    {
        let tx = tx.clone();
        std::thread::spawn(move || read_result(result_listener, tx));
    }
    if let Some(mut stderr) = child.stderr.take() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            let _ = tx.send(Event::QemuStderr(s));
        });
    }
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send(Event::QemuExit(status));
            }
        });
    }
    drop(tx);
    let mut watcher = Watcher {
        obs: Observed::default(),
        recent: VecDeque::new(),
        verbose: opts.verbose,
        shown_context: false,
        qemu_stderr: String::new(),
    };
    let start = Instant::now();
    let mut wait = Wait::Test;
    let mut deadline = start + opts.timeout;
    let mut console_writer: Option<UnixStream> = None;
    let mut end_seen = false;

    loop {
        if console_writer.is_none() {
            console_writer = wrx.try_recv().ok();
        }
        if signals::interrupted() {
            watcher.obs.interrupted = true;
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            match wait {
                Wait::Test => {
                    let secs = opts.timeout.as_secs();
                    watcher.obs.timed_out = Some(secs);
                    eprintln!("ktest: timed out after {secs} s; asking the guest for task stacks (sysrq-t)");
                    if sysrq_over_console(vm_dir, console_writer.as_mut(), 't') {
                        wait = Wait::Sysrq;
                        deadline = now + SYSRQ_GRACE;
                        continue;
                    }
                    break;
                }
                _ => break,
            }
        }
        let step = (deadline - now).min(Duration::from_millis(100));
        let event = match rx.recv_timeout(step) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match event {
            Event::Console(line) => {
                let _ = writeln!(log, "{line}");
                match watcher.line(&line) {
                    Line::End(_) => {
                        end_seen = true;
                        if watcher.obs.status.is_some() {
                            break;
                        }
                    }
                    Line::Crash if wait != Wait::Crash => {
                        wait = Wait::Crash;
                        deadline = Instant::now() + CRASH_GRACE;
                    }
                    Line::Success | Line::Failed if wait == Wait::Test => {
                        wait = Wait::Sentinel;
                        deadline = Instant::now() + SENTINEL_GRACE;
                    }
                    Line::GuestError(_) => {
                        wait = Wait::Drain;
                        deadline = Instant::now() + DRAIN_GRACE;
                    }
                    _ => {}
                }
            }
            Event::Result(code) => {
                watcher.obs.status = Some(code);
                if end_seen {
                    break;
                }
                if wait != Wait::Crash {
                    wait = Wait::Drain;
                    deadline = Instant::now() + DRAIN_GRACE;
                }
            }
            Event::QemuExit(status) => {
                qemu.exited = true;
                watcher.obs.qemu_exit = Some(describe(status));
                break;
            }
            Event::QemuStderr(s) => watcher.qemu_stderr.push_str(&s),
        }
    }

    stop(&mut qemu, &rx, &mut watcher, &mut log);
    if watcher.obs.crash.is_some() {
        watcher.show_context();
    }
    if let Some(exit) = &watcher.obs.qemu_exit {
        if !watcher.obs.started && watcher.obs.crash.is_none() {
            let err = watcher.qemu_stderr.trim();
            watcher.obs.qemu_exit = Some(if err.is_empty() {
                exit.clone()
            } else {
                format!("{exit}:\n  {}", err.replace('\n', "\n  "))
            });
            watcher.show_context();
        }
    }
    if opts.verbose && !watcher.qemu_stderr.trim().is_empty() {
        eprintln!("ktest: qemu said: {}", watcher.qemu_stderr.trim());
    }
    Ok(watcher.obs)
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (_, Some(s)) => format!("was killed by signal {s}"),
        _ => "exited".into(),
    }
}

/// Stops qemu (SIGTERM, then SIGKILL) and drains what the console still
/// had to say.
fn stop(qemu: &mut Qemu, rx: &Receiver<Event>, watcher: &mut Watcher, log: &mut std::fs::File) {
    if !qemu.exited {
        let _ = kill(qemu.pid, Signal::SIGTERM);
    }
    let start = Instant::now();
    let mut killed = false;
    loop {
        let limit = if qemu.exited {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(5)
        };
        if start.elapsed() > limit {
            if qemu.exited {
                return;
            }
            if !killed {
                let _ = kill(qemu.pid, Signal::SIGKILL);
                killed = true;
            }
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Event::Console(line)) => {
                let _ = writeln!(log, "{line}");
                watcher.line(&line);
            }
            Ok(Event::QemuExit(_)) => qemu.exited = true,
            Ok(Event::QemuStderr(s)) => watcher.qemu_stderr.push_str(&s),
            Ok(Event::Result(code)) => {
                watcher.obs.status.get_or_insert(code);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Console bookkeeping: display, context for crash reports, observations.
struct Watcher {
    obs: Observed,
    recent: VecDeque<String>,
    verbose: bool,
    shown_context: bool,
    qemu_stderr: String,
}

impl Watcher {
    fn shown(&self) -> bool {
        self.verbose || self.obs.started
    }

    fn line(&mut self, line: &str) -> Line {
        let kind = console::classify(line);
        match &kind {
            Line::Start => self.obs.started = true,
            Line::Success => self.obs.said_success = true,
            Line::Failed => self.obs.said_failed = true,
            Line::Crash => {
                self.obs.crash.get_or_insert_with(|| line.to_string());
            }
            Line::GuestError(e) => {
                self.obs.guest_error.get_or_insert_with(|| e.clone());
            }
            _ => {}
        }
        if self.shown() && !matches!(kind, Line::Start | Line::End(_)) {
            println!("{line}");
        }
        if self.recent.len() == CONTEXT_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(line.to_string());
        kind
    }

    /// Prints the console lines the user has not seen, for a crash or a
    /// failure before the test started.
    fn show_context(&mut self) {
        if self.shown() || self.shown_context {
            return;
        }
        self.shown_context = true;
        eprintln!("ktest: last console lines:");
        for l in &self.recent {
            eprintln!("  {l}");
        }
    }
}
