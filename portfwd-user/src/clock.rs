//! Time: seconds since the Unix epoch for what is saved and shown, and calendar times for
//! people. The share table's deadlines are monotonic (`std::time::Instant`); these turn them
//! into wall-clock times that survive a restart.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch now.
#[must_use]
pub fn unix_now() -> u64 {
    wall_deadline(Duration::ZERO)
}

/// Seconds since the Unix epoch at `now + after`.
#[must_use]
pub fn wall_deadline(after: Duration) -> u64 {
    (SystemTime::now() + after)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The most [`wall_remaining`] gives. No lease is granted for longer (IGD:2 caps them at a
/// week), so a deadline further away comes from a damaged state file; and the monotonic
/// `Instant` the time left is added to would overflow, as `SystemTime` does, long before
/// `u64::MAX` seconds.
pub const MAX_REMAINING: Duration = Duration::from_hours(100 * 365 * 24);

/// Time left until `deadline` (seconds since the Unix epoch); zero once it has passed, and at
/// most [`MAX_REMAINING`].
#[must_use]
pub fn wall_remaining(deadline: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    Duration::from_secs(deadline)
        .saturating_sub(now)
        .min(MAX_REMAINING)
}

/// A UTC calendar time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    /// 1-12.
    pub month: u8,
    /// 1-31.
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// 0 for Thursday (1970-01-01 was one), up to 6.
    pub weekday_from_thursday: usize,
}

impl Civil {
    /// The calendar time `secs` seconds after the Unix epoch (Howard Hinnant's
    /// `civil_from_days`).
    #[must_use]
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "each part is range-bound by the arithmetic"
    )]
    pub fn from_unix(secs: u64) -> Self {
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Self {
            year: yoe + era * 400 + i64::from(month <= 2),
            month: month as u8,
            day: day as u8,
            hour: (rem / 3600) as u8,
            minute: (rem % 3600 / 60) as u8,
            second: (rem % 60) as u8,
            weekday_from_thursday: days.rem_euclid(7) as usize,
        }
    }

    /// RFC 3339, `2026-11-21T09:30:00Z`.
    #[must_use]
    pub fn rfc3339(self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// `CLOCK_BOOTTIME` now, in nanoseconds: the clock the XDP programs read lease deadlines
/// against (`bpf_ktime_get_boot_ns`).
#[must_use]
pub fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut ts) };
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

/// One instant of the table's monotonic clock and of `CLOCK_BOOTTIME`, taken together: turns
/// the table's deadlines into the data plane's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootClock {
    pub now: std::time::Instant,
    pub boot_ns: u64,
}

impl BootClock {
    /// The clocks now.
    #[must_use]
    pub fn read(now: std::time::Instant) -> Self {
        Self {
            now,
            boot_ns: boot_ns(),
        }
    }

    /// `deadline` in `CLOCK_BOOTTIME` nanoseconds (never 0, which means "no deadline").
    #[must_use]
    pub fn boot(self, deadline: std::time::Instant) -> u64 {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if deadline >= self.now {
            self.boot_ns
                .saturating_add(nanos(deadline - self.now))
                .max(1)
        } else {
            self.boot_ns
                .saturating_sub(nanos(self.now - deadline))
                .max(1)
        }
    }

    /// How far `later`'s boot time is from what this pairing of the clocks says it should
    /// be: the time the box was suspended in between (`CLOCK_BOOTTIME` counts it, the
    /// monotonic clock does not). The pairing is kept while they agree, so that the same
    /// deadline always maps to the same value.
    #[must_use]
    pub fn drift(self, later: Self) -> Duration {
        Duration::from_nanos(self.boot(later.now).abs_diff(later.boot_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_is_bounded_whatever_the_deadline() {
        // Found by the store fuzz target: a saved lease ending at u64::MAX seconds overflowed
        // `SystemTime` when the daemon restored it at start.
        assert_eq!(wall_remaining(u64::MAX), MAX_REMAINING);
        assert_eq!(wall_remaining(0), Duration::ZERO);
        let left = wall_remaining(unix_now() + 100);
        assert!(
            left <= Duration::from_secs(100) && left >= Duration::from_secs(98),
            "{left:?}"
        );
        assert!(
            std::time::Instant::now()
                .checked_add(MAX_REMAINING)
                .is_some()
        );
    }
}
