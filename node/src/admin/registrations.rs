//! The service instances registered through this node's HTTP API, with their health
//! checks: pure bookkeeping, time passed in.
//!
//! The mesh registry (`services.rs`) holds what discovery returns. This table holds
//! what the HTTP API was asked for: each instance's registration, its check, whether
//! it is healthy, and its TTL. A healthy instance is registered in the mesh registry
//! (and renewed by each keepalive); an unhealthy one is deregistered from it, so no
//! node's discovery returns it, and kept here so it comes back, registered afresh,
//! when a check passes again. The TTL counted here is authoritative for HTTP
//! registrations: a lapsed entry is dropped here and removed from the mesh registry.

use meshlog_protocol::messages::ServiceRegistration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most instances registered through one node's HTTP API.
pub const MAX_REGISTRATIONS: usize = 1024;
/// Shortest and longest check interval.
pub const CHECK_INTERVAL_MS: std::ops::RangeInclusive<u64> = 100..=3_600_000;
/// Check timeout when none is given (at most the interval).
pub const DEFAULT_CHECK_TIMEOUT_MS: u64 = 2_000;
/// Longest check timeout: a check holds the node's state until it ends, so a node
/// shutting down waits for it at most this long.
pub const MAX_CHECK_TIMEOUT_MS: u64 = 10_000;

/// (service name, instance id).
pub type Key = (String, String);

/// How an instance's health is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    /// `GET url` answers 2xx.
    Http(String),
    /// A TCP connection to `host:port` opens.
    Tcp(String),
}

/// A health check: what to probe, how often, how long to wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What to probe.
    pub probe: Probe,
    /// Time between checks.
    pub interval_ms: u64,
    /// A check not answered within this fails.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone)]
struct Held {
    reg: ServiceRegistration,
    check: Option<Check>,
    healthy: bool,
    expires_ms: u64,
    next_check_ms: u64,
    /// A check is running (its result is taken only if the entry is still this one).
    checking: bool,
    generation: u64,
}

/// What the mesh registry must be told after a change here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing.
    None,
    /// Register (or renew) this instance.
    Show(ServiceRegistration),
    /// Deregister this instance.
    Hide(Key),
}

/// An instance as `GET /v1/services/{name}/{id}/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// Service name.
    pub name: String,
    /// Instance id.
    pub instance_id: String,
    /// Whether discovery returns it.
    pub healthy: bool,
    /// Its check, if it has one.
    pub check: Option<Check>,
    /// Time left before it lapses without a keepalive.
    pub expires_in_ms: u64,
}

/// The table of HTTP registrations.
#[derive(Debug, Default)]
pub struct Registrations {
    held: BTreeMap<Key, Held>,
    generation: u64,
}

fn key_of(reg: &ServiceRegistration) -> Key {
    (reg.name.clone(), reg.instance_id.clone().unwrap_or_else(|| reg.endpoint.clone()))
}

impl Registrations {
    /// Put (or replace) an instance known to be `healthy` now; its next check is one
    /// interval away. Refused when the table is full.
    pub fn put(
        &mut self,
        reg: ServiceRegistration,
        check: Option<Check>,
        healthy: bool,
        now_ms: u64,
    ) -> Result<Change, String> {
        let key = key_of(&reg);
        if !self.held.contains_key(&key) && self.held.len() >= MAX_REGISTRATIONS {
            return Err(format!("this node holds {MAX_REGISTRATIONS} HTTP registrations, its limit"));
        }
        self.generation += 1;
        let was_healthy = self.held.get(&key).is_some_and(|h| h.healthy);
        let next_check_ms = now_ms + check.as_ref().map_or(0, |c| c.interval_ms);
        let expires_ms = now_ms + reg.ttl_ms;
        let held = Held {
            reg,
            check,
            healthy,
            expires_ms,
            next_check_ms,
            checking: false,
            generation: self.generation,
        };
        let change = match (healthy, was_healthy) {
            (true, _) => Change::Show(held.reg.clone()),
            (false, true) => Change::Hide(key.clone()),
            (false, false) => Change::None,
        };
        self.held.insert(key, held);
        Ok(change)
    }

    /// Renew an instance's TTL; `None` if it is not held (never registered here, or
    /// lapsed). A healthy one is renewed in the mesh registry too.
    pub fn keepalive(&mut self, key: &Key, now_ms: u64) -> Option<Change> {
        // A lapsed instance is gone even before the sweep drops it: no renewal revives it.
        let h = self.held.get_mut(key).filter(|h| h.expires_ms > now_ms)?;
        h.expires_ms = now_ms + h.reg.ttl_ms;
        Some(if h.healthy { Change::Show(h.reg.clone()) } else { Change::None })
    }

    /// Remove an instance; `None` if it is not held.
    pub fn remove(&mut self, key: &Key) -> Option<Change> {
        let h = self.held.remove(key)?;
        Some(if h.healthy { Change::Hide(key.clone()) } else { Change::None })
    }

    /// The checks due at `now_ms` (each marked running until its result comes back).
    pub fn due(&mut self, now_ms: u64) -> Vec<(Key, u64, Check)> {
        let mut due = Vec::new();
        for (key, h) in self.held.iter_mut() {
            let Some(check) = &h.check else { continue };
            if !h.checking && h.next_check_ms <= now_ms {
                h.checking = true;
                due.push((key.clone(), h.generation, check.clone()));
            }
        }
        due
    }

    /// A check's result: the instance shows or hides on a change of health. A result
    /// for an entry replaced or removed since the check began is dropped.
    pub fn checked(&mut self, key: &Key, generation: u64, healthy: bool, now_ms: u64) -> Change {
        let Some(h) = self.held.get_mut(key) else { return Change::None };
        if h.generation != generation {
            return Change::None;
        }
        h.checking = false;
        h.next_check_ms = now_ms + h.check.as_ref().map_or(0, |c| c.interval_ms);
        let was = std::mem::replace(&mut h.healthy, healthy);
        match (was, healthy) {
            (false, true) => Change::Show(h.reg.clone()),
            (true, false) => Change::Hide(key.clone()),
            _ => Change::None,
        }
    }

    /// Drop lapsed instances; returns the changes for the mesh registry.
    pub fn sweep(&mut self, now_ms: u64) -> Vec<Change> {
        let lapsed: Vec<Key> =
            self.held.iter().filter(|(_, h)| h.expires_ms <= now_ms).map(|(k, _)| k.clone()).collect();
        lapsed.iter().filter_map(|k| self.remove(k)).filter(|c| *c != Change::None).collect()
    }

    /// An instance's health, if held.
    pub fn health(&self, key: &Key, now_ms: u64) -> Option<Health> {
        self.held.get(key).map(|h| Health {
            name: key.0.clone(),
            instance_id: key.1.clone(),
            healthy: h.healthy,
            check: h.check.clone(),
            expires_in_ms: h.expires_ms.saturating_sub(now_ms),
        })
    }

    /// Instances held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: &str) -> ServiceRegistration {
        ServiceRegistration {
            name: "api".into(),
            instance_id: Some(id.into()),
            endpoint: "127.0.0.1:1".into(),
            ttl_ms: 10_000,
            meta: BTreeMap::new(),
        }
    }

    fn tcp() -> Option<Check> {
        Some(Check { probe: Probe::Tcp("127.0.0.1:1".into()), interval_ms: 1_000, timeout_ms: 500 })
    }

    fn key(id: &str) -> Key {
        ("api".into(), id.into())
    }

    #[test]
    fn an_instance_hides_when_its_check_fails_and_shows_when_it_passes() {
        let mut r = Registrations::default();
        assert_eq!(r.put(reg("a"), tcp(), true, 0).unwrap(), Change::Show(reg("a")));
        assert!(r.due(999).is_empty(), "not due before its interval");
        let due = r.due(1_000);
        assert_eq!(due.len(), 1);
        assert!(r.due(5_000).is_empty(), "a running check is not started twice");
        let (k, generation, _) = &due[0];
        assert_eq!(r.checked(k, *generation, false, 1_010), Change::Hide(key("a")));
        assert_eq!(r.keepalive(&key("a"), 1_020), Some(Change::None), "a hidden instance renews only here");
        let (k, generation, _) = r.due(2_010).remove(0);
        assert_eq!(r.checked(&k, generation, true, 2_020), Change::Show(reg("a")));
        assert_eq!(r.keepalive(&key("a"), 2_030), Some(Change::Show(reg("a"))));
        assert_eq!(r.remove(&key("a")), Some(Change::Hide(key("a"))));
        assert_eq!(r.keepalive(&key("a"), 2_040), None);
    }

    #[test]
    fn a_stale_check_result_is_dropped() {
        let mut r = Registrations::default();
        r.put(reg("a"), tcp(), true, 0).unwrap();
        let (k, generation, _) = r.due(1_000).remove(0);
        r.put(reg("a"), tcp(), true, 1_001).unwrap();
        assert_eq!(r.checked(&k, generation, false, 1_002), Change::None);
        assert!(r.health(&k, 1_002).unwrap().healthy);
    }

    #[test]
    fn lapsed_instances_are_swept_and_the_table_is_capped() {
        let mut r = Registrations::default();
        r.put(reg("up"), None, true, 0).unwrap();
        r.put(reg("down"), tcp(), false, 0).unwrap();
        r.keepalive(&key("up"), 5_000);
        assert_eq!(r.keepalive(&key("down"), 10_000), None, "lapsed, not yet swept: not renewed");
        assert_eq!(r.sweep(10_000), Vec::<Change>::new(), "the hidden one lapses silently");
        assert_eq!((r.len(), r.health(&key("up"), 10_000).unwrap().expires_in_ms), (1, 5_000));
        assert_eq!(r.sweep(15_000), vec![Change::Hide(key("up"))]);
        for i in 0..MAX_REGISTRATIONS {
            r.put(reg(&i.to_string()), None, true, 0).unwrap();
        }
        assert!(r.put(reg("one-more"), None, true, 0).is_err());
        r.put(reg("0"), None, false, 0).unwrap();
    }
}
