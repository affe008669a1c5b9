//! The service registry: a Consul-free registry of service endpoints on the mesh.
//!
//! A registration lives at the node it was made through, with a TTL counted on that
//! node's monotonic clock; a registration that is not renewed lapses. The node announces
//! in the Kademlia DHT that it provides the service's key, so discovery from any node is:
//! find the providers of `/meshlog/service/<name>`, ask each (over its authenticated
//! connection) for its live instances, merge. A provider that is gone costs a failed
//! query, never a wrong answer: only live instances held by reachable nodes are listed.
//!
//! An instance belongs to the principal that registered it (the client's PeerId, or the
//! node's for a forwarded request): only it may overwrite or remove it. A provider's
//! answer is filtered to what that provider may say: instances of the asked name that it
//! holds. Every collection has a cap (`MAX_*` below).

use crate::network::{NetworkHandle, PeerId, ToNodeId};
use crate::resilience::{CallKind, Resilience};
use meshlog_protocol::mesh::{ServiceInstance, SERVICE_KEY_PREFIX};
use meshlog_protocol::messages::{PeerRequest, PeerResponse, ServiceRegistration};
use meshlog_protocol::types::validate_topic_name;
use meshlog_protocol::{ErrorCode, NodeId, WireError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shortest TTL accepted.
pub const MIN_TTL_MS: u64 = 1_000;
/// Longest TTL accepted.
pub const MAX_TTL_MS: u64 = 24 * 3600 * 1000;
/// Longest endpoint accepted.
const MAX_ENDPOINT_LEN: usize = 2048;
/// Longest instance id accepted.
const MAX_INSTANCE_ID_LEN: usize = 256;
/// Most metadata pairs per instance.
const MAX_META: usize = 64;
/// Longest metadata key, in bytes.
const MAX_META_KEY_BYTES: usize = 128;
/// Longest metadata value, in bytes.
const MAX_META_VALUE_BYTES: usize = 1024;
/// Most metadata bytes (keys and values) per instance.
const MAX_META_BYTES: usize = 8 << 10;
/// Most distinct service names one node holds registrations of.
pub const MAX_SERVICES_PER_NODE: usize = 1024;
/// Most instances of one service one node holds.
pub const MAX_INSTANCES_PER_SERVICE: usize = 256;
/// Most instances one node holds in all (so at most ~16k x ~12 KiB = ~200 MiB worst case;
/// realistic instances are a few hundred bytes).
pub const MAX_INSTANCES_PER_NODE: usize = 16_384;
/// Most providers asked in one discovery.
const MAX_PROVIDERS_ASKED: usize = 256;

type Key = (String, String);

/// One registration: the instance, when it lapses, and who registered it.
#[derive(Debug, Clone)]
struct Entry {
    inst: ServiceInstance,
    expires: Instant,
    owner: String,
}

/// The registrations held by this node, with their owners and caps: pure bookkeeping
/// with time passed in.
#[derive(Debug, Default)]
struct Registry {
    entries: BTreeMap<Key, Entry>,
    /// Live-or-unswept instances per service name.
    per_name: BTreeMap<String, usize>,
}

impl Registry {
    /// Register or renew `inst` for `owner`; returns whether it is the first instance of
    /// its name here (the name must then be provided in the DHT).
    fn register(&mut self, inst: ServiceInstance, owner: &str, now: Instant) -> Result<bool, WireError> {
        let key = (inst.name.clone(), inst.instance_id.clone());
        if self.entries.get(&key).is_some_and(|e| e.expires <= now) {
            self.remove(&key);
        }
        match self.entries.get(&key) {
            Some(e) if e.owner != owner => return Err(not_owner(&key, &e.owner)),
            Some(_) => {}
            None => self.check_room(&inst.name)?,
        }
        let expires = now + Duration::from_millis(inst.ttl_ms);
        let first = !self.per_name.contains_key(&inst.name);
        if self.entries.insert(key, Entry { inst: inst.clone(), expires, owner: owner.to_string() }).is_none()
        {
            *self.per_name.entry(inst.name).or_default() += 1;
        }
        Ok(first)
    }

    fn check_room(&self, name: &str) -> Result<(), WireError> {
        let full = |m: String| Err(WireError::new(ErrorCode::PolicyViolation, m));
        if self.entries.len() >= MAX_INSTANCES_PER_NODE {
            return full(format!("this node holds {MAX_INSTANCES_PER_NODE} service instances, its limit"));
        }
        match self.per_name.get(name) {
            Some(&n) if n >= MAX_INSTANCES_PER_SERVICE => full(format!(
                "service '{name}' has {n} instances at this node, the limit is {MAX_INSTANCES_PER_SERVICE}"
            )),
            None if self.per_name.len() >= MAX_SERVICES_PER_NODE => {
                full(format!("this node holds {MAX_SERVICES_PER_NODE} services, its limit"))
            }
            _ => Ok(()),
        }
    }

    /// Remove an instance for `owner`; returns whether it was the last of its name.
    fn deregister(&mut self, key: &Key, owner: &str) -> Result<bool, WireError> {
        match self.entries.get(key) {
            None => Err(WireError::new(
                ErrorCode::UnknownService,
                format!("no instance '{}' of service '{}' is registered at this node", key.1, key.0),
            )),
            Some(e) if e.owner != owner => Err(not_owner(key, &e.owner)),
            Some(_) => Ok(self.remove(key)),
        }
    }

    /// Remove an entry; returns whether it was the last of its name.
    fn remove(&mut self, key: &Key) -> bool {
        if self.entries.remove(key).is_none() {
            return false;
        }
        let Some(n) = self.per_name.get_mut(&key.0) else { return false };
        *n -= 1;
        if *n == 0 {
            self.per_name.remove(&key.0);
            return true;
        }
        false
    }

    /// Drop lapsed entries; returns the names with none left.
    fn sweep(&mut self, now: Instant) -> Vec<String> {
        let lapsed: Vec<Key> =
            self.entries.iter().filter(|(_, e)| e.expires <= now).map(|(k, _)| k.clone()).collect();
        let mut gone = Vec::new();
        for key in lapsed {
            tracing::info!(service = %key.0, instance = %key.1, "registration lapsed");
            if self.remove(&key) {
                gone.push(key.0);
            }
        }
        gone
    }

    /// Live instances (of one service, or all).
    fn live(&self, name: Option<&str>, now: Instant) -> Vec<ServiceInstance> {
        self.entries
            .iter()
            .filter(|((n, _), e)| name.is_none_or(|want| want == n) && e.expires > now)
            .map(|(_, e)| ServiceInstance {
                expires_in_ms: e.expires.duration_since(now).as_millis() as u64,
                ..e.inst.clone()
            })
            .collect()
    }
}

fn not_owner(key: &Key, owner: &str) -> WireError {
    WireError::new(
        ErrorCode::NotOwner,
        format!(
            "instance '{}' of service '{}' was registered by {owner}: only it may change or remove \
             it (use the same --identity), or let it lapse after its TTL",
            key.1, key.0
        ),
    )
}

/// Check a registration's sizes (also used by the admin port before it holds one).
pub fn validate(reg: &ServiceRegistration) -> Result<(), WireError> {
    validate_topic_name(&reg.name)
        .map_err(|e| WireError::new(ErrorCode::InvalidRequest, e.message.replace("topic", "service")))?;
    let bad = |m: String| Err(WireError::new(ErrorCode::InvalidRequest, m));
    if reg.endpoint.is_empty() || reg.endpoint.len() > MAX_ENDPOINT_LEN {
        return bad(format!("endpoint must be 1 to {MAX_ENDPOINT_LEN} bytes"));
    }
    if reg.instance_id.as_ref().is_some_and(|id| id.is_empty() || id.len() > MAX_INSTANCE_ID_LEN) {
        return bad(format!("instance id must be 1 to {MAX_INSTANCE_ID_LEN} bytes"));
    }
    if !(MIN_TTL_MS..=MAX_TTL_MS).contains(&reg.ttl_ms) {
        return bad(format!("ttl_ms={} must be between {MIN_TTL_MS} and {MAX_TTL_MS}", reg.ttl_ms));
    }
    if reg.meta.len() > MAX_META {
        return bad(format!("at most {MAX_META} metadata pairs"));
    }
    if reg.meta.iter().any(|(k, v)| k.len() > MAX_META_KEY_BYTES || v.len() > MAX_META_VALUE_BYTES) {
        return bad(format!(
            "metadata keys are at most {MAX_META_KEY_BYTES} bytes and values at most {MAX_META_VALUE_BYTES}"
        ));
    }
    if reg.meta.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_META_BYTES {
        return bad(format!("at most {MAX_META_BYTES} bytes of metadata"));
    }
    Ok(())
}

/// What a provider may say: live-looking instances of the asked name that it holds, at
/// most as many as one node may hold.
fn accept_answer(provider: &str, name: Option<&str>, list: Vec<ServiceInstance>) -> Vec<ServiceInstance> {
    let dropped = list.len();
    let kept: Vec<ServiceInstance> = list
        .into_iter()
        .filter(|i| i.node == provider && name.is_none_or(|n| n == i.name))
        .filter(|i| i.ttl_ms <= MAX_TTL_MS && i.expires_in_ms <= i.ttl_ms)
        .take(MAX_INSTANCES_PER_NODE)
        .collect();
    if kept.len() < dropped {
        tracing::warn!(%provider, dropped = dropped - kept.len(), "service answer held instances it may not name");
    }
    kept
}

/// Registrations held by this node.
pub struct Services {
    net: NetworkHandle,
    resilience: Arc<Resilience>,
    local: NodeId,
    registry: Mutex<Registry>,
    lookup_timeout: Duration,
}

fn service_key(name: &str) -> String {
    format!("{SERVICE_KEY_PREFIX}{name}")
}

impl Services {
    /// An empty registry.
    pub fn new(net: NetworkHandle, resilience: Arc<Resilience>, lookup_timeout: Duration) -> Services {
        let local = net.local_peer_id().node_id();
        Services { local, net, resilience, registry: Mutex::new(Registry::default()), lookup_timeout }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        crate::sync::lock(&self.registry)
    }

    /// Register or renew an instance for `owner` (the PeerId that asked): an instance
    /// registered by another principal is not overwritten.
    pub async fn register(
        &self,
        reg: ServiceRegistration,
        owner: &str,
    ) -> Result<ServiceInstance, WireError> {
        validate(&reg)?;
        let instance_id = reg.instance_id.unwrap_or_else(|| reg.endpoint.clone());
        let inst = ServiceInstance {
            name: reg.name.clone(),
            instance_id: instance_id.clone(),
            endpoint: reg.endpoint,
            meta: reg.meta,
            ttl_ms: reg.ttl_ms,
            node: self.local.clone(),
            expires_in_ms: reg.ttl_ms,
        };
        let first = self.registry().register(inst.clone(), owner, Instant::now())?;
        if first {
            self.net.start_providing(service_key(&reg.name)).await;
        }
        Ok(inst)
    }

    /// Remove an instance registered here by `owner`.
    pub async fn deregister(&self, name: &str, instance_id: &str, owner: &str) -> Result<(), WireError> {
        let key = (name.to_string(), instance_id.to_string());
        let last = self.registry().deregister(&key, owner)?;
        if last {
            self.net.stop_providing(service_key(name)).await;
        }
        Ok(())
    }

    /// Drop lapsed registrations (and stop providing names with none left).
    pub async fn sweep(&self) {
        let gone = self.registry().sweep(Instant::now());
        for name in gone {
            self.net.stop_providing(service_key(&name)).await;
        }
    }

    /// Live instances held here (of one service, or all).
    pub fn local(&self, name: Option<&str>) -> Vec<ServiceInstance> {
        self.registry().live(name, Instant::now())
    }

    /// Live instances of `name` across the mesh: this node's and every reachable provider's.
    pub async fn discover(&self, name: &str) -> Vec<ServiceInstance> {
        let providers = tokio::time::timeout(self.lookup_timeout, self.net.get_providers(service_key(name)))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        self.gather(providers, Some(name)).await
    }

    /// Every live instance across `nodes` (and this node).
    pub async fn gather(&self, nodes: Vec<PeerId>, name: Option<&str>) -> Vec<ServiceInstance> {
        let mut all = self.local(name);
        let me = self.net.local_peer_id();
        // Only live endpoints: a provider that cannot be reached (or whose breaker is
        // open) contributes nothing.
        let asks = nodes.into_iter().filter(|p| *p != me).take(MAX_PROVIDERS_ASKED).map(|p| async move {
            let req =
                || self.net.peer_request(p, PeerRequest::LocalServices { name: name.map(str::to_string) });
            (p, self.resilience.call(&p, CallKind::Metadata, req).await)
        });
        for (p, r) in futures::future::join_all(asks).await {
            if let Ok(PeerResponse::Services(list)) = r {
                all.extend(accept_answer(&p.to_string(), name, list));
            }
        }
        all.sort_by(|a, b| (&a.name, &a.node, &a.instance_id).cmp(&(&b.name, &b.node, &b.instance_id)));
        all.dedup_by(|a, b| (&a.name, &a.node, &a.instance_id) == (&b.name, &b.node, &b.instance_id));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(name: &str, id: &str, node: &str) -> ServiceInstance {
        ServiceInstance {
            name: name.into(),
            instance_id: id.into(),
            endpoint: "http://x".into(),
            meta: BTreeMap::new(),
            ttl_ms: 10_000,
            node: node.into(),
            expires_in_ms: 5_000,
        }
    }

    #[test]
    fn only_the_registering_principal_may_overwrite_or_remove() {
        let (mut r, now) = (Registry::default(), Instant::now());
        assert!(r.register(inst("api", "i1", "n"), "alice", now).unwrap());
        assert!(!r.register(inst("api", "i1", "n"), "alice", now).unwrap(), "a renewal");
        let key = ("api".to_string(), "i1".to_string());
        assert_eq!(r.register(inst("api", "i1", "n"), "mallory", now).unwrap_err().code, ErrorCode::NotOwner);
        assert_eq!(r.deregister(&key, "mallory").unwrap_err().code, ErrorCode::NotOwner);
        assert_eq!(r.live(Some("api"), now).len(), 1);
        assert!(r.deregister(&key, "alice").unwrap(), "the last instance of its name");
        // Once lapsed, the id is free for anyone.
        r.register(inst("api", "i1", "n"), "alice", now).unwrap();
        let later = now + Duration::from_millis(10_001);
        r.register(inst("api", "i1", "n"), "bob", later).unwrap();
    }

    #[test]
    fn instances_and_services_are_capped() {
        let (mut r, now) = (Registry::default(), Instant::now());
        for i in 0..MAX_INSTANCES_PER_SERVICE {
            r.register(inst("api", &format!("i{i}"), "n"), "a", now).unwrap();
        }
        let e = r.register(inst("api", "one-more", "n"), "a", now).unwrap_err();
        assert_eq!(e.code, ErrorCode::PolicyViolation, "{e}");
        for i in 1..MAX_SERVICES_PER_NODE {
            r.register(inst(&format!("s{i}"), "i", "n"), "a", now).unwrap();
        }
        let e = r.register(inst("one-more", "i", "n"), "a", now).unwrap_err();
        assert_eq!(e.code, ErrorCode::PolicyViolation, "{e}");
        assert_eq!(r.sweep(now + Duration::from_millis(10_001)).len(), MAX_SERVICES_PER_NODE);
        assert!(r.entries.is_empty() && r.per_name.is_empty());
    }

    #[test]
    fn oversized_metadata_is_refused() {
        let reg = |meta: BTreeMap<String, String>| ServiceRegistration {
            name: "api".into(),
            instance_id: None,
            endpoint: "http://x".into(),
            meta,
            ttl_ms: 10_000,
        };
        assert!(validate(&reg(BTreeMap::new())).is_ok());
        let big = BTreeMap::from([("k".to_string(), "v".repeat(MAX_META_VALUE_BYTES + 1))]);
        assert_eq!(validate(&reg(big)).unwrap_err().code, ErrorCode::InvalidRequest);
        let many: BTreeMap<String, String> =
            (0..16).map(|i| (format!("k{i}"), "v".repeat(MAX_META_VALUE_BYTES))).collect();
        assert_eq!(validate(&reg(many)).unwrap_err().code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn a_provider_may_only_answer_for_its_own_instances_of_the_asked_name() {
        let answer = vec![inst("api", "1", "p"), inst("api", "2", "other"), inst("db", "3", "p")];
        let kept = accept_answer("p", Some("api"), answer.clone());
        assert_eq!(kept, vec![inst("api", "1", "p")]);
        assert_eq!(accept_answer("p", None, answer).len(), 2);
    }
}
