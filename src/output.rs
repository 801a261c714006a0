//! Writing to stdout and stderr without ever panicking.
//!
//! `crate::outln!` and `crate::errln!` panic when the stream is a closed pipe
//! (`ktest run ... | head -2`), which would lose the verdict and skip the
//! cleanup. Everything ktest prints goes through these macros instead, which
//! drop what cannot be written: the exit code, not the terminal, carries
//! the verdict. The crate denies `clippy::print_stdout`/`print_stderr` so no
//! plain `crate::outln!` creeps back in.

/// Like `crate::outln!`, but a write error (closed pipe) is ignored.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Like `crate::errln!`, but a write error (closed pipe) is ignored.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// Like `eprint!`, but a write error (closed pipe) is ignored.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut e = std::io::stderr().lock();
        let _ = write!(e, $($arg)*);
        let _ = e.flush();
    }};
}

/// Like `print!`, flushed, but a write error (closed pipe) is ignored.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout().lock();
        let _ = write!(o, $($arg)*);
        let _ = o.flush();
    }};
}
