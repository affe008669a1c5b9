//! A minimal HTTP/1.1 client: one request on a fresh connection, plain `http://` only,
//! within a time budget. The admin port's health checks use it, and so do tests that
//! talk to the admin port. It is not a general client: no TLS, no redirects, no pooling.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// Largest answer body read (a health endpoint's or a test's view of 1,000 partitions).
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not `http://host[:port]/path`.
    #[error("unsupported URL '{url}': {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Connecting, sending or reading failed.
    #[error("{0}")]
    Io(String),
    /// The budget ran out.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// An answer: its status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Check a URL the way [`request`] would use it: `http://`, a host, a port (80 if none).
pub fn parse(url: &str) -> Result<(Uri, String, u16), HttpError> {
    let bad = |reason: &str| HttpError::Url { url: url.to_string(), reason: reason.to_string() };
    let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// is supported"));
    }
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(80);
    Ok((uri, host, port))
}

/// Send one request (`body` as JSON if given) and read the whole answer, all within
/// `budget`.
pub async fn request(
    method: Method,
    url: &str,
    body: Option<Bytes>,
    budget: Duration,
) -> Result<Answer, HttpError> {
    let (uri, host, port) = parse(url)?;
    match tokio::time::timeout(budget, exchange(method, &uri, &host, port, body)).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout(budget)),
    }
}

async fn exchange(
    method: Method,
    uri: &Uri,
    host: &str,
    port: u16,
    body: Option<Bytes>,
) -> Result<Answer, HttpError> {
    let io = |e: &dyn std::fmt::Display| HttpError::Io(format!("{host}:{port}: {e}"));
    let stream = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| io(&e))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| io(&e))?;
    // The connection is driven until the answer is read; it ends with this request.
    let driver = tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host.to_string(), |a| a.to_string());
    let mut req = Request::builder().method(method).uri(path).header(HOST, authority);
    if body.is_some() {
        req = req.header(CONTENT_TYPE, "application/json");
    }
    let req = req.body(Full::new(body.unwrap_or_default())).map_err(|e| io(&e))?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(|e| io(&e))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES).collect().await.map_err(|e| io(&e))?;
        Ok(Answer { status, body: body.to_bytes() })
    }
    .await;
    driver.abort();
    result
}

/// `GET url`.
pub async fn get(url: &str, budget: Duration) -> Result<Answer, HttpError> {
    request(Method::GET, url, None, budget).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_with_a_host_are_taken() {
        let (uri, host, port) = parse("http://127.0.0.1:8080/health?x=1").unwrap();
        assert_eq!((host.as_str(), port, uri.path()), ("127.0.0.1", 8080, "/health"));
        assert_eq!(parse("http://[::1]/").unwrap().1, "::1");
        assert_eq!(parse("http://example.org").unwrap().2, 80);
        for bad in ["https://x/", "ftp://x/", "/just/a/path", "not a url", ""] {
            assert!(matches!(parse(bad), Err(HttpError::Url { .. })), "{bad}");
        }
    }
}
