//! Request-response in the swarm task: inbound client and peer requests handed to the
//! node (or refused: busy, not admitted), answers and failures of our own requests
//! settled through their pending replies, and peer requests held until their sender's
//! hello.
//!
//! Never waits on the node: a full event queue answers `UNAVAILABLE` at once.

use super::EventLoop;
use crate::network::codec::Metered;
use crate::network::{cause, ClientResponder, NetworkError, NetworkEvent, PeerResponder, Reply};
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::PeerId;
use meshlog_protocol::admission::PeerRole;
use meshlog_protocol::messages::{ClientRequest, ClientResult, PeerRequest, PeerResponse};
use meshlog_protocol::{ErrorCode, WireError};
use std::collections::HashMap;

/// Peer requests held per peer while its hello is on its way.
const EARLY_REQUESTS_PER_PEER: usize = 64;
/// Peers with held requests at once.
const EARLY_PEERS_MAX: usize = 256;

/// Where the answer to a held peer request goes.
pub(super) type PeerChannel = request_response::ResponseChannel<PeerResponse>;

impl EventLoop {
    pub(super) fn on_client(&mut self, e: request_response::Event<Metered<ClientRequest>, ClientResult>) {
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

    pub(super) fn on_peer(&mut self, e: request_response::Event<PeerRequest, PeerResponse>) {
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

    pub(super) fn hand_on_peer_request(&mut self, peer: PeerId, request: PeerRequest, channel: PeerChannel) {
        let ev = NetworkEvent::PeerRequest { peer, request, responder: PeerResponder(channel) };
        if let Err(e) = self.events.try_send(ev) {
            if let NetworkEvent::PeerRequest { responder, .. } = e.into_inner() {
                self.refuse_peer(responder.0, busy());
            }
        }
    }

    pub(super) fn refuse_peer(&mut self, channel: PeerChannel, e: WireError) {
        let _ = self.swarm.behaviour_mut().peer.send_response(channel, PeerResponse::Error(e));
    }

    /// Keep a request from a peer whose hello is still on its way (bounded).
    pub(super) fn hold_early(&mut self, peer: PeerId, request: PeerRequest, channel: PeerChannel) {
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
                let peer = peer.to_string();
                let err = match error {
                    request_response::OutboundFailure::DialFailure
                    | request_response::OutboundFailure::UnsupportedProtocols => {
                        NetworkError::NotSent { peer, source: cause(error) }
                    }
                    _ => NetworkError::Request { peer, source: cause(error) },
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
