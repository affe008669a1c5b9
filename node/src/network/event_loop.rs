//! The swarm task: owns the libp2p `Swarm`, executes [`Command`]s, and turns swarm
//! events into [`NetworkEvent`]s or replies. It never awaits anything but its own
//! inputs, so one slow consumer cannot stall networking: events go out with `try_send`
//! (requests over capacity are answered `UNAVAILABLE`; surplus gossip is dropped, it is
//! only hints).

use super::behaviour::{build_swarm, Behaviour, BehaviourEvent, KAD_PROTOCOL};
use super::{ClientResponder, Command, NetworkConfig, NetworkError, NetworkEvent, PeerResponder, Reply};
use futures::StreamExt;
use libp2p::kad::store::RecordStore;
use libp2p::kad::{self, QueryId};
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{gossipsub, identify, mdns, Multiaddr, PeerId, Swarm};
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
}

impl EventLoop {
    /// Build the swarm, bind the listen addresses and dial the bootstrap addresses;
    /// returns the bound addresses.
    pub(super) async fn new(
        cfg: &NetworkConfig,
        cmds: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetworkEvent>,
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
        };
        Ok((lp, bound))
    }

    /// A handle for opening and accepting raw streams on this swarm.
    pub(super) fn stream_control(&self) -> libp2p_stream::Control {
        self.swarm.behaviour().stream.new_control()
    }

    pub(super) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                cmd = self.cmds.recv() => match cmd {
                    Some(c) => self.on_command(c),
                    None => return,
                },
                _ = crate::server::stopped(&mut shutdown) => return,
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let b = self.swarm.behaviour_mut();
        match cmd {
            Command::Dial { addr, reply } => self.dial(addr, reply),
            Command::SendClient { peer, req, reply } => {
                let id = b.client.send_request(&peer, req);
                self.pending_client.insert(id, reply);
            }
            Command::SendPeer { peer, req, reply } => {
                let id = b.peer.send_request(&peer, req);
                self.pending_peer.insert(id, reply);
            }
            // Err: the requester went away or timed out; nothing to do.
            Command::RespondClient { responder, result } => {
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

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Client(e)) => self.on_client(e),
            SwarmEvent::Behaviour(BehaviourEvent::Peer(e)) => self.on_peer(e),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.on_kad(e),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.on_gossip(e),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(e)) => self.on_mdns(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.on_identify(e),
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, num_established, .. } => {
                if let Some((_, reply)) = self.pending_dial.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                if num_established.get() == 1 {
                    let _ = self.events.try_send(NetworkEvent::PeerConnected { peer: peer_id });
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                let _ = self.events.try_send(NetworkEvent::PeerDisconnected { peer: peer_id });
            }
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
        let gossipsub::Event::Message { message, .. } = e else { return };
        let Some(source) = message.source else { return };
        let msg: GossipMessage = match codec::decode(&message.data) {
            Ok(m) => m,
            Err(e) => return tracing::debug!(%source, error = %e, "undecodable gossip dropped"),
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
            return tracing::warn!(%source, ?claimed, "gossip claiming another sender rejected");
        }
        let _ = self.events.try_send(NetworkEvent::Gossip { source, message: msg });
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
            if info.protocols.contains(&KAD_PROTOCOL) {
                if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                    for a in info.listen_addrs {
                        kad.add_address(&peer_id, a);
                    }
                }
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

    fn on_client(&mut self, e: request_response::Event<ClientRequest, ClientResult>) {
        let Some((peer, request, channel)) = on_request_response(e, &mut self.pending_client, "client")
        else {
            return;
        };
        let ev = NetworkEvent::ClientRequest { peer, request, responder: ClientResponder(channel) };
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
        let ev = NetworkEvent::PeerRequest { peer, request, responder: PeerResponder(channel) };
        if let Err(e) = self.events.try_send(ev) {
            if let NetworkEvent::PeerRequest { responder, .. } = e.into_inner() {
                let r = PeerResponse::Error(busy());
                let _ = self.swarm.behaviour_mut().peer.send_response(responder.0, r);
            }
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
