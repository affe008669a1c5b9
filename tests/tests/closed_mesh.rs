//! A closed mesh: real `meshlog` processes sharing a pre-shared key form a mesh, while a
//! node with another key, a client without the key, and a peer missing from the
//! allowlist get no session at all.

use meshlog_tests::{members_up, run_cli, wait_until, NodeProcess, SHORT_BUDGET};
use std::path::Path;
use std::time::Duration;

/// How long an outsider gets to (fail to) join before we check it did not.
const OUTSIDER_GRACE: Duration = Duration::from_secs(3);

fn write_key(dir: &Path, name: &str) -> String {
    let out = std::process::Command::new(meshlog_tests::meshlog_bin()).arg("mesh-key").output().unwrap();
    assert!(out.status.success());
    let path = dir.join(name);
    std::fs::write(&path, &out.stdout).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn only_holders_of_the_mesh_key_get_a_session() {
    let keys = tempfile::tempdir().unwrap();
    let (key, other_key) = (write_key(keys.path(), "mesh.key"), write_key(keys.path(), "other.key"));
    let (d1, d2, d3) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = NodeProcess::start_with(d1.path(), &["--psk-file", &key]);
    let b = NodeProcess::start_with(d2.path(), &["--psk-file", &key, "--bootstrap", &a.addr]);
    let outsider = NodeProcess::start_with(d3.path(), &["--psk-file", &other_key, "--bootstrap", &a.addr]);

    // Phase 1: the two key holders see each other.
    wait_until("a and b form a mesh", SHORT_BUDGET, || async {
        (members_up(&a.addr, &["--psk-file", &key])? == 2).then_some(())
    })
    .await;

    // Phase 2: the outsider, dialing a's address with the wrong key, is never let in.
    // An absence has no event to wait for: give it several heartbeats, then look.
    tokio::time::sleep(OUTSIDER_GRACE).await;
    assert_eq!(members_up(&a.addr, &["--psk-file", &key]), Some(2), "the outsider joined a closed mesh");
    assert_eq!(
        members_up(&outsider.addr, &["--psk-file", &other_key]),
        Some(1),
        "the outsider saw the closed mesh"
    );

    // Phase 3: a client without the key (or with the wrong one) cannot get a session.
    let out = run_cli(&a.addr, &["topic", "list"], None);
    assert_ne!(out.code, 0, "a client without the key was served: {}", out.stdout);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
    let out = run_cli(&a.addr, &["topic", "list", "--psk-file", &other_key], None);
    assert_ne!(out.code, 0, "a client with the wrong key was served");
    let out = run_cli(&a.addr, &["topic", "list", "--psk-file", &key], None);
    assert_eq!(out.code, 0, "a key holder is served: {}", out.stderr);
    println!("figure: peer without the mesh key: sessions accepted 0 (node and client)");
    drop(b);
}

#[tokio::test]
async fn a_peer_missing_from_the_allowlist_gets_no_session() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The allowlist names a peer that is not the client's ephemeral key, so even the CLI
    // is refused: an allowlisted mesh admits only listed keys.
    let stranger = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";
    let a = NodeProcess::start_with(d1.path(), &["--allow-peer", stranger]);
    let b = NodeProcess::start_with(d2.path(), &["--bootstrap", &a.addr]);
    tokio::time::sleep(OUTSIDER_GRACE).await;
    let out = run_cli(&a.addr, &["cluster", "status", "--json"], None);
    assert_ne!(out.code, 0, "a peer missing from the allowlist was served: {}", out.stdout);
    let out = run_cli(&b.addr, &["cluster", "status", "--json"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let up = v["members"].as_array().unwrap().iter().filter(|m| m["state"] == "up").count();
    assert_eq!(up, 1, "b joined a mesh whose allowlist does not name it");
    println!("figure: peer not allowlisted: sessions accepted 0");
}
