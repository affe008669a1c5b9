//! The Docker harness does what its fault helpers say: `disconnect` makes a node
//! unreachable from another container and `connect` makes it reachable again (at its
//! possibly new IP); `pause` freezes it and `kill` works while it is paused; `exec` runs
//! a client on the node's own host; `cleanup_stale` removes a container left by a dead
//! test process and keeps those of live ones.
//!
//! Skips (printing `SKIP:`) without Docker, except in CI (`CI` set), where it fails.

use meshlog_tests::docker::{
    cleanup_stale, docker_ok, image, require_docker, DockerNet, DockerNode, CREATED_LABEL, LABEL, OWNER_LABEL,
};
use meshlog_tests::LONG_BUDGET;

#[test]
fn fault_helpers_cut_freeze_kill_and_restore_a_node() {
    if !require_docker() {
        return;
    }
    let net = DockerNet::create("harness");
    let mut node = DockerNode::run(&net, "node", &[]);
    let addr = node.wait_listening(LONG_BUDGET);

    // exec: a client on the node's own host, over loopback.
    let local = format!("/ip4/127.0.0.1/tcp/{}", meshlog_tests::docker::NODE_PORT);
    let out = node.exec(&["topic", "list", "--server", &local], None);
    assert_eq!(out.code, 0, "exec topic list: {}", out.stderr);

    // disconnect / connect: unreachable from another container, then reachable again.
    node.disconnect();
    let out = net.run_cli(&addr, &["topic", "list"], None);
    assert_ne!(out.code, 0, "a disconnected node answered: {}", out.stdout);
    node.connect();
    let out = net.run_cli(&node.addr(), &["topic", "list"], None);
    assert_eq!(out.code, 0, "after connect ({}): {}", node.addr(), out.stderr);

    // pause / unpause, and kill while paused, then restart on the same data.
    node.pause();
    assert!(node.is_paused(), "pause did not freeze {}", node.name());
    node.unpause();
    assert!(!node.is_paused() && node.is_running(), "unpause");
    node.pause();
    node.kill();
    assert!(!node.is_running(), "kill left {} running", node.name());
    node.restart();
    let addr = node.wait_listening(LONG_BUDGET);
    let out = net.run_cli(&addr, &["topic", "list"], None);
    assert_eq!(out.code, 0, "after restart: {}", out.stderr);
    println!("figure: docker harness: disconnect, connect, pause, kill while paused, restart all behave");
}

#[test]
fn cleanup_removes_leftovers_of_dead_runs_only() {
    if !require_docker() {
        return;
    }
    // An owner in our pid namespace whose start time is not ours: a dead process's pid.
    let ns: String = std::fs::read_link("/proc/self/ns/pid")
        .unwrap()
        .to_string_lossy()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let dead = format!("{OWNER_LABEL}={ns}:{}:0", std::process::id());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let name = format!("mlt-leftover-{}-{now}", std::process::id());
    let created = format!("{CREATED_LABEL}={now}");
    let img = image();
    let args = ["create", "--name", &name, "--network", "none", "--label", LABEL, "--label", &dead];
    docker_ok(&[&args[..], &["--label", &created, &img, "node"]].concat()).unwrap();
    let live = DockerNet::create("live"); // ours: must survive the cleanup

    cleanup_stale();
    let left = docker_ok(&["ps", "-a", "-q", "--filter", &format!("name=^{name}$")]).unwrap();
    if !left.is_empty() {
        let _ = docker_ok(&["rm", "-f", &name]);
        panic!("cleanup_stale kept the leftover {name}");
    }
    docker_ok(&["network", "inspect", live.name()]).expect("cleanup_stale removed a live network");
}
