//! A full disk: a real `meshlog node` whose data directory fills up answers writes with a
//! clear `STORAGE_ERROR` naming the cause, acknowledges nothing it could not store, keeps
//! serving what it holds, and after a restart with space again has lost nothing it
//! acknowledged. Needs root (it mounts a small tmpfs); skips otherwise, except in CI.

use meshlog::client::consumer::{self, StartAt};
use meshlog::client::{Client, ClientError};
use meshlog_protocol::batch::BatchBuilder;
use meshlog_protocol::messages::{ClientRequest, ClientResponse, ProduceRequest};
use meshlog_protocol::types::Acks;
use meshlog_protocol::ErrorCode;
use meshlog_tests::NodeProcess;
use std::collections::BTreeMap;
use std::process::Command;

struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status();
        ok.ok().filter(|s| s.success()).map(|_| Tmpfs(dir.to_path_buf()))
    }
    fn resize(&self, size: &str) {
        let s = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(s.success(), "remount");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

async fn produce(c: &Client, i: usize) -> Result<u64, ClientError> {
    let mut b = BatchBuilder::new();
    for j in 0..64 {
        b.push(1, None, Some(format!("{i:06}-{j:02}-{}", "x".repeat(900)).as_bytes()), &[]);
    }
    let req = ProduceRequest {
        topic: "t".into(),
        partition: 0,
        acks: Acks::All,
        timeout_ms: 5000,
        leader_epoch: None,
        batch: b.build().unwrap(),
    };
    match c.request(ClientRequest::Produce(req)).await? {
        ClientResponse::Produced(r) => Ok(r.base_offset.unwrap_or(0)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_full_disk_fails_writes_clearly_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(dir.path(), "24m") else {
        assert!(std::env::var_os("CI").is_none(), "CI must be able to mount a tmpfs (run as root)");
        return println!("SKIP: cannot mount a tmpfs (not root)");
    };
    let data = dir.path().join("data");
    let node = NodeProcess::start(&data);
    let client = Client::connect(&node.addr.parse().unwrap()).await.unwrap();
    client.create_topic("t", 1, 1, BTreeMap::new()).await.unwrap();

    // Phase 1: write until the disk is full; every acknowledged batch is remembered.
    let mut acked = 0usize;
    let err = loop {
        match produce(&client, acked).await {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 10_000, "the disk never filled");
    };
    match &err {
        ClientError::Server(w) => {
            assert_eq!(w.code, ErrorCode::StorageError, "{w}");
            assert!(w.message.contains("No space left"), "the error names the cause: {w}");
        }
        other => panic!("expected a storage error, got {other}"),
    }
    // Phase 2: the node is alive and still serves what it holds; further writes fail.
    assert!(produce(&client, acked).await.is_err(), "no ack after the failure");
    let start = consumer::start_offset(&client, "t", 0, StartAt::Beginning).await.unwrap();
    assert_eq!(start, 0);
    let first = consumer::fetch(&client, "t", 0, 0, 1 << 20, 0).await.unwrap();
    assert!(!first.records.is_empty(), "reads are served on a full disk");

    // Phase 3: space returns; after a restart every acknowledged record is there.
    fs.resize("96m");
    node.kill9();
    let node = NodeProcess::start(&data);
    let client = Client::connect(&node.addr.parse().unwrap()).await.unwrap();
    let end = consumer::start_offset(&client, "t", 0, StartAt::End).await.unwrap();
    assert!(end >= (acked * 64) as u64, "acknowledged records lost: {end} < {}", acked * 64);
    produce(&client, acked + 1).await.expect("writes succeed again");
    println!("figure: disk full: {acked} batches acked before the failure, acks after it 0, node alive, lost 0 after restart");
}
