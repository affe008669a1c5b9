//! Gossipsub in the swarm task: publishing, and the validation of every message before
//! it is forwarded or handed on (only a node's, only speaking for its own author).
//!
//! It judges only who may say a thing, never what it means: accepted messages go to the
//! node as [`NetworkEvent::Gossip`], dropped (not waited on) when the node is busy.

use super::EventLoop;
use crate::network::NetworkEvent;
use libp2p::{gossipsub, PeerId};
use meshlog_protocol::admission::PeerRole;
use meshlog_protocol::codec;
use meshlog_protocol::mesh::GossipMessage;

impl EventLoop {
    pub(super) fn publish(&mut self, message: GossipMessage) {
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

    pub(super) fn on_gossip(&mut self, e: gossipsub::Event) {
        let gossipsub::Event::Message { message, propagation_source, message_id } = e else { return };
        let verdict = self.check_gossip(&propagation_source, message);
        if let Some(gs) = self.swarm.behaviour_mut().gossipsub.as_mut() {
            // Only accepted messages are forwarded; a client's are rejected outright.
            let _ = gs.report_message_validation_result(&message_id, &propagation_source, verdict);
        }
    }

    /// Decide on one gossip message, handing it on if accepted.
    pub(super) fn check_gossip(
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
}
