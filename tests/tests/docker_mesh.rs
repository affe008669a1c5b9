//! Real hosts: `meshlog node` in separate containers on a private Docker network.
//! Three nodes started with no flags find each other by mDNS alone (no bootstrap
//! address), a topic created on the first is produced to through the second and
//! consumed through the third, and `cluster status` on each shows the same picture. In a
//! closed mesh, a node without the pre-shared key is refused.
//!
//! Skips (printing `SKIP:`) without Docker, except in CI (`CI` set), where it fails.

use meshlog_tests::docker::{require_docker, wait_for, DockerNet, DockerNode};
use meshlog_tests::{LONG_BUDGET, SHORT_BUDGET};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Instant;

fn status(net: &DockerNet, addr: &str, extra: &[&str]) -> Option<Value> {
    let mut args = vec!["cluster", "status", "--json"];
    args.extend(extra);
    let out = net.run_cli(addr, &args, None);
    (out.code == 0).then(|| serde_json::from_str(&out.stdout).ok()).flatten()
}

fn up_members(v: &Value) -> BTreeSet<String> {
    let members = v["members"].as_array().cloned().unwrap_or_default();
    members
        .iter()
        .filter(|m| m["state"] == "up")
        .filter_map(|m| m["peer"].as_str().map(String::from))
        .collect()
}

#[test]
fn three_nodes_with_no_flags_form_a_mesh_by_mdns_and_route_for_each_other() {
    if !require_docker() {
        return;
    }
    let net = DockerNet::create("mdns");
    let mut nodes: Vec<DockerNode> = (0..3).map(|i| DockerNode::run(&net, &format!("n{i}"), &[])).collect();
    let addrs: Vec<String> = nodes.iter_mut().map(|n| n.wait_listening(LONG_BUDGET)).collect();
    let started = Instant::now();

    // Phase 1: mDNS alone: every node sees all three up.
    for a in &addrs {
        wait_for(&format!("{a} sees 3 members"), LONG_BUDGET, || {
            status(&net, a, &[]).is_some_and(|v| up_members(&v).len() == 3)
        });
    }
    let mesh_s = started.elapsed().as_secs_f64();

    // Phase 2: create on n0, produce through n1, consume through n2.
    let out = net.run_cli(&addrs[0], &["topic", "create", "orders", "--partitions", "3"], None);
    assert_eq!(out.code, 0, "create: {}", out.stderr);
    let input: String = (0..300).map(|i| format!("k{}:v{i}\n", i % 10)).collect();
    let out = net.run_cli(&addrs[1], &["produce", "orders", "--key-separator", ":"], Some(input.as_bytes()));
    assert_eq!(out.code, 0, "produce through n1: {}", out.stderr);
    let out =
        net.run_cli(&addrs[2], &["consume", "orders", "--from-beginning", "--timeout-ms", "2000"], None);
    assert_eq!(out.code, 0, "consume through n2: {}", out.stderr);
    let got: BTreeSet<&str> = out.stdout.lines().collect();
    assert_eq!(got.len(), 300, "all records read back through the third node");

    // Phase 3: the same picture from every node.
    let pictures: Vec<(BTreeSet<String>, Value)> = addrs
        .iter()
        .map(|a| {
            let v = status(&net, a, &[]).expect("cluster status");
            (up_members(&v), v["topics"].clone())
        })
        .collect();
    assert!(pictures.windows(2).all(|w| w[0] == w[1]), "cluster status differs between nodes: {pictures:?}");
    println!("figure: docker mDNS mesh: 3 containers, no flags, full membership after {mesh_s:.1} s; produce via n1, consume via n2: 300/300");
}

#[test]
fn a_container_without_the_mesh_key_is_refused() {
    if !require_docker() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    for (file, _) in [("mesh.key", ()), ("other.key", ())] {
        let out = std::process::Command::new(meshlog_tests::meshlog_bin()).arg("mesh-key").output().unwrap();
        std::fs::write(keys.path().join(file), out.stdout).unwrap();
    }
    let mut net = DockerNet::create("psk");
    net.mount(keys.path(), "/keys");
    let mut a = DockerNode::run(&net, "a", &["--psk-file", "/keys/mesh.key"]);
    let mut b = DockerNode::run(&net, "b", &["--psk-file", "/keys/mesh.key"]);
    let mut outsider = DockerNode::run(&net, "outsider", &["--psk-file", "/keys/other.key"]);
    let (aa, _, oa) =
        (a.wait_listening(LONG_BUDGET), b.wait_listening(LONG_BUDGET), outsider.wait_listening(LONG_BUDGET));
    let key = ["--psk-file", "/keys/mesh.key"];
    wait_for("a and b find each other by mDNS through the key", LONG_BUDGET, || {
        status(&net, &aa, &key).is_some_and(|v| up_members(&v).len() == 2)
    });
    // The outsider hears the same mDNS announcements and dials, but never gets a session.
    std::thread::sleep(SHORT_BUDGET / 4);
    let v = status(&net, &aa, &key).expect("status of a");
    assert_eq!(up_members(&v).len(), 2, "the outsider joined: {v}");
    let v = status(&net, &oa, &["--psk-file", "/keys/other.key"]).expect("status of the outsider");
    assert_eq!(up_members(&v).len(), 1, "the outsider sees the closed mesh: {v}");
    assert!(status(&net, &aa, &[]).is_none(), "a client without the key was served");
    println!("figure: docker closed mesh: node without the key sessions accepted 0; client without the key served 0");
}
