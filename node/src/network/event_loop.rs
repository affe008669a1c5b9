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

use super::admission::{Admission, Roles};
use super::behaviour::{build_swarm, Behaviour, BehaviourEvent, KAD_PROTOCOL};
use super::codec::Metered;
use super::{
    ClientResponder, Command, NetworkConfig, NetworkError, NetworkEvent, PeerResponder, Reply, HELLO_BUDGET,
};
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::kad::store::RecordStore;
use libp2p::kad::{self, QueryId};
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{gossipsub, identify, mdns, Multiaddr, PeerId, Swarm};
use meshlog_protocol::admission::{Hello, PeerRole};
use meshlog_protocol::codec;
use meshlog_protocol::mesh::{GossipMessage, SignedRecord, MESH_GOSSIP_TOPIC};
use meshlog_protocol::messages::{ClientRequest, ClientResult, PeerRequest, PeerResponse};
use meshlog_protocol::{ErrorCode, WireError};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long `start` waits for the listeners to report their bound addresses.
const LISTEN_BUDGET: Duration = Duration::from_secs(10);
/// How long to wait for further interface addresses of a wildcard listener.
const INTERFACE_GRACE: Duration = Duration::from_millis(50);
/// How often connections still without a hello are checked against their budget.
const HELLO_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Peer requests held per peer while its hello is on its way.
const EARLY_REQUESTS_PER_PEER: usize = 64;
/// Peers with held requests at once.
const EARLY_PEERS_MAX: usize = 256;
/// Hellos sent to one peer before it is given up on (a hello can be lost when it
/// arrives while the other side is still binding its listeners).
const HELLO_ATTEMPTS: u8 = 3;
/// Identify listen addresses remembered per peer until it is admitted.
const IDENTIFY_ADDRS_MAX: usize = 16;

type PeerChannel = request_response::ResponseChannel<PeerResponse>;

/// What the swarm task knows about connections whose role is not settled yet.
#[derive(Default)]
struct Admissions {
    /// Connected peers without a role, since when.
    unproven: HashMap<PeerId, tokio::time::Instant>,
    /// Our hellos in flight.
    hellos: HashMap<OutboundRequestId, PeerId>,
    /// Hellos sent per peer without an answer yet.
    attempts: HashMap<PeerId, u8>,
    /// Dials answered once the peer's hello is checked.
    dials: HashMap<PeerId, Vec<(Multiaddr, Reply<PeerId>)>>,
    /// Peer requests that arrived before their sender's hello.
    early: HashMap<PeerId, Vec<(PeerRequest, PeerChannel)>>,
    /// Listen addresses identify reported, added to the DHT once the peer is a node.
    identified: HashMap<PeerId, Vec<Multiaddr>>,
}

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
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                cmd = self.cmds.recv() => match cmd {
                    Some(c) => self.on_command(c),
                    None => return,
                },
                _ = hello_check.tick() => self.expire_hellos(),
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

    fn on_dht_command(&mut self, cmd: Command) {
        let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() else {
            return;
        };
        match cmd {
            Command::PutRecord { key, record } => match codec::encode(&record) {
                Ok(value) => {
                    let rec = kad::Record::new(key.into_bytes(), value);
                    if let Err(e) = kad.put_record(rec, kad::Quorum::One) {
                        tracing::warn!(error = %e, "cannot store a DHT record");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot encode a DHT record"),
            },
            Command::GetRecord { key, reply } => {
                let id = kad.get_record(kad::RecordKey::new(&key));
                self.pending_records.insert(id, (reply, Vec::new()));
            }
            Command::StartProviding { key } => {
                if let Err(e) = kad.start_providing(kad::RecordKey::new(&key)) {
                    tracing::warn!(%key, error = %e, "cannot provide a DHT key");
                }
            }
            Command::StopProviding { key } => kad.stop_providing(&kad::RecordKey::new(&key)),
            Command::GetProviders { key, reply } => {
                let id = kad.get_providers(kad::RecordKey::new(&key));
                self.pending_providers.insert(id, (reply, HashSet::new()));
            }
            _ => {}
        }
    }

    fn publish(&mut self, message: GossipMessage) {
        let Some(gs) = self.swarm.behaviour_mut().gossipsub.as_mut() else {
            return;
        };
        let bytes = match codec::encode(&message) {
            Ok(b) => b,
            Err(e) => return tracing::warn!(error = %e, "cannot encode gossip"),
        };
        match gs.publish(self.topic.clone(), bytes) {
            Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(e) => tracing::debug!(error = %e, "gossip publish failed"),
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
                let _ =
                    reply.send(Err(NetworkError::Dial { addr: addr.to_string(), reason: dial_reason(&e) }));
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
                let reason = dial_reason(&error);
                match self.pending_dial.remove(&connection_id) {
                    Some((addr, reply)) => {
                        let _ = reply.send(Err(NetworkError::Dial { addr: addr.to_string(), reason }));
                    }
                    None => tracing::debug!(peer = ?peer_id, %reason, "dial failed"),
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

    fn on_gossip(&mut self, e: gossipsub::Event) {
        let gossipsub::Event::Message { message, propagation_source, message_id } = e else { return };
        let verdict = self.check_gossip(&propagation_source, message);
        if let Some(gs) = self.swarm.behaviour_mut().gossipsub.as_mut() {
            // Only accepted messages are forwarded; a client's are rejected outright.
            let _ = gs.report_message_validation_result(&message_id, &propagation_source, verdict);
        }
    }

    /// Decide on one gossip message, handing it on if accepted.
    fn check_gossip(
        &mut self,
        relayer: &PeerId,
        message: gossipsub::Message,
    ) -> gossipsub::MessageAcceptance {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        match self.roles.get(relayer) {
            Some(PeerRole::Node) => {}
            Some(PeerRole::Client) => {
                tracing::warn!(peer = %relayer, "gossip from a client rejected");
                return Reject;
            }
            None => return Ignore, // its hello is not checked yet; gossip repeats
        }
        let Some(source) = message.source else { return Reject };
        if self.roles.get(&source) == Some(PeerRole::Client) {
            tracing::warn!(%source, "gossip authored by a client rejected");
            return Reject;
        }
        let msg: GossipMessage = match codec::decode(&message.data) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%source, error = %e, "undecodable gossip dropped");
                return Reject;
            }
        };
        // Strict validation already checked that `source` signed the message; its
        // payload may not claim to speak for anyone else.
        let claimed = match &msg {
            GossipMessage::Heartbeat(h) => Some(h.peer.as_str()),
            GossipMessage::Leave { peer } => Some(peer.as_str()),
            GossipMessage::Topic(_) => None,
            GossipMessage::Leases(l) => Some(l.leader.as_str()),
        };
        if claimed.is_some_and(|c| c != source.to_string()) {
            tracing::warn!(%source, ?claimed, "gossip claiming another sender rejected");
            return Reject;
        }
        let _ = self.events.try_send(NetworkEvent::Gossip { source, message: msg });
        Accept
    }

    fn on_mdns(&mut self, e: mdns::Event) {
        if let mdns::Event::Discovered(found) = e {
            let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
            for (peer, addr) in found {
                by_peer.entry(peer).or_default().push(addr);
            }
            for (peer, addrs) in by_peer {
                tracing::debug!(%peer, ?addrs, "discovered by mDNS");
                self.connect(peer, addrs);
            }
        }
    }

    fn on_identify(&mut self, e: identify::Event) {
        if let identify::Event::Received { peer_id, info, .. } = e {
            if !info.protocols.contains(&KAD_PROTOCOL) {
                return;
            }
            let mut addrs = info.listen_addrs;
            addrs.truncate(IDENTIFY_ADDRS_MAX);
            match self.roles.get(&peer_id) {
                Some(PeerRole::Node) => self.add_dht_addresses(&peer_id, addrs),
                Some(PeerRole::Client) => {}
                None => {
                    self.admissions.identified.insert(peer_id, addrs);
                }
            }
        }
    }

    fn add_dht_addresses(&mut self, peer: &PeerId, addrs: Vec<Multiaddr>) {
        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
            for a in addrs {
                kad.add_address(peer, a);
            }
        }
    }

    fn on_kad(&mut self, e: kad::Event) {
        match e {
            kad::Event::InboundRequest { request } => self.on_kad_inbound(request),
            kad::Event::OutboundQueryProgressed { id, result, step, .. } => match result {
                kad::QueryResult::GetRecord(r) => self.on_get_record(id, r, step.last),
                kad::QueryResult::GetProviders(r) => self.on_get_providers(id, r, step.last),
                _ => {}
            },
            _ => {}
        }
    }

    fn on_kad_inbound(&mut self, request: kad::InboundRequest) {
        let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() else { return };
        match request {
            kad::InboundRequest::PutRecord { source, .. } if !self.roles.is_node(&source) => {
                tracing::warn!(%source, "DHT write from a peer that is not a node dropped");
            }
            kad::InboundRequest::AddProvider { record: Some(record) }
                if !self.roles.is_node(&record.provider) =>
            {
                tracing::warn!(provider = %record.provider, "DHT provider record from a peer that is not a node dropped");
            }
            kad::InboundRequest::PutRecord { source, record: Some(record), .. } => {
                match super::records::check_dht_record(&record) {
                    Ok(()) => {
                        let _ = kad.store_mut().put(record);
                    }
                    Err(e) => tracing::warn!(%source, error = %e, "DHT record rejected"),
                }
            }
            kad::InboundRequest::AddProvider { record: Some(record) } => {
                let _ = kad.store_mut().add_provider(record);
            }
            _ => {}
        }
    }

    fn on_get_record(&mut self, id: QueryId, r: Result<kad::GetRecordOk, kad::GetRecordError>, last: bool) {
        if let Ok(kad::GetRecordOk::FoundRecord(found)) = r {
            if let Some((_, acc)) = self.pending_records.get_mut(&id) {
                match super::records::check_dht_record(&found.record) {
                    Ok(()) => {
                        if let Ok(rec) = codec::decode::<SignedRecord>(&found.record.value) {
                            acc.push(rec);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "invalid DHT record ignored"),
                }
            }
        }
        if last {
            if let Some((reply, acc)) = self.pending_records.remove(&id) {
                let _ = reply.send(Ok(acc));
            }
        }
    }

    fn on_get_providers(
        &mut self,
        id: QueryId,
        r: Result<kad::GetProvidersOk, kad::GetProvidersError>,
        last: bool,
    ) {
        if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = r {
            if let Some((_, acc)) = self.pending_providers.get_mut(&id) {
                acc.extend(providers);
            }
        }
        if last {
            if let Some((reply, acc)) = self.pending_providers.remove(&id) {
                let _ = reply.send(Ok(acc.into_iter().collect()));
            }
        }
    }

    fn on_client(&mut self, e: request_response::Event<Metered<ClientRequest>, ClientResult>) {
        let Some((peer, request, channel)) = on_request_response(e, &mut self.pending_client, "client")
        else {
            return;
        };
        // A closed mesh serves only peers that proved a role; an open one anyone.
        if self.admission.is_closed() && self.roles.get(&peer).is_none() {
            let _ = self.swarm.behaviour_mut().client.send_response(channel, Err(unauthorized()));
            return;
        }
        let responder = ClientResponder(channel, request.held);
        let ev = NetworkEvent::ClientRequest { peer, request: request.value, responder };
        if let Err(e) = self.events.try_send(ev) {
            if let NetworkEvent::ClientRequest { responder, .. } = e.into_inner() {
                let _ = self.swarm.behaviour_mut().client.send_response(responder.0, Err(busy()));
            }
        }
    }

    fn on_peer(&mut self, e: request_response::Event<PeerRequest, PeerResponse>) {
        let Some((peer, request, channel)) = on_request_response(e, &mut self.pending_peer, "peer") else {
            return;
        };
        match self.roles.get(&peer) {
            Some(PeerRole::Node) => self.hand_on_peer_request(peer, request, channel),
            Some(PeerRole::Client) => {
                tracing::warn!(%peer, "peer request from a client refused");
                self.refuse_peer(channel, unauthorized());
            }
            None => self.hold_early(peer, request, channel),
        }
    }

    fn hand_on_peer_request(&mut self, peer: PeerId, request: PeerRequest, channel: PeerChannel) {
        let ev = NetworkEvent::PeerRequest { peer, request, responder: PeerResponder(channel) };
        if let Err(e) = self.events.try_send(ev) {
            if let NetworkEvent::PeerRequest { responder, .. } = e.into_inner() {
                self.refuse_peer(responder.0, busy());
            }
        }
    }

    fn refuse_peer(&mut self, channel: PeerChannel, e: WireError) {
        let _ = self.swarm.behaviour_mut().peer.send_response(channel, PeerResponse::Error(e));
    }

    /// Keep a request from a peer whose hello is still on its way (bounded).
    fn hold_early(&mut self, peer: PeerId, request: PeerRequest, channel: PeerChannel) {
        let known = self.admissions.early.contains_key(&peer);
        if !known && self.admissions.early.len() >= EARLY_PEERS_MAX {
            return self.refuse_peer(channel, busy());
        }
        let held = self.admissions.early.entry(peer).or_default();
        if held.len() >= EARLY_REQUESTS_PER_PEER {
            return self.refuse_peer(channel, busy());
        }
        held.push((request, channel));
    }
}

/// Admission: the hello exchange and what follows from a peer's role.
impl EventLoop {
    fn on_connected(&mut self, peer: PeerId, connection: ConnectionId, endpoint: &ConnectedPoint) {
        if let Some((addr, reply)) = self.pending_dial.remove(&connection) {
            match self.roles.get(&peer) {
                Some(_) => {
                    let _ = reply.send(Ok(peer));
                }
                None => self.admissions.dials.entry(peer).or_default().push((addr, reply)),
            }
        }
        if self.roles.get(&peer).is_some() {
            return;
        }
        self.admissions.unproven.entry(peer).or_insert_with(tokio::time::Instant::now);
        // Both ends send a hello on a connection to a peer whose role they do not know
        // yet: either exchange settles the role, so one lost on a connection closed
        // during simultaneous dials (mDNS) cannot leave a half-admitted pair behind.
        if !self.admissions.hellos.values().any(|p| *p == peer) {
            tracing::trace!(%peer, dialer = endpoint.is_dialer(), "sending a hello");
            self.send_hello(peer);
        }
    }

    fn send_hello(&mut self, peer: PeerId) {
        match self.admission.hello(self.role, self.swarm.local_peer_id(), &peer) {
            Ok(hello) => {
                let id = self.swarm.behaviour_mut().hello.send_request(&peer, hello);
                self.admissions.hellos.insert(id, peer);
                *self.admissions.attempts.entry(peer).or_default() += 1;
            }
            Err(e) => tracing::error!(%peer, error = %e, "cannot sign a hello"),
        }
    }

    fn on_disconnected(&mut self, peer: PeerId) {
        let was_node = self.roles.is_node(&peer);
        self.roles.remove(&peer);
        self.admissions.unproven.remove(&peer);
        self.admissions.identified.remove(&peer);
        self.admissions.attempts.remove(&peer);
        self.refuse_early(&peer, "the connection closed before its hello");
        for (addr, reply) in self.admissions.dials.remove(&peer).unwrap_or_default() {
            let reason = "the connection closed during the hello (a closed mesh refuses a process without \
                          its credential: check --client-credential and --psk-file)"
                .to_string();
            let _ = reply.send(Err(NetworkError::Dial { addr: addr.to_string(), reason }));
        }
        if was_node {
            let _ = self.events.try_send(NetworkEvent::PeerDisconnected { peer });
        }
    }

    fn on_hello(&mut self, e: request_response::Event<Hello, Hello>) {
        use request_response::{Event, Message};
        match e {
            Event::Message { peer, message: Message::Request { request, channel, .. }, .. } => {
                let verdict = self.admission.admit(&request, &peer, self.swarm.local_peer_id());
                if let Ok(role) = verdict {
                    match self.admission.hello(self.role, self.swarm.local_peer_id(), &peer) {
                        Ok(ours) => {
                            let _ = self.swarm.behaviour_mut().hello.send_response(channel, ours);
                        }
                        Err(e) => tracing::error!(%peer, error = %e, "cannot sign a hello"),
                    }
                    // A client counts a server as admitted only once the server accepted
                    // the client's own hello (the answer to it), not on the server's word.
                    if self.role == PeerRole::Node {
                        self.admitted(peer, role);
                    }
                } else if let Err(reason) = verdict {
                    self.not_admitted(peer, reason);
                }
            }
            Event::Message { peer, message: Message::Response { request_id, response }, .. } => {
                self.admissions.hellos.remove(&request_id);
                match self.admission.admit(&response, &peer, self.swarm.local_peer_id()) {
                    // A client trusts a server only as a node.
                    Ok(PeerRole::Client) if self.role == PeerRole::Client => {
                        self.not_admitted(peer, "the server did not prove the node role".into())
                    }
                    Ok(role) => self.admitted(peer, role),
                    Err(reason) => self.not_admitted(peer, reason),
                }
            }
            Event::OutboundFailure { peer, request_id, error, .. } => {
                self.admissions.hellos.remove(&request_id);
                let tried = self.admissions.attempts.get(&peer).copied().unwrap_or(0);
                if self.roles.get(&peer).is_some() || !self.swarm.is_connected(&peer) {
                    // Its own hello to us settled it, or the connection is gone (the
                    // next one starts its own hello).
                    self.admissions.attempts.remove(&peer);
                } else if tried < HELLO_ATTEMPTS {
                    tracing::debug!(%peer, %error, "hello failed; sending it again");
                    self.send_hello(peer);
                } else {
                    self.not_admitted(peer, format!("hello failed: {error}"));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound hello failed")
            }
            Event::ResponseSent { .. } => {}
        }
    }

    /// `peer` proved `role`: give it what that role may have.
    fn admitted(&mut self, peer: PeerId, role: PeerRole) {
        let first = self.roles.get(&peer).is_none();
        self.roles.set(peer, role);
        self.admissions.unproven.remove(&peer);
        self.admissions.attempts.remove(&peer);
        tracing::debug!(%peer, role = role.as_str(), "peer admitted");
        for (_, reply) in self.admissions.dials.remove(&peer).unwrap_or_default() {
            let _ = reply.send(Ok(peer));
        }
        match role {
            PeerRole::Node => {
                for (request, channel) in self.admissions.early.remove(&peer).unwrap_or_default() {
                    self.hand_on_peer_request(peer, request, channel);
                }
                if let Some(addrs) = self.admissions.identified.remove(&peer) {
                    self.add_dht_addresses(&peer, addrs);
                }
                if first {
                    let _ = self.events.try_send(NetworkEvent::PeerConnected { peer });
                }
            }
            PeerRole::Client => {
                self.refuse_early(&peer, "a client may not use the peer protocols");
                self.admissions.identified.remove(&peer);
                // A client has no place in the DHT's routing table or the gossip mesh.
                let b = self.swarm.behaviour_mut();
                if let Some(kad) = b.kad.as_mut() {
                    kad.remove_peer(&peer);
                }
                if let Some(gs) = b.gossipsub.as_mut() {
                    gs.blacklist_peer(&peer);
                }
            }
        }
    }

    /// `peer` failed its hello (a refused proof, no hello in time, or every attempt
    /// lost): it is disconnected, so a later connection starts afresh.
    fn not_admitted(&mut self, peer: PeerId, reason: String) {
        tracing::warn!(%peer, %reason, "peer not admitted");
        self.admissions.unproven.remove(&peer);
        self.admissions.attempts.remove(&peer);
        self.refuse_early(&peer, "not admitted");
        for (addr, reply) in self.admissions.dials.remove(&peer).unwrap_or_default() {
            let _ = addr;
            let _ =
                reply.send(Err(NetworkError::NotAdmitted { peer: peer.to_string(), reason: reason.clone() }));
        }
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    fn refuse_early(&mut self, peer: &PeerId, why: &str) {
        for (_, channel) in self.admissions.early.remove(peer).unwrap_or_default() {
            let e = WireError::new(ErrorCode::ClusterAuthorizationFailed, why);
            self.refuse_peer(channel, e);
        }
    }

    /// Connections whose hello did not come within its budget.
    fn expire_hellos(&mut self) {
        let now = tokio::time::Instant::now();
        let late: Vec<PeerId> = (self.admissions.unproven.iter())
            .filter(|(_, since)| now.duration_since(**since) >= HELLO_BUDGET)
            .map(|(p, _)| *p)
            .collect();
        for peer in late {
            self.not_admitted(peer, format!("no hello within {} s", HELLO_BUDGET.as_secs()));
        }
    }
}

/// Settle responses and failures of our own requests; hand back an inbound request.
fn on_request_response<Req, Resp>(
    e: request_response::Event<Req, Resp>,
    pending: &mut HashMap<OutboundRequestId, Reply<Resp>>,
    api: &str,
) -> Option<(PeerId, Req, request_response::ResponseChannel<Resp>)> {
    match e {
        request_response::Event::Message { peer, message, .. } => match message {
            request_response::Message::Request { request, channel, .. } => {
                return Some((peer, request, channel))
            }
            request_response::Message::Response { request_id, response } => {
                if let Some(reply) = pending.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
        },
        request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
            if let Some(reply) = pending.remove(&request_id) {
                let (peer, reason) = (peer.to_string(), error.to_string());
                let err = match error {
                    request_response::OutboundFailure::DialFailure
                    | request_response::OutboundFailure::UnsupportedProtocols => {
                        NetworkError::NotSent { peer, reason }
                    }
                    _ => NetworkError::Request { peer, reason },
                };
                let _ = reply.send(Err(err));
            }
        }
        request_response::Event::InboundFailure { peer, error, .. } => {
            tracing::debug!(%peer, %error, api, "inbound request failed");
        }
        request_response::Event::ResponseSent { .. } => {}
    }
    None
}

fn busy() -> WireError {
    WireError::new(ErrorCode::Unavailable, "node is overloaded; retry later")
}

fn unauthorized() -> WireError {
    WireError::new(
        ErrorCode::ClusterAuthorizationFailed,
        "not admitted: only nodes of the mesh may use the peer protocols, and a closed mesh serves only proven peers",
    )
}

/// Bind every listen address and wait until each reports its bound address.
async fn bind(swarm: &mut Swarm<Behaviour>, listen: &[Multiaddr]) -> Result<Vec<Multiaddr>, NetworkError> {
    let mut waiting = Vec::new();
    for addr in listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| NetworkError::Listen { addr: addr.to_string(), reason: e.to_string() })?;
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
                return Err(NetworkError::Listen { addr: first, reason: error.to_string() });
            }
            Ok(_) => {}
            Err(_) => {
                return Err(NetworkError::Listen { addr: first, reason: "no address bound in time".into() })
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
