//! Admission: a closed mesh (`meshlog mesh init`) admits only holders of its
//! credentials, in their role; an allowlisted mesh admits a client that keeps its key
//! (`--identity`); `/dns4` bootstrap addresses join; a first start that fails on a bad
//! file leaves nothing behind that a later start would misread.

use meshlog_tests::{members_up, meshlog_bin, run_cli, wait_until, NodeProcess, SHORT_BUDGET};
use std::path::Path;
use std::time::Duration;

/// How long an outsider gets to (fail to) join before we check it did not.
const OUTSIDER_GRACE: Duration = Duration::from_secs(3);

fn mesh_init(dir: &Path) {
    let out = std::process::Command::new(meshlog_bin()).args(["mesh", "init"]).arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn a_closed_mesh_admits_its_credentials_in_their_roles_only() {
    let keys = tempfile::tempdir().unwrap();
    let (mesh, other) = (keys.path().join("mesh"), keys.path().join("other"));
    mesh_init(&mesh);
    mesh_init(&other);
    let node_cred = mesh.join("node.credential").display().to_string();
    let client_cred = mesh.join("client.credential").display().to_string();
    let foreign_node = other.join("node.credential").display().to_string();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = NodeProcess::start_with(dirs[0].path(), &["--node-credential", &node_cred]);
    let b =
        NodeProcess::start_with(dirs[1].path(), &["--node-credential", &node_cred, "--bootstrap", &a.addr]);
    let outsider = NodeProcess::start_with(
        dirs[2].path(),
        &["--node-credential", &foreign_node, "--bootstrap", &a.addr],
    );
    let as_client = ["--client-credential", client_cred.as_str()];

    // Phase 1: the two credential holders form a mesh.
    wait_until("a and b form a mesh", SHORT_BUDGET, || async {
        (members_up(&a.addr, &as_client)? == 2).then_some(())
    })
    .await;

    // Phase 2: a node of another mesh dialling a is never admitted.
    tokio::time::sleep(OUTSIDER_GRACE).await;
    assert_eq!(members_up(&a.addr, &as_client), Some(2), "a node of another mesh joined");

    // Phase 3: clients: none, a foreign credential, and the mesh's own.
    let out = run_cli(&a.addr, &["topic", "list"], None);
    assert_ne!(out.code, 0, "a client without a credential was served: {}", out.stdout);
    assert!(out.stderr.contains("closed mesh"), "the refusal names the likely cause: {}", out.stderr);
    let out = run_cli(&a.addr, &["topic", "list", "--client-credential", &foreign_node], None);
    assert_ne!(out.code, 0, "a client of another mesh was served");
    let mut create = vec!["topic", "create", "t", "--partitions", "2", "--replication-factor", "2"];
    create.extend_from_slice(&as_client);
    let out = run_cli(&b.addr, &create, None);
    assert_eq!(out.code, 0, "the mesh's client is served: {}", out.stderr);
    let mut produce = vec!["produce", "t"];
    produce.extend_from_slice(&as_client);
    assert_eq!(run_cli(&a.addr, &produce, Some(b"one\ntwo\n")).code, 0);
    let mut consume =
        vec!["consume", "t", "--from-beginning", "--max-messages", "2", "--timeout-ms", "10000"];
    consume.extend_from_slice(&as_client);
    let out = run_cli(&b.addr, &consume, None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut got: Vec<&str> = out.stdout.lines().collect();
    got.sort();
    assert_eq!(got, ["one", "two"]);

    // Phase 4: a client credential cannot start a node.
    let d = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(meshlog_bin())
        .args(["node", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir"])
        .arg(d.path())
        .args(["--node-credential", &client_cred])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("client credential"));
    println!("figure: closed mesh: foreign nodes admitted 0, clients without a credential served 0");
    drop((b, outsider));
}

#[tokio::test]
async fn an_allowlisted_mesh_admits_a_client_that_keeps_its_identity() {
    let (d, keys) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let id_file = keys.path().join("client.key");
    let key = meshlog::network::identity::load_or_create_file(&id_file).unwrap();
    let client_id = key.public().to_peer_id().to_string();
    let a = NodeProcess::start_with(d.path(), &["--allow-peer", &client_id]);
    let id = id_file.display().to_string();
    let out = run_cli(&a.addr, &["topic", "list", "--identity", &id], None);
    assert_eq!(out.code, 0, "the allowlisted client is served: {}", out.stderr);
    let out = run_cli(&a.addr, &["topic", "list"], None);
    assert_ne!(out.code, 0, "a client with a fresh key was served by an allowlisted node");
}

#[tokio::test]
async fn a_dns_bootstrap_address_joins_the_mesh() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = NodeProcess::start(d1.path());
    let port = a.addr.split('/').nth(4).unwrap().to_string();
    let by_name = format!("/dns4/localhost/tcp/{port}");
    let _b = NodeProcess::start_with(d2.path(), &["--bootstrap", &by_name]);
    wait_until("b joins a through /dns4/localhost", SHORT_BUDGET, || async {
        (members_up(&a.addr, &[])? == 2).then_some(())
    })
    .await;
}

#[test]
fn a_first_start_that_fails_on_a_bad_file_leaves_no_key_without_a_store() {
    let d = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(meshlog_bin())
        .args(["node", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir"])
        .arg(d.path())
        .args(["--psk-file", "/nonexistent/mesh.key"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    // A key left alone here would make the next start believe its store was lost, and
    // its replicas would not vote until a catch-up that can never come from nothing.
    assert!(!d.path().join("node.key").exists(), "a failed first start left node.key behind");
}
