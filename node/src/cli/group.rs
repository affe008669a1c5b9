//! `meshlog group list|describe|reset-offsets`, like kafka-consumer-groups.

use super::{output, ServerArgs, ViewArgs};
use crate::client::consumer::{self, StartAt};
use crate::client::Client;
use meshlog_protocol::group::{GroupDescription, TopicPartition};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Group subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// List every consumer group in the mesh.
    List {
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Show a group's members and, per partition, committed offset, log end and lag.
    Describe {
        /// Group name.
        group: String,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Move a group's committed offsets (the group must have no active members).
    ResetOffsets {
        /// Group name.
        group: String,
        /// The topic whose offsets move.
        #[arg(long)]
        topic: String,
        /// Only this partition (default: every partition of the topic).
        #[arg(long)]
        partition: Option<u32>,
        /// Where to: earliest, latest, or an offset.
        #[arg(long)]
        to: ResetTo,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// A reset target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The oldest record kept.
    Earliest,
    /// The end of the log (skip everything written so far).
    Latest,
    /// An offset (clamped to the partition's kept range).
    Offset(u64),
}

impl std::str::FromStr for ResetTo {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "earliest" => Ok(ResetTo::Earliest),
            "latest" => Ok(ResetTo::Latest),
            n => n
                .parse()
                .map(ResetTo::Offset)
                .map_err(|_| format!("expected earliest, latest or an offset, not '{s}'")),
        }
    }
}

/// One partition's row of `group describe`.
#[derive(Debug, Serialize)]
struct LagRow {
    topic: String,
    partition: u32,
    committed: Option<u64>,
    log_end: Option<u64>,
    lag: Option<u64>,
    member_id: Option<String>,
    client_id: Option<String>,
}

/// `group describe --json`.
#[derive(Debug, Serialize)]
struct Described {
    #[serde(flatten)]
    group: GroupDescription,
    partitions: Vec<LagRow>,
    total_lag: u64,
}

/// Run a group subcommand.
pub async fn run(cmd: GroupCommand) -> anyhow::Result<()> {
    match cmd {
        GroupCommand::List { view: ViewArgs { server, json } } => {
            let groups = server.connect().await?.list_groups().await?;
            if json {
                return output::json(&groups);
            }
            let rows: Vec<Vec<String>> = groups
                .iter()
                .map(|g| {
                    vec![
                        g.group.clone(),
                        g.state.name().to_string(),
                        g.members.to_string(),
                        output::short_id(&g.coordinator),
                    ]
                })
                .collect();
            output::table(&["GROUP", "STATE", "MEMBERS", "COORDINATOR"], &rows);
        }
        GroupCommand::Describe { group, view: ViewArgs { server, json } } => {
            let client = server.connect().await?;
            let d = describe(&client, &group).await?;
            if json {
                return output::json(&d);
            }
            let g = &d.group;
            println!("GROUP        {}", g.group);
            println!("STATE        {}", g.state.name());
            println!("GENERATION   {}", g.generation);
            println!("ASSIGNOR     {}", g.assignor);
            println!("COORDINATOR  {}", output::short_id(&g.coordinator));
            println!("MEMBERS      {}", g.members.len());
            println!("TOTAL-LAG    {}", d.total_lag);
            println!();
            let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
            let rows: Vec<Vec<String>> = d
                .partitions
                .iter()
                .map(|r| {
                    vec![
                        r.topic.clone(),
                        r.partition.to_string(),
                        opt(r.committed),
                        opt(r.log_end),
                        opt(r.lag),
                        r.member_id.clone().unwrap_or_else(|| "-".into()),
                        r.client_id.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            output::table(
                &["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "MEMBER-ID", "CLIENT-ID"],
                &rows,
            );
        }
        GroupCommand::ResetOffsets { group, topic, partition, to, server } => {
            let client = server.connect().await?;
            let moved = reset_offsets(&client, &group, &topic, partition, to).await?;
            for (tp, o) in moved {
                println!("{}\t{}\t{o}", tp.topic, tp.partition);
            }
        }
    }
    Ok(())
}

/// A group with its lag: every partition of every subscribed or committed topic.
async fn describe(client: &Client, group: &str) -> anyhow::Result<Described> {
    let g = client.describe_group(group).await?;
    let committed: BTreeMap<&TopicPartition, u64> = g.offsets.iter().map(|(tp, o)| (tp, o.offset)).collect();
    let owner: BTreeMap<&TopicPartition, (&str, &str)> = g
        .members
        .iter()
        .flat_map(|m| m.partitions.iter().map(move |tp| (tp, (m.member_id.as_str(), m.client_id.as_str()))))
        .collect();
    let mut topics: BTreeSet<&str> = g.offsets.iter().map(|(tp, _)| tp.topic.as_str()).collect();
    topics.extend(g.members.iter().flat_map(|m| m.topics.iter().map(String::as_str)));
    let mut partitions = Vec::new();
    for topic in topics {
        let Ok(info) = client.topic_info(topic).await else { continue };
        for p in 0..info.partitions {
            let tp = TopicPartition::new(topic, p);
            let log_end = consumer::start_offset(client, topic, p, StartAt::End).await.ok();
            let c = committed.get(&tp).copied();
            let lag = match (c, log_end) {
                (Some(c), Some(e)) => Some(e.saturating_sub(c)),
                _ => None,
            };
            let (member_id, client_id) = match owner.get(&tp) {
                Some((m, c)) => (Some(m.to_string()), Some(c.to_string())),
                None => (None, None),
            };
            partitions.push(LagRow {
                topic: topic.to_string(),
                partition: p,
                committed: c,
                log_end,
                lag,
                member_id,
                client_id,
            });
        }
    }
    let total_lag = partitions.iter().filter_map(|r| r.lag).sum();
    Ok(Described { group: g, partitions, total_lag })
}

/// Set a group's offsets for a topic (or one partition); returns what was set.
pub async fn reset_offsets(
    client: &Client,
    group: &str,
    topic: &str,
    partition: Option<u32>,
    to: ResetTo,
) -> anyhow::Result<Vec<(TopicPartition, u64)>> {
    let info = client.topic_info(topic).await?;
    let parts: Vec<u32> = match partition {
        Some(p) if p >= info.partitions => {
            anyhow::bail!(
                "topic '{topic}' has {} partition(s); partition {p} does not exist",
                info.partitions
            )
        }
        Some(p) => vec![p],
        None => (0..info.partitions).collect(),
    };
    let mut offsets = Vec::new();
    for p in parts {
        let start = consumer::start_offset(client, topic, p, StartAt::Beginning).await?;
        let end = consumer::start_offset(client, topic, p, StartAt::End).await?;
        let at = match to {
            ResetTo::Earliest => start,
            ResetTo::Latest => end,
            ResetTo::Offset(o) => o.clamp(start, end),
        };
        offsets.push((TopicPartition::new(topic, p), at));
    }
    client.set_offsets(group, offsets.clone()).await?;
    Ok(offsets)
}
