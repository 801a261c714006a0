//! ktest: build a Linux kernel, boot it in qemu, run a test script inside
//! the VM, and report what happened.

#![deny(clippy::print_stdout, clippy::print_stderr)]

mod accel;
mod arch;
mod attach;
mod bisect;
mod build;
mod cli;
mod config_file;
mod console;
mod deps;
mod discover;
mod error;
mod git;
mod guest;
mod guest_init;
mod guest_needs;
mod history;
mod host_fit;
mod initramfs;
mod kernel;
#[allow(dead_code)]
mod kernel_log;
#[allow(dead_code)]
mod ktap;
mod launch;
mod modules;
mod outcome;
mod output;
mod plan;
mod prepare;
mod process_group;
mod procinfo;
mod qmp;
mod report;
mod require;
mod results;
mod rootfs;
mod run;
mod runner;
mod schedule;
mod signals;
mod sock;
mod spec;
mod sshkey;
mod state;
mod status;
mod suite;
mod supervise;
mod target;
mod terminal;
mod testlib;
mod values;
mod variant;
mod vmlock;

/// `prereq::require`: a unit test that needs a host tool runs, skips saying
/// so, or under CI fails; one definition for all of ktest's tests.
#[cfg(test)]
#[path = "../tests/common/prereq.rs"]
mod prereq;

use clap::Parser;
use error::Code;

fn main() {
    // The kernel runs ktest as the guest's init when the root is the host's,
    // with an argument only ktest's kernel command line gives. PID 1 alone
    // proves nothing: ktest is also a container's entry point.
    if std::process::id() == 1
        && std::env::args_os().nth(1).as_deref() == Some(plan::names::GUEST_INIT_ARG.as_ref())
    {
        guest_init::main();
    }
    // A bug must not show a user a Rust backtrace and a half-cleaned VM:
    // say what happened and exit with the infrastructure code.
    std::panic::set_hook(Box::new(|info| {
        crate::errln!("ktest: internal error: {info}\n  please report this as a bug");
    }));
    let cli = cli::Cli::parse();
    let code = match std::panic::catch_unwind(|| dispatch(cli)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            crate::errln!("ktest: {e}");
            e.code
        }
        Err(_) => Code::Infra,
    };
    std::process::exit(code.status());
}

fn dispatch(cli: cli::Cli) -> error::Result<Code> {
    // --db and KTEST_DB win over .ktest.toml's db.
    let db = match cli.db {
        Some(db) => db,
        None => config_file::get()?
            .db
            .clone()
            .unwrap_or_else(state::default_path),
    };
    match cli.command {
        cli::Command::Run(args) => run::run(&db, args),
        cli::Command::Build(opts) => build::build(&opts),
        cli::Command::Oldconfig(opts) => build::configure(&opts, false),
        cli::Command::Config(opts) => build::configure(&opts, true),
        cli::Command::Boot(args) => run::boot(&db, args),
        cli::Command::Ssh { vm, command } => attach::ssh(&db, vm.vm.as_deref(), command),
        cli::Command::Gdb { vm, args } => attach::gdb(&db, vm.vm.as_deref(), args),
        cli::Command::Kgdb { vm, args } => attach::kgdb(&db, vm.vm.as_deref(), args),
        cli::Command::Mon { vm, command } => attach::mon(&db, vm.vm.as_deref(), command),
        cli::Command::Sysrq { vm, key } => attach::sysrq(&db, vm.vm.as_deref(), key),
        cli::Command::Status => status::status(&db),
        cli::Command::List { tests } => run::list(&tests),
        cli::Command::Stop { vm } => attach::stop(&db, vm.vm.as_deref()),
        cli::Command::Bisect(args) => bisect::bisect(&db, &args),
        cli::Command::Results(args) => match &args.command {
            Some(cli::ResultsCommand::Merge(m)) => report::merge::command(m),
            None => history::results(&db, &args),
        },
    }
}
