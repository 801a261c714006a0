//! The build log: every command's output, kept next to the image so it
//! survives the removal of the work directory.

use std::path::{Path, PathBuf};

/// How many lines of the log to show when a command fails.
pub const TAIL_LINES: usize = 20;

/// Where the log of building or updating `image` is kept.
pub fn kept_log_path(image: &Path, suffix: &str) -> PathBuf {
    let mut name = image.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Prints the end of the log at `path` to stderr, indented, so a failure
/// can be understood without opening the file.
pub fn print_tail(path: &Path) {
    let Ok(bytes) = std::fs::read(path) else {
        return;
    };
    let text = String::from_utf8_lossy(&bytes);
    errln!("last lines of {}:", path.display());
    for line in tail(&text, TAIL_LINES) {
        errln!("  | {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_takes_the_end() {
        assert_eq!(tail("a\nb\nc\n", 2), ["b", "c"]);
        assert_eq!(tail("a\nb", 5), ["a", "b"]);
        assert!(tail("", 3).is_empty());
    }

    #[test]
    fn log_sits_next_to_the_image() {
        assert_eq!(
            kept_log_path(Path::new("/var/lib/ktest/root.img"), ".log"),
            Path::new("/var/lib/ktest/root.img.log")
        );
    }
}
