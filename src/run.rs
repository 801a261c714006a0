//! `ktest run` and `ktest boot`: thin front ends. `prepare` decides what
//! to run, the suite runner (src/runner/) runs it through `launch`, and the
//! reporters (src/report/) tell the user and write the reports.

use crate::accel;
use crate::cli::{BootArgs, RunArgs};
use crate::error::{Code, Error, Result};
use crate::guest::{self, Subtests};
use crate::launch::{self, Launch};
use crate::outcome::{self, Observed};
use crate::plan;
use crate::prepare::{self, Prepared};
use crate::report::{Event, JobInfo};
use crate::results::{KernelIdentity, RunReport, ShardPlan, TestReport};
use crate::runner::{self, pool, SuitePlan};
use crate::schedule::{self, Load};
use crate::signals;
use crate::sshkey;
use crate::state::{self, State};
use crate::suite;
use crate::supervise::{self, VmEvent};
use crate::values::{Cpus, VmCount};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The longest file name most Linux file systems take (NAME_MAX).
const NAME_MAX: usize = 255;

/// `NAME` + `suffix` as a file name, or, for a name too long for that,
/// its start and a hash of the whole.
fn fit_name(name: &str, suffix: &str) -> String {
    if name.len() + suffix.len() <= NAME_MAX {
        return format!("{name}{suffix}");
    }
    // FNV-1a: stable across Rust versions, unlike DefaultHasher.
    let hash = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    let tag = format!("-{hash:016x}{suffix}");
    let mut end = NAME_MAX - tag.len();
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{tag}", &name[..end])
}

/// How many runs' logs `.ktest/runs` keeps; older ones are removed.
const RUNS_KEPT: usize = 20;

/// A new run id: `YYYYMMDD-HHMMSS-XXXX` in UTC, sortable, and unique
/// enough that two runs in one second do not share a log directory.
fn new_run_id(now: SystemTime) -> String {
    let stamp = chrono::DateTime::<chrono::Utc>::from(now).format("%Y%m%d-%H%M%S");
    let mut nonce = [0u8; 2];
    use std::io::Read;
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut nonce));
    format!("{stamp}-{:04x}", u16::from_ne_bytes(nonce))
}

/// Whether `name` is a run id `new_run_id` made: only those are pruned.
fn is_run_id(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 20
        && b[8] == b'-'
        && b[15] == b'-'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
        && b[16..].iter().all(u8::is_ascii_hexdigit)
}

/// The run directories to remove so that `keep` remain: the oldest ones,
/// by id.
fn runs_to_prune(mut ids: Vec<String>, keep: usize) -> Vec<String> {
    ids.retain(|i| is_run_id(i));
    ids.sort();
    let n = ids.len().saturating_sub(keep);
    ids.truncate(n);
    ids
}

/// Removes old run directories ktest made, and points `runs/last` at the
/// newest. Failures only cost disk space: they are ignored.
fn tidy_runs(runs: &Path, newest: &str) {
    let ids = std::fs::read_dir(runs)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    for id in runs_to_prune(ids, RUNS_KEPT) {
        state::remove_path(&runs.join(id));
    }
    let last = runs.join("last");
    if std::fs::symlink_metadata(&last).is_ok_and(|m| m.file_type().is_symlink()) {
        let _ = std::fs::remove_file(&last);
    }
    let _ = std::os::unix::fs::symlink(newest, &last);
}

/// Which kernel ran: the guest's release, the build directory's inputs
/// hash for a kernel ktest built, the tree's `git describe`.
fn identity(p: &Prepared, release: Option<String>) -> KernelIdentity {
    let build_hash = p.kernel.build_dir.as_deref().and_then(|d| {
        let parent = d.parent()?;
        (parent.file_name()? == "build")
            .then(|| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .flatten()
    });
    let describe = p.kernel.source.as_deref().and_then(|src| {
        if !src.join(".git").exists() {
            return None;
        }
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(src)
            .args(["describe", "--always", "--dirty"])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    KernelIdentity {
        release,
        build_hash,
        describe,
        image: p.kernel.image.clone(),
    }
}

/// Boots VMs for the suite runner.
struct Vms<'a> {
    db: &'a Path,
    prepared: &'a Prepared,
    args: &'a RunArgs,
    accel: accel::Choice,
}

impl runner::Boot for Vms<'_> {
    fn boot(
        &mut self,
        subtests: &Subtests,
        log: &Path,
        stop: &Arc<AtomicBool>,
        sink: &mut dyn FnMut(VmEvent),
    ) -> Result<Observed> {
        let l = Launch {
            accel: self.accel,
            verbose: self.args.verbose,
            interactive: self
                .args
                .interactive
                .then_some(supervise::Interactive::AfterTest),
            args: &self.args.args,
            subtests: subtests.clone(),
            log: log.to_path_buf(),
            keys: sshkey::Keys::beside(self.db),
            output_end: guest::output_end_marker(),
            stop: stop.clone(),
        };
        launch::launch(self.db, self.prepared, &l, sink)
    }
}

/// Prints the qemu and kernel command lines of a run; boots nothing.
fn dry_run(db: &Path, all: &[Prepared], choice: accel::Choice, verbose: bool) -> Result<Code> {
    // The first free id is shown; the real one is claimed at run time.
    let vm_dir = launch::start_dir()?
        .join(".ktest")
        .join(crate::vmlock::VMS_DIR)
        .join("1");
    let state = State::open(db)?;
    for prepared in all {
        let accel = accel::choose(
            choice,
            prepared.arch,
            &prepared.qemu,
            &state,
            &std::env::temp_dir(),
            verbose,
        )?;
        let plan = plan::plan(&prepare::plan_input(
            prepared,
            accel,
            &vm_dir,
            0,
            state::SSH_PORT_BASE,
        ));
        if all.len() > 1 {
            if let Some(test) = &prepared.test {
                crate::outln!("# test: {}", test.display());
            }
        }
        crate::outln!("# kernel command line:\n{}", plan.cmdline);
        crate::outln!(
            "# qemu (run in {}; slot 0 shown, the real one is allocated at run time):",
            vm_dir.display()
        );
        crate::outln!("{}", plan.shell_line());
    }
    Ok(Code::Passed)
}

/// Runs `ktest run`.
pub fn run(db: &Path, args: RunArgs) -> Result<Code> {
    if !args.target.is_empty() || args.all_targets {
        signals::install();
        return crate::target::run_all(db, &args);
    }
    run_reporting(db, &args, None).map(|(code, _)| code)
}

/// Runs `ktest run` of `args` (of `target`, for the reports and the
/// history), returning the exit code and the last iteration's report.
pub fn run_reporting(
    db: &Path,
    args: &RunArgs,
    target: Option<&str>,
) -> Result<(Code, Option<RunReport>)> {
    signals::install();
    let selected = crate::discover::tests(&args.tests, &args.subtest)?;
    if args.interactive && selected.len() > 1 {
        return Err(Error::usage(format!(
            "-I keeps one VM up for you, and {} test files were selected; name one",
            selected.len()
        )));
    }
    let prepared = prepare::prepare_all(args, &selected)?;
    let vms = vm_count(args, &prepared);
    let choice = args
        .accel
        .or(crate::config_file::get()?.accel)
        .unwrap_or(accel::Choice::Auto);
    if args.dry_run {
        return Ok((dry_run(db, &prepared, choice, args.verbose)?, None));
    }
    // Probed once here, not by every VM: the probe's note is said once,
    // and VMs started at once do not all probe.
    let accel = match accel::choose(
        choice,
        prepared[0].arch,
        &prepared[0].qemu,
        &State::open(db)?,
        &launch::ktest_dir()?,
        args.verbose,
    )? {
        plan::Accel::Kvm => accel::Choice::Kvm,
        plan::Accel::Tcg => accel::Choice::Tcg,
    };
    let mut iteration = 0u64;
    loop {
        iteration += 1;
        if args.repeat.is_some() {
            crate::errln!("ktest: iteration {iteration}");
        }
        let (code, report) = run_once(db, args, &prepared, accel, vms, target)?;
        let more = match args.repeat {
            None => false,
            Some(n) => code == Code::Passed && (n == 0 || iteration < n),
        };
        if !more {
            if args.repeat.is_some() {
                match code {
                    Code::Passed => crate::errln!("ktest: all {iteration} iterations passed"),
                    _ => crate::errln!("ktest: iteration {iteration} did not pass; stopped"),
                }
            }
            return Ok((code, Some(report)));
        }
    }
}

/// Each test file's load for the scheduler: its selected subtests with
/// their durations from the results history.
fn loads(db: &Path, prepared: &[Prepared]) -> Result<Vec<Load>> {
    let state = State::open(db)?;
    prepared
        .iter()
        .map(|p| {
            let known = match &p.test {
                Some(t) => crate::history::durations(&state, t)?,
                None => Default::default(),
            };
            Ok(Load {
                subtests: p
                    .subtests
                    .names()
                    .into_iter()
                    .map(|n| {
                        let d = known.get(&n).copied();
                        (n, d)
                    })
                    .collect(),
                splittable: !matches!(p.subtests, Subtests::Single(_)),
            })
        })
        .collect()
}

/// How many VMs run at once: `--vms`, else one per CPU as far as the
/// host's available memory holds the largest VM; one for `-I`.
fn vm_count(args: &RunArgs, prepared: &[Prepared]) -> u32 {
    if args.interactive {
        return 1;
    }
    if let Some(n) = args
        .vms
        .or(crate::config_file::get().ok().and_then(|c| c.vms))
    {
        return n.get();
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let largest = prepared
        .iter()
        .map(|p| p.spec.mem.bytes())
        .max()
        .unwrap_or(0);
    VmCount::new(schedule::default_vms(
        cpus,
        crate::host_fit::mem_available(),
        largest,
    ))
    .get()
}

/// The tests as `vms` VMs at once run them: those that did not ask for a
/// number of vCPUs (no `--cpus`, `CPUS` or `cpus` in `.ktest.toml`) get
/// their share of the host's CPUs, up to the usual default.
/// Oversubscribed vCPUs slow every VM: two 2-vCPU VMs on 2 cores took
/// 0.76 of the serial time, two 1-vCPU VMs 0.56 (docs/performance.md).
fn share_cpus(prepared: &[Prepared], args: &RunArgs, vms: u32) -> Result<Vec<Prepared>> {
    let file = crate::config_file::get()?.cpus;
    let host = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let each = schedule::vcpus_each(host, vms, Cpus::DEFAULT.get());
    Ok(prepared
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if args.cpus.or(p.spec.cpus).or(file).is_none() {
                p.cpus = each;
            }
            p
        })
        .collect())
}

/// The log directory of each test file in a run: its file name, made
/// unique by a number when two files share one.
fn test_dirs(run_dir: &Path, prepared: &[Prepared]) -> Vec<PathBuf> {
    let mut taken: Vec<String> = Vec::new();
    prepared
        .iter()
        .map(|p| {
            let name = p
                .test
                .as_deref()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut n = 1;
            let mut unique = fit_name(&name, "");
            while taken.contains(&unique) {
                n += 1;
                unique = fit_name(&name, &format!("-{n}"));
            }
            taken.push(unique.clone());
            run_dir.join(unique)
        })
        .collect()
}

/// One run of the selected subtests of every selected file, reported.
fn run_once(
    db: &Path,
    args: &RunArgs,
    prepared: &[Prepared],
    accel: accel::Choice,
    vms: u32,
    target_name: Option<&str>,
) -> Result<(Code, RunReport)> {
    let started = SystemTime::now();
    let clock = Instant::now();
    let run_id = new_run_id(started);
    let runs = launch::ktest_dir()?.join("runs");
    let run_dir = runs.join(&run_id);
    let dirs = test_dirs(&run_dir, prepared);
    for d in &dirs {
        launch::create_private_dir(d)?;
    }
    tidy_runs(&runs, &run_id);
    let mut loads = loads(db, prepared)?;
    let shard = args.shard.map(|s| ShardPlan {
        index: s.index,
        count: s.count,
        plan: schedule::plan_key(&loads),
    });
    if let Some(s) = args.shard {
        let parts = schedule::shard(&loads, s);
        for (load, mine) in loads.iter_mut().zip(parts) {
            load.subtests.retain(|(n, _)| mine.contains(n));
        }
    }
    let total = loads.iter().flat_map(schedule::estimates).sum();
    let target = if args.interactive {
        None
    } else {
        schedule::target(total, vms)
    };
    let planned = schedule::longest_first(schedule::jobs(&schedule::local(&loads), target));
    // As many VMs as run at once, not as may: one job keeps its 2 vCPUs.
    let at_once = vms.min(u32::try_from(planned.len()).unwrap_or(u32::MAX));
    let prepared = &share_cpus(prepared, args, at_once)?;
    let infos: Vec<JobInfo> = planned
        .iter()
        .map(|j| JobInfo {
            test: prepared[j.test].test.clone().unwrap_or_default(),
            subtests: j.subtests.clone(),
            estimate: j.estimate,
        })
        .collect();
    let mut reporters = crate::report::for_run(db, args, infos.len() > 1)?;
    reporters.emit(Event::RunStarted {
        run_id: run_id.clone(),
        jobs: infos,
        vms,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let consoles: Vec<Arc<AtomicU32>> = prepared.iter().map(|_| Arc::default()).collect();
    let mut jobs = Vec::new();
    for (i, j) in planned.iter().enumerate() {
        let p = &prepared[j.test];
        jobs.push(pool::Job {
            plan: SuitePlan {
                test: p.test.clone().unwrap_or_default(),
                subtests: p.subtests.with_names(j.subtests.clone()),
                allow: crate::kernel_log::Allow::parse(&p.spec.allow.join(","))?,
                fail_fast: args.fail_fast,
                dir: dirs[j.test].clone(),
                job: i,
                stop: stop.clone(),
                consoles: consoles[j.test].clone(),
            },
            mem: p.spec.mem.bytes(),
            boot: Box::new(Vms {
                db,
                prepared: p,
                args,
                accel,
            }),
        });
    }
    let limits = pool::Limits {
        vms,
        mem: crate::host_fit::mem_available(),
    };
    let outcomes = pool::run(jobs, limits, &stop, &mut reporters, |r| r.emit(Event::Tick))?;
    let report = RunReport {
        run_id,
        started_at: started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        duration: clock.elapsed(),
        kernel: identity(
            &prepared[0],
            outcomes.iter().find_map(|o| o.release.clone()),
        ),
        tests: test_reports(prepared, &loads, &planned, &outcomes),
        shard,
        target: target_name.map(String::from),
    };
    reporters.emit(Event::RunFinished {
        report: report.clone(),
    });
    reporters.finish()?;
    Ok((outcome::gravest(outcomes.iter().map(|o| o.code)), report))
}

/// Each test file's report: its jobs' results joined, in the file's
/// order, for the files that ran anything.
fn test_reports(
    prepared: &[Prepared],
    loads: &[Load],
    planned: &[schedule::Job],
    outcomes: &[runner::SuiteOutcome],
) -> Vec<TestReport> {
    let mut out = Vec::new();
    for (t, (p, load)) in prepared.iter().zip(loads).enumerate() {
        let mine: Vec<&runner::SuiteOutcome> = planned
            .iter()
            .zip(outcomes)
            .filter(|(j, _)| j.test == t)
            .map(|(_, o)| o)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let order = |name: &str| load.subtests.iter().position(|(n, _)| n == name);
        let mut subtests: Vec<_> = mine
            .iter()
            .flat_map(|o| o.report.subtests.iter().cloned())
            .collect();
        subtests.sort_by_key(|r| order(&r.name));
        let mut console_logs: Vec<PathBuf> = mine
            .iter()
            .flat_map(|o| o.report.console_logs.iter().cloned())
            .collect();
        console_logs.sort_by_key(|l| console_number(l));
        out.push(TestReport {
            test: p.test.clone().unwrap_or_default(),
            subtests,
            console_logs,
        });
    }
    out
}

/// 1 for `console.log`, N for `console-N.log`: the order VMs started in.
fn console_number(log: &Path) -> u32 {
    log.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.strip_prefix("console-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Runs `ktest list`: the subtests each test file would run, for test
/// files, `TEST:GLOB` and directories as `ktest run` takes them.
pub fn list(tests: &[PathBuf]) -> Result<Code> {
    signals::install();
    for arg in crate::discover::tests(tests, &[])? {
        let path = arg
            .path
            .canonicalize()
            .map_err(|e| Error::usage(format!("{}: {e}", arg.path.display())))?;
        let spec = crate::deps::read(&path)?;
        let names = match spec.subtests {
            true => suite::select(&path, &crate::deps::list(&path)?, &arg.patterns)?,
            false => vec![suite::single_name(&path)],
        };
        for n in names {
            crate::outln!("{}:{n}", arg.path.display());
        }
    }
    Ok(Code::Passed)
}

/// Runs `ktest boot`: a VM with no test and the console attached, until
/// the guest powers off, the user quits (Ctrl-A X) or ktest is stopped.
pub fn boot(db: &Path, args: BootArgs) -> Result<Code> {
    signals::install();
    let prepared = prepare::prepare_boot(&args)?;
    let logs = launch::ktest_dir()?.join("log");
    launch::create_private_dir(&logs)?;
    let log = logs.join(fit_name("boot", ".log"));
    let l = Launch {
        accel: args.accel,
        // The whole console is shown anyway.
        verbose: false,
        interactive: Some(supervise::Interactive::FromBoot),
        args: &[],
        subtests: prepared.subtests.clone(),
        log: log.clone(),
        keys: sshkey::Keys::beside(db),
        output_end: guest::output_end_marker(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let mut term = crate::report::terminal_for_boot();
    let observed = launch::launch(db, &prepared, &l, &mut |ev| term(ev))?;
    let verdict = boot_verdict(&observed);
    crate::errln!("ktest: boot: {}", verdict.summary);
    if verdict.code != Code::Passed {
        crate::errln!("ktest: console log: {}", log.display());
    }
    Ok(verdict.code)
}

/// How a `ktest boot` session ended. There is no test, so ending it by
/// quitting or stopping it is a success; the kernel crashing is not.
fn boot_verdict(o: &Observed) -> outcome::Verdict {
    if o.crash.is_some() || o.guest_error.is_some() {
        // Judged as for a test: quitting afterwards does not hide a crash.
        return outcome::vm_failure(&Observed {
            interrupted: false,
            ..o.clone()
        });
    }
    let v = |code, summary: String| outcome::Verdict { code, summary };
    match &o.qemu_exit {
        Some(how) if !o.started => v(Code::Infra, format!("qemu {how} before the guest started")),
        _ => v(Code::Passed, "VM stopped".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_fit_the_file_system() {
        assert_eq!(fit_name("hello", ".log"), "hello.log");
        let long = "t".repeat(251);
        assert_eq!(fit_name(&long, ".log"), format!("{long}.log"));
        for name in ["t".repeat(252), "é".repeat(200)] {
            let log = fit_name(&name, ".log");
            assert!(log.len() <= NAME_MAX && log.ends_with(".log"), "{log}");
            assert_ne!(log, fit_name(&format!("{name}x"), ".log"));
        }
    }

    #[test]
    fn run_ids_sort_by_time_and_only_ours_are_pruned() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        let id = new_run_id(t);
        assert!(is_run_id(&id), "{id}");
        assert!(id.starts_with("20261118-110640-"), "{id}");
        let later = new_run_id(t + std::time::Duration::from_secs(3600));
        assert!(later > id);
        assert!(!is_run_id("last") && !is_run_id("20261118-000000-xyzw"));
        let ids: Vec<String> = [
            "20260101-000000-0000",
            "last",
            "20250101-000000-ffff",
            "20270101-000000-0001",
            "mine",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(runs_to_prune(ids.clone(), 2), vec!["20250101-000000-ffff"]);
        assert!(runs_to_prune(ids, 5).is_empty());
    }

    #[test]
    fn boot_ends_well_unless_the_kernel_or_qemu_failed() {
        let started = Observed {
            started: true,
            ..Observed::default()
        };
        let quit = Observed {
            interrupted: true,
            ..started.clone()
        };
        assert_eq!(boot_verdict(&quit).code, Code::Passed);
        let powered_off = Observed {
            qemu_exit: Some("exited with status 0".into()),
            ..started.clone()
        };
        assert_eq!(boot_verdict(&powered_off).code, Code::Passed);
        let no_start = Observed {
            qemu_exit: Some("exited with status 1:\n  bad kernel".into()),
            ..Observed::default()
        };
        assert_eq!(boot_verdict(&no_start).code, Code::Infra);
        let crash = Observed {
            crash: Some("Kernel panic - not syncing".into()),
            ..quit
        };
        assert_eq!(boot_verdict(&crash).code, Code::Crash);
    }
}
