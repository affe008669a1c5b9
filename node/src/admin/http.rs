//! The HTTP/1.1 plumbing of the admin port: the accept loop (a bounded number of
//! connections, each served by one task until the node shuts down), request bodies read
//! within a size limit, and the responses every route builds (JSON, text, errors as
//! JSON with a status from the error's code).
//!
//! It knows nothing of the routes: it hands each request to [`super::routes`].

use super::Admin;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use meshlog_protocol::{ErrorCode, WireError};
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_io_timeout::TimeoutStream;

/// Connections served at once; more are closed as they arrive (a scraper, a probe and
/// a few browsers need a handful).
pub const MAX_CONNECTIONS: usize = 64;
/// Largest request body read (a service registration is well under 16 KiB).
pub const MAX_BODY_BYTES: usize = 64 << 10;
/// How long a client may take to send a request's headers; an idle keep-alive
/// connection waits for its next request's headers, so this also ends idle connections.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's body (a slow body would otherwise
/// hold its connection for as long as it dribbles).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write of an answer may wait for the client to read: a client that
/// stops reading (pipelined requests, answers never read) loses its connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every route answers.
pub type Reply = Response<Full<Bytes>>;

/// Serve `listener` until `shutdown` turns true: one task per connection, at most
/// [`MAX_CONNECTIONS`] at once. Each connection ends with the node, or sooner when its
/// client is too slow ([`HEADER_TIMEOUT`], [`BODY_TIMEOUT`], [`WRITE_TIMEOUT`]), so no
/// client holds a slot for long without doing its part.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, mut shutdown: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, usually: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "admin port: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = crate::sync::stopped(&mut shutdown) => return,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "admin port: too many connections; closed");
            continue;
        };
        let (admin, mut stop) = (admin.clone(), shutdown.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(super::routes::route(&admin, req).await) }
            });
            let mut stream = TimeoutStream::new(stream);
            stream.set_write_timeout(Some(WRITE_TIMEOUT));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(Box::pin(stream)), service);
            tokio::select! {
                r = conn => if let Err(e) = r { tracing::debug!(%peer, error = %e, "admin connection ended") },
                _ = crate::sync::stopped(&mut stop) => {}
            }
            drop(permit);
        });
    }
}

/// The request's body, at most [`MAX_BODY_BYTES`], sent within [`BODY_TIMEOUT`].
pub async fn body(req: Request<Incoming>) -> Result<Bytes, Reply> {
    let read = Limited::new(req.into_body(), MAX_BODY_BYTES).collect();
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e} (at most {MAX_BODY_BYTES} bytes)"),
        )),
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {}s", BODY_TIMEOUT.as_secs()),
        )),
    }
}

/// A response with a body and its type; never cached (every view is live).
pub fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `value` as pretty JSON, as the CLI's `--json` prints it.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Reply {
    match serde_json::to_string_pretty(value) {
        Ok(mut text) => {
            text.push('\n');
            reply(status, "application/json", text)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the answer: {e}")),
    }
}

/// An error as `{"error": message}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    json(status, &serde_json::json!({ "error": message.into() }))
}

/// A node's error answer as `{"error", "code"}` with the HTTP status its code means.
pub fn wire_error(e: &WireError) -> Reply {
    let body = serde_json::json!({ "error": e.message, "code": e.code.name() });
    json(status_of(e.code), &body)
}

/// The HTTP status of an error code: the caller's mistakes are 4xx, the mesh's state 5xx.
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode as E;
    match code {
        E::InvalidRequest
        | E::InvalidTopic
        | E::InvalidConfig
        | E::InvalidPartitions
        | E::InvalidReplicationFactor
        | E::InvalidGroupId
        | E::CorruptMessage
        | E::MessageTooLarge => StatusCode::BAD_REQUEST,
        E::UnknownTopicOrPartition | E::UnknownService | E::GroupIdNotFound => StatusCode::NOT_FOUND,
        E::NotOwner | E::ClusterAuthorizationFailed => StatusCode::FORBIDDEN,
        E::TopicAlreadyExists | E::NonEmptyGroup => StatusCode::CONFLICT,
        E::PolicyViolation | E::LimitExceeded | E::ThrottlingQuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
        E::RequestTimedOut => StatusCode::GATEWAY_TIMEOUT,
        E::Unavailable
        | E::LeaderNotAvailable
        | E::NotLeaderOrFollower
        | E::CoordinatorNotAvailable
        | E::CoordinatorLoadInProgress
        | E::NotEnoughReplicas => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
