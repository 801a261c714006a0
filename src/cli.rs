//! The command line.

use crate::accel::Choice;
use crate::values::{Cpus, Memory, Shard, TimeLimit, VmCount};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const EXIT_CODES: &str = "\
Exit codes:
  0    every selected subtest passed or was skipped
  1    a subtest failed (exit status, TEST FAILED, KTAP, or the kernel log)
  2    usage or test declaration error, or a value this host cannot give
       (nothing was started)
  3    the kernel panicked, oopsed or hit a BUG, or the VM died without a verdict
       (a crash outranks a time-out, which outranks a failure)
  4    a subtest timed out
  5    infrastructure error (qemu missing, kernel unreadable, state database
       unusable or not safely yours)
  6    the kernel build failed
  130  interrupted (Ctrl-C, SIGTERM); the VM and its files were removed";

/// Build a Linux kernel, boot it in qemu, run a test inside, report the verdict.
#[derive(Debug, Parser)]
#[command(name = "ktest", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The state database (running VMs, network slots, results history).
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
    /// Configure and build the kernel in .ktest/ (no VM); prints the build
    /// directory.
    Build(BuildArgs),
    /// `make oldconfig` on .ktest's config, with the make options `run` uses.
    Oldconfig(BuildArgs),
    /// `make nconfig` on .ktest's config, with the make options `run` uses.
    Config(BuildArgs),
    /// Boot a VM with no test and a shell on the console (Ctrl-A X quits).
    Boot(BootArgs),
    /// Log in to this directory's VM over ssh (ktest ssh -- COMMAND...).
    Ssh {
        #[command(flatten)]
        vm: VmChoice,
        /// A command to run instead of a login shell.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// gdb on vmlinux, attached to qemu's gdb stub of this directory's VM.
    Gdb {
        #[command(flatten)]
        vm: VmChoice,
        /// Arguments passed to gdb.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// gdb attached to the guest's kgdb (breaks in with sysrq-g).
    Kgdb {
        #[command(flatten)]
        vm: VmChoice,
        /// Arguments passed to gdb.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The qemu monitor of this directory's VM.
    Mon {
        #[command(flatten)]
        vm: VmChoice,
        /// Run one monitor command, print its answer, and exit.
        #[arg(short, long, value_name = "COMMAND")]
        command: Option<String>,
    },
    /// Send alt-sysrq-KEY to this directory's VM.
    Sysrq {
        #[command(flatten)]
        vm: VmChoice,
        /// The sysrq key (h for help, t for task stacks, ...).
        key: String,
    },
    /// List the VMs this user has running.
    Status,
    /// List the subtests of test files (TEST, TEST:GLOB or DIR), as `run`
    /// would run them; boots nothing.
    List {
        /// Test files, each optionally with `:GLOB` to select subtests, or
        /// directories (their executable `*.ktest` files).
        #[arg(required = true)]
        tests: Vec<PathBuf>,
    },
    /// Power off this directory's VM and clean up (the whole run of the
    /// ktest that owns it).
    Stop {
        #[command(flatten)]
        vm: VmChoice,
    },
    /// Show the last run's results, or a test's past results (--history),
    /// from the results history; boots nothing.
    Results(ResultsArgs),
    /// Find the commit that broke a test: build and run it across
    /// `git bisect` in a worktree under .ktest/bisect (docs/bisect.md).
    #[command(after_help = BISECT_EXIT_CODES)]
    Bisect(BisectArgs),
}

const BISECT_EXIT_CODES: &str = "\
Exit codes:
  0    the first bad commit was found (its id and subject on stdout)
  1    it could not be narrowed to one commit (untestable commits in the way),
       or the --bad commit passes the test
  2    usage or test declaration error (nothing was started)
  5    infrastructure error (git, the worktree or the state database)
  130  interrupted; the same ktest bisect resumes where it stopped";

/// How a kernel crash during a bisection step counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CrashIs {
    /// The commit is bad.
    Bad,
    /// The commit cannot be judged (git tries a neighbour).
    Skip,
}

/// Options of `ktest bisect`.
#[derive(Debug, Args)]
pub struct BisectArgs {
    /// A commit where the test passes.
    #[arg(long, value_name = "REV", required_unless_present = "reset")]
    pub good: Option<String>,

    /// A later commit where it does not.
    #[arg(long, value_name = "REV", required_unless_present = "reset")]
    pub bad: Option<String>,

    /// Whether a kernel crash (panic, oops, BUG) makes a commit bad, or
    /// untestable (skip).
    #[arg(long, value_enum, default_value = "bad", value_name = "bad|skip")]
    pub crash: CrashIs,

    /// Run the test up to N times at each commit; a commit is bad if any
    /// run fails (catches a flaky regression).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,

    /// Drop this tree's unfinished bisection.
    #[arg(long, conflicts_with_all = ["good", "bad", "test"])]
    pub reset: bool,

    /// The test's time limit in seconds (default: its TIMEOUT, else 600).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<TimeLimit>,

    /// Root filesystem, as for ktest run.
    #[arg(long, value_name = "PATH|host")]
    pub root: Option<String>,

    /// Accelerator, as for ktest run.
    #[arg(long, value_enum)]
    pub accel: Option<Choice>,

    /// Show the build and boot logs.
    #[arg(short, long)]
    pub verbose: bool,

    #[command(flatten)]
    pub build: BuildOpts,

    /// The test: TEST, or TEST:GLOB for some of its subtests.
    #[arg(required_unless_present = "reset", value_name = "TEST[:SUBTEST]")]
    pub test: Option<PathBuf>,
}

impl RunArgs {
    /// The `ktest run` of one bisection step: the test on the step's
    /// kernel, its JSON report to `report`.
    pub fn for_bisect(
        b: &BisectArgs,
        kernel: &crate::kernel::Kernel,
        test: &std::path::Path,
        report: &std::path::Path,
    ) -> RunArgs {
        RunArgs {
            kernel: Some(
                kernel
                    .build_dir
                    .clone()
                    .unwrap_or_else(|| kernel.image.clone()),
            ),
            modules: None,
            timeout: b.timeout,
            root: b.root.clone(),
            accel: b.accel,
            mem: None,
            cpus: None,
            interactive: false,
            dry_run: false,
            verbose: b.verbose,
            subtest: Vec::new(),
            fail_fast: false,
            repeat: None,
            junit: None,
            json: Some(report.to_path_buf()),
            ktap: false,
            vms: None,
            shard: None,
            build: b.build.clone(),
            target: Vec::new(),
            all_targets: false,
            tests: vec![test.to_path_buf()],
            args: Vec::new(),
            quiet_stdout: true,
        }
    }
}

/// Which VM an attach command works on.
#[derive(Debug, Args, Default, Clone)]
pub struct VmChoice {
    /// The VM's id (`ktest status`), when several run from this
    /// directory.
    #[arg(long, env = "KTEST_VM", value_name = "ID")]
    pub vm: Option<String>,
}

/// Where the kernel comes from and how it is built (`run`, `build`,
/// `oldconfig`, `config`, `boot`).
#[derive(Debug, Args, Default, Clone)]
pub struct BuildOpts {
    /// The kernel source tree (default: the current directory, if it is one).
    #[arg(long, value_name = "DIR")]
    pub kernel_src: Option<PathBuf>,

    /// Base configuration: tinyconfig (default), defconfig, or a config file.
    #[arg(long, value_name = "BASE")]
    pub base_config: Option<String>,

    /// Extra make variables, e.g. -m LLVM=1 -m CROSS_COMPILE=x86_64-linux-gnu-.
    #[arg(short = 'm', long = "make-var", value_name = "VAR=VALUE")]
    pub make_vars: Vec<String>,

    /// Parallel make jobs (default: the number of CPUs).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<u32>,

    /// Show the full build log.
    #[arg(long)]
    pub build_log: bool,

    /// The guest's architecture: x86_64 or arm64 (default: `arch` in
    /// .ktest.toml, else an ARCH make variable, else the host's). A build for
    /// another architecture than the host's cross-compiles; a kernel given
    /// with --kernel must be of it, and decides it when nothing else does.
    #[arg(long, value_name = "ARCH", value_parser = parse_arch)]
    pub arch: Option<&'static crate::arch::Arch>,

    /// A configuration variant: kasan, kcsan, ubsan, lockdep or debug
    /// (repeatable, or a comma list; default: `variant` in .ktest.toml).
    /// Adds its Kconfig options (a build directory of its own) and scales
    /// the test's time limit and memory (docs/variants.md).
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
}

fn parse_arch(s: &str) -> Result<&'static crate::arch::Arch, String> {
    crate::arch::parse(s)
}

/// Options of `ktest build`, `oldconfig` and `config`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub build: BuildOpts,

    /// The configuration this test needs (its KCONFIG); default: none beyond
    /// ktest's own.
    pub test: Option<PathBuf>,
}

/// Options of `ktest boot`.
#[derive(Debug, Args)]
pub struct BootArgs {
    /// The kernel: a bzImage/vmlinuz file, a kernel build directory, or
    /// `host` for the running kernel's /boot/vmlinuz-RELEASE.
    #[arg(long, value_name = "PATH|host")]
    pub kernel: Option<PathBuf>,

    /// The kernel's module tree (the directory holding modules.dep), or a
    /// root holding lib/modules/RELEASE (default: /lib/modules/RELEASE
    /// beside the kernel).
    #[arg(long, value_name = "DIR", requires = "kernel")]
    pub modules: Option<PathBuf>,

    /// Guest memory: 512M, 2G, or a number of MiB; at least 64M, at most
    /// the host's memory.
    #[arg(long, value_name = "SIZE", default_value = "1G")]
    pub mem: Memory,

    /// Virtual CPUs, 1 to 255 (default 2).
    #[arg(long, value_name = "N")]
    pub cpus: Option<Cpus>,

    /// Accelerator.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: Choice,

    /// Root filesystem: a root image from create-vm-image, or `host` for the
    /// host's own / read-only with a tmpfs overlay. Default: the first of
    /// /var/lib/ktest/root and ~/.ktest/root that exists, else `host`.
    #[arg(long, value_name = "PATH|host")]
    pub root: Option<String>,

    #[command(flatten)]
    pub build: BuildOpts,
}

/// Options of `ktest run`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// The kernel: a bzImage/vmlinuz file, a directory holding
    /// arch/x86/boot/bzImage, boot/vmlinuz or vmlinuz, or `host` for the
    /// running kernel's /boot/vmlinuz-RELEASE. Its drivers may be modules:
    /// ktest then boots it with an initramfs that loads them.
    #[arg(long, value_name = "PATH|host")]
    pub kernel: Option<PathBuf>,

    /// The kernel's module tree (the directory holding modules.dep), or a
    /// root holding lib/modules/RELEASE (default: /lib/modules/RELEASE
    /// beside the kernel).
    #[arg(long, value_name = "DIR", requires = "kernel")]
    pub modules: Option<PathBuf>,

    /// Time limit in seconds, 1 to 2592000 (30 days) (default: the test's
    /// TIMEOUT, else 600).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<TimeLimit>,

    /// Root filesystem: a root image from create-vm-image, or `host` for the
    /// host's own / read-only with a tmpfs overlay. Default: the first of
    /// /var/lib/ktest/root and ~/.ktest/root that exists, else `host`.
    #[arg(long, value_name = "PATH|host")]
    pub root: Option<String>,

    /// Accelerator: KVM only if a probe shows it runs guests (auto, the
    /// default), or forced.
    #[arg(long, value_enum)]
    pub accel: Option<Choice>,

    /// Override the test's MEM: 512M, 2G, or a number of MiB; at least 64M,
    /// at most the host's memory.
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<Memory>,

    /// Override the number of virtual CPUs, 1 to 255 (default: the test's
    /// CPUS, else 2).
    #[arg(long, value_name = "N")]
    pub cpus: Option<Cpus>,

    /// Keep the VM up after the test with a shell on the console (Ctrl-A X
    /// quits; so does leaving the shell).
    #[arg(short = 'I', long)]
    pub interactive: bool,

    /// Print the qemu and kernel command lines; boot nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Show the whole boot log (and build log), not only the test's output.
    #[arg(short, long)]
    pub verbose: bool,

    /// Run only the subtests matching this glob (repeatable); `TEST:GLOB`
    /// does the same.
    #[arg(short = 's', long = "subtest", value_name = "GLOB")]
    pub subtest: Vec<String>,

    /// Stop at the first subtest that does not pass; after a crash, do not
    /// boot a fresh VM for the rest.
    #[arg(long)]
    pub fail_fast: bool,

    /// Run again and again until something does not pass, at most N times
    /// (0 or no N: no limit).
    #[arg(short = 'L', long = "loop", value_name = "N", num_args = 0..=1, default_missing_value = "0")]
    pub repeat: Option<u64>,

    /// Write a JUnit XML report of the run to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// Write a JSON report of the run to FILE (docs/results.md).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Print the results as KTAP on stdout (the rest goes to stderr).
    #[arg(long)]
    pub ktap: bool,

    /// VMs to run at once (default: as many as the host's CPUs, fewer when
    /// the tests' MEM would not fit in the host's memory).
    #[arg(long, value_name = "N")]
    pub vms: Option<VmCount>,

    /// Run only part K of N of the selected subtests (K from 1 to N): a
    /// deterministic, disjoint part, balanced by the results history; the
    /// N parts together are the whole selection.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,

    #[command(flatten)]
    pub build: BuildOpts,

    /// Run on this target of .ktest.toml (`[target.NAME]`; repeatable): its
    /// kernel, variant, architecture, root and tests (docs/targets.md).
    #[arg(long, value_name = "NAME")]
    pub target: Vec<String>,

    /// Run on every target of .ktest.toml, then show a target x test table.
    #[arg(long, conflicts_with = "target")]
    pub all_targets: bool,

    /// Test scripts, TEST:GLOB to run only the subtests matching GLOB, or
    /// directories: every executable `*.ktest` file under them. With
    /// targets, these replace the targets' own tests.
    #[arg(required_unless_present_any = ["target", "all_targets"], value_name = "TEST")]
    pub tests: Vec<PathBuf>,

    /// Arguments passed to the test in the VM (after --).
    #[arg(last = true)]
    pub args: Vec<String>,

    /// Everything on stderr, stdout left to the caller: `ktest bisect`'s
    /// steps, whose stdout is the first bad commit alone.
    #[arg(skip)]
    pub quiet_stdout: bool,
}

/// Options of `ktest results`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ResultsArgs {
    /// `merge`, or nothing to show results.
    #[command(subcommand)]
    pub command: Option<ResultsCommand>,

    /// Show TEST's past results instead of the last run, newest first: a
    /// test file's path or file name, or TEST:SUBTEST for one subtest.
    #[arg(long, value_name = "TEST[:SUBTEST]")]
    pub history: Option<String>,

    /// With --history: how many results to show.
    #[arg(
        short = 'n',
        long,
        value_name = "N",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..),
        requires = "history"
    )]
    pub limit: u32,

    /// Print JSON for scripts instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `ktest results` subcommands.
#[derive(Debug, Subcommand)]
pub enum ResultsCommand {
    /// Join the JSON reports of a sharded run's parts (`ktest run --shard
    /// K/N --json FILE`) into one report; exits as `ktest run` would for
    /// the joined verdicts.
    Merge(MergeArgs),
}

/// Options of `ktest results merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Write the joined report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write the joined report as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// Print the joined report as KTAP on stdout.
    #[arg(long)]
    pub ktap: bool,

    /// The shards' JSON reports.
    #[arg(required = true, value_name = "REPORT")]
    pub inputs: Vec<PathBuf>,
}

#[cfg(test)]
mod tests {
    use crate::error::Code;

    #[test]
    fn results_keeps_its_forms_beside_merge() {
        use clap::Parser;
        let parse = |a: &[&str]| super::Cli::try_parse_from(a);
        for ok in [
            &["ktest", "results"][..],
            &["ktest", "results", "--history", "t:x", "-n", "3"],
            &["ktest", "results", "--json"],
            &[
                "ktest", "results", "merge", "--json", "m.json", "a.json", "b.json",
            ],
        ] {
            assert!(parse(ok).is_ok(), "{ok:?}");
        }
        assert!(
            parse(&["ktest", "results", "merge"]).is_err(),
            "needs inputs"
        );
        assert!(parse(&["ktest", "results", "--history", "x", "merge", "a"]).is_err());
    }

    /// Every exit code ktest has is documented, in `--help` and in the
    /// README's table, and neither documents one it does not have.
    #[test]
    fn exit_codes_are_documented_where_users_look() {
        let codes = [
            Code::Passed,
            Code::TestFailed,
            Code::Usage,
            Code::Crash,
            Code::Timeout,
            Code::Infra,
            Code::BuildFailed,
            Code::Interrupted,
        ];
        let readme = include_str!("../README.md");
        let table: Vec<i32> = readme
            .split("### Exit codes")
            .nth(1)
            .expect("README has an exit code table")
            .lines()
            .filter_map(|l| l.strip_prefix("| ")?.split(' ').next()?.parse().ok())
            .collect();
        let help: Vec<i32> = super::EXIT_CODES
            .lines()
            .filter_map(|l| l.strip_prefix("  ")?.split(' ').next()?.parse().ok())
            .collect();
        let ours: Vec<i32> = codes.iter().map(|c| c.status()).collect();
        assert_eq!(table, ours, "README's exit code table");
        assert_eq!(help, ours, "--help's exit codes");
    }
}
