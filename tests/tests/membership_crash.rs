//! Membership converges after crashes: real `meshlog` processes see a `kill -9`ed member
//! go down (no leave message, only missed heartbeats), and see it up again, with the same
//! identity, when it restarts on its data directory.

use meshlog_tests::{run_cli, wait_until, NodeProcess, LONG_BUDGET};
use serde_json::Value;

fn states(server: &str) -> Option<Vec<(String, String)>> {
    let out = run_cli(server, &["cluster", "status", "--json"], None);
    let v: Value = serde_json::from_str(&out.stdout).ok()?;
    let members = v["members"].as_array()?;
    Some(
        members
            .iter()
            .map(|m| {
                (m["peer"].as_str().unwrap_or("").to_string(), m["state"].as_str().unwrap_or("").to_string())
            })
            .collect(),
    )
}

fn state_of(server: &str, peer: &str) -> Option<String> {
    states(server)?.into_iter().find(|(p, _)| p == peer).map(|(_, s)| s)
}

fn peer_of(addr: &str) -> String {
    addr.rsplit('/').next().unwrap().to_string()
}

#[tokio::test]
async fn a_killed_member_goes_down_and_comes_back_with_its_identity() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = NodeProcess::start(dirs[0].path());
    let b = NodeProcess::start_with(dirs[1].path(), &["--bootstrap", &a.addr]);
    let c = NodeProcess::start_with(dirs[2].path(), &["--bootstrap", &a.addr]);
    let c_id = peer_of(&c.addr);
    for n in [&a, &b] {
        wait_until("c is up everywhere", LONG_BUDGET, || async {
            (state_of(&n.addr, &c_id)? == "up").then_some(())
        })
        .await;
    }

    // Phase 1: kill -9 c: no leave message; a and b see it down after missed heartbeats.
    c.kill9();
    for n in [&a, &b] {
        wait_until("c is down everywhere", LONG_BUDGET, || async {
            (state_of(&n.addr, &c_id)? == "down").then_some(())
        })
        .await;
    }

    // Phase 2: restart c on its data directory: same PeerId, up again everywhere.
    let c = NodeProcess::start_with(dirs[2].path(), &["--bootstrap", &a.addr]);
    assert_eq!(peer_of(&c.addr), c_id, "identity survives a restart");
    for n in [&a, &b] {
        wait_until("c is up again", LONG_BUDGET, || async {
            (state_of(&n.addr, &c_id)? == "up").then_some(())
        })
        .await;
    }
}
