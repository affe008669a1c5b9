//! `meshlog produce`: records from stdin, one per line, like kafka-console-producer.

use super::ServerArgs;
use crate::client::producer::{Producer, ProducerConfig};
use crate::time::unix_ms;
use meshlog_protocol::types::Acks;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Flags of `meshlog produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Topic to write to.
    topic: String,
    /// Use this key for every record.
    #[arg(long, conflicts_with = "key_separator")]
    key: Option<String>,
    /// Split each line at the first SEP into key and value.
    #[arg(long)]
    key_separator: Option<String>,
    /// Write every record to this partition.
    #[arg(long)]
    partition: Option<u32>,
    /// 0: no wait; 1: the leader flushed it; all: every in-sync replica flushed it;
    /// local: the node you reach stored it (its outbox forwards it to the partition's
    /// leader later: an edge node cut off from the mesh still takes writes).
    #[arg(long, default_value = "all")]
    acks: Acks,
    /// Seal a batch at this many bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    batch_size: usize,
    /// Send a batch at most this long after its first record.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Keep retrying a batch this long (through elections and lost answers; retries are
    /// never written twice) before giving up with its error.
    #[arg(long, default_value_t = 30_000)]
    delivery_timeout_ms: u64,
    #[command(flatten)]
    server: ServerArgs,
}

/// Run the producer until stdin ends.
pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let client = args.server.connect().await?;
    let cfg = ProducerConfig {
        acks: args.acks,
        batch_size_bytes: args.batch_size,
        linger: Duration::from_millis(args.linger_ms),
        partition: args.partition,
        delivery_timeout: Duration::from_millis(args.delivery_timeout_ms),
        ..ProducerConfig::default()
    };
    let mut producer = Producer::new(client, &args.topic, cfg).await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut tick = tokio::time::interval(Duration::from_millis(args.linger_ms.max(1)));
    let mut line_no = 0u64;
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                line_no += 1;
                let (key, value) = split(&line, args.key.as_deref(), args.key_separator.as_deref());
                producer
                    .send(key.map(str::as_bytes), value.as_bytes(), unix_ms())
                    .await
                    .map_err(|e| anyhow::anyhow!("line {line_no}: {e}"))?;
            }
            _ = tick.tick() => producer.tick().await?,
        }
    }
    producer.flush().await?;
    let s = producer.stats();
    eprintln!("Produced {} record(s) to {} (acks={}).", s.records, args.topic, args.acks);
    Ok(())
}

fn split<'a>(line: &'a str, key: Option<&'a str>, sep: Option<&str>) -> (Option<&'a str>, &'a str) {
    if let Some(k) = key {
        return (Some(k), line);
    }
    match sep.and_then(|s| line.split_once(s)) {
        Some((k, v)) => (Some(k), v),
        None => (None, line),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_separator_splits_at_the_first() {
        assert_eq!(super::split("a:b:c", None, Some(":")), (Some("a"), "b:c"));
        assert_eq!(super::split("abc", None, Some(":")), (None, "abc"));
        assert_eq!(super::split("abc", Some("k"), None), (Some("k"), "abc"));
    }
}
