//! The one-line build progress display on a terminal: elapsed time and the
//! file kbuild is working on, redrawn in place.

use std::io::Write;
use std::time::{Duration, Instant};

/// Redraws at most this often: make prints thousands of lines a minute and
/// a terminal need not show each.
const REDRAW: Duration = Duration::from_millis(100);

/// A status line on stderr, redrawn in place.
pub struct ProgressLine {
    label: String,
    start: Instant,
    last_draw: Option<Instant>,
    width: usize,
    drawn: bool,
}

/// The terminal's width in columns, or 80.
fn terminal_width() -> usize {
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ only writes a winsize into the struct passed.
    let r = unsafe { nix::libc::ioctl(2, nix::libc::TIOCGWINSZ, &mut ws) };
    if r == 0 && ws.ws_col > 0 {
        usize::from(ws.ws_col)
    } else {
        80
    }
}

/// `text` cut to `width` characters.
pub fn fit(text: &str, width: usize) -> String {
    text.chars().take(width).collect()
}

impl ProgressLine {
    /// A line prefixed with `label` (e.g. "building").
    pub fn new(label: &str) -> ProgressLine {
        ProgressLine {
            label: label.to_string(),
            start: Instant::now(),
            last_draw: None,
            width: terminal_width().saturating_sub(1),
            drawn: false,
        }
    }

    /// Shows `status` unless the line was redrawn very recently.
    pub fn update(&mut self, status: &str) {
        let now = Instant::now();
        if self.last_draw.is_some_and(|t| now - t < REDRAW) {
            return;
        }
        self.last_draw = Some(now);
        let text = format!(
            "ktest: {} [{:>3} s] {}",
            self.label,
            self.start.elapsed().as_secs(),
            status.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{}", fit(&text, self.width));
        let _ = err.flush();
        self.drawn = true;
    }

    /// Erases the line so the next message starts clean.
    pub fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_the_terminal() {
        assert_eq!(fit("abcdef", 3), "abc");
        assert_eq!(fit("ab", 3), "ab");
        assert_eq!(fit("ééé", 2), "éé");
    }
}
