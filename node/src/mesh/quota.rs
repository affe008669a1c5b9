//! Topic-creation quotas: how many topics and partitions one principal (a client's
//! PeerId, or a node forwarding for one) may create through this node per minute.
//!
//! Caps on what the mesh holds (`MAX_TOPICS`, `MAX_TOTAL_PARTITIONS`) stop unbounded
//! growth; this quota stops one client from using the whole budget in a burst. Pure
//! bookkeeping with time passed in; fixed one-minute windows, like Kafka's
//! `controller_mutation_rate` answered with THROTTLING_QUOTA_EXCEEDED.

use meshlog_protocol::{ErrorCode, WireError};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Topics one principal may create through this node per window.
pub const TOPIC_CREATIONS_PER_WINDOW: u32 = 30;
/// Partitions one principal may create through this node per window (three topics of
/// the maximum size).
pub const PARTITION_CREATIONS_PER_WINDOW: u64 = 30_000;
/// The quota window.
pub const QUOTA_WINDOW: Duration = Duration::from_secs(60);
/// Most principals tracked at once; more creating in one window are all throttled.
pub const MAX_QUOTA_PRINCIPALS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    topics: u32,
    partitions: u64,
}

/// Creations per principal in the current window.
#[derive(Debug, Default)]
pub struct CreationQuota {
    map: HashMap<String, Window>,
}

impl CreationQuota {
    /// Charge one creation of `partitions` partitions to `principal`, or refuse it with
    /// a retriable THROTTLING_QUOTA_EXCEEDED naming when to retry.
    pub fn admit(&mut self, principal: &str, partitions: u32, now: Instant) -> Result<(), WireError> {
        if !self.map.contains_key(principal) && self.map.len() >= MAX_QUOTA_PRINCIPALS {
            self.map.retain(|_, w| now.saturating_duration_since(w.start) < QUOTA_WINDOW);
            if self.map.len() >= MAX_QUOTA_PRINCIPALS {
                return Err(throttled(
                    "too many clients are creating topics at this node".into(),
                    QUOTA_WINDOW,
                ));
            }
        }
        let w =
            self.map.entry(principal.to_string()).or_insert(Window { start: now, topics: 0, partitions: 0 });
        if now.saturating_duration_since(w.start) >= QUOTA_WINDOW {
            *w = Window { start: now, topics: 0, partitions: 0 };
        }
        let retry = QUOTA_WINDOW.saturating_sub(now.saturating_duration_since(w.start));
        if w.topics >= TOPIC_CREATIONS_PER_WINDOW {
            return Err(throttled(
                format!("at most {TOPIC_CREATIONS_PER_WINDOW} topic creations a minute"),
                retry,
            ));
        }
        if w.partitions + partitions as u64 > PARTITION_CREATIONS_PER_WINDOW {
            return Err(throttled(
                format!("at most {PARTITION_CREATIONS_PER_WINDOW} partitions created a minute"),
                retry,
            ));
        }
        w.topics += 1;
        w.partitions += partitions as u64;
        Ok(())
    }
}

fn throttled(why: String, retry: Duration) -> WireError {
    WireError::new(
        ErrorCode::ThrottlingQuotaExceeded,
        format!("topic creation quota exceeded: {why}; retry in {} ms", retry.as_millis()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_past_the_quota_are_throttled_until_the_window_ends() {
        let (mut q, now) = (CreationQuota::default(), Instant::now());
        for _ in 0..TOPIC_CREATIONS_PER_WINDOW {
            q.admit("c1", 1, now).unwrap();
        }
        let e = q.admit("c1", 1, now).unwrap_err();
        assert_eq!(e.code, ErrorCode::ThrottlingQuotaExceeded, "{e}");
        q.admit("c2", 1, now).unwrap();
        q.admit("c1", 1, now + QUOTA_WINDOW).unwrap();
    }

    #[test]
    fn partitions_are_counted_too() {
        let (mut q, now) = (CreationQuota::default(), Instant::now());
        q.admit("c", 10_000, now).unwrap();
        q.admit("c", 10_000, now).unwrap();
        q.admit("c", 10_000, now).unwrap();
        assert_eq!(q.admit("c", 1, now).unwrap_err().code, ErrorCode::ThrottlingQuotaExceeded);
    }

    #[test]
    fn principals_tracked_are_bounded() {
        let (mut q, now) = (CreationQuota::default(), Instant::now());
        for i in 0..MAX_QUOTA_PRINCIPALS {
            q.admit(&i.to_string(), 1, now).unwrap();
        }
        assert!(q.admit("new", 1, now).is_err());
        q.admit("new", 1, now + QUOTA_WINDOW).unwrap();
        assert_eq!(q.map.len(), 1);
    }
}
