//! A rogue node and a rogue client for the hostile-actor suite (`tests/hostile.rs`),
//! built from meshlog's own types: the crate's network with a fresh key (claiming the
//! node role with `serve: true`, the client role with `serve: false`), its signed
//! records, gossip and replication messages; plus a raw libp2p peer that writes bytes no
//! well-behaved codec would (oversized length prefixes, garbage bodies, stalled frames).
//!
//! Everything here only *sends*: whether a node accepted a forgery is always observed
//! through the normal client API of the nodes under attack.

use crate::cluster::{check, Background, Cluster, Writer};
use crate::{wait_until, LONG_BUDGET};
use meshlog::client::Client;
use meshlog::network::{
    self, Keypair, Multiaddr, NetworkConfig, NetworkEvent, NetworkHandle, PeerId, ToNodeId,
};
use meshlog::replica::{Epoch, FetchBody, Message};
use meshlog_protocol::batch::BatchBuilder;
use meshlog_protocol::codec;
use meshlog_protocol::frame::MAX_FRAME_BYTES;
use meshlog_protocol::mesh::{GossipMessage, Heartbeat, ServiceInstance, SignedRecord, TopicRecord};
use meshlog_protocol::messages::{
    ClientRequest, ClientResponse, PeerRequest, PeerResponse, ProduceResponse, ReplicateMessage,
};
use meshlog_protocol::types::TopicInfo;
use meshlog_protocol::{ErrorCode, NodeId, WireError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How often a rogue node heartbeats (as often as the test nodes, so it stays "up").
pub const ROGUE_HEARTBEAT: Duration = Duration::from_millis(200);
/// How long one rogue request may take.
const ROGUE_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The rogue keeps idle connections open this long (it must stay connected to attack).
const ROGUE_IDLE: Duration = Duration::from_secs(300);

/// What a rogue node answers when the mesh asks it something, and what it saw.
#[derive(Default)]
pub struct Lies {
    /// Handed out as its answer to `PeerRequest::TopicRecords`.
    pub topic_records: Mutex<Vec<SignedRecord>>,
    /// Handed out as its answer to `PeerRequest::LocalServices`.
    pub services: Mutex<Vec<ServiceInstance>>,
    /// `TopicRecords` requests answered (a node pulled the forged records).
    pub topic_records_served: AtomicU64,
    /// `LocalServices` requests answered (a discovery asked the rogue).
    pub services_served: AtomicU64,
    /// Produce requests the rogue acknowledged and dropped: a write routed to it.
    pub produces_swallowed: AtomicU64,
}

/// A rogue peer: the crate's network under a fresh key.
pub struct Rogue {
    /// Its network handle (gossip, DHT, peer requests, replication streams).
    pub net: NetworkHandle,
    /// Its PeerId.
    pub id: PeerId,
    /// Its key (it signs its forgeries with it).
    pub key: Keypair,
    /// What it answers and what it saw (rogue nodes only).
    pub lies: Arc<Lies>,
    /// The PeerIds of the nodes it dialled, in the order given.
    pub nodes: Vec<PeerId>,
    shutdown: watch::Sender<bool>,
}

impl Drop for Rogue {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

fn rogue_config(serve: bool) -> NetworkConfig {
    NetworkConfig {
        keypair: Keypair::generate_ed25519(),
        listen: if serve { vec!["/ip4/127.0.0.1/tcp/0".parse().expect("loopback")] } else { Vec::new() },
        serve,
        // Larger than any node accepts, so it can send frames over their limits.
        max_frame_bytes: MAX_FRAME_BYTES,
        request_timeout: ROGUE_REQUEST_TIMEOUT,
        idle_connection_timeout: ROGUE_IDLE,
        mdns: false,
        psk: None,
        allow: None,
        // Dialled one by one instead, to learn each node's id.
        bootstrap: Vec::new(),
        // An open mesh believes a declared role: the rogue node claims Node, the rogue
        // client Client (the roles interface of issue #15).
        admission: network::Admission::Open,
        role: None,
    }
}

impl Rogue {
    /// A rogue that claims the node role (`serve: true`) in an open mesh, dials every
    /// address in `nodes`, heartbeats so the mesh counts it as a live member, and answers
    /// the mesh's questions with `lies`.
    pub async fn node(nodes: &[String], lies: Lies) -> Rogue {
        let addrs = parse_all(nodes);
        let mut rogue = Rogue::start(rogue_config(true), lies).await;
        rogue.dial_all(&addrs).await;
        tokio::spawn(heartbeat(rogue.net.clone(), rogue.shutdown.subscribe()));
        rogue
    }

    /// A rogue that declares the client role but runs every node protocol (gossipsub,
    /// Kademlia, replication streams), connected to every address in `nodes`: what a
    /// client built from the crate's own network with `serve: true` can send.
    pub async fn gossiping_client(nodes: &[String]) -> Rogue {
        let addrs = parse_all(nodes);
        let cfg = NetworkConfig { role: Some(network::PeerRole::Client), ..rogue_config(true) };
        let mut rogue = Rogue::start(cfg, Lies::default()).await;
        rogue.dial_all(&addrs).await;
        rogue
    }

    /// A rogue client (`serve: false`) connected to every address in `nodes`.
    pub async fn client(nodes: &[String]) -> Rogue {
        let addrs = parse_all(nodes);
        let mut rogue = Rogue::start(rogue_config(false), Lies::default()).await;
        rogue.dial_all(&addrs).await;
        rogue
    }

    async fn start(cfg: NetworkConfig, lies: Lies) -> Rogue {
        let key = cfg.keypair.clone();
        let (shutdown, rx) = watch::channel(false);
        let (net, events) = network::start(cfg, rx).await.expect("start the rogue's network");
        let lies = Arc::new(lies);
        tokio::spawn(answer(net.clone(), events, lies.clone()));
        Rogue { id: net.local_peer_id(), net, key, lies, nodes: Vec::new(), shutdown }
    }

    async fn dial_all(&mut self, addrs: &[Multiaddr]) {
        for a in addrs {
            let peer = self.net.dial(a.clone()).await.expect("the rogue reaches a node");
            self.nodes.push(peer);
        }
    }

    /// Sign `record` with the rogue's own key (a valid signature by a fresh key).
    pub fn sign(&self, record: &TopicRecord) -> SignedRecord {
        let payload = meshlog_protocol::revision::encode_record(record).expect("encode a topic record");
        network::sign_record(&self.key, payload).expect("sign")
    }

    /// `record` with the rogue as creator and `creation_id` 0 (wins every tie today).
    pub fn forge(&self, info: &TopicInfo, replicas: Vec<Vec<NodeId>>) -> TopicRecord {
        let info = TopicInfo { creation_id: 0, ..info.clone() };
        TopicRecord { info, replicas, creator: self.id.node_id(), revision: Default::default() }
    }

    /// Send a peer request to `peer` and say whether it was served as asked: anything
    /// but an error answer or a refused stream counts as accepted.
    pub async fn peer_accepted(&self, peer: PeerId, req: PeerRequest) -> bool {
        match self.net.peer_request(peer, req).await {
            Ok(PeerResponse::Error(_)) | Ok(PeerResponse::Forwarded(Err(_))) | Err(_) => false,
            Ok(_) => true,
        }
    }
}

fn parse_all(addrs: &[String]) -> Vec<Multiaddr> {
    addrs.iter().map(|a| a.parse().expect("a node address")).collect()
}

/// Publish heartbeats under the rogue's own id until it stops.
async fn heartbeat(net: NetworkHandle, mut stop: watch::Receiver<bool>) {
    let id = net.local_peer_id();
    let addrs: Vec<String> =
        net.listen_addrs().iter().map(|a| network::with_peer_id(a, id).to_string()).collect();
    let incarnation = rand::random();
    let mut tick = tokio::time::interval(ROGUE_HEARTBEAT);
    for seq in 1.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let hb = Heartbeat {
            peer: id.node_id(),
            addrs: addrs.clone(),
            seq,
            incarnation,
            partitions: 0,
            kafka: None,
        };
        net.publish(GossipMessage::Heartbeat(hb)).await;
    }
}

/// Answer what the mesh asks the rogue: its lies for topic records and services, a
/// false acknowledgement for every write, an error for the rest.
async fn answer(net: NetworkHandle, mut events: tokio::sync::mpsc::Receiver<NetworkEvent>, lies: Arc<Lies>) {
    let swallowed = || {
        lies.produces_swallowed.fetch_add(1, Ordering::Relaxed);
        Ok(ClientResponse::Produced(ProduceResponse {
            base_offset: Some(0),
            record_count: 1,
            accepted_locally: false,
            duplicate: false,
        }))
    };
    let refuse = || WireError::new(ErrorCode::Unknown, "the rogue does not serve this");
    while let Some(ev) = events.recv().await {
        match ev {
            NetworkEvent::ClientRequest { request, responder, .. } => {
                let result = match request {
                    ClientRequest::Produce(_) => swallowed(),
                    _ => Err(refuse()),
                };
                net.respond_client(responder, result).await;
            }
            NetworkEvent::PeerRequest { request, responder, .. } => {
                let response = match request {
                    PeerRequest::TopicRecords => {
                        lies.topic_records_served.fetch_add(1, Ordering::Relaxed);
                        PeerResponse::TopicRecords(lies.topic_records.lock().unwrap().clone())
                    }
                    PeerRequest::LocalServices { .. } => {
                        lies.services_served.fetch_add(1, Ordering::Relaxed);
                        PeerResponse::Services(lies.services.lock().unwrap().clone())
                    }
                    PeerRequest::Forward(ClientRequest::Produce(_)) => PeerResponse::Forwarded(swallowed()),
                    _ => PeerResponse::Error(refuse()),
                };
                net.respond_peer(responder, response).await;
            }
            _ => {}
        }
    }
}

/// A replication message carrying `msg` for `topic`-`partition` (no batches).
pub fn replicate(topic: &str, partition: u32, msg: &Message) -> ReplicateMessage {
    ReplicateMessage {
        topic: topic.into(),
        partition,
        message: codec::encode(msg).expect("encode a replica message"),
        records: Vec::new(),
    }
}

/// A forged fetch answer telling a follower whose log ends at `end` in epoch
/// `last_epoch` that it is behind a log start far above it: taken as the leader's, it
/// drops the follower's whole log.
pub fn forged_behind(epoch: u64, end: u64, last_epoch: u64) -> Message {
    Message::FetchResp {
        epoch: Epoch::new(epoch),
        hw: 0,
        body: FetchBody::Behind {
            start: end + 1_000_000,
            start_epoch: Epoch::new(epoch),
            producers: Vec::new(),
            fetch_offset: end,
            fetch_last_epoch: Epoch::new(last_epoch),
        },
    }
}

/// A forged fetch answer telling that follower its log diverges from offset 0.
pub fn forged_diverging(epoch: u64, end: u64, last_epoch: u64) -> Message {
    Message::FetchResp {
        epoch: Epoch::new(epoch),
        hw: 0,
        body: FetchBody::Diverging {
            epoch: Epoch::new(0),
            end: 0,
            fetch_offset: end,
            fetch_last_epoch: Epoch::new(last_epoch),
        },
    }
}

/// The resident set size of process `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub use raw::RawPeer;

mod raw {
    //! A bare libp2p peer (TCP + noise + yamux, no meshlog behaviour) that opens streams
    //! on meshlog's protocols and writes whatever bytes it is given.

    use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
    use libp2p::{Multiaddr, PeerId, StreamProtocol};
    use std::time::Duration;

    /// How long opening one stream may take.
    const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
    /// How long to wait for the node to answer or close a raw stream.
    const READ_TIMEOUT: Duration = Duration::from_secs(5);

    /// A raw peer connected to one node.
    pub struct RawPeer {
        control: libp2p_stream::Control,
        /// The node's PeerId.
        pub node: PeerId,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for RawPeer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// What became of a raw stream.
    #[derive(Debug, PartialEq, Eq)]
    pub enum RawOutcome {
        /// The node did not negotiate the protocol (or the connection is gone).
        Refused,
        /// The node answered with these bytes, then closed or went quiet.
        Answered(Vec<u8>),
    }

    /// Answer the node's hellos as a client (it disconnects a peer that has none), so
    /// the raw frames that follow reach its protocol handlers.
    fn answer_hellos(mut control: libp2p_stream::Control) {
        use meshlog_protocol::admission::{Hello, PeerRole, MAX_HELLO_BYTES};
        let Ok(mut incoming) = control.accept(StreamProtocol::new("/meshlog/hello/1")) else { return };
        tokio::spawn(async move {
            while let Some((_, mut stream)) = incoming.next().await {
                tokio::spawn(async move {
                    let mut len = [0u8; 4];
                    if stream.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut body = vec![0u8; (u32::from_be_bytes(len) as usize).min(MAX_HELLO_BYTES)];
                    if stream.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let hello = Hello { role: PeerRole::Client, proof: None };
                    if let Ok(frame) = meshlog_protocol::frame::encode_frame(&hello, MAX_HELLO_BYTES) {
                        let _ = stream.write_all(&frame).await;
                        let _ = stream.close().await;
                    }
                });
            }
        });
    }

    impl RawPeer {
        /// Dial `addr` (which ends in `/p2p/<id>`) under a fresh key.
        pub async fn connect(addr: &str) -> RawPeer {
            let addr: Multiaddr = addr.parse().expect("a node address");
            let node = meshlog::network::peer_id_of(&addr).expect("the address names the node");
            let mut swarm = libp2p::SwarmBuilder::with_new_identity()
                .with_tokio()
                .with_tcp(
                    libp2p::tcp::Config::default().nodelay(true),
                    libp2p::noise::Config::new,
                    libp2p::yamux::Config::default,
                )
                .expect("tcp transport")
                .with_behaviour(|_| libp2p_stream::Behaviour::new())
                .expect("stream behaviour")
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
                .build();
            let control = swarm.behaviour().new_control();
            answer_hellos(control.clone());
            swarm.dial(addr).expect("dial the node");
            let task = tokio::spawn(async move {
                loop {
                    swarm.select_next_some().await;
                }
            });
            RawPeer { control, node, task }
        }

        /// Open a stream on `protocol`, or `None` if the node refuses it.
        pub async fn open(&self, protocol: &'static str) -> Option<libp2p::Stream> {
            let mut control = self.control.clone();
            let open = control.open_stream(self.node, StreamProtocol::new(protocol));
            tokio::time::timeout(OPEN_TIMEOUT, open).await.ok()?.ok()
        }

        /// Open a stream on `protocol`, write `bytes`, close the write side, and read what
        /// comes back until the node closes the stream or goes quiet.
        pub async fn send(&self, protocol: &'static str, bytes: &[u8]) -> RawOutcome {
            let Some(mut s) = self.open(protocol).await else { return RawOutcome::Refused };
            if s.write_all(bytes).await.is_err() || s.close().await.is_err() {
                return RawOutcome::Answered(Vec::new());
            }
            let mut back = Vec::new();
            let _ = tokio::time::timeout(READ_TIMEOUT, s.read_to_end(&mut back)).await;
            RawOutcome::Answered(back)
        }
    }
}

pub use raw::RawOutcome;

/// How long forgeries get to (fail to) take effect before the nodes are looked at: an
/// absence has no event to wait for, so give it many heartbeats and gossip rounds.
pub const ABSENCE_GRACE: Duration = Duration::from_secs(3);
/// Acknowledged batches a writer must add while an attack runs (the mesh still works).
pub const WRITES_DURING_ATTACK: u64 = 20;
/// No hostile peer may push a node past this resident set size.
pub const RSS_LIMIT_KIB: u64 = 512 << 10;
/// How long a node gets to answer `cluster status` when counting serving nodes.
const SERVING_TIMEOUT: Duration = Duration::from_secs(5);

/// What one attack tried and what got through. Every accepted action is recorded and
/// reported together at [`Tally::finish`], so one run shows the whole damage.
#[derive(Default)]
pub struct Tally {
    /// Hostile actions tried.
    pub tried: u64,
    /// Hostile actions that got through, judged one by one ([`Tally::note`]).
    pub accepted: u64,
    /// Changes to the mesh seen afterwards ([`Tally::observe`]), each one the effect of
    /// some of the actions tried.
    pub effects: u64,
    failures: Vec<String>,
}

impl Tally {
    /// Count `n` actions whose effect is judged by a later [`Tally::note`].
    pub fn tried(&mut self, n: u64) {
        self.tried += n;
    }

    /// One hostile action, `accepted` if it got through (`what` says how).
    pub fn note(&mut self, accepted: bool, what: impl FnOnce() -> String) {
        self.tried += 1;
        if accepted {
            self.accepted += 1;
            self.failures.push(what());
        }
    }

    /// An observation of the outcome of actions already counted: not an action itself.
    pub fn observe(&mut self, changed: bool, what: impl FnOnce() -> String) {
        if changed {
            self.effects += 1;
            self.failures.push(what());
        }
    }

    /// Print the figure line, then fail naming every accepted action, any lost write
    /// and any node that stopped serving.
    pub fn finish(self, what: &str, lost: u64, serving: usize, nodes: usize) {
        println!(
            "figure: {what}: hostile actions tried {}, accepted {}, effects seen {}; acked writes lost {lost}; \
             nodes serving {serving}/{nodes}",
            self.tried, self.accepted, self.effects
        );
        let n = self.failures.len();
        assert!(self.failures.is_empty(), "{what}: {n} got through:\n{}", self.failures.join("\n"));
        assert_eq!(lost, 0, "{what}: acknowledged writes were lost");
        assert_eq!(serving, nodes, "{what}: a node stopped serving");
    }
}

/// The nodes' addresses.
pub fn addrs(c: &Cluster) -> Vec<String> {
    c.nodes.iter().flatten().map(|n| n.addr.clone()).collect()
}

/// A rogue node that every node of `c` counts as a live member.
pub async fn join_rogue(c: &Cluster, lies: Lies) -> Rogue {
    let rogue = Rogue::node(&addrs(c), lies).await;
    for i in 0..c.nodes.len() {
        c.wait_members(i, c.nodes.len() + 1).await;
    }
    rogue
}

/// How many nodes answer `cluster status`.
pub async fn serving(c: &Cluster) -> usize {
    let mut n = 0;
    for i in 0..c.nodes.len() {
        let Some(client) = c.clients.lock().unwrap()[i].clone() else { continue };
        if tokio::time::timeout(SERVING_TIMEOUT, client.cluster_status()).await.is_ok_and(|r| r.is_ok()) {
            n += 1;
        }
    }
    n
}

/// Write in the background to `topic`-`p` through every node (idempotent, `acks=all`).
pub fn writer(c: &Cluster, topic: &str, p: u32) -> Background {
    Background::start(Writer::new(topic, p, 1), c.clients.clone())
}

/// Stop `bg` and count the acknowledged records of `topic`-`p` missing from its log,
/// read through the first node that can (all of them if none can: an acknowledged
/// write nobody can read back is lost to its producer).
pub async fn lost(c: &Cluster, bg: Background, topic: &str, p: u32) -> u64 {
    let log = bg.stop().await;
    let clients: Vec<Client> = c.clients.lock().unwrap().iter().flatten().cloned().collect();
    for client in clients {
        if let Ok(Ok(records)) =
            tokio::time::timeout(LONG_BUDGET, try_read_partition(&client, topic, p)).await
        {
            return check(&log.acked, &records).lost;
        }
    }
    log.acked.iter().map(|a| a.count).sum()
}

/// Like [`crate::read_partition`], with an error instead of a panic (an attacked
/// partition may have been taken away).
pub async fn try_read_partition(
    client: &Client,
    topic: &str,
    partition: u32,
) -> Result<Vec<meshlog_protocol::batch::Record>, meshlog::client::ClientError> {
    use meshlog::client::consumer::{self, StartAt};
    let mut off = consumer::start_offset(client, topic, partition, StartAt::Beginning).await?;
    let mut out = Vec::new();
    loop {
        let f = consumer::fetch(client, topic, partition, off, 1 << 20, 0).await?;
        if f.next_offset == off {
            return Ok(out);
        }
        off = f.next_offset;
        out.extend(f.records);
    }
}

/// Every topic a node lists, by name (waiting while the node is too busy to answer).
pub async fn topic_infos(client: &Client) -> BTreeMap<String, TopicInfo> {
    let list =
        wait_until("a node lists its topics", LONG_BUDGET, || async { client.list_topics().await.ok() })
            .await;
    list.into_iter().map(|t| (t.name.clone(), t)).collect()
}

/// A node's `cluster status` (waiting while it is too busy to answer).
pub async fn status(client: &Client) -> meshlog_protocol::mesh::ClusterStatus {
    wait_until("a node answers cluster status", LONG_BUDGET, || async { client.cluster_status().await.ok() })
        .await
}

/// Create `__consumer_offsets` (the first group request does).
pub async fn create_offsets_topic(client: &Client) {
    use meshlog_protocol::group::GroupRequest;
    let req =
        || ClientRequest::Group(GroupRequest::FetchOffsets { group: "hostile".into(), partitions: None });
    wait_until("__consumer_offsets is created and answers", LONG_BUDGET, || async {
        client.request(req()).await.ok().map(|_| ())
    })
    .await;
    // Every partition led and all it holds committed (a leader elected over the empty
    // log writes no epoch-start marker): from here on its log end moves only if
    // something is written.
    wait_until("every __consumer_offsets partition has a settled leader", LONG_BUDGET, || async {
        let d = client.describe_topic("__consumer_offsets").await.ok()?;
        d.partitions
            .iter()
            .all(|p| !p.leader.is_empty() && p.high_watermark == p.log_end_offset)
            .then_some(())
    })
    .await;
}

/// A one-record batch.
pub fn one_record(key: Option<&[u8]>, value: &[u8]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.push(1, key, Some(value), &[]);
    b.build().expect("a one-record batch")
}

/// The nodes' process ids.
pub fn pids(c: &Cluster) -> Vec<u32> {
    c.nodes.iter().flatten().map(|n| n.child.id()).collect()
}

/// The largest RSS among `pids`, in KiB.
pub fn max_rss(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|p| rss_kib(*p)).max().unwrap_or(0)
}

/// Sample the RSS of `pids` every 100 ms until the flag is set; the task returns the
/// peak in KiB.
pub fn rss_sampler(pids: Vec<u32>) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let mut peak = 0;
        while !s.load(Ordering::Relaxed) {
            peak = peak.max(max_rss(&pids));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak.max(max_rss(&pids))
    });
    (stop, task)
}
