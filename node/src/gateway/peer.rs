//! Serving requests from peers (authenticated nodes): replication messages, client
//! requests another node forwarded, and the state a peer asks for (topic records,
//! services, partition states).
//!
//! A forwarded partition or group request is served here only, never forwarded again,
//! so a disagreement about who leads costs a redirect, never a loop. A produce to an
//! internal topic is refused here as on the client path: a peer must not write forged
//! group records.

use super::{refuse_internal_write, Gateway};
use crate::network::PeerId;
use meshlog_protocol::messages::{ClientRequest, ClientResult, PeerRequest, PeerResponse};

impl Gateway {
    /// Serve a request from another node (`from`, authenticated).
    pub async fn peer(&self, from: PeerId, req: PeerRequest) -> PeerResponse {
        match req {
            PeerRequest::Replicate(m) => {
                self.broker().deliver(&from, m);
                PeerResponse::Replicated
            }
            PeerRequest::Forward(r) => PeerResponse::Forwarded(self.forwarded(from, r).await),
            PeerRequest::TopicRecords => PeerResponse::TopicRecords(self.mesh().signed_records()),
            PeerRequest::LocalServices { name } => {
                PeerResponse::Services(self.services().local(name.as_deref()))
            }
            PeerRequest::PartitionStatuses { topic } => match self.broker().local_statuses(&topic) {
                Ok(v) => PeerResponse::Partitions(v),
                Err(e) => PeerResponse::Error(e),
            },
        }
    }

    /// Serve a client request another node (`from`) forwarded: partition and group
    /// requests on this node's replica or coordinator, the rest as from a client.
    pub async fn forwarded(&self, from: PeerId, req: ClientRequest) -> ClientResult {
        if let Err(e) = refuse_internal_write(&req) {
            tracing::warn!(peer = %from, error = %e, "forwarded request refused");
            return Err(e);
        }
        match req {
            ClientRequest::Produce(_)
            | ClientRequest::Fetch(_)
            | ClientRequest::ListOffsets { .. }
            | ClientRequest::EpochEnd { .. }
            | ClientRequest::Group(_)
            | ClientRequest::DeleteTopic { .. }
            | ClientRequest::AlterTopic(_) => self.router.serve_local(req).await,
            other => self.client(from, other).await,
        }
    }
}
