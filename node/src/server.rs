//! A running node: opens the store, recovers the broker, starts the network, and serves
//! inbound requests until shut down. One handler task per inbound request, in lanes
//! with separate budgets ([`dispatch`]: client load never delays gossip, peer requests
//! or replication); shutdown by a watch signal that every task observes.

pub mod dispatch;

use crate::broker::{Broker, BrokerLimits, Outbound, ReplicaSettings};
use crate::config::{ConfigError, NodeConfig};
use crate::gateway::Gateway;
use crate::group::{Coordinator, GroupSettings};
use crate::mesh::{Mesh, MeshConfig, MeshEvent};
use crate::network::{self, identity, Multiaddr, NetworkConfig, NetworkError, PeerId, Psk};
use crate::outbox::Outbox;
use crate::resilience::Resilience;
use crate::services::Services;
use crate::storage::{StorageError, Store, StoreOptions};
use crate::sync::stopped;
use dispatch::{LaneBudgets, Serve};
use meshlog_protocol::messages::{ClientRequest, ClientResult, PeerRequest, PeerResponse, ReplicateMessage};
use meshlog_protocol::{ErrorCode, WireError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store failed to open or recover.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The network failed to start.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The HTTP admin port could not be bound.
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
}

/// A node that is serving.
pub struct RunningNode {
    peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
    http_addr: Option<std::net::SocketAddr>,
    broker: Arc<Broker>,
    mesh: Arc<Mesh>,
    store: Arc<Store>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// How long a leaving node keeps its network up so its leave message goes out.
const LEAVE_DRAIN: Duration = Duration::from_millis(200);

/// How long shutdown waits for in-flight requests to release the store.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(10);

impl RunningNode {
    /// This node's id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Bound listen addresses, each ending in `/p2p/<peer id>`.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// The HTTP admin port's address, if it runs (the actual port when 0 was asked for).
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http_addr
    }

    /// The broker (for in-process tests and status).
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stop serving, wait for the node's tasks to end, flush, and close the store so
    /// the data directory can be reopened at once.
    pub async fn shutdown(self) {
        // Say goodbye first, and give gossip a moment to carry it, so members mark this
        // node left at once instead of waiting for its heartbeats to time out.
        self.mesh.leave().await;
        tokio::time::sleep(LEAVE_DRAIN).await;
        drop(self.mesh);
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        drop(self.broker);
        // Handlers still finishing and the flush thread hold the store; wait for them.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_BUDGET;
        while Arc::strong_count(&self.store) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

/// Start a node with a validated config.
pub async fn start(cfg: NodeConfig) -> Result<RunningNode, NodeError> {
    cfg.validate()?;
    // Read everything a flag names before touching the data directory, so a start that
    // fails on a bad file leaves nothing behind (a key without a store would later
    // read as a lost store).
    let psk = cfg.psk_file.as_deref().map(Psk::load).transpose()?;
    let admission = admission(&cfg)?;
    let http = crate::admin::bind(&cfg).await?;
    // A node key without a store means the store was lost (a wiped or replaced disk):
    // its replicas must catch up before they vote again.
    let store_lost = cfg.data_dir.join(identity::KEY_FILE).exists() && !Store::exists_in(&cfg.data_dir);
    let store_opts = StoreOptions {
        cache_capacity_bytes: cfg.cache_capacity_bytes,
        segment_bytes: crate::storage::SEGMENT_BYTES,
    };
    // The store first, then the key: a first start that fails in between leaves a store
    // without a key (a fresh node next time), never a key without a store.
    let store = Arc::new(Store::open(&cfg.data_dir, &store_opts)?);
    let keypair = identity::load_or_create(&cfg.data_dir)?;
    let peer_id = keypair.public().to_peer_id();
    if store_lost {
        tracing::warn!(data_dir = %cfg.data_dir.display(), "the store is gone but the node key is not: replicas will catch up before they vote");
        store.meta_put(crate::broker::STORE_LOST_KEY, b"1")?;
        store.flush()?;
    }
    let limits = BrokerLimits {
        fetch_max_wait_ms: cfg.fetch_max_wait_ms,
        fetch_max_bytes: cfg.fetch_max_bytes,
        produce_max_timeout_ms: cfg.produce_max_timeout_ms,
    };
    let settings = ReplicaSettings {
        heartbeat_ms: cfg.replica_heartbeat_ms,
        election_timeout_ms: cfg.election_timeout_ms,
        lease_ms: cfg.leader_lease_ms,
        replica_lag_max_ms: cfg.replica_lag_max_ms,
        // Room for the message around the batches, within the frame limit.
        max_message_bytes: cfg.max_frame_bytes.saturating_sub(64 << 10),
    };
    let (outbound_tx, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let broker = Arc::new(Broker::open(peer_id.to_string(), store.clone(), limits, settings, outbound_tx)?);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let net_cfg = NetworkConfig {
        keypair,
        listen: cfg.listen_addrs()?,
        serve: true,
        max_frame_bytes: cfg.max_frame_bytes,
        request_timeout: Duration::from_millis(cfg.request_timeout_ms),
        idle_connection_timeout: Duration::from_millis(cfg.idle_connection_timeout_ms),
        mdns: cfg.mdns,
        psk,
        allow: cfg.allowlist()?,
        bootstrap: cfg.bootstrap_addrs()?,
        admission,
        role: None,
    };
    let net_cfg_closed = net_cfg.admission.is_closed();
    let (net, events) = network::start(net_cfg, shutdown_rx.clone()).await?;
    let listen_addrs: Vec<Multiaddr> =
        net.listen_addrs().iter().map(|a| network::with_peer_id(a, peer_id)).collect();
    tracing::info!(
        node = %peer_id,
        data_dir = %cfg.data_dir.display(),
        ?listen_addrs,
        mdns = cfg.mdns,
        psk = psk.map(|p| p.fingerprint()),
        closed_mesh = net_cfg_closed,
        "node started"
    );
    let lookup_timeout = Duration::from_millis(cfg.lookup_timeout_ms);
    let mesh_cfg = MeshConfig {
        heartbeat_interval: Duration::from_millis(cfg.heartbeat_interval_ms),
        member_timeout: Duration::from_millis(cfg.member_timeout_ms),
        topic_settle: Duration::from_millis(cfg.topic_settle_ms),
        lookup_timeout,
        anti_entropy_interval: Duration::from_secs(30),
    };
    let addrs = net.listen_addrs().iter().map(ToString::to_string).collect();
    let resilience = Arc::new(Resilience::new(cfg.resilience()));
    let mesh = Mesh::new(net.clone(), resilience.clone(), broker.clone(), addrs, store.clone(), mesh_cfg);
    let services = Arc::new(Services::new(net.clone(), resilience.clone(), lookup_timeout));
    let outbox = Arc::new(Outbox::open(store.clone(), broker.group_commit(), cfg.outbox_max_bytes)?);
    let groups = Arc::new(Coordinator::new(
        broker.clone(),
        mesh.clone(),
        GroupSettings {
            min_session_timeout_ms: cfg.group_min_session_timeout_ms,
            max_session_timeout_ms: cfg.group_max_session_timeout_ms,
            append_timeout: crate::group::APPEND_TIMEOUT,
            load_wait: Duration::from_millis(cfg.election_timeout_ms * 3),
        },
    ));
    let gateway = Arc::new(Gateway {
        groups: groups.clone(),
        offsets_topic: (cfg.offsets_topic_partitions, cfg.offsets_topic_replication_factor),
        outbox,
        broker: broker.clone(),
        mesh: mesh.clone(),
        services: services.clone(),
        net: net.clone(),
        resilience,
        peer_timeout: lookup_timeout,
        // Long enough for a failed leader to be detected and replaced.
        leader_wait: Duration::from_millis(3 * cfg.election_timeout_ms + cfg.leader_lease_ms),
    });
    let http_addr = http.as_ref().map(crate::admin::Bound::local_addr);
    let admin = http.map(|h| {
        let state =
            crate::admin::Admin::new(gateway.clone(), store.clone(), crate::admin::AdminSettings::of(&cfg));
        crate::admin::spawn(h, state, shutdown_rx.clone())
    });
    let mut tasks = vec![
        tokio::spawn(send_replication(net.clone(), mesh.clone(), outbound_rx, shutdown_rx.clone())),
        tokio::spawn(crate::gateway::forward_outbox(gateway.clone(), shutdown_rx.clone())),
        tokio::spawn(dispatch::dispatch(
            Arc::new(NodeServe { gateway, net }),
            LaneBudgets::default(),
            events,
            shutdown_rx.clone(),
        )),
        tokio::spawn(mesh.clone().run(shutdown_rx.clone())),
        tokio::spawn(retention(broker.clone(), cfg.retention_check_interval_ms, shutdown_rx.clone())),
        tokio::spawn(groups.run(shutdown_rx.clone())),
        tokio::spawn(sweep_services(services, shutdown_rx)),
    ];
    tasks.extend(admin);
    Ok(RunningNode { peer_id, listen_addrs, http_addr, broker, mesh, store, shutdown, tasks })
}

/// The node's side of the dispatcher: the gateway serves, the network answers.
struct NodeServe {
    gateway: Arc<Gateway>,
    net: network::NetworkHandle,
}

impl Serve for NodeServe {
    type Client = network::ClientResponder;
    type Peer = network::PeerResponder;

    fn deliver(&self, peer: PeerId, message: ReplicateMessage) {
        self.gateway.broker.deliver(&peer, message);
    }

    async fn serve_client(&self, peer: PeerId, forwarded: bool, req: ClientRequest) -> ClientResult {
        if !forwarded {
            return self.gateway.client(peer, req).await;
        }
        // A forwarded request is served by the gateway's peer path (served locally, never
        // forwarded again).
        match self.gateway.peer(peer, PeerRequest::Forward(req)).await {
            PeerResponse::Forwarded(result) => result,
            PeerResponse::Error(e) => Err(e),
            _ => Err(WireError::new(ErrorCode::Unknown, "unexpected answer to a forwarded request")),
        }
    }

    async fn serve_peer(&self, peer: PeerId, req: PeerRequest) -> PeerResponse {
        self.gateway.peer(peer, req).await
    }

    async fn on_mesh(&self, ev: MeshEvent) {
        self.gateway.mesh.on_event(ev).await
    }

    async fn answer_client(&self, to: Self::Client, result: ClientResult) {
        self.net.respond_client(to, result).await
    }

    async fn answer_peer(&self, to: Self::Peer, response: PeerResponse) {
        self.net.respond_peer(to, response).await
    }
}

/// Replication messages queued for the network before they are dropped (the protocol
/// recovers from loss).
const OUTBOUND_QUEUE: usize = 16_384;

/// Send what the replication drivers ask for: each message on the peer's replication
/// stream (`network::ReplicationSender`), and lease announcements.
async fn send_replication(
    net: network::NetworkHandle,
    mesh: Arc<Mesh>,
    mut outbound: mpsc::Receiver<Outbound>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let out = tokio::select! {
            o = outbound.recv() => match o { Some(o) => o, None => return },
            _ = stopped(&mut shutdown) => return,
        };
        match out {
            Outbound::Peer(peer, m) => {
                // On the peer's replication stream, in the drivers' order (the core copes
                // with loss and reordering, but a follower's fetches arriving out of
                // order cost it a re-fetch period).
                if !net.replication().send(peer, &m) {
                    tracing::trace!(%peer, "replication queue full; message dropped");
                }
            }
            Outbound::Announce => mesh.announce_leases().await,
        }
    }
}

/// How often lapsed service registrations are dropped.
const SERVICE_SWEEP_INTERVAL: Duration = Duration::from_millis(250);

async fn sweep_services(services: Arc<Services>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SERVICE_SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => services.sweep().await,
            _ = stopped(&mut shutdown) => return,
        }
    }
}

async fn retention(broker: Arc<Broker>, every_ms: u64, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(every_ms);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.enforce_retention()).await;
            }
            _ = stopped(&mut shutdown) => return,
        }
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
            reason: "this is a client credential; a node needs the mesh's node credential".into(),
        });
    }
    tracing::info!(mesh = %credential.mesh_fingerprint(), serial = credential.serial(), "closed mesh: peers must prove a credential");
    let revoked = cfg.revoked_credentials.iter().cloned().collect();
    Ok(network::Admission::Closed { credential, revoked })
}
