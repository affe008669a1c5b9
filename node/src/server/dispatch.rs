//! The dispatch loop: hands every inbound network event to its handler, in three lanes
//! with separate budgets, so that client load can never delay the mesh.
//!
//! - **Replication** messages go to their replica at once, in arrival order (no task,
//!   no budget: `Broker::deliver` only queues them).
//! - **Mesh** events (gossip: heartbeats, leases, topic records; new connections) have
//!   their own budget; when it is spent the loop waits for one (only nodes produce
//!   them, and they are small).
//! - **Peer** requests (anti-entropy, partition states, service lookups) have their own
//!   budget; when it is spent a request is answered `UNAVAILABLE` at once.
//! - **Client** requests, and client requests forwarded by other nodes, share the
//!   client budget. A parked fetch long poll holds its permit while it waits. When the
//!   budget is spent the client is answered `UNAVAILABLE` (retriable: nothing was
//!   started) at once, never queued, so the loop never waits because of clients.
//!
//! The loop never awaits a client's permit, so a node with thousands of parked long
//! polls still handles heartbeats, votes and fetches as fast as an idle one.

use crate::mesh::MeshEvent;
use crate::network::{NetworkEvent, PeerId};
use meshlog_protocol::messages::{ClientRequest, ClientResult, PeerRequest, PeerResponse, ReplicateMessage};
use meshlog_protocol::{ErrorCode, WireError};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// Client requests (including forwarded ones and parked long polls) served at once;
/// past this a client is answered `UNAVAILABLE`.
pub const MAX_CLIENT_REQUESTS_INFLIGHT: usize = 2048;
/// Peer requests served at once; past this a peer is answered `UNAVAILABLE`.
pub const MAX_PEER_REQUESTS_INFLIGHT: usize = 256;
/// Mesh events (gossip, connections) handled at once; past this the loop waits.
pub const MAX_MESH_EVENTS_INFLIGHT: usize = 256;

/// How many of each kind of work may run at once.
#[derive(Debug, Clone, Copy)]
pub struct LaneBudgets {
    /// Client requests, forwarded ones included.
    pub client: usize,
    /// Peer requests.
    pub peer: usize,
    /// Mesh events.
    pub mesh: usize,
}

impl Default for LaneBudgets {
    fn default() -> Self {
        LaneBudgets {
            client: MAX_CLIENT_REQUESTS_INFLIGHT,
            peer: MAX_PEER_REQUESTS_INFLIGHT,
            mesh: MAX_MESH_EVENTS_INFLIGHT,
        }
    }
}

/// The answer to a client when the client budget is spent.
pub fn client_busy() -> WireError {
    WireError::new(
        ErrorCode::Unavailable,
        format!(
            "node is busy: {MAX_CLIENT_REQUESTS_INFLIGHT} client requests in flight; \
             the request was not started, retry shortly"
        ),
    )
}

fn peer_busy() -> WireError {
    WireError::new(
        ErrorCode::Unavailable,
        format!("node is busy: {MAX_PEER_REQUESTS_INFLIGHT} peer requests in flight; retry shortly"),
    )
}

/// One unit of inbound work, with whatever answers it (`C` for a client, `P` for a peer).
pub enum Work<C, P> {
    /// A client request, or a client request a node forwarded (answered with `P`).
    Client(ClientRequest, ClientReply<C, P>),
    /// A request only nodes make.
    Peer(PeerId, PeerRequest, P),
    /// Gossip or a new connection.
    Mesh(MeshEvent),
    /// A replication message for a replica held here.
    Replicate(PeerId, Vec<ReplicateMessage>),
    /// Nothing to do.
    Ignore,
}

/// Where a client request's result goes: straight to the client, or back to the node
/// that forwarded it.
pub enum ClientReply<C, P> {
    /// Answer the client (the peer it connected as).
    Direct(PeerId, C),
    /// Answer the forwarding node with `PeerResponse::Forwarded`.
    Forwarded(PeerId, P),
}

/// What the dispatcher needs from the node: serve each kind of work and answer it.
pub trait Serve: Send + Sync + 'static {
    /// Answers a client.
    type Client: Send + 'static;
    /// Answers a peer.
    type Peer: Send + 'static;
    /// Hand a replication message to its replica (must not block).
    fn deliver(&self, peer: PeerId, message: ReplicateMessage);
    /// Serve a client request from `from`: the client itself, or the node that
    /// forwarded it (`forwarded`).
    fn serve_client(
        &self,
        from: PeerId,
        forwarded: bool,
        req: ClientRequest,
    ) -> impl Future<Output = ClientResult> + Send;
    /// Serve a peer request.
    fn serve_peer(&self, peer: PeerId, req: PeerRequest) -> impl Future<Output = PeerResponse> + Send;
    /// Handle a mesh event.
    fn on_mesh(&self, ev: MeshEvent) -> impl Future<Output = ()> + Send;
    /// Send a client its answer.
    fn answer_client(&self, to: Self::Client, result: ClientResult) -> impl Future<Output = ()> + Send;
    /// Send a peer its answer.
    fn answer_peer(&self, to: Self::Peer, response: PeerResponse) -> impl Future<Output = ()> + Send;
}

impl<C, P> From<NetworkEvent> for Work<C, P>
where
    C: From<crate::network::ClientResponder>,
    P: From<crate::network::PeerResponder>,
{
    fn from(ev: NetworkEvent) -> Self {
        match ev {
            NetworkEvent::ClientRequest { peer, request, responder } => {
                Work::Client(request, ClientReply::Direct(peer, responder.into()))
            }
            NetworkEvent::PeerRequest { peer, request: PeerRequest::Forward(req), responder } => {
                Work::Client(req, ClientReply::Forwarded(peer, responder.into()))
            }
            NetworkEvent::PeerRequest { peer, request: PeerRequest::Replicate(m), responder } => {
                // From a node that still sends replication as requests: the answer only
                // acknowledges receipt, so it is a peer request that delivers.
                Work::Peer(peer, PeerRequest::Replicate(m), responder.into())
            }
            NetworkEvent::PeerRequest { peer, request, responder } => {
                Work::Peer(peer, request, responder.into())
            }
            NetworkEvent::Gossip { source, message } => Work::Mesh(MeshEvent::Gossip(source, message)),
            NetworkEvent::PeerConnected { peer } => Work::Mesh(MeshEvent::Connected(peer)),
            NetworkEvent::PeerDisconnected { peer } => {
                tracing::debug!(%peer, "disconnected");
                Work::Ignore
            }
            NetworkEvent::Replicate { peer, messages } => Work::Replicate(peer, messages),
        }
    }
}

/// Take work from `inbox` until it closes or `shutdown` turns true.
pub async fn dispatch<S: Serve, E>(
    serve: Arc<S>,
    budgets: LaneBudgets,
    mut inbox: mpsc::Receiver<E>,
    mut shutdown: watch::Receiver<bool>,
) where
    Work<S::Client, S::Peer>: From<E>,
{
    let client = Arc::new(Semaphore::new(budgets.client));
    let peer = Arc::new(Semaphore::new(budgets.peer));
    let mesh = Arc::new(Semaphore::new(budgets.mesh));
    loop {
        let ev = tokio::select! {
            ev = inbox.recv() => match ev { Some(ev) => ev, None => return },
            _ = crate::sync::stopped(&mut shutdown) => return,
        };
        match Work::from(ev) {
            Work::Replicate(from, messages) => {
                for m in messages {
                    serve.deliver(from, m);
                }
            }
            Work::Client(req, reply) => match client.clone().try_acquire_owned() {
                Ok(permit) => spawn_client(serve.clone(), permit, req, reply),
                Err(_) => answer(&*serve, reply, Err(client_busy())).await,
            },
            Work::Peer(from, PeerRequest::Replicate(m), reply) => {
                serve.deliver(from, m);
                serve.answer_peer(reply, PeerResponse::Replicated).await;
            }
            Work::Peer(from, req, reply) => match peer.clone().try_acquire_owned() {
                Ok(permit) => {
                    let serve = serve.clone();
                    tokio::spawn(async move {
                        let response = serve.serve_peer(from, req).await;
                        serve.answer_peer(reply, response).await;
                        drop(permit);
                    });
                }
                Err(_) => serve.answer_peer(reply, PeerResponse::Error(peer_busy())).await,
            },
            Work::Mesh(ev) => {
                let Ok(permit) = mesh.clone().acquire_owned().await else { return };
                let serve = serve.clone();
                tokio::spawn(async move {
                    serve.on_mesh(ev).await;
                    drop(permit);
                });
            }
            Work::Ignore => {}
        }
    }
}

fn spawn_client<S: Serve>(
    serve: Arc<S>,
    permit: OwnedSemaphorePermit,
    req: ClientRequest,
    reply: ClientReply<S::Client, S::Peer>,
) {
    tokio::spawn(async move {
        let (from, forwarded) = match &reply {
            ClientReply::Direct(peer, _) => (*peer, false),
            ClientReply::Forwarded(peer, _) => (*peer, true),
        };
        let result = serve.serve_client(from, forwarded, req).await;
        answer(&*serve, reply, result).await;
        drop(permit);
    });
}

async fn answer<S: Serve>(serve: &S, reply: ClientReply<S::Client, S::Peer>, result: ClientResult) {
    match reply {
        ClientReply::Direct(_, to) => serve.answer_client(to, result).await,
        ClientReply::Forwarded(_, to) => serve.answer_peer(to, PeerResponse::Forwarded(result)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlog_protocol::messages::FetchRequest;
    use meshlog_protocol::ClientResponse;
    use std::time::Duration;
    use tokio::sync::oneshot;

    /// How long "promptly" may take; generous, and on paused time it elapses only if
    /// the dispatcher is stuck.
    const PROMPT: Duration = Duration::from_secs(5);
    const CLIENT_BUDGET: usize = 8;

    /// Parks every fetch forever (a long poll with nothing to read); answers peers at
    /// once; reports mesh events and deliveries.
    struct Fake {
        seen: mpsc::UnboundedSender<&'static str>,
    }

    impl Serve for Fake {
        type Client = oneshot::Sender<ClientResult>;
        type Peer = oneshot::Sender<PeerResponse>;

        fn deliver(&self, _: PeerId, _: ReplicateMessage) {
            let _ = self.seen.send("replicate");
        }

        async fn serve_client(&self, _: PeerId, _: bool, req: ClientRequest) -> ClientResult {
            if let ClientRequest::Fetch(_) = req {
                std::future::pending::<()>().await;
            }
            Ok(ClientResponse::Topics(vec![]))
        }

        async fn serve_peer(&self, _: PeerId, _: PeerRequest) -> PeerResponse {
            PeerResponse::TopicRecords(vec![])
        }

        async fn on_mesh(&self, _: MeshEvent) {
            let _ = self.seen.send("mesh");
        }

        async fn answer_client(&self, to: Self::Client, result: ClientResult) {
            let _ = to.send(result);
        }

        async fn answer_peer(&self, to: Self::Peer, response: PeerResponse) {
            let _ = to.send(response);
        }
    }

    type TestWork = Work<oneshot::Sender<ClientResult>, oneshot::Sender<PeerResponse>>;

    fn long_poll() -> ClientRequest {
        ClientRequest::Fetch(FetchRequest {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            max_bytes: 1,
            max_wait_ms: u32::MAX,
            leader_epoch: None,
        })
    }

    async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
        tokio::time::timeout(PROMPT, fut)
            .await
            .unwrap_or_else(|_| panic!("{what} not handled within {PROMPT:?}"))
    }

    #[tokio::test(start_paused = true)]
    async fn parked_long_polls_never_delay_peers_gossip_or_replication() {
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let (inbox_tx, inbox) = mpsc::channel::<TestWork>(16);
        let (_stop, stop_rx) = watch::channel(false);
        let budgets = LaneBudgets { client: CLIENT_BUDGET, peer: 4, mesh: 4 };
        tokio::spawn(dispatch(Arc::new(Fake { seen: seen_tx }), budgets, inbox, stop_rx));
        let peer = PeerId::random();

        // Spend the whole client budget on long polls, half of them forwarded by a node.
        let mut parked = Vec::new();
        for i in 0..CLIENT_BUDGET {
            if i % 2 == 0 {
                let (tx, rx) = oneshot::channel();
                inbox_tx
                    .send(Work::Client(long_poll(), ClientReply::Direct(PeerId::random(), tx)))
                    .await
                    .unwrap();
                parked.push(rx);
            } else {
                let (tx, _rx) = oneshot::channel();
                inbox_tx.send(Work::Client(long_poll(), ClientReply::Forwarded(peer, tx))).await.unwrap();
            }
        }

        // One more client is refused at once, with a retriable error that says why.
        let (tx, rx) = oneshot::channel();
        inbox_tx
            .send(Work::Client(ClientRequest::ListTopics, ClientReply::Direct(PeerId::random(), tx)))
            .await
            .unwrap();
        let err = within("the busy answer", rx).await.unwrap().unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert!(err.code.is_retriable());
        assert!(err.message.contains("not started"), "{err}");
        // A forwarded one is refused the same way, inside the forward's answer.
        let (tx, rx) = oneshot::channel();
        inbox_tx
            .send(Work::Client(ClientRequest::ListTopics, ClientReply::Forwarded(peer, tx)))
            .await
            .unwrap();
        match within("the forwarded busy answer", rx).await.unwrap() {
            PeerResponse::Forwarded(Err(e)) => assert_eq!(e.code, ErrorCode::Unavailable),
            other => panic!("expected a forwarded busy error, got {other:?}"),
        }

        // Peer requests, gossip and replication are still handled promptly.
        let (tx, rx) = oneshot::channel();
        inbox_tx.send(Work::Peer(peer, PeerRequest::TopicRecords, tx)).await.unwrap();
        assert_eq!(within("a peer request", rx).await.unwrap(), PeerResponse::TopicRecords(vec![]));
        inbox_tx.send(Work::Mesh(MeshEvent::Connected(peer))).await.unwrap();
        assert_eq!(within("a mesh event", seen.recv()).await, Some("mesh"));
        let m = ReplicateMessage { topic: "t".into(), partition: 0, message: vec![], records: vec![] };
        inbox_tx.send(Work::Replicate(peer, vec![m])).await.unwrap();
        assert_eq!(within("a replication message", seen.recv()).await, Some("replicate"));
        // The long polls are still parked, not failed.
        for mut rx in parked {
            assert!(matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_peer_budget_answers_busy_instead_of_waiting() {
        struct Stuck;
        impl Serve for Stuck {
            type Client = oneshot::Sender<ClientResult>;
            type Peer = oneshot::Sender<PeerResponse>;
            fn deliver(&self, _: PeerId, _: ReplicateMessage) {}
            async fn serve_client(&self, _: PeerId, _: bool, _: ClientRequest) -> ClientResult {
                Ok(ClientResponse::Topics(vec![]))
            }
            async fn serve_peer(&self, _: PeerId, _: PeerRequest) -> PeerResponse {
                std::future::pending().await
            }
            async fn on_mesh(&self, _: MeshEvent) {}
            async fn answer_client(&self, to: Self::Client, result: ClientResult) {
                let _ = to.send(result);
            }
            async fn answer_peer(&self, to: Self::Peer, response: PeerResponse) {
                let _ = to.send(response);
            }
        }
        let (inbox_tx, inbox) = mpsc::channel::<TestWork>(16);
        let (_stop, stop_rx) = watch::channel(false);
        let budgets = LaneBudgets { client: 4, peer: 2, mesh: 4 };
        tokio::spawn(dispatch(Arc::new(Stuck), budgets, inbox, stop_rx));
        let peer = PeerId::random();
        for _ in 0..2 {
            let (tx, _rx) = oneshot::channel();
            inbox_tx.send(Work::Peer(peer, PeerRequest::TopicRecords, tx)).await.unwrap();
        }
        let (tx, rx) = oneshot::channel();
        inbox_tx.send(Work::Peer(peer, PeerRequest::TopicRecords, tx)).await.unwrap();
        match within("the busy peer answer", rx).await.unwrap() {
            PeerResponse::Error(e) => assert_eq!(e.code, ErrorCode::Unavailable),
            other => panic!("expected busy, got {other:?}"),
        }
        // Clients do not share the peers' budget.
        let (tx, rx) = oneshot::channel();
        inbox_tx
            .send(Work::Client(ClientRequest::ListTopics, ClientReply::Direct(PeerId::random(), tx)))
            .await
            .unwrap();
        assert!(within("a client request", rx).await.unwrap().is_ok());
    }
}
