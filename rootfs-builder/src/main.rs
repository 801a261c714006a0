//! `create-vm-image`: builds the Debian root image ktest boots its VMs from.
//!
//! The flow is check everything (`build::prepare`, `update::prepare`), then
//! do the work in a private directory next to the image and rename the
//! result into place. Every failure is an `error::Error`, printed here as
//! one line with its documented exit code.

#![deny(clippy::print_stdout, clippy::print_stderr)]

/// `eprintln!`, but it ignores a closed stderr instead of panicking, so a
/// closed pipe cannot skip the cleanup or change the exit code.
macro_rules! errln {
    ($($arg:tt)*) => {{ use std::io::Write as _; let _ = writeln!(std::io::stderr().lock(), $($arg)*); }};
}

mod build;
mod buildlog;
mod cleanup;
mod cli;
mod configure;
mod debootstrap;
mod debugfs;
mod error;
mod exec;
mod host;
mod image;
mod marker;
mod signals;
mod size;
mod target;
mod update;

use clap::Parser;

use crate::cli::Cli;
use crate::error::{Error, EXIT_BUILD_FAILED, EXIT_OK, EXIT_USAGE};
use crate::signals::Interrupt;
use crate::size::{format_size, mib_ceil};

fn main() {
    // A bug must still end in one line and a documented exit code; the
    // unwinding itself runs the work directory's cleanup.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        errln!("create-vm-image: internal error: {what}{at}; please report this bug");
    }));
    let code = std::panic::catch_unwind(run).unwrap_or(EXIT_BUILD_FAILED);
    std::process::exit(code);
}

fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            return match cli::one_line_error(&err) {
                Some(line) => {
                    errln!("create-vm-image: {line}");
                    EXIT_USAGE
                }
                None => {
                    let _ = err.print();
                    EXIT_OK
                }
            }
        }
    };
    match execute(&cli) {
        Ok(()) => EXIT_OK,
        Err(err) => {
            errln!("create-vm-image: {err}");
            err.exit_code()
        }
    }
}

fn execute(cli: &Cli) -> Result<(), Error> {
    let interrupt = Interrupt::install()?;
    if cli.update {
        let req = update::prepare(cli)?;
        interrupt.check()?;
        let log = update::run(&req, &interrupt)?;
        errln!(
            "done: {} updated (log: {})",
            req.target.display(),
            log.display()
        );
    } else {
        let req = build::prepare(cli)?;
        interrupt.check()?;
        let outcome = build::run(&req, &interrupt)?;
        errln!(
            "done: {} ({} MiB used of {}, {}s; log: {})",
            req.target.display(),
            mib_ceil(outcome.used),
            format_size(req.size),
            outcome.elapsed.as_secs(),
            outcome.log.display()
        );
    }
    Ok(())
}
