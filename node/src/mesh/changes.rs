//! Topic changes (DESIGN.md decision 16): a delete, more partitions or config values
//! are a new version of the topic's record, written and signed by the node that leads
//! the topic's partition 0, and spread like a creation (adopted here, gossip, DHT).
//! Every node checks the author against partition 0's replica set and the change
//! against the version it holds (`revision::check_change`), and keeps the latest
//! (`revision::relation`), so all converge without a coordinator.
//!
//! The author serialises its own changes (one at a time on this node) and answers only
//! if its version still stands one settle window later: a change written at the same
//! version by a later leader of partition 0 (a new epoch) wins everywhere, and the
//! loser's client is told so.

use super::{topic_key, Mesh};
use crate::broker::{place_replicas, Adopted, Topic};
use meshlog_protocol::mesh::{GossipMessage, TopicRecord};
use meshlog_protocol::messages::AlterTopic;
use meshlog_protocol::revision::{self, Relation};
use meshlog_protocol::types::{self, TopicConfig, TopicInfo};
use meshlog_protocol::{ErrorCode, NodeId, WireError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a change does to the held record.
pub enum TopicChange {
    /// Delete the topic (a tombstone).
    Delete,
    /// Add partitions and/or set config values.
    Alter(AlterTopic),
}

impl TopicChange {
    fn name(&self) -> &str {
        match self {
            TopicChange::Delete => "delete",
            TopicChange::Alter(_) => "alter",
        }
    }
}

impl Mesh {
    /// Make `change` to topic `name` as the leader of its partition 0 (else
    /// `NOT_LEADER_OR_FOLLOWER`, and the router tries the next replica). Answers with
    /// the topic as changed once the new version has stood for a settle window (or at
    /// once, unchanged anywhere, for a `validate_only` alter).
    pub async fn change_topic(&self, name: &str, change: TopicChange) -> Result<TopicInfo, WireError> {
        if name.starts_with("__") {
            return Err(WireError::new(
                ErrorCode::InvalidTopic,
                format!("'{name}' is an internal topic: it cannot be deleted or altered"),
            ));
        }
        let _one_at_a_time = self.changes.lock().await;
        let t = self.broker.topics().get(name)?;
        let epoch = self.lead_partition_zero(&t)?;
        let mut next = match &change {
            TopicChange::Delete => {
                let mut r = t.record.clone();
                r.revision.deleted = true;
                r
            }
            TopicChange::Alter(a) => self.altered(&t.record, a)?,
        };
        if matches!(&change, TopicChange::Alter(a) if a.validate_only) {
            return Ok(next.info);
        }
        next.revision.version = t.record.revision.version + 1;
        next.revision.author = self.local.clone();
        next.revision.epoch = epoch;
        let internal = |e: String| WireError::new(ErrorCode::Unknown, e);
        let payload = revision::encode_record(&next).map_err(|e| internal(e.to_string()))?;
        let signed = self.net.sign(payload).map_err(|e| internal(e.to_string()))?;
        if self.ingest(signed.clone()).await.map_err(internal)? != Adopted::Changed {
            return Err(lost(name, change.name()));
        }
        tracing::info!(
            topic = name,
            change = change.name(),
            version = next.revision.version,
            "topic changed"
        );
        self.net.publish(GossipMessage::Topic(signed.clone())).await;
        self.net.put_record(topic_key(name), signed).await;
        tokio::time::sleep(self.cfg.topic_settle).await;
        match self.broker.topics().held_record(name) {
            Some(now) if stands(&next, &now.record, &change) => Ok(next.info),
            _ => Err(lost(name, change.name())),
        }
    }

    /// The epoch in which this node leads partition 0 of `t`, or why it cannot author.
    fn lead_partition_zero(&self, t: &Arc<Topic>) -> Result<meshlog_protocol::Epoch, WireError> {
        let r0 = t.local(0)?;
        let view = r0.view();
        if !view.is_leader {
            let leader = r0.leader().map_or("none known", NodeId::as_str);
            return Err(WireError::new(
                ErrorCode::NotLeaderOrFollower,
                format!(
                    "{}-0 is led by {leader}, not by this node: topic changes are made by its leader",
                    t.info.name
                ),
            ));
        }
        Ok(view.epoch)
    }

    /// `held` with the partitions and config `a` asks for, validated like a creation.
    fn altered(&self, held: &TopicRecord, a: &AlterTopic) -> Result<TopicRecord, WireError> {
        let mut next = held.clone();
        let info = &held.info;
        if let Some(n) = a.partitions {
            if n <= info.partitions {
                return Err(WireError::new(
                    ErrorCode::InvalidPartitions,
                    format!(
                        "topic '{}' has {} partition(s); partitions can only be added (asked for {n})",
                        info.name, info.partitions
                    ),
                ));
            }
            let live = self.live_nodes();
            types::validate_topic_shape(n, info.replication_factor, live.len())?;
            let placed = place_replicas(&info.name, n, info.replication_factor, &live);
            next.replicas.extend(placed.into_iter().skip(info.partitions as usize));
            next.info.partitions = n;
        }
        if !a.config.is_empty() {
            next.info.config = merged_config(&info.config, &a.config, info.replication_factor)?;
        }
        if a.partitions.is_none() && a.config.is_empty() {
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                "nothing to change: give partitions or config",
            ));
        }
        Ok(next)
    }
}

/// `current` with `changes` set over it, validated as at creation;
/// `min.insync.replicas` cannot change (running replicas count with it).
fn merged_config(
    current: &TopicConfig,
    changes: &BTreeMap<String, String>,
    rf: u16,
) -> Result<TopicConfig, WireError> {
    let mut pairs = current.to_pairs();
    for (k, v) in changes {
        if k == "min.insync.replicas" && *v != current.min_insync_replicas.to_string() {
            return Err(WireError::new(
                ErrorCode::InvalidConfig,
                "min.insync.replicas cannot be changed on an existing topic",
            ));
        }
        pairs.insert(k.clone(), v.clone());
    }
    TopicConfig::from_pairs(&pairs, rf)
}

/// Whether `change`, written as the version `ours`, still shows in `held` (the record
/// held a settle window later): `ours` is held, or a later record still has its effect
/// (a delete: the topic deleted, or a later life of its name; an alter: at least its
/// partitions and the config values it set). A version count alone does not tell: a
/// rival of `ours` (its version, a later epoch) may have won, and later versions built
/// on the rival lack our change.
fn stands(ours: &TopicRecord, held: &TopicRecord, change: &TopicChange) -> bool {
    match (revision::relation(held, ours), change) {
        (Relation::Same, _) => true,
        (Relation::Older | Relation::Rival, _) => false,
        (Relation::Newer, TopicChange::Delete) => {
            held.revision.deleted || held.revision.incarnation > ours.revision.incarnation
        }
        (Relation::Newer, TopicChange::Alter(a)) => {
            let (mine, now) = (ours.info.config.to_pairs(), held.info.config.to_pairs());
            held.revision.incarnation == ours.revision.incarnation
                && !held.revision.deleted
                && held.info.partitions >= ours.info.partitions
                && a.config.keys().all(|k| mine.get(k) == now.get(k))
        }
    }
}

/// The answer when another change won over ours.
fn lost(name: &str, what: &str) -> WireError {
    WireError::new(
        ErrorCode::NotLeaderOrFollower,
        format!(
            "the {what} of topic '{name}' lost to a concurrent change by another leader of its \
             partition 0; look at the topic and try again"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlog_protocol::mesh::Revision;

    fn pairs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn config_changes_keep_what_is_not_named_and_min_insync_stays() {
        let current = TopicConfig::from_pairs(&pairs(&[("retention.ms", "1000")]), 3).unwrap();
        let next = merged_config(&current, &pairs(&[("cleanup.policy", "compact")]), 3).unwrap();
        assert_eq!(next.retention_ms, Some(1000));
        assert_eq!(next.cleanup_policy.as_str(), "compact");
        assert_eq!(next.min_insync_replicas, 2);
        let e = merged_config(&current, &pairs(&[("min.insync.replicas", "3")]), 3).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        merged_config(&current, &pairs(&[("min.insync.replicas", "2")]), 3).unwrap();
        let e = merged_config(&current, &pairs(&[("retention.ms", "soon")]), 3).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig, "{e}");
    }

    #[test]
    fn a_change_stands_unless_a_rival_of_its_version_won() {
        let info = TopicInfo {
            name: "t".into(),
            partitions: 1,
            replication_factor: 1,
            config: TopicConfig::default(),
            creation_id: 1,
            created_at_ms: 0,
        };
        let base = TopicRecord {
            info,
            replicas: vec![vec!["A".into()]],
            creator: "A".into(),
            revision: Revision::default(),
        };
        let at = |version, epoch, retention: Option<u64>| {
            let mut r = base.clone();
            r.info.config.retention_ms = retention;
            r.revision = Revision {
                version,
                author: "A".into(),
                epoch: meshlog_protocol::Epoch::new(epoch),
                ..Default::default()
            };
            r
        };
        let alter = TopicChange::Alter(AlterTopic {
            name: "t".into(),
            partitions: None,
            config: pairs(&[("retention.ms", "1000")]),
            validate_only: false,
        });
        let ours = at(1, 2, Some(1000));
        assert!(stands(&ours, &ours, &alter));
        assert!(stands(&ours, &at(2, 2, Some(1000)), &alter), "a later version built on ours");
        assert!(!stands(&ours, &at(1, 3, None), &alter), "the same version from a later epoch won");
        assert!(!stands(&ours, &at(2, 3, None), &alter), "a later version built on the rival that won");
        assert!(!stands(&ours, &base, &alter));
        let mut gone = at(2, 3, None);
        gone.revision.deleted = true;
        assert!(!stands(&ours, &gone, &alter), "deleted after a rival won");
        assert!(stands(&gone, &gone, &TopicChange::Delete));
        let mut rival_tomb = gone.clone();
        rival_tomb.revision.epoch = meshlog_protocol::Epoch::new(4);
        assert!(stands(&gone, &rival_tomb, &TopicChange::Delete), "deleted either way");
    }
}
