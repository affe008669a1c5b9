//! Real hosts, cut apart: three `meshlog node` containers hold a partition with
//! replication factor 3. The leader's container is disconnected from the network while
//! clients keep writing on both sides (on the cut-off leader's own host, and on a
//! follower's). The minority side must acknowledge nothing; the majority elects a new
//! leader and goes on; after the heal the old leader follows, its unacknowledged tail is
//! gone, and every acknowledged record is there once. No epoch ever has two leaders.
//!
//! Skips (printing `SKIP:`) without Docker, except in CI (`CI` set), where it fails.

use meshlog_protocol::Epoch;
use meshlog_tests::cluster::max_leaders_per_epoch;
use meshlog_tests::docker::{require_docker, wait_for, DockerNet, DockerNode};
use meshlog_tests::LONG_BUDGET;
use serde_json::Value;
use std::collections::BTreeSet;

const LOCAL: &str = "/ip4/127.0.0.1/tcp/9494";

/// A node's own view of partition 0 of `t`: (leader, epoch, isr size), from its host.
fn view(node: &DockerNode) -> Option<(String, Epoch, usize)> {
    let out = node.exec(&["cluster", "status", "--json", "--server", LOCAL], None);
    let v: Value = serde_json::from_str(&out.stdout).ok()?;
    let p = v["partitions"].as_array()?.iter().find(|p| p[0] == "t" && p[1]["online"] == true)?.clone();
    let s = &p[1];
    Some((s["leader"].as_str()?.to_string(), Epoch::new(s["epoch"].as_u64()?), s["isr"].as_array()?.len()))
}

fn produce(node: &DockerNode, values: &[String], delivery_timeout_ms: &str) -> bool {
    let input: String = values.iter().map(|v| format!("{v}\n")).collect();
    let args =
        ["produce", "t", "--partition", "0", "--delivery-timeout-ms", delivery_timeout_ms, "--server", LOCAL];
    node.exec(&args, Some(input.as_bytes())).code == 0
}

#[test]
fn a_leader_cut_off_from_its_followers_acknowledges_nothing_and_the_majority_goes_on() {
    if !require_docker() {
        return;
    }
    let net = DockerNet::create("cut");
    let mut nodes: Vec<DockerNode> = (0..3).map(|i| DockerNode::run(&net, &format!("c{i}"), &[])).collect();
    let ids: Vec<String> = nodes
        .iter_mut()
        .map(|n| n.wait_listening(LONG_BUDGET).rsplit('/').next().unwrap().to_string())
        .collect();
    wait_for("three members up", LONG_BUDGET, || {
        let out = nodes[0].exec(&["cluster", "status", "--json", "--server", LOCAL], None);
        serde_json::from_str::<Value>(&out.stdout).is_ok_and(|v| {
            v["members"].as_array().is_some_and(|m| m.iter().filter(|m| m["state"] == "up").count() == 3)
        })
    });
    let out = nodes[0].exec(
        &["topic", "create", "t", "--partitions", "1", "--replication-factor", "3", "--server", LOCAL],
        None,
    );
    assert_eq!(out.code, 0, "create: {}", out.stderr);
    let mut claims: Vec<(Epoch, usize)> = Vec::new();
    let observe = |nodes: &[DockerNode], claims: &mut Vec<(Epoch, usize)>| {
        for (i, n) in nodes.iter().enumerate() {
            if let Some((leader, epoch, _)) = view(n) {
                if leader == ids[i] {
                    claims.push((epoch, i));
                }
            }
        }
    };
    let mut leader = None;
    wait_for("a leader with three in-sync replicas", LONG_BUDGET, || {
        leader = nodes.iter().enumerate().find_map(|(i, n)| {
            view(n).filter(|(l, _, isr)| *l == ids[i] && *isr == 3).map(|(_, e, _)| (i, e))
        });
        leader.is_some()
    });
    let (old, epoch) = leader.unwrap();
    let follower = (old + 1) % 3;
    let before: Vec<String> = (0..100).map(|i| format!("before-{i:03}")).collect();
    assert!(produce(&nodes[follower], &before, "30000"), "writes before the cut");
    observe(&nodes, &mut claims);

    // The cut: the old leader alone on one side, clients writing on both.
    nodes[old].disconnect();
    let minority: Vec<String> = (0..20).map(|i| format!("minority-{i:03}")).collect();
    let mut minority_acked = 0;
    for chunk in minority.chunks(5) {
        minority_acked += produce(&nodes[old], chunk, "3000") as usize;
    }
    let majority: Vec<String> = (0..100).map(|i| format!("majority-{i:03}")).collect();
    assert!(produce(&nodes[follower], &majority, "30000"), "the majority side writes on");
    let mut new = None;
    wait_for("the majority has a leader of a later epoch", LONG_BUDGET, || {
        new = (0..3).filter(|i| *i != old).find_map(|i| {
            view(&nodes[i]).filter(|(l, e, _)| *l == ids[i] && *e > epoch).map(|(_, e, _)| (i, e))
        });
        new.is_some()
    });
    let (new_leader, new_epoch) = new.unwrap();
    observe(&nodes, &mut claims);

    // Heal: the old leader follows the new epoch and its unacknowledged tail is dropped.
    nodes[old].connect();
    wait_for("the old leader follows the new epoch", LONG_BUDGET, || {
        view(&nodes[old]).is_some_and(|(l, e, _)| l == ids[new_leader] && e >= new_epoch)
    });
    wait_for("three in-sync replicas again", LONG_BUDGET, || {
        view(&nodes[new_leader]).is_some_and(|(_, _, isr)| isr == 3)
    });
    observe(&nodes, &mut claims);
    let after: Vec<String> = (0..50).map(|i| format!("after-{i:03}")).collect();
    assert!(produce(&nodes[old], &after, "30000"), "writes through the healed node");

    // Every acknowledged record once, in order; nothing of the minority's.
    let out = nodes[old]
        .exec(&["consume", "t", "--from-beginning", "--timeout-ms", "2000", "--server", LOCAL], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got: Vec<&str> = out.stdout.lines().collect();
    let want: Vec<&str> = before.iter().chain(&majority).chain(&after).map(String::as_str).collect();
    let got_set: BTreeSet<&str> = got.iter().copied().collect();
    let minority_in_log = minority.iter().filter(|m| got_set.contains(m.as_str())).count();
    assert_eq!(minority_acked, 0, "the cut-off leader acknowledged writes");
    assert_eq!(minority_in_log, 0, "unacknowledged minority writes survived the heal");
    assert_eq!(got, want, "every acknowledged record exactly once, in order");
    assert_eq!(max_leaders_per_epoch(&claims), 1, "two leaders in one epoch: {claims:?}");
    println!(
        "figure: docker cut of the leader (epoch {epoch}) with clients on both sides: writes acked by the minority 0 of \
         {} attempted batches; new leader epoch {new_epoch}; after the heal lost 0 of {}, duplicated 0, minority records \
         left 0; leaders per epoch max {}",
        minority.len() / 5,
        want.len(),
        max_leaders_per_epoch(&claims)
    );
}
