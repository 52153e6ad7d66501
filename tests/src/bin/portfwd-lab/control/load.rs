//! The load: cycles of `AddPortMapping` + `DeletePortMapping` from worker threads in the LAN
//! host's namespace, and filling the table with mappings beforehand. Every loop is bounded
//! by a deadline and a count, and ends early on Ctrl-C.

use std::{
    collections::BTreeMap,
    fmt,
    ops::Range,
    sync::{
        Arc, Barrier,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use portfwd_tests::{LAN_HOST, Netns};

use super::soap::{CallError, Igd};

/// Worker `w` cycles TCP port `CYCLE_PORT + w` (external = internal): ports of their own, so
/// that workers never collide, below the filled ones and below the ephemeral ports of
/// [`super::conns`].
pub const CYCLE_PORT: u16 = 2000;
/// The filled mappings take ports from here up.
pub const FILL_PORT: u16 = 3000;
/// At most this many cycles per worker and measurement, whatever the duration.
const MAX_CYCLES: u64 = 1_000_000;

/// Failed calls, by what went wrong.
#[derive(Clone, Debug, Default)]
pub struct Errors(BTreeMap<CallError, u64>);

impl Errors {
    fn add(&mut self, error: CallError) {
        *self.0.entry(error).or_default() += 1;
    }

    fn merge(&mut self, other: Self) {
        for (error, n) in other.0 {
            *self.0.entry(error).or_default() += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

impl fmt::Display for Errors {
    /// `0`, or the total and each kind: `3 (2× HTTP 500 UPnP error 718, 1× connect: ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("0");
        }
        let kinds: Vec<String> = self.0.iter().map(|(e, n)| format!("{n}× {e}")).collect();
        write!(f, "{} ({})", self.total(), kinds.join(", "))
    }
}

/// One measurement of cycles.
#[derive(Clone, Debug)]
pub struct Rate {
    /// Calls answered `200 OK`.
    pub ok: u64,
    pub errors: Errors,
    /// From the start to the last worker's end.
    pub elapsed: Duration,
    /// Latency of one call (connect, request, whole answer), over the successful calls.
    pub p50: Duration,
    pub p99: Duration,
}

impl Rate {
    /// Successful calls per second.
    pub fn per_second(&self) -> f64 {
        per_second(self.ok, self.elapsed)
    }
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "a rate")]
    let count = count as f64;
    count / elapsed.as_secs_f64().max(1e-9)
}

/// What one worker saw.
struct Worker {
    ok: u64,
    errors: Errors,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// `workers` threads in `lan`, each cycling `AddPortMapping` + `DeletePortMapping` of its own
/// port against `igd` for `duration` (the cycle under way at the deadline is finished, so each
/// worker leaves its port unmapped).
pub fn cycles(lan: &Netns, igd: &Igd, workers: usize, duration: Duration) -> Rate {
    let barrier = Arc::new(Barrier::new(workers));
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let igd = igd.clone();
            let barrier = Arc::clone(&barrier);
            let port = CYCLE_PORT + u16::try_from(w).expect("a few workers");
            lan.spawn(move || {
                barrier.wait();
                cycle(&igd, port, duration)
            })
        })
        .collect();
    let mut rate = Rate {
        ok: 0,
        errors: Errors::default(),
        elapsed: Duration::ZERO,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
    };
    let mut latencies = Vec::new();
    for handle in handles {
        let worker = handle.join().expect("a cycling worker panicked");
        rate.ok += worker.ok;
        rate.errors.merge(worker.errors);
        rate.elapsed = rate.elapsed.max(worker.elapsed);
        latencies.extend(worker.latencies);
    }
    latencies.sort_unstable();
    rate.p50 = percentile(&latencies, 500);
    rate.p99 = percentile(&latencies, 990);
    rate
}

fn cycle(igd: &Igd, port: u16, duration: Duration) -> Worker {
    let start = Instant::now();
    let mut worker = Worker {
        ok: 0,
        errors: Errors::default(),
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    let mut record = |began: Instant, result: Result<(), CallError>| match result {
        Ok(()) => {
            worker.ok += 1;
            worker.latencies.push(began.elapsed());
        }
        Err(error) => worker.errors.add(error),
    };
    for _ in 0..MAX_CYCLES {
        if start.elapsed() >= duration || crate::interrupted() {
            break;
        }
        let began = Instant::now();
        record(began, igd.add(port, LAN_HOST));
        let began = Instant::now();
        record(began, igd.delete(port));
    }
    worker.elapsed = start.elapsed();
    worker
}

/// The `permille`th percentile (nearest rank) of sorted `values`; zero if there are none.
fn percentile(values: &[Duration], permille: usize) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let rank = (values.len() * permille).div_ceil(1000).max(1);
    values[rank - 1]
}

/// Filling the table.
#[derive(Clone, Debug)]
pub struct Fill {
    /// How many mappings were asked for.
    pub target: usize,
    /// How many were added.
    pub added: usize,
    pub errors: Errors,
    pub elapsed: Duration,
}

impl Fill {
    pub fn complete(&self) -> bool {
        self.added == self.target
    }

    /// Mappings added per second.
    pub fn per_second(&self) -> f64 {
        per_second(u64::try_from(self.added).expect("small"), self.elapsed)
    }
}

/// Adds a mapping for each of `ports` (to the same port of the LAN host) from `workers`
/// threads in `lan`, each taking the next port, until all are added or `limit` has passed.
pub fn fill(lan: &Netns, igd: &Igd, ports: Range<u16>, workers: usize, limit: Duration) -> Fill {
    let target = ports.len();
    let next = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(workers + 1));
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (igd, next, barrier, ports) = (
                igd.clone(),
                Arc::clone(&next),
                Arc::clone(&barrier),
                ports.clone(),
            );
            lan.spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let (mut added, mut errors) = (0, Errors::default());
                // Bounded by the number of ports: each is taken once.
                while start.elapsed() < limit && !crate::interrupted() {
                    let Some(port) = ports.clone().nth(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    match igd.add(port, LAN_HOST) {
                        Ok(()) => added += 1,
                        Err(error) => errors.add(error),
                    }
                }
                (added, errors)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut fill = Fill {
        target,
        added: 0,
        errors: Errors::default(),
        elapsed: Duration::ZERO,
    };
    for handle in handles {
        let (added, errors) = handle.join().expect("a filling worker panicked");
        fill.added += added;
        fill.errors.merge(errors);
    }
    fill.elapsed = start.elapsed();
    fill
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 500), Duration::from_millis(50));
        assert_eq!(percentile(&values, 990), Duration::from_millis(99));
        assert_eq!(percentile(&values[..1], 990), Duration::from_millis(1));
        assert_eq!(percentile(&[], 500), Duration::ZERO);
    }

    #[test]
    fn errors_read_by_kind() {
        let mut errors = Errors::default();
        assert_eq!(errors.to_string(), "0");
        errors.add(CallError::Status {
            status: 500,
            upnp: Some(718),
        });
        errors.add(CallError::Status {
            status: 500,
            upnp: Some(718),
        });
        errors.add(CallError::Malformed);
        assert_eq!(
            errors.to_string(),
            "3 (2× HTTP 500 UPnP error 718, 1× not an HTTP answer)"
        );
    }
}
