//! Consumer groups as Kafka runs them, on real processes: members started together share
//! the partitions (the initial rebalance delay, `group_initial_rebalance_delay_ms`), the
//! group admin APIs (ListGroups, DescribeGroups, DeleteGroups) answer confluent-kafka's
//! AdminClient, and one group mixes a Kafka consumer with a `meshlog consume --group`
//! member, each reading its own share of the records.
//!
//! The Kafka-client tests need confluent-kafka (PyPI; `.ci/run` installs it); set
//! `MESHLOG_SKIP_KAFKA_CLIENTS=1` to skip them.

use meshlog_tests::kafka_clients::confluent_kafka;
use meshlog_tests::{wait_until, NodeProcess, LONG_BUDGET};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a member reads on after its last record before it stops.
const IDLE_MS: u64 = 8_000;
/// The longest a consumer process may run in these tests.
const MEMBER_BUDGET: Duration = Duration::from_secs(180);

fn script(name: &str) -> String {
    format!("{}/kafka/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A topic of `partitions` holding `records` keyed records `k0`, `k1`, ...
fn topic_with_records(node: &NodeProcess, topic: &str, partitions: u32, records: usize) {
    let out = node.cli(&["topic", "create", topic, "--partitions", &partitions.to_string()], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let input: String = (0..records).map(|i| format!("k{i}:v{i}\n")).collect();
    let out = node.cli(&["produce", topic, "--key-separator", ":"], Some(input.as_bytes()));
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// `meshlog consume --group` as a child process printing each record's key, stopping
/// IDLE_MS after its last record.
fn meshlog_member(node: &NodeProcess, topic: &str, group: &str, extra: &[&str]) -> Child {
    let idle = IDLE_MS.to_string();
    Command::new(meshlog_tests::meshlog_bin())
        .args(["consume", topic, "--group", group, "--print-key", "--timeout-ms", &idle])
        .args(extra)
        .args(["--server", &node.addr, "--log", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meshlog consume")
}

/// The keys a member printed (the first tab-separated field of each line), killing it
/// if it runs past MEMBER_BUDGET.
fn keys_of(mut child: Child, what: &str) -> Vec<String> {
    let started = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > MEMBER_BUDGET {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed ({:?}): {stderr}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().map(|l| l.split('\t').next().unwrap_or_default().to_string()).collect()
}

/// Every key of `k0..k{records}` read, and how many were read more than once.
fn check_union(shares: &[Vec<String>], records: usize) -> usize {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for k in shares.iter().flatten() {
        *seen.entry(k).or_default() += 1;
    }
    for i in 0..records {
        assert!(seen.contains_key(format!("k{i}").as_str()), "k{i} was read by no member");
    }
    assert_eq!(seen.len(), records, "only the topic's keys were read");
    seen.values().map(|n| n - 1).sum()
}

#[test]
fn three_meshlog_consumers_started_together_each_get_a_share() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path());
    topic_with_records(&node, "work", 6, 600);

    println!("phase 1: three `meshlog consume --group` started at once on 600 records");
    let members: Vec<Child> = (0..3).map(|_| meshlog_member(&node, "work", "crew", &[])).collect();
    let shares: Vec<Vec<String>> =
        members.into_iter().enumerate().map(|(i, c)| keys_of(c, &format!("member {i}"))).collect();
    let counts: Vec<usize> = shares.iter().map(Vec::len).collect();

    println!("phase 2: each read records, together all of them");
    for (i, n) in counts.iter().enumerate() {
        assert!(*n > 0, "member {i} read nothing: {counts:?}");
    }
    let again = check_union(&shares, 600);
    println!("figure: 3 members started together on 600 records: read {counts:?}, read twice {again}");
}

#[test]
fn confluent_admin_lists_describes_and_deletes_groups() {
    if !confluent_kafka() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path());
    let broker = node.kafka.clone().expect("Kafka listener");
    topic_with_records(&node, "adm", 3, 30);
    let out = Command::new("python3")
        .args([&script("confluent_admin.py"), &broker, "adm", "adm-group", "3"])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    print!("{stdout}");
    let d = node.cli(&["group", "describe", "adm-group"], None);
    assert_ne!(d.code, 0, "the deleted group is gone for meshlog too: {}", d.stdout);
    println!(
        "figure: kafka admin: list, describe (1 member, 3 partitions), delete refused then done: 4 of 4"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_mixes_a_kafka_consumer_and_a_meshlog_member() {
    if !confluent_kafka() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path());
    let broker = node.kafka.clone().expect("Kafka listener");
    topic_with_records(&node, "mixed", 4, 600);

    println!("phase 1: a meshlog member joins with roundrobin; then a Kafka consumer (range,roundrobin)");
    let native = meshlog_member(&node, "mixed", "mix", &["--assignor", "roundrobin"]);
    wait_until("the meshlog member is in the group", LONG_BUDGET, || async {
        let d = node.cli(&["group", "describe", "mix", "--json"], None);
        let v: serde_json::Value = serde_json::from_str(&d.stdout).ok()?;
        (v["members"].as_array()?.len() == 1).then_some(())
    })
    .await;
    let kafka = Command::new("python3")
        .args([&script("confluent_member.py"), &broker, "mixed", "mix", &(IDLE_MS / 1000).to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");

    println!("phase 2: both read a share; together every record");
    let kafka_keys = keys_of(kafka, "the Kafka consumer");
    let native_keys = keys_of(native, "the meshlog member");
    assert!(!kafka_keys.is_empty(), "the Kafka consumer read nothing");
    assert!(!native_keys.is_empty(), "the meshlog member read nothing");
    let again = check_union(&[kafka_keys.clone(), native_keys.clone()], 600);
    println!(
        "figure: mixed group on 600 records: Kafka consumer {}, meshlog member {}, read twice {again}",
        kafka_keys.len(),
        native_keys.len()
    );
}
