//! Where a Kafka client is sent (`kafka_route`). In `leader` mode every live node with a
//! listener is a broker (its id from its PeerId, its address from its heartbeats),
//! Metadata names each partition's leader, replicas, ISR and epoch as this node sees
//! them (its own replica's view, else the leader's lease on gossip), and a partition or
//! group request this node does not serve is refused with NOT_LEADER_OR_FOLLOWER or
//! NOT_COORDINATOR, so the client refreshes its metadata. In `through-me` mode this node
//! is the only broker and leads everything; the gateway forwards inside the mesh.

use super::{broker_id, Kafka};
use crate::config::KafkaRoute;
use crate::network::{peer_of, PeerId};
use meshlog_protocol::group::{coordinator_partition, OFFSETS_TOPIC};
use meshlog_protocol::messages::ClientRequest;
use meshlog_protocol::types::PartitionStatus;
use meshlog_protocol::{ErrorCode, NodeId, WireError};
use std::collections::{BTreeMap, HashMap};

/// A broker as Metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Kafka's node id.
    pub id: i32,
    /// Host clients dial.
    pub host: String,
    /// Port clients dial.
    pub port: u16,
}

/// A partition as Metadata describes it (broker ids; `leader` -1 while unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The leader's broker id, -1 if none is known or it runs no listener.
    pub leader: i32,
    /// The leader's epoch (-1: unknown).
    pub epoch: i32,
    /// The replica set.
    pub replicas: Vec<i32>,
    /// The in-sync replicas as known here (the leader alone when only it is known).
    pub isr: Vec<i32>,
}

/// The mesh as Kafka clients are shown it, built once per request.
pub struct View {
    /// Brokers by PeerId.
    pub brokers: Brokers,
    partitions: HashMap<(String, u32), PartitionStatus>,
}

impl View {
    /// The placement of `topic`-`p` (leader -1 when unknown or not a broker).
    pub fn placement(&self, topic: &str, p: u32, replicas: &[NodeId]) -> Placement {
        let status = self.partitions.get(&(topic.to_string(), p));
        let leader = status.and_then(|s| self.brokers.get(&s.leader)).map_or(-1, |b| b.id);
        let mut isr: Vec<i32> = status.map(|s| s.isr.iter().map(id_of).collect()).unwrap_or_default();
        if isr.is_empty() && leader >= 0 {
            isr.push(leader);
        }
        Placement {
            leader,
            epoch: status.filter(|_| leader >= 0).map_or(-1, |s| s.epoch.to_i32()),
            replicas: replicas.iter().map(id_of).collect(),
            isr,
        }
    }
}

/// The broker id of a node (-1 if its id is not a PeerId).
fn id_of(peer: &NodeId) -> i32 {
    peer_of(peer).map_or(-1, |p| broker_id(&p))
}

/// `host:port` split (brackets of an IPv6 host removed).
pub fn split_host_port(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse().ok().filter(|p| *p > 0)?;
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// Brokers by PeerId.
pub type Brokers = BTreeMap<NodeId, Broker>;
/// A broker id shared by several PeerIds: the id, the PeerId that keeps it (the lowest),
/// and the PeerIds left out.
pub type Collision = (i32, NodeId, Vec<NodeId>);

/// Brokers from (PeerId, advertised address) pairs, and the ids two or more of them
/// share (a collision of the 31-bit ids: clients would confuse those nodes).
pub fn brokers(listeners: &[(NodeId, String)]) -> (Brokers, Vec<Collision>) {
    brokers_with(listeners, broker_id)
}

/// [`brokers`] with the id function passed in. On a collision every node decides
/// alike: the lowest PeerId (as text) keeps the id and the others are left out of the
/// brokers (their partitions show no leader), so no client is sent to the wrong node.
fn brokers_with(listeners: &[(NodeId, String)], id_of: impl Fn(&PeerId) -> i32) -> (Brokers, Vec<Collision>) {
    let mut out = BTreeMap::new();
    let mut by_id: BTreeMap<i32, Vec<NodeId>> = BTreeMap::new();
    for (peer, addr) in listeners {
        let (Some(p), Some((host, port))) = (peer_of(peer), split_host_port(addr)) else { continue };
        let id = id_of(&p);
        by_id.entry(id).or_default().push(peer.clone());
        out.insert(peer.clone(), Broker { id, host, port });
    }
    let mut collisions = Vec::new();
    for (id, mut peers) in by_id {
        peers.sort();
        peers.dedup();
        if peers.len() < 2 {
            continue;
        }
        let kept = peers.remove(0);
        for p in &peers {
            out.remove(p);
        }
        collisions.push((id, kept, peers));
    }
    (out, collisions)
}

impl Kafka {
    /// Whether clients are sent to leaders (else everything goes through this node).
    pub(super) fn to_leaders(&self) -> bool {
        self.settings.route == KafkaRoute::Leader
    }

    /// The brokers and partition states clients are shown now.
    pub(super) fn view(&self) -> View {
        let mesh = self.gateway.mesh();
        let (brokers, collisions) = brokers(&mesh.kafka_listeners());
        for (id, kept, left_out) in collisions {
            let mut reported = crate::sync::lock(&self.collisions);
            if reported.insert(id) {
                tracing::error!(broker_id = id, %kept, ?left_out, "Kafka broker id collision: these nodes derive the same id from their PeerIds; the lowest PeerId keeps it and the others are left out of Metadata (give them a new identity)");
            }
        }
        let partitions =
            mesh.cluster_status().partitions.into_iter().map(|(t, s)| ((t, s.partition), s)).collect();
        View { brokers, partitions }
    }

    /// Whether this node's replica of `topic`-`p` leads.
    fn leads(&self, topic: &str, p: u32) -> bool {
        self.gateway.broker().replica(topic, p).is_some_and(|r| r.is_leader())
    }

    /// Whether this node answers for `group` as its coordinator: always in `through-me`
    /// mode; in `leader` mode only if it leads the group's offsets partition.
    pub(super) fn coordinates(&self, group: &str) -> bool {
        !self.to_leaders() || self.coordinator_partition_elsewhere(group).is_none()
    }

    /// The group's offsets partition if another node leads it (`None`: this node does,
    /// or the offsets topic does not exist yet).
    fn coordinator_partition_elsewhere(&self, group: &str) -> Option<u32> {
        let t = self.gateway.broker().topics().get(OFFSETS_TOPIC).ok()?;
        let p = coordinator_partition(group, t.info.partitions);
        (!self.leads(OFFSETS_TOPIC, p)).then_some(p)
    }

    /// In `leader` mode, refuse a request a Kafka broker other than this node serves:
    /// a partition request for a partition it does not lead, a group request for a
    /// group it does not coordinate. Unknown topics pass (the gateway says so).
    pub(super) fn check_routed(&self, req: &ClientRequest) -> Result<(), WireError> {
        if !self.to_leaders() {
            return Ok(());
        }
        let (topic, p) = match req {
            ClientRequest::Produce(r) => (r.topic.as_str(), r.partition),
            ClientRequest::Fetch(r) => (r.topic.as_str(), r.partition),
            ClientRequest::ListOffsets { topic, partition, .. }
            | ClientRequest::EpochEnd { topic, partition, .. } => (topic.as_str(), *partition),
            ClientRequest::Group(g) => {
                let Some(group) = g.group() else { return Ok(()) };
                return match self.coordinator_partition_elsewhere(group) {
                    None => Ok(()),
                    Some(p) => Err(WireError::new(
                        ErrorCode::NotCoordinator,
                        format!("this node does not coordinate group '{group}' ({OFFSETS_TOPIC}-{p}); find its coordinator again"),
                    )),
                };
            }
            _ => return Ok(()),
        };
        let Ok(t) = self.gateway.broker().topics().get(topic) else { return Ok(()) };
        if p >= t.info.partitions || self.leads(topic, p) {
            return Ok(());
        }
        Err(WireError::new(
            ErrorCode::NotLeaderOrFollower,
            format!("this node does not lead {topic}-{p}; refresh metadata"),
        ))
    }

    /// The coordinator of `group` as (broker id, host, port): this node in `through-me`
    /// mode, else the leader of the group's offsets partition (the offsets topic is
    /// created on first use). Kafka's error code when there is none right now.
    pub(super) async fn coordinator(&self, group: &str) -> Result<(i32, String, u16), i16> {
        if !self.to_leaders() {
            return Ok((self.broker_id, self.advertised.0.clone(), self.advertised.1));
        }
        let t = self.gateway.offsets_topic().await.map_err(|e| super::kafka_code(&e))?;
        let p = coordinator_partition(group, t.info.partitions);
        let view = self.view();
        let leader = view.placement(OFFSETS_TOPIC, p, t.replicas(p)).leader;
        let found = view.brokers.values().find(|b| b.id == leader && leader >= 0);
        found.map(|b| (b.id, b.host.clone(), b.port)).ok_or(ErrorCode::CoordinatorNotAvailable.as_i16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::ToNodeId;
    use meshlog_protocol::ids::Epoch;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(split_host_port("10.0.0.1:9092"), Some(("10.0.0.1".into(), 9092)));
        assert_eq!(split_host_port("[::1]:19092"), Some(("::1".into(), 19092)));
        assert_eq!(split_host_port("broker-1.example:9092"), Some(("broker-1.example".into(), 9092)));
        for bad in ["nohost", ":9092", "h:0", "h:99999", "h:x"] {
            assert_eq!(split_host_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_listener_is_a_broker_and_colliding_ids_are_reported() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let listeners = vec![
            (a.node_id(), "127.0.0.1:1001".to_string()),
            (b.node_id(), "127.0.0.1:1002".to_string()),
            (NodeId::new("not-a-peer"), "127.0.0.1:1003".to_string()),
            (b.node_id(), "bad address".to_string()),
        ];
        let (listed, collisions) = brokers(&listeners);
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[&a.node_id()], Broker { id: broker_id(&a), host: "127.0.0.1".into(), port: 1001 });
        assert!(collisions.is_empty());
        // The same node listed twice is one broker, not a collision.
        let twice = vec![listeners[0].clone(), (a.node_id(), "127.0.0.1:2001".to_string())];
        assert!(brokers(&twice).1.is_empty());
    }

    #[test]
    fn a_shared_broker_id_is_kept_by_the_lowest_peer_id_whatever_the_order() {
        let mut peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let other = PeerId::random();
        let listeners: Vec<(NodeId, String)> =
            peers.iter().chain([&other]).map(|p| (p.node_id(), "127.0.0.1:1".to_string())).collect();
        let same = |p: &PeerId| if *p == other { 7 } else { 42 };
        peers.sort_by_key(|p| p.node_id());
        let lowest = peers[0].node_id();
        for rotation in 0..listeners.len() {
            let mut order = listeners.clone();
            order.rotate_left(rotation);
            let (listed, collisions) = brokers_with(&order, same);
            assert_eq!(listed.keys().cloned().collect::<Vec<_>>(), {
                let mut k = vec![lowest.clone(), other.node_id()];
                k.sort();
                k
            });
            assert_eq!(collisions, vec![(42, lowest.clone(), vec![peers[1].node_id(), peers[2].node_id()])]);
        }
    }

    #[test]
    fn placements_name_the_leader_its_epoch_and_the_isr_in_broker_ids() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let set = vec![a.node_id(), b.node_id(), c.node_id()];
        // c runs no listener: it is a replica but not a broker.
        let listeners = vec![(a.node_id(), "h:1".to_string()), (b.node_id(), "h:2".to_string())];
        let (brokers, _) = brokers(&listeners);
        let mut led_by_b = PartitionStatus::unknown(0, &set);
        (led_by_b.leader, led_by_b.epoch) = (b.node_id(), Epoch::new(4));
        led_by_b.isr = vec![b.node_id(), a.node_id()];
        let mut led_by_c = PartitionStatus::unknown(1, &set);
        (led_by_c.leader, led_by_c.epoch) = (c.node_id(), Epoch::new(2));
        let partitions = HashMap::from([(("t".to_string(), 0), led_by_b), (("t".to_string(), 1), led_by_c)]);
        let view = View { brokers, partitions };
        let ids: Vec<i32> = [&a, &b, &c].iter().map(|p| broker_id(p)).collect();
        assert_eq!(
            view.placement("t", 0, &set),
            Placement { leader: ids[1], epoch: 4, replicas: ids.clone(), isr: vec![ids[1], ids[0]] }
        );
        let no_broker = view.placement("t", 1, &set);
        assert_eq!((no_broker.leader, no_broker.epoch), (-1, -1), "a leader without a listener is unknown");
        let unknown = view.placement("t", 2, &set);
        assert_eq!((unknown.leader, unknown.isr.len()), (-1, 0));
    }
}
