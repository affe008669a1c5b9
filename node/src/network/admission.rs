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
//! A client credential also carries a [`KafkaLogin`] (SCRAM verifiers of a password
//! derived from its role key, signed by the authority): the Kafka listener checks it
//! with [`Admission::kafka_verifier`] and runs SCRAM, so a Kafka client proves the same
//! credential without a secret crossing the wire (`meshlog mesh kafka-login FILE`
//! prints its user name and password).
//!
//! Files are JSON with hex-encoded keys, written with mode 0600.

use super::{cause, Keypair, NetworkError, PeerId};
use libp2p::identity::PublicKey;
use meshlog_protocol::admission::{
    proof_message, Certificate, Hello, KafkaLogin, PeerRole, Proof, ScramKeys,
};
use meshlog_protocol::scram::{self, Mechanism, Verifier};
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
/// PBKDF2 iterations of an issued Kafka login (Kafka's minimum for SCRAM; a client
/// pays them once per connection, the node never does).
const KAFKA_LOGIN_ITERATIONS: u32 = scram::MIN_ITERATIONS;

/// A role key with the authority's certificate for it: what a member proves with.
#[derive(Clone)]
pub struct Credential {
    certificate: Certificate,
    key: Keypair,
    /// The Kafka listener's login (client credentials issued since it exists).
    kafka_login: Option<KafkaLogin>,
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
    /// The Kafka login as its SCRAM user name (absent in older client credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kafka_username: Option<String>,
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
        let kafka_login = f.kafka_username.as_deref().map(KafkaLogin::from_username).transpose();
        let kafka_login = kafka_login.map_err(|e| file_err(path, e))?;
        if let Some(login) = &kafka_login {
            check_kafka_login(login, &certificate.mesh).map_err(|e| file_err(path, e))?;
            if login.serial != certificate.serial {
                return Err(file_err(path, "the Kafka login is for another credential"));
            }
        }
        Ok(Credential { certificate, key, kafka_login })
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
            kafka_username: self.kafka_username(),
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

    /// The SCRAM user name of this credential's Kafka login (client credentials).
    pub fn kafka_username(&self) -> Option<String> {
        self.kafka_login.as_ref().map(KafkaLogin::username)
    }

    /// The Kafka password: derived from the role secret key, so it is never stored.
    pub fn kafka_password(&self) -> Result<String, NetworkError> {
        let secret = self.key.to_protobuf_encoding().map_err(|e| NetworkError::BadRecord(cause(e)))?;
        Ok(scram::derive_password(&secret))
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
        let mut credential = Credential { certificate, key, kafka_login: None };
        if role == PeerRole::Client {
            credential.kafka_login = Some(self.kafka_login(&credential)?);
        }
        Ok(credential)
    }

    /// The signed Kafka login of a client credential: SCRAM verifiers (both
    /// mechanisms, one random salt) of the password its role key derives.
    fn kafka_login(&self, credential: &Credential) -> Result<KafkaLogin, NetworkError> {
        let password = credential.kafka_password()?;
        let salt: [u8; 16] = rand::random();
        let keys = |m| {
            let v = Verifier::from_password(m, password.as_bytes(), &salt, KAFKA_LOGIN_ITERATIONS);
            ScramKeys { stored_key: v.stored_key, server_key: v.server_key }
        };
        let c = &credential.certificate;
        let mut login = KafkaLogin {
            serial: c.serial.clone(),
            not_after_unix_ms: c.not_after_unix_ms,
            salt: salt.to_vec(),
            iterations: KAFKA_LOGIN_ITERATIONS,
            sha256: keys(Mechanism::Sha256),
            sha512: keys(Mechanism::Sha512),
            authority_signature: Vec::new(),
        };
        login.authority_signature =
            self.key.sign(&login.signed_bytes(&c.mesh)).map_err(|e| NetworkError::BadRecord(cause(e)))?;
        Ok(login)
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

    /// The SCRAM verifier a Kafka client's user name carries for `mechanism`, once
    /// the same checks as a hello's have passed: the authority's signature, the mesh,
    /// the revocation list and the expiry. An open mesh has no logins.
    pub fn kafka_verifier(&self, username: &str, mechanism: Mechanism) -> Result<Verifier, String> {
        let Admission::Closed { credential, revoked } = self else {
            return Err("this mesh is open: it has no Kafka logins".into());
        };
        let login = KafkaLogin::from_username(username)?;
        check_kafka_login(&login, &credential.certificate.mesh)?;
        if revoked.contains(&login.serial) {
            return Err(format!("credential {} is revoked", login.serial));
        }
        if login.not_after_unix_ms != 0 && login.not_after_unix_ms < unix_ms() {
            return Err(format!("credential {} has expired", login.serial));
        }
        Ok(login.verifier(mechanism))
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

/// Check that `login` is signed by the authority `mesh`.
fn check_kafka_login(login: &KafkaLogin, mesh: &[u8]) -> Result<(), String> {
    let authority = PublicKey::try_decode_protobuf(mesh).map_err(|e| format!("mesh authority key: {e}"))?;
    if !authority.verify(&login.signed_bytes(mesh), &login.authority_signature) {
        return Err("the Kafka login is not signed by this mesh's authority".into());
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

    #[test]
    fn a_client_credential_logs_in_to_kafka_by_scram_and_nothing_else_does() {
        let authority = Authority::generate();
        let node = authority.issue(PeerRole::Node, None).unwrap();
        let client = authority.issue(PeerRole::Client, None).unwrap();
        assert!(node.kafka_username().is_none(), "node credentials have no Kafka login");
        let (user, password) = (client.kafka_username().unwrap(), client.kafka_password().unwrap());
        for m in Mechanism::ALL {
            let verifier = closed(&node).kafka_verifier(&user, m).unwrap();
            let first = format!("n,,n={user},r=cn");
            let server = scram::ServerFirst::new(
                &scram::ClientFirst::parse(first.as_bytes()).unwrap(),
                verifier,
                "sn",
            );
            let server = server.unwrap();
            let (fin, _) = scram::client_final(m, password.as_bytes(), &first, server.message()).unwrap();
            assert!(server.client_final(fin.as_bytes()).is_ok(), "{m:?}");
        }
        assert!(Admission::Open.kafka_verifier(&user, Mechanism::Sha256).is_err());
        let other = Authority::generate().issue(PeerRole::Node, None).unwrap();
        let e = closed(&other).kafka_verifier(&user, Mechanism::Sha256).unwrap_err();
        assert!(e.contains("not signed by this mesh"), "{e}");
        let revoked = Admission::Closed {
            credential: node.clone(),
            revoked: [client.serial().to_string()].into_iter().collect(),
        };
        assert!(revoked.kafka_verifier(&user, Mechanism::Sha256).unwrap_err().contains("revoked"));
        // An expiry moved by the holder breaks the signature; an honest past one expires.
        let mut login = client.kafka_login.clone().unwrap();
        login.not_after_unix_ms = 1;
        let e = closed(&node).kafka_verifier(&login.username(), Mechanism::Sha256).unwrap_err();
        assert!(e.contains("not signed"), "{e}");
        login.authority_signature = authority.key.sign(&login.signed_bytes(&node.certificate.mesh)).unwrap();
        let e = closed(&node).kafka_verifier(&login.username(), Mechanism::Sha256).unwrap_err();
        assert!(e.contains("expired"), "{e}");
        // The login survives the credential file; the password is recomputed from it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CLIENT_CREDENTIAL_FILE);
        client.save(&path).unwrap();
        let loaded = Credential::load(&path).unwrap();
        assert_eq!((loaded.kafka_username().unwrap(), loaded.kafka_password().unwrap()), (user, password));
    }
}
