//! `meshlog consume`: print records, like kafka-console-consumer.

use super::group::{reset_offsets, ResetTo};
use super::ServerArgs;
use crate::client::consumer::{self, StartAt};
use crate::client::group::{GroupConfig, GroupConsumer, ResetPolicy};
use crate::client::Client;
use meshlog_protocol::batch::Record;
use meshlog_protocol::group::Assignor;
use std::io::Write;
use std::time::{Duration, Instant};

/// Longest single long-poll, so Ctrl-C and the idle timeout are noticed promptly.
const POLL_WAIT_MS: u32 = 500;
/// Bytes asked for per fetch.
const FETCH_MAX_BYTES: u32 = 4 << 20;

/// Flags of `meshlog consume`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    topic: String,
    /// Read only this partition (default: every partition).
    #[arg(long, conflicts_with = "group")]
    partition: Option<u32>,
    /// Start at the oldest record kept (default: only new records).
    #[arg(long, conflicts_with_all = ["offset", "group"])]
    from_beginning: bool,
    /// Start at this offset (in each partition read).
    #[arg(long, conflicts_with = "group")]
    offset: Option<u64>,
    /// Read as a member of this consumer group: the group's members share the topic's
    /// partitions (a work queue), and what is printed is committed after each batch
    /// (at least once), so the group resumes where it left off.
    #[arg(long)]
    group: Option<String>,
    /// With --group: how partitions are spread (range, roundrobin, cooperative-sticky).
    #[arg(long, default_value = "cooperative-sticky", requires = "group")]
    assignor: Assignor,
    /// With --group: the member leaves the group this long after its last heartbeat.
    #[arg(long, default_value_t = 10_000, requires = "group")]
    session_timeout_ms: u64,
    /// With --group: where to start in a partition the group has no committed offset
    /// for (earliest: every task is done; latest: only new records).
    #[arg(long, default_value = "earliest", requires = "group")]
    auto_offset_reset: String,
    /// With --group: first move the group's committed offsets (earliest, latest or an
    /// offset), an admin action the group must be idle for.
    #[arg(long, requires = "group")]
    reset_offsets: Option<ResetTo>,
    /// With --group: the name `group describe` shows for this member.
    #[arg(long, default_value = "meshlog-consume", requires = "group")]
    client_id: String,
    /// Stop after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Stop after this long without a new record.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Print each record's key before its value (tab-separated).
    #[arg(long)]
    print_key: bool,
    /// Print each record's partition and offset before it (tab-separated).
    #[arg(long)]
    print_offset: bool,
    /// `text`: the value (with --print-key/--print-offset, tab-separated fields), one per
    /// line. `json`: one object per line with topic, partition, offset, timestamp, key,
    /// value and headers; bytes that are not UTF-8 are given base64-encoded in
    /// `key_base64`/`value_base64` instead, so any record survives the trip.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    server: ServerArgs,
}

/// How `consume` prints a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Consume until a stop condition or Ctrl-C.
pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let client = args.server.connect().await?;
    if let Some(group) = args.group.clone() {
        return consume_group(client, &args, &group).await;
    }
    let info = client.topic_info(&args.topic).await?;
    let partitions: Vec<u32> = match args.partition {
        Some(p) if p >= info.partitions => anyhow::bail!(
            "topic '{}' has {} partition(s); partition {p} does not exist",
            args.topic,
            info.partitions
        ),
        Some(p) => vec![p],
        None => (0..info.partitions).collect(),
    };
    let start = match (args.from_beginning, args.offset) {
        (true, _) => StartAt::Beginning,
        (false, Some(o)) => StartAt::Offset(o),
        (false, None) => StartAt::End,
    };
    let mut cursors = Vec::new();
    for &p in &partitions {
        cursors.push((p, consumer::start_offset(&client, &args.topic, p, start).await?));
    }
    let printed = tokio::select! {
        r = consume_loop(&client, &args, &mut cursors) => r?,
        _ = tokio::signal::ctrl_c() => 0,
    };
    eprintln!("Processed {printed} record(s).");
    Ok(())
}

async fn consume_loop(
    client: &Client,
    args: &ConsumeArgs,
    cursors: &mut [(u32, u64)],
) -> anyhow::Result<u64> {
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    let limit = args.max_messages.unwrap_or(u64::MAX);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while printed < limit {
        let fetches = cursors
            .iter()
            .map(|&(p, off)| consumer::fetch(client, &args.topic, p, off, FETCH_MAX_BYTES, POLL_WAIT_MS));
        let results = futures::future::join_all(fetches).await;
        let mut got_any = false;
        for ((p, off), res) in cursors.iter_mut().zip(results) {
            let fetched = res?;
            for r in &fetched.records {
                if printed >= limit {
                    break;
                }
                print_record(&mut out, args, *p, r)?;
                printed += 1;
                *off = r.offset as u64 + 1;
                got_any = true;
            }
            // Past the fetched batches too (an epoch marker holds no records), unless the
            // limit stopped the printing inside them.
            if printed < limit {
                *off = (*off).max(fetched.next_offset);
            }
        }
        out.flush()?;
        if got_any {
            last_record = Instant::now();
        } else if args.timeout_ms.is_some_and(|t| last_record.elapsed() >= Duration::from_millis(t)) {
            break;
        }
    }
    Ok(printed)
}

/// `consume --group`: a member of a consumer group, committing after each printed batch.
async fn consume_group(client: Client, args: &ConsumeArgs, group: &str) -> anyhow::Result<()> {
    let reset = match args.auto_offset_reset.as_str() {
        "earliest" => ResetPolicy::Earliest,
        "latest" => ResetPolicy::Latest,
        other => anyhow::bail!("--auto-offset-reset must be earliest or latest, not '{other}'"),
    };
    client.topic_info(&args.topic).await?;
    if let Some(to) = args.reset_offsets {
        for (tp, o) in reset_offsets(&client, group, &args.topic, None, to).await? {
            eprintln!("group {group}: {tp} reset to {o}");
        }
    }
    let mut cfg = GroupConfig::new(group, vec![args.topic.clone()]);
    cfg.assignor = args.assignor;
    cfg.session_timeout = Duration::from_millis(args.session_timeout_ms);
    cfg.reset = reset;
    cfg.client_id = args.client_id.clone();
    let mut member = GroupConsumer::new(client, cfg);
    let mut printed = 0u64;
    let outcome = tokio::select! {
        r = group_loop(&mut member, args, &mut printed) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    // Whatever was printed is committed, and the partitions move at once.
    if let Err(e) = member.close().await {
        eprintln!("warning: leaving the group failed: {e}");
    }
    eprintln!("Processed {printed} record(s).");
    outcome
}

async fn group_loop(member: &mut GroupConsumer, args: &ConsumeArgs, printed: &mut u64) -> anyhow::Result<()> {
    let limit = args.max_messages.unwrap_or(u64::MAX);
    let mut last_record = Instant::now();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while *printed < limit {
        let records = match member.poll().await {
            Ok(r) => r,
            // The coordinator moving or a long rebalance: keep trying (the position is
            // the last commit, so nothing is skipped).
            Err(e) if e.is_retriable() || is_rebalance(&e) => {
                tracing::warn!(error = %e, "group call failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let got_any = !records.is_empty();
        for c in records.iter().take((limit - *printed) as usize) {
            print_record(&mut out, args, c.tp.partition, &c.record)?;
            member.ack(c);
            *printed += 1;
        }
        out.flush()?;
        if got_any {
            last_record = Instant::now();
            if let Err(e) = member.commit().await {
                tracing::warn!(error = %e, "commit failed; the records since the last commit may be read again");
            }
        } else if args.timeout_ms.is_some_and(|t| last_record.elapsed() >= Duration::from_millis(t)) {
            break;
        }
    }
    Ok(())
}

fn is_rebalance(e: &crate::client::ClientError) -> bool {
    matches!(e, crate::client::ClientError::Server(w) if w.code == meshlog_protocol::ErrorCode::RebalanceInProgress)
}

/// One record as a line: `[partition\toffset\t][key\t]value`, or a JSON object.
fn print_record(out: &mut impl Write, args: &ConsumeArgs, partition: u32, r: &Record) -> std::io::Result<()> {
    if args.format == Format::Json {
        serde_json::to_writer(&mut *out, &record_json(&args.topic, partition, r))?;
        return out.write_all(b"\n");
    }
    if args.print_offset {
        write!(out, "{partition}\t{}\t", r.offset)?;
    }
    if args.print_key {
        out.write_all(r.key.as_deref().unwrap_or(b"null"))?;
        out.write_all(b"\t")?;
    }
    out.write_all(r.value.as_deref().unwrap_or(b"null"))?;
    out.write_all(b"\n")
}

/// A record as JSON: text fields where the bytes are UTF-8, `<field>_base64` where not,
/// `null` for a null key or value (a tombstone).
fn record_json(topic: &str, partition: u32, r: &Record) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    o.insert("topic".into(), topic.into());
    o.insert("partition".into(), partition.into());
    o.insert("offset".into(), r.offset.into());
    o.insert("timestamp".into(), r.timestamp.into());
    put_bytes(&mut o, "key", r.key.as_deref());
    put_bytes(&mut o, "value", r.value.as_deref());
    let headers: Vec<serde_json::Value> = r
        .headers
        .iter()
        .map(|h| {
            let mut ho = serde_json::Map::new();
            ho.insert("key".into(), h.key.clone().into());
            put_bytes(&mut ho, "value", h.value.as_deref());
            ho.into()
        })
        .collect();
    o.insert("headers".into(), headers.into());
    o.into()
}

fn put_bytes(o: &mut serde_json::Map<String, serde_json::Value>, field: &str, bytes: Option<&[u8]>) {
    use base64::Engine as _;
    match bytes.map(std::str::from_utf8) {
        None => {
            o.insert(field.into(), serde_json::Value::Null);
        }
        Some(Ok(text)) => {
            o.insert(field.into(), text.into());
        }
        Some(Err(_)) => {
            let b = base64::engine::general_purpose::STANDARD.encode(bytes.unwrap_or_default());
            o.insert(format!("{field}_base64"), b.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlog_protocol::batch::Header;

    #[test]
    fn json_records_keep_text_as_text_and_any_bytes_as_base64() {
        let r = Record {
            offset: 7,
            timestamp: 1_700_000_000_000,
            key: Some(vec![0xff, 0x00]),
            value: Some(b"hello".to_vec()),
            headers: vec![Header { key: "h".into(), value: None }],
        };
        let v = record_json("t", 2, &r);
        assert_eq!(
            v,
            serde_json::json!({
                "topic": "t", "partition": 2, "offset": 7, "timestamp": 1_700_000_000_000i64,
                "key_base64": "/wA=", "value": "hello", "headers": [{"key": "h", "value": null}],
            })
        );
    }
}
