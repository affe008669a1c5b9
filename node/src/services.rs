//! The service registry: a Consul-free registry of service endpoints on the mesh.
//!
//! A registration lives at the node it was made through, with a TTL counted on that
//! node's monotonic clock; a registration that is not renewed lapses. The node announces
//! in the Kademlia DHT that it provides the service's key, so discovery from any node is:
//! find the providers of `/meshlog/service/<name>`, ask each (over its authenticated
//! connection) for its live instances, merge. A provider that is gone costs a failed
//! query, never a wrong answer: only live instances held by reachable nodes are listed.

use crate::network::{NetworkHandle, PeerId};
use crate::resilience::{CallKind, Resilience};
use meshlog_protocol::mesh::{ServiceInstance, SERVICE_KEY_PREFIX};
use meshlog_protocol::messages::{PeerRequest, PeerResponse, ServiceRegistration};
use meshlog_protocol::types::validate_topic_name;
use meshlog_protocol::{ErrorCode, WireError};
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
/// Most metadata pairs per instance.
const MAX_META: usize = 64;

type Key = (String, String);

/// Registrations held by this node.
pub struct Services {
    net: NetworkHandle,
    resilience: Arc<Resilience>,
    local: String,
    entries: Mutex<BTreeMap<Key, (ServiceInstance, Instant)>>,
    lookup_timeout: Duration,
}

fn service_key(name: &str) -> String {
    format!("{SERVICE_KEY_PREFIX}{name}")
}

impl Services {
    /// An empty registry.
    pub fn new(net: NetworkHandle, resilience: Arc<Resilience>, lookup_timeout: Duration) -> Services {
        let local = net.local_peer_id().to_string();
        Services { local, net, resilience, entries: Mutex::new(BTreeMap::new()), lookup_timeout }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, (ServiceInstance, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register or renew an instance.
    pub async fn register(&self, reg: ServiceRegistration) -> Result<ServiceInstance, WireError> {
        validate_topic_name(&reg.name)
            .map_err(|e| WireError::new(ErrorCode::InvalidRequest, e.message.replace("topic", "service")))?;
        let bad = |m: String| Err(WireError::new(ErrorCode::InvalidRequest, m));
        if reg.endpoint.is_empty() || reg.endpoint.len() > MAX_ENDPOINT_LEN {
            return bad(format!("endpoint must be 1 to {MAX_ENDPOINT_LEN} bytes"));
        }
        if !(MIN_TTL_MS..=MAX_TTL_MS).contains(&reg.ttl_ms) {
            return bad(format!("ttl_ms={} must be between {MIN_TTL_MS} and {MAX_TTL_MS}", reg.ttl_ms));
        }
        if reg.meta.len() > MAX_META {
            return bad(format!("at most {MAX_META} metadata pairs"));
        }
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
        let first = {
            let mut e = self.entries();
            let first = !e.keys().any(|(n, _)| *n == reg.name);
            let expires = Instant::now() + Duration::from_millis(reg.ttl_ms);
            e.insert((reg.name.clone(), instance_id), (inst.clone(), expires));
            first
        };
        if first {
            self.net.start_providing(service_key(&reg.name)).await;
        }
        Ok(inst)
    }

    /// Remove an instance registered here.
    pub async fn deregister(&self, name: &str, instance_id: &str) -> Result<(), WireError> {
        let (removed, last) = {
            let mut e = self.entries();
            let removed = e.remove(&(name.to_string(), instance_id.to_string())).is_some();
            (removed, !e.keys().any(|(n, _)| n == name))
        };
        if !removed {
            return Err(WireError::new(
                ErrorCode::UnknownService,
                format!("no instance '{instance_id}' of service '{name}' is registered at this node"),
            ));
        }
        if last {
            self.net.stop_providing(service_key(name)).await;
        }
        Ok(())
    }

    /// Drop lapsed registrations (and stop providing names with none left).
    pub async fn sweep(&self) {
        let now = Instant::now();
        let gone: Vec<String> = {
            let mut e = self.entries();
            let before: Vec<String> = e.keys().map(|(n, _)| n.clone()).collect();
            e.retain(|(name, id), (_, exp)| {
                let live = *exp > now;
                if !live {
                    tracing::info!(service = %name, instance = %id, "registration lapsed");
                }
                live
            });
            before.into_iter().filter(|n| !e.keys().any(|(k, _)| k == n)).collect()
        };
        for name in gone {
            self.net.stop_providing(service_key(&name)).await;
        }
    }

    /// Live instances held here (of one service, or all).
    pub fn local(&self, name: Option<&str>) -> Vec<ServiceInstance> {
        let now = Instant::now();
        self.entries()
            .iter()
            .filter(|((n, _), (_, exp))| name.is_none_or(|want| want == n) && *exp > now)
            .map(|(_, (inst, exp))| ServiceInstance {
                expires_in_ms: exp.duration_since(now).as_millis() as u64,
                ..inst.clone()
            })
            .collect()
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
        let asks = nodes.into_iter().filter(|p| *p != me).map(|p| async move {
            let req =
                || self.net.peer_request(p, PeerRequest::LocalServices { name: name.map(str::to_string) });
            self.resilience.call(&p, CallKind::Metadata, req).await
        });
        for r in futures::future::join_all(asks).await {
            if let Ok(PeerResponse::Services(list)) = r {
                all.extend(list);
            }
        }
        all.sort_by(|a, b| (&a.name, &a.node, &a.instance_id).cmp(&(&b.name, &b.node, &b.instance_id)));
        all.dedup_by(|a, b| (&a.name, &a.node, &a.instance_id) == (&b.name, &b.node, &b.instance_id));
        all
    }
}
