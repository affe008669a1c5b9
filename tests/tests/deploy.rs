//! The deployments in `deploy/` work as shipped:
//! - `deploy/docker-compose.yml` starts three nodes that form a mesh with no flags, turn
//!   healthy on `/readyz`, and keep serving what was acknowledged after
//!   `docker-compose kill` of one node (run with Docker's compose tool, on the test image
//!   of the dev binary: the release image is `scripts/docker-image.sh`, not built in CI);
//! - `deploy/kubernetes/` passes the Kubernetes API schemas (`kubernetes-validate
//!   --strict`, from PyPI) and wires what the README promises: probes on `/readyz` and
//!   `/healthz`, `/dns4` bootstrap through the headless Service, a PodDisruptionBudget;
//! - `deploy/meshlog.service` passes `systemd-analyze verify`.
//!
//! A missing tool fails the test with how to install it (CI installs them in `.ci/run`);
//! only Docker follows the Docker tests' rule (`SKIP` outside CI).

use meshlog_tests::docker::{self, docker};
use meshlog_tests::{meshlog_bin, run_cli};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// `docker-compose up` of three fresh nodes until all are healthy: generous, the daemon
/// shares two cores with the rest of the suite.
const COMPOSE_READY_BUDGET: Duration = Duration::from_secs(180);
/// Until the survivors see a killed node as down and still serve its partitions.
const AFTER_KILL_BUDGET: Duration = Duration::from_secs(90);
/// One docker-compose command.
const COMPOSE_CLI_BUDGET: Duration = Duration::from_secs(180);
/// Records produced before the kill, all acknowledged by every replica.
const RECORDS: usize = 200;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

/// A tool's absence fails the test, saying how to get it.
fn require_tool(tool: &str, install: &str) {
    let found = Command::new(tool).arg("--help").output().is_ok();
    assert!(found, "`{tool}` is not installed: {install} (.ci/run does this)");
}

#[test]
fn kubernetes_manifests_pass_the_api_schemas_and_wire_probes_and_bootstrap() {
    require_tool("kubernetes-validate", "pip install kubernetes-validate");
    let dir = root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "expected the StatefulSet, the Services and the PDB, found {files:?}");
    let out = Command::new("kubernetes-validate").arg("--strict").args(&files).output().expect("runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubernetes-validate --strict failed:\n{text}");
    // The schema says the shapes are right; these say the node is wired as documented.
    let all: String = files.iter().map(|f| std::fs::read_to_string(f).expect("readable")).collect();
    for needle in [
        "kind: StatefulSet",
        "clusterIP: None",
        "kind: PodDisruptionBudget",
        "path: /readyz",
        "path: /healthz",
        "/dns4/meshlog-0.meshlog/tcp/9494",
        "volumeClaimTemplates",
        "MESHLOG_HTTP_LISTEN",
        "--no-mdns",
    ] {
        assert!(all.contains(needle), "deploy/kubernetes/ lacks `{needle}`");
    }
    // A manifest the schema refuses is refused (the check is not a no-op).
    let bad = tempfile::NamedTempFile::with_suffix(".yaml").expect("a temp file");
    std::fs::write(
        bad.path(),
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: x\nspec:\n  replicas: three\n",
    )
    .expect("written");
    let out = Command::new("kubernetes-validate").arg("--strict").arg(bad.path()).output().expect("runs");
    assert!(!out.status.success(), "kubernetes-validate took a StatefulSet with replicas: three");
    println!("FIGURE kubernetes: {} manifest files pass kubernetes-validate --strict", files.len());
}

#[test]
fn the_systemd_unit_verifies_and_is_sandboxed() {
    require_tool("systemd-analyze", "apt-get install systemd");
    let unit = std::fs::read_to_string(root().join("deploy/meshlog.service")).expect("the unit");
    for needle in ["ProtectSystem=strict", "NoNewPrivileges=yes", "DynamicUser=yes", "StateDirectory=meshlog"]
    {
        assert!(unit.contains(needle), "deploy/meshlog.service lacks {needle}");
    }
    // Verify a copy whose ExecStart names the binary this suite built (verify checks that
    // the program exists).
    let dir = tempfile::tempdir().expect("a temp dir");
    let copy = dir.path().join("meshlog.service");
    let bin = meshlog_bin();
    std::fs::write(&copy, unit.replace("/usr/local/bin/meshlog", &bin.display().to_string()))
        .expect("written");
    let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().expect("runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.trim().is_empty(), "systemd-analyze verify:\n{text}");
}

/// A compose project brought down (with its volumes) however the test ends.
struct Project {
    name: String,
    env: Vec<(String, String)>,
}

impl Project {
    fn compose(&self, args: &[&str]) -> meshlog_tests::CliOutput {
        let file = root().join("deploy/docker-compose.yml");
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-p").arg(&self.name).arg("-f").arg(&file).args(args);
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let out = cmd.output().unwrap_or_else(|e| panic!("docker-compose {args:?}: {e}"));
        meshlog_tests::CliOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn health(&self, service: &str) -> String {
        let id = self.compose(&["ps", "-q", service]).stdout.trim().to_string();
        if id.is_empty() {
            return "absent".into();
        }
        let out = docker(&["inspect", "-f", "{{.State.Health.Status}}", &id], None, COMPOSE_CLI_BUDGET)
            .expect("docker inspect");
        out.stdout.trim().to_string()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let out = self.compose(&["down", "-v", "--remove-orphans", "-t", "5"]);
        if out.code != 0 {
            eprintln!("docker-compose down failed: {}", out.stderr);
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("an address").port()
}

fn wait_for(budget: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + budget;
    while !done() {
        assert!(Instant::now() < deadline, "not within {budget:?}: {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn members_up(server: &str) -> usize {
    let out = run_cli(server, &["cluster", "status", "--json"], None);
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&out.stdout) else { return 0 };
    v["members"].as_array().map_or(0, |m| m.iter().filter(|m| m["state"] == "up").count())
}

#[test]
fn compose_starts_a_ready_mesh_that_survives_a_killed_node() {
    if !docker::require_docker() {
        return;
    }
    require_tool("docker-compose", "apt-get install docker-compose");
    let image = docker::image();
    let ports: Vec<u16> = (0..9).map(|_| free_port()).collect();
    let mut env = vec![("MESHLOG_IMAGE".to_string(), image)];
    for n in 0..3 {
        env.push((format!("MESHLOG_NODE{}_PORT", n + 1), ports[3 * n].to_string()));
        env.push((format!("MESHLOG_NODE{}_HTTP_PORT", n + 1), ports[3 * n + 1].to_string()));
        env.push((format!("MESHLOG_NODE{}_KAFKA_PORT", n + 1), ports[3 * n + 2].to_string()));
    }
    let project = Project { name: format!("meshlogtest{}x{}", std::process::id(), ports[0]), env };
    let started = Instant::now();
    let up = project.compose(&["up", "-d"]);
    assert_eq!(up.code, 0, "docker-compose up: {}", up.stderr);
    wait_for(COMPOSE_READY_BUDGET, "every node healthy on /readyz", || {
        ["node1", "node2", "node3"].iter().all(|s| project.health(s) == "healthy")
    });
    let ready_s = started.elapsed().as_secs_f64();
    let node1 = format!("/ip4/127.0.0.1/tcp/{}", ports[0]);
    let node3 = format!("127.0.0.1:{}", ports[6]);
    wait_for(COMPOSE_READY_BUDGET, "node1 sees three members up", || members_up(&node1) == 3);
    let meshed_s = started.elapsed().as_secs_f64();

    let create = run_cli(
        &node1,
        &["topic", "create", "orders", "--partitions", "3", "--replication-factor", "3"],
        None,
    );
    assert_eq!(create.code, 0, "topic create: {}", create.stderr);
    let lines: String = (0..RECORDS).map(|i| format!("order-{i}\n")).collect();
    let produce = run_cli(&node1, &["produce", "orders", "--acks", "all"], Some(lines.as_bytes()));
    assert_eq!(produce.code, 0, "produce: {}", produce.stderr);

    let killed_at = Instant::now();
    let kill = project.compose(&["kill", "node2"]);
    assert_eq!(kill.code, 0, "docker-compose kill node2: {}", kill.stderr);
    wait_for(AFTER_KILL_BUDGET, "node1 sees node2 down", || members_up(&node1) == 2);
    let down_s = killed_at.elapsed().as_secs_f64();
    // Every acknowledged record is still served, through another node (HOST:PORT form).
    let mut read = 0;
    wait_for(AFTER_KILL_BUDGET, "every acknowledged record is read back after the kill", || {
        let args = ["consume", "orders", "--from-beginning", "--timeout-ms", "3000"];
        let out = run_cli(&node3, &args, None);
        read = out.stdout.lines().filter(|l| l.starts_with("order-")).count();
        read >= RECORDS
    });
    assert_eq!(read, RECORDS, "acknowledged records lost or duplicated after the kill");
    println!(
        "FIGURE compose: three nodes healthy {ready_s:.1} s and meshed {meshed_s:.1} s after `up`; node2 seen \
         down {down_s:.1} s after `kill`; {read}/{RECORDS} acknowledged records read back"
    );
}
