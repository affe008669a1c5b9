//! Consumer-group lag for `/metrics`, sampled in the background: each node reports the
//! groups it coordinates (those of the offsets partitions it leads), so every group is
//! reported once in the mesh. A sample asks the local coordinator for its groups and
//! their committed offsets, and each partition's log end through the client API; a
//! scrape reads the last sample. Nothing is sampled while no offsets topic exists (the
//! admin port never creates it).

use super::Admin;
use meshlog_protocol::group::{GroupRequest, GroupResponse, OFFSETS_TOPIC};
use meshlog_protocol::messages::{ClientRequest, ClientResponse};
use meshlog_protocol::types::OffsetSpec;
use std::time::Duration;

/// How often lag is sampled (Prometheus's usual scrape interval).
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(15);
/// Most groups and partitions one sample covers.
const MAX_GROUPS: usize = 256;
const MAX_PARTITIONS: usize = 4096;

/// One partition's lag for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagRow {
    /// Group name.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Log end minus the committed offset.
    pub lag: u64,
}

async fn group_ask(admin: &Admin, req: GroupRequest) -> Option<GroupResponse> {
    match admin.ask(ClientRequest::Group(req)).await {
        Ok(ClientResponse::Group(g)) => Some(g),
        _ => None,
    }
}

/// The groups coordinated here, by the offsets partitions this node leads.
async fn local_groups(admin: &Admin) -> Vec<String> {
    let Ok(t) = admin.broker().topics().get(OFFSETS_TOPIC) else { return Vec::new() };
    let shards: Vec<u32> = t.held().filter(|(_, r)| r.is_leader()).map(|(p, _)| p).collect();
    let mut groups = Vec::new();
    for shard in shards {
        if let Some(GroupResponse::Groups(list)) = group_ask(admin, GroupRequest::List { shard }).await {
            groups.extend(list.into_iter().map(|g| g.group));
        }
    }
    groups.truncate(MAX_GROUPS);
    groups
}

/// Lag of every partition with a committed offset, for the groups coordinated here.
pub async fn sample(admin: &Admin) -> Vec<LagRow> {
    let mut rows = Vec::new();
    for group in local_groups(admin).await {
        let Some(GroupResponse::Group(d)) = group_ask(admin, GroupRequest::Describe { group }).await else {
            continue;
        };
        for (tp, committed) in d.offsets {
            if rows.len() >= MAX_PARTITIONS {
                return rows;
            }
            let req = ClientRequest::ListOffsets {
                topic: tp.topic.clone(),
                partition: tp.partition,
                spec: OffsetSpec::Latest,
            };
            if let Ok(ClientResponse::Offset { offset }) = admin.ask(req).await {
                let lag = offset.saturating_sub(committed.offset);
                rows.push(LagRow { group: d.group.clone(), topic: tp.topic, partition: tp.partition, lag });
            }
        }
    }
    rows
}
