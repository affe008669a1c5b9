//! The network: the only module that imports libp2p.
//!
//! One task owns the libp2p `Swarm` ([`event_loop`]); everything else talks to it
//! through a cloneable [`NetworkHandle`] that sends typed [`Command`]s carrying oneshot
//! replies, and receives [`NetworkEvent`]s (inbound requests) on a bounded channel.
//! The network carries facts and requests; it decides nothing about topics or logs.
//!
//! Transport: TCP + noise (every peer authenticated by its key) + yamux. Protocols:
//! identify, ping, and request-response for the client API (`/meshlog/client/1`) and the
//! peer API (`/meshlog/peer/1`), each message one length-prefixed frame.

mod codec;
mod event_loop;
pub mod identity;

pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId};

use meshlog_protocol::messages::{ClientRequest, ClientResult, PeerRequest, PeerResponse};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Commands queued to the swarm task before senders wait.
const COMMAND_CAPACITY: usize = 1024;
/// Inbound requests queued to the server before new ones are refused as `Unavailable`.
pub const EVENT_CAPACITY: usize = 1024;

/// Why a network operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetworkError {
    /// The node key could not be read or written.
    #[error("node identity at {path}: {reason}")]
    Identity {
        /// Key file path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The transport could not be built.
    #[error("cannot build the network transport: {0}")]
    Transport(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// What went wrong (e.g. the port is in use).
        reason: String,
    },
    /// A peer could not be reached.
    #[error("cannot reach {addr}: {reason}")]
    Dial {
        /// The address dialled.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// A request failed in transit (connection closed, timed out, refused protocol).
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer asked.
        peer: String,
        /// What went wrong.
        reason: String,
    },
    /// The network task has stopped.
    #[error("the network task has stopped")]
    Stopped,
}

/// What the network is started with.
#[derive(Clone)]
pub struct NetworkConfig {
    /// This node's key.
    pub keypair: Keypair,
    /// Addresses to listen on; empty for a client-only peer.
    pub listen: Vec<Multiaddr>,
    /// Whether to answer inbound requests (a node) or only send (a CLI client).
    pub serve: bool,
    /// Largest frame accepted or sent.
    pub max_frame_bytes: usize,
    /// How long one request may take end to end.
    pub request_timeout: Duration,
    /// How long an unused connection stays open.
    pub idle_connection_timeout: Duration,
}

/// Where to send the answer to an inbound client request. Opaque outside this module.
pub struct ClientResponder(libp2p::request_response::ResponseChannel<ClientResult>);
/// Where to send the answer to an inbound peer request.
pub struct PeerResponder(libp2p::request_response::ResponseChannel<PeerResponse>);

/// Something the network hands to the rest of the node.
pub enum NetworkEvent {
    /// A client asked something.
    ClientRequest {
        /// Who asked.
        peer: PeerId,
        /// The request.
        request: ClientRequest,
        /// Answer with [`NetworkHandle::respond_client`].
        responder: ClientResponder,
    },
    /// Another node asked something.
    PeerRequest {
        /// Who asked.
        peer: PeerId,
        /// The request.
        request: PeerRequest,
        /// Answer with [`NetworkHandle::respond_peer`].
        responder: PeerResponder,
    },
}

type Reply<T> = oneshot::Sender<Result<T, NetworkError>>;

/// Typed commands to the swarm task.
pub(crate) enum Command {
    Dial {
        addr: Multiaddr,
        reply: Reply<PeerId>,
    },
    SendClient {
        peer: PeerId,
        req: ClientRequest,
        reply: Reply<ClientResult>,
    },
    SendPeer {
        peer: PeerId,
        req: PeerRequest,
        reply: Reply<PeerResponse>,
    },
    RespondClient {
        responder: ClientResponder,
        result: ClientResult,
    },
    RespondPeer {
        responder: PeerResponder,
        response: PeerResponse,
    },
}

/// A cloneable handle to the swarm task.
#[derive(Clone)]
pub struct NetworkHandle {
    cmds: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
}

/// Start the network: build the swarm, bind every listen address (failing clearly if
/// one cannot be bound), and spawn the swarm task, which stops when `shutdown` turns
/// true or every handle is dropped.
pub async fn start(
    cfg: NetworkConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>), NetworkError> {
    let local_peer_id = cfg.keypair.public().to_peer_id();
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CAPACITY);
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_CAPACITY);
    let (event_loop, listen_addrs) = event_loop::EventLoop::new(&cfg, cmd_rx, ev_tx).await?;
    tokio::spawn(event_loop.run(shutdown));
    let handle = NetworkHandle {
        cmds: cmd_tx,
        local_peer_id,
        listen_addrs,
    };
    Ok((handle, ev_rx))
}

impl NetworkHandle {
    /// This node's PeerId.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The addresses bound at start (with the actual ports when 0 was asked for).
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NetworkError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(make(tx))
            .await
            .map_err(|_| NetworkError::Stopped)?;
        rx.await.map_err(|_| NetworkError::Stopped)?
    }

    /// Connect to `addr` (with or without `/p2p/PEERID`) and return the peer's id.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, NetworkError> {
        self.call(|reply| Command::Dial { addr, reply }).await
    }

    /// Send a client-API request to `peer` and wait for its result.
    pub async fn client_request(
        &self,
        peer: PeerId,
        req: ClientRequest,
    ) -> Result<ClientResult, NetworkError> {
        self.call(|reply| Command::SendClient { peer, req, reply })
            .await
    }

    /// Send a peer-API request to `peer` and wait for its answer.
    pub async fn peer_request(
        &self,
        peer: PeerId,
        req: PeerRequest,
    ) -> Result<PeerResponse, NetworkError> {
        self.call(|reply| Command::SendPeer { peer, req, reply })
            .await
    }

    /// Answer an inbound client request.
    pub async fn respond_client(&self, responder: ClientResponder, result: ClientResult) {
        let _ = self
            .cmds
            .send(Command::RespondClient { responder, result })
            .await;
    }

    /// Answer an inbound peer request.
    pub async fn respond_peer(&self, responder: PeerResponder, response: PeerResponse) {
        let _ = self
            .cmds
            .send(Command::RespondPeer {
                responder,
                response,
            })
            .await;
    }
}

/// Whether `addr` names a peer id (`/p2p/...`), and which.
pub fn peer_id_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// `addr` with `/p2p/<peer>` appended (for printing a dialable address).
pub fn with_peer_id(addr: &Multiaddr, peer: PeerId) -> Multiaddr {
    if peer_id_of(addr).is_some() {
        return addr.clone();
    }
    addr.clone().with(libp2p::multiaddr::Protocol::P2p(peer))
}
