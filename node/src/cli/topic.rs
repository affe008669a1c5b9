//! `meshlog topic create|list|describe`.

use super::{output, ViewArgs};
use meshlog_protocol::types::TopicDescription;
use std::collections::BTreeMap;

/// Topic subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name: letters, digits, '.', '_' and '-'.
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Copies of each partition.
        #[arg(long, default_value_t = 1)]
        replication_factor: u16,
        /// Topic config as key=value, repeatable (retention.ms, retention.bytes,
        /// max.message.bytes, min.insync.replicas, cleanup.policy=delete|compact,
        /// delete.retention.ms).
        #[arg(long = "config", value_parser = parse_kv)]
        config: Vec<(String, String)>,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// List topics.
    List {
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Show a topic's config and each partition's leader and offsets.
    Describe {
        /// Topic name.
        name: String,
        #[command(flatten)]
        view: ViewArgs,
    },
}

pub(super) fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got '{s}'")),
    }
}

/// Run a topic subcommand.
pub async fn run(cmd: TopicCommand) -> anyhow::Result<()> {
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            config,
            view: ViewArgs { server, json },
        } => {
            let client = server.connect().await?;
            let config: BTreeMap<_, _> = config.into_iter().collect();
            let info = client.create_topic(&name, partitions, replication_factor, config).await?;
            if json {
                return output::json(&info);
            }
            println!(
                "Created topic {} with {} partition(s), replication factor {}.",
                info.name, info.partitions, info.replication_factor
            );
        }
        TopicCommand::List { view: ViewArgs { server, json } } => {
            let topics = server.connect().await?.list_topics().await?;
            if json {
                return output::json(&topics);
            }
            let rows: Vec<Vec<String>> = topics
                .iter()
                .map(|t| vec![t.name.clone(), t.partitions.to_string(), t.replication_factor.to_string()])
                .collect();
            output::table(&["NAME", "PARTITIONS", "REPLICAS"], &rows);
        }
        TopicCommand::Describe { name, view: ViewArgs { server, json } } => {
            let d = server.connect().await?.describe_topic(&name).await?;
            if json {
                return output::json(&d);
            }
            print_description(&d);
        }
    }
    Ok(())
}

/// A topic's settings, then one row per partition.
fn print_description(d: &TopicDescription) {
    println!("NAME        {}", d.topic.name);
    println!("PARTITIONS  {}", d.topic.partitions);
    println!("REPLICAS    {}", d.topic.replication_factor);
    let cfg: Vec<String> = d.topic.config.to_pairs().iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("CONFIG      {}", cfg.join(" "));
    println!();
    let (short, list) = (output::short_id, output::short_ids);
    let rows: Vec<Vec<String>> = d
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                if p.leader.is_empty() { "none".into() } else { short(&p.leader) },
                p.epoch.to_string(),
                list(&p.replicas),
                list(&p.isr),
                p.log_start_offset.to_string(),
                p.high_watermark.to_string(),
                p.log_end_offset.to_string(),
                p.size_bytes.to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "PARTITION",
            "LEADER",
            "EPOCH",
            "REPLICAS",
            "ISR",
            "LOG-START",
            "HIGH-WATERMARK",
            "LOG-END",
            "SIZE-BYTES",
        ],
        &rows,
    );
}
