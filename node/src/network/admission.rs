//! Admission: which role a peer holds on its connections, and how a closed mesh proves
//! it.
//!
//! - An **open mesh** (the default) believes the role a peer declares in its hello: it
//!   trusts every node on its network, as a LAN service does. A peer that declared
//!   itself a client, or sent no hello, still never gets a node's powers.
//! - A **closed mesh** has an authority key (`meshlog mesh init DIR`) that signs
//!   certificates for role keys. A node starts with a node credential, a client with a
//!   client credential (certificate + role secret key). On each connection the hello
//!   carries the certificate and the role key's signature over both peer ids: the
//!   verifier checks the authority's signature, the mesh, the expiry, the revocation
//!   list and the connection binding. The role secret never leaves its file. A client
//!   credential can never prove the node role.
//!
//! Files are JSON with hex-encoded keys, written with mode 0600.

use super::{cause, Keypair, NetworkError, PeerId};
use libp2p::identity::PublicKey;
use meshlog_protocol::admission::{proof_message, Certificate, Hello, PeerRole, Proof};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The authority key's file name inside a mesh directory.
pub const AUTHORITY_FILE: &str = "authority.key";
/// The node credential's file name inside a mesh directory.
pub const NODE_CREDENTIAL_FILE: &str = "node.credential";
/// The client credential's file name inside a mesh directory.
pub const CLIENT_CREDENTIAL_FILE: &str = "client.credential";
/// Largest credential or authority file read.
const MAX_FILE_BYTES: u64 = 64 << 10;

/// A role key with the authority's certificate for it: what a member proves with.
#[derive(Clone)]
pub struct Credential {
    certificate: Certificate,
    key: Keypair,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialFile {
    meshlog_credential: u32,
    role: String,
    serial: String,
    mesh: String,
    not_after_unix_ms: u64,
    public_key: String,
    authority_signature: String,
    secret_key: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorityFile {
    meshlog_authority: u32,
    secret_key: String,
}

fn file_err(path: &Path, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> NetworkError {
    NetworkError::Credential { path: path.display().to_string(), source: cause(e) }
}

fn read_small(path: &Path) -> Result<String, NetworkError> {
    let len = std::fs::metadata(path).map_err(|e| file_err(path, e))?.len();
    if len > MAX_FILE_BYTES {
        return Err(file_err(path, format!("{len} bytes is too large for a credential")));
    }
    std::fs::read_to_string(path).map_err(|e| file_err(path, e))
}

impl Credential {
    /// Read a credential file and check that its certificate is the authority's and
    /// matches its key.
    pub fn load(path: &Path) -> Result<Credential, NetworkError> {
        let text = read_small(path)?;
        let f: CredentialFile = serde_json::from_str(&text).map_err(|e| file_err(path, e))?;
        if f.meshlog_credential != 1 {
            return Err(file_err(path, format!("unknown credential version {}", f.meshlog_credential)));
        }
        let role =
            PeerRole::parse(&f.role).ok_or_else(|| file_err(path, format!("unknown role '{}'", f.role)))?;
        let hex =
            |field: &str, s: &str| from_hex(s).ok_or_else(|| file_err(path, format!("{field} is not hex")));
        let key = Keypair::from_protobuf_encoding(&hex("secret_key", &f.secret_key)?)
            .map_err(|e| file_err(path, format!("secret_key: {e}")))?;
        let certificate = Certificate {
            mesh: hex("mesh", &f.mesh)?,
            role,
            serial: f.serial,
            not_after_unix_ms: f.not_after_unix_ms,
            public_key: hex("public_key", &f.public_key)?,
            authority_signature: hex("authority_signature", &f.authority_signature)?,
        };
        if certificate.public_key != key.public().encode_protobuf() {
            return Err(file_err(path, "the certificate is for another key"));
        }
        check_certificate(&certificate, &certificate.mesh).map_err(|e| file_err(path, e))?;
        Ok(Credential { certificate, key })
    }

    /// Write this credential to `path` (mode 0600, never overwriting).
    pub fn save(&self, path: &Path) -> Result<(), NetworkError> {
        let c = &self.certificate;
        let secret = self.key.to_protobuf_encoding().map_err(|e| file_err(path, e))?;
        let f = CredentialFile {
            meshlog_credential: 1,
            role: c.role.as_str().into(),
            serial: c.serial.clone(),
            mesh: to_hex(&c.mesh),
            not_after_unix_ms: c.not_after_unix_ms,
            public_key: to_hex(&c.public_key),
            authority_signature: to_hex(&c.authority_signature),
            secret_key: to_hex(&secret),
        };
        let text = serde_json::to_string_pretty(&f).map_err(|e| file_err(path, e))?;
        super::identity::write_new_private(path, text.as_bytes()).map_err(|e| file_err(path, e))
    }

    /// The role this credential proves.
    pub fn role(&self) -> PeerRole {
        self.certificate.role
    }

    /// The credential's serial (what a revocation names).
    pub fn serial(&self) -> &str {
        &self.certificate.serial
    }

    /// A short fingerprint of the mesh (its authority key), safe to log.
    pub fn mesh_fingerprint(&self) -> String {
        mesh_fingerprint(&self.certificate.mesh)
    }

    fn prove(&self, prover: &PeerId, verifier: &PeerId) -> Result<Proof, NetworkError> {
        let c = &self.certificate;
        let msg = proof_message(&c.mesh, c.role, &prover.to_bytes(), &verifier.to_bytes());
        let signature = self.key.sign(&msg).map_err(|e| NetworkError::BadRecord(cause(e)))?;
        Ok(Proof { certificate: c.clone(), signature })
    }
}

/// The mesh authority: the key that signs credentials. Keep its file offline.
pub struct Authority {
    key: Keypair,
}

impl Authority {
    /// A new random authority (a new mesh).
    pub fn generate() -> Authority {
        Authority { key: Keypair::generate_ed25519() }
    }

    /// Read an authority file.
    pub fn load(path: &Path) -> Result<Authority, NetworkError> {
        let f: AuthorityFile = serde_json::from_str(&read_small(path)?).map_err(|e| file_err(path, e))?;
        let bytes = from_hex(&f.secret_key).ok_or_else(|| file_err(path, "secret_key is not hex"))?;
        let key = Keypair::from_protobuf_encoding(&bytes).map_err(|e| file_err(path, e))?;
        Ok(Authority { key })
    }

    /// Write the authority file (mode 0600, never overwriting).
    pub fn save(&self, path: &Path) -> Result<(), NetworkError> {
        let secret = self.key.to_protobuf_encoding().map_err(|e| file_err(path, e))?;
        let f = AuthorityFile { meshlog_authority: 1, secret_key: to_hex(&secret) };
        let text = serde_json::to_string_pretty(&f).map_err(|e| file_err(path, e))?;
        super::identity::write_new_private(path, text.as_bytes()).map_err(|e| file_err(path, e))
    }

    /// A new credential for `role`, valid for `valid_for` (None: no expiry).
    pub fn issue(&self, role: PeerRole, valid_for: Option<Duration>) -> Result<Credential, NetworkError> {
        let key = Keypair::generate_ed25519();
        let serial: [u8; 8] = rand::random();
        let not_after_unix_ms = valid_for.map_or(0, |d| unix_ms().saturating_add(d.as_millis() as u64));
        let mut certificate = Certificate {
            mesh: self.key.public().encode_protobuf(),
            role,
            serial: to_hex(&serial),
            not_after_unix_ms,
            public_key: key.public().encode_protobuf(),
            authority_signature: Vec::new(),
        };
        certificate.authority_signature =
            self.key.sign(&certificate.signed_bytes()).map_err(|e| NetworkError::BadRecord(cause(e)))?;
        Ok(Credential { certificate, key })
    }

    /// A short fingerprint of the mesh this authority signs for.
    pub fn mesh_fingerprint(&self) -> String {
        mesh_fingerprint(&self.key.public().encode_protobuf())
    }
}

fn mesh_fingerprint(mesh: &[u8]) -> String {
    let crc = crc32c::crc32c(mesh);
    format!("{crc:08x}")
}

/// How a node or client admits its peers.
// One per process, built once at start: the size of the closed variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Default)]
pub enum Admission {
    /// Believe the declared role (a trusted LAN). The zero-config default.
    #[default]
    Open,
    /// Require a proof signed under this credential's mesh authority.
    Closed {
        /// Our own credential (its certificate names the mesh).
        credential: Credential,
        /// Serials of revoked credentials.
        revoked: HashSet<String>,
    },
}

impl Admission {
    /// The hello this side sends to `remote` on a connection, declaring `role`.
    pub(super) fn hello(
        &self,
        role: PeerRole,
        local: &PeerId,
        remote: &PeerId,
    ) -> Result<Hello, NetworkError> {
        match self {
            Admission::Open => Ok(Hello { role, proof: None }),
            Admission::Closed { credential, .. } => {
                // A client credential cannot ask for more than it proves.
                let role = if credential.role() == PeerRole::Client { PeerRole::Client } else { role };
                Ok(Hello { role, proof: Some(credential.prove(local, remote)?) })
            }
        }
    }

    /// The role `remote` holds after its hello to `local`, or why it is refused.
    pub(super) fn admit(&self, hello: &Hello, remote: &PeerId, local: &PeerId) -> Result<PeerRole, String> {
        let Admission::Closed { credential, revoked } = self else {
            return Ok(hello.role);
        };
        let proof = hello.proof.as_ref().ok_or("no credential: this mesh is closed")?;
        let cert = &proof.certificate;
        let mesh = &credential.certificate.mesh;
        check_certificate(cert, mesh)?;
        if revoked.contains(&cert.serial) {
            return Err(format!("credential {} is revoked", cert.serial));
        }
        if cert.not_after_unix_ms != 0 && cert.not_after_unix_ms < unix_ms() {
            return Err(format!("credential {} has expired", cert.serial));
        }
        let key = PublicKey::try_decode_protobuf(&cert.public_key).map_err(|e| format!("role key: {e}"))?;
        let msg = proof_message(mesh, cert.role, &remote.to_bytes(), &local.to_bytes());
        if !key.verify(&msg, &proof.signature) {
            return Err("the proof is not for this connection".into());
        }
        // The certificate caps the role: a client credential never makes a node.
        Ok(if cert.role == PeerRole::Client { PeerRole::Client } else { hello.role })
    }

    /// Whether this mesh requires proofs.
    pub fn is_closed(&self) -> bool {
        matches!(self, Admission::Closed { .. })
    }
}

/// Check that `cert` is signed by the authority `mesh`.
fn check_certificate(cert: &Certificate, mesh: &[u8]) -> Result<(), String> {
    if cert.mesh != mesh {
        return Err("the credential is for another mesh".into());
    }
    let authority = PublicKey::try_decode_protobuf(mesh).map_err(|e| format!("mesh authority key: {e}"))?;
    if !authority.verify(&cert.signed_bytes(), &cert.authority_signature) {
        return Err("the credential's certificate is not signed by the mesh authority".into());
    }
    Ok(())
}

/// The roles of the peers this process is connected to, shared by the swarm task and
/// the replication stream readers.
#[derive(Clone, Default)]
pub(super) struct Roles {
    inner: Arc<RolesInner>,
}

#[derive(Default)]
struct RolesInner {
    map: RwLock<HashMap<PeerId, PeerRole>>,
    changed: tokio::sync::Notify,
}

impl Roles {
    pub(super) fn get(&self, peer: &PeerId) -> Option<PeerRole> {
        self.inner.map.read().unwrap_or_else(|e| e.into_inner()).get(peer).copied()
    }

    pub(super) fn is_node(&self, peer: &PeerId) -> bool {
        self.get(peer) == Some(PeerRole::Node)
    }

    pub(super) fn set(&self, peer: PeerId, role: PeerRole) {
        self.inner.map.write().unwrap_or_else(|e| e.into_inner()).insert(peer, role);
        self.inner.changed.notify_waiters();
    }

    pub(super) fn remove(&self, peer: &PeerId) {
        self.inner.map.write().unwrap_or_else(|e| e.into_inner()).remove(peer);
        self.inner.changed.notify_waiters();
    }

    /// The peer's role once its hello has been checked, waiting at most `budget`.
    pub(super) async fn wait(&self, peer: &PeerId, budget: Duration) -> Option<PeerRole> {
        let deadline = tokio::time::Instant::now() + budget;
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(r) = self.get(peer) {
                return Some(r);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.get(peer);
            }
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch (credential expiry only).
fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(credential: &Credential) -> Admission {
        Admission::Closed { credential: credential.clone(), revoked: HashSet::new() }
    }

    fn peers() -> (PeerId, PeerId) {
        (PeerId::random(), PeerId::random())
    }

    #[test]
    fn a_node_credential_admits_a_node_and_a_client_credential_only_a_client() {
        let authority = Authority::generate();
        let node = authority.issue(PeerRole::Node, None).unwrap();
        let client = authority.issue(PeerRole::Client, None).unwrap();
        let (a, b) = peers();
        let verifier = closed(&node);
        let hello = closed(&node).hello(PeerRole::Node, &a, &b).unwrap();
        assert_eq!(verifier.admit(&hello, &a, &b), Ok(PeerRole::Node));
        // A client credential that asks for the node role is still only a client.
        let mut hello = closed(&client).hello(PeerRole::Node, &a, &b).unwrap();
        assert_eq!(hello.role, PeerRole::Client);
        hello.role = PeerRole::Node;
        assert_eq!(verifier.admit(&hello, &a, &b), Ok(PeerRole::Client));
    }

    #[test]
    fn proofs_bind_the_connection_the_mesh_and_honour_revocation() {
        let authority = Authority::generate();
        let node = authority.issue(PeerRole::Node, None).unwrap();
        let (a, b) = peers();
        let hello = closed(&node).hello(PeerRole::Node, &a, &b).unwrap();
        // Replayed by another peer, or towards another verifier.
        assert!(closed(&node).admit(&hello, &PeerId::random(), &b).is_err());
        assert!(closed(&node).admit(&hello, &a, &PeerId::random()).is_err());
        // No proof, or a proof from another mesh.
        assert!(closed(&node).admit(&Hello { role: PeerRole::Node, proof: None }, &a, &b).is_err());
        let other = Authority::generate().issue(PeerRole::Node, None).unwrap();
        let foreign = closed(&other).hello(PeerRole::Node, &a, &b).unwrap();
        assert!(closed(&node).admit(&foreign, &a, &b).unwrap_err().contains("another mesh"));
        // A certificate re-signed for another key, or tampered, fails the authority check.
        let mut tampered = hello.clone();
        tampered.proof.as_mut().unwrap().certificate.role = PeerRole::Node;
        tampered.proof.as_mut().unwrap().certificate.serial.push('0');
        assert!(closed(&node).admit(&tampered, &a, &b).is_err());
        let revoked = Admission::Closed {
            credential: node.clone(),
            revoked: [node.serial().to_string()].into_iter().collect(),
        };
        assert!(revoked.admit(&hello, &a, &b).unwrap_err().contains("revoked"));
    }

    #[test]
    fn expired_credentials_are_refused() {
        let authority = Authority::generate();
        let node = authority.issue(PeerRole::Node, None).unwrap();
        let mut old = authority.issue(PeerRole::Node, Some(Duration::ZERO)).unwrap();
        old.certificate.not_after_unix_ms = 1;
        old.certificate.authority_signature = authority.key.sign(&old.certificate.signed_bytes()).unwrap();
        let (a, b) = peers();
        let hello = closed(&old).hello(PeerRole::Node, &a, &b).unwrap();
        assert!(closed(&node).admit(&hello, &a, &b).unwrap_err().contains("expired"));
    }

    #[test]
    fn credential_files_round_trip_and_refuse_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let authority = Authority::generate();
        authority.save(&dir.path().join(AUTHORITY_FILE)).unwrap();
        let again = Authority::load(&dir.path().join(AUTHORITY_FILE)).unwrap();
        let cred = again.issue(PeerRole::Client, None).unwrap();
        let path = dir.path().join(CLIENT_CREDENTIAL_FILE);
        cred.save(&path).unwrap();
        assert!(cred.save(&path).is_err(), "an existing credential is never overwritten");
        let loaded = Credential::load(&path).unwrap();
        assert_eq!(loaded.role(), PeerRole::Client);
        assert_eq!(loaded.mesh_fingerprint(), authority.mesh_fingerprint());
        let text = std::fs::read_to_string(&path).unwrap().replace("\"client\"", "\"node\"");
        let forged = dir.path().join("forged.credential");
        std::fs::write(&forged, text).unwrap();
        let e = Credential::load(&forged).err().unwrap().to_string();
        assert!(e.contains("not signed by the mesh authority"), "{e}");
    }
}
