//! The Kafka listener (`kafka_listen`, default `0.0.0.0:9092`, `none` to disable): Kafka
//! clients (kcat, librdkafka, confluent-kafka, ...) talk to a node unmodified.
//!
//! - `conn.rs`: the accept loop (at most [`MAX_CONNECTIONS`]), frames (length checked
//!   against the caps before anything is allocated), answers in arrival order
//!   (clients pipeline: produces are served together, anything else alone).
//! - `codec.rs`: the request header, [`codec::decode_request`] (the one place request
//!   bodies are decoded) and response frames.
//! - `versions.rs`: the APIs and versions served; ApiVersions with KIP-511's fallback.
//! - `metadata.rs`: Metadata (with topic auto-creation), `data.rs`: Produce (compressed
//!   batches stored as sent; a connection's produces pipelined, each partition's kept in
//!   order), Fetch, ListOffsets; `epochs.rs`: OffsetForLeaderEpoch (where a leader
//!   epoch ends, from the leader's epoch history); `producer_ids.rs`: InitProducerId (ids unique across
//!   the mesh: broker id + a durable counter; epoch bumps); `groups.rs`: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//!   LeaveGroup, OffsetCommit, OffsetFetch onto meshlog's group coordinator, with
//!   `consumer_protocol.rs` (the subscription and assignment bytes, pure);
//!   `groups_admin.rs`: DescribeGroups, ListGroups, DeleteGroups.
//!
//! - `sasl.rs`: SaslHandshake and SaslAuthenticate (SCRAM-SHA-256/512): in a closed
//!   mesh (unless `kafka_auth = "none"`) a connection proves a client credential before
//!   anything but ApiVersions is served.
//! - `admin.rs`: DescribeCluster, DescribeConfigs, CreateTopics, DeleteTopics and
//!   CreatePartitions (the last two refused per topic: the mesh cannot delete or grow
//!   topics yet).
//!
//! Routing (`route.rs`, `kafka_route`): in `leader` mode (the default) every live node
//! with a listener is a broker (id from its PeerId, address from its heartbeats),
//! Metadata names each partition's real leader, and requests for partitions or groups
//! this node does not serve get NOT_LEADER_OR_FOLLOWER / NOT_COORDINATOR. In
//! `through-me` mode, for a client that reaches only this node (behind NAT, one port
//! open), Metadata names THIS node as the only broker and leader of everything. Either
//! way every request is served through [`Gateway::client`] (from this node's own
//! PeerId), which forwards to the real leader when it is elsewhere.
//!
//! It decides nothing about the mesh: it translates Kafka's requests into the client API
//! and the answers back; batches pass through as the client sent them (checked with the
//! `protocol::batch` functions, never re-encoded).

mod admin;
pub mod codec;
mod conn;
pub mod consumer_protocol;
mod data;
mod epochs;
mod groups;
mod groups_admin;
mod metadata;
pub mod producer_ids;
mod route;
pub mod sasl;
pub mod versions;

use crate::config::{ConfigError, KafkaRoute, NodeConfig};
use crate::gateway::Gateway;
use crate::listener::BoundTcp;
use crate::network::{Admission, PeerId};
use crate::storage::Store;
use meshlog_protocol::messages::{ClientRequest, ClientResult};
use meshlog_protocol::{ErrorCode, WireError};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Kafka connections served at once; more are closed as they arrive.
pub const MAX_CONNECTIONS: usize = 1024;
/// Refused SASL logins are warned about at most this often (a refused client retries
/// many times a second); the others are counted and logged at debug level.
const REFUSAL_WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// `kafka_listen` or `kafka_advertise` is not valid.
    #[error(transparent)]
    Address(#[from] ConfigError),
    /// The address could not be bound (taken, or not this host's).
    #[error("cannot listen for Kafka clients on {addr} (set kafka_listen, or 'none'): {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why the bind failed.
        #[source]
        source: std::io::Error,
    },
}

/// The listener's socket, bound before the node opens its store (a taken port fails the
/// start before anything is written), and the address clients are told.
pub struct Bound {
    listener: TcpListener,
    addr: SocketAddr,
    advertised: (String, u16),
}

impl Bound {
    /// The address bound (the actual port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `host:port` clients are told (an IPv6 host in brackets): what the mesh
    /// announces in this node's heartbeats.
    pub fn advertised(&self) -> String {
        let (host, port) = &self.advertised;
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }
}

/// Bind the Kafka listener if the config asks for one.
pub async fn bind(cfg: &NodeConfig) -> Result<Option<Bound>, KafkaError> {
    let Some(addr) = cfg.kafka_listen_addr()? else { return Ok(None) };
    let bound = BoundTcp::bind(addr).await.map_err(|source| KafkaError::Bind { addr, source })?;
    let (listener, addr) = bound.into_parts();
    let advertised = cfg.kafka_advertised(addr)?;
    Ok(Some(Bound { listener, addr, advertised }))
}

/// What the listener needs from the node's config.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Metadata may create topics.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic.
    pub auto_create_partitions: u32,
    /// The largest Produce request.
    pub max_request_bytes: usize,
    /// The longest Fetch long poll.
    pub fetch_max_wait_ms: u32,
    /// The largest Fetch answer.
    pub fetch_max_bytes: u32,
    /// The longest a Produce waits for its acknowledgement.
    pub produce_max_timeout_ms: u32,
    /// A connection silent this long is closed.
    pub idle_ms: u64,
    /// Send clients to leaders, or serve everything through this node.
    pub route: KafkaRoute,
}

impl KafkaSettings {
    /// From the node's config.
    pub fn of(cfg: &NodeConfig) -> KafkaSettings {
        KafkaSettings {
            auto_create_topics: cfg.kafka_auto_create_topics,
            auto_create_partitions: cfg.kafka_auto_create_partitions,
            max_request_bytes: cfg.max_frame_bytes,
            fetch_max_wait_ms: cfg.fetch_max_wait_ms,
            fetch_max_bytes: cfg.fetch_max_bytes,
            produce_max_timeout_ms: cfg.produce_max_timeout_ms,
            idle_ms: cfg.idle_connection_timeout_ms,
            route: cfg.kafka_route,
        }
    }
}

/// The listener's state: the gateway it asks, and who this node is to Kafka clients.
pub struct Kafka {
    gateway: Arc<Gateway>,
    me: PeerId,
    broker_id: i32,
    advertised: (String, u16),
    settings: KafkaSettings,
    producer_ids: producer_ids::ProducerIds,
    /// Broker ids already reported as shared by two nodes.
    collisions: Mutex<HashSet<i32>>,
    /// The closed mesh whose client credentials a connection must prove by SASL
    /// first; `None`: the listener is open.
    sasl: Option<Admission>,
    /// When a refused login was last warned about, and the refusals since.
    refusals: Mutex<(Option<std::time::Instant>, u64)>,
}

impl Kafka {
    /// Count a refused login: `Some(refusals not warned about since the last warning)`
    /// when this one should be warned about (at most every [`REFUSAL_WARN_EVERY`]).
    fn refusal_to_warn(&self) -> Option<u64> {
        let mut r = crate::sync::lock(&self.refusals);
        let now = std::time::Instant::now();
        if r.0.is_some_and(|t| now.duration_since(t) < REFUSAL_WARN_EVERY) {
            r.1 += 1;
            return None;
        }
        r.0 = Some(now);
        Some(std::mem::take(&mut r.1))
    }

    /// Ask this node's client API, as a remote client would (from this node's PeerId);
    /// in `leader` mode a partition or group request that belongs to another broker is
    /// refused first (see `route.rs`).
    async fn ask(&self, req: ClientRequest) -> ClientResult {
        self.check_routed(&req)?;
        self.gateway.client(self.me, req).await
    }
}

/// This node's Kafka broker id: stable across restarts (derived from its PeerId),
/// non-negative as Kafka requires.
pub fn broker_id(peer: &PeerId) -> i32 {
    (crc32c::crc32c(&peer.to_bytes()) & 0x7fff_ffff) as i32
}

/// A meshlog error as a Kafka error code: Kafka's numbers are shared; meshlog's own
/// (from 1000) become the nearest retriable or generic Kafka code.
pub fn kafka_code(e: &WireError) -> i16 {
    match e.code {
        ErrorCode::Unavailable => ErrorCode::LeaderNotAvailable.as_i16(),
        ErrorCode::OutboxFull => ErrorCode::NotEnoughReplicas.as_i16(),
        ErrorCode::PartitionNotAssigned | ErrorCode::NotOwner | ErrorCode::UnknownService => {
            ErrorCode::InvalidRequest.as_i16()
        }
        ErrorCode::LimitExceeded => ErrorCode::PolicyViolation.as_i16(),
        c if c.as_i16() >= 1000 => ErrorCode::Unknown.as_i16(),
        c => c.as_i16(),
    }
}

/// Serve Kafka clients on `bound` until `shutdown`; with `sasl`, each connection must
/// first prove a client credential of that closed mesh.
pub fn spawn(
    bound: Bound,
    gateway: Arc<Gateway>,
    settings: KafkaSettings,
    store: Arc<Store>,
    sasl: Option<Admission>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let me = gateway.net().local_peer_id();
    let (host, port) = bound.advertised.clone();
    let broker_id = broker_id(&me);
    tracing::info!(addr = %bound.addr, advertised = %format!("{host}:{port}"), broker_id, route = ?settings.route, sasl = sasl.is_some(), "Kafka listener up");
    let producer_ids = producer_ids::ProducerIds::new(broker_id, store);
    let collisions = Mutex::new(HashSet::new());
    let kafka = Arc::new(Kafka {
        gateway,
        me,
        broker_id,
        advertised: bound.advertised,
        settings,
        producer_ids,
        collisions,
        sasl,
        refusals: Mutex::new((None, 0)),
    });
    tokio::spawn(conn::serve(bound.listener, kafka, shutdown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_ids_are_stable_and_non_negative() {
        for _ in 0..50 {
            let p = PeerId::random();
            assert_eq!(broker_id(&p), broker_id(&p));
            assert!(broker_id(&p) >= 0);
        }
    }

    #[test]
    fn meshlog_codes_become_kafka_codes() {
        let w = |c| WireError::new(c, "x");
        assert_eq!(kafka_code(&w(ErrorCode::UnknownTopicOrPartition)), 3);
        assert_eq!(kafka_code(&w(ErrorCode::Unavailable)), 5);
        for c in ErrorCode::ALL {
            assert!(kafka_code(&w(c)) < 1000, "{c} leaks a meshlog-only number");
        }
    }
}
