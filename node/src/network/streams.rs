//! Replication streams: one long-lived, ordered stream from this node to each peer it
//! replicates to (`/meshlog/replicate/2`), carrying one-way [`ReplicateBundle`]s as
//! versioned frames ([`meshlog_protocol::frame`]): the messages of every replica of
//! this node for that peer, gathered by the node's replication hub
//! (`server::tasks::send_replication`), so a thousand partitions' heartbeats to one peer
//! cost one frame, one decode and one event at the receiver, not a thousand. A peer that
//! does not serve `/2` (an older node) gets `/meshlog/replicate/1`, one
//! [`ReplicateMessage`] a frame; both are accepted from peers.
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
use meshlog_protocol::messages::{ReplicateBundle, ReplicateMessage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// The replication stream protocol of single messages (older nodes).
pub(super) const REPLICATE_PROTOCOL: StreamProtocol = StreamProtocol::new("/meshlog/replicate/1");
/// The replication stream protocol of bundles.
pub(super) const REPLICATE_BUNDLES: StreamProtocol = StreamProtocol::new("/meshlog/replicate/2");
/// Bundles queued per peer before new ones are dropped: with [`BUNDLE_BYTES`], at most
/// 32 MiB of small messages wait for a frozen peer (and it resumes on seconds, not
/// minutes, of stale heartbeats).
const LINK_QUEUE: usize = 1024;
/// Bytes of small messages gathered into one bundle: half the smallest frame limit a
/// node may be configured with (64 KiB), since a peer's own limit is not known here.
const BUNDLE_BYTES: usize = 32 << 10;
/// Messages in one bundle at most; a bundle claiming more is a bad frame (a hostile
/// peer's frame of empty messages would otherwise fan out into millions of deliveries).
pub const MAX_BUNDLE_MESSAGES: usize = 1024;
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
    links: Arc<Mutex<HashMap<PeerId, mpsc::Sender<Vec<ReplicateMessage>>>>>,
    max_frame_bytes: usize,
}

/// About what `m` takes in a frame.
fn weight(m: &ReplicateMessage) -> usize {
    m.topic.len() + m.message.len() + m.records.len() + 24
}

/// `messages` cut into bundles, in order: one of at most `budget` bytes of small ones
/// at a time, and each message of [`WRITE_ALONE`] bytes or more alone.
fn bundles(messages: Vec<ReplicateMessage>, budget: usize) -> Vec<Vec<ReplicateMessage>> {
    let (mut out, mut cur, mut bytes) = (Vec::new(), Vec::new(), 0);
    for m in messages {
        let w = weight(&m);
        let full = bytes + w > budget || cur.len() >= MAX_BUNDLE_MESSAGES;
        if !cur.is_empty() && (w >= WRITE_ALONE || full) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += w;
        cur.push(m);
        if w >= WRITE_ALONE {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl ReplicationSender {
    pub(super) fn new(control: libp2p_stream::Control, max_frame_bytes: usize) -> Self {
        ReplicationSender { control, links: Arc::default(), max_frame_bytes }
    }

    /// Queue `m` for `peer` alone; false if it was dropped. Never waits.
    pub fn send(&self, peer: PeerId, m: &ReplicateMessage) -> bool {
        self.send_many(peer, vec![m.clone()]) == 0
    }

    /// Queue `messages` for `peer`, in order, as bundles within the frame limit; returns
    /// how many were dropped (queue full). Never waits.
    pub fn send_many(&self, peer: PeerId, messages: Vec<ReplicateMessage>) -> usize {
        let budget = BUNDLE_BYTES.min(self.max_frame_bytes / 2);
        let mut dropped = 0;
        let mut links = crate::sync::lock(&self.links);
        for mut bundle in bundles(messages, budget) {
            if let Some(tx) = links.get(&peer) {
                match tx.try_send(bundle) {
                    Ok(()) => continue,
                    Err(mpsc::error::TrySendError::Full(b)) => {
                        dropped += b.len();
                        continue;
                    }
                    Err(mpsc::error::TrySendError::Closed(b)) => bundle = b,
                }
            }
            let (tx, rx) = mpsc::channel(LINK_QUEUE);
            let _ = tx.try_send(bundle);
            links.insert(peer, tx);
            tokio::spawn(write_link(self.control.clone(), peer, rx, self.max_frame_bytes));
        }
        dropped
    }
}

/// Open a stream to `peer` on protocol `p` within [`OPEN_TIMEOUT`] (`None`: timed out).
async fn open_one(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    p: StreamProtocol,
) -> Result<libp2p::Stream, Option<libp2p_stream::OpenStreamError>> {
    match tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer, p)).await {
        Ok(r) => r.map_err(Some),
        Err(_) => Err(None),
    }
}

/// Open a stream to `peer`: bundles if it serves them, else single messages (`true`).
async fn open_link(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
) -> Result<(libp2p::Stream, bool), String> {
    let why =
        |e: Option<libp2p_stream::OpenStreamError>| e.map_or("timed out".to_string(), |e| e.to_string());
    match open_one(control, peer, REPLICATE_BUNDLES).await {
        Ok(s) => Ok((s, false)),
        Err(Some(libp2p_stream::OpenStreamError::UnsupportedProtocol(_))) => {
            open_one(control, peer, REPLICATE_PROTOCOL).await.map(|s| (s, true)).map_err(why)
        }
        Err(e) => Err(why(e)),
    }
}

/// A queued bundle as frames for a stream: one bundle frame, or (`single`) one frame per
/// message. A message that cannot be encoded within the frame limit is dropped.
fn frames(bundle: Vec<ReplicateMessage>, single: bool, max_frame_bytes: usize) -> Vec<Vec<u8>> {
    let encoded = if single {
        bundle.iter().map(|m| frame::encode_frame(m, max_frame_bytes)).collect()
    } else {
        vec![frame::encode_frame(&ReplicateBundle { messages: bundle }, max_frame_bytes)]
    };
    encoded
        .into_iter()
        .filter_map(|f| f.map_err(|e| tracing::warn!(error = %e, "replication message not sent")).ok())
        .collect()
}

/// Open a stream to `peer` and write what is queued for it until either side fails.
async fn write_link(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    mut rx: mpsc::Receiver<Vec<ReplicateMessage>>,
    max_frame_bytes: usize,
) {
    let (mut stream, single) = match open_link(&mut control, peer).await {
        Ok(s) => s,
        Err(reason) => {
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
    // Frames taken off the queue and not yet written, oldest first.
    let mut ready: std::collections::VecDeque<Vec<u8>> = Default::default();
    loop {
        if ready.is_empty() {
            match tokio::time::timeout(WRITE_IDLE, rx.recv()).await {
                Ok(Some(b)) => ready.extend(frames(b, single, max_frame_bytes)),
                // Idle: close; the next message opens a new stream.
                Ok(None) | Err(_) => break,
            }
            continue;
        }
        // A large frame (a fetch answer with batches) is written as it is; small ones
        // are gathered into one write, so a heartbeat or a fetch costs no write of its own.
        let first = ready.pop_front().unwrap_or_default();
        let out: &[u8] = if first.len() >= WRITE_ALONE {
            &first
        } else {
            buf.clear();
            buf.extend_from_slice(&first);
            while buf.len() < WRITE_CHUNK {
                if ready.is_empty() {
                    match rx.try_recv() {
                        Ok(b) => ready.extend(frames(b, single, max_frame_bytes)),
                        Err(_) => break,
                    }
                }
                match ready.front() {
                    Some(f) if f.len() < WRITE_ALONE => {
                        buf.extend_from_slice(&ready.pop_front().unwrap_or_default())
                    }
                    _ => break,
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
    let single = control.accept(REPLICATE_PROTOCOL).map_err(|e| NetworkError::Transport(super::cause(e)))?;
    let bundles = control.accept(REPLICATE_BUNDLES).map_err(|e| NetworkError::Transport(super::cause(e)))?;
    // Both protocols' streams, told apart (`true`: single messages), share the caps.
    let mut incoming =
        futures::stream::select(single.map(|(p, s)| (p, s, true)), bundles.map(|(p, s)| (p, s, false)));
    let open: Arc<Mutex<HashMap<PeerId, usize>>> = Arc::default();
    tokio::spawn(async move {
        while let Some((peer, stream, single)) = incoming.next().await {
            let Some(slot) = StreamSlot::take(&open, peer) else {
                tracing::warn!(%peer, "too many replication streams from one peer; stream refused");
                continue;
            };
            let (events, roles) = (events.clone(), roles.clone());
            tokio::spawn(async move {
                // A stream may beat its opener's hello by a moment; wait for it.
                match roles.wait(&peer, HELLO_BUDGET).await {
                    Some(PeerRole::Node) => read_link(peer, stream, single, events, max_frame_bytes).await,
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

/// Read a peer's stream of single messages (`single`) or bundles, each frame one event.
async fn read_link(
    peer: PeerId,
    mut stream: libp2p::Stream,
    single: bool,
    events: mpsc::Sender<NetworkEvent>,
    max_frame_bytes: usize,
) {
    loop {
        let read = if single {
            read_timed::<ReplicateMessage>(&mut stream, max_frame_bytes).await.map(|m| vec![m])
        } else {
            read_timed::<ReplicateBundle>(&mut stream, max_frame_bytes).await.and_then(|b| {
                if b.messages.len() > MAX_BUNDLE_MESSAGES {
                    let why =
                        format!("a bundle of {} messages (at most {MAX_BUNDLE_MESSAGES})", b.messages.len());
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why));
                }
                Ok(b.messages)
            })
        };
        let messages = match read {
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
        if events.send(NetworkEvent::Replicate { peer, messages }).await.is_err() {
            return;
        }
    }
}

/// Read one message: wait up to [`READ_IDLE`] for it to start, then up to
/// [`FRAME_READ_TIMEOUT`] for the rest, so a peer that trickles bytes cannot hold a
/// stream (and its buffer) forever.
async fn read_timed<M: serde::de::DeserializeOwned>(
    stream: &mut libp2p::Stream,
    max_frame_bytes: usize,
) -> std::io::Result<M> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(partition: u32, records: usize) -> ReplicateMessage {
        ReplicateMessage { topic: "t".into(), partition, message: vec![1; 8], records: vec![0; records] }
    }

    #[test]
    fn bundles_keep_the_order_and_stay_within_the_budget() {
        let budget = 4096;
        let messages: Vec<_> = (0..1000).map(|p| msg(p, (p as usize * 37) % 600)).collect();
        let cut = bundles(messages.clone(), budget);
        assert!(cut.len() > 1, "1000 messages of up to 600 bytes fit no 4 KiB bundle");
        for b in &cut {
            let bytes: usize = b.iter().map(weight).sum();
            assert!(!b.is_empty() && (bytes <= budget || b.len() == 1), "a bundle of {bytes} bytes");
        }
        assert_eq!(cut.concat(), messages, "every message once, in order");
        let tiny: Vec<_> = (0..MAX_BUNDLE_MESSAGES as u32 * 2 + 1).map(|p| msg(p, 0)).collect();
        let cut = bundles(tiny.clone(), usize::MAX);
        assert!(cut.iter().all(|b| b.len() <= MAX_BUNDLE_MESSAGES), "bounded in count too");
        assert_eq!((cut.len(), cut.concat()), (3, tiny));
    }

    #[test]
    fn a_large_message_travels_alone_between_its_neighbours() {
        let messages = vec![msg(0, 10), msg(1, 10), msg(2, WRITE_ALONE), msg(3, 10)];
        let cut = bundles(messages.clone(), BUNDLE_BYTES);
        let sizes: Vec<usize> = cut.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 1, 1]);
        assert_eq!(cut.concat(), messages);
    }
}
