//! One `meshlog node` in a Docker container, used over a real network from another
//! container: a client on another host (another IP on a private bridge network) creates
//! a topic, produces 1000 records and reads all 1000 back in order; after the container
//! is killed with SIGKILL (`docker kill -s KILL`) and started again on the same data, all
//! 1000 are still there, in order.
//!
//! Skips (printing `SKIP:`) without Docker, except in CI (`CI` set), where it fails.

use meshlog_tests::docker::{image, require_docker, DockerNet, DockerNode};
use meshlog_tests::LONG_BUDGET;
use std::time::Instant;

const RECORDS: usize = 1000;

#[test]
fn a_containerised_node_serves_another_host_and_keeps_acked_records_across_docker_kill() {
    if !require_docker() {
        return;
    }
    let t0 = Instant::now();
    let tag = image();
    let image_s = t0.elapsed().as_secs_f64();

    // Phase 1: a network and one node; the client will dial the node's container IP.
    let net = DockerNet::create("single");
    let t1 = Instant::now();
    let mut node = DockerNode::run(&net, "node", &[]);
    let addr = node.wait_listening(LONG_BUDGET);
    let listen_s = t1.elapsed().as_secs_f64();
    assert!(addr.starts_with(&format!("/ip4/{}/tcp/", node.ip())), "{addr}");
    println!("phase 1: {tag} node {} listening on {addr}", node.name());

    // Phase 2: from a client container, create a topic and produce 1000 lines. One
    // partition, so "in order" is a total order.
    let out = net.run_cli(&addr, &["topic", "create", "lines", "--partitions", "1"], None);
    assert_eq!(out.code, 0, "topic create: {}{}", out.stdout, out.stderr);
    let expected: Vec<String> = (0..RECORDS).map(|i| format!("line-{i:04}")).collect();
    let input = expected.iter().map(|l| format!("{l}\n")).collect::<String>();
    let t2 = Instant::now();
    let out = net.run_cli(&addr, &["produce", "lines"], Some(input.as_bytes()));
    let produce_s = t2.elapsed().as_secs_f64();
    assert_eq!(out.code, 0, "produce: {}", out.stderr);
    assert!(out.stderr.contains(&format!("Produced {RECORDS} record(s)")), "produce: {}", out.stderr);
    check_all_back(&net, &addr, &expected, "before the kill");
    println!("phase 2: produced and consumed {RECORDS} records from another container");

    // Phase 3: SIGKILL the container, start it again on the same data, read again.
    node.kill();
    let t3 = Instant::now();
    node.restart();
    let addr = node.wait_listening(LONG_BUDGET);
    let restart_s = t3.elapsed().as_secs_f64();
    check_all_back(&net, &addr, &expected, "after docker kill -s KILL and restart");
    println!(
        "figure: docker single node: {RECORDS} records produced from another container, \
         read back {RECORDS}/{RECORDS} in order before and after docker kill -s KILL + restart \
         (lost 0, doubled 0, reordered 0); image ready {image_s:.1} s, container start to listening \
         {listen_s:.1} s, produce {produce_s:.1} s, restart to listening {restart_s:.1} s"
    );
}

/// Consume the topic from the beginning in a client container and require exactly
/// `expected`, in order.
fn check_all_back(net: &DockerNet, addr: &str, expected: &[String], when: &str) {
    let args = ["consume", "lines", "--from-beginning", "--timeout-ms", "2000"];
    let out = net.run_cli(addr, &args, None);
    assert_eq!(out.code, 0, "consume {when}: {}", out.stderr);
    let got: Vec<&str> = out.stdout.lines().collect();
    let first_diff = got.iter().zip(expected).position(|(g, e)| g != e);
    assert!(
        got.len() == expected.len() && first_diff.is_none(),
        "{when}: got {} records, expected {}; first difference at {first_diff:?}",
        got.len(),
        expected.len()
    );
}
