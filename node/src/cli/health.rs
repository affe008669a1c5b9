//! `meshlog cluster health`: one line with a verdict and an exit code, for scripts and
//! people: 0 healthy, 1 degraded (a member down or a partition under-replicated), 2
//! unhealthy (a partition without a leader, or no member answered).
//!
//! Each node knows the ISR only of the partitions it holds, so the command asks every
//! member that is up for its own view and merges them: a partition counts as led and in
//! sync as reported by the node that holds it and answers.

use super::ServerArgs;
use crate::network::Multiaddr;
use meshlog_protocol::mesh::ClusterStatus;
use meshlog_protocol::types::PartitionStatus;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one member may take to answer before it counts as not answering.
const MEMBER_BUDGET: Duration = Duration::from_secs(5);

/// The verdict and the counts behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// `healthy`, `degraded` or `unhealthy`.
    pub verdict: &'static str,
    /// Members the first node knows.
    pub members: usize,
    /// Of those, up.
    pub members_up: usize,
    /// Members that answered (their partitions' state is known exactly).
    pub members_answered: usize,
    /// Partitions in the mesh.
    pub partitions: usize,
    /// Partitions with no leader.
    pub leaderless: usize,
    /// Partitions led whose ISR is smaller than the replica set.
    pub under_replicated: usize,
}

impl Health {
    /// The process exit code for this verdict.
    pub fn exit_code(&self) -> i32 {
        match self.verdict {
            "healthy" => 0,
            "degraded" => 1,
            _ => 2,
        }
    }

    /// One line for a person.
    pub fn line(&self) -> String {
        format!(
            "{}: {}/{} members up, {}/{} partitions led, {} under-replicated",
            self.verdict.to_uppercase(),
            self.members_up,
            self.members,
            self.partitions - self.leaderless,
            self.partitions,
            self.under_replicated
        )
    }
}

/// Judge a mesh from the first node's status and every answering member's own.
pub fn judge(first: &ClusterStatus, answers: &[ClusterStatus]) -> Health {
    let mut best: BTreeMap<(String, u32), PartitionStatus> = BTreeMap::new();
    for (topic, p) in answers.iter().flat_map(|s| s.partitions.iter()).chain(first.partitions.iter()) {
        let key = (topic.clone(), p.partition);
        let better = match best.get(&key) {
            None => true,
            // A holder's own view beats gossip; among holders, the higher epoch.
            Some(b) => (p.online, p.epoch) > (b.online, b.epoch),
        };
        if better {
            best.insert(key, p.clone());
        }
    }
    let leaderless = best.values().filter(|p| p.leader.is_empty()).count();
    let under_replicated =
        best.values().filter(|p| !p.leader.is_empty() && p.online && p.isr.len() < p.replicas.len()).count();
    let members_up = first.members.iter().filter(|m| m.state == "up").count();
    let verdict = if answers.is_empty() || leaderless > 0 {
        "unhealthy"
    } else if under_replicated > 0 || members_up < first.members.len() {
        "degraded"
    } else {
        "healthy"
    };
    Health {
        verdict,
        members: first.members.len(),
        members_up,
        members_answered: answers.len(),
        partitions: best.len(),
        leaderless,
        under_replicated,
    }
}

/// Ask the given node, then every member it sees up, and judge.
pub async fn check(server: &ServerArgs) -> anyhow::Result<Health> {
    let first = server.connect().await?.cluster_status().await?;
    let mut answers = vec![first.clone()];
    for m in first.members.iter().filter(|m| m.state == "up" && m.peer != first.node) {
        let addrs: Vec<Multiaddr> = m.addrs.iter().filter_map(|a| a.parse().ok()).collect();
        if addrs.is_empty() {
            continue;
        }
        let one = ServerArgs { server: addrs, ..server.clone() };
        let asked = async { one.connect().await?.cluster_status().await.map_err(anyhow::Error::from) };
        match tokio::time::timeout(MEMBER_BUDGET, asked).await {
            Ok(Ok(s)) => answers.push(s),
            Ok(Err(e)) => tracing::warn!(member = %m.peer, error = %e, "member did not answer"),
            Err(_) => tracing::warn!(member = %m.peer, "member did not answer within {MEMBER_BUDGET:?}"),
        }
    }
    Ok(judge(&first, &answers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlog_protocol::mesh::MemberStatus;
    use meshlog_protocol::NodeId;

    fn member(peer: &str, state: &str) -> MemberStatus {
        MemberStatus {
            peer: peer.into(),
            addrs: vec![],
            state: state.into(),
            last_seen_ms_ago: 0,
            partitions: 0,
        }
    }

    fn part(p: u32, leader: &str, epoch: u64, isr: &[&str], online: bool) -> (String, PartitionStatus) {
        let replicas: Vec<NodeId> = ["a", "b", "c"].into_iter().map(NodeId::new).collect();
        let mut s = PartitionStatus::unknown(p, &replicas);
        s.leader = leader.into();
        s.epoch = meshlog_protocol::Epoch::new(epoch);
        s.isr = isr.iter().map(|s| NodeId::new(*s)).collect();
        s.online = online;
        ("t".into(), s)
    }

    fn status(
        node: &str,
        members: Vec<MemberStatus>,
        partitions: Vec<(String, PartitionStatus)>,
    ) -> ClusterStatus {
        ClusterStatus {
            node: node.into(),
            members,
            topics: BTreeMap::new(),
            breakers: vec![],
            outbox: vec![],
            partitions,
        }
    }

    #[test]
    fn a_holders_view_beats_gossip_and_sets_the_verdict() {
        let members = vec![member("a", "up"), member("b", "up"), member("c", "up")];
        // The first node holds p0 in full sync and knows p1 only by gossip.
        let first = status(
            "a",
            members.clone(),
            vec![part(0, "a", 1, &["a", "b", "c"], true), part(1, "b", 1, &[], false)],
        );
        let healthy_b = status("b", members.clone(), vec![part(1, "b", 1, &["a", "b", "c"], true)]);
        let h = judge(&first, &[first.clone(), healthy_b]);
        assert_eq!((h.verdict, h.partitions, h.leaderless, h.under_replicated), ("healthy", 2, 0, 0));
        assert_eq!(h.exit_code(), 0);

        let lagging_b = status("b", members.clone(), vec![part(1, "b", 2, &["b"], true)]);
        let h = judge(&first, &[first.clone(), lagging_b]);
        assert_eq!((h.verdict, h.under_replicated), ("degraded", 1));
        assert_eq!(h.exit_code(), 1);

        let no_leader = status("a", members, vec![part(0, "", 3, &[], true)]);
        let h = judge(&no_leader, std::slice::from_ref(&no_leader));
        assert_eq!((h.verdict, h.leaderless), ("unhealthy", 1));
        assert_eq!(h.line(), "UNHEALTHY: 3/3 members up, 0/1 partitions led, 0 under-replicated");
    }

    #[test]
    fn a_member_down_degrades_the_verdict() {
        let first = status(
            "a",
            vec![member("a", "up"), member("b", "down")],
            vec![part(0, "a", 1, &["a", "b", "c"], true)],
        );
        let mut h = judge(&first, std::slice::from_ref(&first));
        assert_eq!(h.verdict, "degraded");
        h = judge(&first, &[]);
        assert_eq!(h.verdict, "unhealthy");
    }
}
