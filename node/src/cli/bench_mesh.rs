//! `meshlog bench mesh`: how fast a mesh converges. Starts N `meshlog node` processes on
//! loopback (node 0 first, the rest bootstrapping through it), then measures the time
//! for a newly started node to see every member, and for a new topic record to reach
//! every node, and each idle node's resident memory.

use super::output;
use crate::client::Client;
use crate::network::Multiaddr;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long any single wait may take before the benchmark gives up.
const WAIT_BUDGET: Duration = Duration::from_secs(120);
/// How often convergence is polled.
const POLL: Duration = Duration::from_millis(10);

/// Flags of `meshlog bench mesh`.
#[derive(Debug, clap::Args)]
pub struct MeshBench {
    /// Nodes in the mesh (the joining node is the last of them).
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Times a node joins (each time with a fresh identity).
    #[arg(long, default_value_t = 10)]
    pub joins: usize,
    /// Topics created (each from a different node).
    #[arg(long, default_value_t = 20)]
    pub topics: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

struct Proc {
    child: Child,
    addr: Multiaddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_node(dir: &Path, bootstrap: Option<&Multiaddr>) -> anyhow::Result<Proc> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["node", "--data-dir"]).arg(dir).args([
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--log",
        "warn",
    ]);
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", &b.to_string()]);
    }
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(a) = l.strip_prefix("listening on ") {
                    break a.parse()?;
                }
            }
            _ => anyhow::bail!("node in {} exited before listening", dir.display()),
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Ok(Proc { child, addr })
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn wait_until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while !check().await {
        anyhow::ensure!(t.elapsed() < WAIT_BUDGET, "gave up after {WAIT_BUDGET:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
    Ok(t.elapsed())
}

async fn live_count(c: &Client) -> usize {
    c.cluster_status().await.map(|s| s.members.iter().filter(|m| m.state == "up").count()).unwrap_or(0)
}

#[derive(Serialize)]
struct MeshResult {
    nodes: usize,
    join_ms_p50: f64,
    join_ms_p99: f64,
    topic_ms_p50: f64,
    topic_ms_p99: f64,
    idle_rss_mib_per_node: f64,
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0)
}

impl MeshBench {
    /// Run the benchmark.
    pub async fn run(self) -> anyhow::Result<()> {
        anyhow::ensure!(self.nodes >= 2, "--nodes must be at least 2");
        let scratch = tempfile_dir()?;
        let mut procs = vec![spawn_node(&scratch.join("n0"), None)?];
        for i in 1..self.nodes - 1 {
            procs.push(spawn_node(&scratch.join(format!("n{i}")), Some(&procs[0].addr))?);
        }
        let mut clients = Vec::new();
        for p in &procs {
            clients.push(Client::connect(&p.addr).await?);
        }
        let base = self.nodes - 1;
        for c in &clients {
            wait_until("the base mesh", || async { live_count(c).await == base }).await?;
        }
        let mut join_ms = Vec::new();
        for j in 0..self.joins {
            let t = Instant::now();
            let newcomer = spawn_node(&scratch.join(format!("join{j}")), Some(&procs[j % procs.len()].addr))?;
            let c = Client::connect(&newcomer.addr).await?;
            wait_until("the newcomer to see every member", || async { live_count(&c).await == self.nodes })
                .await?;
            join_ms.push(t.elapsed().as_secs_f64() * 1e3);
            drop(newcomer);
            for c in &clients {
                wait_until("the newcomer to be seen down", || async { live_count(c).await == base }).await?;
            }
        }
        let mut topic_ms = Vec::new();
        for t in 0..self.topics {
            let name = format!("bench-{t}");
            let start = Instant::now();
            let creator = clients[t % clients.len()].clone();
            let create =
                tokio::spawn(async move { creator.create_topic(&name, 1, 1, BTreeMap::new()).await });
            let want = format!("bench-{t}");
            for c in &clients {
                wait_until("the record on every node", || async {
                    c.list_topics().await.map(|l| l.iter().any(|x| x.name == want)).unwrap_or(false)
                })
                .await?;
            }
            topic_ms.push(start.elapsed().as_secs_f64() * 1e3);
            create.await??;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss: u64 = procs.iter().map(|p| rss_kib(p.child.id())).sum();
        let r = MeshResult {
            nodes: self.nodes,
            join_ms_p50: pct(&mut join_ms, 0.5),
            join_ms_p99: pct(&mut join_ms, 0.99),
            topic_ms_p50: pct(&mut topic_ms, 0.5),
            topic_ms_p99: pct(&mut topic_ms, 0.99),
            idle_rss_mib_per_node: rss as f64 / 1024.0 / procs.len() as f64,
        };
        drop(procs);
        let _ = std::fs::remove_dir_all(&scratch);
        if self.json {
            return output::json(&r);
        }
        println!(
            "mesh of {}: new node sees all members p50 {:.0} ms p99 {:.0} ms; topic record on every node p50 {:.0} ms p99 {:.0} ms; idle RSS {:.1} MiB/node",
            r.nodes, r.join_ms_p50, r.join_ms_p99, r.topic_ms_p50, r.topic_ms_p99, r.idle_rss_mib_per_node
        );
        Ok(())
    }
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("meshlog-bench-mesh-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
