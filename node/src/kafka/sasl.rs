//! SASL on the Kafka listener of a closed mesh (DESIGN 15): a Kafka client proves a
//! client credential with SCRAM-SHA-256 or SCRAM-SHA-512 before anything else is
//! served.
//!
//! Framing: SaslHandshake picks the mechanism; after v1 SaslAuthenticate (v0-2)
//! carries the SCRAM messages (KIP-152: librdkafka and the Java client use it whenever
//! ApiVersions lists it); after v0 they come as raw length-prefixed tokens, and a
//! failure closes the connection without an answer (v0 has no way to say why). The SCRAM user name is the
//! credential's signed [`KafkaLogin`](meshlog_protocol::admission::KafkaLogin), checked
//! by [`Admission::kafka_verifier`] (signature, mesh, expiry, revocation): the node
//! holds no client secret. The SCRAM math is `meshlog_protocol::scram`.
//!
//! Before authentication only ApiVersions, SaslHandshake and SaslAuthenticate are
//! served, in frames of at most [`MAX_SASL_FRAME_BYTES`], at most [`MAX_SASL_FRAMES`]
//! of them, within [`AUTH_TIMEOUT`]; anything else closes the connection, as Kafka's
//! broker does. A failed proof is answered SASL_AUTHENTICATION_FAILED with the reason,
//! then the connection is closed.

use super::codec::{self, Header, HEADER_PREFIX_LEN};
use super::versions;
use crate::network::Admission;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use meshlog_protocol::scram::{ClientFirst, Mechanism, ServerFirst, Verifier};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame read before authentication (a SCRAM message with a meshlog
/// login as user name is under 1 KiB).
pub const MAX_SASL_FRAME_BYTES: usize = 16 << 10;
/// Most requests read before authentication (ApiVersions, maybe again at v0, the
/// handshake and two SCRAM rounds need five).
pub const MAX_SASL_FRAMES: usize = 8;
/// The longest an unauthenticated connection is kept.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(30);

/// Kafka's UNSUPPORTED_SASL_MECHANISM.
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// Kafka's ILLEGAL_SASL_STATE.
pub const ILLEGAL_SASL_STATE: i16 = 34;
/// Kafka's SASL_AUTHENTICATION_FAILED.
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// Where a connection's exchange is.
#[derive(Debug)]
pub enum Sasl {
    /// Nothing chosen yet.
    Start,
    /// The handshake chose this mechanism; the client-first message comes next.
    Handshaken(Mechanism),
    /// The server-first message went out; the client-final message comes next.
    Challenged(Box<ServerFirst>),
}

/// What follows an answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Read the next request.
    Continue,
    /// The client is authenticated: serve it.
    Authenticated,
    /// Close the connection, for this reason.
    Close(String),
}

fn mechanisms() -> Vec<StrBytes> {
    Mechanism::ALL.iter().map(|m| StrBytes::from_static_str(m.name())).collect()
}

fn failed(why: String) -> (SaslAuthenticateResponse, Next) {
    let message = format!("authentication failed: {why}");
    let r = SaslAuthenticateResponse::default()
        .with_error_code(SASL_AUTHENTICATION_FAILED)
        .with_error_message(Some(StrBytes::from_string(message)));
    (r, Next::Close(why))
}

impl Sasl {
    /// SaslHandshake: choose a SCRAM mechanism; any other is refused (and closed).
    pub fn handshake(&mut self, req: &SaslHandshakeRequest) -> (SaslHandshakeResponse, Next) {
        let r = SaslHandshakeResponse::default().with_mechanisms(mechanisms());
        match (&*self, Mechanism::parse(&req.mechanism)) {
            (Sasl::Start, Some(m)) => {
                *self = Sasl::Handshaken(m);
                (r, Next::Continue)
            }
            (Sasl::Start, None) => {
                let why = format!(
                    "SASL mechanism {:?} is not offered (SCRAM-SHA-256, SCRAM-SHA-512)",
                    &*req.mechanism
                );
                (r.with_error_code(UNSUPPORTED_SASL_MECHANISM), Next::Close(why))
            }
            _ => (r.with_error_code(ILLEGAL_SASL_STATE), Next::Close("a second SaslHandshake".into())),
        }
    }

    /// SaslAuthenticate: the client-first message (answered with the server-first,
    /// for the verifier `verifier_of` finds for the user name, and `server_nonce`), then
    /// the client-final one (answered with the server-final: authenticated).
    pub fn authenticate(
        &mut self,
        token: &[u8],
        verifier_of: impl FnOnce(&str, Mechanism) -> Result<Verifier, String>,
        server_nonce: &str,
    ) -> (SaslAuthenticateResponse, Next) {
        match std::mem::replace(self, Sasl::Start) {
            Sasl::Handshaken(m) => {
                let first = match ClientFirst::parse(token) {
                    Ok(f) => f,
                    Err(e) => return failed(e.to_string()),
                };
                let server = verifier_of(&first.username, m)
                    .and_then(|v| ServerFirst::new(&first, v, server_nonce).map_err(|e| e.to_string()));
                match server {
                    Ok(server) => {
                        let r = SaslAuthenticateResponse::default()
                            .with_auth_bytes(Bytes::copy_from_slice(server.message().as_bytes()));
                        *self = Sasl::Challenged(Box::new(server));
                        (r, Next::Continue)
                    }
                    Err(why) => failed(why),
                }
            }
            Sasl::Challenged(server) => match server.client_final(token) {
                Ok(fin) => {
                    let r =
                        SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(fin.into_bytes()));
                    (r, Next::Authenticated)
                }
                Err(e) => failed(e.to_string()),
            },
            Sasl::Start => {
                let r = SaslAuthenticateResponse::default()
                    .with_error_code(ILLEGAL_SASL_STATE)
                    .with_error_message(Some(StrBytes::from_static_str(
                        "SaslAuthenticate before SaslHandshake",
                    )));
                (r, Next::Close("SaslAuthenticate before SaslHandshake".into()))
            }
        }
    }
}

/// The answer to SaslHandshake or SaslAuthenticate where no exchange is going on (an
/// open listener, or after authentication): ILLEGAL_SASL_STATE.
pub fn illegal_state(api: ApiKey) -> Option<ResponseKind> {
    let message = "this Kafka listener is not in a SASL exchange (open mesh, or already authenticated)";
    match api {
        ApiKey::SaslHandshake => Some(ResponseKind::SaslHandshake(
            SaslHandshakeResponse::default()
                .with_error_code(ILLEGAL_SASL_STATE)
                .with_mechanisms(mechanisms()),
        )),
        ApiKey::SaslAuthenticate => Some(ResponseKind::SaslAuthenticate(
            SaslAuthenticateResponse::default()
                .with_error_code(ILLEGAL_SASL_STATE)
                .with_error_message(Some(StrBytes::from_static_str(message))),
        )),
        _ => None,
    }
}

/// Run the exchange on a new connection: Ok once the client is authenticated, Err (the
/// reason, to log) when the connection must close. Bounded by [`MAX_SASL_FRAMES`] and
/// [`MAX_SASL_FRAME_BYTES`]; the caller bounds it in time ([`AUTH_TIMEOUT`]).
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    admission: &Admission,
) -> Result<String, String> {
    let (mut sasl, mut raw, mut client) = (Sasl::Start, false, String::new());
    for _ in 0..MAX_SASL_FRAMES {
        let next = if raw {
            raw_step(stream, &mut sasl, admission).await?
        } else {
            let (header, body) = read_frame(stream).await?;
            let (api, version, answer, next) = step(&mut sasl, admission, &header, body)?;
            let bytes = codec::encode_response(header.correlation_id, api, version, &answer)?;
            stream.write_all(&bytes).await.map_err(|e| e.to_string())?;
            raw = api == ApiKey::SaslHandshake && version == 0 && matches!(sasl, Sasl::Handshaken(_));
            client = header.client_id.unwrap_or_default();
            next
        };
        match next {
            Next::Continue => {}
            Next::Authenticated => return Ok(client),
            Next::Close(why) => return Err(why),
        }
    }
    Err(format!("more than {MAX_SASL_FRAMES} requests before authentication"))
}

/// One raw SCRAM token after a v0 handshake, and the raw answer (none on a failure).
async fn raw_step<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    sasl: &mut Sasl,
    admission: &Admission,
) -> Result<Next, String> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let n = usize::try_from(i32::from_be_bytes(len)).map_err(|_| "negative SASL token length")?;
    if n > MAX_SASL_FRAME_BYTES {
        return Err(format!("SASL token of {n} bytes (at most {MAX_SASL_FRAME_BYTES})"));
    }
    let mut token = vec![0u8; n];
    stream.read_exact(&mut token).await.map_err(|e| e.to_string())?;
    let (r, next) = sasl.authenticate(&token, |user, m| admission.kafka_verifier(user, m), &server_nonce());
    if r.error_code == 0 {
        let mut out = (r.auth_bytes.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&r.auth_bytes);
        stream.write_all(&out).await.map_err(|e| e.to_string())?;
    }
    Ok(next)
}

/// A fresh server nonce: 18 random bytes, base64url (printable, no `,`).
fn server_nonce() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>())
}

/// One request before authentication and its answer.
fn step(
    sasl: &mut Sasl,
    admission: &Admission,
    header: &Header,
    body: Bytes,
) -> Result<(ApiKey, i16, ResponseKind, Next), String> {
    let (key, v) = (header.api_key, header.api_version);
    let api = ApiKey::try_from(key).map_err(|()| format!("unknown api key {key} before authentication"))?;
    match api {
        ApiKey::ApiVersions => {
            let (r, at) = versions::api_versions(v);
            return Ok((api, at, ResponseKind::ApiVersions(r), Next::Continue));
        }
        ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => {}
        _ => {
            return Err(format!(
                "{api:?} before SASL authentication (this closed mesh's listener requires it)"
            ))
        }
    }
    if !versions::is_served(key, v) {
        let body = versions::unsupported(api, v).ok_or_else(|| format!("{api:?} v{v} is not served"))?;
        return Ok((api, v, body, Next::Continue));
    }
    match codec::decode_request(api, v, body).map_err(|e| e.to_string())? {
        RequestKind::SaslHandshake(r) => {
            let (r, next) = sasl.handshake(&r);
            Ok((api, v, ResponseKind::SaslHandshake(r), next))
        }
        RequestKind::SaslAuthenticate(r) => {
            let nonce = server_nonce();
            let (r, next) =
                sasl.authenticate(&r.auth_bytes, |user, m| admission.kafka_verifier(user, m), &nonce);
            Ok((api, v, ResponseKind::SaslAuthenticate(r), next))
        }
        _ => Err(format!("{api:?} decoded as another API")),
    }
}

/// One frame of at most [`MAX_SASL_FRAME_BYTES`]: its header and body.
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(Header, Bytes), String> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let n = usize::try_from(i32::from_be_bytes(len)).unwrap_or(0);
    if !(HEADER_PREFIX_LEN..=MAX_SASL_FRAME_BYTES).contains(&n) {
        let max = MAX_SASL_FRAME_BYTES;
        return Err(format!("frame of {} bytes before authentication (8 to {max})", i32::from_be_bytes(len)));
    }
    let mut frame = vec![0u8; n];
    stream.read_exact(&mut frame).await.map_err(|e| e.to_string())?;
    let prefix: [u8; HEADER_PREFIX_LEN] = frame[..HEADER_PREFIX_LEN].try_into().map_err(|_| "short frame")?;
    let mut body = Bytes::from(frame).slice(HEADER_PREFIX_LEN..);
    let header = codec::parse_header(codec::header_prefix(prefix), &mut body)?;
    Ok((header, body))
}

#[cfg(test)]
mod tests;
