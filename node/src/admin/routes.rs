//! The admin port's routes: each request's method and path to its handler. Unknown
//! paths are 404, known paths with another method 405; nothing a client sends panics.

use super::http::{self, Reply};
use super::{probes, services, Admin};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use meshlog_protocol::group::GroupResponse;
use meshlog_protocol::messages::{ClientRequest, ClientResponse};
use std::sync::Arc;

/// The status page: one self-contained document (inline CSS, JS and SVG).
const PAGE: &str = include_str!("page.html");

/// Longest path segment taken (a service name or instance id, encoded).
const MAX_SEGMENT_BYTES: usize = 1024;

/// Answer one request.
pub async fn route(admin: &Arc<Admin>, req: Request<Incoming>) -> Reply {
    let method = req.method().clone();
    let segments = match segments(req.uri().path()) {
        Ok(s) => s,
        Err(why) => return http::error(StatusCode::BAD_REQUEST, format!("bad path segment: {why}")),
    };
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let key = |name: &str, id: &str| (name.to_string(), id.to_string());
    match (&method, s.as_slice()) {
        (&Method::GET, []) => http::reply(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        (&Method::GET, ["healthz"]) => http::reply(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        (&Method::GET, ["readyz"]) => {
            let r = probes::readiness(admin);
            http::json(if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &r)
        }
        (&Method::GET, ["metrics"]) => match super::metrics::scrape(admin).await {
            Ok(text) => http::reply(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            ),
            Err(_) => http::error(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics"),
        },
        (&Method::GET, ["v1", "cluster"]) => view(admin, ClientRequest::ClusterStatus).await,
        (&Method::GET, ["v1", "topics"]) => view(admin, ClientRequest::ListTopics).await,
        (&Method::GET, ["v1", "topics", name]) => {
            view(admin, ClientRequest::DescribeTopic { name: name.to_string() }).await
        }
        (&Method::GET, ["v1", "groups"]) => view(admin, ClientRequest::ListGroups).await,
        (&Method::GET, ["v1", "services"]) => services::discover(admin, None).await,
        (&Method::GET, ["v1", "services", name]) => services::discover(admin, Some(name)).await,
        (&Method::GET, ["v1", "services", name, id, "health"]) => services::health(admin, &key(name, id)),
        (&Method::PUT, ["v1", "services", name, id]) => {
            let (name, id) = (name.to_string(), id.to_string());
            match http::body(req).await {
                Ok(body) => services::register(admin, &name, &id, &body).await,
                Err(reply) => reply,
            }
        }
        (&Method::PUT, ["v1", "services", name, id, "keepalive"]) => {
            services::keepalive(admin, key(name, id)).await
        }
        (&Method::DELETE, ["v1", "services", name, id]) => services::deregister(admin, key(name, id)).await,
        (_, path) if known(path) => {
            http::error(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not served here"))
        }
        _ => http::error(StatusCode::NOT_FOUND, "no such path (see / for the status page)"),
    }
}

/// Whether some method is served at `path`.
fn known(path: &[&str]) -> bool {
    matches!(
        path,
        [] | ["healthz" | "readyz" | "metrics"]
            | ["v1", "cluster" | "topics" | "groups" | "services"]
            | ["v1", "topics" | "services", _]
            | ["v1", "services", _, _]
            | ["v1", "services", _, _, "keepalive" | "health"]
    )
}

/// A JSON view: what the CLI's `--json` prints for the same request.
async fn view(admin: &Admin, req: ClientRequest) -> Reply {
    match admin.ask(req).await {
        Ok(ClientResponse::Cluster(c)) => http::json(StatusCode::OK, &c),
        Ok(ClientResponse::Topics(t)) => http::json(StatusCode::OK, &t),
        Ok(ClientResponse::Topic(d)) => http::json(StatusCode::OK, &d),
        Ok(ClientResponse::Group(GroupResponse::Groups(g))) => http::json(StatusCode::OK, &g),
        Ok(other) => {
            let what: String = format!("{other:?}").chars().take(80).collect();
            http::error(StatusCode::INTERNAL_SERVER_ERROR, format!("unexpected answer {what}"))
        }
        Err(e) => http::wire_error(&e),
    }
}

/// The path's segments, percent-decoded (or why not).
fn segments(path: &str) -> Result<Vec<String>, &'static str> {
    path.split('/').filter(|s| !s.is_empty()).map(decode).collect()
}

fn decode(segment: &str) -> Result<String, &'static str> {
    if segment.len() > MAX_SEGMENT_BYTES {
        return Err("too long");
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a % not followed by two hex digits")?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_split_and_decoded() {
        assert_eq!(segments("/v1/services/api/a%20b/").ok().unwrap(), vec!["v1", "services", "api", "a b"]);
        assert!(segments("/").ok().unwrap().is_empty());
        for bad in ["/x%zz", "/x%4", "/%ff%fe"] {
            assert!(segments(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn known_paths_are_told_from_unknown_ones() {
        assert!(known(&["v1", "services", "a", "b", "keepalive"]));
        assert!(known(&[]));
        assert!(!known(&["v1", "nope"]));
        assert!(!known(&["v1", "topics", "a", "b"]));
    }
}
