//! Real Kafka clients in tests: kcat (Debian's, librdkafka) and confluent-kafka
//! (Python, bundling librdkafka) run as bounded child processes, and `meshlog consume`
//! read as (key, value, headers). `MESHLOG_SKIP_KAFKA_CLIENTS=1` skips the tests that
//! need them; otherwise a missing client fails the test with how to install it.

use crate::NodeProcess;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long one kcat run may take (it exits at the end of the partitions with `-e`).
pub const KCAT_BUDGET: Duration = Duration::from_secs(60);

/// Whether `MESHLOG_SKIP_KAFKA_CLIENTS=1` asks to skip the real-client tests (said once
/// per test in its output).
fn skipped() -> bool {
    let skip = std::env::var("MESHLOG_SKIP_KAFKA_CLIENTS").as_deref() == Ok("1");
    if skip {
        println!("skipped: MESHLOG_SKIP_KAFKA_CLIENTS=1 (Kafka client tests not run)");
    }
    skip
}

/// Whether to run the real-client tests: yes unless `MESHLOG_SKIP_KAFKA_CLIENTS=1`, and
/// then kcat must be installed.
pub fn kafka_clients() -> bool {
    if skipped() {
        return false;
    }
    let found = Command::new("kcat").arg("-V").output().is_ok_and(|o| o.status.success());
    assert!(
        found,
        "kcat is missing: install Debian's kcat (.ci/run does), or set MESHLOG_SKIP_KAFKA_CLIENTS=1"
    );
    true
}

/// Whether confluent-kafka is importable (required unless the Kafka clients are skipped).
pub fn confluent_kafka() -> bool {
    if skipped() {
        return false;
    }
    let found =
        Command::new("python3").args(["-c", "import confluent_kafka"]).status().is_ok_and(|s| s.success());
    assert!(
        found,
        "confluent-kafka is missing: pip install confluent-kafka==2.16.1 (.ci/run does), or set MESHLOG_SKIP_KAFKA_CLIENTS=1"
    );
    true
}

/// Run a command with `stdin`, killing it after `budget`.
pub fn run_bounded(cmd: &mut Command, stdin: &[u8], budget: Duration) -> Output {
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut pipe = child.stdin.take().expect("stdin");
    let input = stdin.to_vec();
    std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let started = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > budget {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!("{cmd:?} ran past {budget:?}; stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait")
}

/// kcat producing `lines` (`key:value`) to `topic` with `compression` (none, gzip,
/// snappy, lz4, zstd) and the given headers on each.
pub fn kcat_produce(broker: &str, topic: &str, lines: &[String], headers: &[&str], compression: &str) {
    let mut cmd = Command::new("kcat");
    cmd.args(["-P", "-b", broker, "-t", topic, "-K", ":", "-X", "acks=all", "-z", compression]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = run_bounded(&mut cmd, (lines.join("\n") + "\n").as_bytes(), KCAT_BUDGET);
    assert!(out.status.success(), "kcat -P failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// kcat reading `topic` from the beginning to its end: `key<TAB>value<TAB>headers`
/// lines, sorted.
pub fn kcat_consume(broker: &str, topic: &str) -> Vec<String> {
    let mut cmd = Command::new("kcat");
    cmd.args(["-C", "-b", broker, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%s\t%h\n"]);
    let out = run_bounded(&mut cmd, b"", KCAT_BUDGET);
    assert!(out.status.success(), "kcat -C failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// `meshlog consume --format json` of `n` records of `topic`, as (key, value,
/// `k=v,...` headers), sorted.
pub fn meshlog_consume(node: &NodeProcess, topic: &str, n: usize) -> Vec<(String, String, String)> {
    let n = n.to_string();
    let args = [
        "consume",
        topic,
        "--from-beginning",
        "--format",
        "json",
        "--max-messages",
        &n,
        "--timeout-ms",
        "30000",
    ];
    let out = node.cli(&args, None);
    assert_eq!(out.code, 0, "meshlog consume failed: {}", out.stderr);
    let mut got: Vec<(String, String, String)> = out
        .stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            let headers: Vec<String> = v["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|h| format!("{}={}", h["key"].as_str().unwrap(), h["value"].as_str().unwrap_or("")))
                .collect();
            (
                v["key"].as_str().unwrap_or("").to_string(),
                v["value"].as_str().unwrap().to_string(),
                headers.join(","),
            )
        })
        .collect();
    got.sort();
    got
}

/// A raw Kafka request frame: header v1 (api key, version, correlation id, null client
/// id), plus an empty tagged-field section when `flexible` (header v2), then `body`.
pub fn raw_frame(api_key: i16, version: i16, correlation: i32, flexible: bool, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&api_key.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&correlation.to_be_bytes());
    f.extend_from_slice(&(-1i16).to_be_bytes());
    if flexible {
        f.push(0);
    }
    f.extend_from_slice(body);
    let mut out = (f.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&f);
    out
}

/// Read one raw response frame: (correlation id, the rest of the body).
pub fn read_response(s: &mut std::net::TcpStream) -> std::io::Result<(i32, Vec<u8>)> {
    use std::io::Read;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; i32::from_be_bytes(len).max(4) as usize];
    s.read_exact(&mut buf)?;
    Ok((i32::from_be_bytes(buf[..4].try_into().unwrap()), buf[4..].to_vec()))
}
