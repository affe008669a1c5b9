//! The Kafka listener, with real processes and real Kafka clients: one log, two doors.
//! Records produced by kcat (librdkafka) with keys and headers are read back exactly by
//! `meshlog consume`, and the reverse; a client that reaches only one node of a
//! three-node mesh uses every partition (`--kafka-route through-me`); the listener answers
//! pipelined requests in order, falls back to ApiVersions v0 (KIP-511), and closes a
//! connection on a bad frame while the node keeps serving.
//!
//! kcat is required (Debian's `kcat`; `.ci/run` installs it). Set
//! `MESHLOG_SKIP_KAFKA_CLIENTS=1` to skip the tests that run it.

use meshlog_tests::kafka_clients::{
    confluent_kafka, kafka_clients, kcat_consume, kcat_produce, meshlog_consume, raw_frame, read_response,
    run_bounded,
};
use meshlog_tests::{members_up, wait_until, NodeProcess, LONG_BUDGET, SHORT_BUDGET};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

#[test]
fn kcat_writes_what_meshlog_consume_reads_and_the_reverse() {
    if !kafka_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path());
    let broker = node.kafka.clone().expect("the node reports its Kafka listener");

    println!("phase 1: kcat produces with keys and headers to a topic it makes exist (auto-create)");
    let lines: Vec<String> = (0..20).map(|i| format!("key-{i}:value {i}")).collect();
    kcat_produce(&broker, "from-kafka", &lines, &["trace=abc", "source=kcat"], "none");
    let got = meshlog_consume(&node, "from-kafka", lines.len());
    let want: Vec<(String, String, String)> = {
        let mut w: Vec<_> = (0..20)
            .map(|i| (format!("key-{i}"), format!("value {i}"), "trace=abc,source=kcat".to_string()))
            .collect();
        w.sort();
        w
    };
    assert_eq!(got, want, "meshlog consume reads exactly what kcat wrote");
    // And kcat reads its own records back through the same door.
    let back = kcat_consume(&broker, "from-kafka");
    assert_eq!(back.len(), 20, "{back:?}");
    assert!(back.contains(&"key-7\tvalue 7\ttrace=abc,source=kcat".to_string()), "{back:?}");

    println!("phase 2: meshlog produce, kcat reads");
    let out = node.cli(&["topic", "create", "from-meshlog", "--partitions", "2"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let input: String = (0..10).map(|i| format!("k{i}:v{i}\n")).collect();
    let out = node.cli(&["produce", "from-meshlog", "--key-separator", ":"], Some(input.as_bytes()));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let back = kcat_consume(&broker, "from-meshlog");
    let mut want: Vec<String> = (0..10).map(|i| format!("k{i}\tv{i}\t")).collect();
    want.sort();
    assert_eq!(back, want);
    println!("figure: kafka door: 20 kcat records read by meshlog consume, 10 meshlog records read by kcat, mismatches 0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_reaching_one_node_of_three_uses_every_partition() {
    if !kafka_clients() {
        return;
    }
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = NodeProcess::start(dirs[0].path());
    let b = NodeProcess::start_with(dirs[1].path(), &["--bootstrap", &a.addr]);
    let c = NodeProcess::start_with(dirs[2].path(), &["--bootstrap", &a.addr, "--kafka-route", "through-me"]);
    wait_until("three members up", LONG_BUDGET, || async {
        (members_up(&a.addr, &[]) == Some(3)).then_some(())
    })
    .await;
    let out = a.cli(&["topic", "create", "spread", "--partitions", "6", "--replication-factor", "3"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let broker = c.kafka.clone().expect("c's Kafka listener");

    println!("phase 1: kcat against c alone produces 60 keyed records over 6 partitions");
    let lines: Vec<String> = (0..60).map(|i| format!("key-{i}:value {i}")).collect();
    kcat_produce(&broker, "spread", &lines, &[], "none");

    println!("phase 2: kcat against c reads them all; meshlog consume through a too");
    let back = kcat_consume(&broker, "spread");
    assert_eq!(back.len(), 60, "{back:?}");
    let through_a = meshlog_consume(&a, "spread", 60);
    assert_eq!(through_a.len(), 60);
    let status = a.cli(&["topic", "describe", "spread", "--json"], None);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let used =
        v["partitions"].as_array().unwrap().iter().filter(|p| p["high_watermark"].as_u64() > Some(0)).count();
    assert!(used >= 2, "keys spread over partitions led by several nodes: {used} used");
    drop((b, c));
    println!("figure: kafka door, 3 nodes, one reachable: 60 of 60 records read back over {used} partitions");
}

#[test]
fn confluent_kafka_produces_and_consumes_in_a_group_with_commits() {
    if !confluent_kafka() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path());
    let broker = node.kafka.clone().expect("Kafka listener");
    let out = node.cli(&["topic", "create", "py", "--partitions", "3"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/kafka/confluent_group.py");
    let mut cmd = Command::new("python3");
    cmd.args([script, &broker, "py", "py-group", "30"]);
    let out = run_bounded(&mut cmd, b"", Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    print!("{stdout}");
    // What the Kafka consumer committed is the group's position for meshlog too: every
    // partition committed up to its log end (which counts every later leader's epoch
    // marker: the first, elected over an empty log, writes none).
    let d = node.cli(&["group", "describe", "py-group", "--json"], None);
    assert_eq!(d.code, 0, "{}", d.stderr);
    let v: serde_json::Value = serde_json::from_str(&d.stdout).unwrap();
    let rows = v["partitions"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{}", d.stdout);
    for r in rows {
        assert!(r["committed"].as_u64().is_some_and(|c| c > 0), "{}", d.stdout);
        assert_eq!(r["committed"], r["log_end"], "{}", d.stdout);
    }
    assert_eq!(v["total_lag"], 0, "{}", d.stdout);
    println!(
        "figure: confluent-kafka: 30 produced, 30 consumed in a group, lag 0 as meshlog sees it, 0 re-read"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order_and_bad_frames_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path());
    let addr = node.kafka.clone().expect("Kafka listener");
    let connect = || {
        let s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(SHORT_BUDGET)).unwrap();
        s
    };

    println!("phase 1: three ApiVersions v0 requests in one write, three answers in order");
    let mut s = connect();
    let burst: Vec<u8> = (1..=3).flat_map(|c| raw_frame(18, 0, c, false, &[])).collect();
    s.write_all(&burst).unwrap();
    for c in 1..=3 {
        let (corr, body) = read_response(&mut s).unwrap();
        assert_eq!(corr, c);
        assert_eq!(i16::from_be_bytes([body[0], body[1]]), 0, "no error");
    }

    println!("phase 2: a version the listener does not know: v0 answer, UNSUPPORTED_VERSION (KIP-511)");
    // Header v2, as a client speaking a flexible ApiVersions sends: no tagged fields.
    s.write_all(&raw_frame(18, 99, 4, false, &[0])).unwrap();
    let (corr, body) = read_response(&mut s).unwrap();
    assert_eq!((corr, i16::from_be_bytes([body[0], body[1]])), (4, 35));
    let n = i32::from_be_bytes(body[2..6].try_into().unwrap()) as usize;
    assert_eq!(body.len(), 6 + 6 * n, "a v0 body: error code and the (key, min, max) list");

    println!("phase 3: a 2 GiB length closes the connection, before any allocation");
    s.write_all(&i32::MAX.to_be_bytes()).unwrap();
    let mut rest = Vec::new();
    let closed = s.read_to_end(&mut rest).map(|n| n == 0).unwrap_or(true);
    assert!(closed, "the connection is closed");

    println!("phase 4: an API not served whose answer has no error code closes its connection too; the node still answers");
    let mut s = connect();
    s.write_all(&raw_frame(21, 1, 9, false, &[0, 0, 0, 0])).unwrap(); // DeleteRecords
    assert!(read_response(&mut s).is_err(), "no answer to an API not served");
    let mut s = connect();
    s.write_all(&raw_frame(18, 0, 10, false, &[])).unwrap();
    assert_eq!(read_response(&mut s).unwrap().0, 10);

    println!("phase 5: a small Metadata v4 claiming 0x7fffffff topics is refused; the node lives");
    let mut s = connect();
    s.write_all(&raw_frame(3, 4, 11, false, &[0x7f, 0xff, 0xff, 0xff, 1])).unwrap();
    assert!(read_response(&mut s).is_err(), "no answer to a hostile length");
    let mut s = connect();
    s.write_all(&raw_frame(18, 0, 12, false, &[])).unwrap();
    assert_eq!(read_response(&mut s).unwrap().0, 12, "the node still answers");
    println!("figure: kafka frames: 3 pipelined answers in order, 3 bad connections closed, node alive");
}
