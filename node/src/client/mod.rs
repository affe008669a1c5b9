//! The client library: a light libp2p peer that dials one node and speaks the client
//! API. The CLI, the benchmark and the tests use it; programs can too.
//!
//! - [`Client`]: one request at a time or many concurrently (it is `Clone`).
//! - [`producer::Producer`]: key partitioning, batching, an in-flight window.
//! - [`consumer`]: reading records back from partitions.
//! - [`group::GroupConsumer`]: a consumer-group member (join, heartbeat, rebalance, commit).

pub mod consumer;
pub mod group;
pub mod producer;

use crate::network::{
    self, Admission, Credential, Keypair, Multiaddr, NetworkConfig, NetworkError, NetworkHandle, PeerId, Psk,
};
use crate::resilience::{CallError, CallKind, Resilience, ResilienceConfig};
use meshlog_protocol::frame::DEFAULT_MAX_FRAME_BYTES;
use meshlog_protocol::mesh::{ClusterStatus, ServiceInstance};
use meshlog_protocol::messages::{AlterTopic, ClientRequest, ClientResponse, ServiceRegistration};
use meshlog_protocol::types::{TopicDescription, TopicInfo};
use meshlog_protocol::{ErrorCode, WireError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a client waits to connect before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take, on top of any wait the request itself asks for.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);
/// How often a request refused by a busy node is sent again before the error is returned.
pub const BUSY_RETRIES: u32 = 5;
/// The pause before the first resend to a busy node (then twice, three times as long).
pub const BUSY_BACKOFF: Duration = Duration::from_millis(50);
/// How long [`Client::connect_node`] tries one address.
pub const NODE_DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a client call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached or the connection failed.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The node answered with an error.
    #[error(transparent)]
    Server(#[from] WireError),
    /// No answer in time.
    #[error("no answer from {server} within {ms} ms")]
    Timeout {
        /// The node.
        server: String,
        /// The budget.
        ms: u128,
    },
    /// The call failed: breaker open, timed out, or failed in transit (after retries
    /// where they are safe).
    #[error(transparent)]
    Call(#[from] CallError),
    /// The node answered with a response of the wrong kind (a bug or version skew).
    #[error("unexpected response: {0}")]
    Unexpected(String),
}

impl ClientError {
    /// Whether the same request may succeed later: a retriable server error, or the
    /// node could not be reached or did not answer.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Server(w) => w.code.is_retriable(),
            ClientError::Network(_) | ClientError::Timeout { .. } | ClientError::Call(_) => true,
            ClientError::Unexpected(_) => false,
        }
    }
}

/// How a client joins the conversation: the mesh key, its identity, its credential.
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// The closed mesh's pre-shared key (libp2p pnet), if it has one.
    pub psk: Option<Psk>,
    /// A persistent key (`--identity FILE`), so an allowlisted mesh knows this client;
    /// None: a new key for this process.
    pub identity: Option<Keypair>,
    /// A closed mesh's client credential (`--client-credential FILE`).
    pub credential: Option<Credential>,
}

impl ClientOptions {
    fn admission(&self) -> Admission {
        match &self.credential {
            Some(credential) => {
                Admission::Closed { credential: credential.clone(), revoked: Default::default() }
            }
            None => Admission::Open,
        }
    }
}

/// A connection to one node.
#[derive(Clone)]
pub struct Client {
    net: NetworkHandle,
    server: PeerId,
    resilience: Arc<Resilience>,
    /// Dropping the last clone stops the client's network task.
    _stop: Arc<watch::Sender<bool>>,
}

impl Client {
    /// Dial the node at `addr` (with or without `/p2p/PEERID`).
    pub async fn connect(addr: &Multiaddr) -> Result<Client, ClientError> {
        Client::connect_with(addr, None).await
    }

    /// Dial the node at `addr` through a closed mesh's pre-shared key.
    pub async fn connect_with(addr: &Multiaddr, psk: Option<Psk>) -> Result<Client, ClientError> {
        Client::connect_opts(addr, &ClientOptions { psk, ..ClientOptions::default() }).await
    }

    /// Dial the node at `addr` with `opts` (mesh key, identity, credential). The call
    /// returns once the node has admitted this client and proved itself a node.
    pub async fn connect_opts(addr: &Multiaddr, opts: &ClientOptions) -> Result<Client, ClientError> {
        let (stop, stop_rx) = watch::channel(false);
        let cfg = NetworkConfig {
            keypair: opts.identity.clone().unwrap_or_else(Keypair::generate_ed25519),
            listen: Vec::new(),
            serve: false,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            request_timeout: REQUEST_TIMEOUT,
            idle_connection_timeout: Duration::from_secs(300),
            mdns: false,
            psk: opts.psk,
            allow: None,
            bootstrap: Vec::new(),
            admission: opts.admission(),
            role: None,
        };
        let (net, _events) = network::start(cfg, stop_rx).await?;
        let server = match tokio::time::timeout(CONNECT_TIMEOUT, net.dial(addr.clone())).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(ClientError::Timeout {
                    server: addr.to_string(),
                    ms: CONNECT_TIMEOUT.as_millis(),
                })
            }
        };
        let resilience = Arc::new(Resilience::new(ResilienceConfig::default()));
        Ok(Client { net, server, resilience, _stop: Arc::new(stop) })
    }

    /// The node this client talks to.
    pub fn server(&self) -> PeerId {
        self.server
    }

    /// Connect to another node of the mesh at one of `addrs` (as `cluster status` lists
    /// them); true once connected. Each address is tried for at most [`NODE_DIAL_TIMEOUT`].
    pub async fn connect_node(&self, node: PeerId, addrs: &[String]) -> bool {
        for a in addrs {
            let Ok(addr) = a.parse::<Multiaddr>() else { continue };
            let addr = network::with_peer_id(&addr, node);
            if let Ok(Ok(p)) = tokio::time::timeout(NODE_DIAL_TIMEOUT, self.net.dial(addr)).await {
                if p == node {
                    return true;
                }
            }
        }
        false
    }

    /// Send one request and wait for its answer, through the resilience layer: a
    /// timeout by request type, the node's circuit breaker, and retries (with backoff
    /// and a budget) for requests that are safe to repeat.
    pub async fn request(&self, req: ClientRequest) -> Result<ClientResponse, ClientError> {
        self.request_via(self.server, req, true).await
    }

    /// [`Client::request`] sent to another node of the mesh, which must be connected
    /// (see [`Client::connect_node`]), and never repeated there: a producer sends each
    /// batch straight to its partition's leader, as Kafka clients do, saving the forward
    /// through this client's node, and if that fails sends it again through that node.
    pub async fn request_to(&self, node: PeerId, req: ClientRequest) -> Result<ClientResponse, ClientError> {
        self.request_via(node, req, false).await
    }

    async fn request_via(
        &self,
        node: PeerId,
        req: ClientRequest,
        retry: bool,
    ) -> Result<ClientResponse, ClientError> {
        let mut kind = CallKind::of(&req);
        if let (false, CallKind::Produce { idempotent, .. }) = (retry, &mut kind) {
            *idempotent = false;
        }
        // A busy node (`UNAVAILABLE`) refused the request before starting it, so any
        // request may be sent again then: keep a copy for that (and for retries of a
        // request that is safe to repeat), except for a produce, which is retried by
        // its producer.
        let busy_retry = !matches!(req, ClientRequest::Produce(_));
        let template = (kind.retriable() || busy_retry).then(|| req.clone());
        let mut first = Some(req);
        let mut busy = 0;
        loop {
            let attempt = || {
                let r = first.take().or_else(|| template.clone()).unwrap_or(ClientRequest::ListTopics);
                self.net.client_request(node, r)
            };
            match self.resilience.call(&node, kind, attempt).await? {
                Ok(resp) => return Ok(resp),
                Err(w) if w.code == ErrorCode::Unavailable && template.is_some() && busy < BUSY_RETRIES => {
                    busy += 1;
                    tokio::time::sleep(BUSY_BACKOFF * busy).await;
                }
                Err(wire) => return Err(ClientError::Server(wire)),
            }
        }
    }

    /// Create a topic.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u16,
        config: BTreeMap<String, String>,
    ) -> Result<TopicInfo, ClientError> {
        let req =
            ClientRequest::CreateTopic { name: name.to_string(), partitions, replication_factor, config };
        match self.request(req).await? {
            ClientResponse::TopicCreated(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// Delete a topic (everywhere: its data on every node; the name can be created
    /// again, as a new topic). Answers with the topic as it was.
    pub async fn delete_topic(&self, name: &str) -> Result<TopicInfo, ClientError> {
        match self.request(ClientRequest::DeleteTopic { name: name.to_string() }).await? {
            ClientResponse::TopicChanged(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// Add partitions to a topic and/or set config values; answers with the topic as
    /// changed (or as it would be, for `validate_only`).
    pub async fn alter_topic(&self, alter: AlterTopic) -> Result<TopicInfo, ClientError> {
        match self.request(ClientRequest::AlterTopic(alter)).await? {
            ClientResponse::TopicChanged(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// A topic's record (name, partitions, config) from the node's registry, without
    /// asking partition owners for their state.
    pub async fn topic_info(&self, name: &str) -> Result<TopicInfo, ClientError> {
        self.list_topics().await?.into_iter().find(|t| t.name == name).ok_or_else(|| {
            ClientError::Server(WireError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("unknown topic '{name}'"),
            ))
        })
    }

    /// Every topic.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        match self.request(ClientRequest::ListTopics).await? {
            ClientResponse::Topics(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    /// One topic with its partitions' state.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription, ClientError> {
        match self.request(ClientRequest::DescribeTopic { name: name.to_string() }).await? {
            ClientResponse::Topic(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }
}

impl Client {
    /// Register or renew a service instance at the connected node.
    pub async fn register_service(&self, reg: ServiceRegistration) -> Result<ServiceInstance, ClientError> {
        match self.request(ClientRequest::RegisterService(reg)).await? {
            ClientResponse::ServiceRegistered(i) => Ok(i),
            other => Err(unexpected(other)),
        }
    }

    /// Remove a registration made through the connected node.
    pub async fn deregister_service(&self, name: &str, instance_id: &str) -> Result<(), ClientError> {
        let req = ClientRequest::DeregisterService { name: name.into(), instance_id: instance_id.into() };
        match self.request(req).await? {
            ClientResponse::ServiceDeregistered => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Live instances of a service, from the whole mesh.
    pub async fn discover_service(&self, name: &str) -> Result<Vec<ServiceInstance>, ClientError> {
        match self.request(ClientRequest::DiscoverService { name: name.into() }).await? {
            ClientResponse::Services(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    /// Every live service instance in the mesh.
    pub async fn list_services(&self) -> Result<Vec<ServiceInstance>, ClientError> {
        match self.request(ClientRequest::ListServices).await? {
            ClientResponse::Services(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    /// The mesh as the connected node sees it.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        match self.request(ClientRequest::ClusterStatus).await? {
            ClientResponse::Cluster(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }
}

/// The error for a response of the wrong kind.
pub(crate) fn unexpected(resp: ClientResponse) -> ClientError {
    let name = format!("{resp:?}");
    ClientError::Unexpected(name.chars().take(80).collect())
}
