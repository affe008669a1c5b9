//! The network: the only module that imports libp2p.
//!
//! One task owns the libp2p `Swarm` ([`event_loop`]); everything else talks to it
//! through a cloneable [`NetworkHandle`] that sends typed [`Command`]s carrying oneshot
//! replies, and receives [`NetworkEvent`]s (inbound requests) on a bounded channel.
//! The network carries facts and requests; it decides nothing about topics or logs.
//!
//! Transport: TCP (optionally inside a pre-shared-key pnet layer) + noise (every peer
//! authenticated by its key) + yamux. Protocols: Kademlia, gossipsub, mDNS, identify,
//! ping, request-response for the client API (`/meshlog/client/1`) and the peer API
//! (`/meshlog/peer/1`), each message one length-prefixed frame, and long-lived
//! replication streams (`/meshlog/replicate/1`, [`streams`]). See [`behaviour`].

pub mod admission;
mod behaviour;
mod codec;
mod event_loop;
pub mod identity;
mod records;
mod streams;

pub use admission::{Admission, Authority, Credential};
pub use identity::{peer_of, ToNodeId};
pub use meshlog_protocol::admission::PeerRole;
pub use records::{sign_record, verify_record};
pub use streams::ReplicationSender;

pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId};

use meshlog_protocol::mesh::{GossipMessage, SignedRecord};
use meshlog_protocol::messages::{ClientRequest, ClientResult, PeerRequest, PeerResponse, ReplicateMessage};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Commands queued to the swarm task before senders wait.
const COMMAND_CAPACITY: usize = 1024;
/// Inbound requests queued to the server before new ones are refused as `Unavailable`.
pub const EVENT_CAPACITY: usize = 1024;

/// The error under a [`NetworkError`] (an `io::Error`, a libp2p error, or a message
/// where there is none), shared so that the error stays `Clone`.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// `e` as a [`Cause`]: an error keeps its type, so its kind and its own sources can
/// still be read (`downcast_ref`); a message becomes an error of its own.
pub fn cause(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Cause {
    Arc::from(e.into())
}

/// Why a network operation failed. Each variant that wraps an error keeps it as its
/// `source()` and also names it in its message (which most callers pass on as text).
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetworkError {
    /// The node key could not be read or written.
    #[error("node identity at {path}: {source}")]
    Identity {
        /// Key file path.
        path: String,
        /// What went wrong.
        #[source]
        source: Cause,
    },
    /// The transport could not be built.
    #[error("cannot build the network transport: {0}")]
    Transport(#[source] Cause),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// What went wrong (e.g. the port is in use).
        #[source]
        source: Cause,
    },
    /// A peer could not be reached.
    #[error("cannot reach {addr}: {reason}")]
    Dial {
        /// The address dialled.
        addr: String,
        /// What went wrong: the root cause for each address tried.
        reason: String,
        /// libp2p's dial error, if the dial itself failed (not the hello after it).
        #[source]
        source: Option<Cause>,
    },
    /// A request failed in transit (connection closed, timed out, refused protocol).
    #[error("request to {peer} failed: {source}")]
    Request {
        /// The peer asked.
        peer: String,
        /// What went wrong.
        #[source]
        source: Cause,
    },
    /// A request was never sent: the peer could not be dialled (or does not speak the
    /// protocol). Unlike [`NetworkError::Request`], the peer certainly did not act on it.
    #[error("request to {peer} not sent: {source}")]
    NotSent {
        /// The peer asked.
        peer: String,
        /// What went wrong.
        #[source]
        source: Cause,
    },
    /// The network task has stopped.
    #[error("the network task has stopped")]
    Stopped,
    /// The pre-shared key file is missing or malformed.
    #[error("pre-shared key {path}: {source}")]
    Psk {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: Cause,
    },
    /// A signed record failed verification.
    #[error("invalid signed record: {0}")]
    BadRecord(#[source] Cause),
    /// A credential or authority file is missing, malformed or not the mesh's.
    #[error("credential {path}: {source}")]
    Credential {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: Cause,
    },
    /// The peer did not admit this process, or could not prove its own role.
    #[error("not admitted by {peer}: {reason}")]
    NotAdmitted {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
}

impl NetworkError {
    /// The kind of the I/O error underneath, if one is (`AddrInUse` for a taken port,
    /// `NotFound` for a missing key file).
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        use NetworkError::*;
        let cause = match self {
            Identity { source, .. }
            | Listen { source, .. }
            | Request { source, .. }
            | NotSent { source, .. }
            | Psk { source, .. }
            | Credential { source, .. }
            | Dial { source: Some(source), .. }
            | Transport(source)
            | BadRecord(source) => source,
            Dial { source: None, .. } | Stopped | NotAdmitted { .. } => return None,
        };
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&**cause);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return Some(io.kind());
            }
            cur = e.source();
        }
        None
    }
}

/// A mesh's pre-shared key (libp2p pnet): peers without it cannot connect at all.
#[derive(Clone, Copy)]
pub struct Psk(libp2p::pnet::PreSharedKey);

impl Psk {
    /// Read a key in the `/key/swarm/psk/1.0.0/` text format (as IPFS's swarm.key).
    pub fn load(path: &std::path::Path) -> Result<Psk, NetworkError> {
        let err = |e: Cause| NetworkError::Psk { path: path.display().to_string(), source: e };
        let text = std::fs::read_to_string(path).map_err(|e| err(cause(e)))?;
        text.trim().parse::<libp2p::pnet::PreSharedKey>().map(Psk).map_err(|e| err(cause(e)))
    }

    /// A fresh random key in the text format, for `meshlog mesh-key`.
    pub fn generate_text() -> String {
        let bytes: [u8; 32] = rand::random();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\n")
    }

    /// A short fingerprint, safe to log.
    pub fn fingerprint(&self) -> String {
        self.0.fingerprint().to_string()
    }
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
    /// Join the LAN by mDNS (nodes only).
    pub mdns: bool,
    /// The mesh's pre-shared key, if it is closed.
    pub psk: Option<Psk>,
    /// Only these peers may connect (this node is always allowed), if set.
    pub allow: Option<Vec<PeerId>>,
    /// Addresses to dial at start to join a mesh.
    pub bootstrap: Vec<Multiaddr>,
    /// How peers prove their role: open (believe the hello) or closed (a credential).
    pub admission: Admission,
    /// The role to declare in hellos; None: the one `serve` implies (node or client).
    /// Only tests set it, to build a client that runs the node protocols anyway.
    pub role: Option<PeerRole>,
}

/// How long a new connection has to complete its hello before it is refused (closed
/// mesh) or left without a node's powers (open mesh).
pub const HELLO_BUDGET: Duration = Duration::from_secs(10);

/// Where to send the answer to an inbound client request. Opaque outside this module.
/// It holds the request's share of the client byte budget until the answer is sent.
pub struct ClientResponder(
    libp2p::request_response::ResponseChannel<ClientResult>,
    #[allow(dead_code)] // held, not read: dropping it gives the bytes back
    Option<codec::Held>,
);
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
    /// A gossip message whose claimed sender is its authenticated source.
    Gossip {
        /// The authenticated sender.
        source: PeerId,
        /// The message.
        message: GossipMessage,
    },
    /// A peer was admitted as a node (its first connection, hello checked).
    PeerConnected {
        /// The peer.
        peer: PeerId,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// One frame of a peer's replication stream: a message, or a bundle of them (in
    /// that peer's order).
    Replicate {
        /// The sender (authenticated).
        peer: PeerId,
        /// The messages, in order.
        messages: Vec<ReplicateMessage>,
    },
}

type Reply<T> = oneshot::Sender<Result<T, NetworkError>>;

/// Typed commands to the swarm task.
pub(crate) enum Command {
    Dial { addr: Multiaddr, reply: Reply<PeerId> },
    SendClient { peer: PeerId, req: ClientRequest, reply: Reply<ClientResult> },
    SendPeer { peer: PeerId, req: PeerRequest, reply: Reply<PeerResponse> },
    RespondClient { responder: ClientResponder, result: ClientResult },
    RespondPeer { responder: PeerResponder, response: PeerResponse },
    Publish { message: GossipMessage },
    Connect { peer: PeerId, addrs: Vec<Multiaddr> },
    PutRecord { key: String, record: SignedRecord },
    GetRecord { key: String, reply: Reply<Vec<SignedRecord>> },
    StartProviding { key: String },
    StopProviding { key: String },
    GetProviders { key: String, reply: Reply<Vec<PeerId>> },
    ConnectedPeers { reply: Reply<Vec<PeerId>> },
    ListenAddrs { reply: Reply<Vec<Multiaddr>> },
}

/// A cloneable handle to the swarm task.
#[derive(Clone)]
pub struct NetworkHandle {
    cmds: mpsc::Sender<Command>,
    keypair: Keypair,
    local_peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
    replication: ReplicationSender,
    metrics: std::sync::Arc<prometheus_client::registry::Registry>,
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
    let roles = admission::Roles::default();
    let mut registry = prometheus_client::registry::Registry::with_prefix("libp2p");
    let metrics = libp2p::metrics::Metrics::new(&mut registry);
    let (event_loop, listen_addrs) =
        event_loop::EventLoop::new(&cfg, cmd_rx, ev_tx.clone(), roles.clone(), metrics).await?;
    let control = event_loop.stream_control();
    if cfg.serve {
        streams::accept(control.clone(), ev_tx, cfg.max_frame_bytes, roles)?;
    }
    tokio::spawn(event_loop.run(shutdown));
    let replication = ReplicationSender::new(control, cfg.max_frame_bytes);
    let handle = NetworkHandle {
        cmds: cmd_tx,
        keypair: cfg.keypair.clone(),
        local_peer_id,
        listen_addrs,
        replication,
        metrics: std::sync::Arc::new(registry),
    };
    Ok((handle, ev_rx))
}

impl NetworkHandle {
    /// This node's PeerId.
    pub fn replication(&self) -> &ReplicationSender {
        &self.replication
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// libp2p's own metrics (connections, Kademlia, gossipsub, identify, ping), recorded
    /// by the swarm task; the admin port encodes them.
    pub fn metrics(&self) -> &prometheus_client::registry::Registry {
        &self.metrics
    }

    /// The addresses bound at start (with the actual ports when 0 was asked for).
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NetworkError> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(make(tx)).await.map_err(|_| NetworkError::Stopped)?;
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
        self.call(|reply| Command::SendClient { peer, req, reply }).await
    }

    /// Queue a peer-API request to `peer` now (requests queued one after another leave
    /// in that order) and return a future of its answer.
    pub async fn peer_send(
        &self,
        peer: PeerId,
        req: PeerRequest,
    ) -> impl std::future::Future<Output = Result<PeerResponse, NetworkError>> + use<> {
        let (reply, rx) = oneshot::channel();
        let queued = self.cmds.send(Command::SendPeer { peer, req, reply }).await.is_ok();
        async move {
            if !queued {
                return Err(NetworkError::Stopped);
            }
            rx.await.map_err(|_| NetworkError::Stopped)?
        }
    }

    /// Send a peer-API request to `peer` and wait for its answer.
    pub async fn peer_request(&self, peer: PeerId, req: PeerRequest) -> Result<PeerResponse, NetworkError> {
        self.call(|reply| Command::SendPeer { peer, req, reply }).await
    }

    /// Answer an inbound client request.
    pub async fn respond_client(&self, responder: ClientResponder, result: ClientResult) {
        let _ = self.cmds.send(Command::RespondClient { responder, result }).await;
    }

    /// Answer an inbound peer request.
    pub async fn respond_peer(&self, responder: PeerResponder, response: PeerResponse) {
        let _ = self.cmds.send(Command::RespondPeer { responder, response }).await;
    }

    /// Publish on the mesh gossip topic (best effort; failures are logged).
    pub async fn publish(&self, message: GossipMessage) {
        let _ = self.cmds.send(Command::Publish { message }).await;
    }

    /// Remember `addrs` for `peer` and dial it unless already connected.
    pub async fn connect(&self, peer: PeerId, addrs: Vec<Multiaddr>) {
        let _ = self.cmds.send(Command::Connect { peer, addrs }).await;
    }

    /// Store a signed record in the DHT under `key` (best effort).
    pub async fn put_record(&self, key: String, record: SignedRecord) {
        let _ = self.cmds.send(Command::PutRecord { key, record }).await;
    }

    /// Every valid record found in the DHT under `key`.
    pub async fn get_record(&self, key: String) -> Result<Vec<SignedRecord>, NetworkError> {
        self.call(|reply| Command::GetRecord { key, reply }).await
    }

    /// Announce in the DHT that this node provides `key`.
    pub async fn start_providing(&self, key: String) {
        let _ = self.cmds.send(Command::StartProviding { key }).await;
    }

    /// Stop announcing `key`.
    pub async fn stop_providing(&self, key: String) {
        let _ = self.cmds.send(Command::StopProviding { key }).await;
    }

    /// The nodes the DHT says provide `key` (hints: they may be gone).
    pub async fn get_providers(&self, key: String) -> Result<Vec<PeerId>, NetworkError> {
        self.call(|reply| Command::GetProviders { key, reply }).await
    }

    /// Peers with an open connection.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NetworkError> {
        self.call(|reply| Command::ConnectedPeers { reply }).await
    }

    /// Every address this node listens on now (all interfaces of a wildcard listener).
    pub async fn current_listen_addrs(&self) -> Result<Vec<Multiaddr>, NetworkError> {
        self.call(|reply| Command::ListenAddrs { reply }).await
    }

    /// Sign `payload` with this node's key.
    pub fn sign(&self, payload: Vec<u8>) -> Result<SignedRecord, NetworkError> {
        sign_record(&self.keypair, payload)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that wraps an I/O error keeps it: its kind can be read, and the message
    /// still names the file and the cause.
    #[test]
    fn a_wrapped_io_error_keeps_its_kind_and_its_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.key");
        let e = Psk::load(&path).err().expect("no such file");
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::NotFound), "{e:?}");
        assert!(std::error::Error::source(&e).is_some());
        let msg = e.to_string();
        assert!(msg.contains("mesh.key") && msg.contains("No such file"), "{msg}");
        let no_io = NetworkError::Request { peer: "p".into(), source: cause("connection closed") };
        assert_eq!(no_io.io_kind(), None);
        assert_eq!(no_io.to_string(), "request to p failed: connection closed");
    }
}
