//! Who a connection is: the hello two peers exchange before anything else, and the
//! credential a closed mesh's members prove with.
//!
//! Every connection starts with a [`Hello`] exchange started by each end (the other
//! answers with its own). A hello declares a [`PeerRole`]: a *node* may speak the peer protocols
//! (gossip, DHT writes, votes, replication, forwards, leases), a *client* only the
//! client API. In an open mesh the declaration is believed; in a closed mesh it must
//! come with a [`Proof`]: a [`Certificate`] signed by the mesh authority for a role key,
//! and a signature by that role key over both ends' peer ids (see [`proof_message`]), so
//! no secret crosses the wire and a proof is worth nothing on another connection.
//!
//! Kafka clients cannot speak the hello: a closed mesh's client credential also
//! carries a [`KafkaLogin`], the authority's signed SCRAM verifiers of a password
//! derived from the credential's role key. The login travels as the SCRAM user name
//! ([`KafkaLogin::username`]), so any node can check it (signature, mesh, expiry,
//! revocation) and run SCRAM without holding any client secret.
//!
//! Signatures and keys are opaque bytes here (libp2p's protobuf key encoding); the node
//! checks them. This module is pure data and the exact bytes that get signed.

use crate::scram::{Mechanism, Verifier};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Largest hello frame accepted (a certificate and two signatures fit with room).
pub const MAX_HELLO_BYTES: usize = 8 << 10;

/// What a peer is allowed to be on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PeerRole {
    /// A member of the mesh: speaks the peer protocols and the client API.
    Node,
    /// A program using the client API only.
    Client,
}

impl PeerRole {
    /// The role's name in credential files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerRole::Node => "node",
            PeerRole::Client => "client",
        }
    }

    /// Parse `node` or `client`.
    pub fn parse(s: &str) -> Option<PeerRole> {
        match s {
            "node" => Some(PeerRole::Node),
            "client" => Some(PeerRole::Client),
            _ => None,
        }
    }
}

/// The mesh authority's statement that `public_key` may act with `role` in mesh `mesh`
/// until `not_after_unix_ms` (0: no expiry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// The mesh: its authority's public key (protobuf encoding).
    pub mesh: Vec<u8>,
    /// The role granted.
    pub role: PeerRole,
    /// A random id of this credential, named when revoking it.
    pub serial: String,
    /// Wall-clock expiry in Unix milliseconds; 0 never expires.
    pub not_after_unix_ms: u64,
    /// The role key's public key (protobuf encoding).
    pub public_key: Vec<u8>,
    /// The authority's signature over [`Certificate::signed_bytes`].
    pub authority_signature: Vec<u8>,
}

impl Certificate {
    /// The bytes the authority signs: every field but the signature, domain-separated.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = b"meshlog-certificate-v1\0".to_vec();
        for field in [&self.mesh[..], self.role.as_str().as_bytes(), self.serial.as_bytes()] {
            push_field(&mut out, field);
        }
        out.extend_from_slice(&self.not_after_unix_ms.to_be_bytes());
        push_field(&mut out, &self.public_key);
        out
    }
}

/// A closed mesh's proof of a role on one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The credential's certificate.
    pub certificate: Certificate,
    /// The role key's signature over [`proof_message`] for this connection.
    pub signature: Vec<u8>,
}

/// The first message each way on every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The role the sender asks for.
    pub role: PeerRole,
    /// The proof, in a closed mesh.
    pub proof: Option<Proof>,
}

/// What a role key signs to prove its role on a connection from `prover` to `verifier`
/// (both peer ids as bytes, authenticated by noise on that connection): binding both
/// ends means a proof seen once cannot be replayed by another key or to another node.
pub fn proof_message(mesh: &[u8], role: PeerRole, prover: &[u8], verifier: &[u8]) -> Vec<u8> {
    let mut out = b"meshlog-hello-v1\0".to_vec();
    for field in [mesh, role.as_str().as_bytes(), prover, verifier] {
        push_field(&mut out, field);
    }
    out
}

/// Longest Kafka user name accepted as a [`KafkaLogin`] (an issued one is about 450
/// characters).
pub const MAX_KAFKA_USERNAME_LEN: usize = 1024;
/// The prefix of a [`KafkaLogin`] user name (its format version).
const KAFKA_USERNAME_PREFIX: &str = "meshlog1.";

/// One SCRAM mechanism's keys in a [`KafkaLogin`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramKeys {
    /// SCRAM's StoredKey.
    #[serde(with = "serde_bytes")]
    pub stored_key: Vec<u8>,
    /// SCRAM's ServerKey.
    #[serde(with = "serde_bytes")]
    pub server_key: Vec<u8>,
}

/// The mesh authority's statement that whoever knows the password behind these SCRAM
/// verifiers may use the Kafka listener as the client credential `serial`, until
/// `not_after_unix_ms` (0: no expiry). The password is derived from the credential's
/// role key ([`crate::scram::derive_password`]); the verifiers do not reveal it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaLogin {
    /// The client credential's serial (what a revocation names).
    pub serial: String,
    /// Wall-clock expiry in Unix milliseconds (the credential's); 0 never expires.
    pub not_after_unix_ms: u64,
    /// The PBKDF2 salt shared by both mechanisms.
    #[serde(with = "serde_bytes")]
    pub salt: Vec<u8>,
    /// The PBKDF2 iteration count.
    pub iterations: u32,
    /// SCRAM-SHA-256's keys.
    pub sha256: ScramKeys,
    /// SCRAM-SHA-512's keys.
    pub sha512: ScramKeys,
    /// The authority's signature over [`KafkaLogin::signed_bytes`].
    #[serde(with = "serde_bytes")]
    pub authority_signature: Vec<u8>,
}

impl KafkaLogin {
    /// The bytes the authority of `mesh` signs: every field but the signature,
    /// domain-separated from certificates and hellos.
    pub fn signed_bytes(&self, mesh: &[u8]) -> Vec<u8> {
        let mut out = b"meshlog-kafka-login-v1\0".to_vec();
        push_field(&mut out, mesh);
        push_field(&mut out, self.serial.as_bytes());
        out.extend_from_slice(&self.not_after_unix_ms.to_be_bytes());
        push_field(&mut out, &self.salt);
        out.extend_from_slice(&self.iterations.to_be_bytes());
        for keys in [&self.sha256, &self.sha512] {
            push_field(&mut out, &keys.stored_key);
            push_field(&mut out, &keys.server_key);
        }
        out
    }

    /// The SCRAM verifier for `mechanism`.
    pub fn verifier(&self, mechanism: Mechanism) -> Verifier {
        let keys = match mechanism {
            Mechanism::Sha256 => &self.sha256,
            Mechanism::Sha512 => &self.sha512,
        };
        Verifier {
            mechanism,
            salt: self.salt.clone(),
            iterations: self.iterations,
            stored_key: keys.stored_key.clone(),
            server_key: keys.server_key.clone(),
        }
    }

    /// The login as a SCRAM user name: `meshlog1.` and the encoded login in unpadded
    /// base64url (no `,` or `=`, so no saslname escaping).
    pub fn username(&self) -> String {
        // Encoding plain data into a Vec cannot fail.
        let bytes = crate::codec::encode(self).unwrap_or_default();
        format!("{KAFKA_USERNAME_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The login a user name carries (its signature is the caller's to check).
    pub fn from_username(name: &str) -> Result<KafkaLogin, String> {
        if name.len() > MAX_KAFKA_USERNAME_LEN {
            return Err(format!(
                "user name of {} bytes is too long for a meshlog Kafka login",
                name.len()
            ));
        }
        let body = name.strip_prefix(KAFKA_USERNAME_PREFIX).ok_or(
            "not a meshlog Kafka login (print one with 'meshlog mesh kafka-login CLIENT_CREDENTIAL')",
        )?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| "the Kafka login is not base64url")?;
        crate::codec::decode(&bytes).map_err(|e| format!("the Kafka login does not decode: {e}"))
    }
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_bytes_separate_fields_so_shifted_values_differ() {
        let cert = |serial: &str, key: &[u8]| Certificate {
            mesh: b"m".to_vec(),
            role: PeerRole::Node,
            serial: serial.into(),
            not_after_unix_ms: 0,
            public_key: key.to_vec(),
            authority_signature: Vec::new(),
        };
        assert_ne!(cert("ab", b"c").signed_bytes(), cert("a", b"bc").signed_bytes());
        let a = proof_message(b"m", PeerRole::Node, b"p1", b"p2");
        assert_ne!(a, proof_message(b"m", PeerRole::Node, b"p2", b"p1"));
        assert_ne!(a, proof_message(b"m", PeerRole::Client, b"p1", b"p2"));
    }

    #[test]
    fn kafka_logins_travel_as_user_names_and_sign_every_field() {
        let v = Verifier::from_password(Mechanism::Sha256, b"pw", b"salt", 4096);
        let w = Verifier::from_password(Mechanism::Sha512, b"pw", b"salt", 4096);
        let login = KafkaLogin {
            serial: "0011223344556677".into(),
            not_after_unix_ms: 5,
            salt: b"salt".to_vec(),
            iterations: 4096,
            sha256: ScramKeys {
                stored_key: v.stored_key.clone(),
                server_key: v.server_key.clone(),
            },
            sha512: ScramKeys {
                stored_key: w.stored_key.clone(),
                server_key: w.server_key.clone(),
            },
            authority_signature: vec![7; 64],
        };
        let name = login.username();
        assert!(name.len() < 600 && !name.contains([',', '=']), "{name}");
        assert_eq!(KafkaLogin::from_username(&name), Ok(login.clone()));
        assert_eq!(login.verifier(Mechanism::Sha256), v);
        assert_eq!(login.verifier(Mechanism::Sha512), w);
        let mut other = login.clone();
        other.not_after_unix_ms = 6;
        assert_ne!(login.signed_bytes(b"m"), other.signed_bytes(b"m"));
        assert_ne!(login.signed_bytes(b"m"), login.signed_bytes(b"n"));
        for bad in ["alice", "meshlog1.", "meshlog1.!!", "meshlog1.AAAA", &"meshlog1.A".repeat(200)]
        {
            assert!(KafkaLogin::from_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_parse_their_names() {
        for r in [PeerRole::Node, PeerRole::Client] {
            assert_eq!(PeerRole::parse(r.as_str()), Some(r));
        }
        assert_eq!(PeerRole::parse("admin"), None);
    }
}
