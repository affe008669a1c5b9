//! The HTTP admin port under abuse, against a real `meshlog node`: connections past the
//! cap of 64 left idle, a slowloris header dribble, a body dribble, a client that sends
//! pipelined requests and never reads the answers, an oversized body, garbage bytes and a
//! huge header. The node answers each malformed request with a 4xx or a close, closes
//! every stalled connection by itself (while the attacker still holds its end), keeps
//! serving the client API meanwhile, answers `/healthz` again within a named budget,
//! and ends with as many open descriptors as it started with and a bounded RSS.

use meshlog::admin::client as http;
use meshlog::admin::http::{BODY_TIMEOUT, HEADER_TIMEOUT, MAX_CONNECTIONS, WRITE_TIMEOUT};
use meshlog::client::Client;
use meshlog_tests::rogue::rss_kib;
use meshlog_tests::{wait_until, NodeProcess, SHORT_BUDGET};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections opened idle: well past the cap.
const IDLE_CONNECTIONS: usize = MAX_CONNECTIONS * 3;
/// Slowloris connections, each sending a header byte every `DRIBBLE_EVERY`.
const SLOWLORIS_CONNECTIONS: usize = 8;
const DRIBBLE_EVERY: Duration = Duration::from_millis(500);
/// Pipelined requests a non-reading client sends (their answers fill both socket buffers).
const PIPELINED_REQUESTS: usize = 20_000;
/// Budget of one HTTP call, and of one malformed exchange, on loopback.
const CALL: Duration = Duration::from_secs(10);
/// Every stalled connection is closed by the node within its timeout plus this margin.
const REAP_MARGIN: Duration = Duration::from_secs(20);
/// Descriptors the node may hold above its start (a connection being torn down, a
/// segment file).
const FD_SLACK: usize = 4;
/// Growth of the node's RSS the whole attack may cause.
const RSS_GROWTH_LIMIT_KIB: u64 = 64 << 10;

/// Connections to the admin port on `port` that the node still holds open: server-side
/// sockets established, or closed by the client but not yet by the node.
fn held_connections(port: u16) -> usize {
    let mut n = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else { continue };
            let local_port = local.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            // 01 ESTABLISHED, 08 CLOSE_WAIT.
            if local_port == Some(port) && (*state == "01" || *state == "08") {
                n += 1;
            }
        }
    }
    n
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(usize::MAX)
}

/// Send `bytes` and read whatever the node answers until it closes (or `CALL` passes).
async fn exchange(addr: &str, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect to the admin port");
    // The node may answer and close before it read everything: a failed write is fine.
    let _ = s.write_all(bytes).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(CALL, s.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("(closed without an answer)")
}

/// Dribble an endless header, a byte every `DRIBBLE_EVERY`, until the node closes.
fn slowloris(addr: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut s) = TcpStream::connect(&addr).await else { return };
        if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.is_err() {
            return;
        }
        while s.write_all(b"a").await.is_ok() {
            tokio::time::sleep(DRIBBLE_EVERY).await;
        }
    })
}

/// Phase 1-4: the attacks that hold connections: the slow ones first, so they hold
/// slots, then idle connections past the cap. Returns what must stay open on the
/// attacker's side until the node has closed its ends.
async fn hold_connections(addr: &str, port: u16) -> (Vec<TcpStream>, Vec<tokio::task::JoinHandle<()>>) {
    let mut tasks: Vec<_> = (0..SLOWLORIS_CONNECTIONS).map(|_| slowloris(addr.to_string())).collect();
    // A body announced and dribbled: 60,000 bytes promised, one a second.
    let body_addr = addr.to_string();
    tasks.push(tokio::spawn(async move {
        let Ok(mut s) = TcpStream::connect(&body_addr).await else { return };
        let head = "PUT /v1/services/slow/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n{";
        let mut ok = s.write_all(head.as_bytes()).await.is_ok();
        while ok {
            tokio::time::sleep(Duration::from_secs(1)).await;
            ok = s.write_all(b" ").await.is_ok();
        }
    }));
    // Pipelined scrapes whose answers are never read, a hundred at a time (within what
    // hyper buffers), then an empty line at a time until the node hangs up.
    let pipelined_addr = addr.to_string();
    tasks.push(tokio::spawn(async move {
        let Ok(mut s) = TcpStream::connect(&pipelined_addr).await else { return };
        let requests = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(100);
        for _ in 0..PIPELINED_REQUESTS / 100 {
            if s.write_all(requests.as_bytes()).await.is_err() {
                return;
            }
        }
        while s.write_all(b"\r\n").await.is_ok() {
            tokio::time::sleep(DRIBBLE_EVERY).await;
        }
    }));
    // The slow ones hold their slots before the idle flood takes every slot left.
    let slow = SLOWLORIS_CONNECTIONS + 2;
    wait_until("the node holds the slow connections", SHORT_BUDGET, || async {
        (held_connections(port) >= slow).then_some(())
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..IDLE_CONNECTIONS {
        held.push(TcpStream::connect(addr).await.expect("connect (idle)"));
    }
    (held, tasks)
}

/// Phase 5: malformed requests, each answered with a 4xx or closed.
async fn malformed(addr: &str) {
    let oversized = format!(
        "PUT /v1/services/big/1 HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n{}",
        "x".repeat(1 << 20),
        n = 1 << 20
    );
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let huge_header = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: {}\r\n\r\n", "h".repeat(1 << 20));
    let cases: [(&str, &[u8]); 3] = [
        ("oversized body", oversized.as_bytes()),
        ("garbage", &garbage),
        ("huge header", huge_header.as_bytes()),
    ];
    for (what, bytes) in cases {
        let answer = exchange(addr, bytes).await;
        let line = status_line(&answer);
        println!("admin_hostile: {what}: {line}");
        assert!(
            answer.is_empty() || (line.starts_with("HTTP/1.1 4") && !line.starts_with("HTTP/1.1 404")),
            "{what}: answered {line}"
        );
    }
}

#[tokio::test]
async fn admin_port_survives_floods_and_malformed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path());
    let base = node.http.clone().expect("an admin port");
    let addr = base.trim_start_matches("http://").to_string();
    let pid = node.child.id();
    let port: u16 = addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("the admin port");
    let healthz = format!("{base}/healthz");
    let healthy = || async { http::get(&healthz, CALL).await.ok().filter(|a| a.status == 200).map(|_| ()) };
    wait_until("the admin port answers", SHORT_BUDGET, healthy).await;
    let (fds_before, rss_before) = (open_fds(pid), rss_kib(pid).expect("the node's RSS"));

    let (held, tasks) = hold_connections(&addr, port).await;
    wait_until("every connection slot is taken", SHORT_BUDGET, || async {
        (held_connections(port) >= MAX_CONNECTIONS).then_some(())
    })
    .await;
    println!("admin_hostile: descriptors {fds_before} before, {} while attacked", open_fds(pid));
    // Every slot is taken: the client API, on its own port, still answers.
    let client = Client::connect(&node.addr.parse().unwrap()).await.expect("client connects");
    tokio::time::timeout(CALL, client.cluster_status())
        .await
        .expect("the client API answers while the admin port is flooded")
        .expect("cluster status");

    // The node closes every stalled connection by itself: idle and dribbled headers by
    // the header timeout, the dribbled body by the body timeout, the non-reader by the
    // write timeout. The attacker's ends are still open.
    let reap = HEADER_TIMEOUT.max(BODY_TIMEOUT).max(WRITE_TIMEOUT) + REAP_MARGIN;
    wait_until("the node closed every stalled connection", reap, || async {
        (held_connections(port) == 0).then_some(())
    })
    .await;
    wait_until("/healthz answers after the flood", SHORT_BUDGET, healthy).await;
    drop(held);
    for t in tasks {
        tokio::time::timeout(CALL, t).await.expect("each dribbler sees its connection closed").unwrap();
    }

    malformed(&addr).await;
    wait_until("/healthz answers after the malformed requests", SHORT_BUDGET, healthy).await;
    tokio::time::timeout(CALL, client.cluster_status()).await.expect("the client API answers").unwrap();
    wait_until("no descriptor left behind", SHORT_BUDGET, || async {
        (open_fds(pid) <= fds_before + FD_SLACK).then_some(())
    })
    .await;
    let rss_after = rss_kib(pid).expect("the node's RSS");
    println!(
        "admin_hostile: {IDLE_CONNECTIONS} idle, {SLOWLORIS_CONNECTIONS} slowloris, 1 slow body, 1 non-reader, \
         3 malformed; descriptors {fds_before} -> {}; RSS {rss_before} KiB -> {rss_after} KiB",
        open_fds(pid)
    );
    assert!(rss_after < rss_before + RSS_GROWTH_LIMIT_KIB, "RSS grew from {rss_before} to {rss_after} KiB");
}
