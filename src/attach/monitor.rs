//! `ktest mon` (qemu's human monitor, interactively or one command) and
//! `ktest sysrq` (alt-sysrq-KEY on the guest's keyboard).

use super::{console_log, current_vm};
use crate::error::{Code, Error, Result};
use crate::plan::names;
use crate::terminal::{self, Escape, Key, RawMode};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::Duration;

/// After the user's input ends (a pipe), how long to wait for qemu to stop
/// answering before leaving.
const QUIET: Duration = Duration::from_millis(500);

/// `ktest mon [-c COMMAND]`.
pub fn mon(db: &Path, vm: Option<&str>, command: Option<String>) -> Result<Code> {
    let vm = current_vm(db, vm)?;
    if let Some(c) = command {
        let answer = crate::qmp::hmp(&vm.vm_dir, &c).map_err(|e| {
            Error::infra(format!(
                "the monitor of the VM from {} did not answer: {e}",
                vm.dir.display()
            ))
        })?;
        crate::out!("{}", answer.replace("\r\n", "\n"));
        let _ = std::io::stdout().flush();
        return Ok(Code::Passed);
    }
    let stream = crate::sock::connect(&vm.vm_dir, names::MONITOR).map_err(|e| {
        Error::infra(format!(
            "cannot connect to the monitor of the VM from {}: {e}",
            vm.dir.display()
        ))
    })?;
    crate::errln!(
        "ktest: qemu monitor of the VM from {} (Ctrl-A X detaches and leaves the VM running; the monitor's quit stops it)",
        vm.dir.display()
    );
    relay(stream)
}

enum Event {
    Input(Vec<u8>),
    InputEnd,
    Output(Vec<u8>),
    OutputEnd,
}

/// Connects the terminal to the monitor socket until the user detaches,
/// qemu goes away, or piped input ends and qemu has answered it.
fn relay(stream: UnixStream) -> Result<Code> {
    let mut writer = stream
        .try_clone()
        .map_err(|e| Error::infra(format!("monitor socket: {e}")))?;
    let (tx, rx) = channel();
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            terminal::pump(stream, |b| tx.send(Event::Output(b)).is_ok());
            let _ = tx.send(Event::OutputEnd);
        });
    }
    std::thread::spawn(move || {
        terminal::pump(std::io::stdin(), |b| tx.send(Event::Input(b)).is_ok());
        let _ = tx.send(Event::InputEnd);
    });
    // Raw, so qemu's own line editing and history see every key.
    let raw = RawMode::enter();
    let mut escape = Escape::default();
    let mut input_done = false;
    let mut out = std::io::stdout();
    loop {
        let event = if input_done {
            match rx.recv_timeout(QUIET) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(e) => e,
                Err(_) => break,
            }
        };
        match event {
            Event::Output(b) => {
                let _ = out.write_all(&b);
                let _ = out.flush();
            }
            Event::OutputEnd => break,
            Event::InputEnd => input_done = true,
            Event::Input(b) => {
                for key in escape.feed(&b) {
                    match key {
                        Key::Send(bytes) => {
                            if writer.write_all(&bytes).is_err() {
                                input_done = true;
                            }
                        }
                        Key::Quit => {
                            drop(raw);
                            crate::errln!();
                            return Ok(Code::Passed);
                        }
                        Key::Help => {
                            crate::err!(
                                "\r\nktest: Ctrl-A X detach | Ctrl-A Ctrl-A send Ctrl-A\r\n"
                            )
                        }
                        // A serial break means nothing to the monitor.
                        Key::Break => {}
                    }
                }
            }
        }
    }
    drop(raw);
    crate::errln!();
    Ok(Code::Passed)
}

/// The qemu key name for sysrq KEY, or why KEY is not one.
pub fn sysrq_key(key: &str) -> std::result::Result<String, String> {
    let mut chars = key.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_alphanumeric() => {
            Ok(format!("alt-sysrq-{}", c.to_ascii_lowercase()))
        }
        _ => Err(format!(
            "{key:?} is not a sysrq key: give one letter or digit (h lists them in the console)"
        )),
    }
}

/// `ktest sysrq KEY`: presses alt-sysrq-KEY on the guest's keyboard.
pub fn sysrq(db: &Path, vm: Option<&str>, key: String) -> Result<Code> {
    let keys = sysrq_key(&key).map_err(Error::usage)?;
    let vm = current_vm(db, vm)?;
    crate::qmp::hmp(&vm.vm_dir, &format!("sendkey {keys}")).map_err(|e| {
        Error::infra(format!(
            "cannot send {keys} to the VM from {}: {e}",
            vm.dir.display()
        ))
    })?;
    let whence = console_log(&vm)
        .map(|l| format!("; the kernel answers on its console ({})", l.display()))
        .unwrap_or_default();
    crate::errln!("ktest: sent {keys}{whence}");
    Ok(Code::Passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysrq_keys() {
        assert_eq!(sysrq_key("h").unwrap(), "alt-sysrq-h");
        assert_eq!(sysrq_key("T").unwrap(), "alt-sysrq-t");
        assert_eq!(sysrq_key("7").unwrap(), "alt-sysrq-7");
        for bad in ["", "ht", "-", "é"] {
            assert!(sysrq_key(bad).is_err(), "{bad:?}");
        }
    }
}
