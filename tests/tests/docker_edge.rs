//! Real hosts, a real cut: an edge node in its own container loses its network link to
//! the node owning a partition (`docker network disconnect`). A client on the edge host
//! keeps writing with `acks=local` and every write is accepted; `acks=all` writes fail
//! with a clear error rather than hanging. When the link is restored every accepted
//! record reaches the partition's log exactly once, in order.
//!
//! Skips (printing `SKIP:`) without Docker, except in CI (`CI` set), where it fails.

use meshlog_tests::docker::{require_docker, wait_for, DockerNet, DockerNode};
use meshlog_tests::LONG_BUDGET;
use serde_json::Value;
use std::time::{Duration, Instant};

const LOCAL: &str = "/ip4/127.0.0.1/tcp/9494";

fn status(edge: &DockerNode) -> Option<Value> {
    let out = edge.exec(&["cluster", "status", "--json", "--server", LOCAL], None);
    (out.code == 0).then(|| serde_json::from_str(&out.stdout).ok()).flatten()
}

#[test]
fn an_edge_node_cut_off_from_the_owner_keeps_and_then_delivers_every_local_write() {
    if !require_docker() {
        return;
    }
    let net = DockerNet::create("edge");
    let mut edge = DockerNode::run(&net, "edge", &[]);
    let mut owner = DockerNode::run(&net, "owner", &[]);
    edge.wait_listening(LONG_BUDGET);
    owner.wait_listening(LONG_BUDGET);
    wait_for("the two nodes form a mesh", LONG_BUDGET, || {
        status(&edge).is_some_and(|v| {
            v["members"].as_array().is_some_and(|m| m.iter().filter(|m| m["state"] == "up").count() == 2)
        })
    });
    // One partition per node: the owner's one is the one the edge must forward to.
    let out = edge.exec(&["topic", "create", "readings", "--partitions", "2", "--server", LOCAL], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let owner_id = owner.addr().rsplit('/').next().unwrap().to_string();
    let topics = status(&edge).unwrap()["topics"]["readings"].clone();
    let p =
        topics.as_array().unwrap().iter().position(|r| r[0] == owner_id.as_str()).expect("owner holds one");
    let p = p.to_string();

    // Phase 1: cut the owner off; acks=local writes on the edge are all accepted.
    owner.disconnect();
    let lines: String = (0..200).map(|i| format!("reading-{i:03}\n")).collect();
    let out = edge.exec(
        &["produce", "readings", "--partition", &p, "--acks", "local", "--server", LOCAL],
        Some(lines.as_bytes()),
    );
    assert_eq!(out.code, 0, "acks=local during the cut: {}", out.stderr);
    let t = Instant::now();
    let out = edge.exec(
        &[
            "produce",
            "readings",
            "--partition",
            &p,
            "--acks",
            "all",
            "--delivery-timeout-ms",
            "5000",
            "--server",
            LOCAL,
        ],
        Some(b"x\n"),
    );
    assert_ne!(out.code, 0, "acks=all cannot succeed during the cut");
    assert!(t.elapsed() < Duration::from_secs(60), "acks=all must fail, not hang");
    assert!(
        // Unreachable, or (once its lease lapsed and it was marked down) no replica left.
        out.stderr.contains("cannot be reached")
            || out.stderr.contains("circuit open")
            || out.stderr.contains("no reachable replica"),
        "{}",
        out.stderr
    );
    let depth = status(&edge).unwrap()["outbox"].clone();
    assert!(depth.as_array().is_some_and(|d| !d.is_empty()), "outbox depth shown: {depth}");

    // Phase 2: heal; the outbox drains and the log holds every record once, in order.
    let healed = Instant::now();
    owner.connect();
    wait_for("the outbox drains", LONG_BUDGET, || {
        status(&edge).is_some_and(|v| v["outbox"].as_array().is_some_and(|d| d.is_empty()))
    });
    let drain_s = healed.elapsed().as_secs_f64();
    let out = edge.exec(
        &[
            "consume",
            "readings",
            "--partition",
            &p,
            "--from-beginning",
            "--timeout-ms",
            "2000",
            "--server",
            LOCAL,
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut got: Vec<&str> = out.stdout.lines().collect();
    // The refused acks=all write "x" may still land once, last: its request may have
    // been sent into the cut connection before the producer gave up, and the heal
    // delivers it (a timed-out produce's outcome is unknown, as in Kafka). It never
    // lands twice, nor among the outbox's records.
    let late_x = got.last() == Some(&"x");
    if late_x {
        got.pop();
    }
    let want: Vec<String> = (0..200).map(|i| format!("reading-{i:03}")).collect();
    assert_eq!(got, want, "every accepted record exactly once, in order (late x: {late_x})");
    println!("figure: docker edge cut: 200 acks=local records accepted during the cut, delivered {drain_s:.1} s after the heal; lost 0, duplicated 0, reordered 0; refused acks=all write landed late: {late_x}");
}
