//! The Kafka listener in `leader` mode (the default), with confluent-kafka (librdkafka)
//! against a three-node mesh: every node is a broker, clients produce and consume at
//! each partition's leader, follow a new leader after `kill -9` of the old one, and use
//! the admin APIs. Also: unserved APIs answered with UNSUPPORTED_VERSION on raw frames.
//!
//! confluent-kafka is required (`.ci/run` installs it); set
//! `MESHLOG_SKIP_KAFKA_CLIENTS=1` to skip the tests that run it.

use meshlog_tests::cluster::Cluster;
use meshlog_tests::kafka_clients::{confluent_kafka, raw_frame, read_response, run_bounded};
use meshlog_tests::{NodeProcess, LONG_BUDGET};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long one client script may run.
const SCRIPT_BUDGET: Duration = Duration::from_secs(300);

fn script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/kafka/confluent_leaders.py")
}

/// Run the script with `args`, killed after [`SCRIPT_BUDGET`]; it must succeed.
fn run_script(args: &[&str]) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg(script()).args(args);
    let Output { status, stdout, stderr } = run_bounded(&mut cmd, b"", SCRIPT_BUDGET);
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    assert!(status.success(), "{args:?}: {stdout}\n{}", String::from_utf8_lossy(&stderr));
    print!("{stdout}");
    stdout
}

/// Every node's Kafka listener, comma-separated (a client's bootstrap list).
fn bootstrap(c: &Cluster) -> String {
    let live = c.nodes.iter().flatten();
    live.map(|n| n.kafka.clone().expect("a Kafka listener")).collect::<Vec<_>>().join(",")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_produces_and_consumes_at_leaders_spread_over_three_nodes() {
    if !confluent_kafka() {
        return;
    }
    let c = Cluster::start(3).await;
    let a = c.nodes[0].as_ref().unwrap();
    let out = a.cli(&["topic", "create", "spread", "--partitions", "6", "--replication-factor", "3"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for p in 0..6 {
        c.wait_leader_with_full_isr("spread", p).await;
    }
    println!("phase 1: bootstrap from one node; Metadata lists three brokers and the real leaders");
    let one = a.kafka.clone().unwrap();
    run_script(&["spread", &one, "spread", "120"]);
    // Every partition was written at its leader: nothing needed a hop inside the mesh.
    let status = a.cli(&["topic", "describe", "spread", "--json"], None);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let used =
        v["partitions"].as_array().unwrap().iter().filter(|p| p["high_watermark"].as_u64() > Some(0)).count();
    assert!(used >= 3, "keys over several partitions: {used}");
    println!("phase 2: kcat -L from another node lists the same three brokers and a leader per partition");
    let other = c.nodes[2].as_ref().unwrap().kafka.clone().unwrap();
    let listing =
        Command::new("kcat").args(["-L", "-m", "30", "-b", &other, "-t", "spread"]).output().expect("kcat");
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.status.success() && text.contains(" 3 brokers:"), "{text}");
    let partitions: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with("partition ")).collect();
    assert_eq!(partitions.len(), 6, "{text}");
    assert!(partitions.iter().all(|l| !l.contains("leader -1") && l.contains("isrs:")), "{text}");
    println!("phase 3: the admin APIs against the same mesh");
    run_script(&["admin", &one]);
    println!("figure: kafka leader mode: 120 of 120 records read back over {used} partitions, 3 brokers");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_follows_the_new_leader_after_kill_9() {
    if !confluent_kafka() {
        return;
    }
    let mut c = Cluster::start(3).await;
    let a = c.nodes[0].as_ref().unwrap();
    let out = a.cli(&["topic", "create", "failover", "--partitions", "1", "--replication-factor", "3"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (leader, _) = c.wait_leader_with_full_isr("failover", 0).await;
    let servers = bootstrap(&c);
    println!("phase 1: produce 1500 records one by one to failover-0, led by node {leader}");
    let mut child = Command::new("python3")
        .arg(script())
        .args(["failover", &servers, "failover", "1500"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn python3");
    let lines = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let mut out = Vec::new();
    let mut killed = false;
    while let Ok(line) = rx.recv_timeout(SCRIPT_BUDGET.saturating_sub(started.elapsed())) {
        println!("{line}");
        let acked: u64 = line.strip_prefix("acked ").and_then(|n| n.parse().ok()).unwrap_or(0);
        if !killed && acked >= 300 {
            println!("phase 2: kill -9 the leader (node {leader}) mid-produce");
            c.kill9(leader);
            killed = true;
        }
        out.push(line);
    }
    let status = child.wait().expect("wait");
    let all = out.join("\n");
    assert!(killed, "the producer never reached 300 acknowledged records: {all}");
    assert!(status.success(), "{all}");
    let last = out.last().cloned().unwrap_or_default();
    let field = |name: &str| -> i64 {
        let mut words = last.split_whitespace();
        words.by_ref().find(|w| *w == name);
        words.next().and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("no {name} in {last}"))
    };
    assert_eq!(field("lost"), 0, "{all}");
    assert_ne!(field("leader_start"), field("leader_end"), "the client follows the new leader: {all}");
    println!(
        "figure: kafka leader kill: 1500 acknowledged, lost 0, duplicated {} (not idempotent)",
        field("duplicated")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unserved_apis_get_unsupported_version_on_the_same_connection() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path());
    let addr = node.kafka.clone().expect("Kafka listener");
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(LONG_BUDGET)).unwrap();

    println!("phase 1: EndTxn v0 (transactions are not served): UNSUPPORTED_VERSION, correlation id kept");
    s.write_all(&raw_frame(26, 0, 21, false, &[])).unwrap();
    let (corr, body) = read_response(&mut s).unwrap();
    // EndTxn v0's answer: throttle time, then the error code.
    assert_eq!((corr, i16::from_be_bytes([body[4], body[5]])), (21, 35), "{body:?}");

    println!("phase 2: a served API in a version not served (FindCoordinator v0 is, JoinGroup v8 is not)");
    s.write_all(&raw_frame(11, 8, 22, false, &[0])).unwrap(); // flexible header: no tagged fields
    let answered = read_response(&mut s);
    // JoinGroup v8's answer is flexible; its error code comes right after the throttle time.
    let (corr, body) = answered.expect("an answer, not a closed connection");
    assert_eq!(corr, 22);
    assert_eq!(i16::from_be_bytes([body[5], body[6]]), 35, "{body:?}");

    println!("phase 3: the connection still serves: ApiVersions v0");
    s.write_all(&raw_frame(18, 0, 23, false, &[])).unwrap();
    let (corr, body) = read_response(&mut s).unwrap();
    assert_eq!((corr, i16::from_be_bytes([body[0], body[1]])), (23, 0));

    println!("phase 4: an API whose answer cannot say so (DeleteRecords) closes its connection only");
    s.write_all(&raw_frame(21, 1, 24, false, &[0, 0, 0, 0, 0, 0, 0, 0])).unwrap();
    let mut rest = Vec::new();
    assert!(s.read_to_end(&mut rest).map(|n| n == 0).unwrap_or(true), "closed");
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(LONG_BUDGET)).unwrap();
    s.write_all(&raw_frame(18, 0, 25, false, &[])).unwrap();
    assert_eq!(read_response(&mut s).unwrap().0, 25, "the node still answers");
    println!("figure: kafka unserved: 2 answered with 35 on a live connection, 1 closed, node alive");
}
