//! Connections: accept (bounded), read frames (caps checked before allocation), and
//! answer in arrival order. A reader task reads ahead up to [`PIPELINE_DEPTH`]
//! requests (clients pipeline). Produces are served together, up to
//! [`PIPELINE_DEPTH`] at once (a librdkafka producer keeps up to 5 per partition in
//! flight, and waiting for each `acks=all` in turn would cap a partition at one batch
//! per replication round trip); each partition's appends keep the connection's order
//! (`data::PartitionOrder`). Any other request waits for the produces before it and is
//! served alone, as Kafka's broker serves a connection's requests one by one.
//!
//! An API or version not served is answered with UNSUPPORTED_VERSION (35) wherever
//! the response has a top-level error code the asked version can carry (ApiVersions
//! always answers, KIP-511); otherwise, and on a bad length or a header or body that does
//! not parse, the connection is closed, as Kafka's own broker does; the node keeps
//! running.

use super::codec::{self, FrameCaps, Header, HEADER_PREFIX_LEN};
use super::data::PartitionOrder;
use super::{sasl, versions, Kafka, MAX_CONNECTIONS};
use crate::sync::stopped;
use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

/// Requests read ahead of the one being served, per connection.
pub const PIPELINE_DEPTH: usize = 16;

/// One request read off a connection.
struct Frame {
    header: Header,
    body: Bytes,
}

/// Accept Kafka connections until `shutdown`; beyond [`MAX_CONNECTIONS`] a new one is
/// closed at once.
pub(super) async fn serve(listener: TcpListener, kafka: Arc<Kafka>, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut shutdown) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "Kafka accept failed");
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = MAX_CONNECTIONS, "Kafka connection refused: too many open");
            continue;
        };
        let (kafka, shutdown) = (kafka.clone(), shutdown.clone());
        tokio::spawn(async move {
            connection(stream, kafka, shutdown).await;
            drop(slot);
        });
    }
}

async fn connection(mut stream: TcpStream, kafka: Arc<Kafka>, mut shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    if let Some(admission) = &kafka.sasl {
        let exchange = tokio::time::timeout(sasl::AUTH_TIMEOUT, sasl::authenticate(&mut stream, admission));
        let outcome = tokio::select! {
            r = exchange => r.unwrap_or_else(|_| Err(format!("not authenticated within {:?}", sasl::AUTH_TIMEOUT))),
            _ = stopped(&mut shutdown) => return,
        };
        match outcome {
            Ok(client) => tracing::debug!(?peer, %client, "Kafka client authenticated"),
            Err(why) => {
                match kafka.refusal_to_warn() {
                    Some(since) => {
                        tracing::warn!(?peer, %why, refused_unlogged_since = since, "Kafka client refused: SASL authentication failed (at most one warning every 10 s)")
                    }
                    None => tracing::debug!(?peer, %why, "Kafka client refused: SASL authentication failed"),
                }
                return;
            }
        }
    }
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(PIPELINE_DEPTH);
    let caps = FrameCaps { produce_bytes: kafka.settings.max_request_bytes };
    let idle = Duration::from_millis(kafka.settings.idle_ms);
    let work = async {
        let (read, ()) = tokio::join!(read_frames(rd, caps, idle, tx), answer(&kafka, rx, wr));
        if let Err(why) = read {
            tracing::debug!(?peer, %why, "Kafka connection closed");
        }
    };
    tokio::select! {
        () = work => {}
        _ = stopped(&mut shutdown) => {}
    }
}

/// Read frames until the client closes, a frame is bad, or the answering side is gone.
async fn read_frames(
    mut rd: OwnedReadHalf,
    caps: FrameCaps,
    idle: Duration,
    tx: mpsc::Sender<Frame>,
) -> Result<(), String> {
    loop {
        let mut len = [0u8; 4];
        match tokio::time::timeout(idle, rd.read_exact(&mut len)).await {
            Err(_) => return Err(format!("idle for {idle:?}")),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(_)) => {}
        }
        let frame = read_frame(&mut rd, len, caps).await?;
        if tx.send(frame).await.is_err() {
            return Ok(());
        }
    }
}

/// One frame after its length prefix: the header's fixed part first, so the API's own
/// cap is checked before the rest is allocated.
async fn read_frame(rd: &mut OwnedReadHalf, len: [u8; 4], caps: FrameCaps) -> Result<Frame, String> {
    let n = codec::frame_len(len, caps).ok_or_else(|| {
        format!("bad frame length {} (8 to {} bytes)", i32::from_be_bytes(len), caps.global())
    })?;
    let mut prefix = [0u8; HEADER_PREFIX_LEN];
    rd.read_exact(&mut prefix).await.map_err(|e| e.to_string())?;
    let (api_key, api_version, correlation_id) = codec::header_prefix(prefix);
    let cap = caps.of(api_key, versions::served(api_key).is_some());
    if n > cap {
        return Err(format!("api key {api_key} frame of {n} bytes is over its cap of {cap}"));
    }
    let mut rest = vec![0u8; n - HEADER_PREFIX_LEN];
    rd.read_exact(&mut rest).await.map_err(|e| e.to_string())?;
    let mut body = Bytes::from(rest);
    let header = codec::parse_header((api_key, api_version, correlation_id), &mut body)?;
    Ok(Frame { header, body })
}

/// A request being served, with the header its answer goes under.
type Serving<'a> = Pin<Box<dyn Future<Output = (Header, Result<Answer, String>)> + Send + 'a>>;

/// Serve the frames and write each answer (none for `acks=0` produces) in the order the
/// requests came. Produces run together, up to [`PIPELINE_DEPTH`] (their partitions'
/// appends kept in order by [`PartitionOrder`]); any other request waits for them and
/// is served alone, as Kafka's broker serves a connection's requests.
async fn answer(kafka: &Kafka, mut rx: mpsc::Receiver<Frame>, mut wr: OwnedWriteHalf) {
    let mut serving: FuturesOrdered<Serving<'_>> = FuturesOrdered::new();
    let mut order = PartitionOrder::default();
    let mut reading = true;
    loop {
        tokio::select! {
            biased;
            Some((h, r)) = serving.next(), if !serving.is_empty() => {
                if !write_answer(&mut wr, h, r).await {
                    return;
                }
            }
            frame = rx.recv(), if reading && serving.len() < PIPELINE_DEPTH => match frame {
                None => reading = false,
                Some(f) if f.header.api_key == ApiKey::Produce as i16 => {
                    serving.push_back(produce(kafka, f, &mut order));
                }
                Some(f) => {
                    while let Some((h, r)) = serving.next().await {
                        if !write_answer(&mut wr, h, r).await {
                            return;
                        }
                    }
                    let h = f.header.clone();
                    let r = respond(kafka, f).await;
                    if !write_answer(&mut wr, h, r).await {
                        return;
                    }
                }
            },
            else => return,
        }
    }
}

/// A Produce frame decoded, its partitions' turns taken now (in arrival order), and
/// the future that serves it.
fn produce<'a>(kafka: &'a Kafka, frame: Frame, order: &mut PartitionOrder) -> Serving<'a> {
    let (h, v) = (frame.header.clone(), frame.header.api_version);
    let req = if versions::is_served(ApiKey::Produce as i16, v) {
        codec::decode_request(ApiKey::Produce, v, frame.body).map_err(|e| e.to_string())
    } else {
        Err(format!("Produce v{v} is not served (ApiVersions lists what is)"))
    };
    match req {
        Ok(RequestKind::Produce(r)) => {
            let served = kafka.produce(r, v, order);
            Box::pin(async move {
                let answer = served.await.map(|r| (ApiKey::Produce, v, ResponseKind::Produce(r)));
                (h, Ok(answer))
            })
        }
        Ok(_) => Box::pin(std::future::ready((h, Err("a Produce frame decoded as another API".to_string())))),
        Err(why) => Box::pin(std::future::ready((h, Err(why)))),
    }
}

/// Write one answer; false when the connection must close (an answer that cannot be
/// encoded, a request refused, or a write that failed).
async fn write_answer(wr: &mut OwnedWriteHalf, h: Header, r: Result<Answer, String>) -> bool {
    let out = match r {
        Ok(Some((api, version, body))) => codec::encode_response(h.correlation_id, api, version, &body),
        Ok(None) => return true,
        Err(why) => Err(why),
    };
    match out {
        Ok(bytes) => wr.write_all(&bytes).await.is_ok(),
        Err(why) => {
            tracing::debug!(api_key = h.api_key, version = h.api_version, client = ?h.client_id, %why, "closing Kafka connection");
            false
        }
    }
}

/// The answer to one frame, and the version to encode it in.
type Answer = Option<(ApiKey, i16, ResponseKind)>;

async fn respond(kafka: &Kafka, frame: Frame) -> Result<Answer, String> {
    let (api_key, v) = (frame.header.api_key, frame.header.api_version);
    let api = ApiKey::try_from(api_key).map_err(|()| format!("unknown api key {api_key}"))?;
    if api == ApiKey::ApiVersions {
        let (r, at) = versions::api_versions(v);
        return Ok(Some((api, at, ResponseKind::ApiVersions(r))));
    }
    if !versions::is_served(api_key, v) {
        return match versions::unsupported(api, v) {
            Some(body) => Ok(Some((api, v, body))),
            None => Err(format!("{api:?} v{v} is not served (ApiVersions lists what is)")),
        };
    }
    // SASL outside a login exchange (the exchange itself runs before this loop).
    if let Some(body) = sasl::illegal_state(api) {
        return Ok(Some((api, v, body)));
    }
    let req = codec::decode_request(api, v, frame.body).map_err(|e| e.to_string())?;
    let body = match req {
        RequestKind::Metadata(r) => ResponseKind::Metadata(kafka.metadata(r, v).await),
        RequestKind::Fetch(r) => ResponseKind::Fetch(kafka.fetch(r, v).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(kafka.list_offsets(r, v).await),
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(kafka.offset_for_leader_epoch(r).await)
        }
        RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(kafka.find_coordinator(r, v).await),
        RequestKind::JoinGroup(r) => {
            let client = frame.header.client_id.as_deref().unwrap_or("kafka-client");
            ResponseKind::JoinGroup(kafka.join_group(r, v, client).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(kafka.sync_group(r, v).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(kafka.heartbeat(r).await),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(kafka.leave_group(r, v).await),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(kafka.offset_commit(r).await),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(kafka.offset_fetch(r, v).await),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(kafka.describe_groups(r).await),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(kafka.list_groups(r, v).await),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(kafka.delete_groups(r).await),
        RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(kafka.init_producer_id(r, v).await),
        RequestKind::DescribeCluster(r) => ResponseKind::DescribeCluster(kafka.describe_cluster(r)),
        RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(kafka.describe_configs(r, v).await),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(kafka.create_topics(r, v).await),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(kafka.delete_topics(r, v).await),
        RequestKind::CreatePartitions(r) => ResponseKind::CreatePartitions(kafka.create_partitions(r).await),
        _ => return Err(format!("{api:?} is listed as served but has no handler")),
    };
    Ok(Some((api, v, body)))
}
