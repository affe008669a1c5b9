//! Reading records back: resolve where to start, then fetch and decode batches.

use super::{unexpected, Client, ClientError};
use meshlog_protocol::batch::{self, Record};
use meshlog_protocol::messages::{ClientRequest, ClientResponse, FetchRequest};
use meshlog_protocol::types::OffsetSpec;
use meshlog_protocol::{ErrorCode, WireError};

/// Where a consumer starts in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record kept.
    Beginning,
    /// Only records written from now on.
    End,
    /// A given offset.
    Offset(u64),
}

/// Records read from one partition.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Records at or after the requested offset, in offset order.
    pub records: Vec<Record>,
    /// The next offset to ask for.
    pub next_offset: u64,
    /// The partition's high watermark.
    pub high_watermark: u64,
}

/// Resolve a start position to an offset.
pub async fn start_offset(
    client: &Client,
    topic: &str,
    partition: u32,
    at: StartAt,
) -> Result<u64, ClientError> {
    let spec = match at {
        StartAt::Offset(o) => return Ok(o),
        StartAt::Beginning => OffsetSpec::Earliest,
        StartAt::End => OffsetSpec::Latest,
    };
    let req = ClientRequest::ListOffsets { topic: topic.to_string(), partition, spec };
    match client.request(req).await? {
        ClientResponse::Offset { offset } => Ok(offset),
        other => Err(unexpected(other)),
    }
}

/// Fetch and decode records from `offset`, long-polling up to `max_wait_ms`.
pub async fn fetch(
    client: &Client,
    topic: &str,
    partition: u32,
    offset: u64,
    max_bytes: u32,
    max_wait_ms: u32,
) -> Result<Fetched, ClientError> {
    let req = ClientRequest::Fetch(FetchRequest {
        topic: topic.to_string(),
        partition,
        offset,
        max_bytes,
        max_wait_ms,
        leader_epoch: None,
    });
    let resp = match client.request(req).await? {
        ClientResponse::Fetched(f) => f,
        other => return Err(unexpected(other)),
    };
    let corrupt = |e: batch::BatchError| {
        ClientError::Server(WireError::new(
            ErrorCode::CorruptMessage,
            format!("fetched data is corrupt: {e}"),
        ))
    };
    let mut records = Vec::new();
    let mut next_offset = offset;
    for b in batch::split_batches(&resp.records) {
        let b = b.map_err(corrupt)?;
        let h = batch::parse_header(b).map_err(corrupt)?;
        next_offset = next_offset.max(h.last_offset().max(0) as u64 + 1);
        if h.is_control() {
            continue; // a leader's epoch-start marker, not data (Kafka's consumers skip these too)
        }
        records.extend(batch::records(b).map_err(corrupt)?.into_iter().filter(|r| r.offset >= offset as i64));
    }
    Ok(Fetched { records, next_offset, high_watermark: resp.high_watermark })
}
