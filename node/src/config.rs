//! Node configuration: embedded defaults, an optional strict TOML file, `MESHLOG_*`
//! environment variables and command-line flags, in that order of precedence, checked
//! by one [`NodeConfig::validate`].

use crate::network::{Multiaddr, PeerId};
use crate::resilience::{Backoff, BreakerConfig, ResilienceConfig, Timeouts};
use meshlog_protocol::frame::{DEFAULT_MAX_FRAME_BYTES, MAX_FRAME_BYTES};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The TCP port a node listens on by default.
pub const DEFAULT_PORT: u16 = 9494;
/// Where the HTTP admin port listens by default (loopback: metrics, probes, the status
/// page and the service-registry API are for the host and its operators).
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9644";
/// The `http_listen` value that disables the admin port.
pub const HTTP_LISTEN_NONE: &str = "none";
/// Where the Kafka listener listens by default (every interface: Kafka clients are
/// remote programs, like the mesh's own clients).
pub const DEFAULT_KAFKA_LISTEN: &str = "0.0.0.0:9092";
/// The `kafka_listen` value that disables the Kafka listener.
pub const KAFKA_LISTEN_NONE: &str = "none";
/// How the Kafka listener routes requests (`kafka_route`): `leader` (Kafka's way: every
/// node is a broker, Metadata names each partition's real leader, misrouted requests get
/// NOT_LEADER_OR_FOLLOWER) or `through-me` (for a client that reaches only this node:
/// it is the only broker and leads everything, forwarding inside the mesh).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaRoute {
    /// Clients are sent to each partition's leader and each group's coordinator.
    #[default]
    Leader,
    /// This node answers for the whole mesh.
    ThroughMe,
}

/// Whether Kafka clients must authenticate (`kafka_auth`). Unset: `sasl` in a closed
/// mesh (a `node_credential`), `none` in an open one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaAuth {
    /// SASL SCRAM-SHA-256/512 with a client credential of the closed mesh.
    Sasl,
    /// No authentication: anyone who reaches the listener is served.
    None,
}

/// Where a node keeps its data by default (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "meshlog-data";

/// The longest duration any `*_ms` setting may name (30 days): far above every sane
/// value, and low enough that sums like `3 * heartbeat_interval_ms` cannot overflow.
pub const MAX_DURATION_MS: u64 = 30 * 24 * 3600 * 1000;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file is not valid TOML for this schema (typos are named).
    #[error("invalid config file {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        reason: String,
    },
    /// A value or a relation between values is invalid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Everything a node is started with. Field names carry their units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Where the store and the node key live.
    pub data_dir: PathBuf,
    /// Multiaddrs to listen on.
    pub listen: Vec<String>,
    /// The HTTP admin port's socket address (`host:port`, port 0 for any free port), or
    /// `none` to run without one.
    pub http_listen: String,
    /// The Kafka listener's socket address (`host:port`, port 0 for any free port), or
    /// `none` to run without one.
    pub kafka_listen: String,
    /// The `host:port` Kafka clients are told to reach this node at (Metadata,
    /// FindCoordinator); by default the listen address, with an unspecified host
    /// (`0.0.0.0`, `::`) replaced by `127.0.0.1`.
    pub kafka_advertise: Option<String>,
    /// `leader` (default) or `through-me`: see [`KafkaRoute`].
    pub kafka_route: KafkaRoute,
    /// `sasl` or `none`; unset: `sasl` in a closed mesh, `none` in an open one (see
    /// [`NodeConfig::kafka_sasl`]).
    pub kafka_auth: Option<KafkaAuth>,
    /// A Kafka client's Metadata request may create the topics it names (when the
    /// request allows it too), with `kafka_auto_create_partitions` partitions.
    pub kafka_auto_create_topics: bool,
    /// Partitions of a topic created by a Kafka client's Metadata request (Kafka's
    /// `num.partitions`); replication factor 3, or the live nodes if fewer.
    pub kafka_auto_create_partitions: u32,
    /// sled's page cache (a soft limit).
    pub cache_capacity_bytes: u64,
    /// Largest frame accepted or sent on any connection.
    pub max_frame_bytes: usize,
    /// How long one request may take end to end.
    pub request_timeout_ms: u64,
    /// How long an unused connection stays open.
    pub idle_connection_timeout_ms: u64,
    /// Longest long-poll a fetch may ask for.
    pub fetch_max_wait_ms: u32,
    /// Largest fetch response.
    pub fetch_max_bytes: u32,
    /// Longest a produce may wait for its ack.
    pub produce_max_timeout_ms: u32,
    /// How often retention runs.
    pub retention_check_interval_ms: u64,
    /// Join the LAN by mDNS.
    pub mdns: bool,
    /// Multiaddrs of nodes to join through (any member will do).
    pub bootstrap: Vec<String>,
    /// The mesh's pre-shared key file (`/key/swarm/psk/1.0.0/` format); peers without
    /// the key cannot connect at all.
    pub psk_file: Option<PathBuf>,
    /// If not empty, only these PeerIds may connect.
    pub allow_peers: Vec<String>,
    /// This node's credential for a closed mesh (`meshlog mesh init`): peers must then
    /// prove a node or client credential of the same mesh.
    pub node_credential: Option<PathBuf>,
    /// Serials of credentials no longer admitted (closed mesh).
    pub revoked_credentials: Vec<String>,
    /// How often this node announces itself on gossip.
    pub heartbeat_interval_ms: u64,
    /// A member unheard of for this long is down.
    pub member_timeout_ms: u64,
    /// How long a topic creation waits for concurrent creations of the same name.
    pub topic_settle_ms: u64,
    /// Budget for one DHT lookup or peer query.
    pub lookup_timeout_ms: u64,
    /// Timeout of metadata and status calls to peers.
    pub metadata_timeout_ms: u64,
    /// Timeout of admin calls (topic creation, registrations) to peers.
    pub admin_timeout_ms: u64,
    /// Added to a forwarded fetch's long-poll wait or produce's ack timeout.
    pub call_margin_ms: u64,
    /// Failures within `breaker_window_ms` that open a peer's circuit breaker.
    pub breaker_failure_threshold: usize,
    /// The window breaker failures are counted in.
    pub breaker_window_ms: u64,
    /// How long an open breaker fails calls fast before letting a probe through.
    pub breaker_cooldown_ms: u64,
    /// Attempts of a retriable call (the first included).
    pub retry_max_attempts: u32,
    /// First backoff ceiling (doubling, full jitter).
    pub retry_backoff_base_ms: u64,
    /// Largest backoff ceiling.
    pub retry_backoff_max_ms: u64,
    /// Share of calls that may be retried (the retry budget).
    pub retry_budget_ratio: f64,
    /// Bytes the store-and-forward outbox may hold before `acks=local` is refused.
    pub outbox_max_bytes: u64,
    /// How often a partition leader heartbeats its followers (and followers re-fetch).
    pub replica_heartbeat_ms: u64,
    /// A follower that has not heard from its leader for this long (plus up to as much
    /// again of random jitter) runs for election; a leader not hearing from a majority
    /// for this long steps down.
    pub election_timeout_ms: u64,
    /// How long a follower honours a leader it heard from (refusing other candidates),
    /// and how long a restarted replica waits before voting. Below `election_timeout_ms`.
    pub leader_lease_ms: u64,
    /// A follower not caught up for this long leaves the in-sync replicas.
    pub replica_lag_max_ms: u64,
    /// Partitions of the internal offsets topic (fixed when the first group creates it).
    pub offsets_topic_partitions: u32,
    /// Replication factor of the offsets topic (lowered to the live nodes if fewer).
    pub offsets_topic_replication_factor: u16,
    /// Shortest consumer-group session timeout a member may ask for.
    pub group_min_session_timeout_ms: u32,
    /// Longest consumer-group session timeout a member may ask for.
    pub group_max_session_timeout_ms: u32,
    /// How long a consumer group that was empty waits for more members before its first
    /// generation, each new member extending the wait up to its rebalance timeout
    /// (Kafka's `group.initial.rebalance.delay.ms`; 0: no wait).
    pub group_initial_rebalance_delay_ms: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: vec![format!("/ip4/0.0.0.0/tcp/{DEFAULT_PORT}")],
            http_listen: DEFAULT_HTTP_LISTEN.to_string(),
            kafka_listen: DEFAULT_KAFKA_LISTEN.to_string(),
            kafka_advertise: None,
            kafka_route: KafkaRoute::Leader,
            kafka_auth: None,
            kafka_auto_create_topics: true,
            kafka_auto_create_partitions: 1,
            cache_capacity_bytes: 256 << 20,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            request_timeout_ms: 60_000,
            idle_connection_timeout_ms: 300_000,
            fetch_max_wait_ms: 30_000,
            fetch_max_bytes: 16 << 20,
            produce_max_timeout_ms: 60_000,
            retention_check_interval_ms: 60_000,
            mdns: true,
            bootstrap: Vec::new(),
            psk_file: None,
            allow_peers: Vec::new(),
            node_credential: None,
            revoked_credentials: Vec::new(),
            heartbeat_interval_ms: 1_000,
            member_timeout_ms: 5_000,
            topic_settle_ms: 1_000,
            lookup_timeout_ms: 3_000,
            metadata_timeout_ms: 5_000,
            admin_timeout_ms: 15_000,
            call_margin_ms: 5_000,
            breaker_failure_threshold: 5,
            breaker_window_ms: 10_000,
            breaker_cooldown_ms: 5_000,
            retry_max_attempts: 4,
            retry_backoff_base_ms: 50,
            retry_backoff_max_ms: 2_000,
            retry_budget_ratio: 0.2,
            outbox_max_bytes: 256 << 20,
            replica_heartbeat_ms: 100,
            election_timeout_ms: 700,
            leader_lease_ms: 500,
            replica_lag_max_ms: 10_000,
            offsets_topic_partitions: 8,
            offsets_topic_replication_factor: 3,
            group_min_session_timeout_ms: 1_000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 3_000,
        }
    }
}

impl NodeConfig {
    /// Defaults overlaid with `path`'s contents if given. Unknown keys are errors.
    pub fn load(path: Option<&Path>) -> Result<NodeConfig, ConfigError> {
        let Some(path) = path else {
            return Ok(NodeConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.to_path_buf(), reason: e.to_string() })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string().trim_end().to_string(),
        })
    }

    /// The listen addresses, parsed.
    pub fn listen_addrs(&self) -> Result<Vec<Multiaddr>, ConfigError> {
        self.listen
            .iter()
            .map(|s| {
                s.parse::<Multiaddr>().map_err(|e| ConfigError::Invalid(format!("listen address '{s}': {e}")))
            })
            .collect()
    }

    /// The admin port's address, parsed (`None`: disabled).
    pub fn http_listen_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let s = self.http_listen.trim();
        if s.eq_ignore_ascii_case(HTTP_LISTEN_NONE) {
            return Ok(None);
        }
        s.parse().map(Some).map_err(|e| {
            ConfigError::Invalid(format!(
                "http_listen '{s}': {e} (expected host:port such as {DEFAULT_HTTP_LISTEN}, or '{HTTP_LISTEN_NONE}')"
            ))
        })
    }

    /// The Kafka listener's address, parsed (`None`: disabled).
    pub fn kafka_listen_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let s = self.kafka_listen.trim();
        if s.eq_ignore_ascii_case(KAFKA_LISTEN_NONE) {
            return Ok(None);
        }
        s.parse().map(Some).map_err(|e| {
            ConfigError::Invalid(format!(
                "kafka_listen '{s}': {e} (expected host:port such as {DEFAULT_KAFKA_LISTEN}, or '{KAFKA_LISTEN_NONE}')"
            ))
        })
    }

    /// The address Kafka clients are told, as (host, port), for a listener bound at
    /// `bound`: `kafka_advertise` if set, else `bound` with an unspecified host made
    /// `127.0.0.1`.
    pub fn kafka_advertised(&self, bound: std::net::SocketAddr) -> Result<(String, u16), ConfigError> {
        let Some(a) = self.kafka_advertise.as_deref() else {
            let host =
                if bound.ip().is_unspecified() { "127.0.0.1".to_string() } else { bound.ip().to_string() };
            return Ok((host, bound.port()));
        };
        let bad = || {
            ConfigError::Invalid(format!(
                "kafka_advertise '{a}': expected HOST:PORT, such as broker1.example:9092"
            ))
        };
        let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok((host.to_string(), port))
    }

    /// The resilience layer's settings.
    pub fn resilience(&self) -> ResilienceConfig {
        let ms = Duration::from_millis;
        ResilienceConfig {
            timeouts: Timeouts {
                metadata: ms(self.metadata_timeout_ms),
                margin: ms(self.call_margin_ms),
                admin: ms(self.admin_timeout_ms),
                status: ms(self.lookup_timeout_ms.min(self.metadata_timeout_ms / 2)),
            },
            breaker: BreakerConfig {
                failure_threshold: self.breaker_failure_threshold,
                window: ms(self.breaker_window_ms),
                cooldown: ms(self.breaker_cooldown_ms),
            },
            backoff: Backoff {
                base: ms(self.retry_backoff_base_ms),
                max: ms(self.retry_backoff_max_ms),
                max_attempts: self.retry_max_attempts,
            },
            retry_ratio: self.retry_budget_ratio,
        }
    }

    /// The bootstrap addresses, parsed.
    pub fn bootstrap_addrs(&self) -> Result<Vec<Multiaddr>, ConfigError> {
        self.bootstrap
            .iter()
            .map(|s| {
                s.parse::<Multiaddr>()
                    .map_err(|e| ConfigError::Invalid(format!("bootstrap address '{s}': {e}")))
            })
            .collect()
    }

    /// The allowlist, parsed (`None` when empty: everyone may connect).
    pub fn allowlist(&self) -> Result<Option<Vec<PeerId>>, ConfigError> {
        if self.allow_peers.is_empty() {
            return Ok(None);
        }
        let peers = self.allow_peers.iter().map(|s| {
            s.parse::<PeerId>().map_err(|e| ConfigError::Invalid(format!("allowed peer '{s}': {e}")))
        });
        peers.collect::<Result<Vec<_>, _>>().map(Some)
    }

    /// Check every value and the relations between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.is_empty() {
            return Err(ConfigError::Invalid("at least one listen address is needed".into()));
        }
        self.listen_addrs()?;
        self.http_listen_addr()?;
        self.validate_kafka()?;
        self.bootstrap_addrs()?;
        self.allowlist()?;
        self.validate_durations()?;
        self.validate_mesh_and_calls()?;
        self.validate_limits()?;
        self.validate_replication_and_groups()
    }

    /// The Kafka listener's address, advertised address and auto-creation.
    fn validate_kafka(&self) -> Result<(), ConfigError> {
        if let Some(bound) = self.kafka_listen_addr()? {
            self.kafka_advertised(bound)?;
        }
        if self.kafka_auto_create_partitions == 0 {
            return Err(ConfigError::Invalid("kafka_auto_create_partitions must be at least 1".into()));
        }
        if self.kafka_auth == Some(KafkaAuth::Sasl) && self.node_credential.is_none() {
            return Err(ConfigError::Invalid(
                "kafka_auth = \"sasl\" needs a closed mesh (node_credential): Kafka clients log in with its client credentials".into(),
            ));
        }
        Ok(())
    }

    /// Whether the Kafka listener requires SASL: as `kafka_auth` says, else whenever
    /// the mesh is closed (an open listener would be a way around its credentials).
    pub fn kafka_sasl(&self) -> bool {
        match self.kafka_auth {
            Some(a) => a == KafkaAuth::Sasl,
            None => self.node_credential.is_some(),
        }
    }

    /// Membership timers, breakers, retries and request timeouts.
    fn validate_mesh_and_calls(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.heartbeat_interval_ms == 0 || self.member_timeout_ms < 3 * self.heartbeat_interval_ms {
            return bad(format!(
                "member_timeout_ms={} must be at least 3 heartbeats (heartbeat_interval_ms={}, which must be > 0)",
                self.member_timeout_ms, self.heartbeat_interval_ms
            ));
        }
        if self.breaker_failure_threshold == 0 || self.retry_max_attempts == 0 {
            return bad("breaker_failure_threshold and retry_max_attempts must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.retry_budget_ratio) {
            return bad(format!("retry_budget_ratio={} must be between 0 and 1", self.retry_budget_ratio));
        }
        if self.retry_backoff_base_ms > self.retry_backoff_max_ms {
            return bad("retry_backoff_base_ms must not exceed retry_backoff_max_ms".into());
        }
        if self.lookup_timeout_ms == 0 || self.lookup_timeout_ms > self.request_timeout_ms {
            return bad(format!(
                "lookup_timeout_ms={} must be > 0 and at most request_timeout_ms={}",
                self.lookup_timeout_ms, self.request_timeout_ms
            ));
        }
        Ok(())
    }

    /// Frame, fetch and produce sizes and waits, and the periodic tasks.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.max_frame_bytes < 64 << 10 || self.max_frame_bytes > MAX_FRAME_BYTES {
            return bad(format!(
                "max_frame_bytes={} must be between 65536 and {MAX_FRAME_BYTES}",
                self.max_frame_bytes
            ));
        }
        if self.fetch_max_bytes as usize + (64 << 10) > self.max_frame_bytes {
            return bad(format!(
                "fetch_max_bytes={} must leave 64 KiB of room under max_frame_bytes={}",
                self.fetch_max_bytes, self.max_frame_bytes
            ));
        }
        if self.fetch_max_wait_ms as u64 + 1000 > self.request_timeout_ms {
            return bad(format!(
                "fetch_max_wait_ms={} must be at least 1 s shorter than request_timeout_ms={}",
                self.fetch_max_wait_ms, self.request_timeout_ms
            ));
        }
        if self.produce_max_timeout_ms as u64 > self.request_timeout_ms {
            return bad(format!(
                "produce_max_timeout_ms={} must not exceed request_timeout_ms={}",
                self.produce_max_timeout_ms, self.request_timeout_ms
            ));
        }
        if self.retention_check_interval_ms == 0 || self.idle_connection_timeout_ms == 0 {
            return bad("retention_check_interval_ms and idle_connection_timeout_ms must be > 0".into());
        }
        Ok(())
    }

    /// Replication timers, the offsets topic, group session bounds and the cache.
    fn validate_replication_and_groups(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.replica_heartbeat_ms == 0
            || self.leader_lease_ms < 2 * self.replica_heartbeat_ms
            || self.election_timeout_ms <= self.leader_lease_ms
            || self.replica_lag_max_ms < 2 * self.replica_heartbeat_ms
        {
            return bad(format!(
                "replication timers must satisfy 0 < 2 x replica_heartbeat_ms ({}) <= leader_lease_ms ({}) \
                 < election_timeout_ms ({}), and replica_lag_max_ms ({}) >= 2 x replica_heartbeat_ms",
                self.replica_heartbeat_ms,
                self.leader_lease_ms,
                self.election_timeout_ms,
                self.replica_lag_max_ms
            ));
        }
        if self.offsets_topic_partitions == 0 || self.offsets_topic_replication_factor == 0 {
            return bad(
                "offsets_topic_partitions and offsets_topic_replication_factor must be at least 1".into()
            );
        }
        if self.group_min_session_timeout_ms == 0
            || self.group_min_session_timeout_ms > self.group_max_session_timeout_ms
        {
            return bad(format!(
                "group session bounds must satisfy 0 < group_min_session_timeout_ms ({}) <= \
                 group_max_session_timeout_ms ({})",
                self.group_min_session_timeout_ms, self.group_max_session_timeout_ms
            ));
        }
        if self.cache_capacity_bytes < 1 << 20 {
            return bad("cache_capacity_bytes must be at least 1 MiB".into());
        }
        Ok(())
    }

    /// Every duration at most [`MAX_DURATION_MS`], so no relation below overflows.
    fn validate_durations(&self) -> Result<(), ConfigError> {
        let durations = [
            ("request_timeout_ms", self.request_timeout_ms),
            ("idle_connection_timeout_ms", self.idle_connection_timeout_ms),
            ("fetch_max_wait_ms", self.fetch_max_wait_ms as u64),
            ("produce_max_timeout_ms", self.produce_max_timeout_ms as u64),
            ("retention_check_interval_ms", self.retention_check_interval_ms),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("member_timeout_ms", self.member_timeout_ms),
            ("topic_settle_ms", self.topic_settle_ms),
            ("lookup_timeout_ms", self.lookup_timeout_ms),
            ("metadata_timeout_ms", self.metadata_timeout_ms),
            ("admin_timeout_ms", self.admin_timeout_ms),
            ("call_margin_ms", self.call_margin_ms),
            ("breaker_window_ms", self.breaker_window_ms),
            ("breaker_cooldown_ms", self.breaker_cooldown_ms),
            ("retry_backoff_base_ms", self.retry_backoff_base_ms),
            ("retry_backoff_max_ms", self.retry_backoff_max_ms),
            ("replica_heartbeat_ms", self.replica_heartbeat_ms),
            ("election_timeout_ms", self.election_timeout_ms),
            ("leader_lease_ms", self.leader_lease_ms),
            ("replica_lag_max_ms", self.replica_lag_max_ms),
            ("group_min_session_timeout_ms", self.group_min_session_timeout_ms as u64),
            ("group_max_session_timeout_ms", self.group_max_session_timeout_ms as u64),
            ("group_initial_rebalance_delay_ms", self.group_initial_rebalance_delay_ms as u64),
        ];
        match durations.iter().find(|(_, v)| *v > MAX_DURATION_MS) {
            Some((name, v)) => Err(ConfigError::Invalid(format!(
                "{name}={v} is longer than the {MAX_DURATION_MS} ms (30 days) any duration may be"
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn defaults_are_valid() {
        NodeConfig::default().validate().unwrap();
    }

    #[test]
    fn a_typo_is_named_with_its_line() {
        let f = write("data_dir = \"/tmp/x\"\nfetch_max_wait_mss = 5\n");
        let e = NodeConfig::load(Some(f.path())).unwrap_err().to_string();
        assert!(e.contains("fetch_max_wait_mss"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn file_values_override_defaults() {
        let f = write("listen = [\"/ip4/127.0.0.1/tcp/0\"]\nfetch_max_wait_ms = 100\n");
        let c = NodeConfig::load(Some(f.path())).unwrap();
        assert_eq!(c.fetch_max_wait_ms, 100);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        c.validate().unwrap();
    }

    #[test]
    fn huge_durations_are_a_clear_error_not_an_overflow() {
        for text in
            ["heartbeat_interval_ms = 18446744073709551615\n", "election_timeout_ms = 9223372036854775807\n"]
        {
            let f = write(text);
            let c = NodeConfig::load(Some(f.path())).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("30 days"), "{e}");
        }
    }

    #[test]
    fn relations_are_checked() {
        let c = NodeConfig { fetch_max_wait_ms: 60_000, ..NodeConfig::default() };
        assert!(c.validate().unwrap_err().to_string().contains("fetch_max_wait_ms"));
        let c = NodeConfig { listen: vec!["not-an-addr".into()], ..NodeConfig::default() };
        assert!(c.validate().unwrap_err().to_string().contains("not-an-addr"));
    }

    #[test]
    fn the_admin_port_is_an_address_or_none() {
        let d = NodeConfig::default();
        assert_eq!(d.http_listen_addr().unwrap(), Some("127.0.0.1:9644".parse().unwrap()));
        let off = NodeConfig { http_listen: "none".into(), ..NodeConfig::default() };
        assert_eq!(off.http_listen_addr().unwrap(), None);
        off.validate().unwrap();
        let f = write("http_listen = \"[::1]:0\"\n");
        let c = NodeConfig::load(Some(f.path())).unwrap();
        assert_eq!(c.http_listen_addr().unwrap(), Some("[::1]:0".parse().unwrap()));
        let bad = NodeConfig { http_listen: "localhost".into(), ..NodeConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("http_listen 'localhost'"));
    }

    #[test]
    fn the_kafka_listener_is_an_address_or_none_and_advertises_a_reachable_host() {
        let d = NodeConfig::default();
        let bound = d.kafka_listen_addr().unwrap().unwrap();
        assert_eq!(bound, "0.0.0.0:9092".parse().unwrap());
        assert_eq!(d.kafka_advertised(bound).unwrap(), ("127.0.0.1".to_string(), 9092));
        let off = NodeConfig { kafka_listen: "none".into(), ..NodeConfig::default() };
        assert_eq!(off.kafka_listen_addr().unwrap(), None);
        let named =
            NodeConfig { kafka_advertise: Some("edge-1.example:19092".into()), ..NodeConfig::default() };
        assert_eq!(named.kafka_advertised(bound).unwrap(), ("edge-1.example".to_string(), 19092));
        for bad in ["edge-1", "edge-1:port", ":9092", "edge-1:0"] {
            let c = NodeConfig { kafka_advertise: Some(bad.into()), ..NodeConfig::default() };
            assert!(c.validate().unwrap_err().to_string().contains("kafka_advertise"), "{bad}");
        }
        let c = NodeConfig { kafka_listen: "localhost".into(), ..NodeConfig::default() };
        assert!(c.validate().unwrap_err().to_string().contains("kafka_listen 'localhost'"));
    }

    #[test]
    fn kafka_auth_defaults_to_sasl_in_a_closed_mesh_and_is_strict() {
        let mut c = NodeConfig::default();
        assert!(!c.kafka_sasl(), "an open mesh's listener is open");
        c.node_credential = Some("node.credential".into());
        assert!(c.kafka_sasl(), "a closed mesh's listener requires SASL by default");
        c.kafka_auth = Some(KafkaAuth::None);
        assert!(!c.kafka_sasl(), "unless the operator opens it");
        c.validate().unwrap();
        let open = NodeConfig { kafka_auth: Some(KafkaAuth::Sasl), ..NodeConfig::default() };
        assert!(open.validate().unwrap_err().to_string().contains("needs a closed mesh"));
        let f = write("kafka_auth = \"sasl\"\n");
        assert_eq!(NodeConfig::load(Some(f.path())).unwrap().kafka_auth, Some(KafkaAuth::Sasl));
        let f = write("kafka_auth = \"scram\"\n");
        assert!(NodeConfig::load(Some(f.path())).is_err(), "an unknown value is refused");
    }
}
