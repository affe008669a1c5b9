//! The swarm task: owns the libp2p `Swarm`, executes [`Command`]s, and turns swarm
//! events into [`NetworkEvent`]s or replies. It never awaits anything but its own
//! inputs, so one slow consumer cannot stall networking.

use super::codec::FrameCodec;
use super::{
    ClientResponder, Command, NetworkConfig, NetworkError, NetworkEvent, PeerResponder, Reply,
};
use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, NetworkBehaviour, SwarmEvent};
use libp2p::{identify, noise, ping, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use meshlog_protocol::messages::{ClientRequest, ClientResult, PeerRequest, PeerResponse};
use meshlog_protocol::{ErrorCode, WireError};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The client API protocol name; the trailing number is the major wire version.
pub const CLIENT_PROTOCOL: StreamProtocol = StreamProtocol::new("/meshlog/client/1");
/// The peer API protocol name.
pub const PEER_PROTOCOL: StreamProtocol = StreamProtocol::new("/meshlog/peer/1");
/// Identify's protocol version string.
const IDENTIFY_VERSION: &str = "/meshlog/1.0.0";
/// Concurrent request streams per connection (request-response's own cap).
const MAX_CONCURRENT_STREAMS: usize = 512;
/// How long `start` waits for the listeners to report their bound addresses.
const LISTEN_BUDGET: Duration = Duration::from_secs(10);

/// Every protocol a meshlog peer speaks.
#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    client: request_response::Behaviour<FrameCodec<ClientRequest, ClientResult>>,
    peer: request_response::Behaviour<FrameCodec<PeerRequest, PeerResponse>>,
}

fn behaviour(cfg: &NetworkConfig, key: &libp2p::identity::Keypair) -> Behaviour {
    let support = if cfg.serve {
        ProtocolSupport::Full
    } else {
        ProtocolSupport::Outbound
    };
    let rr_cfg = request_response::Config::default()
        .with_request_timeout(cfg.request_timeout)
        .with_max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    Behaviour {
        identify: identify::Behaviour::new(identify::Config::new(
            IDENTIFY_VERSION.into(),
            key.public(),
        )),
        ping: ping::Behaviour::default(),
        client: request_response::Behaviour::with_codec(
            FrameCodec::new(cfg.max_frame_bytes),
            [(CLIENT_PROTOCOL, support.clone())],
            rr_cfg.clone(),
        ),
        peer: request_response::Behaviour::with_codec(
            FrameCodec::new(cfg.max_frame_bytes),
            [(PEER_PROTOCOL, support)],
            rr_cfg,
        ),
    }
}

pub(super) struct EventLoop {
    swarm: Swarm<Behaviour>,
    cmds: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    pending_dial: HashMap<ConnectionId, (Multiaddr, Reply<PeerId>)>,
    pending_client: HashMap<OutboundRequestId, Reply<ClientResult>>,
    pending_peer: HashMap<OutboundRequestId, Reply<PeerResponse>>,
}

fn build_swarm(cfg: &NetworkConfig) -> Result<Swarm<Behaviour>, NetworkError> {
    let t = |e: &dyn std::fmt::Display| NetworkError::Transport(e.to_string());
    let idle = cfg.idle_connection_timeout;
    Ok(
        libp2p::SwarmBuilder::with_existing_identity(cfg.keypair.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| t(&e))?
            .with_behaviour(|key| behaviour(cfg, key))
            .map_err(|e| t(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
    )
}

impl EventLoop {
    /// Build the swarm and bind the listen addresses; returns the bound addresses.
    pub(super) async fn new(
        cfg: &NetworkConfig,
        cmds: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetworkEvent>,
    ) -> Result<(EventLoop, Vec<Multiaddr>), NetworkError> {
        let mut swarm = build_swarm(cfg)?;
        let mut waiting = Vec::new();
        for addr in &cfg.listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| NetworkError::Listen {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })?;
            waiting.push((id, addr.clone()));
        }
        let mut bound = Vec::new();
        let deadline = tokio::time::Instant::now() + LISTEN_BUDGET;
        while !waiting.is_empty() {
            let ev = tokio::time::timeout_at(deadline, swarm.select_next_some()).await;
            match ev {
                Ok(SwarmEvent::NewListenAddr {
                    listener_id,
                    address,
                }) => {
                    waiting.retain(|(id, _)| *id != listener_id);
                    bound.push(address);
                }
                Ok(SwarmEvent::ListenerError { error, .. })
                | Ok(SwarmEvent::ListenerClosed {
                    reason: Err(error), ..
                }) => {
                    let addr = waiting
                        .first()
                        .map(|(_, a)| a.to_string())
                        .unwrap_or_default();
                    return Err(NetworkError::Listen {
                        addr,
                        reason: error.to_string(),
                    });
                }
                Ok(_) => {}
                Err(_) => {
                    let addr = waiting
                        .first()
                        .map(|(_, a)| a.to_string())
                        .unwrap_or_default();
                    return Err(NetworkError::Listen {
                        addr,
                        reason: "no address bound in time".into(),
                    });
                }
            }
        }
        let lp = EventLoop {
            swarm,
            cmds,
            events,
            pending_dial: HashMap::new(),
            pending_client: HashMap::new(),
            pending_peer: HashMap::new(),
        };
        Ok((lp, bound))
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
        match cmd {
            Command::Dial { addr, reply } => self.dial(addr, reply),
            Command::SendClient { peer, req, reply } => {
                let id = self.swarm.behaviour_mut().client.send_request(&peer, req);
                self.pending_client.insert(id, reply);
            }
            Command::SendPeer { peer, req, reply } => {
                let id = self.swarm.behaviour_mut().peer.send_request(&peer, req);
                self.pending_peer.insert(id, reply);
            }
            Command::RespondClient { responder, result } => {
                // Err: the requester went away or timed out; nothing to do.
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .client
                    .send_response(responder.0, result);
            }
            Command::RespondPeer {
                responder,
                response,
            } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .peer
                    .send_response(responder.0, response);
            }
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
                let _ = reply.send(Err(NetworkError::Dial {
                    addr: addr.to_string(),
                    reason: dial_reason(&e),
                }));
            }
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Client(e)) => self.on_client(e),
            SwarmEvent::Behaviour(BehaviourEvent::Peer(e)) => self.on_peer(e),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            } => {
                if let Some((_, reply)) = self.pending_dial.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some((addr, reply)) = self.pending_dial.remove(&connection_id) {
                    let reason = dial_reason(&error);
                    tracing::debug!(%addr, %reason, "dial failed");
                    let _ = reply.send(Err(NetworkError::Dial {
                        addr: addr.to_string(),
                        reason,
                    }));
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                tracing::debug!(%send_back_addr, %error, "inbound connection failed");
            }
            _ => {}
        }
    }

    fn on_client(&mut self, e: request_response::Event<ClientRequest, ClientResult>) {
        match e {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let ev = NetworkEvent::ClientRequest {
                        peer,
                        request,
                        responder: ClientResponder(channel),
                    };
                    if let Err(
                        mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev),
                    ) = self.events.try_send(ev)
                    {
                        if let NetworkEvent::ClientRequest { responder, .. } = ev {
                            let busy = WireError::new(
                                ErrorCode::Unavailable,
                                "node is overloaded; retry later",
                            );
                            let _ = self
                                .swarm
                                .behaviour_mut()
                                .client
                                .send_response(responder.0, Err(busy));
                        }
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending_client.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.pending_client.remove(&request_id) {
                    let _ = reply.send(Err(NetworkError::Request {
                        peer: peer.to_string(),
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound client request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_peer(&mut self, e: request_response::Event<PeerRequest, PeerResponse>) {
        match e {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let ev = NetworkEvent::PeerRequest {
                        peer,
                        request,
                        responder: PeerResponder(channel),
                    };
                    if let Err(
                        mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev),
                    ) = self.events.try_send(ev)
                    {
                        if let NetworkEvent::PeerRequest { responder, .. } = ev {
                            let busy = WireError::new(
                                ErrorCode::Unavailable,
                                "node is overloaded; retry later",
                            );
                            let _ = self
                                .swarm
                                .behaviour_mut()
                                .peer
                                .send_response(responder.0, PeerResponse::Forwarded(Err(busy)));
                        }
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending_peer.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.pending_peer.remove(&request_id) {
                    let _ = reply.send(Err(NetworkError::Request {
                        peer: peer.to_string(),
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound peer request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

fn dial_reason(e: &DialError) -> String {
    match e {
        DialError::Transport(errs) => errs
            .iter()
            .map(|(a, e)| format!("{a}: {}", root_cause(e)))
            .collect::<Vec<_>>()
            .join("; "),
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
