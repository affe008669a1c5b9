//! The service registry over HTTP, as Consul's agent API offers it, mapped onto the
//! mesh registry through the client API:
//!
//! - `PUT /v1/services/{name}/{id}` with `{"address", "port"?, "tags"?, "meta"?,
//!   "ttl_ms", "check"?: {"http": url | "tcp": "host:port", "interval_ms"?,
//!   "timeout_ms"?}}`: register (or replace) an instance held by this node. Its
//!   endpoint is `address:port` (or `address` alone), its tags go in the `tags`
//!   metadata key, comma-separated. With a check, the first check runs before the
//!   answer: an instance that fails it is held here but hidden.
//! - `PUT /v1/services/{name}/{id}/keepalive`: renew its TTL (404 once lapsed).
//! - `DELETE /v1/services/{name}/{id}`: deregister it.
//! - `GET /v1/services/{name}/{id}/health`: its check and health, as held here.
//! - `GET /v1/services/{name}` (healthy instances, from the whole mesh) and
//!   `GET /v1/services` (every live instance): the JSON `meshlog service discover|list
//!   --json` prints.
//!
//! Checks run on this node (the one that holds the registration), per
//! [`super::registrations`]: a failed check hides the instance from discovery, a
//! passing one shows it again.

use super::http::{self, Reply};
use super::registrations::{
    Change, Check, Key, Probe, CHECK_INTERVAL_MS, DEFAULT_CHECK_TIMEOUT_MS, MAX_CHECK_TIMEOUT_MS,
};
use super::Admin;
use crate::sync::lock;
use crate::time::monotonic_ms;
use hyper::StatusCode;
use meshlog_protocol::messages::{ClientRequest, ClientResponse, ServiceRegistration};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The metadata key that carries an instance's tags.
pub const TAGS_META_KEY: &str = "tags";
/// Most tags per instance, and longest tag.
const MAX_TAGS: usize = 64;
const MAX_TAG_BYTES: usize = 128;
/// Health checks running at once on this node.
pub const MAX_CHECKS_RUNNING: usize = 64;

/// A registration's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// Host name or address (or a URL, without `port`).
    pub address: String,
    /// Port, appended to the address.
    pub port: Option<u16>,
    /// Tags (no commas).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free-form metadata.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// The registration lapses this long after its last keepalive.
    pub ttl_ms: u64,
    /// An optional health check.
    pub check: Option<CheckBody>,
}

/// A health check's body: exactly one of `http` and `tcp`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// `GET` this URL (plain `http://`); 2xx is healthy.
    pub http: Option<String>,
    /// Open a TCP connection to `host:port`.
    pub tcp: Option<String>,
    /// Time between checks (default 10 s).
    pub interval_ms: Option<u64>,
    /// A check not answered within this fails (default 2 s, at most the interval).
    pub timeout_ms: Option<u64>,
}

/// Parse and check a registration body for instance `id` of `name`.
pub fn parse(name: &str, id: &str, body: &[u8]) -> Result<(ServiceRegistration, Option<Check>), String> {
    let b: RegisterBody = serde_json::from_slice(body).map_err(|e| format!("invalid registration: {e}"))?;
    if b.address.is_empty() {
        return Err("address must not be empty".into());
    }
    let endpoint = match b.port {
        Some(port) if b.address.contains(':') && !b.address.starts_with('[') => {
            format!("[{}]:{port}", b.address)
        }
        Some(port) => format!("{}:{port}", b.address),
        None => b.address.clone(),
    };
    let mut meta = b.meta;
    if !b.tags.is_empty() {
        if meta.contains_key(TAGS_META_KEY) {
            return Err(format!("give tags in 'tags' or in meta.{TAGS_META_KEY}, not both"));
        }
        if b.tags.len() > MAX_TAGS
            || b.tags.iter().any(|t| t.is_empty() || t.len() > MAX_TAG_BYTES || t.contains(','))
        {
            return Err(format!("at most {MAX_TAGS} tags of 1 to {MAX_TAG_BYTES} bytes, without commas"));
        }
        meta.insert(TAGS_META_KEY.to_string(), b.tags.join(","));
    }
    let check = b.check.map(parse_check).transpose()?;
    let reg = ServiceRegistration {
        name: name.to_string(),
        instance_id: Some(id.to_string()),
        endpoint,
        ttl_ms: b.ttl_ms,
        meta,
    };
    crate::services::validate(&reg).map_err(|e| e.message)?;
    Ok((reg, check))
}

fn parse_check(c: CheckBody) -> Result<Check, String> {
    let probe = match (c.http, c.tcp) {
        (Some(url), None) => {
            super::client::parse(&url).map_err(|e| e.to_string())?;
            Probe::Http(url)
        }
        (None, Some(addr)) => {
            let ok = addr.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(format!("tcp check '{addr}' must be host:port"));
            }
            Probe::Tcp(addr)
        }
        _ => return Err("a check has exactly one of 'http' and 'tcp'".into()),
    };
    let interval_ms = c.interval_ms.unwrap_or(10_000);
    if !CHECK_INTERVAL_MS.contains(&interval_ms) {
        return Err(format!(
            "check interval_ms={interval_ms} must be between {} and {}",
            CHECK_INTERVAL_MS.start(),
            CHECK_INTERVAL_MS.end()
        ));
    }
    let timeout_ms = c.timeout_ms.unwrap_or(DEFAULT_CHECK_TIMEOUT_MS.min(interval_ms));
    if timeout_ms == 0 || timeout_ms > interval_ms.min(MAX_CHECK_TIMEOUT_MS) {
        return Err(format!(
            "check timeout_ms={timeout_ms} must be > 0 and at most interval_ms={interval_ms} and \
             {MAX_CHECK_TIMEOUT_MS}"
        ));
    }
    Ok(Check { probe, interval_ms, timeout_ms })
}

/// Run one check now.
pub async fn probe(check: &Check) -> bool {
    let budget = Duration::from_millis(check.timeout_ms);
    match &check.probe {
        Probe::Http(url) => super::client::get(url, budget).await.is_ok_and(|a| a.status.is_success()),
        Probe::Tcp(addr) => {
            matches!(
                tokio::time::timeout(budget, tokio::net::TcpStream::connect(addr.as_str())).await,
                Ok(Ok(_))
            )
        }
    }
}

/// Tell the mesh registry about a change (through the client API, from this node).
async fn apply(admin: &Admin, change: Change) -> Result<(), Reply> {
    let req = match change {
        Change::None => return Ok(()),
        Change::Show(reg) => ClientRequest::RegisterService(reg),
        Change::Hide((name, instance_id)) => ClientRequest::DeregisterService { name, instance_id },
    };
    match admin.ask(req).await {
        Ok(_) => Ok(()),
        // Already gone from the mesh registry (its own TTL ran out): hidden all the same.
        Err(e) if e.code == meshlog_protocol::ErrorCode::UnknownService => Ok(()),
        Err(e) => Err(http::wire_error(&e)),
    }
}

/// `PUT /v1/services/{name}/{id}`.
pub async fn register(admin: &Admin, name: &str, id: &str, body: &[u8]) -> Reply {
    let (reg, check) = match parse(name, id, body) {
        Ok(r) => r,
        Err(e) => return http::error(StatusCode::BAD_REQUEST, e),
    };
    let healthy = match &check {
        Some(c) => probe(c).await,
        None => true,
    };
    let change = match lock(&admin.registrations).put(reg, check, healthy, monotonic_ms()) {
        Ok(c) => c,
        Err(e) => return http::error(StatusCode::TOO_MANY_REQUESTS, e),
    };
    let key = (name.to_string(), id.to_string());
    if let Err(reply) = apply(admin, change).await {
        // The mesh refused it (a cap, an owner): it is not held here either.
        lock(&admin.registrations).remove(&key);
        return reply;
    }
    health(admin, &key)
}

/// `PUT /v1/services/{name}/{id}/keepalive`.
pub async fn keepalive(admin: &Admin, key: Key) -> Reply {
    let Some(change) = lock(&admin.registrations).keepalive(&key, monotonic_ms()) else {
        return not_held(&key);
    };
    if let Err(reply) = apply(admin, change).await {
        return reply;
    }
    health(admin, &key)
}

/// `DELETE /v1/services/{name}/{id}`.
pub async fn deregister(admin: &Admin, key: Key) -> Reply {
    let Some(change) = lock(&admin.registrations).remove(&key) else { return not_held(&key) };
    match apply(admin, change).await {
        Ok(()) => http::json(StatusCode::OK, &serde_json::json!({ "deregistered": true })),
        Err(reply) => reply,
    }
}

/// `GET /v1/services/{name}/{id}/health`.
pub fn health(admin: &Admin, key: &Key) -> Reply {
    match lock(&admin.registrations).health(key, monotonic_ms()) {
        Some(h) => http::json(StatusCode::OK, &h),
        None => not_held(key),
    }
}

fn not_held(key: &Key) -> Reply {
    http::error(
        StatusCode::NOT_FOUND,
        format!(
            "instance '{}' of service '{}' is not registered through this node (or lapsed)",
            key.1, key.0
        ),
    )
}

/// `GET /v1/services[/{name}]`: what the CLI's `service list|discover --json` prints.
pub async fn discover(admin: &Admin, name: Option<&str>) -> Reply {
    let req = match name {
        Some(n) => ClientRequest::DiscoverService { name: n.to_string() },
        None => ClientRequest::ListServices,
    };
    match admin.ask(req).await {
        Ok(ClientResponse::Services(list)) => http::json(StatusCode::OK, &list),
        Ok(other) => http::error(StatusCode::INTERNAL_SERVER_ERROR, format!("unexpected answer {other:?}")),
        Err(e) => http::wire_error(&e),
    }
}

/// Start the checks that are due and drop lapsed registrations (the background task
/// calls this every tick).
pub async fn maintain(admin: &Arc<Admin>) {
    let now = monotonic_ms();
    let (due, lapsed) = {
        let mut r = lock(&admin.registrations);
        (r.due(now), r.sweep(now))
    };
    for change in lapsed {
        if let Err(e) = apply(admin, change).await {
            tracing::debug!(status = %e.status(), "a lapsed registration was not removed from the mesh registry");
        }
    }
    // Each due check is marked running, so at most one task per registration waits here.
    for (key, generation, check) in due {
        let admin = admin.clone();
        tokio::spawn(async move {
            let Ok(_permit) = admin.checks_running.clone().acquire_owned().await else { return };
            let healthy = probe(&check).await;
            let change = lock(&admin.registrations).checked(&key, generation, healthy, monotonic_ms());
            if change != Change::None {
                tracing::info!(service = %key.0, instance = %key.1, healthy, "service instance health changed");
            }
            let _ = apply(&admin, change).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_maps_onto_a_registration() {
        let body = br#"{"address":"10.0.0.5","port":8080,"tags":["a","b"],"meta":{"v":"1"},"ttl_ms":5000,
            "check":{"tcp":"127.0.0.1:8080","interval_ms":500}}"#;
        let (reg, check) = parse("api", "i1", body).unwrap();
        assert_eq!((reg.endpoint.as_str(), reg.instance_id.as_deref()), ("10.0.0.5:8080", Some("i1")));
        assert_eq!(reg.meta["tags"], "a,b");
        let check = check.unwrap();
        assert_eq!((check.interval_ms, check.timeout_ms), (500, 500));
        let (v6, _) = parse("api", "i2", br#"{"address":"::1","port":80,"ttl_ms":5000}"#).unwrap();
        assert_eq!(v6.endpoint, "[::1]:80");
    }

    #[test]
    fn bad_bodies_are_refused_with_a_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "invalid registration"),
            (br#"{"address":"x","ttl_ms":5000,"colour":1}"#, "unknown field"),
            (br#"{"address":"","ttl_ms":5000}"#, "address"),
            (br#"{"address":"x","ttl_ms":1}"#, "ttl_ms"),
            (br#"{"address":"x","ttl_ms":5000,"tags":["a,b"]}"#, "commas"),
            (br#"{"address":"x","ttl_ms":5000,"check":{}}"#, "exactly one"),
            (br#"{"address":"x","ttl_ms":5000,"check":{"tcp":"nohost"}}"#, "host:port"),
            (br#"{"address":"x","ttl_ms":5000,"check":{"http":"https://x/"}}"#, "http://"),
            (br#"{"address":"x","ttl_ms":5000,"check":{"tcp":"h:1","interval_ms":1}}"#, "interval_ms"),
            (br#"{"address":"x","ttl_ms":5000,"check":{"tcp":"h:1","interval_ms":60000,"timeout_ms":30000}}"#, "timeout_ms"),
        ];
        for (body, why) in cases {
            let e = parse("api", "i", body).unwrap_err();
            assert!(e.contains(why), "{}: {e}", String::from_utf8_lossy(body));
        }
        assert!(parse("bad name!", "i", br#"{"address":"x","ttl_ms":5000}"#).is_err());
    }
}
