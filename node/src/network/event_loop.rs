//! The swarm task: owns the libp2p `Swarm`, executes [`Command`]s, and turns swarm
//! events into [`NetworkEvent`]s or replies. It never awaits anything but its own
//! inputs, so one slow consumer cannot stall networking: events go out with `try_send`
//! (requests over capacity are answered `UNAVAILABLE`; surplus gossip is dropped, it is
//! only hints).
//!
//! It also sets each connection's role ([`super::admission`]): both ends send a
//! hello, and each checks the other's and answers with its own. Only a peer admitted as a
//! node reaches the rest of the node through the peer protocols: peer requests that
//! arrive before its hello wait for it (bounded), gossip it relays is ignored, its DHT
//! writes dropped; a client's are refused. In a closed mesh a peer that cannot prove a
//! role within [`super::HELLO_BUDGET`] is disconnected.
//!
//! This file holds the loop, the commands and the connection events; each event family
//! has its own file: [`dht`] (Kademlia, mDNS, identify), [`gossip`], [`requests`]
//! (request-response), [`hello`] (admission). No protocol decision is made here: the
//! node decides, the loop only carries and checks who may speak.

mod dht;
mod gossip;
mod hello;
mod requests;

use super::admission::{Admission, Roles};
use super::behaviour::{build_swarm, Behaviour, BehaviourEvent};
use super::codec::Metered;
use super::{cause, Command, NetworkConfig, NetworkError, NetworkEvent, Reply};
use futures::StreamExt;
use hello::Admissions;
use libp2p::kad::QueryId;
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{gossipsub, Multiaddr, PeerId, Swarm};
use meshlog_protocol::admission::PeerRole;
use meshlog_protocol::mesh::{SignedRecord, MESH_GOSSIP_TOPIC};
use meshlog_protocol::messages::{ClientResult, PeerResponse};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long `start` waits for the listeners to report their bound addresses.
const LISTEN_BUDGET: Duration = Duration::from_secs(10);
/// How long to wait for further interface addresses of a wildcard listener.
const INTERFACE_GRACE: Duration = Duration::from_millis(50);
/// How often connections still without a hello are checked against their budget.
const HELLO_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often peers that mDNS still sees, but that this node is not connected to, are
/// dialled again (see `EventLoop::redial_mdns`).
const MDNS_REDIAL_INTERVAL: Duration = Duration::from_secs(5);

pub(super) struct EventLoop {
    swarm: Swarm<Behaviour>,
    cmds: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    topic: gossipsub::IdentTopic,
    pending_dial: HashMap<ConnectionId, (Multiaddr, Reply<PeerId>)>,
    pending_client: HashMap<OutboundRequestId, Reply<ClientResult>>,
    pending_peer: HashMap<OutboundRequestId, Reply<PeerResponse>>,
    pending_records: HashMap<QueryId, (Reply<Vec<SignedRecord>>, Vec<SignedRecord>)>,
    pending_providers: HashMap<QueryId, (Reply<Vec<PeerId>>, HashSet<PeerId>)>,
    listen_addrs: Vec<Multiaddr>,
    /// The role this process declares.
    role: PeerRole,
    admission: Admission,
    roles: Roles,
    admissions: Admissions,
    /// libp2p's own metrics (served by the admin port from the network's registry).
    metrics: libp2p::metrics::Metrics,
}

impl EventLoop {
    /// Build the swarm, bind the listen addresses and dial the bootstrap addresses;
    /// returns the bound addresses.
    pub(super) async fn new(
        cfg: &NetworkConfig,
        cmds: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetworkEvent>,
        roles: Roles,
        metrics: libp2p::metrics::Metrics,
    ) -> Result<(EventLoop, Vec<Multiaddr>), NetworkError> {
        let mut swarm = build_swarm(cfg)?;
        let bound = bind(&mut swarm, &cfg.listen).await?;
        for addr in &cfg.bootstrap {
            let opts = match super::peer_id_of(addr) {
                Some(peer) => DialOpts::peer_id(peer).addresses(vec![addr.clone()]).build(),
                None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
            };
            if let Err(e) = swarm.dial(opts) {
                tracing::warn!(%addr, reason = %dial_reason(&e), "cannot dial bootstrap address");
            }
        }
        let lp = EventLoop {
            swarm,
            cmds,
            events,
            topic: gossipsub::IdentTopic::new(MESH_GOSSIP_TOPIC),
            pending_dial: HashMap::new(),
            pending_client: HashMap::new(),
            pending_peer: HashMap::new(),
            pending_records: HashMap::new(),
            pending_providers: HashMap::new(),
            listen_addrs: bound.clone(),
            role: cfg.role.unwrap_or(if cfg.serve { PeerRole::Node } else { PeerRole::Client }),
            admission: cfg.admission.clone(),
            roles,
            admissions: Admissions::default(),
            metrics,
        };
        Ok((lp, bound))
    }

    /// A handle for opening and accepting raw streams on this swarm.
    pub(super) fn stream_control(&self) -> libp2p_stream::Control {
        self.swarm.behaviour().stream.new_control()
    }

    pub(super) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut hello_check = tokio::time::interval(HELLO_CHECK_INTERVAL);
        let mut mdns_redial = tokio::time::interval(MDNS_REDIAL_INTERVAL);
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                cmd = self.cmds.recv() => match cmd {
                    Some(c) => self.on_command(c),
                    None => return,
                },
                _ = hello_check.tick() => self.expire_hellos(),
                _ = mdns_redial.tick() => self.redial_mdns(),
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let b = self.swarm.behaviour_mut();
        match cmd {
            Command::Dial { addr, reply } => self.dial(addr, reply),
            Command::SendClient { peer, req, reply } => {
                let id = b.client.send_request(&peer, Metered::outbound(req));
                self.pending_client.insert(id, reply);
            }
            Command::SendPeer { peer, req, reply } => {
                let id = b.peer.send_request(&peer, req);
                self.pending_peer.insert(id, reply);
            }
            // Err: the requester went away or timed out; nothing to do.
            Command::RespondClient { responder, result } => {
                // The request's budget share (responder.1) is given back with it.
                let _ = b.client.send_response(responder.0, result);
            }
            Command::RespondPeer { responder, response } => {
                let _ = b.peer.send_response(responder.0, response);
            }
            Command::Publish { message } => self.publish(message),
            Command::Connect { peer, addrs } => self.connect(peer, addrs),
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(Ok(self.swarm.connected_peers().copied().collect()));
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(Ok(self.listen_addrs.clone()));
            }
            other => self.on_dht_command(other),
        }
    }

    fn connect(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == *self.swarm.local_peer_id() {
            return;
        }
        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
            for a in &addrs {
                kad.add_address(&peer, a.clone());
            }
        }
        if !self.swarm.is_connected(&peer) {
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            let _ = self.swarm.dial(opts);
        }
    }

    fn dial(&mut self, addr: Multiaddr, reply: Reply<PeerId>) {
        let opts = match super::peer_id_of(&addr) {
            Some(peer) if self.swarm.is_connected(&peer) => {
                let _ = reply.send(Ok(peer));
                return;
            }
            Some(peer) => DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build(),
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.pending_dial.insert(id, (addr, reply));
            }
            Err(e) => {
                let _ = reply.send(Err(dial_error(&addr, e)));
            }
        }
    }

    /// Count the event in libp2p's metrics.
    fn record(&self, ev: &SwarmEvent<BehaviourEvent>) {
        use libp2p::metrics::Recorder;
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => self.metrics.record(e),
            SwarmEvent::Behaviour(_) => {}
            other => self.metrics.record(other),
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        self.record(&ev);
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Client(e)) => self.on_client(e),
            SwarmEvent::Behaviour(BehaviourEvent::Peer(e)) => self.on_peer(e),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.on_kad(e),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.on_gossip(e),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(e)) => self.on_mdns(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.on_identify(e),
            SwarmEvent::Behaviour(BehaviourEvent::Hello(e)) => self.on_hello(e),
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                self.on_connected(peer_id, connection_id, &endpoint)
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => self.on_disconnected(peer_id),
            SwarmEvent::OutgoingConnectionError { connection_id, error, peer_id } => {
                match self.pending_dial.remove(&connection_id) {
                    Some((addr, reply)) => {
                        let _ = reply.send(Err(dial_error(&addr, error)));
                    }
                    None => tracing::debug!(peer = ?peer_id, reason = %dial_reason(&error), "dial failed"),
                }
            }
            SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                tracing::debug!(%send_back_addr, %error, "inbound connection refused or failed");
            }
            SwarmEvent::NewListenAddr { address, .. } if !self.listen_addrs.contains(&address) => {
                self.listen_addrs.push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => self.listen_addrs.retain(|a| *a != address),
            _ => {}
        }
    }
}

/// Bind every listen address and wait until each reports its bound address.
async fn bind(swarm: &mut Swarm<Behaviour>, listen: &[Multiaddr]) -> Result<Vec<Multiaddr>, NetworkError> {
    let mut waiting = Vec::new();
    for addr in listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| NetworkError::Listen { addr: addr.to_string(), source: cause(e) })?;
        waiting.push((id, addr.clone()));
    }
    let mut bound = Vec::new();
    let deadline = tokio::time::Instant::now() + LISTEN_BUDGET;
    while !waiting.is_empty() {
        let first = waiting.first().map(|(_, a)| a.to_string()).unwrap_or_default();
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(SwarmEvent::NewListenAddr { listener_id, address }) => {
                waiting.retain(|(id, _)| *id != listener_id);
                bound.push(address);
            }
            Ok(SwarmEvent::ListenerError { error, .. })
            | Ok(SwarmEvent::ListenerClosed { reason: Err(error), .. }) => {
                return Err(NetworkError::Listen { addr: first, source: cause(error) });
            }
            Ok(_) => {}
            Err(_) => {
                return Err(NetworkError::Listen { addr: first, source: cause("no address bound in time") })
            }
        }
    }
    // A wildcard listener reports one address per interface, one event each: collect
    // the rest of that burst so every interface is announced from the start.
    while let Ok(ev) = tokio::time::timeout(INTERFACE_GRACE, swarm.select_next_some()).await {
        if let SwarmEvent::NewListenAddr { address, .. } = ev {
            bound.push(address);
        }
    }
    Ok(bound)
}

/// A failed dial of `addr`: the root causes to read, libp2p's error kept as the source.
fn dial_error(addr: &Multiaddr, e: DialError) -> NetworkError {
    NetworkError::Dial { addr: addr.to_string(), reason: dial_reason(&e), source: Some(cause(e)) }
}

/// The root cause of a dial's failure, for each address tried.
fn dial_reason(e: &DialError) -> String {
    match e {
        DialError::Transport(errs) => {
            errs.iter().map(|(a, e)| format!("{a}: {}", root_cause(e))).collect::<Vec<_>>().join("; ")
        }
        other => other.to_string(),
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
