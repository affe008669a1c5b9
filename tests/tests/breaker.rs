//! Circuit breakers on real processes: when the node owning a partition is killed,
//! requests forwarded to it through another node fail with a clear error, then fail
//! fast once the breaker opens (the dead peer is no longer dialled), and when the owner
//! comes back the breaker is probed and closes, and writes flow again.

use meshlog::client::ClientError;
use meshlog_protocol::batch::BatchBuilder;
use meshlog_protocol::messages::{ClientRequest, ProduceRequest};
use meshlog_protocol::types::Acks;
use meshlog_tests::{wait_until, TwoNodes, LONG_BUDGET};
use std::time::{Duration, Instant};

fn produce(p: u32) -> ClientRequest {
    let mut b = BatchBuilder::new();
    b.push(1, None, Some(b"x"), &[]);
    ClientRequest::Produce(ProduceRequest {
        topic: "t".into(),
        partition: p,
        acks: Acks::All,
        timeout_ms: 2000,
        leader_epoch: None,
        batch: b.build().unwrap(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_owner_opens_the_breaker_and_a_recovered_one_closes_it() {
    let mut nodes = TwoNodes::start("t").await;
    let (client, p, b_id) = (&nodes.client, nodes.remote_partition, nodes.b.peer_id());
    client.request(produce(p)).await.expect("forwarded write to b");

    // Phase 1: kill b; writes to its partition through a fail, then fail fast.
    nodes.b.kill9_ref();
    let mut slow = Duration::ZERO;
    let err = loop {
        let t = Instant::now();
        let e = client.request(produce(p)).await.expect_err("b is dead");
        if e.to_string().contains("circuit open") {
            break e;
        }
        slow = slow.max(t.elapsed());
        assert!(matches!(e, ClientError::Server(_)), "a clear server error: {e}");
    };
    let t = Instant::now();
    let _ = client.request(produce(p)).await.expect_err("still open");
    let fast = t.elapsed();
    assert!(err.to_string().contains(&b_id), "the error names the peer: {err}");
    let status = client.cluster_status().await.unwrap();
    assert!(status.breakers.iter().any(|br| br.peer == b_id && br.state == "open"), "{:?}", status.breakers);

    // Phase 2: b returns (same identity); after the cool-down a probe closes the breaker.
    let _b = nodes.restart_b();
    wait_until("writes reach b again", LONG_BUDGET, || async { client.request(produce(p)).await.ok() }).await;
    assert!(client.cluster_status().await.unwrap().breakers.is_empty(), "the breaker closed");
    println!(
        "figure: breaker: failing call to a dead peer took up to {} ms with the breaker closed, {} ms with it open",
        slow.as_millis(),
        fast.as_millis()
    );
}
