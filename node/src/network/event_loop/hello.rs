//! The hello of every connection in the swarm task: both ends send one, each checks
//! the other's ([`crate::network::admission`]) and answers with its own; what a peer's
//! role then gives it (held requests, DHT addresses, dials answered) or, failing that,
//! its disconnection.
//!
//! Owns [`Admissions`], the state of connections whose role is not settled; the roles
//! themselves live in the shared [`crate::network::admission::Roles`] table.

use super::requests::PeerChannel;
use super::EventLoop;
use crate::network::{NetworkError, NetworkEvent, Reply, HELLO_BUDGET};
use libp2p::core::ConnectedPoint;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use meshlog_protocol::admission::{Hello, PeerRole};
use meshlog_protocol::messages::PeerRequest;
use meshlog_protocol::{ErrorCode, WireError};
use std::collections::HashMap;

/// Hellos sent to one peer before it is given up on (a hello can be lost when it
/// arrives while the other side is still starting: nodes that find each other by mDNS
/// the moment they start refuse each other's first hellos).
const HELLO_ATTEMPTS: u8 = 5;

/// The pause before a failed hello is sent again, times the attempts so far: retries
/// spread over a few seconds (checked each `HELLO_CHECK_INTERVAL`), within the peer's
/// `HELLO_BUDGET`, instead of all failing within a millisecond of each other.
const HELLO_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// What the swarm task knows about connections whose role is not settled yet.
#[derive(Default)]
pub(super) struct Admissions {
    /// Connected peers without a role, since when.
    pub(super) unproven: HashMap<PeerId, tokio::time::Instant>,
    /// Our hellos in flight.
    pub(super) hellos: HashMap<OutboundRequestId, PeerId>,
    /// Hellos sent per peer without an answer yet.
    pub(super) attempts: HashMap<PeerId, u8>,
    /// Peers whose last hello failed, and when to send the next.
    pub(super) retry: HashMap<PeerId, tokio::time::Instant>,
    /// Dials answered once the peer's hello is checked.
    pub(super) dials: HashMap<PeerId, Vec<(Multiaddr, Reply<PeerId>)>>,
    /// Peer requests that arrived before their sender's hello.
    pub(super) early: HashMap<PeerId, Vec<(PeerRequest, PeerChannel)>>,
    /// Listen addresses identify reported, added to the DHT once the peer is a node.
    pub(super) identified: HashMap<PeerId, Vec<Multiaddr>>,
}

impl EventLoop {
    pub(super) fn on_connected(&mut self, peer: PeerId, connection: ConnectionId, endpoint: &ConnectedPoint) {
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

    pub(super) fn send_hello(&mut self, peer: PeerId) {
        match self.admission.hello(self.role, self.swarm.local_peer_id(), &peer) {
            Ok(hello) => {
                let id = self.swarm.behaviour_mut().hello.send_request(&peer, hello);
                self.admissions.hellos.insert(id, peer);
                *self.admissions.attempts.entry(peer).or_default() += 1;
            }
            Err(e) => tracing::error!(%peer, error = %e, "cannot sign a hello"),
        }
    }

    pub(super) fn on_disconnected(&mut self, peer: PeerId) {
        let was_node = self.roles.is_node(&peer);
        self.roles.remove(&peer);
        self.admissions.unproven.remove(&peer);
        self.admissions.identified.remove(&peer);
        self.admissions.attempts.remove(&peer);
        self.admissions.retry.remove(&peer);
        self.refuse_early(&peer, "the connection closed before its hello");
        for (addr, reply) in self.admissions.dials.remove(&peer).unwrap_or_default() {
            let reason = "the connection closed during the hello (a closed mesh refuses a process without \
                          its credential: check --client-credential and --psk-file)"
                .to_string();
            let _ = reply.send(Err(NetworkError::Dial { addr: addr.to_string(), reason, source: None }));
        }
        if was_node {
            let _ = self.events.try_send(NetworkEvent::PeerDisconnected { peer });
        }
    }

    pub(super) fn on_hello(&mut self, e: request_response::Event<Hello, Hello>) {
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
                    tracing::debug!(%peer, %error, "hello failed; sending it again shortly");
                    let due = tokio::time::Instant::now() + HELLO_RETRY_PAUSE * u32::from(tried);
                    self.admissions.retry.insert(peer, due);
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
    pub(super) fn admitted(&mut self, peer: PeerId, role: PeerRole) {
        let first = self.roles.get(&peer).is_none();
        self.roles.set(peer, role);
        self.admissions.unproven.remove(&peer);
        self.admissions.attempts.remove(&peer);
        self.admissions.retry.remove(&peer);
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
    pub(super) fn not_admitted(&mut self, peer: PeerId, reason: String) {
        tracing::warn!(%peer, %reason, "peer not admitted");
        self.admissions.unproven.remove(&peer);
        self.admissions.attempts.remove(&peer);
        self.admissions.retry.remove(&peer);
        self.refuse_early(&peer, "not admitted");
        for (addr, reply) in self.admissions.dials.remove(&peer).unwrap_or_default() {
            let _ = addr;
            let _ =
                reply.send(Err(NetworkError::NotAdmitted { peer: peer.to_string(), reason: reason.clone() }));
        }
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    pub(super) fn refuse_early(&mut self, peer: &PeerId, why: &str) {
        for (_, channel) in self.admissions.early.remove(peer).unwrap_or_default() {
            let e = WireError::new(ErrorCode::ClusterAuthorizationFailed, why);
            self.refuse_peer(channel, e);
        }
    }

    /// Failed hellos whose pause is over are sent again; connections whose hello did
    /// not come within its budget are closed.
    pub(super) fn expire_hellos(&mut self) {
        let now = tokio::time::Instant::now();
        let due: Vec<PeerId> =
            self.admissions.retry.iter().filter(|(_, at)| **at <= now).map(|(p, _)| *p).collect();
        for peer in due {
            self.admissions.retry.remove(&peer);
            if self.roles.get(&peer).is_none() && self.swarm.is_connected(&peer) {
                self.send_hello(peer);
            }
        }
        let late: Vec<PeerId> = (self.admissions.unproven.iter())
            .filter(|(_, since)| now.duration_since(**since) >= HELLO_BUDGET)
            .map(|(p, _)| *p)
            .collect();
        for peer in late {
            self.not_admitted(peer, format!("no hello within {} s", HELLO_BUDGET.as_secs()));
        }
    }
}
