//! Running qemu and watching it: console, verdict port, time limit,
//! signals. Ends with qemu stopped and an `Observed` record of what happened.
//!
//! Readers run on threads and send events over one channel; the loop here is
//! the only place that decides anything.
//!
//! Three streams come from the guest and never mix: the serial console (the
//! kernel's messages and the guest init's markers: crashes are detected
//! here only), the test's stdout and stderr on their own virtio-serial port
//! (the `TEST SUCCESS`/`TEST FAILED` sentinels are read here only), and the
//! result port (the exit status). On the terminal and in the log the first
//! two are interleaved in the order they arrive.
//!
//! Interactive sessions (`ktest boot`, `ktest run -I`) differ in three ways:
//! the user's keystrokes go to the console, the console is shown byte by
//! byte (a shell prompt has no newline), and the VM stays up after the test
//! until it powers off, the user quits (Ctrl-A X) or ktest is signalled.

use crate::console::{self, Line, ResultMsg};
use crate::error::{Context, Error, Result};
use crate::outcome::Observed;
use crate::plan::{names, VmPlan};
use crate::signals;
use crate::terminal::{self, Escape, Key, RawMode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// How long to keep reading after a crash line, for the backtrace.
const CRASH_GRACE: Duration = Duration::from_secs(3);
/// How long a test that printed a sentinel gets to report its exit status.
const SENTINEL_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for the console to catch up with the verdict port.
const DRAIN_GRACE: Duration = Duration::from_secs(3);
/// How long the guest gets to print task stacks on timeout.
const SYSRQ_GRACE: Duration = Duration::from_secs(3);
/// Console lines kept for crash reports.
const CONTEXT_LINES: usize = 40;

/// How a run is watched.
pub struct Options {
    /// Time limit for each subtest, from its start (and for the boot, up to
    /// the first); `None` for none (a person is driving an interactive
    /// session).
    pub timeout: Option<Duration>,
    /// Set by the runner to stop the VM early (fail fast).
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Show the boot log, not only the test's part of the console.
    pub verbose: bool,
    /// Where the console log goes.
    pub log: PathBuf,
    /// Whether the user's terminal is attached to the console, and when.
    pub interactive: Option<Interactive>,
    /// The line the guest writes on the output port after the test's
    /// output (`guest::output_end_marker`).
    pub output_end: String,
}

/// When the console becomes the user's terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interactive {
    /// From the start (`ktest boot`: there is no test).
    FromBoot,
    /// Once the test has ended (`ktest run -I`). Until then the test's
    /// output is shown as usual and Ctrl-C interrupts the run.
    AfterTest,
}

/// What the supervisor saw, in order, for the runner to judge and the
/// reporters to show. The supervisor itself shows nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEvent {
    /// The VM has its id and slot (launch, before qemu starts): what
    /// `ktest status` shows and `ktest ssh --vm ID` takes.
    Allocated { id: String },
    /// A complete console line; `shown` when the user should see it live
    /// (the test is running, or `-v`).
    Console { line: String, shown: bool },
    /// A line of the test's output (the markers taken out).
    Output { line: String, shown: bool },
    /// The guest init's mark in the test's output: a subtest begins or ends.
    OutputMark(Mark),
    /// A message on the result port.
    Result(ResultMsg),
    /// Bytes for the user's terminal as they are (interactive sessions).
    Raw(Vec<u8>),
    /// ktest's remark for the user.
    Note(String),
    /// The console lines the user has not seen, after a crash or a failure
    /// before the test started.
    Context(Vec<String>),
}

/// A subtest boundary in the test's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// The named subtest starts.
    Begin(String),
    /// The named subtest ended.
    End(String),
}

enum Event {
    /// Bytes from the serial console, as they came.
    Console(Vec<u8>),
    /// Bytes of the test's stdout and stderr, as they came.
    Output(Vec<u8>),
    /// Bytes the user typed (interactive sessions).
    Input(Vec<u8>),
    Result(ResultMsg),
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
    crate::process_group::own_group_dying_with_ktest(&mut cmd, Signal::SIGKILL);
    crate::process_group::spawn(&mut cmd).map_err(|e| {
        Error::infra(format!(
            "cannot start {}: {e}\n  install qemu (Debian: apt-get install qemu-system-x86)",
            plan.program.display()
        ))
    })
}

fn read_console(listener: UnixListener, tx: Sender<Event>, writer_slot: Sender<UnixStream>) {
    let Ok((stream, _)) = listener.accept() else {
        return;
    };
    if let Ok(w) = stream.try_clone() {
        let _ = writer_slot.send(w);
    }
    terminal::pump(stream, |b| tx.send(Event::Console(b)).is_ok());
}

/// Forwards the test's output to the loop.
fn read_output(listener: UnixListener, tx: Sender<Event>) {
    let Ok((stream, _)) = listener.accept() else {
        return;
    };
    terminal::pump(stream, |b| tx.send(Event::Output(b)).is_ok());
}

/// Forwards what the user types to the loop, until stdin ends.
fn read_input(tx: Sender<Event>) {
    terminal::pump(std::io::stdin(), |b| tx.send(Event::Input(b)).is_ok());
}

/// The longest line ktest keeps whole; longer ones are cut.
const LINE_MAX: usize = 64 << 10;

/// Reassembles console lines from the chunks the console socket delivers.
#[derive(Debug, Default)]
struct LineBuf {
    partial: Vec<u8>,
}

impl LineBuf {
    /// Consumes `bytes` up to and including the first newline and returns
    /// the completed line without its line ending; without a newline,
    /// keeps everything for later and returns `None`.
    fn next_line(&mut self, bytes: &mut &[u8]) -> Option<String> {
        match bytes.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.partial.extend_from_slice(&bytes[..i]);
                *bytes = &bytes[i + 1..];
                let line = String::from_utf8_lossy(&self.partial)
                    .trim_end_matches('\r')
                    .to_string();
                self.partial.clear();
                Some(line)
            }
            None if self.partial.len() + bytes.len() > LINE_MAX => {
                // A guest that never ends its line must not grow ktest
                // without bound: what there is becomes a line.
                let take = LINE_MAX.saturating_sub(self.partial.len()).min(bytes.len());
                self.partial.extend_from_slice(&bytes[..take]);
                *bytes = &bytes[take..];
                let line = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                Some(line)
            }
            None => {
                self.partial.extend_from_slice(bytes);
                *bytes = &[];
                None
            }
        }
    }
}

fn read_result(listener: UnixListener, tx: Sender<Event>) {
    let Ok((stream, _)) = listener.accept() else {
        return;
    };
    let mut lines = LineBuf::default();
    terminal::pump(stream, |bytes| {
        let mut rest = bytes.as_slice();
        while let Some(line) = lines.next_line(&mut rest) {
            if let Some(msg) = console::parse_result(&line) {
                if tx.send(Event::Result(msg)).is_err() {
                    return false;
                }
            }
        }
        true
    });
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

/// How often the loop looks at signals when nothing happens.
const POLL: Duration = Duration::from_millis(100);

/// Boots the plan and watches it to the end. qemu is stopped when this
/// returns, on every path; an interactive session's terminal is restored.
pub fn run(
    plan: &VmPlan,
    vm_dir: &Path,
    opts: &Options,
    on_spawn: impl FnOnce(u32),
    sink: &mut dyn FnMut(VmEvent),
) -> Result<Observed> {
    let console_listener = crate::sock::bind(vm_dir, names::CONSOLE)
        .context(|| format!("listening on {}/{}", vm_dir.display(), names::CONSOLE))?;
    let result_listener = crate::sock::bind(vm_dir, names::RESULT)
        .context(|| format!("listening on {}/{}", vm_dir.display(), names::RESULT))?;
    let output_listener = crate::sock::bind(vm_dir, names::OUTPUT)
        .context(|| format!("listening on {}/{}", vm_dir.display(), names::OUTPUT))?;
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
    {
        let tx = tx.clone();
        std::thread::spawn(move || read_output(output_listener, tx));
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
    if opts.interactive.is_some() {
        let tx = tx.clone();
        std::thread::spawn(move || read_input(tx));
    }
    drop(tx);
    let mut watcher = Watcher {
        sink,
        current: None,
        obs: Observed::default(),
        recent: VecDeque::new(),
        verbose: opts.verbose,
        shown_context: false,
        qemu_stderr: String::new(),
        lines: LineBuf::default(),
        output: LineBuf::default(),
        output_end: opts.output_end.clone(),
        output_done: false,
        raw: false,
        ended: false,
    };
    let start = Instant::now();
    let mut wait = Wait::Test;
    let mut deadline = opts.timeout.map(|t| start + t);
    // Each subtest gets the whole time limit from its start.
    let mut since = start;
    let mut console_writer: Option<UnixStream> = None;
    let mut end_seen = false;
    let mut escape = Escape::default();
    // Keystrokes typed before qemu connected the console.
    let mut typed: Vec<u8> = Vec::new();
    // Restores the terminal when dropped, however this function is left.
    let mut raw_mode: Option<RawMode> = None;
    let boot = opts.interactive == Some(Interactive::FromBoot);
    if boot {
        watcher.raw = true;
        raw_mode = RawMode::enter();
        watcher.note(format!(
            "booting; the console is yours ({})",
            terminal::HELP
        ));
    }

    'events: loop {
        if console_writer.is_none() {
            console_writer = wrx.try_recv().ok();
        }
        if let (Some(w), false) = (console_writer.as_mut(), typed.is_empty()) {
            let _ = w.write_all(&typed);
            typed.clear();
        }
        if opts.stop.load(std::sync::atomic::Ordering::SeqCst) {
            watcher.obs.stopped = true;
            break;
        }
        if signals::interrupted() {
            // Once an interactive test has ended, stopping the VM is how the
            // session normally ends: the verdict stays the test's.
            watcher.obs.interrupted = !(opts.interactive.is_some() && end_seen);
            break;
        }
        let now = Instant::now();
        if let Some(d) = deadline.filter(|d| now >= *d) {
            match wait {
                Wait::Test => {
                    let secs = (d - since).as_secs();
                    watcher.obs.timed_out = Some(secs);
                    let what = match &watcher.current {
                        Some(name) => format!("subtest {name}"),
                        None => "the test".into(),
                    };
                    watcher.note(format!("{what} timed out after {secs} s; asking the guest for task stacks (sysrq-t)"));
                    if sysrq_over_console(vm_dir, console_writer.as_mut(), 't') {
                        wait = Wait::Sysrq;
                        deadline = Some(now + SYSRQ_GRACE);
                        continue;
                    }
                    break;
                }
                _ => break,
            }
        }
        let step = deadline.map_or(POLL, |d| (d - now).min(POLL));
        let event = match rx.recv_timeout(step) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match event {
            Event::Console(bytes) => {
                if boot {
                    // The guest is running: a later qemu exit is not a
                    // failure to start.
                    watcher.obs.started = true;
                }
                let mut rest = bytes.as_slice();
                while let Some(kind) = watcher.next_line(&mut rest, &mut log) {
                    match kind {
                        Line::End(_) => {
                            end_seen = true;
                            match opts.interactive {
                                Some(Interactive::AfterTest) if !watcher.raw => {
                                    watcher.raw = true;
                                    raw_mode = RawMode::enter();
                                    watcher.note(format!(
                                        "the test ended; the VM stays up with a shell on its console ({})",
                                        terminal::HELP
                                    ));
                                }
                                None if watcher.complete() => break 'events,
                                _ => {}
                            }
                        }
                        Line::Crash if wait != Wait::Crash => {
                            wait = Wait::Crash;
                            deadline = Some(Instant::now() + CRASH_GRACE);
                        }
                        Line::GuestError(_) => {
                            wait = Wait::Drain;
                            deadline = Some(Instant::now() + DRAIN_GRACE);
                        }
                        _ => {}
                    }
                }
            }
            Event::Output(bytes) => {
                let mut rest = bytes.as_slice();
                while let Some(sentinel) = watcher.next_output_line(&mut rest, &mut log) {
                    if opts.interactive.is_none() && wait == Wait::Test && sentinel.is_some() {
                        // An interactive VM stays up however the test ends.
                        wait = Wait::Sentinel;
                        deadline = Some(Instant::now() + SENTINEL_GRACE);
                    }
                }
                if opts.interactive.is_none() && end_seen && watcher.complete() {
                    break;
                }
            }
            Event::Input(bytes) => {
                for key in escape.feed(&bytes) {
                    match key {
                        Key::Send(b) => match console_writer.as_mut() {
                            Some(w) => {
                                let _ = w.write_all(&b);
                            }
                            None => typed.extend(b),
                        },
                        Key::Quit => {
                            watcher.obs.interrupted = !end_seen;
                            break 'events;
                        }
                        Key::Break => {
                            let _ = crate::qmp::execute(
                                vm_dir,
                                "chardev-send-break",
                                serde_json::json!({"id": "con"}),
                            );
                        }
                        Key::Help => watcher
                            .raw_bytes(format!("\r\nktest: {}\r\n", terminal::HELP).into_bytes()),
                    }
                }
            }
            Event::Result(msg) => {
                let now = Instant::now();
                match &msg {
                    ResultMsg::Begin { name, .. } => {
                        watcher.current = Some(name.clone());
                        if wait == Wait::Test {
                            since = now;
                            deadline = opts.timeout.map(|t| now + t);
                        }
                    }
                    ResultMsg::End { .. } => {
                        watcher.current = None;
                        if wait == Wait::Sentinel {
                            // The subtest that printed it ended after all.
                            wait = Wait::Test;
                            since = now;
                            deadline = opts.timeout.map(|t| now + t);
                        }
                    }
                    ResultMsg::Done => watcher.obs.done = true,
                    _ => {}
                }
                (watcher.sink)(VmEvent::Result(msg));
                if watcher.obs.done && opts.interactive.is_none() {
                    if end_seen && watcher.complete() {
                        break;
                    }
                    if wait != Wait::Crash {
                        wait = Wait::Drain;
                        deadline = Some(now + DRAIN_GRACE);
                    }
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
    if raw_mode.take().is_some() {
        // The guest may have left the cursor mid-line.
        watcher.raw_bytes(b"\r\n".to_vec());
    }
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
        let said = format!("qemu said: {}", watcher.qemu_stderr.trim());
        watcher.note(said);
    }
    Ok(watcher.obs)
}

/// What the guest init's marker in the test's output says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OutputMark {
    /// A subtest boundary.
    Subtest(Mark),
    /// The end of all output.
    Done,
}

/// Splits an output line into the test's text before the run's marker
/// (the marker may end a line the test did not finish) and what the
/// marker says. A line without the marker is all text.
fn split_output_mark<'l>(line: &'l str, marker: &str) -> (Option<&'l str>, Option<OutputMark>) {
    let Some(at) = line.find(marker) else {
        return (Some(line), None);
    };
    let text = Some(&line[..at]).filter(|t| !t.is_empty());
    let rest = line[at + marker.len()..].trim();
    let mark = if rest.is_empty() {
        Some(OutputMark::Done)
    } else if let Some(name) = rest.strip_prefix("begin ") {
        Some(OutputMark::Subtest(Mark::Begin(name.trim().to_string())))
    } else {
        rest.strip_prefix("end ")
            .map(|name| OutputMark::Subtest(Mark::End(name.trim().to_string())))
    };
    (text, mark)
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
fn stop(qemu: &mut Qemu, rx: &Receiver<Event>, watcher: &mut Watcher<'_>, log: &mut std::fs::File) {
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
            Ok(Event::Console(bytes)) => {
                let mut rest = bytes.as_slice();
                while watcher.next_line(&mut rest, log).is_some() {}
            }
            Ok(Event::Output(bytes)) => {
                let mut rest = bytes.as_slice();
                while watcher.next_output_line(&mut rest, log).is_some() {}
            }
            Ok(Event::QemuExit(_)) => qemu.exited = true,
            Ok(Event::Input(_)) => {}
            Ok(Event::QemuStderr(s)) => watcher.qemu_stderr.push_str(&s),
            Ok(Event::Result(msg)) => {
                if msg == ResultMsg::Done {
                    watcher.obs.done = true;
                }
                (watcher.sink)(VmEvent::Result(msg));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Console bookkeeping: what to show, context for crash reports,
/// observations; everything goes out through `sink`.
struct Watcher<'a> {
    sink: &'a mut dyn FnMut(VmEvent),
    /// The subtest running, from the result port.
    current: Option<String>,
    obs: Observed,
    recent: VecDeque<String>,
    verbose: bool,
    shown_context: bool,
    qemu_stderr: String,
    /// Console lines being reassembled.
    lines: LineBuf,
    /// The test's output lines being reassembled.
    output: LineBuf,
    /// The line that ends the test's output.
    output_end: String,
    /// The guest said the test's output is complete.
    output_done: bool,
    /// The console goes to the user's terminal byte for byte (interactive
    /// sessions), instead of line by line from the test's start.
    raw: bool,
    /// The test ended: what follows (the guest going down) is only logged.
    ended: bool,
}

impl Watcher<'_> {
    fn note(&mut self, text: String) {
        (self.sink)(VmEvent::Note(text));
    }

    fn raw_bytes(&mut self, bytes: Vec<u8>) {
        (self.sink)(VmEvent::Raw(bytes));
    }

    fn shown(&self) -> bool {
        self.verbose || (self.obs.started && !self.ended)
    }

    /// Every subtest ran, and all of the output came: the run can end
    /// once the console has shown the end marker too.
    fn complete(&self) -> bool {
        self.obs.done && self.output_done
    }

    /// Takes the next complete line of the test's output out of `bytes`,
    /// logs and shows it; `None` once `bytes` holds no more newlines.
    /// Returns the compatibility sentinel the line is, if any.
    fn next_output_line(
        &mut self,
        bytes: &mut &[u8],
        log: &mut std::fs::File,
    ) -> Option<Option<console::Sentinel>> {
        let line = self.output.next_line(bytes)?;
        let (text, mark) = split_output_mark(&line, &self.output_end);
        // The text came before the mark: it is the ending subtest's.
        let sentinel = text.map(|line| {
            let line = line.to_string();
            let _ = writeln!(log, "{line}");
            let shown = !self.raw;
            if self.raw {
                self.raw_bytes(format!("{line}\r\n").into_bytes());
            }
            let sentinel = console::sentinel(&line);
            (self.sink)(VmEvent::Output { line, shown });
            sentinel
        });
        match mark {
            Some(OutputMark::Done) => self.output_done = true,
            Some(OutputMark::Subtest(m)) => (self.sink)(VmEvent::OutputMark(m)),
            None => {}
        }
        Some(sentinel.flatten())
    }

    /// Takes the next complete console line out of `bytes`, logs and
    /// classifies it; `None` once `bytes` holds no more newlines (the rest
    /// waits for the next chunk). In raw mode the bytes are echoed as
    /// they are consumed, so prompts show before their line ends.
    fn next_line(&mut self, bytes: &mut &[u8], log: &mut std::fs::File) -> Option<Line> {
        let before = *bytes;
        let line = self.lines.next_line(bytes);
        if self.raw {
            let echoed = before[..before.len() - bytes.len()].to_vec();
            self.raw_bytes(echoed);
        }
        let line = line?;
        let _ = writeln!(log, "{line}");
        Some(self.line(&line))
    }

    fn line(&mut self, line: &str) -> Line {
        let kind = console::classify(line);
        match &kind {
            Line::Start => self.obs.started = true,
            Line::End(_) => self.ended = true,
            Line::Crash => {
                self.obs.crash.get_or_insert_with(|| line.to_string());
            }
            Line::GuestError(e) => {
                self.obs.guest_error.get_or_insert_with(|| e.clone());
            }
            _ => {}
        }
        let shown = !self.raw
            && self.shown()
            && !matches!(
                kind,
                Line::Start | Line::End(_) | Line::SubtestBegin(_) | Line::SubtestEnd(_)
            );
        (self.sink)(VmEvent::Console {
            line: line.to_string(),
            shown,
        });
        if self.recent.len() == CONTEXT_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(line.to_string());
        kind
    }

    /// Prints the console lines the user has not seen, for a crash or a
    /// failure before the test started.
    fn show_context(&mut self) {
        if self.shown() || self.shown_context || self.recent.is_empty() {
            return;
        }
        self.shown_context = true;
        let lines = self.recent.iter().cloned().collect();
        (self.sink)(VmEvent::Context(lines));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_marks_are_cut_out_of_the_output() {
        let m = "ktest-output-end 00ff";
        assert_eq!(split_output_mark("hello", m), (Some("hello"), None));
        assert_eq!(
            split_output_mark("ktest-output-end 00ff begin a.b", m),
            (None, Some(OutputMark::Subtest(Mark::Begin("a.b".into()))))
        );
        assert_eq!(
            split_output_mark("no newline at the endktest-output-end 00ff end a", m),
            (
                Some("no newline at the end"),
                Some(OutputMark::Subtest(Mark::End("a".into())))
            )
        );
        assert_eq!(split_output_mark(m, m), (None, Some(OutputMark::Done)));
        assert_eq!(
            split_output_mark("ktest-output-end 00fe begin x", m),
            (Some("ktest-output-end 00fe begin x"), None)
        );
    }

    #[test]
    fn endless_lines_are_cut() {
        let mut b = LineBuf::default();
        let big = vec![b'x'; LINE_MAX + 10];
        let mut chunk: &[u8] = &big;
        assert_eq!(b.next_line(&mut chunk).map(|l| l.len()), Some(LINE_MAX));
        assert_eq!(chunk.len(), 10);
    }

    #[test]
    fn lines_are_reassembled_across_chunks() {
        let mut b = LineBuf::default();
        let mut chunk: &[u8] = b"boot\r\nsec";
        assert_eq!(b.next_line(&mut chunk).as_deref(), Some("boot"));
        assert_eq!(chunk, b"sec");
        assert_eq!(b.next_line(&mut chunk), None);
        assert!(chunk.is_empty());
        let mut chunk: &[u8] = b"ond\n# ";
        assert_eq!(b.next_line(&mut chunk).as_deref(), Some("second"));
        assert_eq!(b.next_line(&mut chunk), None);
        let mut chunk: &[u8] = b"\n";
        assert_eq!(b.next_line(&mut chunk).as_deref(), Some("# "));
    }
}
