//! The node's configuration turned into each component's settings, and the credential
//! files it names read. Pure mappings (plus reading those files): it builds no component
//! and starts nothing; `server::start` does, in order.

use crate::broker::{BrokerLimits, ReplicaSettings};
use crate::config::{ConfigError, NodeConfig};
use crate::gateway::{OffsetsTopic, RouteSettings};
use crate::group::GroupSettings;
use crate::mesh::MeshConfig;
use crate::network::{self, Keypair, NetworkConfig, NetworkError, Psk};
use crate::storage::StoreOptions;
use std::time::Duration;

/// What the node proves itself with and admits peers by, read from the files the
/// config names.
pub(super) struct Credentials {
    /// The mesh's pre-shared key, if it is closed by one.
    pub(super) psk: Option<Psk>,
    /// How peers are admitted: by the node credential in a closed mesh, else open.
    pub(super) admission: network::Admission,
}

impl Credentials {
    /// Read the pre-shared key and the node credential the config names.
    pub(super) fn read(cfg: &NodeConfig) -> Result<Credentials, NetworkError> {
        let psk = cfg.psk_file.as_deref().map(Psk::load).transpose()?;
        Ok(Credentials { psk, admission: admission(cfg)? })
    }
}

/// How this node admits peers: by its node credential in a closed mesh, else open.
fn admission(cfg: &NodeConfig) -> Result<network::Admission, NetworkError> {
    let Some(path) = cfg.node_credential.as_deref() else {
        return Ok(network::Admission::Open);
    };
    let credential = network::Credential::load(path)?;
    if credential.role() != network::PeerRole::Node {
        return Err(NetworkError::Credential {
            path: path.display().to_string(),
            source: network::cause("this is a client credential; a node needs the mesh's node credential"),
        });
    }
    tracing::info!(mesh = %credential.mesh_fingerprint(), serial = credential.serial(), "closed mesh: peers must prove a credential");
    let revoked = cfg.revoked_credentials.iter().cloned().collect();
    Ok(network::Admission::Closed { credential, revoked })
}

/// How the store is opened.
pub(super) fn store_options(cfg: &NodeConfig) -> StoreOptions {
    StoreOptions {
        cache_capacity_bytes: cfg.cache_capacity_bytes,
        segment_bytes: crate::storage::SEGMENT_BYTES,
    }
}

/// The broker's bounds on client requests.
pub(super) fn broker_limits(cfg: &NodeConfig) -> BrokerLimits {
    BrokerLimits {
        fetch_max_wait_ms: cfg.fetch_max_wait_ms,
        fetch_max_bytes: cfg.fetch_max_bytes,
        produce_max_timeout_ms: cfg.produce_max_timeout_ms,
    }
}

/// The replication drivers' timing and message size.
pub(super) fn replica_settings(cfg: &NodeConfig) -> ReplicaSettings {
    ReplicaSettings {
        heartbeat_ms: cfg.replica_heartbeat_ms,
        election_timeout_ms: cfg.election_timeout_ms,
        lease_ms: cfg.leader_lease_ms,
        replica_lag_max_ms: cfg.replica_lag_max_ms,
        // Room for the message around the batches, within the frame limit.
        max_message_bytes: cfg.max_frame_bytes.saturating_sub(64 << 10),
    }
}

/// The network of a serving node with this key and these credentials.
pub(super) fn network_config(
    cfg: &NodeConfig,
    keypair: Keypair,
    credentials: Credentials,
) -> Result<NetworkConfig, ConfigError> {
    Ok(NetworkConfig {
        keypair,
        listen: cfg.listen_addrs()?,
        serve: true,
        max_frame_bytes: cfg.max_frame_bytes,
        request_timeout: Duration::from_millis(cfg.request_timeout_ms),
        idle_connection_timeout: Duration::from_millis(cfg.idle_connection_timeout_ms),
        mdns: cfg.mdns,
        psk: credentials.psk,
        allow: cfg.allowlist()?,
        bootstrap: cfg.bootstrap_addrs()?,
        admission: credentials.admission,
        role: None,
    })
}

/// Budget for one DHT lookup or peer query (the mesh, services and routing share it).
pub(super) fn lookup_timeout(cfg: &NodeConfig) -> Duration {
    Duration::from_millis(cfg.lookup_timeout_ms)
}

/// Membership and topic-registry timing.
pub(super) fn mesh_config(cfg: &NodeConfig) -> MeshConfig {
    MeshConfig {
        heartbeat_interval: Duration::from_millis(cfg.heartbeat_interval_ms),
        member_timeout: Duration::from_millis(cfg.member_timeout_ms),
        topic_settle: Duration::from_millis(cfg.topic_settle_ms),
        lookup_timeout: lookup_timeout(cfg),
        anti_entropy_interval: Duration::from_secs(30),
        kafka_advertised: None,
    }
}

/// The group coordinator's bounds.
pub(super) fn group_settings(cfg: &NodeConfig) -> GroupSettings {
    GroupSettings {
        min_session_timeout_ms: cfg.group_min_session_timeout_ms,
        max_session_timeout_ms: cfg.group_max_session_timeout_ms,
        initial_rebalance_delay_ms: cfg.group_initial_rebalance_delay_ms,
        append_timeout: crate::group::APPEND_TIMEOUT,
        load_wait: Duration::from_millis(cfg.election_timeout_ms * 3),
    }
}

/// How long the gateway's routing waits on peers and elections.
pub(super) fn route_settings(cfg: &NodeConfig) -> RouteSettings {
    RouteSettings {
        peer_timeout: lookup_timeout(cfg),
        // Long enough for a failed leader to be detected and replaced.
        leader_wait: Duration::from_millis(3 * cfg.election_timeout_ms + cfg.leader_lease_ms),
    }
}

/// The offsets topic this node creates if it is the first asked for a group.
pub(super) fn offsets_topic(cfg: &NodeConfig) -> OffsetsTopic {
    OffsetsTopic {
        partitions: cfg.offsets_topic_partitions,
        replication_factor: cfg.offsets_topic_replication_factor,
    }
}
