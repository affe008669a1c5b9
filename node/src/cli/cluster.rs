//! `meshlog cluster status`: members, their addresses and last-seen, partitions per
//! node, and who owns which partition.

use super::{output, ViewArgs};
use meshlog_protocol::mesh::ClusterStatus;
use std::collections::BTreeMap;

/// Cluster subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Show the mesh as the connected node sees it.
    Status {
        #[command(flatten)]
        view: ViewArgs,
    },
    /// One line with a verdict (HEALTHY, DEGRADED, UNHEALTHY) from every member's own
    /// view; exit code 0, 1 or 2, for scripts and probes.
    Health {
        #[command(flatten)]
        view: ViewArgs,
    },
}

/// Run a cluster subcommand.
pub async fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    let (server, json) = match cmd {
        ClusterCommand::Status { view: ViewArgs { server, json } } => (server, json),
        ClusterCommand::Health { view: ViewArgs { server, json } } => {
            let h = super::health::check(&server).await?;
            if json {
                output::json(&h)?;
            } else {
                println!("{}", h.line());
            }
            use std::io::Write as _;
            std::io::stdout().flush()?;
            std::process::exit(h.exit_code());
        }
    };
    let status = server.connect().await?.cluster_status().await?;
    if json {
        return output::json(&status);
    }
    println!("Answered by {}", status.node);
    println!();
    print_members(&status);
    println!();
    print_partitions(&status);
    print_breakers_and_outbox(&status);
    Ok(())
}

/// Members with the replicas each holds and the partitions each leads, as the answering
/// node sees them.
fn print_members(status: &ClusterStatus) {
    // Replicas held and partitions led, per member, as the answering node sees them.
    let mut held: BTreeMap<&str, usize> = BTreeMap::new();
    let mut leads: BTreeMap<&str, usize> = BTreeMap::new();
    for sets in status.topics.values() {
        for id in sets.iter().flatten() {
            *held.entry(id.as_str()).or_default() += 1;
        }
    }
    for (_, p) in &status.partitions {
        *leads.entry(p.leader.as_str()).or_default() += 1;
    }
    let rows: Vec<Vec<String>> = status
        .members
        .iter()
        .map(|m| {
            vec![
                output::short_id(&m.peer),
                m.state.clone(),
                output::ago(m.last_seen_ms_ago),
                held.get(m.peer.as_str()).copied().unwrap_or(0).to_string(),
                leads.get(m.peer.as_str()).copied().unwrap_or(0).to_string(),
                m.addrs.join(","),
            ]
        })
        .collect();
    output::table(&["MEMBER", "STATE", "LAST-SEEN", "REPLICAS", "LEADS", "ADDRESSES"], &rows);
}

/// Every partition: leader, epoch, replicas, ISR and offsets ("-" where unknown).
fn print_partitions(status: &ClusterStatus) {
    let (short, list) = (output::short_id, output::short_ids);
    let unknown = |p: &meshlog_protocol::types::PartitionStatus, v: u64| {
        if p.online {
            v.to_string()
        } else {
            "-".into()
        }
    };
    let prow: Vec<Vec<String>> = status
        .partitions
        .iter()
        .map(|(topic, p)| {
            vec![
                topic.clone(),
                p.partition.to_string(),
                if p.leader.is_empty() { "none".into() } else { short(&p.leader) },
                p.epoch.to_string(),
                list(&p.replicas),
                if p.online { list(&p.isr) } else { "-".into() },
                unknown(p, p.high_watermark),
                unknown(p, p.log_end_offset),
                if p.online { output::bytes(p.size_bytes) } else { "-".into() },
            ]
        })
        .collect();
    output::table(
        &["TOPIC", "PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "HIGH-WATERMARK", "LOG-END", "SIZE"],
        &prow,
    );
}

/// Open breakers and the outbox's backlog, when there are any.
fn print_breakers_and_outbox(status: &ClusterStatus) {
    if !status.breakers.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = status
            .breakers
            .iter()
            .map(|b| vec![output::short_id(&b.peer), b.state.clone(), output::duration_ms(b.retry_in_ms)])
            .collect();
        output::table(&["PEER", "BREAKER", "RETRY-IN"], &rows);
    }
    if !status.outbox.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = status
            .outbox
            .iter()
            .map(|o| {
                vec![o.topic.clone(), o.partition.to_string(), o.batches.to_string(), output::bytes(o.bytes)]
            })
            .collect();
        output::table(&["OUTBOX-TOPIC", "PARTITION", "BATCHES", "BYTES"], &rows);
    }
}
