//! Planning a run of many subtests: which VM runs which subtests, in what
//! order, and which part of the selection a shard takes. Pure: durations
//! come in (from the results history), jobs and shards go out.
//!
//! - A *job* is a run of consecutive subtests of one test file in one VM.
//!   A file is one job, unless several VMs run at once and its expected
//!   time is long enough to be worth splitting (on one machine: known to
//!   be, from the history; see `local`): then its subtests are cut
//!   into jobs of about `total / VMs`, never more than `BATCH` (Kent
//!   Overstreet's ktest CI batches about 600 s of history per VM, which
//!   bounds what a crash costs).
//! - Jobs start longest first, so the longest does not start last and keep
//!   one VM busy while the others idle.
//! - A shard is a deterministic, disjoint part of the selection: the jobs
//!   of the whole selection (cut for N shards) dealt longest first to the
//!   shard with the least work so far. Every shard computes the same deal
//!   from the same selection and durations, so the N shards together are
//!   exactly the selection.

use crate::values::Shard;
use std::time::Duration;

/// What a subtest without history is guessed to take.
pub const UNKNOWN: Duration = Duration::from_secs(10);
/// What booting a VM costs, added to each job when balancing.
pub const BOOT: Duration = Duration::from_secs(3);
/// The most history-time one job (one VM) is given.
pub const BATCH: Duration = Duration::from_secs(600);
/// A file is not split into jobs shorter than this: each costs a boot.
pub const MIN_JOB: Duration = Duration::from_secs(30);

/// One test file's selected subtests as the planner sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    /// The subtests, in the file's order, with their duration from the
    /// history if it has one.
    pub subtests: Vec<(String, Option<Duration>)>,
    /// Whether its subtests may run in separate VMs (a file without
    /// subtests is one process and cannot be cut).
    pub splittable: bool,
}

/// One VM's work: consecutive subtests of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Which file (an index into the loads).
    pub test: usize,
    /// Its subtests, in the file's order.
    pub subtests: Vec<String>,
    /// What they are expected to take, boot excluded.
    pub estimate: Duration,
}

impl Job {
    /// What the job costs a VM: its subtests and a boot.
    fn cost(&self) -> Duration {
        self.estimate + BOOT
    }
}

/// Each subtest's expected duration: its history, else the mean of the
/// file's subtests that have one, else `UNKNOWN`.
pub fn estimates(load: &Load) -> Vec<Duration> {
    let known: Vec<Duration> = load.subtests.iter().filter_map(|(_, d)| *d).collect();
    let fallback = match known.len() {
        0 => UNKNOWN,
        n => known.iter().sum::<Duration>() / n as u32,
    };
    load.subtests
        .iter()
        .map(|(_, d)| d.unwrap_or(fallback))
        .collect()
}

/// The loads as one machine plans them: a file is cut between VMs only
/// when the history knows every one of its subtests. The first run of a
/// file is one VM, as a single file always was; once the history shows it
/// is long, it is cut. (Shards cut on guesses too: without history, which
/// a fresh CI machine never has, one shard would get a whole long file.)
pub fn local(loads: &[Load]) -> Vec<Load> {
    loads
        .iter()
        .map(|l| Load {
            splittable: l.splittable && l.subtests.iter().all(|(_, d)| d.is_some()),
            ..l.clone()
        })
        .collect()
}

/// How long a job may be when `ways` VMs (or shards) share `total`:
/// `None` (no cutting) for one; else about an equal share, within
/// `MIN_JOB` and `BATCH`.
pub fn target(total: Duration, ways: u32) -> Option<Duration> {
    (ways > 1).then(|| (total / ways).clamp(MIN_JOB, BATCH))
}

/// Cuts every file into jobs of at most about `target` (one job per file
/// for `None` or a file that cannot be cut), each job a run of
/// consecutive subtests, the parts of a file about equally long.
pub fn jobs(loads: &[Load], target: Option<Duration>) -> Vec<Job> {
    let mut out = Vec::new();
    for (test, load) in loads.iter().enumerate() {
        if load.subtests.is_empty() {
            continue;
        }
        let est = estimates(load);
        let total: Duration = est.iter().sum();
        let parts = match target {
            Some(t) if load.splittable && !t.is_zero() => {
                let n = total.as_nanos().div_ceil(t.as_nanos()).max(1);
                usize::try_from(n).unwrap_or(usize::MAX).min(est.len())
            }
            _ => 1,
        };
        // Part k ends at the first subtest whose running sum reaches k/parts
        // of the total, so the parts are as even as whole subtests allow.
        let mut job = Job {
            test,
            subtests: Vec::new(),
            estimate: Duration::ZERO,
        };
        let mut done = Duration::ZERO;
        let mut k = 1;
        for (i, ((name, _), d)) in load.subtests.iter().zip(&est).enumerate() {
            job.subtests.push(name.clone());
            job.estimate += *d;
            done += *d;
            let left = est.len() - i - 1;
            let parts_left = parts - k;
            let quota = total.mul_f64(k as f64 / parts as f64);
            if parts_left > 0 && (done >= quota || left == parts_left) && left >= parts_left {
                out.push(std::mem::replace(
                    &mut job,
                    Job {
                        test,
                        subtests: Vec::new(),
                        estimate: Duration::ZERO,
                    },
                ));
                k += 1;
            }
        }
        out.push(job);
    }
    out
}

/// Jobs in the order they start: longest first; equal ones in selection
/// order, so the order is the same on every machine.
pub fn longest_first(mut jobs: Vec<Job>) -> Vec<Job> {
    // A stable sort keeps the selection order among equals.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.cost()));
    jobs
}

/// The subtests of each file that shard `shard` runs (an empty list for a
/// file it does not touch): the jobs of the whole selection, cut for
/// `shard.count` shards, dealt longest first to the least loaded shard
/// (the lowest-numbered among equals).
pub fn shard(loads: &[Load], shard: Shard) -> Vec<Vec<String>> {
    let n = shard.count as usize;
    let total: Duration = loads.iter().flat_map(estimates).sum();
    let mut load = vec![Duration::ZERO; n];
    let mut mine = vec![Vec::new(); loads.len()];
    for job in longest_first(jobs(loads, target(total, shard.count))) {
        let least = (0..n).min_by_key(|&i| (load[i], i)).unwrap_or(0);
        load[least] += job.cost();
        if least + 1 == shard.index as usize {
            mine[job.test].extend(job.subtests);
        }
    }
    // Back in the file's order: a file cut into jobs may have been dealt
    // out of order.
    for (names, l) in mine.iter_mut().zip(loads) {
        let pos = |n: &String| l.subtests.iter().position(|(s, _)| s == n);
        names.sort_by_key(pos);
    }
    mine
}

/// A fingerprint of everything `shard` decides from: each file's place in
/// the selection, whether it can be cut, its subtests and their estimates.
/// Shards whose keys differ may overlap or leave subtests out (they saw
/// different selections or histories); `ktest results merge` refuses them.
pub fn plan_key(loads: &[Load]) -> String {
    let mut text = String::new();
    for (i, l) in loads.iter().enumerate() {
        for ((name, _), est) in l.subtests.iter().zip(estimates(l)) {
            text.push_str(&format!(
                "{i}\t{}\t{name}\t{}\n",
                l.splittable,
                est.as_millis()
            ));
        }
    }
    // FNV-1a: stable across Rust versions and machines, unlike DefaultHasher.
    let hash = text.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    format!("{hash:016x}")
}

/// vCPUs for a VM whose test did not ask for a number, when `vms` VMs
/// share `host` CPUs: its share, at least 1, at most `default`.
pub fn vcpus_each(host: u32, vms: u32, default: u32) -> u32 {
    (host / vms.max(1)).clamp(1, default.max(1))
}

/// How many VMs run at once by default: one per host CPU, but no more
/// than the host's available memory holds of the largest VM, and at
/// least one.
pub fn default_vms(cpus: u32, mem_available: Option<u64>, largest_mem: u64) -> u32 {
    let by_mem = match mem_available {
        Some(avail) if largest_mem > 0 => u32::try_from(avail / largest_mem).unwrap_or(u32::MAX),
        _ => u32::MAX,
    };
    cpus.min(by_mem).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    fn load(subtests: &[(&str, Option<Duration>)]) -> Load {
        Load {
            subtests: subtests.iter().map(|(n, d)| (n.to_string(), *d)).collect(),
            splittable: true,
        }
    }

    fn uniform(prefix: &str, n: usize, each: Option<Duration>) -> Load {
        Load {
            subtests: (0..n).map(|i| (format!("{prefix}{i}"), each)).collect(),
            splittable: true,
        }
    }

    #[test]
    fn unknown_durations_are_guessed_from_the_file_then_a_default() {
        let l = load(&[("a", secs(4)), ("b", None), ("c", secs(8))]);
        assert_eq!(estimates(&l), [4, 6, 8].map(Duration::from_secs));
        let none = load(&[("a", None)]);
        assert_eq!(estimates(&none), [UNKNOWN]);
    }

    #[test]
    fn one_vm_runs_each_file_whole() {
        let loads = [uniform("a", 100, secs(60)), uniform("b", 2, None)];
        let j = jobs(&loads, target(Duration::from_secs(6020), 1));
        assert_eq!(j.len(), 2);
        assert_eq!(j[0].subtests.len(), 100);
    }

    #[test]
    fn long_files_are_cut_into_even_consecutive_parts() {
        // 20 x 60 s over 4 VMs: 300 s each.
        let loads = [uniform("t", 20, secs(60))];
        let t = target(Duration::from_secs(1200), 4);
        assert_eq!(t, secs(300));
        let j = jobs(&loads, t);
        assert_eq!(j.len(), 4);
        assert!(j.iter().all(|j| j.subtests.len() == 5), "{j:?}");
        let names: Vec<String> = j.iter().flat_map(|j| j.subtests.clone()).collect();
        assert_eq!(
            names,
            loads[0]
                .subtests
                .iter()
                .map(|s| s.0.clone())
                .collect::<Vec<_>>()
        );
        // Never more than BATCH per VM, however few VMs share it.
        let big = [uniform("t", 30, secs(100))];
        let j = jobs(&big, target(Duration::from_secs(3000), 2));
        assert!(j.iter().all(|j| j.estimate <= BATCH), "{j:?}");
        assert_eq!(j.len(), 5);
    }

    #[test]
    fn one_machine_cuts_only_what_the_history_knows_is_long() {
        let guessed = [uniform("g", 20, None)];
        let t = target(Duration::from_secs(200), 4);
        assert_eq!(jobs(&guessed, t).len(), 4, "shards cut on guesses");
        assert_eq!(jobs(&local(&guessed), t).len(), 1);
        let known = [uniform("k", 20, secs(10))];
        assert_eq!(jobs(&local(&known), t).len(), 4);
        let mut partly = uniform("p", 20, secs(10));
        partly.subtests[3].1 = None;
        assert_eq!(jobs(&local(&[partly]), t).len(), 1);
    }

    #[test]
    fn short_files_and_files_without_subtests_stay_whole() {
        let quick = [uniform("q", 20, Some(Duration::from_millis(30)))];
        assert_eq!(jobs(&quick, target(Duration::from_millis(600), 8)).len(), 1);
        let mut single = uniform("s", 1, secs(5000));
        single.splittable = false;
        assert_eq!(
            jobs(&[single], target(Duration::from_secs(5000), 8)).len(),
            1
        );
        // More parts than subtests: one subtest each at most.
        let two = [uniform("w", 2, secs(1000))];
        let j = jobs(&two, target(Duration::from_secs(2000), 16));
        assert_eq!(j.len(), 2);
    }

    #[test]
    fn longest_jobs_start_first_and_ties_keep_their_order() {
        let loads = [
            uniform("a", 1, secs(5)),
            uniform("b", 1, secs(50)),
            uniform("c", 1, secs(5)),
        ];
        let order: Vec<usize> = longest_first(jobs(&loads, None))
            .iter()
            .map(|j| j.test)
            .collect();
        assert_eq!(order, [1, 0, 2]);
    }

    /// Every shard's part, for `count` shards.
    fn deal(loads: &[Load], count: u32) -> Vec<Vec<Vec<String>>> {
        (1..=count)
            .map(|index| shard(loads, Shard { index, count }))
            .collect()
    }

    #[test]
    fn shards_are_disjoint_and_together_exactly_the_selection() {
        let mixed = vec![
            uniform("a", 7, secs(3)),
            uniform("b", 40, None),
            load(&[("x", secs(900)), ("y", secs(1)), ("z", None)]),
            uniform("c", 1, secs(0)),
            uniform("e", 0, None),
        ];
        for count in 1..=9 {
            let parts = deal(&mixed, count);
            for (t, l) in mixed.iter().enumerate() {
                let mut all: Vec<String> = parts.iter().flat_map(|p| p[t].clone()).collect();
                let want: Vec<String> = l.subtests.iter().map(|s| s.0.clone()).collect();
                assert_eq!(
                    all.len(),
                    want.len(),
                    "{count} shards, file {t}: no repeats"
                );
                all.sort();
                let mut sorted = want.clone();
                sorted.sort();
                assert_eq!(all, sorted, "{count} shards, file {t}");
                // Each shard keeps the file's order.
                for p in &parts {
                    let pos: Vec<usize> = p[t]
                        .iter()
                        .map(|n| want.iter().position(|w| w == n).unwrap())
                        .collect();
                    assert!(pos.windows(2).all(|w| w[0] < w[1]));
                }
            }
            // Deterministic: the same inputs deal the same parts.
            assert_eq!(parts, deal(&mixed, count));
        }
    }

    #[test]
    fn shards_are_balanced_by_history() {
        // Ten files of very different lengths over three shards.
        let loads: Vec<Load> = (0..10)
            .map(|i| uniform(&format!("f{i}-"), 1, secs(10 * (i + 1))))
            .collect();
        let parts = deal(&loads, 3);
        let work: Vec<u64> = parts
            .iter()
            .map(|p| {
                p.iter()
                    .zip(&loads)
                    .filter(|(names, _)| !names.is_empty())
                    .map(|(_, l)| l.subtests[0].1.unwrap().as_secs() + BOOT.as_secs())
                    .sum()
            })
            .collect();
        let (max, min) = (*work.iter().max().unwrap(), *work.iter().min().unwrap());
        // 550 s of tests and 30 s of boots: LPT deals within one job's length.
        assert!(max - min <= 20, "{work:?}");
        // A long file is cut so that both shards share it.
        let one = [uniform("long", 40, secs(60))];
        let parts = deal(&one, 2);
        assert_eq!((parts[0][0].len(), parts[1][0].len()), (20, 20));
    }

    #[test]
    fn the_plan_key_changes_with_what_the_shards_depend_on() {
        let a = vec![uniform("a", 3, secs(5)), uniform("b", 1, None)];
        assert_eq!(plan_key(&a), plan_key(&a.clone()));
        let mut history = a.clone();
        history[1].subtests[0].1 = secs(7);
        let mut order = a.clone();
        order.swap(0, 1);
        let mut fewer = a.clone();
        fewer[0].subtests.pop();
        for other in [history, order, fewer] {
            assert_ne!(plan_key(&a), plan_key(&other));
        }
        assert_eq!(plan_key(&a).len(), 16);
    }

    #[test]
    fn vms_share_the_hosts_cpus() {
        assert_eq!(vcpus_each(2, 1, 2), 2);
        assert_eq!(vcpus_each(2, 2, 2), 1);
        assert_eq!(vcpus_each(2, 16, 2), 1);
        assert_eq!(vcpus_each(16, 4, 2), 2);
        assert_eq!(vcpus_each(0, 0, 2), 1);
    }

    #[test]
    fn default_vms_follow_cpus_then_memory() {
        const G: u64 = 1 << 30;
        assert_eq!(default_vms(8, Some(64 * G), G), 8);
        assert_eq!(default_vms(8, Some(3 * G), G), 3);
        assert_eq!(default_vms(8, Some(G / 2), G), 1);
        assert_eq!(default_vms(2, None, G), 2);
        assert_eq!(default_vms(0, None, G), 1);
    }
}
