//! Shared harness for meshlog's integration, process and fault tests: start nodes
//! in-process or as real `meshlog` processes, and wait for conditions with named
//! budgets instead of sleeping.

pub mod cluster;
pub mod docker;
pub mod kafka_clients;
pub mod rogue;
pub mod sim;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meshlog::config::NodeConfig;

/// A generous budget for conditions that normally hold within a second.
pub const SHORT_BUDGET: Duration = Duration::from_secs(20);
/// A budget for slow operations (a node restart and recovery, a large produce).
pub const LONG_BUDGET: Duration = Duration::from_secs(180);

/// Poll `check` until it returns `Some`, or panic naming `what` after `budget`.
pub async fn wait_until<T, F, Fut>(what: &str, budget: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < budget, "timed out after {budget:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node config for tests: loopback, an ephemeral port, a small cache, no mDNS (tests
/// running side by side must not find each other), and fast mesh timers.
pub fn test_config(data_dir: &Path) -> NodeConfig {
    NodeConfig {
        data_dir: data_dir.to_path_buf(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        cache_capacity_bytes: 16 << 20,
        mdns: false,
        heartbeat_interval_ms: 200,
        member_timeout_ms: 1_500,
        topic_settle_ms: 300,
        // Nodes side by side must not all take the default admin port or Kafka port.
        http_listen: "127.0.0.1:0".into(),
        kafka_listen: "127.0.0.1:0".into(),
        ..NodeConfig::default()
    }
}

/// The `meshlog` binary built next to this test (run `cargo build --bins` first; the
/// README's test command does). `MESHLOG_BIN` overrides.
pub fn meshlog_bin() -> PathBuf {
    if let Ok(p) = std::env::var("MESHLOG_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("meshlog");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --bins` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A `meshlog node` running as a separate process.
pub struct NodeProcess {
    /// The child process.
    pub child: Child,
    /// Its first listen address, with `/p2p/<peer id>`.
    pub addr: String,
    /// Its HTTP admin port's base URL (`http://127.0.0.1:PORT`), unless started with
    /// `--http-listen none`.
    pub http: Option<String>,
    /// Its Kafka listener (`127.0.0.1:PORT`), unless started with `--kafka-listen none`.
    pub kafka: Option<String>,
    /// Its data directory.
    pub data_dir: PathBuf,
}

impl NodeProcess {
    /// Start `meshlog node` on loopback with an ephemeral port and wait until it listens.
    pub fn start(data_dir: &Path) -> NodeProcess {
        NodeProcess::start_with(data_dir, &[])
    }

    /// Like [`NodeProcess::start`], with extra `meshlog node` flags. The admin port and
    /// the Kafka listener take any free loopback port unless `extra` names one.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> NodeProcess {
        let http: &[&str] =
            if extra.contains(&"--http-listen") { &[] } else { &["--http-listen", "127.0.0.1:0"] };
        let kafka: &[&str] =
            if extra.contains(&"--kafka-listen") { &[] } else { &["--kafka-listen", "127.0.0.1:0"] };
        let mut child = Command::new(meshlog_bin())
            .args(["node", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
            .args(http)
            .args(kafka)
            .arg("--log")
            // MESHLOG_TEST_LOG (e.g. `info`) shows what the nodes do when a test fails.
            .arg(std::env::var("MESHLOG_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn meshlog node");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // The node prints its admin port and Kafka listener (if any) before its listen
        // addresses.
        std::thread::spawn(move || {
            let (mut http, mut kafka) = (None, None);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("admin on ") {
                    http = Some(a.to_string());
                }
                if let Some(a) = line.strip_prefix("kafka on ") {
                    kafka = Some(a.to_string());
                }
                if let Some(a) = line.strip_prefix("listening on ") {
                    let _ = tx.send((a.to_string(), http.clone(), kafka.clone()));
                }
            }
        });
        let (addr, http, kafka) = rx.recv_timeout(LONG_BUDGET).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("node in {} did not report a listen address within {LONG_BUDGET:?}", data_dir.display())
        });
        NodeProcess { child, addr, http, kafka, data_dir: data_dir.to_path_buf() }
    }

    /// `kill -9`: no shutdown, no flush.
    pub fn kill9(mut self) {
        self.kill9_ref();
    }

    /// `kill -9` a node that is owned by a larger fixture.
    pub fn kill9_ref(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Run a `meshlog` client command against this node; returns (status, stdout, stderr).
    pub fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> CliOutput {
        run_cli(&self.addr, args, stdin)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a CLI command printed.
pub struct CliOutput {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Run `meshlog ARGS --server SERVER` with optional stdin.
pub fn run_cli(server: &str, args: &[&str], stdin: Option<&[u8]>) -> CliOutput {
    use std::io::Write;
    let mut child = Command::new(meshlog_bin())
        .args(args)
        .args(["--server", server, "--log", "warn"])
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meshlog");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let out = child.wait_with_output().expect("wait meshlog");
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// How many members `cluster status` on `server` shows up, asked with extra client
/// flags (`--psk-file`, `--client-credential`); None if the command fails.
pub fn members_up(server: &str, extra: &[&str]) -> Option<usize> {
    let mut args = vec!["cluster", "status", "--json"];
    args.extend_from_slice(extra);
    let out = run_cli(server, &args, None);
    if out.code != 0 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    Some(v["members"].as_array()?.iter().filter(|m| m["state"] == "up").count())
}

/// Two `meshlog node` processes meshed through a bootstrap address, a client talking to
/// the first, and a topic of which the second owns partition `remote_partition`: the
/// setup of every test about what happens when a partition's owner goes away.
pub struct TwoNodes {
    /// The node the client talks to.
    pub a: NodeProcess,
    /// The node owning `remote_partition`.
    pub b: NodeProcess,
    /// `b`'s data directory (to restart it with the same identity).
    pub b_dir: tempfile::TempDir,
    _a_dir: tempfile::TempDir,
    /// A client connected to `a`.
    pub client: meshlog::client::Client,
    /// A partition of the topic owned by `b`.
    pub remote_partition: u32,
}

impl TwoNodes {
    /// Start both nodes, wait until they see each other, and create `topic` with four
    /// partitions spread over them.
    pub async fn start(topic: &str) -> TwoNodes {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = NodeProcess::start(a_dir.path());
        let b = NodeProcess::start_with(b_dir.path(), &["--bootstrap", &a.addr]);
        let client = meshlog::client::Client::connect(&a.addr.parse().unwrap()).await.unwrap();
        wait_until("the two nodes see each other", LONG_BUDGET, || async {
            let s = client.cluster_status().await.ok()?;
            (s.members.iter().filter(|m| m.state == "up").count() == 2).then_some(())
        })
        .await;
        client.create_topic(topic, 4, 1, Default::default()).await.unwrap();
        let owners = client.cluster_status().await.unwrap().topics[topic].clone();
        let b_id = b.peer_id();
        let p = owners.iter().position(|r| r[0] == b_id).expect("b owns a partition") as u32;
        TwoNodes { a, b, b_dir, _a_dir: a_dir, client, remote_partition: p }
    }

    /// Start `b` again on its data directory (same identity), bootstrapping through `a`.
    pub fn restart_b(&self) -> NodeProcess {
        NodeProcess::start_with(self.b_dir.path(), &["--bootstrap", &self.a.addr])
    }
}

impl NodeProcess {
    /// The node's PeerId, from its address.
    pub fn peer_id(&self) -> String {
        self.addr.rsplit('/').next().unwrap_or_default().to_string()
    }
}

/// Every record of a partition, from its log start to its high watermark, through any
/// node (the read loop of every test that checks what a partition holds).
pub async fn read_partition(
    client: &meshlog::client::Client,
    topic: &str,
    partition: u32,
) -> Vec<meshlog_protocol::batch::Record> {
    use meshlog::client::consumer::{self, StartAt};
    let mut off = consumer::start_offset(client, topic, partition, StartAt::Beginning).await.unwrap();
    let mut out = Vec::new();
    loop {
        let f = consumer::fetch(client, topic, partition, off, 1 << 20, 0).await.unwrap();
        // A fetch of only an epoch marker moves on without records; nothing new ends it.
        if f.next_offset == off {
            return out;
        }
        off = f.next_offset;
        out.extend(f.records);
    }
}

/// A record's value as text (tests write UTF-8 values).
pub fn value_text(r: &meshlog_protocol::batch::Record) -> String {
    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
}
