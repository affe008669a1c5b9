//! The node's two clocks, named for what they measure. Owns nothing else.
//!
//! - [`monotonic_ms`]: milliseconds since this process started, never going back: the
//!   `now` that the sans-IO cores (replica, group state) are stepped with and that every
//!   timeout is measured on.
//! - [`unix_ms`]: wall-clock milliseconds since the Unix epoch: only for values a person or
//!   another process reads (record timestamps, commit times, creation times). It can jump.

use std::sync::LazyLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds on this process's monotonic clock, counted from its first call.
pub fn monotonic_ms() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    START.elapsed().as_millis() as u64
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is set before 1970).
pub fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_never_goes_back() {
        let a = monotonic_ms();
        let b = monotonic_ms();
        assert!(b >= a);
    }

    #[test]
    fn the_wall_clock_is_after_2020() {
        assert!(unix_ms() > 1_577_836_800_000);
    }
}
