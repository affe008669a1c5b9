//! `meshlog consume`: print records, like kafka-console-consumer.

use super::ServerArgs;
use crate::client::consumer::{self, StartAt};
use crate::client::Client;
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
    #[arg(long)]
    partition: Option<u32>,
    /// Start at the oldest record kept (default: only new records).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset (in each partition read).
    #[arg(long)]
    offset: Option<u64>,
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
    #[command(flatten)]
    server: ServerArgs,
}

/// Consume until a stop condition or Ctrl-C.
pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let client = args.server.connect().await?;
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
                if args.print_offset {
                    write!(out, "{p}\t{}\t", r.offset)?;
                }
                if args.print_key {
                    out.write_all(r.key.as_deref().unwrap_or(b"null"))?;
                    out.write_all(b"\t")?;
                }
                out.write_all(r.value.as_deref().unwrap_or(b"null"))?;
                out.write_all(b"\n")?;
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
