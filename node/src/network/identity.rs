//! A node's identity: an ed25519 keypair kept in its data directory. The PeerId derived
//! from it is the node's id; nobody hands ids out.

use super::{cause, Cause, NetworkError};
use libp2p::identity::Keypair;
use libp2p::PeerId;
use meshlog_protocol::NodeId;
use std::path::Path;

/// A peer's id as the wire and records carry it: the one place a libp2p `PeerId` becomes
/// a [`NodeId`] (base58 text, exactly what `PeerId`'s `Display` prints).
pub trait ToNodeId {
    /// The [`NodeId`] of this peer.
    fn node_id(&self) -> NodeId;
}

impl ToNodeId for PeerId {
    fn node_id(&self) -> NodeId {
        NodeId::new(self.to_base58())
    }
}

/// The `PeerId` a [`NodeId`] names, or `None` when its text is not one (a malformed or
/// hostile record: callers skip it).
pub fn peer_of(id: &NodeId) -> Option<PeerId> {
    id.as_str().parse().ok()
}

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "node.key";

/// Load the keypair from `dir`, or create and save a new one on first start.
pub fn load_or_create(dir: &Path) -> Result<Keypair, NetworkError> {
    let path = dir.join(KEY_FILE);
    let err = |e: Cause| NetworkError::Identity { path: path.display().to_string(), source: e };
    match std::fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| err(cause(e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| err(cause(e)))?;
            std::fs::create_dir_all(dir).map_err(|e| err(cause(e)))?;
            let tmp = dir.join(format!("{KEY_FILE}.tmp"));
            write_private(&tmp, &bytes).map_err(|e| err(cause(e)))?;
            std::fs::rename(&tmp, &path).map_err(|e| err(cause(e)))?;
            // The rename is durable only once the directory entry is.
            sync_dir(dir).map_err(|e| err(cause(e)))?;
            Ok(key)
        }
        Err(e) => Err(err(cause(e))),
    }
}

/// Load a client's persistent key from `path`, or create it there on first use (so an
/// allowlisted mesh can admit a known client, `--identity FILE`).
pub fn load_or_create_file(path: &Path) -> Result<Keypair, NetworkError> {
    let err = |e: Cause| NetworkError::Identity { path: path.display().to_string(), source: e };
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| err(cause(e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| err(cause(e)))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| err(cause(e)))?;
            }
            write_new_private(path, &bytes).map_err(|e| err(cause(e)))?;
            Ok(key)
        }
        Err(e) => Err(err(cause(e))),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Write a new secret file (mode 0600), refusing to replace an existing one, and make
/// it durable (the file, then its directory entry).
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    sync_dir(path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

/// fsync a directory, so the entries created or renamed in it survive a power cut.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #[test]
    fn identity_is_stable_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::load_or_create(dir.path()).unwrap();
        let b = super::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
    }

    #[test]
    fn a_client_identity_file_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/client.key");
        let a = super::load_or_create_file(&path).unwrap();
        let b = super::load_or_create_file(&path).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_garbage_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(super::KEY_FILE), b"nonsense").unwrap();
        let e = super::load_or_create(dir.path()).unwrap_err();
        assert!(e.to_string().contains("node.key"), "{e}");
    }

    #[test]
    fn a_peer_id_and_its_node_id_convert_both_ways() {
        let peer = libp2p::identity::Keypair::generate_ed25519().public().to_peer_id();
        use super::ToNodeId;
        let id = peer.node_id();
        assert_eq!(id.as_str(), peer.to_string());
        assert_eq!(super::peer_of(&id), Some(peer));
        assert_eq!(super::peer_of(&meshlog_protocol::NodeId::new("not a peer")), None);
    }
}
