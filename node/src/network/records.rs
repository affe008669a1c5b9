//! Signed records: a payload, the signer's public key and a signature, so that a record
//! relayed or stored by any node can still be checked against the node that wrote it.

use super::{cause, Keypair, NetworkError, PeerId, ToNodeId};
use libp2p::identity::PublicKey;
use meshlog_protocol::mesh::SignedRecord;

/// Sign `payload` with `key`.
pub fn sign_record(key: &Keypair, payload: Vec<u8>) -> Result<SignedRecord, NetworkError> {
    let signature = key.sign(&payload).map_err(|e| NetworkError::BadRecord(cause(e)))?;
    Ok(SignedRecord { payload, public_key: key.public().encode_protobuf(), signature })
}

/// Check the signature and return the signer's PeerId.
pub fn verify_record(record: &SignedRecord) -> Result<PeerId, NetworkError> {
    let key = PublicKey::try_decode_protobuf(&record.public_key)
        .map_err(|e| NetworkError::BadRecord(cause(format!("public key: {e}"))))?;
    if !key.verify(&record.payload, &record.signature) {
        return Err(NetworkError::BadRecord(cause("signature does not match")));
    }
    Ok(key.to_peer_id())
}

/// Check a DHT record before storing or using it: only topic records are written to the
/// DHT, each signed by its creator (a later version by its author), under the key of
/// its own name.
pub(super) fn check_dht_record(record: &libp2p::kad::Record) -> Result<(), NetworkError> {
    use meshlog_protocol::codec;
    use meshlog_protocol::mesh::TOPIC_KEY_PREFIX;
    let bad = |m: &str| Err(NetworkError::BadRecord(cause(m.to_string())));
    let key = String::from_utf8_lossy(record.key.as_ref()).into_owned();
    let Some(name) = key.strip_prefix(TOPIC_KEY_PREFIX) else {
        return bad("unknown key space");
    };
    let signed: SignedRecord = codec::decode(&record.value).map_err(|e| NetworkError::BadRecord(cause(e)))?;
    let signer = verify_record(&signed)?;
    let topic = meshlog_protocol::revision::decode_record(&signed.payload)
        .map_err(|e| NetworkError::BadRecord(cause(e)))?;
    if topic.info.name != name {
        return bad("record name does not match its key");
    }
    // The creator signs a creation, partition 0's leader each later version.
    if *topic.signer() != signer.node_id() {
        return bad("record creator (or author) is not its signer");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_record_verifies_and_a_tampered_one_does_not() {
        let key = Keypair::generate_ed25519();
        let mut r = sign_record(&key, b"topic".to_vec()).unwrap();
        assert_eq!(verify_record(&r).unwrap(), key.public().to_peer_id());
        r.payload[0] ^= 1;
        assert!(verify_record(&r).is_err());
        // A valid signature by another key cannot pass as the first key's record.
        let other = Keypair::generate_ed25519();
        let mut forged = sign_record(&other, b"topic".to_vec()).unwrap();
        forged.public_key = key.public().encode_protobuf();
        assert!(verify_record(&forged).is_err());
    }
}
