//! Record decoding: walking a batch's records section into a sink (that stores nothing
//! when validating), copying records out ([`records`]) and rewriting a batch without
//! some of them for compaction ([`retain_records`]). Framing and CRC are checked by
//! `validate` first; a compressed batch's records are decompressed (bounded) first.

use super::header::patch;
use super::validate::{check_frame, walk_records};
use super::varint::{len_i32, Reader};
use super::{
    decompress, BatchError, BatchHeader, Codec, ATTRIBUTES_OFFSET, BATCH_HEADER_LEN,
    COMPRESSION_MASK, CRC_OFFSET, LOG_OVERHEAD, MAX_DECOMPRESSED_BYTES, MIN_RECORD_LEN,
    RECORDS_COUNT_OFFSET,
};
use std::borrow::Cow;

/// A record header: a UTF-8 key and an optional (nullable) value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// A decoded record with absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

/// One record as it appears in the batch, borrowing key and value.
pub(super) struct RawRecord<'a> {
    pub(super) timestamp_delta: i64,
    pub(super) offset_delta: i32,
    pub(super) key: Option<&'a [u8]>,
    pub(super) value: Option<&'a [u8]>,
    /// The whole record as encoded, length prefix included.
    pub(super) encoded: &'a [u8],
}

/// Receives what [`walk_records`] decodes. Each record's headers are
/// delivered (in order) before the record itself, so validation can use a
/// sink that stores nothing and never allocates.
pub(super) trait RecordSink<'a> {
    /// One header of the record currently being decoded.
    fn header(&mut self, key: &'a str, value: Option<&'a [u8]>);
    /// A fully decoded record; its headers were delivered just before.
    fn record(&mut self, rec: RawRecord<'a>);
}

/// Sink for [`validate`](fn@super::validate): decoding is the check, nothing is kept.
pub(super) struct Discard;

impl<'a> RecordSink<'a> for Discard {
    fn header(&mut self, _: &'a str, _: Option<&'a [u8]>) {}
    fn record(&mut self, _: RawRecord<'a>) {}
}

/// Decodes one record's headers (after the count) into `sink`.
fn decode_headers<'a>(
    body: &mut Reader<'a>,
    sink: &mut dyn RecordSink<'a>,
) -> Result<(), BatchError> {
    let count = body.varint()?;
    if count < 0 {
        return Err(BatchError::InvalidRecord { reason: "negative header count" });
    }
    for _ in 0..count {
        let key_len = body.varint()?;
        let key_len = usize::try_from(key_len)
            .map_err(|_| BatchError::InvalidRecord { reason: "negative header key length" })?;
        let key = std::str::from_utf8(body.take(key_len)?)
            .map_err(|_| BatchError::InvalidRecord { reason: "header key is not valid UTF-8" })?;
        let value = body.nullable_bytes("negative header value length other than -1")?;
        sink.header(key, value);
    }
    Ok(())
}

/// Decodes one record at the reader's position into `sink`, returning its
/// offset delta.
pub(super) fn decode_record<'a>(
    r: &mut Reader<'a>,
    sink: &mut dyn RecordSink<'a>,
) -> Result<i32, BatchError> {
    let record_start = r.pos;
    let len = r.varint()?;
    let len = usize::try_from(len)
        .map_err(|_| BatchError::InvalidRecord { reason: "negative record length" })?;
    let body_start = r.pos;
    r.take(len)?;
    // The body is parsed through a sub-reader confined to the declared
    // length so a lying length cannot make fields bleed into the next record.
    let mut body = Reader { buf: r.buf, pos: body_start, end: r.pos };
    let _attributes = body.i8()?; // unused in v2, ignored as Kafka does
    let timestamp_delta = body.varlong()?;
    let offset_delta = body.varint()?;
    let key = body.nullable_bytes("negative key length other than -1")?;
    let value = body.nullable_bytes("negative value length other than -1")?;
    decode_headers(&mut body, sink)?;
    if body.remaining() != 0 {
        return Err(BatchError::InvalidRecord {
            reason: "record length does not match its fields",
        });
    }
    let encoded = r.buf.get(record_start..r.pos).unwrap_or_default();
    sink.record(RawRecord { timestamp_delta, offset_delta, key, value, encoded });
    Ok(offset_delta)
}

/// Sink for [`records`]: copies records out with absolute offsets and
/// timestamps.
struct Collect {
    header: BatchHeader,
    out: Vec<Record>,
    pending: Vec<Header>,
}

impl<'a> RecordSink<'a> for Collect {
    fn header(&mut self, key: &'a str, value: Option<&'a [u8]>) {
        self.pending.push(Header { key: key.to_owned(), value: value.map(<[u8]>::to_vec) });
    }

    fn record(&mut self, rec: RawRecord<'a>) {
        let h = &self.header;
        let timestamp = if h.is_log_append_time() {
            h.max_timestamp
        } else {
            h.base_timestamp.wrapping_add(rec.timestamp_delta)
        };
        self.out.push(Record {
            offset: h.base_offset.wrapping_add(i64::from(rec.offset_delta)),
            timestamp,
            key: rec.key.map(<[u8]>::to_vec),
            value: rec.value.map(<[u8]>::to_vec),
            headers: std::mem::take(&mut self.pending),
        });
    }
}

/// Decode the records of one batch occupying exactly `bytes`.
///
/// Re-checks the frame (header, length, CRC32C, a known codec) and the
/// record structure, so it is safe on arbitrary bytes: it never panics and
/// returns errors instead. A compressed batch's records are decompressed into at
/// most [`MAX_DECOMPRESSED_BYTES`] (see [`records_within`]). Unlike [`validate`] it
/// accepts zero-record batches and non-contiguous offset deltas (as compaction can
/// produce) and applies no size limit to the batch. Offsets are `base_offset +
/// offsetDelta`; timestamps are `base_timestamp + timestampDelta`, or `max_timestamp`
/// for every record of a LogAppendTime batch, as Kafka's consumer reports them.
///
/// [`validate`]: fn@super::validate
pub fn records(batch: &[u8]) -> Result<Vec<Record>, BatchError> {
    records_within(batch, MAX_DECOMPRESSED_BYTES)
}

/// [`records`], with a compressed batch's records decompressed into at most
/// `max_decompressed` bytes (`DecompressedTooLarge` beyond).
pub fn records_within(batch: &[u8], max_decompressed: usize) -> Result<Vec<Record>, BatchError> {
    let header = check_frame(batch)?;
    let plain = plain(batch, &header, max_decompressed)?;
    let batch: &[u8] = &plain;
    // Bounded by the bytes present, so a huge recordsCount cannot force a
    // huge reservation.
    let count = usize::try_from(header.records_count).unwrap_or(0);
    let cap = count.min(batch.len().saturating_sub(BATCH_HEADER_LEN) / MIN_RECORD_LEN);
    let mut sink = Collect { header, out: Vec::with_capacity(cap), pending: Vec::new() };
    walk_records(batch, &header, false, &mut sink)?;
    Ok(sink.out)
}

/// The batch with its records readable: itself if uncompressed, else its header
/// followed by the decompressed records (at most `max` bytes of them). Only the
/// records are walked in it; its header still describes the stored batch.
fn plain<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
    max: usize,
) -> Result<Cow<'a, [u8]>, BatchError> {
    let codec = Codec::of(header.compression())?;
    if codec == Codec::None {
        return Ok(Cow::Borrowed(batch));
    }
    let (fixed, compressed) = batch.split_at(BATCH_HEADER_LEN.min(batch.len()));
    let records = decompress(codec, compressed, max)?;
    let mut out = Vec::with_capacity(fixed.len() + records.len());
    out.extend_from_slice(fixed);
    out.extend_from_slice(&records);
    Ok(Cow::Owned(out))
}

/// Sink for [`retain_records`]: the decoded records and each one's encoded
/// bytes, to copy the kept ones verbatim.
struct CollectEncoded<'a> {
    records: Collect,
    encoded: Vec<&'a [u8]>,
}

impl<'a> RecordSink<'a> for CollectEncoded<'a> {
    fn header(&mut self, key: &'a str, value: Option<&'a [u8]>) {
        self.records.header(key, value);
    }

    fn record(&mut self, rec: RawRecord<'a>) {
        self.encoded.push(rec.encoded);
        self.records.record(rec);
    }
}

/// Rewrite one batch occupying exactly `bytes` without the records `keep`
/// refuses (it sees each record as [`records`] decodes it): what log
/// compaction stores in place of the original. `None` if every record is
/// kept.
///
/// The new batch keeps the original's header (base offset, partition leader
/// epoch, attributes, lastOffsetDelta, timestamps, producer id, epoch and base
/// sequence), so its offset range and producer sequence range are unchanged,
/// and the kept records byte for byte (their offset and timestamp deltas,
/// keys, values and headers); only batchLength, recordsCount and the CRC32C
/// are recomputed. Keeping no record gives a valid empty batch (recordsCount
/// 0), as Kafka's cleaner does; [`records`], [`verify_crc`] and
/// [`parse_header`] accept it, [`validate`] (for producers) does not. Checks
/// the input as [`records`] does and never panics.
///
/// A compressed batch is decompressed (bounded as [`records`]); its kept records are
/// written uncompressed (the compression bits cleared), and only when that is smaller
/// than the original: else `None`, and the batch stays as it is.
///
/// [`verify_crc`]: super::verify_crc
/// [`parse_header`]: super::parse_header
/// [`validate`]: fn@super::validate
pub fn retain_records(
    bytes: &[u8],
    keep: impl FnMut(&Record) -> bool,
) -> Result<Option<Vec<u8>>, BatchError> {
    let header = check_frame(bytes)?;
    let plain = plain(bytes, &header, MAX_DECOMPRESSED_BYTES)?;
    let Some(mut out) = retain_plain(&plain, header, keep)? else { return Ok(None) };
    if header.compression() == 0 {
        return Ok(Some(out));
    }
    // Kept records are stored uncompressed: only if that is smaller than the original.
    if out.len() >= bytes.len() {
        return Ok(None);
    }
    let attributes = header.attributes & !COMPRESSION_MASK;
    patch(&mut out, ATTRIBUTES_OFFSET, &attributes.to_be_bytes())?;
    let crc = crc32c::crc32c(out.get(ATTRIBUTES_OFFSET..).unwrap_or_default());
    patch(&mut out, CRC_OFFSET, &crc.to_be_bytes())?;
    Ok(Some(out))
}

/// [`retain_records`] on a batch whose records are readable as they are.
fn retain_plain(
    bytes: &[u8],
    header: BatchHeader,
    mut keep: impl FnMut(&Record) -> bool,
) -> Result<Option<Vec<u8>>, BatchError> {
    let count = usize::try_from(header.records_count).unwrap_or(0);
    let cap = count.min(bytes.len().saturating_sub(BATCH_HEADER_LEN) / MIN_RECORD_LEN);
    let records = Collect { header, out: Vec::with_capacity(cap), pending: Vec::new() };
    let mut sink = CollectEncoded { records, encoded: Vec::with_capacity(cap) };
    walk_records(bytes, &header, false, &mut sink)?;
    let kept: Vec<&[u8]> = sink
        .records
        .out
        .iter()
        .zip(&sink.encoded)
        .filter(|(r, _)| keep(r))
        .map(|(_, e)| *e)
        .collect();
    if kept.len() == sink.encoded.len() {
        return Ok(None);
    }
    let fixed = bytes.get(..BATCH_HEADER_LEN).unwrap_or_default();
    let mut out = Vec::with_capacity(fixed.len() + kept.iter().map(|e| e.len()).sum::<usize>());
    out.extend_from_slice(fixed);
    kept.iter().for_each(|e| out.extend_from_slice(e));
    // Smaller than the (decompressed) input, bounded well within an i32.
    let batch_length = len_i32(out.len() - LOG_OVERHEAD);
    patch(&mut out, 8, &batch_length.to_be_bytes())?;
    patch(&mut out, RECORDS_COUNT_OFFSET, &len_i32(kept.len()).to_be_bytes())?;
    let crc = crc32c::crc32c(out.get(ATTRIBUTES_OFFSET..).unwrap_or_default());
    patch(&mut out, CRC_OFFSET, &crc.to_be_bytes())?;
    Ok(Some(out))
}
