//! The view of a run of many jobs at once (`ktest run A B C`, `--vms N`).
//!
//! Each finished subtest gets its verdict line, named `FILE:SUBTEST`, as
//! the single-file view prints it; the tests' own output goes only to
//! their logs (with `-v` it is shown too, each line prefixed by its file),
//! since lines of several VMs interleaved cannot be read. On a terminal,
//! a status block under those lines shows one line per running VM (its
//! id, file, subtest and time), the counts so far and an estimate of the
//! time left; it is redrawn in place. Elsewhere (CI logs) there is no
//! block: one plain line per event instead. The summary at the end covers
//! the whole run.

use super::terminal::{human_duration, subtest_lines, summary_lines, test_name, use_color, Style};
use super::{Event, JobId, JobInfo, Reporter};
use crate::error::Result;
use crate::results::{SubtestResult, Verdict};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

/// A job whose VM runs now.
#[derive(Debug, Clone)]
struct Running {
    /// The VM's id once it has one.
    vm: Option<String>,
    /// The subtest running now, and since when.
    subtest: Option<(String, Instant)>,
    /// When its current VM started booting.
    since: Instant,
}

/// What the view knows of the run: pure state, fed by events.
#[derive(Debug, Default)]
struct Progress {
    jobs: Vec<JobInfo>,
    vms: u32,
    running: BTreeMap<JobId, Running>,
    finished_jobs: Vec<JobId>,
    counts: BTreeMap<Verdict, usize>,
}

impl Progress {
    fn test(&self, job: JobId) -> String {
        self.jobs
            .get(job)
            .map_or_else(String::new, |j| test_name(&j.test))
    }

    /// `FILE:SUBTEST`, or the file alone for a file without subtests.
    fn full_name(&self, job: JobId, subtest: &str) -> String {
        let file = self.test(job);
        if file == subtest {
            file
        } else {
            format!("{file}:{subtest}")
        }
    }

    /// The subtests not yet judged.
    fn left(&self) -> usize {
        let total: usize = self.jobs.iter().map(|j| j.subtests.len()).sum();
        total.saturating_sub(self.counts.values().sum())
    }

    /// The time left: the estimates of the jobs not finished, less what
    /// the running ones have used, shared by the VMs.
    fn eta(&self, now: Instant) -> Duration {
        let mut work = Duration::ZERO;
        for (i, j) in self.jobs.iter().enumerate() {
            if self.finished_jobs.contains(&i) {
                continue;
            }
            let mut w = j.estimate + crate::schedule::BOOT;
            if let Some(r) = self.running.get(&i) {
                w = w.saturating_sub(now.saturating_duration_since(r.since));
            }
            work += w;
        }
        let jobs_left = self.jobs.len() - self.finished_jobs.len();
        let ways = (self.vms as usize).min(jobs_left).max(1);
        work / ways as u32
    }

    /// The status block: a line per running VM, then the counts.
    fn block(&self, now: Instant, width: usize) -> Vec<String> {
        let mut out = Vec::new();
        for (job, r) in &self.running {
            let vm = r.vm.as_deref().unwrap_or("-");
            let (what, since) = match &r.subtest {
                Some((name, t)) => (self.full_name(*job, name), *t),
                None => (format!("{} (booting)", self.test(*job)), r.since),
            };
            let secs = now.saturating_duration_since(since).as_secs();
            out.push(fit(&format!("  vm {vm:<3} {secs:>5}s  {what}"), width));
        }
        let c = |v| self.counts.get(&v).copied().unwrap_or(0);
        let bad = c(Verdict::Fail) + c(Verdict::Timeout) + c(Verdict::Crash);
        out.push(fit(
            &format!(
                "  {} passed, {bad} failed, {} skipped; {} left, about {} to go",
                c(Verdict::Pass),
                c(Verdict::Skip),
                self.left(),
                eta_text(self.eta(now))
            ),
            width,
        ));
        out
    }
}

/// An estimate in whole seconds or minutes: its decimals would be noise.
fn eta_text(d: Duration) -> String {
    match d.as_secs() {
        s if s < 60 => format!("{s} s"),
        s => human_duration(Duration::from_secs(s)),
    }
}

/// `line` cut to `width` characters, so it never wraps (a wrapped line
/// would throw off the cursor moves that redraw the block).
fn fit(line: &str, width: usize) -> String {
    line.chars().take(width.max(1)).collect()
}

/// The reporter.
pub struct Live {
    progress: Progress,
    /// Verdict lines go to stderr (`--ktap` owns stdout).
    to_stderr: bool,
    style: Style,
    err_style: Style,
    verbose: bool,
    /// Draw the status block (stderr is a terminal).
    block: bool,
    /// Lines of the block on the screen now.
    drawn: usize,
    last_draw: Option<Instant>,
}

impl Live {
    /// The view; `ktap` sends everything to stderr, `verbose` shows the
    /// tests' output too.
    pub fn new(ktap: bool, verbose: bool) -> Live {
        let no_color = || std::env::var_os("NO_COLOR");
        let err_tty = std::io::stderr().is_terminal();
        let err_style = Style {
            color: use_color(true, err_tty, no_color()),
        };
        let style = if ktap {
            err_style
        } else {
            Style {
                color: use_color(true, std::io::stdout().is_terminal(), no_color()),
            }
        };
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Live {
            progress: Progress::default(),
            to_stderr: ktap,
            style,
            err_style,
            verbose,
            block: err_tty && !dumb,
            drawn: 0,
            last_draw: None,
        }
    }

    /// Removes the block, so that lines can be printed where it was.
    fn clear(&mut self) {
        if self.drawn > 0 {
            crate::err!("\x1b[{}A\r\x1b[J", self.drawn);
            self.drawn = 0;
        }
    }

    fn draw(&mut self) {
        if !self.block {
            return;
        }
        let now = Instant::now();
        let width = crate::terminal::size().map_or(80, |(_, c)| c as usize) - 1;
        let lines = self.progress.block(now, width.max(20));
        self.clear();
        let mut e = std::io::stderr().lock();
        for l in &lines {
            let _ = writeln!(e, "{l}");
        }
        let _ = e.flush();
        self.drawn = lines.len();
        self.last_draw = Some(now);
    }

    /// Prints a verdict or output line above the block.
    fn line(&mut self, text: &str) {
        self.clear();
        if self.to_stderr {
            crate::errln!("{text}");
        } else {
            crate::outln!("{text}");
        }
    }

    /// Prints ktest's own line (stderr) above the block.
    fn note(&mut self, text: &str) {
        self.clear();
        crate::errln!("ktest: {text}");
    }

    /// A plain line for logs, where no block is drawn.
    fn plain(&mut self, text: &str) {
        if !self.block {
            self.note(text);
        }
    }

    fn finished(&mut self, job: JobId, result: &SubtestResult) {
        *self.progress.counts.entry(result.verdict).or_default() += 1;
        let named = SubtestResult {
            name: self.progress.full_name(job, &result.name),
            ..result.clone()
        };
        for l in subtest_lines(&named, self.style, self.verbose) {
            self.line(&l);
        }
    }
}

impl Reporter for Live {
    fn event(&mut self, event: &Event) -> Result<()> {
        let now = Instant::now();
        match event {
            Event::RunStarted { run_id, jobs, vms } => {
                self.progress.jobs = jobs.clone();
                self.progress.vms = *vms;
                let subtests: usize = jobs.iter().map(|j| j.subtests.len()).sum();
                let mut files: Vec<&std::path::Path> =
                    jobs.iter().map(|j| j.test.as_path()).collect();
                files.sort();
                files.dedup();
                self.note(&format!(
                    "run {run_id}: {subtests} subtest{} of {} file{} in {} job{}, up to {vms} VM{} at once",
                    plural(subtests),
                    files.len(),
                    plural(files.len()),
                    jobs.len(),
                    plural(jobs.len()),
                    plural(*vms as usize)
                ));
            }
            Event::VmStarted {
                job,
                attempt,
                subtests,
                console_log,
            } => {
                self.progress.running.insert(
                    *job,
                    Running {
                        vm: None,
                        subtest: None,
                        since: now,
                    },
                );
                let again = if *attempt > 1 { " (a fresh VM)" } else { "" };
                let text = format!(
                    "{}: VM booting for {} subtest{}{again}; console log {}",
                    self.progress.test(*job),
                    subtests.len(),
                    plural(subtests.len()),
                    console_log.display()
                );
                if self.verbose {
                    self.note(&text);
                } else {
                    self.plain(&text);
                }
            }
            Event::VmUp { job, id } => {
                if let Some(r) = self.progress.running.get_mut(job) {
                    r.vm = Some(id.clone());
                }
            }
            Event::SubtestStarted { job, name } => {
                if let Some(r) = self.progress.running.get_mut(job) {
                    r.subtest = Some((name.clone(), now));
                }
                let vm = self
                    .progress
                    .running
                    .get(job)
                    .and_then(|r| r.vm.clone())
                    .unwrap_or_default();
                let text = format!("vm {vm}: {} started", self.progress.full_name(*job, name));
                self.plain(&text);
            }
            Event::Output { job, line } | Event::Console { job, line } => {
                if self.verbose {
                    let text = format!("{}| {line}", self.progress.test(*job));
                    self.line(&text);
                }
            }
            Event::Raw { .. } => {}
            Event::Note { job, text } => {
                let text = match job {
                    Some(j) => format!("{}: {text}", self.progress.test(*j)),
                    None => text.clone(),
                };
                self.note(&text);
            }
            Event::SubtestFinished { job, result } => {
                if let Some(r) = self.progress.running.get_mut(job) {
                    r.subtest = None;
                }
                self.finished(*job, result);
            }
            Event::JobFinished { job } => {
                self.progress.running.remove(job);
                self.progress.finished_jobs.push(*job);
            }
            Event::Tick => {}
            Event::RunFinished { report } => {
                self.clear();
                self.block = false;
                for l in summary_lines(report, self.err_style) {
                    crate::errln!("ktest: {l}");
                }
                return Ok(());
            }
        }
        let stale = self.last_draw.map_or(true, |t| {
            now.duration_since(t) >= Duration::from_millis(200)
        });
        if self.block && (stale || !matches!(event, Event::Tick)) {
            self.draw();
        }
        Ok(())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn job(test: &str, subtests: &[&str], secs: u64) -> JobInfo {
        JobInfo {
            test: PathBuf::from(test),
            subtests: subtests.iter().map(|s| s.to_string()).collect(),
            estimate: Duration::from_secs(secs),
        }
    }

    #[test]
    fn the_block_shows_each_running_vm_then_counts_and_time_left() {
        let t0 = Instant::now();
        let mut p = Progress {
            jobs: vec![
                job("/t/a.ktest", &["one", "two"], 40),
                job("/t/b.ktest", &["b.ktest"], 10),
                job("/t/c.ktest", &["x"], 20),
            ],
            vms: 2,
            ..Progress::default()
        };
        p.running.insert(
            0,
            Running {
                vm: Some("1".into()),
                subtest: Some(("two".into(), t0)),
                since: t0,
            },
        );
        p.running.insert(
            1,
            Running {
                vm: None,
                subtest: None,
                since: t0,
            },
        );
        *p.counts.entry(Verdict::Pass).or_default() += 1;
        let now = t0 + Duration::from_secs(13);
        let lines = p.block(now, 200);
        assert_eq!(lines[0], "  vm 1      13s  a.ktest:two");
        assert_eq!(lines[1], "  vm -      13s  b.ktest (booting)");
        // Left: (43-13) + (13-13) + 23 = 53 s of work over 2 VMs.
        assert_eq!(
            lines[2],
            "  1 passed, 0 failed, 0 skipped; 3 left, about 26 s to go"
        );
        // Never wider than the terminal.
        assert!(p.block(now, 10).iter().all(|l| l.chars().count() <= 10));
    }

    #[test]
    fn files_without_subtests_are_named_once() {
        let p = Progress {
            jobs: vec![job("/t/hello", &["hello"], 1)],
            ..Progress::default()
        };
        assert_eq!(p.full_name(0, "hello"), "hello");
        assert_eq!(p.full_name(0, "x"), "hello:x");
    }
}
