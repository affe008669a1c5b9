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
//! Signatures and keys are opaque bytes here (libp2p's protobuf key encoding); the node
//! checks them. This module is pure data and the exact bytes that get signed.

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
    fn roles_parse_their_names() {
        for r in [PeerRole::Node, PeerRole::Client] {
            assert_eq!(PeerRole::parse(r.as_str()), Some(r));
        }
        assert_eq!(PeerRole::parse("admin"), None);
    }
}
