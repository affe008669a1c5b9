//! SCRAM (RFC 5802, with SHA-256 per RFC 7677 and SHA-512 as Kafka adds it): the
//! server's side of the exchange that proves a client knows a password without the
//! password, or anything a listener could replay, crossing the wire.
//!
//! Pure: the messages are parsed and built here, the server's nonce is passed in, and
//! the server holds only a [`Verifier`] (salt, iterations, StoredKey, ServerKey), never
//! the password. The hash and MAC come from RustCrypto (`sha2`, `hmac`, `pbkdf2`);
//! comparisons of secrets are constant-time (`subtle`). Every message is bounded by
//! [`MAX_MESSAGE_BYTES`] before it is parsed.
//!
//! Flow: [`ClientFirst::parse`] -> the caller finds the user's [`Verifier`] ->
//! [`ServerFirst::new`] (the server-first message) -> [`ServerFirst::client_final`]
//! (checks the proof, returns the server-final message).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Longest SCRAM message read (a client-first carrying a long username fits easily).
pub const MAX_MESSAGE_BYTES: usize = 4 << 10;
/// Fewest PBKDF2 iterations accepted in a verifier (Kafka's minimum, RFC 7677's advice).
pub const MIN_ITERATIONS: u32 = 4096;
/// Most PBKDF2 iterations accepted in a verifier (each client login costs this many).
pub const MAX_ITERATIONS: u32 = 1 << 20;

/// A SCRAM mechanism, by its SASL name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// `SCRAM-SHA-256`.
    Sha256,
    /// `SCRAM-SHA-512`.
    Sha512,
}

impl Mechanism {
    /// Both mechanisms, preferred first.
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism named `name` (exact, as SASL names are case-sensitive).
    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The hash's output length: the length of every key and signature.
    pub fn key_len(self) -> usize {
        match self {
            Mechanism::Sha256 => 32,
            Mechanism::Sha512 => 64,
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length: new_from_slice cannot fail.
        match self {
            Mechanism::Sha256 => {
                let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                    .expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut m = <Hmac<Sha512> as KeyInit>::new_from_slice(key)
                    .expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// RFC 5802's `Hi`: PBKDF2 with this mechanism's HMAC, one block.
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.key_len()];
        match self {
            Mechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
            Mechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out)
            }
        }
        out
    }
}

/// What a server stores for a user instead of the password (RFC 5802, section 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    /// The mechanism the keys are for.
    pub mechanism: Mechanism,
    /// The PBKDF2 salt.
    pub salt: Vec<u8>,
    /// The PBKDF2 iteration count.
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`: checks a client's proof.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`: proves the server to the client.
    pub server_key: Vec<u8>,
}

impl Verifier {
    /// The verifier of `password` (already SASLprep'd: meshlog's passwords are ASCII).
    pub fn from_password(
        mechanism: Mechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Verifier {
        let salted = mechanism.hi(password, salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        Verifier {
            mechanism,
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(&salted, b"Server Key"),
        }
    }

    /// Whether the verifier is one this server may use: key lengths of its mechanism,
    /// a salt, and an iteration count within [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    pub fn check(&self) -> Result<(), ScramError> {
        let n = self.mechanism.key_len();
        if self.stored_key.len() != n || self.server_key.len() != n || self.salt.is_empty() {
            return Err(ScramError::BadVerifier("key or salt lengths"));
        }
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&self.iterations) {
            return Err(ScramError::BadVerifier("iteration count out of range"));
        }
        Ok(())
    }
}

/// Why an exchange failed. The messages are safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message does not follow RFC 5802's grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding, which a plaintext listener cannot offer.
    #[error("channel binding is not supported")]
    ChannelBinding,
    /// The client-final message does not continue this exchange.
    #[error("the nonce does not match this exchange")]
    NonceMismatch,
    /// The proof is wrong: wrong password (or user).
    #[error("invalid credentials (the proof does not match)")]
    InvalidProof,
    /// The stored verifier is unusable.
    #[error("unusable SCRAM verifier: {0}")]
    BadVerifier(&'static str),
}

/// A parsed client-first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user name, unescaped.
    pub username: String,
    /// The client's nonce.
    pub nonce: String,
    /// The GS2 header (`n,,` or `y,,`): what `c=` must carry, base64'd.
    gs2_header: String,
    /// The message without the GS2 header: part of the signed AuthMessage.
    bare: String,
}

fn text(msg: &[u8]) -> Result<&str, ScramError> {
    if msg.len() > MAX_MESSAGE_BYTES {
        return Err(ScramError::Malformed("message too long"));
    }
    let s = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    if s.chars().any(char::is_control) {
        return Err(ScramError::Malformed("control character"));
    }
    Ok(s)
}

/// RFC 5802 `printable`, without `,`: what a nonce is made of.
fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// A `saslname` unescaped: `=2C` is `,`, `=3D` is `=`, any other `=` is an error.
pub fn unescape_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad '=' escape in the user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A user name as a `saslname` (`,` and `=` escaped).
pub fn escape_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

impl ClientFirst {
    /// Parse `gs2-header client-first-bare`: `n,,n=USER,r=NONCE[,ext...]`.
    pub fn parse(msg: &[u8]) -> Result<ClientFirst, ScramError> {
        let s = text(msg)?;
        let mut parts = s.splitn(3, ',');
        let (cb, authzid, bare) = match (parts.next(), parts.next(), parts.next()) {
            (Some(cb), Some(a), Some(bare)) => (cb, a, bare),
            _ => return Err(ScramError::Malformed("no GS2 header")),
        };
        match cb {
            "n" | "y" => {}
            p if p.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad channel-binding flag")),
        }
        let mut attrs = bare.split(',');
        let user = attrs
            .next()
            .and_then(|a| a.strip_prefix("n="))
            .ok_or(ScramError::Malformed("no n="))?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no r="))?;
        let username = unescape_saslname(user)?;
        if username.is_empty() || !valid_nonce(nonce) {
            return Err(ScramError::Malformed("empty user name or bad nonce"));
        }
        if !authzid.is_empty()
            && authzid.strip_prefix("a=").map(unescape_saslname) != Some(Ok(username.clone()))
        {
            return Err(ScramError::Malformed("the authorization id differs from the user name"));
        }
        let gs2_header = format!("{cb},{authzid},");
        Ok(ClientFirst { username, nonce: nonce.to_string(), gs2_header, bare: bare.to_string() })
    }
}

/// The server between its first message and the client's final one.
#[derive(Debug, Clone)]
pub struct ServerFirst {
    verifier: Verifier,
    gs2_header: String,
    nonce: String,
    /// `client-first-bare "," server-first`: the start of the AuthMessage.
    auth_start: String,
    message: String,
}

impl ServerFirst {
    /// Answer `first` for a user with `verifier`, adding `server_nonce` (random,
    /// printable, no `,`: chosen by the caller) to the client's nonce.
    pub fn new(
        first: &ClientFirst,
        verifier: Verifier,
        server_nonce: &str,
    ) -> Result<ServerFirst, ScramError> {
        verifier.check()?;
        if !valid_nonce(server_nonce) {
            return Err(ScramError::Malformed("bad server nonce"));
        }
        let nonce = format!("{}{server_nonce}", first.nonce);
        let message =
            format!("r={nonce},s={},i={}", STANDARD.encode(&verifier.salt), verifier.iterations);
        let auth_start = format!("{},{message}", first.bare);
        Ok(ServerFirst {
            verifier,
            gs2_header: first.gs2_header.clone(),
            nonce,
            auth_start,
            message,
        })
    }

    /// The server-first message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Check the client-final message `c=...,r=...,p=...`; the server-final message
    /// (`v=...`, the server's own proof) if the client's proof is right.
    pub fn client_final(&self, msg: &[u8]) -> Result<String, ScramError> {
        let s = text(msg)?;
        let (without_proof, proof) = s.rsplit_once(",p=").ok_or(ScramError::Malformed("no p="))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no c="))?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no r="))?;
        if STANDARD.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(ScramError::Malformed("c= does not repeat the GS2 header"));
        }
        // RFC 5802 wants the nonce repeated exactly; librdkafka (2.0 at least) sends
        // its own nonce again in front of it. Kafka's broker accepts any nonce that
        // ends with the server-first one, and so do we: the AuthMessage the proof
        // signs is the message as sent, so the fresh server nonce is still proven.
        if !nonce.ends_with(self.nonce.as_str()) {
            return Err(ScramError::NonceMismatch);
        }
        let proof =
            STANDARD.decode(proof).map_err(|_| ScramError::Malformed("p= is not base64"))?;
        let m = self.verifier.mechanism;
        if proof.len() != m.key_len() {
            return Err(ScramError::InvalidProof);
        }
        let auth = format!("{},{without_proof}", self.auth_start);
        let client_signature = m.hmac(&self.verifier.stored_key, auth.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(p, s)| p ^ s).collect();
        if m.hash(&client_key).ct_eq(&self.verifier.stored_key).unwrap_u8() == 0 {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = m.hmac(&self.verifier.server_key, auth.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_signature)))
    }
}

/// The Kafka password of a client credential: HMAC-SHA-256 of a fixed label under the
/// credential's role secret key, unpadded base64url (43 ASCII characters). Whoever
/// holds the credential file can recompute it; its verifiers reveal nothing of it.
pub fn derive_password(role_secret: &[u8]) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    URL_SAFE_NO_PAD.encode(Mechanism::Sha256.hmac(role_secret, b"meshlog-kafka-password-v1"))
}

/// The client's side, for tests and tools: the client-final message for `password`
/// after `client_first` (with its GS2 header) and the server's `server_first`, and the
/// server-final message to expect.
pub fn client_final(
    mechanism: Mechanism,
    password: &[u8],
    client_first: &str,
    server_first: &str,
) -> Result<(String, String), ScramError> {
    let first = ClientFirst::parse(client_first.as_bytes())?;
    let mut nonce = None;
    let (mut salt, mut iterations) = (None, None);
    for a in server_first.split(',') {
        match a.split_at_checked(2) {
            Some(("r=", v)) => nonce = Some(v),
            Some(("s=", v)) => salt = STANDARD.decode(v).ok(),
            Some(("i=", v)) => iterations = v.parse::<u32>().ok(),
            _ => {}
        }
    }
    let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
        return Err(ScramError::Malformed("server-first lacks r=, s= or i="));
    };
    let salted = mechanism.hi(password, &salt, iterations);
    let client_key = mechanism.hmac(&salted, b"Client Key");
    let without_proof = format!("c={},r={nonce}", STANDARD.encode(&first.gs2_header));
    let auth = format!("{},{server_first},{without_proof}", first.bare);
    let signature = mechanism.hmac(&mechanism.hash(&client_key), auth.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
    let server_signature = mechanism.hmac(&mechanism.hmac(&salted, b"Server Key"), auth.as_bytes());
    Ok((
        format!("{without_proof},p={}", STANDARD.encode(proof)),
        format!("v={}", STANDARD.encode(server_signature)),
    ))
}

#[cfg(test)]
mod tests;
