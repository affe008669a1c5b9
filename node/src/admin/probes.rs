//! Kubernetes probes: `/healthz` says the process serves HTTP (liveness: restart it if
//! not); `/readyz` says the node is worth sending traffic to (readiness): its store has
//! not failed, it has joined the mesh (when told to join one), and no partition held
//! here has gone without a leader for longer than the election timeout (an election
//! that takes longer means this node cannot reach a quorum).
//!
//! [`Leaderless`] is the pure bookkeeping of when each held partition lost its leader;
//! time is passed in.

use super::Admin;
use crate::sync::lock;
use crate::time::monotonic_ms;
use serde::Serialize;
use std::collections::HashMap;

/// When each held partition was first seen without a leader.
#[derive(Debug, Default)]
pub struct Leaderless {
    since_ms: HashMap<(String, u32), u64>,
}

impl Leaderless {
    /// Note which held partitions (`(topic, partition, has a leader)`) have a leader at
    /// `now_ms`; returns those without one for longer than `limit_ms`, sorted.
    pub fn observe(
        &mut self,
        held: impl IntoIterator<Item = (String, u32, bool)>,
        now_ms: u64,
        limit_ms: u64,
    ) -> Vec<(String, u32)> {
        let mut seen = HashMap::with_capacity(self.since_ms.len());
        for (topic, p, has_leader) in held {
            if has_leader {
                continue;
            }
            let key = (topic, p);
            let since = self.since_ms.get(&key).copied().unwrap_or(now_ms);
            seen.insert(key, since);
        }
        self.since_ms = seen;
        let mut late: Vec<(String, u32)> = self
            .since_ms
            .iter()
            .filter(|(_, since)| now_ms.saturating_sub(**since) > limit_ms)
            .map(|(k, _)| k.clone())
            .collect();
        late.sort();
        late
    }
}

/// The readiness answer (also the body of `/readyz`).
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// All of the below hold.
    pub ready: bool,
    /// The store has not failed a flush.
    pub store_ok: bool,
    /// Another member is up, or this node was not told to join any.
    pub joined: bool,
    /// Members up, this node included.
    pub members_up: usize,
    /// Partitions held here that have been without a leader beyond the election timeout.
    pub leaderless: Vec<String>,
}

/// Every held partition as (topic, partition, has a leader).
fn held(admin: &Admin) -> Vec<(String, u32, bool)> {
    let mut out = Vec::new();
    for t in admin.broker().topics().all() {
        for (p, r) in t.held() {
            out.push((t.info.name.clone(), p, r.view().leader.is_some()));
        }
    }
    out
}

/// Look at the held partitions now (the background task does, so a partition's
/// leaderless time is known to within its period).
pub fn sample(admin: &Admin) -> Vec<(String, u32)> {
    let held = held(admin);
    lock(&admin.leaderless).observe(held, monotonic_ms(), admin.settings.election_timeout_ms)
}

/// Whether this node is ready, and why not.
pub fn readiness(admin: &Admin) -> Readiness {
    let late = sample(admin);
    let store_ok = !admin.store.fsync_failed();
    let members_up = admin.mesh().live_nodes().len();
    let joined = !admin.settings.expects_peers || members_up > 1;
    Readiness {
        ready: store_ok && joined && late.is_empty(),
        store_ok,
        joined,
        members_up,
        leaderless: late.into_iter().map(|(t, p)| format!("{t}-{p}")).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(no_leader: &[u32]) -> Vec<(String, u32, bool)> {
        (0..4).map(|p| ("t".to_string(), p, !no_leader.contains(&p))).collect()
    }

    #[test]
    fn a_partition_is_late_once_leaderless_beyond_the_limit() {
        let mut l = Leaderless::default();
        assert!(l.observe(held(&[1]), 1_000, 700).is_empty(), "just lost");
        assert!(l.observe(held(&[1, 2]), 1_700, 700).is_empty(), "exactly the limit is not beyond it");
        assert_eq!(l.observe(held(&[1, 2]), 1_701, 700), vec![("t".to_string(), 1)]);
        // A leader again forgets the mark; losing it again starts a new one.
        assert!(l.observe(held(&[2]), 2_000, 700).is_empty());
        assert_eq!(l.observe(held(&[1, 2]), 2_500, 700), vec![("t".to_string(), 2)]);
        assert_eq!(l.since_ms[&("t".to_string(), 1)], 2_500);
    }
}
