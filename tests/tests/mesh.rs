//! Five nodes in one process, on loopback, joined through one bootstrap address: they
//! converge on the same membership and the same topic records, any node is an entry
//! point (produce through one, consume through another), a service registered on one
//! is discovered from every other and lapses after its TTL, and two nodes creating the
//! same topic at once end with one agreed record while the loser is told.

use meshlog::client::producer::{Producer, ProducerConfig};
use meshlog::client::{Client, ClientError};
use meshlog::network::Multiaddr;
use meshlog::server::{self, RunningNode};
use meshlog_protocol::messages::ServiceRegistration;
use meshlog_protocol::ErrorCode;
use meshlog_tests::{test_config, wait_until, LONG_BUDGET, SHORT_BUDGET};
use std::collections::{BTreeMap, BTreeSet};
use tempfile::TempDir;

struct Mesh {
    nodes: Vec<RunningNode>,
    clients: Vec<Client>,
    _dirs: Vec<TempDir>,
}

async fn start_mesh(n: usize) -> Mesh {
    let mut dirs = Vec::new();
    let mut nodes: Vec<RunningNode> = Vec::new();
    for i in 0..n {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        if i > 0 {
            cfg.bootstrap = vec![nodes[0].listen_addrs()[0].to_string()];
        }
        nodes.push(server::start(cfg).await.expect("node starts"));
        dirs.push(dir);
    }
    let mut clients = Vec::new();
    for node in &nodes {
        let addr: Multiaddr = node.listen_addrs()[0].clone();
        clients.push(Client::connect(&addr).await.expect("client connects"));
    }
    Mesh { nodes, clients, _dirs: dirs }
}

async fn wait_for_membership(mesh: &Mesh) {
    let n = mesh.nodes.len();
    for (i, c) in mesh.clients.iter().enumerate() {
        wait_until(&format!("node {i} sees {n} live members"), LONG_BUDGET, || async {
            let s = c.cluster_status().await.ok()?;
            (s.members.iter().filter(|m| m.state == "up").count() == n).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_converge_route_and_share_a_service_registry() {
    let mesh = start_mesh(5).await;
    // Phase 1: membership converges from one bootstrap address.
    wait_for_membership(&mesh).await;

    // Phase 2: a topic created on node 2 reaches every node with the same record.
    let info = mesh.clients[2].create_topic("orders", 6, 1, BTreeMap::new()).await.unwrap();
    for (i, c) in mesh.clients.iter().enumerate() {
        let seen = wait_until(&format!("node {i} knows 'orders'"), SHORT_BUDGET, || async {
            c.list_topics().await.ok()?.into_iter().find(|t| t.name == "orders")
        })
        .await;
        assert_eq!(seen.creation_id, info.creation_id, "node {i} agrees on the record");
    }
    let owners: BTreeSet<meshlog_protocol::NodeId> = mesh.clients[0].cluster_status().await.unwrap().topics
        ["orders"]
        .iter()
        .map(|r| r[0].clone())
        .collect();
    assert!(owners.len() > 1, "partitions are spread over several nodes: {owners:?}");

    // Phase 3: produce through node 1, consume through node 4.
    let mut p = Producer::new(mesh.clients[1].clone(), "orders", ProducerConfig::default()).await.unwrap();
    for i in 0..600u32 {
        p.send(Some(format!("k{}", i % 50).as_bytes()), format!("v{i}").as_bytes(), 1).await.unwrap();
    }
    p.flush().await.unwrap();
    let reader = &mesh.clients[4];
    let mut values = BTreeSet::new();
    for part in 0..6 {
        values.extend(
            meshlog_tests::read_partition(reader, "orders", part).await.iter().map(meshlog_tests::value_text),
        );
    }
    assert_eq!(values.len(), 600, "every record produced through node 1 is read through node 4");
    let desc = wait_until("provider records list every partition's owner", SHORT_BUDGET, || async {
        let d = mesh.clients[3].describe_topic("orders").await.ok()?;
        d.partitions.iter().all(|s| s.holders.contains(&s.leader)).then_some(d)
    })
    .await;
    assert!(desc.partitions.iter().all(|s| s.online), "describe reaches every owner");
    // The HWs cover the 600 records plus one epoch marker per leader elected over a log
    // that held something (none for the first leader of each partition, over an empty one).
    let hw_sum = desc.partitions.iter().map(|s| s.high_watermark).sum::<u64>();
    let epochs = desc.partitions.iter().map(|s| s.epoch.get()).sum::<u64>();
    assert!((600..=600 + epochs).contains(&hw_sum), "HW sum {hw_sum}, epochs {epochs}");

    // Phase 4: a service registered on node 3 is discovered from every node, then lapses.
    let reg = ServiceRegistration {
        name: "payments".into(),
        instance_id: None,
        endpoint: "http://10.0.0.7:8080".into(),
        ttl_ms: 2_000,
        meta: BTreeMap::from([("zone".into(), "a".into())]),
    };
    mesh.clients[3].register_service(reg).await.unwrap();
    for (i, c) in mesh.clients.iter().enumerate() {
        wait_until(&format!("node {i} discovers payments"), SHORT_BUDGET, || async {
            let found = c.discover_service("payments").await.ok()?;
            found.iter().any(|s| s.endpoint == "http://10.0.0.7:8080" && s.meta["zone"] == "a").then_some(())
        })
        .await;
    }
    for (i, c) in mesh.clients.iter().enumerate() {
        wait_until(&format!("payments lapses on node {i}"), SHORT_BUDGET, || async {
            c.discover_service("payments").await.ok()?.is_empty().then_some(())
        })
        .await;
    }

    // Phase 5: a node that leaves is seen as left; the rest stay up.
    let mut nodes = mesh.nodes;
    let leaving = nodes.pop().unwrap();
    let left_id = leaving.peer_id().to_string();
    leaving.shutdown().await;
    for (i, c) in mesh.clients.iter().take(4).enumerate() {
        wait_until(&format!("node {i} sees the leaver as left"), SHORT_BUDGET, || async {
            let s = c.cluster_status().await.ok()?;
            let m = s.members.iter().find(|m| m.peer == left_id)?;
            (m.state == "left" && s.members.iter().filter(|m| m.state == "up").count() == 4).then_some(())
        })
        .await;
    }
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creation_of_one_topic_converges_and_tells_the_loser() {
    let mesh = start_mesh(3).await;
    wait_for_membership(&mesh).await;
    let (a, b) = tokio::join!(
        mesh.clients[0].create_topic("race", 3, 1, BTreeMap::new()),
        mesh.clients[1].create_topic("race", 5, 1, BTreeMap::new()),
    );
    let winners: Vec<_> = [&a, &b].iter().filter_map(|r| r.as_ref().ok()).cloned().collect();
    let losers: Vec<_> = [&a, &b].iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(winners.len(), 1, "exactly one creation wins: {a:?} / {b:?}");
    match losers[0] {
        ClientError::Server(e) => assert_eq!(e.code, ErrorCode::TopicAlreadyExists, "{e}"),
        other => panic!("loser got {other}"),
    }
    for (i, c) in mesh.clients.iter().enumerate() {
        wait_until(&format!("node {i} agrees on the winner"), SHORT_BUDGET, || async {
            let t = c.list_topics().await.ok()?.into_iter().find(|t| t.name == "race")?;
            (t.creation_id == winners[0].creation_id && t.partitions == winners[0].partitions).then_some(())
        })
        .await;
    }
    for node in mesh.nodes {
        node.shutdown().await;
    }
}
