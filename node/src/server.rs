//! A running node: opens the store, recovers the broker, starts the network, builds
//! the gateway from its components, and serves inbound requests until shut down. One
//! handler task per inbound request, in lanes with separate budgets ([`dispatch`]:
//! client load never delays gossip, peer requests or replication); shutdown by a watch
//! signal that every task observes.
//!
//! This module wires and runs; it decides nothing about requests (the gateway does).
//! `settings` maps the config onto each component, `tasks` holds what runs.

pub mod dispatch;
mod settings;
mod tasks;

use crate::broker::Broker;
use crate::config::{ConfigError, NodeConfig};
use crate::gateway::{Gateway, Router};
use crate::group::Coordinator;
use crate::mesh::{Mesh, MeshConfig};
use crate::network::{self, identity, Keypair, Multiaddr, NetworkError, NetworkEvent, PeerId, ToNodeId};
use crate::outbox::Outbox;
use crate::resilience::Resilience;
use crate::services::Services;
use crate::storage::{StorageError, Store};
use settings::Credentials;
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
    /// The Kafka listener could not be bound.
    #[error(transparent)]
    Kafka(#[from] crate::kafka::KafkaError),
}

/// A node that is serving.
pub struct RunningNode {
    peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
    http_addr: Option<std::net::SocketAddr>,
    kafka_addr: Option<std::net::SocketAddr>,
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

    /// The Kafka listener's address, if it runs (the actual port when 0 was asked for).
    pub fn kafka_addr(&self) -> Option<std::net::SocketAddr> {
        self.kafka_addr
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

/// Start a node with a validated config, in steps: read the credentials the config
/// names, open the store and the broker, start the network, build the gateway from its
/// components, spawn the tasks.
pub async fn start(cfg: NodeConfig) -> Result<RunningNode, NodeError> {
    cfg.validate()?;
    // Read everything a flag names before touching the data directory, so a start that
    // fails on a bad file leaves nothing behind (a key without a store would later
    // read as a lost store).
    let credentials = Credentials::read(&cfg)?;
    // The admin port and the Kafka listener are bound before the store opens: a taken
    // port fails the start before anything is written.
    let http = crate::admin::bind(&cfg).await?;
    let kafka = crate::kafka::bind(&cfg).await?;
    let (store, keypair) = open_store(&cfg)?;
    let peer_id = keypair.public().to_peer_id();
    let (outbound_tx, outbound) = mpsc::channel(tasks::OUTBOUND_QUEUE);
    let broker = Arc::new(Broker::open(
        peer_id.node_id(),
        store.clone(),
        settings::broker_limits(&cfg),
        settings::replica_settings(&cfg),
        outbound_tx,
    )?);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let kafka_sasl = cfg.kafka_sasl().then(|| credentials.admission.clone());
    let (net, events, listen_addrs) = start_network(&cfg, keypair, credentials, shutdown_rx.clone()).await?;
    let kafka_advertised = kafka.as_ref().map(crate::kafka::Bound::advertised);
    let (gateway, groups) = build_gateway(&cfg, &net, &broker, &store, kafka_advertised)?;
    let mesh = gateway.mesh().clone();
    let http_addr = http.as_ref().map(crate::admin::Bound::local_addr);
    let admin = http.map(|h| {
        let state =
            crate::admin::Admin::new(gateway.clone(), store.clone(), crate::admin::AdminSettings::of(&cfg));
        crate::admin::spawn(h, state, shutdown_rx.clone())
    });
    let kafka_addr = kafka.as_ref().map(crate::kafka::Bound::local_addr);
    let kafka = kafka.map(|k| {
        let settings = crate::kafka::KafkaSettings::of(&cfg);
        crate::kafka::spawn(k, gateway.clone(), settings, store.clone(), kafka_sasl, shutdown_rx.clone())
    });
    let inbound = tasks::Inbound { events, outbound };
    let mut tasks = tasks::spawn(gateway, groups, net, inbound, cfg.retention_check_interval_ms, shutdown_rx);
    tasks.extend(admin);
    tasks.extend(kafka);
    Ok(RunningNode { peer_id, listen_addrs, http_addr, kafka_addr, broker, mesh, store, shutdown, tasks })
}

/// Open the store, then the node key. A node key without a store means the store was
/// lost (a wiped or replaced disk): the store is marked so its replicas catch up before
/// they vote again.
fn open_store(cfg: &NodeConfig) -> Result<(Arc<Store>, Keypair), NodeError> {
    let store_lost = cfg.data_dir.join(identity::KEY_FILE).exists() && !Store::exists_in(&cfg.data_dir);
    // The store first, then the key: a first start that fails in between leaves a store
    // without a key (a fresh node next time), never a key without a store.
    let store = Arc::new(Store::open(&cfg.data_dir, &settings::store_options(cfg))?);
    let keypair = identity::load_or_create(&cfg.data_dir)?;
    if store_lost {
        tracing::warn!(data_dir = %cfg.data_dir.display(), "the store is gone but the node key is not: replicas will catch up before they vote");
        store.meta_put(crate::storage::keys::STORE_LOST, b"1")?;
        store.flush()?;
    }
    Ok((store, keypair))
}

/// The network's handle, its events, and the bound listen addresses (with `/p2p/<id>`).
type Started = (network::NetworkHandle, mpsc::Receiver<NetworkEvent>, Vec<Multiaddr>);

/// Start the network with this node's key and credentials, and say so.
async fn start_network(
    cfg: &NodeConfig,
    keypair: Keypair,
    credentials: Credentials,
    shutdown: watch::Receiver<bool>,
) -> Result<Started, NodeError> {
    let peer_id = keypair.public().to_peer_id();
    let psk = credentials.psk;
    let closed_mesh = credentials.admission.is_closed();
    let (net, events) =
        network::start(settings::network_config(cfg, keypair, credentials)?, shutdown).await?;
    let listen_addrs: Vec<Multiaddr> =
        net.listen_addrs().iter().map(|a| network::with_peer_id(a, peer_id)).collect();
    tracing::info!(
        node = %peer_id,
        data_dir = %cfg.data_dir.display(),
        ?listen_addrs,
        mdns = cfg.mdns,
        psk = psk.map(|p| p.fingerprint()),
        closed_mesh,
        "node started"
    );
    Ok((net, events, listen_addrs))
}

/// Build the components on the broker (the mesh view, the service registry, the outbox,
/// the group coordinator, all calling peers through one resilience layer; the mesh
/// announces `kafka_advertised` in its heartbeats), and the
/// gateway from them. The coordinator comes back too: its task is spawned with the rest.
fn build_gateway(
    cfg: &NodeConfig,
    net: &network::NetworkHandle,
    broker: &Arc<Broker>,
    store: &Arc<Store>,
    kafka_advertised: Option<String>,
) -> Result<(Arc<Gateway>, Arc<Coordinator>), NodeError> {
    let resilience = Arc::new(Resilience::new(cfg.resilience()));
    let addrs = net.listen_addrs().iter().map(ToString::to_string).collect();
    let mesh_cfg = MeshConfig { kafka_advertised, ..settings::mesh_config(cfg) };
    let mesh = Mesh::new(net.clone(), resilience.clone(), broker.clone(), addrs, store.clone(), mesh_cfg);
    let services = Arc::new(Services::new(net.clone(), resilience.clone(), settings::lookup_timeout(cfg)));
    let outbox = Arc::new(Outbox::open(store.clone(), broker.group_commit(), cfg.outbox_max_bytes)?);
    let groups = Arc::new(Coordinator::new(broker.clone(), mesh.clone(), settings::group_settings(cfg)));
    let route = settings::route_settings(cfg);
    let router = Router::new(broker.clone(), mesh, resilience, groups.clone(), route);
    let gateway = Gateway::new(router, services, outbox, settings::offsets_topic(cfg));
    Ok((Arc::new(gateway), groups))
}
