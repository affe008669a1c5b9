//! The tasks a running node spawns once its components are built: replication sending,
//! the outbox forwarder, the dispatch loop (with the node's side of it, [`NodeServe`]),
//! the mesh, retention, the group coordinator and the service sweep. Each ends when the
//! shutdown watch turns true. Builds no component itself.

use super::dispatch::{self, LaneBudgets, Serve};
use crate::broker::{Broker, Outbound};
use crate::gateway::Gateway;
use crate::group::Coordinator;
use crate::mesh::{Mesh, MeshEvent};
use crate::network::{self, NetworkEvent, PeerId};
use crate::services::Services;
use crate::sync::stopped;
use meshlog_protocol::messages::{ClientRequest, ClientResult, PeerRequest, PeerResponse, ReplicateMessage};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Replication messages queued for the network before they are dropped (the protocol
/// recovers from loss).
pub(super) const OUTBOUND_QUEUE: usize = 16_384;

/// Messages the replication hub takes from the drivers' queue before it sends them.
const HUB_GATHER: usize = 4096;

/// How often lapsed service registrations are dropped.
const SERVICE_SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// Where the node's inbound work comes from: the network's events and the replication
/// drivers' outbound messages.
pub(super) struct Inbound {
    /// Network events (requests, gossip, connections, replication).
    pub(super) events: mpsc::Receiver<NetworkEvent>,
    /// What the replication drivers ask to send.
    pub(super) outbound: mpsc::Receiver<Outbound>,
}

/// Spawn every task of a running node; each stops when `shutdown` turns true.
pub(super) fn spawn(
    gateway: Arc<Gateway>,
    groups: Arc<Coordinator>,
    net: network::NetworkHandle,
    inbound: Inbound,
    retention_check_interval_ms: u64,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let (broker, mesh, services) =
        (gateway.broker().clone(), gateway.mesh().clone(), gateway.services().clone());
    vec![
        tokio::spawn(send_replication(net.clone(), mesh.clone(), inbound.outbound, shutdown.clone())),
        tokio::spawn(crate::gateway::forward_outbox(gateway.clone(), shutdown.clone())),
        tokio::spawn(dispatch::dispatch(
            Arc::new(NodeServe { gateway, net }),
            LaneBudgets::default(),
            inbound.events,
            shutdown.clone(),
        )),
        tokio::spawn(mesh.run(shutdown.clone())),
        tokio::spawn(retention(broker, retention_check_interval_ms, shutdown.clone())),
        tokio::spawn(groups.run(shutdown.clone())),
        tokio::spawn(sweep_services(services, shutdown)),
    ]
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
        self.gateway.broker().deliver(&peer, message);
    }

    async fn serve_client(&self, peer: PeerId, forwarded: bool, req: ClientRequest) -> ClientResult {
        if forwarded {
            // Served locally, never forwarded again.
            self.gateway.forwarded(peer, req).await
        } else {
            self.gateway.client(peer, req).await
        }
    }

    async fn serve_peer(&self, peer: PeerId, req: PeerRequest) -> PeerResponse {
        self.gateway.peer(peer, req).await
    }

    async fn on_mesh(&self, ev: MeshEvent) {
        self.gateway.mesh().on_event(ev).await
    }

    async fn answer_client(&self, to: Self::Client, result: ClientResult) {
        self.net.respond_client(to, result).await
    }

    async fn answer_peer(&self, to: Self::Peer, response: PeerResponse) {
        self.net.respond_peer(to, response).await
    }
}

/// The node's replication hub: sends what the replication drivers ask for, gathered per
/// peer. It takes every message queued when it wakes (after letting the tasks that are
/// ready run first, so replicas woken by one tick or one inbound bundle add theirs), at
/// most [`HUB_GATHER`], and hands each peer's to the network as bundles
/// (`network::ReplicationSender::send_many`: one frame for many partitions, in the
/// drivers' order); lease announcements asked for meanwhile become one.
async fn send_replication(
    net: network::NetworkHandle,
    mesh: Arc<Mesh>,
    mut outbound: mpsc::Receiver<Outbound>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut per_peer: HashMap<PeerId, Vec<ReplicateMessage>> = HashMap::new();
    loop {
        let first = tokio::select! {
            o = outbound.recv() => match o { Some(o) => o, None => return },
            _ = stopped(&mut shutdown) => return,
        };
        tokio::task::yield_now().await;
        let mut announce = false;
        let mut take = |o: Outbound| match o {
            Outbound::Peer(peer, m) => per_peer.entry(peer).or_default().push(m),
            Outbound::Announce => announce = true,
        };
        take(first);
        for _ in 1..HUB_GATHER {
            match outbound.try_recv() {
                Ok(o) => take(o),
                Err(_) => break,
            }
        }
        for (peer, messages) in per_peer.drain() {
            // On the peer's replication stream, in the drivers' order (the core copes
            // with loss and reordering, but a follower's fetches arriving out of order
            // cost it a re-fetch period).
            let dropped = net.replication().send_many(peer, messages);
            if dropped > 0 {
                tracing::trace!(%peer, dropped, "replication queue full; messages dropped");
            }
        }
        if announce {
            mesh.announce_leases().await;
        }
    }
}

/// Drop lapsed service registrations, every [`SERVICE_SWEEP_INTERVAL`].
async fn sweep_services(services: Arc<Services>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SERVICE_SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => services.sweep().await,
            _ = stopped(&mut shutdown) => return,
        }
    }
}

/// Enforce retention every `every_ms`, on a blocking thread (it deletes from the store).
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
