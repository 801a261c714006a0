//! The command line.

use crate::accel::Choice;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const EXIT_CODES: &str = "\
Exit codes:
  0    the test passed
  1    the test failed (non-zero exit status or TEST FAILED)
  2    usage or test declaration error (nothing was started)
  3    the kernel panicked, oopsed or hit a BUG, or the VM died without a verdict
  4    the test timed out
  5    infrastructure error (qemu missing, kernel unreadable, state database)
  6    the kernel build failed
  130  interrupted (Ctrl-C, SIGTERM); the VM and its files were removed";

/// Build a Linux kernel, boot it in qemu, run a test inside, report the verdict.
#[derive(Debug, Parser)]
#[command(name = "ktest", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The state database (VMs, network slots, scratch files).
    #[arg(long, global = true, env = crate::state::DB_ENV, value_name = "PATH")]
    pub db: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// ktest's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a kernel and run a test script inside the VM.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// List the VMs this user has running.
    Status,
}

/// Options of `ktest run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The kernel: a bzImage/vmlinuz file, or a directory holding
    /// arch/x86/boot/bzImage, boot/vmlinuz or vmlinuz.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,

    /// Time limit in seconds (default: the test's TIMEOUT, else 600).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,

    /// Accelerator: KVM only if a probe shows it runs guests (auto), or forced.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: Choice,

    /// Override the test's MEM (e.g. 1G).
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<String>,

    /// Override the number of virtual CPUs (default: the test's CPUS, else 2).
    #[arg(long, value_name = "N")]
    pub cpus: Option<u32>,

    /// Print the qemu and kernel command lines; boot nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Show the whole boot log, not only the test's output.
    #[arg(short, long)]
    pub verbose: bool,

    /// The test script.
    pub test: PathBuf,

    /// Arguments passed to the test in the VM (after --).
    #[arg(last = true)]
    pub args: Vec<String>,
}
