//! `meshlog topic create|list|describe|delete|alter`.

use super::{output, ViewArgs};
use meshlog_protocol::messages::{AlterTopic, AUTO_REPLICATION_FACTOR};
use meshlog_protocol::types::{TopicDescription, TopicInfo};
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
        /// Copies of each partition, or `auto`: min(3, the nodes in the mesh now). A
        /// topic does not gain replicas when nodes join later.
        #[arg(long, default_value = "auto", value_parser = parse_replication_factor)]
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
    /// Delete a topic: every node deletes its data (a node that is down does so when it
    /// is back), consumer groups lose its offsets, and the name can be created again as
    /// a new, empty topic.
    Delete {
        /// Topic name.
        name: String,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Add partitions to a topic (never remove) and/or change its config. New
    /// partitions are placed on the live nodes; producers use them after their next
    /// metadata refresh (keyed records then map to other partitions).
    Alter {
        /// Topic name.
        name: String,
        /// The new partition count (more than it has now).
        #[arg(long)]
        partitions: Option<u32>,
        /// Config to set as key=value, repeatable (as for create; min.insync.replicas
        /// cannot change).
        #[arg(long = "config", value_parser = parse_kv)]
        config: Vec<(String, String)>,
        /// Only check the change and show the topic it would make.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        view: ViewArgs,
    },
}

/// `auto` (min(3, the nodes in the mesh)) or a number from 1.
fn parse_replication_factor(s: &str) -> Result<u16, String> {
    match s {
        "auto" => Ok(AUTO_REPLICATION_FACTOR),
        n => match n.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("expected 'auto' or a number from 1, got '{s}'")),
            Ok(n) => Ok(n),
        },
    }
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
        TopicCommand::Delete { name, view: ViewArgs { server, json } } => {
            let info = server.connect().await?.delete_topic(&name).await?;
            if json {
                return output::json(&info);
            }
            println!("Deleted topic {} ({} partition(s)).", info.name, info.partitions);
        }
        TopicCommand::Alter { name, partitions, config, dry_run, view: ViewArgs { server, json } } => {
            let alter =
                AlterTopic { name, partitions, config: config.into_iter().collect(), validate_only: dry_run };
            let info = server.connect().await?.alter_topic(alter).await?;
            if json {
                return output::json(&info);
            }
            print_altered(&info, dry_run);
        }
    }
    Ok(())
}

fn print_altered(info: &TopicInfo, dry_run: bool) {
    let verb = if dry_run { "Would alter" } else { "Altered" };
    let cfg: Vec<String> = info.config.to_pairs().iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("{verb} topic {}: {} partition(s), config {}.", info.name, info.partitions, cfg.join(" "));
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
