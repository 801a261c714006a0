//! The user's terminal in interactive sessions (`ktest boot`, `run -I`,
//! `mon`): raw mode that is always undone, and the Ctrl-A escape keys.
//!
//! Keystrokes go to the guest (or the monitor) unchanged, Ctrl-C included,
//! so ktest needs its own way out: Ctrl-A followed by a command key, as in
//! qemu's `-nographic` and screen.

use nix::sys::termios::{self, LocalFlags, OutputFlags, SetArg, Termios};
use std::io::{IsTerminal, Read};

/// The escape key: Ctrl-A.
pub const ESCAPE: u8 = 0x01;

/// What a keystroke asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// Bytes for the other end.
    Send(Vec<u8>),
    /// Ctrl-A X: leave the session.
    Quit,
    /// Ctrl-A B: send a serial break (the next key is then a sysrq key).
    Break,
    /// Ctrl-A H: show the escape keys.
    Help,
}

/// The escape keys, for the help line and docs.
pub const HELP: &str =
    "Ctrl-A X quit | Ctrl-A B break (then a key: sysrq) | Ctrl-A Ctrl-A send Ctrl-A | Ctrl-A H help";

/// Splits keyboard input into bytes to forward and escape commands. Pure:
/// the escape may straddle two reads.
#[derive(Debug, Default)]
pub struct Escape {
    pending: bool,
}

impl Escape {
    /// Interprets one read of input.
    pub fn feed(&mut self, input: &[u8]) -> Vec<Key> {
        let mut keys = Vec::new();
        let mut plain = Vec::new();
        for &b in input {
            if self.pending {
                self.pending = false;
                let command = match b {
                    b'x' | b'X' | 0x18 => Some(Key::Quit),
                    b'b' | b'B' | 0x02 => Some(Key::Break),
                    b'h' | b'H' | b'?' | 0x08 => Some(Key::Help),
                    ESCAPE | b'a' | b'A' => {
                        plain.push(ESCAPE);
                        None
                    }
                    // Not a command: both keys go through, so programs that
                    // use Ctrl-A themselves still get it.
                    other => {
                        plain.extend([ESCAPE, other]);
                        None
                    }
                };
                if let Some(k) = command {
                    if !plain.is_empty() {
                        keys.push(Key::Send(std::mem::take(&mut plain)));
                    }
                    keys.push(k);
                }
            } else if b == ESCAPE {
                self.pending = true;
            } else {
                plain.push(b);
            }
        }
        if !plain.is_empty() {
            keys.push(Key::Send(plain));
        }
        keys
    }
}

/// Reads `from` chunk by chunk and hands each chunk to `send` until the
/// input ends, fails, or `send` returns false (its receiver is gone). For
/// the threads that feed a session's event loop.
pub fn pump(mut from: impl Read, mut send: impl FnMut(Vec<u8>) -> bool) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        if !send(buf[..n].to_vec()) {
            return;
        }
    }
}

/// The terminal on stdin in raw mode; dropping it restores the settings,
/// on every way out of the session (return, error, panic unwinding).
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts stdin's terminal in raw mode, or returns `None` if stdin is not
    /// a terminal (a script or a test feeding input: nothing to change).
    pub fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        // Keep output processing so ktest's own messages still start at
        // the left margin; the guest's "\r\n" is unaffected.
        raw.output_flags |= OutputFlags::OPOST | OutputFlags::ONLCR;
        raw.local_flags &= !LocalFlags::ISIG;
        termios::tcsetattr(&stdin, SetArg::TCSADRAIN, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// The terminal's size as (rows, columns), if stdout is a terminal.
pub fn size() -> Option<(u16, u16)> {
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the pointed-to struct.
    let r = unsafe {
        nix::libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&stdout),
            nix::libc::TIOCGWINSZ,
            &mut ws,
        )
    };
    (r == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(b: &[u8]) -> Key {
        Key::Send(b.to_vec())
    }

    #[test]
    fn plain_input_passes_through() {
        let mut e = Escape::default();
        assert_eq!(e.feed(b"ls -l\r\x03"), vec![send(b"ls -l\r\x03")]);
        assert_eq!(e.feed(b""), vec![]);
    }

    #[test]
    fn ctrl_a_x_quits_even_across_reads() {
        let mut e = Escape::default();
        assert_eq!(e.feed(b"ab\x01"), vec![send(b"ab")]);
        assert_eq!(e.feed(b"x"), vec![Key::Quit]);
        let mut e = Escape::default();
        assert_eq!(e.feed(b"q\x01Xz"), vec![send(b"q"), Key::Quit, send(b"z")]);
    }

    #[test]
    fn other_commands() {
        let mut e = Escape::default();
        assert_eq!(e.feed(b"\x01b"), vec![Key::Break]);
        assert_eq!(e.feed(b"\x01h"), vec![Key::Help]);
        assert_eq!(e.feed(b"\x01\x01"), vec![send(b"\x01")]);
        assert_eq!(e.feed(b"\x01a"), vec![send(b"\x01")]);
        // Ctrl-A then an ordinary key: both go to the guest.
        assert_eq!(e.feed(b"\x01e"), vec![send(b"\x01e")]);
    }
}
