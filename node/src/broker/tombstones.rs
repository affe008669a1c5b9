//! The tombstones of a topic name's earlier lives, kept after a re-creation replaced
//! them, so a node that was away through a delete can still be shown it.
//!
//! A live topic is replaced only by its own tombstone, signed by a replica of its
//! partition 0 and checked against the record held ([`super::Topics::adopt`]); a later
//! incarnation is taken only over a tombstone. A node that slept through a delete and a
//! re-creation holds the old life as live, so the peers it pulls records from send the
//! name's archived tombstones first ([`Tombstones::chain`]), oldest first, then the
//! current record: the one for its life retires it, then the new life is taken. Only
//! the last [`KEPT_PER_NAME`] are kept (each carries its topic's replica sets); a node
//! away through more lives of one name keeps its old life until an operator deletes
//! its data directory's copy.

use super::topics::open_stored;
use crate::storage::{keys, StorageError, Store};
use meshlog_protocol::codec;
use meshlog_protocol::mesh::SignedRecord;
use std::collections::BTreeMap;
use std::sync::RwLock;

/// Tombstones kept per name.
pub const KEPT_PER_NAME: usize = 8;

/// Archived tombstones by topic name, oldest incarnation first.
#[derive(Default)]
pub(super) struct Tombstones {
    by_name: RwLock<BTreeMap<String, Vec<(u64, SignedRecord)>>>,
}

impl Tombstones {
    /// The archive in the store; a stored record that is not a valid tombstone is
    /// skipped (and logged).
    pub fn load(store: &Store) -> Result<Tombstones, StorageError> {
        let mut by_name: BTreeMap<String, Vec<(u64, SignedRecord)>> = BTreeMap::new();
        for (key, bytes) in store.meta_scan(keys::TOMBSTONE_PREFIX)? {
            match open_stored(&bytes) {
                Ok((record, signed)) if record.revision.deleted => {
                    let list = by_name.entry(record.info.name.clone()).or_default();
                    list.push((record.revision.incarnation, signed));
                }
                Ok(_) => tracing::warn!(%key, "archived record is not a tombstone; skipped"),
                Err(e) => tracing::warn!(%key, error = %e, "invalid archived tombstone skipped"),
            }
        }
        for list in by_name.values_mut() {
            list.sort_by_key(|(k, _)| *k);
        }
        Ok(Tombstones { by_name: RwLock::new(by_name) })
    }

    /// Keep `signed`, the tombstone of incarnation `incarnation` of `name`, dropping the
    /// oldest beyond [`KEPT_PER_NAME`]. Durable with the store's next flush.
    pub fn archive(
        &self,
        store: &Store,
        name: &str,
        incarnation: u64,
        signed: &SignedRecord,
    ) -> Result<(), StorageError> {
        let bytes = codec::encode(signed).map_err(|e| StorageError::encode("tombstone", e))?;
        store.meta_put(&keys::tombstone(name, incarnation), &bytes)?;
        let mut map = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(name.to_string()).or_default();
        list.retain(|(k, _)| *k != incarnation);
        list.push((incarnation, signed.clone()));
        list.sort_by_key(|(k, _)| *k);
        while list.len() > KEPT_PER_NAME {
            let (old, _) = list.remove(0);
            store.meta_delete(&keys::tombstone(name, old))?;
        }
        Ok(())
    }

    /// The archived tombstones of `name`, oldest first.
    pub fn chain(&self, name: &str) -> Vec<SignedRecord> {
        let map = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        map.get(name).map(|l| l.iter().map(|(_, s)| s.clone()).collect()).unwrap_or_default()
    }
}
