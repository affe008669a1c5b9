//! Produce, Fetch and ListOffsets, each partition through [`Kafka::ask`] (the gateway
//! routes it to the partition's leader). Batches pass through as the client sent them
//! and as they are stored, compressed or not: a produce's batches are checked (header,
//! CRC-32C) and sent one by one in order; a fetch returns whole stored batches, the
//! first possibly starting before the offset asked (clients skip the records below it).
//!
//! A connection's produces run together (clients pipeline up to 5 per partition);
//! [`PartitionOrder`] keeps each partition's appends in the connection's order: an
//! idempotent batch is sent at once and again after its predecessor should it overtake
//! it, any other batch waits for its predecessor.

use super::{kafka_code, Kafka};
use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};
use futures::stream::{FuturesUnordered, StreamExt};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, ProduceRequest, ProduceResponse,
};
use kafka_protocol::protocol::StrBytes;
use meshlog_protocol::batch;
use meshlog_protocol::messages::{self as ml, ClientRequest, ClientResponse};
use meshlog_protocol::types::{Acks, OffsetSpec};
use meshlog_protocol::{ErrorCode, WireError};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// Kafka's INVALID_REQUIRED_ACKS.
const INVALID_REQUIRED_ACKS: i16 = 21;

/// Kafka's `acks` as meshlog's.
pub fn acks(kafka: i16) -> Option<Acks> {
    match kafka {
        0 => Some(Acks::None),
        1 => Some(Acks::Leader),
        -1 => Some(Acks::All),
        _ => None,
    }
}

/// The answers a batch gets when it reached the leader before the batch it follows:
/// refused without writing, so sending it again after that batch is safe.
fn overtaken(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::OutOfOrderSequenceNumber | ErrorCode::UnknownProducerId)
}

/// Partitions a connection has written to at most, remembered to keep their order;
/// beyond it, those whose last produce is done are forgotten.
const ORDER_PRUNE_AT: usize = 256;

/// One connection's produce order per partition: each produce to a partition follows
/// the connection's previous one to it (see [`Kafka::produce`]).
#[derive(Default)]
pub(super) struct PartitionOrder {
    last: HashMap<(String, i32), Shared<oneshot::Receiver<()>>>,
}

impl PartitionOrder {
    /// The next produce's turn at `topic`-`partition`: it follows the one before.
    fn turn(&mut self, topic: &str, partition: i32) -> Turn {
        if self.last.len() >= ORDER_PRUNE_AT {
            self.last.retain(|_, done| !is_done(done));
        }
        let (tx, rx) = oneshot::channel();
        let before = self.last.insert((topic.to_string(), partition), rx.shared());
        Turn { before, _done: tx }
    }
}

/// Whether the produce behind `done` has finished. Polled, not peeked: a `Shared`
/// reports its output only once some clone has polled it, and nothing polls the turn
/// of an idempotent batch (it never waits for its predecessor), so `peek` said "still
/// under way" forever: every idempotent batch counted as overtaking, and a connection's
/// idempotent partitions were never pruned.
fn is_done(done: &Shared<oneshot::Receiver<()>>) -> bool {
    done.clone().now_or_never().is_some()
}

/// A produce's place in its partition's order; dropping it lets the next one go.
struct Turn {
    before: Option<Shared<oneshot::Receiver<()>>>,
    _done: oneshot::Sender<()>,
}

impl Turn {
    /// Whether the previous produce to the partition is still under way.
    fn predecessor_pending(&self) -> bool {
        self.before.as_ref().is_some_and(|b| !is_done(b))
    }

    /// Wait until the previous produce to the partition is done (answered or dropped).
    async fn predecessor_done(&self) {
        if let Some(b) = &self.before {
            let _ = b.clone().await;
        }
    }
}

fn unexpected(other: &ClientResponse) -> WireError {
    WireError::new(ErrorCode::Unknown, format!("unexpected answer {other:?}"))
}

impl Kafka {
    /// Answer a Produce request; `None` for `acks=0` (Kafka sends no response then).
    /// Each partition takes its turn in `order` now, in the connection's order; the
    /// returned future may then run alongside the connection's other produces.
    pub(super) fn produce(
        &self,
        req: ProduceRequest,
        version: i16,
        order: &mut PartitionOrder,
    ) -> impl Future<Output = Option<ProduceResponse>> + Send + '_ {
        let timeout_ms = u32::try_from(req.timeout_ms).unwrap_or(0).min(self.settings.produce_max_timeout_ms);
        let acks_code = req.acks;
        let acks = acks(req.acks);
        let topics: Vec<_> = req
            .topic_data
            .into_iter()
            .map(|t| {
                let name = t.name.0.to_string();
                let parts: Vec<_> = t
                    .partition_data
                    .into_iter()
                    .map(|p| {
                        let turn = order.turn(&name, p.index);
                        self.produce_partition(name.clone(), p, acks, timeout_ms, version, turn)
                    })
                    .collect();
                (t.name, parts)
            })
            .collect();
        async move {
            let topics = topics.into_iter().map(|(name, parts)| async move {
                let partition_responses = futures::future::join_all(parts).await;
                TopicProduceResponse::default().with_name(name).with_partition_responses(partition_responses)
            });
            let responses = futures::future::join_all(topics).await;
            (acks_code != 0).then(|| ProduceResponse::default().with_responses(responses))
        }
    }

    async fn produce_partition(
        &self,
        topic: String,
        p: PartitionProduceData,
        acks: Option<Acks>,
        timeout_ms: u32,
        version: i16,
        turn: Turn,
    ) -> PartitionProduceResponse {
        let mut out = PartitionProduceResponse::default().with_index(p.index);
        let result = match acks {
            None => Err((INVALID_REQUIRED_ACKS, "acks must be 0, 1 or -1".to_string())),
            Some(acks) => self.append(&topic, p.index, p.records, acks, timeout_ms, &turn).await,
        };
        drop(turn); // the partition's next produce on this connection may go
        match result {
            Ok(base) => out.base_offset = base,
            Err((code, message)) => {
                out.error_code = code;
                if version >= 8 {
                    out.error_message = Some(StrBytes::from_string(message));
                }
            }
        }
        out
    }

    /// Append a partition's batches in order; the base offset of the first (-1 when
    /// not known: `acks=0`).
    ///
    /// Batches without a producer id wait for the connection's previous produce to the
    /// partition to finish: nothing else keeps them in order. An idempotent producer's
    /// batch goes at once (up to 5 in flight per partition, as clients pipeline them);
    /// should it overtake its predecessor on the way (the gateway may forward, retry,
    /// take another path), the leader refuses it without writing (a gap in the
    /// sequence, or a producer it does not know yet), and it is sent again once the
    /// predecessor is done.
    async fn append(
        &self,
        topic: &str,
        partition: i32,
        records: Option<Bytes>,
        acks: Acks,
        timeout_ms: u32,
        turn: &Turn,
    ) -> Result<i64, (i16, String)> {
        let corrupt = |m: String| (ErrorCode::CorruptMessage.as_i16(), m);
        let partition = u32::try_from(partition)
            .map_err(|_| (ErrorCode::UnknownTopicOrPartition.as_i16(), format!("partition {partition}")))?;
        let records = records.ok_or_else(|| corrupt("no records".into()))?;
        let mut batches = Vec::new();
        for b in batch::split_batches(&records) {
            let b = b.map_err(|e| corrupt(format!("invalid record batch: {e}")))?;
            let h = batch::verify_crc(b).map_err(|e| corrupt(format!("invalid record batch: {e}")))?;
            batches.push((b, h.has_producer_id()));
        }
        let mut first = None;
        for (b, idempotent) in batches {
            if !idempotent {
                turn.predecessor_done().await;
            }
            let overtaking = idempotent && turn.predecessor_pending();
            let req = || {
                ClientRequest::Produce(ml::ProduceRequest {
                    topic: topic.to_string(),
                    partition,
                    acks,
                    timeout_ms,
                    leader_epoch: None,
                    batch: b.to_vec(),
                })
            };
            let mut answer = self.ask(req()).await;
            if overtaking && answer.as_ref().is_err_and(|e| overtaken(e.code)) {
                turn.predecessor_done().await;
                answer = self.ask(req()).await;
            }
            let base = match answer {
                Ok(ClientResponse::Produced(r)) => r.base_offset.map_or(-1, |o| o as i64),
                Ok(other) => return Err((ErrorCode::Unknown.as_i16(), unexpected(&other).message)),
                Err(e) => return Err((kafka_code(&e), e.message)),
            };
            first.get_or_insert(base);
        }
        first.ok_or_else(|| corrupt("no record batch".into()))
    }

    /// Answer a Fetch request: every partition at once; if together they hold less than
    /// `min_bytes`, wait up to `max_wait_ms` for the first to get data.
    pub(super) async fn fetch(&self, req: FetchRequest, version: i16) -> FetchResponse {
        let max_wait = (req.max_wait_ms.max(0) as u32).min(self.settings.fetch_max_wait_ms);
        let max_bytes = (req.max_bytes.max(1) as u32).min(self.settings.fetch_max_bytes);
        let wants: Vec<Want> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| Want {
                    topic: t.topic.0.to_string(),
                    partition: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: (p.partition_max_bytes.max(1) as u32).min(max_bytes),
                })
            })
            .collect();
        let mut got = futures::future::join_all(wants.iter().map(|w| self.fetch_one(w, 0))).await;
        let bytes: usize = got.iter().map(|g| g.as_ref().map_or(0, |f| f.records.len())).sum();
        let any_error = got.iter().any(Result::is_err);
        if max_wait > 0 && !any_error && bytes < req.min_bytes.max(1) as usize {
            self.long_poll(&wants, max_wait, &mut got).await;
        }
        let mut budget = Budget { left: max_bytes as usize, given: false };
        let mut responses: Vec<FetchableTopicResponse> = Vec::new();
        for (w, g) in wants.into_iter().zip(got) {
            let part = fetched(w.partition, g, &mut budget, version);
            match responses.last_mut() {
                Some(t) if *t.topic.0 == *w.topic => t.partitions.push(part),
                _ => responses.push(
                    FetchableTopicResponse::default()
                        .with_topic(kafka_protocol::messages::TopicName(StrBytes::from_string(w.topic)))
                        .with_partitions(vec![part]),
                ),
            }
        }
        FetchResponse::default().with_responses(responses)
    }

    /// Wait (up to `max_wait_ms`) for the first partition with data or an error, and
    /// put its answer in `got`.
    async fn long_poll(&self, wants: &[Want], max_wait_ms: u32, got: &mut [FetchResult]) {
        let mut polls: FuturesUnordered<_> = wants
            .iter()
            .enumerate()
            .map(|(i, w)| async move { (i, self.fetch_one(w, max_wait_ms).await) })
            .collect();
        let deadline = tokio::time::sleep(Duration::from_millis(u64::from(max_wait_ms)));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = polls.next() => match next {
                    Some((i, r)) => {
                        let done = r.as_ref().map_or(true, |f| !f.records.is_empty());
                        got[i] = r;
                        if done {
                            return;
                        }
                    }
                    None => return,
                },
                () = &mut deadline => return,
            }
        }
    }

    async fn fetch_one(&self, w: &Want, max_wait_ms: u32) -> FetchResult {
        let bad = |what: &str| WireError::new(ErrorCode::OffsetOutOfRange, format!("{what} out of range"));
        let partition = u32::try_from(w.partition)
            .map_err(|_| WireError::new(ErrorCode::UnknownTopicOrPartition, "negative partition"))?;
        let offset = u64::try_from(w.offset).map_err(|_| bad("negative offset"))?;
        let req = ClientRequest::Fetch(ml::FetchRequest {
            topic: w.topic.clone(),
            partition,
            offset,
            max_bytes: w.max_bytes,
            max_wait_ms,
            leader_epoch: None,
        });
        match self.ask(req).await? {
            ClientResponse::Fetched(f) => Ok(f),
            other => Err(unexpected(&other)),
        }
    }

    /// Answer a ListOffsets request: earliest (-2), latest (-1), or the first offset at
    /// or after a timestamp.
    pub(super) async fn list_offsets(&self, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
        let topics = req.topics.into_iter().map(|t| async move {
            let name = t.name.0.to_string();
            let parts = t.partitions.into_iter().map(|p| {
                let name = name.clone();
                async move {
                    let mut out =
                        ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    match self.offset_of(name, p.partition_index, p.timestamp).await {
                        Ok(o) => out.offset = o,
                        Err(code) => out.error_code = code,
                    }
                    if version >= 4 {
                        out.leader_epoch = -1;
                    }
                    out
                }
            });
            let partitions = futures::future::join_all(parts).await;
            ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions)
        });
        ListOffsetsResponse::default().with_topics(futures::future::join_all(topics).await)
    }

    async fn offset_of(&self, topic: String, partition: i32, timestamp: i64) -> Result<i64, i16> {
        let spec = match timestamp {
            -2 | -4 => OffsetSpec::Earliest, // -4: earliest local (no tiered storage here)
            -1 => OffsetSpec::Latest,
            t if t >= 0 => OffsetSpec::Timestamp(t),
            _ => return Err(ErrorCode::UnsupportedVersion.as_i16()), // -3 max timestamp: not yet
        };
        let partition = u32::try_from(partition).map_err(|_| ErrorCode::UnknownTopicOrPartition.as_i16())?;
        let found = self.list_offset(&topic, partition, spec).await?;
        // No record at or after the time: meshlog answers the end, Kafka -1. The end is
        // asked after, so an answer there found nothing (records only ever add to it).
        if matches!(spec, OffsetSpec::Timestamp(_))
            && found >= self.list_offset(&topic, partition, OffsetSpec::Latest).await?
        {
            return Ok(-1);
        }
        Ok(found)
    }

    async fn list_offset(&self, topic: &str, partition: u32, spec: OffsetSpec) -> Result<i64, i16> {
        let topic = topic.to_string();
        match self.ask(ClientRequest::ListOffsets { topic, partition, spec }).await {
            Ok(ClientResponse::Offset { offset }) => Ok(offset as i64),
            Ok(_) => Err(ErrorCode::Unknown.as_i16()),
            Err(e) => Err(kafka_code(&e)),
        }
    }
}

/// One partition a fetch asks for.
struct Want {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: u32,
}

type FetchResult = Result<ml::FetchResponse, WireError>;

/// What is left of a fetch response's `max_bytes`, and whether any data is in it yet.
struct Budget {
    left: usize,
    given: bool,
}

/// A partition's fetch answer, within what is left of the response's byte budget (the
/// first partition with data is always given whole, as Kafka does).
fn fetched(partition: i32, got: FetchResult, budget: &mut Budget, version: i16) -> PartitionData {
    let mut out = PartitionData::default().with_partition_index(partition);
    match got {
        Ok(f) => {
            let take = !budget.given || f.records.len() <= budget.left;
            let records = if take { f.records } else { Vec::new() };
            if !records.is_empty() {
                budget.given = true;
                budget.left = budget.left.saturating_sub(records.len());
            }
            out.high_watermark = f.high_watermark as i64;
            out.last_stable_offset = f.high_watermark as i64;
            if version >= 5 {
                out.log_start_offset = f.log_start_offset as i64;
            }
            out.records = Some(Bytes::from(records));
        }
        Err(e) => {
            out.error_code = kafka_code(&e);
            out.high_watermark = -1;
            out.records = Some(Bytes::new());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_produce_is_seen_done_without_being_awaited() {
        let mut order = PartitionOrder::default();
        let first = order.turn("t", 0);
        let second = order.turn("t", 0);
        assert!(second.predecessor_pending(), "the first produce is under way");
        drop(first);
        assert!(!second.predecessor_pending(), "the first produce is done once its turn is dropped");
        assert!(!order.turn("t", 1).predecessor_pending(), "a partition's first produce follows nothing");
    }

    #[test]
    fn finished_partitions_are_forgotten_past_the_bound() {
        let mut order = PartitionOrder::default();
        let live = order.turn("t", 0);
        for p in 1..ORDER_PRUNE_AT as i32 {
            drop(order.turn("t", p));
        }
        assert_eq!(order.last.len(), ORDER_PRUNE_AT);
        let _next = order.turn("t", ORDER_PRUNE_AT as i32);
        assert_eq!(order.last.len(), 2, "only the unfinished produce and the new one are kept");
        drop(live);
    }
}
