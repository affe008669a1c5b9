//! Replication streams: one long-lived, ordered stream from this node to each peer it
//! replicates to (`/meshlog/replicate/1`), carrying one-way [`ReplicateMessage`]s as
//! versioned frames ([`meshlog_protocol::frame`]).
//!
//! Why not a request-response exchange per message: each one opened a yamux stream,
//! negotiated the protocol, armed a timeout on libp2p's timer thread and sent back an
//! empty answer; on a 3-node run those wake-ups and context switches were the nodes'
//! largest cost. A stream per direction also keeps a peer's messages in order.
//!
//! Each direction has its own stream, written only by its opener and read only by the
//! other side (libp2p-stream's open report of a deadlock when both sides write one
//! stream does not apply). Loss is the replica protocol's problem: a full queue or a
//! broken stream drops messages, and the next message opens a new stream, no sooner than
//! [`RETRY_AFTER`] after a failed open.

use super::admission::Roles;
use super::codec::read_msg;
use super::{NetworkError, NetworkEvent, HELLO_BUDGET};
use futures::{AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use meshlog_protocol::admission::PeerRole;
use meshlog_protocol::frame;
use meshlog_protocol::messages::ReplicateMessage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// The replication stream protocol.
pub(super) const REPLICATE_PROTOCOL: StreamProtocol = StreamProtocol::new("/meshlog/replicate/1");
/// Messages queued per peer before new ones are dropped.
const LINK_QUEUE: usize = 4096;
/// Bytes gathered from the queue into one write.
const WRITE_CHUNK: usize = 1 << 20;
/// A message at least this large is written without being copied into a gathered write.
const WRITE_ALONE: usize = 64 << 10;
/// How long opening a stream may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed open, messages to that peer are dropped this long before a new try.
const RETRY_AFTER: Duration = Duration::from_millis(250);
/// A sender closes its stream after this long without a message; the reader's own
/// idle limit is longer, so a quiet link is closed by its writer and loses nothing.
const WRITE_IDLE: Duration = Duration::from_secs(120);
/// A reader closes a stream that carried no frame for this long.
const READ_IDLE: Duration = Duration::from_secs(180);
/// Once a frame's length arrived, its whole body must arrive within this.
const FRAME_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Inbound replication streams one peer may hold open at once (its sender keeps one;
/// the rest are leftovers of broken links and a rogue's flood).
const MAX_INBOUND_STREAMS_PER_PEER: usize = 4;

/// Sends replication messages to peers over their streams. Cloning shares the streams.
#[derive(Clone)]
pub struct ReplicationSender {
    control: libp2p_stream::Control,
    links: Arc<Mutex<HashMap<PeerId, mpsc::Sender<Vec<u8>>>>>,
    max_frame_bytes: usize,
}

impl ReplicationSender {
    pub(super) fn new(control: libp2p_stream::Control, max_frame_bytes: usize) -> Self {
        ReplicationSender { control, links: Arc::default(), max_frame_bytes }
    }

    /// Queue `m` for `peer`; false if it was dropped (queue full, or not encodable
    /// within the frame limit). Never waits.
    pub fn send(&self, peer: PeerId, m: &ReplicateMessage) -> bool {
        let mut bytes = match frame::encode_frame(m, self.max_frame_bytes) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "replication message not sent");
                return false;
            }
        };
        let mut links = crate::sync::lock(&self.links);
        if let Some(tx) = links.get(&peer) {
            match tx.try_send(bytes) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Full(_)) => return false,
                Err(mpsc::error::TrySendError::Closed(b)) => bytes = b,
            }
        }
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let _ = tx.try_send(bytes);
        links.insert(peer, tx);
        tokio::spawn(write_link(self.control.clone(), peer, rx));
        true
    }
}

/// Open a stream to `peer` and write what is queued for it until either side fails.
async fn write_link(mut control: libp2p_stream::Control, peer: PeerId, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut stream =
        match tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer, REPLICATE_PROTOCOL)).await {
            Ok(Ok(s)) => s,
            failed => {
                let reason = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_string(),
                };
                tracing::debug!(%peer, %reason, "cannot open a replication stream");
                // Drop what arrives for a while rather than dial once per message.
                let wait = tokio::time::sleep(RETRY_AFTER);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        _ = &mut wait => return,
                        m = rx.recv() => if m.is_none() { return },
                    }
                }
            }
        };
    let mut buf = Vec::with_capacity(WRITE_CHUNK);
    // A large message taken off the queue while small ones were being gathered.
    let mut held: Option<Vec<u8>> = None;
    loop {
        let first = match held.take() {
            Some(m) => m,
            None => match tokio::time::timeout(WRITE_IDLE, rx.recv()).await {
                Ok(Some(m)) => m,
                // Idle: close; the next message opens a new stream.
                Ok(None) | Err(_) => break,
            },
        };
        // A large message (a fetch answer with batches) is written as it is; small ones
        // are gathered into one write, so a heartbeat or a fetch costs no write of its own.
        let out: &[u8] = if first.len() >= WRITE_ALONE {
            &first
        } else {
            buf.clear();
            buf.extend_from_slice(&first);
            while buf.len() < WRITE_CHUNK {
                match rx.try_recv() {
                    Ok(m) if m.len() >= WRITE_ALONE => {
                        held = Some(m);
                        break;
                    }
                    Ok(m) => buf.extend_from_slice(&m),
                    Err(_) => break,
                }
            }
            &buf
        };
        if let Err(e) = async {
            stream.write_all(out).await?;
            stream.flush().await
        }
        .await
        {
            tracing::debug!(%peer, error = %e, "replication stream broke; the next message opens a new one");
            return;
        }
    }
    let _ = stream.close().await;
}

/// Accept replication streams from peers and hand their messages to `events`, in
/// order, until this node stops.
/// Accept replication streams from peers admitted as nodes and hand their messages to
/// `events`, in order, until this node stops. A peer gets at most
/// [`MAX_INBOUND_STREAMS_PER_PEER`] streams at once; every stream has read timeouts.
pub(super) fn accept(
    mut control: libp2p_stream::Control,
    events: mpsc::Sender<NetworkEvent>,
    max_frame_bytes: usize,
    roles: Roles,
) -> Result<(), NetworkError> {
    let mut incoming =
        control.accept(REPLICATE_PROTOCOL).map_err(|e| NetworkError::Transport(super::cause(e)))?;
    let open: Arc<Mutex<HashMap<PeerId, usize>>> = Arc::default();
    tokio::spawn(async move {
        while let Some((peer, stream)) = incoming.next().await {
            let Some(slot) = StreamSlot::take(&open, peer) else {
                tracing::warn!(%peer, "too many replication streams from one peer; stream refused");
                continue;
            };
            let (events, roles) = (events.clone(), roles.clone());
            tokio::spawn(async move {
                // A stream may beat its opener's hello by a moment; wait for it.
                match roles.wait(&peer, HELLO_BUDGET).await {
                    Some(PeerRole::Node) => read_link(peer, stream, events, max_frame_bytes).await,
                    _ => tracing::warn!(%peer, "replication stream from a peer that is not a node refused"),
                }
                drop(slot);
            });
        }
    });
    Ok(())
}

/// One of a peer's inbound stream places, given back on drop.
struct StreamSlot {
    open: Arc<Mutex<HashMap<PeerId, usize>>>,
    peer: PeerId,
}

impl StreamSlot {
    fn take(open: &Arc<Mutex<HashMap<PeerId, usize>>>, peer: PeerId) -> Option<StreamSlot> {
        let mut map = crate::sync::lock(open);
        let n = map.entry(peer).or_default();
        if *n >= MAX_INBOUND_STREAMS_PER_PEER {
            return None;
        }
        *n += 1;
        Some(StreamSlot { open: open.clone(), peer })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut map = crate::sync::lock(&self.open);
        if let Some(n) = map.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.peer);
            }
        }
    }
}

async fn read_link(
    peer: PeerId,
    mut stream: libp2p::Stream,
    events: mpsc::Sender<NetworkEvent>,
    max_frame_bytes: usize,
) {
    loop {
        let message: ReplicateMessage = match read_timed(&mut stream, max_frame_bytes).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return tracing::debug!(%peer, error = %e, "replication stream timed out; closed");
            }
            Err(e) => {
                // A malformed frame ends the stream; the sender opens a new one.
                return tracing::warn!(%peer, error = %e, "bad frame on a replication stream; stream closed");
            }
        };
        if events.send(NetworkEvent::Replicate { peer, message }).await.is_err() {
            return;
        }
    }
}

/// Read one message: wait up to [`READ_IDLE`] for it to start, then up to
/// [`FRAME_READ_TIMEOUT`] for the rest, so a peer that trickles bytes cannot hold a
/// stream (and its buffer) forever.
async fn read_timed(
    stream: &mut libp2p::Stream,
    max_frame_bytes: usize,
) -> std::io::Result<ReplicateMessage> {
    use futures::AsyncReadExt;
    let timed_out = |what: &str| std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_string());
    let mut first = [0u8; 1];
    match tokio::time::timeout(READ_IDLE, stream.read(&mut first)).await {
        Err(_) => return Err(timed_out("idle")),
        Ok(Ok(0)) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
        Ok(r) => r?,
    };
    let mut chained = futures::io::Cursor::new(first).chain(&mut *stream);
    match tokio::time::timeout(FRAME_READ_TIMEOUT, read_msg(&mut chained, max_frame_bytes)).await {
        Ok(r) => r,
        Err(_) => Err(timed_out("a frame did not arrive whole in time")),
    }
}
