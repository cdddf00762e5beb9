//! How much CPU time the machine itself keeps from a thread that is always ready to run.
//!
//! One thread per CPU, pinned to it, reads the clock in a loop; wherever two readings are
//! further apart than [`GAP`], the thread did not run for that long. After each gap it looks
//! at its count of involuntary context switches: if that moved, another task took the CPU;
//! if not, the time went where the guest cannot see it (the hypervisor running something
//! else, interrupts). A call that meets such a gap lasts at least as long, so these figures,
//! printed beside each N's reads, tell a slow p99 of the machine from a slow endpoint.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Clock readings further apart than this count as a gap (a loop turn takes ~30 ns).
const GAP: Duration = Duration::from_micros(200);

/// The probe run before the reads at `n` containers.
#[derive(Debug, Default, Clone, Serialize)]
pub struct MachineProbe {
    pub n: usize,
    pub cpus: Vec<CpuGaps>,
}

/// What one CPU's thread missed over the probe.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct CpuGaps {
    pub cpu: usize,
    pub seconds: f64,
    /// Total length of the gaps.
    pub lost_ms: f64,
    /// Gaps longer than [`GAP`].
    pub gaps: u32,
    /// Of those, longer than 1 ms: each is enough to put a sub-millisecond call over 1 ms.
    pub over_1ms: u32,
    /// Of those, gaps during which no other task was switched in.
    pub unseen: u32,
    pub longest_ms: f64,
}

impl CpuGaps {
    fn record(&mut self, gap: Duration, task_switched: bool) {
        let ms = gap.as_secs_f64() * 1000.0;
        self.gaps += 1;
        self.lost_ms += ms;
        if ms > 1.0 {
            self.over_1ms += 1;
        }
        if !task_switched {
            self.unseen += 1;
        }
        self.longest_ms = self.longest_ms.max(ms);
    }

    pub fn line(&self) -> String {
        format!(
            "cpu{}: lost {:.1} ms in {:.1} s, {} gaps > 0.2 ms ({} > 1 ms, longest {:.2} ms; \
             {} with no other task switched in)",
            self.cpu,
            self.lost_ms,
            self.seconds,
            self.gaps,
            self.over_1ms,
            self.longest_ms,
            self.unseen
        )
    }
}

/// Probe every CPU this process may use at once, for `duration`.
pub fn probe(duration: Duration) -> Vec<CpuGaps> {
    let cpus = allowed_cpus();
    let threads: Vec<_> = cpus
        .into_iter()
        .map(|cpu| std::thread::spawn(move || probe_cpu(cpu, duration)))
        .collect();
    threads.into_iter().filter_map(|t| t.join().ok()).collect()
}

fn allowed_cpus() -> Vec<usize> {
    let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) else {
        return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
    };
    (0..nix::sched::CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect()
}

fn probe_cpu(cpu: usize, duration: Duration) -> CpuGaps {
    let mut result = CpuGaps {
        cpu,
        ..CpuGaps::default()
    };
    let mut pin = nix::sched::CpuSet::new();
    if pin.set(cpu).is_err()
        || nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &pin).is_err()
    {
        return result;
    }
    let mut switches = involuntary_switches();
    let start = Instant::now();
    let mut last = start;
    loop {
        let now = Instant::now();
        let gap = now - last;
        if gap > GAP {
            let after = involuntary_switches();
            result.record(gap, after != switches);
            switches = after;
            // Reading the count took time of its own: start the next turn from here.
            last = Instant::now();
        } else {
            last = now;
        }
        if now - start >= duration {
            break;
        }
    }
    result.seconds = start.elapsed().as_secs_f64();
    result
}

/// This thread's involuntary context switches so far (`None` if unreadable).
fn involuntary_switches() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_summed_counted_and_sorted_by_cause() {
        let mut g = CpuGaps::default();
        g.record(Duration::from_micros(300), true);
        g.record(Duration::from_micros(2500), false);
        g.record(Duration::from_micros(1200), false);
        assert_eq!(g.gaps, 3);
        assert_eq!(g.over_1ms, 2);
        assert_eq!(g.unseen, 2);
        assert!((g.lost_ms - 4.0).abs() < 1e-9, "{}", g.lost_ms);
        assert!((g.longest_ms - 2.5).abs() < 1e-9, "{}", g.longest_ms);
    }

    #[test]
    fn every_allowed_cpu_is_probed_for_the_duration() {
        let probed = probe(Duration::from_millis(50));
        assert_eq!(
            probed.iter().map(|c| c.cpu).collect::<Vec<_>>(),
            allowed_cpus()
        );
        for c in &probed {
            assert!(c.seconds >= 0.05, "{c:?}");
            assert!(c.lost_ms <= c.seconds * 1000.0, "{c:?}");
            assert!(c.over_1ms <= c.gaps && c.unseen <= c.gaps, "{c:?}");
            assert!(c.longest_ms <= c.lost_ms + 1e-9, "{c:?}");
        }
    }

    #[test]
    fn a_thread_reads_its_own_switch_count() {
        assert!(involuntary_switches().is_some());
    }
}
