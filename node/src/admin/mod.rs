//! The HTTP admin port (`http_listen`, default `127.0.0.1:9644`, `none` to disable):
//! what operators, Prometheus, Kubernetes probes and services in any language ask a
//! node over plain HTTP.
//!
//! - `GET /metrics`: Prometheus (OpenMetrics text), see [`metrics`]: the data path's
//!   counters and histograms (recorded by `broker` and `storage` as they work), gauges
//!   read off the replicas, mesh and resilience layer at scrape time, libp2p's own.
//! - `GET /healthz` (the process serves) and `GET /readyz` (store healthy, joined the
//!   mesh, no partition held here leaderless beyond the election timeout), see
//!   [`probes`].
//! - `GET /v1/cluster`, `/v1/topics`, `/v1/topics/{name}`, `/v1/groups`: the JSON the
//!   CLI's `--json` prints for `cluster status`, `topic list`, `topic describe`,
//!   `group list`, asked through the node's own client API ([`Gateway::client`], from
//!   this node's PeerId), so routing is the same as for a remote client.
//! - `/v1/services/...`: the service registry over HTTP ([`services`]), with HTTP and
//!   TCP health checks run here; an unhealthy instance is hidden from discovery.
//! - `GET /`: a self-contained live status page (`page.html`: inline CSS, JS and SVG;
//!   no external assets) that polls `/v1/cluster`.
//!
//! It owns the HTTP server, the scrape-time views and the HTTP registrations' table and
//! health checks. It decides nothing about the mesh: every change goes through the
//! client API, every view is read from the layers below. The port is trusted like
//! Consul's agent API: it listens on loopback by default and has no authentication.

pub mod client;
pub mod http;
mod lag;
pub mod metrics;
pub mod probes;
pub mod registrations;
mod routes;
pub mod services;

use crate::broker::Broker;
use crate::config::NodeConfig;
use crate::gateway::Gateway;
use crate::listener::BoundTcp;
use crate::mesh::Mesh;
use crate::network::{NetworkHandle, PeerId};
use crate::storage::Store;
use crate::sync::{lock, stopped};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why the admin port could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// `http_listen` is not an address.
    #[error(transparent)]
    Address(#[from] crate::config::ConfigError),
    /// The address could not be bound (taken, or not this host's).
    #[error("cannot listen on the admin port {addr} (set http_listen, or 'none'): {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why the bind failed.
        #[source]
        source: std::io::Error,
    },
}

/// The admin port's socket, bound before the node opens its store (a taken port fails
/// the start before anything is written).
pub type Bound = BoundTcp;

/// Bind the admin port if the config asks for one.
pub async fn bind(cfg: &NodeConfig) -> Result<Option<Bound>, AdminError> {
    let Some(addr) = cfg.http_listen_addr()? else { return Ok(None) };
    let bound = BoundTcp::bind(addr).await.map_err(|source| AdminError::Bind { addr, source })?;
    Ok(Some(bound))
}

/// What the admin port needs from the node's config.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// A partition without a leader for longer than this makes the node unready.
    pub election_timeout_ms: u64,
    /// The node was told to join through bootstrap addresses: it is ready only once it
    /// sees another member.
    pub expects_peers: bool,
}

impl AdminSettings {
    /// From the node's config.
    pub fn of(cfg: &NodeConfig) -> AdminSettings {
        AdminSettings {
            election_timeout_ms: cfg.election_timeout_ms,
            expects_peers: !cfg.bootstrap.is_empty(),
        }
    }
}

/// The admin port's state: the node's parts it reads and the tables it keeps.
pub struct Admin {
    gateway: Arc<Gateway>,
    store: Arc<Store>,
    me: PeerId,
    settings: AdminSettings,
    metrics: metrics::Metrics,
    leaderless: Mutex<probes::Leaderless>,
    registrations: Mutex<registrations::Registrations>,
    lag: Mutex<Vec<lag::LagRow>>,
    checks_running: Arc<tokio::sync::Semaphore>,
}

impl Admin {
    /// The admin state over a node's gateway (its client API and, through it, the
    /// broker, mesh and resilience layer) and store.
    pub fn new(gateway: Arc<Gateway>, store: Arc<Store>, settings: AdminSettings) -> Admin {
        let me = gateway.net().local_peer_id();
        let metrics = metrics::Metrics::new(gateway.broker());
        Admin {
            gateway,
            store,
            me,
            settings,
            metrics,
            leaderless: Mutex::new(probes::Leaderless::default()),
            registrations: Mutex::new(registrations::Registrations::default()),
            lag: Mutex::new(Vec::new()),
            checks_running: Arc::new(tokio::sync::Semaphore::new(services::MAX_CHECKS_RUNNING)),
        }
    }

    // The parts of the node read through the gateway, in one place.

    fn broker(&self) -> &Arc<Broker> {
        self.gateway.broker()
    }

    fn mesh(&self) -> &Arc<Mesh> {
        self.gateway.mesh()
    }

    fn net(&self) -> &NetworkHandle {
        self.gateway.net()
    }

    /// Ask this node's client API, as a remote client would (from this node's PeerId).
    async fn ask(
        &self,
        req: meshlog_protocol::messages::ClientRequest,
    ) -> meshlog_protocol::messages::ClientResult {
        self.gateway.client(self.me, req).await
    }
}

/// How often the background task runs due health checks and drops lapsed registrations.
const MAINTAIN_INTERVAL: Duration = Duration::from_millis(100);
/// How often held partitions are looked at for a missing leader (readiness).
const LEADERLESS_SAMPLE_EVERY: u32 = 5;

/// Serve the admin port and run its background work (health checks, registration
/// expiry, leader sampling, group lag) until `shutdown`.
pub fn spawn(bound: Bound, admin: Admin, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    let admin = Arc::new(admin);
    let (listener, addr) = bound.into_parts();
    tracing::info!(%addr, "admin port listening");
    let server = http::serve(listener, admin.clone(), shutdown.clone());
    let lag = sample_lag(admin.clone(), shutdown.clone());
    tokio::spawn(async move {
        tokio::join!(server, maintain(admin, shutdown), lag);
    })
}

async fn maintain(admin: Arc<Admin>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(MAINTAIN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(&mut shutdown) => return,
        }
        services::maintain(&admin).await;
        n = n.wrapping_add(1);
        if n.is_multiple_of(LEADERLESS_SAMPLE_EVERY) {
            probes::sample(&admin);
        }
    }
}

/// Group lag is sampled apart from the health checks: it asks other nodes, which may
/// take a lookup timeout.
async fn sample_lag(admin: Arc<Admin>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(lag::SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(&mut shutdown) => return,
        }
        let rows = tokio::select! {
            rows = lag::sample(&admin) => rows,
            _ = stopped(&mut shutdown) => return,
        };
        *lock(&admin.lag) = rows;
    }
}
