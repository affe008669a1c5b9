//! The SASL exchange: the state machine stepped directly, then whole exchanges over an
//! in-memory stream with a real closed mesh's credentials, and hostile bytes.

use super::*;
use crate::network::{Authority, Credential, PeerRole};
use bytes::{Buf, BufMut, BytesMut};
use meshlog_protocol::scram;
use proptest::prelude::*;
use std::collections::HashSet;

fn mesh() -> (Admission, Credential) {
    let authority = Authority::generate();
    let node = authority.issue(PeerRole::Node, None).unwrap();
    let client = authority.issue(PeerRole::Client, None).unwrap();
    (Admission::Closed { credential: node, revoked: HashSet::new() }, client)
}

fn handshake(mechanism: &str) -> SaslHandshakeRequest {
    SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into()))
}

#[test]
fn the_state_machine_authenticates_the_right_password_only() {
    let (admission, client) = mesh();
    let (user, password) = (client.kafka_username().unwrap(), client.kafka_password().unwrap());
    for (pw, ok) in [(password.as_str(), true), ("not-the-password", false)] {
        let mut sasl = Sasl::Start;
        let (r, next) = sasl.handshake(&handshake("SCRAM-SHA-512"));
        assert_eq!((r.error_code, next), (0, Next::Continue));
        let first = format!("n,,n={user},r=clientnonce");
        let (r, next) = sasl.authenticate(first.as_bytes(), |u, m| admission.kafka_verifier(u, m), "srv");
        assert_eq!((r.error_code, next), (0, Next::Continue));
        let server_first = std::str::from_utf8(&r.auth_bytes).unwrap();
        let (fin, expect) =
            scram::client_final(Mechanism::Sha512, pw.as_bytes(), &first, server_first).unwrap();
        let (r, next) = sasl.authenticate(fin.as_bytes(), |_, _| unreachable!(), "srv");
        if ok {
            assert_eq!((r.error_code, next), (0, Next::Authenticated));
            assert_eq!(&r.auth_bytes[..], expect.as_bytes());
        } else {
            assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
            assert!(matches!(next, Next::Close(_)));
            assert!(r.error_message.unwrap().contains("invalid credentials"));
        }
    }
}

#[test]
fn wrong_mechanisms_orders_and_users_are_refused_and_closed() {
    let (admission, _) = mesh();
    let (r, next) = Sasl::Start.handshake(&handshake("PLAIN"));
    assert_eq!(r.error_code, UNSUPPORTED_SASL_MECHANISM);
    assert!(matches!(next, Next::Close(_)));
    assert_eq!(r.mechanisms.len(), 2, "the mechanisms offered are listed");
    let (r, next) = Sasl::Start.authenticate(b"n,,n=u,r=x", |_, _| unreachable!(), "s");
    assert_eq!(r.error_code, ILLEGAL_SASL_STATE);
    assert!(matches!(next, Next::Close(_)));
    let mut sasl = Sasl::Handshaken(Mechanism::Sha256);
    let (r, next) = sasl.authenticate(b"n,,n=alice,r=x", |u, m| admission.kafka_verifier(u, m), "s");
    assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
    assert!(r.error_message.unwrap().contains("not a meshlog Kafka login"));
    assert!(matches!(next, Next::Close(_)));
}

/// A request frame: size, header v1 (key, version, correlation id, client id), body.
fn frame(api: ApiKey, version: i16, body: &[u8]) -> Vec<u8> {
    let mut f = BytesMut::new();
    f.put_i16(api as i16);
    f.put_i16(version);
    f.put_i32(7);
    f.put_i16(4);
    f.put_slice(b"test");
    f.put_slice(body);
    let mut out = (f.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&f);
    out
}

fn string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as i16).to_be_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

fn token(b: &[u8]) -> Vec<u8> {
    let mut out = (b.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(b);
    out
}

/// Read a SaslAuthenticate v1 answer: error code, message, auth bytes.
async fn auth_answer(s: &mut tokio::io::DuplexStream) -> (i16, Vec<u8>) {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.unwrap();
    let mut b = &buf[4..];
    let code = b.get_i16();
    let msg_len = b.get_i16();
    if msg_len > 0 {
        b.advance(msg_len as usize);
    }
    let n = b.get_i32() as usize;
    (code, b[..n].to_vec())
}

async fn skip_answer(s: &mut tokio::io::DuplexStream) {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.unwrap();
}

#[tokio::test]
async fn a_whole_exchange_over_a_stream_authenticates_and_anything_else_first_closes() {
    let (admission, client) = mesh();
    let (user, password) = (client.kafka_username().unwrap(), client.kafka_password().unwrap());
    let (mut near, mut far) = tokio::io::duplex(64 << 10);
    let server = tokio::spawn(async move { authenticate(&mut far, &admission).await });
    near.write_all(&frame(ApiKey::ApiVersions, 3, &[0, 0, 0])).await.unwrap();
    skip_answer(&mut near).await;
    near.write_all(&frame(ApiKey::SaslHandshake, 1, &string("SCRAM-SHA-256"))).await.unwrap();
    skip_answer(&mut near).await;
    let first = format!("n,,n={user},r=abc");
    near.write_all(&frame(ApiKey::SaslAuthenticate, 1, &token(first.as_bytes()))).await.unwrap();
    let (code, server_first) = auth_answer(&mut near).await;
    assert_eq!(code, 0);
    let server_first = String::from_utf8(server_first).unwrap();
    let (fin, expect) =
        scram::client_final(Mechanism::Sha256, password.as_bytes(), &first, &server_first).unwrap();
    near.write_all(&frame(ApiKey::SaslAuthenticate, 1, &token(fin.as_bytes()))).await.unwrap();
    assert_eq!(auth_answer(&mut near).await, (0, expect.into_bytes()));
    assert_eq!(server.await.unwrap(), Ok("test".to_string()));

    // Metadata before authentication, or an oversized frame: closed.
    let (admission, _) = mesh();
    let (mut near, mut far) = tokio::io::duplex(64 << 10);
    let server = tokio::spawn(async move { authenticate(&mut far, &admission).await });
    near.write_all(&frame(ApiKey::Metadata, 4, &[0, 0, 0, 0, 0])).await.unwrap();
    assert!(server.await.unwrap().unwrap_err().contains("before SASL authentication"));
    let (admission, _) = mesh();
    let (mut near, mut far) = tokio::io::duplex(64 << 10);
    let server = tokio::spawn(async move { authenticate(&mut far, &admission).await });
    near.write_all(&(MAX_SASL_FRAME_BYTES as i32 + 1).to_be_bytes()).await.unwrap();
    assert!(server.await.unwrap().unwrap_err().contains("before authentication"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn hostile_bytes_never_authenticate(frames in proptest::collection::vec(
        (prop_oneof![Just(ApiKey::SaslHandshake), Just(ApiKey::SaslAuthenticate), Just(ApiKey::ApiVersions)],
         0i16..4, proptest::collection::vec(any::<u8>(), 0..300)), 0..10)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (admission, _) = mesh();
        let result = rt.block_on(async move {
            let (mut near, mut far) = tokio::io::duplex(1 << 20);
            for (api, v, body) in &frames {
                near.write_all(&frame(*api, *v, body)).await.unwrap();
            }
            drop(near);
            authenticate(&mut far, &admission).await
        });
        prop_assert!(result.is_err());
    }
}

#[tokio::test]
async fn after_a_v0_handshake_the_scram_messages_are_raw_tokens() {
    let (admission, client) = mesh();
    let (user, password) = (client.kafka_username().unwrap(), client.kafka_password().unwrap());
    let (mut near, mut far) = tokio::io::duplex(64 << 10);
    let server = tokio::spawn(async move { authenticate(&mut far, &admission).await });
    near.write_all(&frame(ApiKey::SaslHandshake, 0, &string("SCRAM-SHA-256"))).await.unwrap();
    skip_answer(&mut near).await;
    let first = format!("n,,n={user},r=abc");
    near.write_all(&token(first.as_bytes())).await.unwrap();
    let mut len = [0u8; 4];
    near.read_exact(&mut len).await.unwrap();
    let mut server_first = vec![0u8; i32::from_be_bytes(len) as usize];
    near.read_exact(&mut server_first).await.unwrap();
    let server_first = String::from_utf8(server_first).unwrap();
    let (fin, expect) =
        scram::client_final(Mechanism::Sha256, password.as_bytes(), &first, &server_first).unwrap();
    near.write_all(&token(fin.as_bytes())).await.unwrap();
    near.read_exact(&mut len).await.unwrap();
    let mut server_final = vec![0u8; i32::from_be_bytes(len) as usize];
    near.read_exact(&mut server_final).await.unwrap();
    assert_eq!(server_final, expect.into_bytes());
    assert_eq!(server.await.unwrap(), Ok("test".to_string()));
}
