//! The protocols a meshlog peer speaks and how the swarm is built.
//!
//! Nodes run everything: Kademlia in server mode (registry of topics, partitions and
//! services), gossipsub (heartbeats and topic announcements), mDNS (LAN auto-join),
//! identify, ping, request-response for the client and peer APIs, the hello that sets
//! each connection's role, connection limits and an optional PeerId allowlist. Clients
//! run only identify, ping and request-response.

use super::codec::{ByteBudget, FrameCodec, MeteredCodec};
use super::{cause, NetworkConfig, NetworkError};
use libp2p::allow_block_list::{self, AllowedPeers};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{upgrade::Version, Boxed};
use libp2p::core::Transport;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    connection_limits, dns, gossipsub, identify, identity, kad, mdns, noise, ping, pnet, tcp, yamux,
};
use libp2p::{PeerId, StreamProtocol, Swarm};
use meshlog_protocol::admission::{Hello, MAX_HELLO_BYTES};
use meshlog_protocol::messages::{ClientRequest, ClientResult, PeerRequest, PeerResponse};
use std::time::Duration;

/// The client API protocol name; the trailing number is the major wire version.
pub const CLIENT_PROTOCOL: StreamProtocol = StreamProtocol::new("/meshlog/client/1");
/// The peer API protocol name.
pub const PEER_PROTOCOL: StreamProtocol = StreamProtocol::new("/meshlog/peer/1");
/// The hello every connection starts with (role and, in a closed mesh, its proof).
pub const HELLO_PROTOCOL: StreamProtocol = StreamProtocol::new("/meshlog/hello/1");
/// Largest client-API request a node reads: one produce batch at the ceiling of
/// `max.message.bytes` (2 MiB) with room for the request around it. Far below the peer
/// limit, so a client cannot make a node buffer fetch-answer-sized frames.
pub const CLIENT_MAX_REQUEST_BYTES: usize = (2 << 20) + (64 << 10);
/// Bytes of inbound client requests a node holds at once, from their length prefix to
/// their answer: what bounds a node's memory against many clients or a hostile one.
pub const CLIENT_REQUEST_BUDGET_BYTES: usize = 128 << 20;
/// Concurrent client-API streams per connection (a consumer long-polls one partition
/// per stream; a producer keeps its in-flight window).
const MAX_CLIENT_STREAMS: usize = 256;
/// Connections being set up at once from peers that dialled us.
const MAX_PENDING_INCOMING: u32 = 128;
/// Established connections from peers that dialled us (clients and nodes).
const MAX_ESTABLISHED_INCOMING: u32 = 4096;
/// Kademlia's protocol name: a meshlog mesh is its own DHT, apart from IPFS's.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/meshlog/kad/1.0.0");
/// Identify's protocol version string.
const IDENTIFY_VERSION: &str = "/meshlog/1.0.0";
/// Concurrent request streams per connection (request-response's own cap).
const MAX_CONCURRENT_STREAMS: usize = 512;
/// Largest gossip message; must be equal on every node.
pub const GOSSIP_MAX_BYTES: usize = 256 << 10;
/// Kademlia's wire limit (default 16 KiB is too small for address-heavy replies).
const KAD_MAX_PACKET_BYTES: usize = 256 << 10;
/// Provider records (who holds a partition or a service) lapse unless republished.
const PROVIDER_TTL: Duration = Duration::from_secs(120);
/// Republish provider records well within their TTL.
const PROVIDER_REPUBLISH: Duration = Duration::from_secs(40);
/// How often each node asks the LAN (mDNS) who is there, once its start-up probes end.
const MDNS_QUERY_INTERVAL: Duration = Duration::from_secs(5);

/// Two connections per peer: simultaneous dials after mDNS must not kill both.
const MAX_CONNECTIONS_PER_PEER: u32 = 2;

/// Every protocol a meshlog peer speaks.
#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    pub(super) allow: Toggle<allow_block_list::Behaviour<AllowedPeers>>,
    pub(super) limits: connection_limits::Behaviour,
    pub(super) identify: identify::Behaviour,
    pub(super) ping: ping::Behaviour,
    pub(super) kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    pub(super) gossipsub: Toggle<gossipsub::Behaviour>,
    pub(super) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(super) client: request_response::Behaviour<MeteredCodec<ClientRequest, ClientResult>>,
    pub(super) peer: request_response::Behaviour<FrameCodec<PeerRequest, PeerResponse>>,
    pub(super) hello: request_response::Behaviour<FrameCodec<Hello, Hello>>,
    /// Long-lived replication streams ([`super::streams`]).
    pub(super) stream: libp2p_stream::Behaviour,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn behaviour(cfg: &NetworkConfig, key: &identity::Keypair) -> Result<Behaviour, BoxError> {
    let support = if cfg.serve { ProtocolSupport::Full } else { ProtocolSupport::Outbound };
    let rr_cfg = request_response::Config::default()
        .with_request_timeout(cfg.request_timeout)
        .with_max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    let peer_id = key.public().to_peer_id();
    let allow = cfg.allow.as_ref().map(|peers| {
        let mut b = allow_block_list::Behaviour::<AllowedPeers>::default();
        peers.iter().chain(std::iter::once(&peer_id)).for_each(|p| {
            b.allow_peer(*p);
        });
        b
    });
    let mesh = cfg.serve;
    let mdns = if mesh && cfg.mdns {
        // libp2p's mDNS stops its fast start-up probes at the first answer, so a node
        // that starts a moment after the others is found by their next periodic query:
        // 5 s keeps a freshly started LAN mesh (compose, a rack) complete within seconds,
        // at one small multicast query per node per 5 s.
        let mcfg = mdns::Config { query_interval: MDNS_QUERY_INTERVAL, ..Default::default() };
        Some(mdns::tokio::Behaviour::new(mcfg, peer_id)?)
    } else {
        None
    };
    Ok(Behaviour {
        allow: allow.into(),
        limits: connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
                .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
                .with_max_established_incoming(Some(MAX_ESTABLISHED_INCOMING)),
        ),
        identify: identify::Behaviour::new(identify::Config::new(IDENTIFY_VERSION.into(), key.public())),
        ping: ping::Behaviour::default(),
        kad: if mesh { Some(kademlia(peer_id)) } else { None }.into(),
        gossipsub: if mesh { Some(gossip(key)?) } else { None }.into(),
        mdns: mdns.into(),
        client: request_response::Behaviour::with_codec(
            MeteredCodec::new(
                FrameCodec::with_limits(
                    CLIENT_MAX_REQUEST_BYTES.min(cfg.max_frame_bytes),
                    cfg.max_frame_bytes,
                ),
                cfg.serve.then(|| ByteBudget::new(CLIENT_REQUEST_BUDGET_BYTES)),
            ),
            [(CLIENT_PROTOCOL, support.clone())],
            rr_cfg.clone().with_max_concurrent_streams(MAX_CLIENT_STREAMS),
        ),
        peer: request_response::Behaviour::with_codec(
            FrameCodec::new(cfg.max_frame_bytes),
            [(PEER_PROTOCOL, support)],
            rr_cfg,
        ),
        hello: request_response::Behaviour::with_codec(
            FrameCodec::new(MAX_HELLO_BYTES),
            [(HELLO_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(super::HELLO_BUDGET),
        ),
        stream: libp2p_stream::Behaviour::new(),
    })
}

fn kademlia(peer_id: PeerId) -> kad::Behaviour<kad::store::MemoryStore> {
    let mut cfg = kad::Config::new(KAD_PROTOCOL);
    cfg.set_max_packet_size(KAD_MAX_PACKET_BYTES)
        .set_record_filtering(kad::StoreInserts::FilterBoth)
        .set_provider_record_ttl(Some(PROVIDER_TTL))
        .set_provider_publication_interval(Some(PROVIDER_REPUBLISH))
        .set_query_timeout(Duration::from_secs(20));
    let store_cfg = kad::store::MemoryStoreConfig {
        max_records: 100_000,
        max_value_bytes: 64 << 10,
        max_providers_per_key: 256,
        max_provided_keys: 100_000,
    };
    let store = kad::store::MemoryStore::with_config(peer_id, store_cfg);
    let mut k = kad::Behaviour::with_config(peer_id, store, cfg);
    // A closed mesh has no AutoNAT to confirm addresses: serve the DHT explicitly.
    k.set_mode(Some(kad::Mode::Server));
    k
}

fn gossip(key: &identity::Keypair) -> Result<gossipsub::Behaviour, BoxError> {
    let cfg = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(500))
        .heartbeat_initial_delay(Duration::from_millis(100))
        .validation_mode(gossipsub::ValidationMode::Strict)
        // Forward a message only once the swarm task has checked its relayer's role.
        .validate_messages()
        .max_transmit_size(GOSSIP_MAX_BYTES)
        .build()?;
    let filter = gossipsub::MaxCountSubscriptionFilter {
        filter: gossipsub::AllowAllSubscriptionFilter {},
        max_subscribed_topics: 64,
        max_subscriptions_per_request: 64,
    };
    let mut gs = gossipsub::Behaviour::new_with_subscription_filter(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        cfg,
        filter,
    )
    .map_err(|e| -> BoxError { e.into() })?;
    gs.subscribe(&gossipsub::IdentTopic::new(meshlog_protocol::mesh::MESH_GOSSIP_TOPIC))?;
    Ok(gs)
}

/// Build the swarm: TCP, optionally wrapped in the mesh's pre-shared key (pnet), then
/// noise and yamux.
pub(super) fn build_swarm(cfg: &NetworkConfig) -> Result<Swarm<Behaviour>, NetworkError> {
    let idle = cfg.idle_connection_timeout;
    let psk = cfg.psk.as_ref().map(|p| p.0);
    let swarm = libp2p::SwarmBuilder::with_existing_identity(cfg.keypair.clone())
        .with_tokio()
        .with_other_transport(|key| -> Result<Boxed<(PeerId, StreamMuxerBox)>, BoxError> {
            let noise = noise::Config::new(key)?;
            // `/dns4/HOST/tcp/PORT` bootstrap addresses resolve through the system resolver.
            let tcp = dns::tokio::Transport::system(tcp::tokio::Transport::new(tcp::Config::default()))?;
            Ok(match psk {
                Some(psk) => tcp
                    .and_then(move |sock, _| pnet::PnetConfig::new(psk).handshake(sock))
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise)
                    .multiplex(yamux::Config::default())
                    .map(|(p, m), _| (p, StreamMuxerBox::new(m)))
                    .boxed(),
                None => tcp
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise)
                    .multiplex(yamux::Config::default())
                    .map(|(p, m), _| (p, StreamMuxerBox::new(m)))
                    .boxed(),
            })
        })
        .map_err(|e| NetworkError::Transport(cause(e)))?
        .with_behaviour(|key| behaviour(cfg, key))
        .map_err(|e| NetworkError::Transport(cause(e)))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}
