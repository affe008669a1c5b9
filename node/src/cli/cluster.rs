//! `meshlog cluster status`: members, their addresses and last-seen, partitions per
//! node, and who owns which partition.

use super::{output, ServerArgs};
use std::collections::BTreeMap;

/// Cluster subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Show the mesh as the connected node sees it.
    Status {
        #[command(flatten)]
        server: ServerArgs,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Run a cluster subcommand.
pub async fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    let ClusterCommand::Status { server, json } = cmd;
    let status = server.connect().await?.cluster_status().await?;
    if json {
        return output::json(&status);
    }
    println!("Answered by {}", status.node);
    println!();
    let mut owned: BTreeMap<&str, usize> = BTreeMap::new();
    for sets in status.topics.values() {
        for set in sets {
            if let Some(o) = set.first() {
                *owned.entry(o.as_str()).or_default() += 1;
            }
        }
    }
    let rows: Vec<Vec<String>> = status
        .members
        .iter()
        .map(|m| {
            vec![
                m.peer.clone(),
                m.state.clone(),
                format!("{}", m.last_seen_ms_ago),
                owned.get(m.peer.as_str()).copied().unwrap_or(0).to_string(),
                m.addrs.join(","),
            ]
        })
        .collect();
    output::table(&["MEMBER", "STATE", "LAST-SEEN-MS", "PARTITIONS", "ADDRESSES"], &rows);
    println!();
    let mut prow = Vec::new();
    for (topic, sets) in &status.topics {
        for (p, set) in sets.iter().enumerate() {
            prow.push(vec![
                topic.clone(),
                p.to_string(),
                set.first().cloned().unwrap_or_default(),
                set.join(","),
            ]);
        }
    }
    output::table(&["TOPIC", "PARTITION", "OWNER", "REPLICAS"], &prow);
    if !status.breakers.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = status
            .breakers
            .iter()
            .map(|b| vec![b.peer.clone(), b.state.clone(), format!("{}", b.retry_in_ms)])
            .collect();
        output::table(&["PEER", "BREAKER", "RETRY-IN-MS"], &rows);
    }
    if !status.outbox.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = status
            .outbox
            .iter()
            .map(|o| {
                vec![o.topic.clone(), o.partition.to_string(), o.batches.to_string(), o.bytes.to_string()]
            })
            .collect();
        output::table(&["OUTBOX-TOPIC", "PARTITION", "BATCHES", "BYTES"], &rows);
    }
    Ok(())
}
