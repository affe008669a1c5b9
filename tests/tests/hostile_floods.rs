//! The hostile-actor suite, part two (issue #15): floods and hostile frames from rogue
//! clients against three real `meshlog node` processes. Thousands of parked long polls
//! must not starve heartbeats or replication (no election, `acks=all` writes complete);
//! large and stalled frames must keep every node under 512 MiB of RSS; topic and
//! partition creation floods must meet a quota; oversized length prefixes and garbage
//! bodies on every protocol must leave every node serving. Part one (forgeries) is
//! `hostile.rs`; the rogue harness is `meshlog_tests::rogue`.

use meshlog_protocol::messages::{ClientRequest, ProduceRequest};
use meshlog_protocol::types::Acks;
use meshlog_tests::cluster::Cluster;
use meshlog_tests::rogue::{
    self, addrs, lost, max_rss, pids, rss_sampler, serving, writer, Rogue, Tally, RSS_LIMIT_KIB,
    WRITES_DURING_ATTACK,
};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Long polls parked at once on one node (the issue: 2048 stalled its dispatch).
const PARKED_POLLS: usize = 3_000;
/// Connections they are spread over (each under yamux's 512 streams).
const POLL_CONNECTIONS: usize = 8;
/// Each poll's wait, longer than the whole check.
const POLL_WAIT_MS: u32 = 60_000;
/// How long the mesh must stay undisturbed while they are parked (many member timeouts).
const POLL_HOLD: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_long_polls_do_not_trigger_elections() {
    use meshlog::client::consumer::{start_offset, StartAt};
    use meshlog_protocol::messages::FetchRequest;
    let c = Cluster::start(3).await;
    c.client(0).create_topic("busy", 1, 3, Default::default()).await.unwrap();
    c.client(0).create_topic("idle", 3, 3, Default::default()).await.unwrap();
    let (leader, epoch) = c.wait_leader_with_full_isr("busy", 0).await;
    let mut ends = Vec::new();
    for p in 0..3 {
        c.wait_leader_with_full_isr("idle", p).await;
        ends.push(start_offset(&c.client(0), "idle", p, StartAt::End).await.unwrap());
    }
    let bg = writer(&c, "busy", 0);
    bg.wait_for_more(5, "writes before the polls").await;
    let mut rogues = Vec::new();
    for _ in 0..POLL_CONNECTIONS {
        rogues.push(Rogue::client(&addrs(&c)).await);
    }
    let mut polls = tokio::task::JoinSet::new();
    for k in 0..PARKED_POLLS {
        let r = &rogues[k % POLL_CONNECTIONS];
        // All at the leader of `busy`: its heartbeats and replication must not starve.
        let (net, node, p) = (r.net.clone(), r.nodes[leader], (k % 3) as u32);
        let req = ClientRequest::Fetch(FetchRequest {
            topic: "idle".into(),
            partition: p,
            offset: ends[p as usize],
            max_bytes: 1 << 20,
            max_wait_ms: POLL_WAIT_MS,
            leader_epoch: None,
        });
        polls.spawn(async move { net.client_request(node, req).await });
    }
    let started = std::time::Instant::now();
    bg.wait_for_more(WRITES_DURING_ATTACK, "acks=all writes while the polls are parked").await;
    let mut t = Tally::default();
    t.tried(PARKED_POLLS as u64);
    // Hold the polls for many member timeouts, watching the partition's epoch.
    let mut elected = Vec::new();
    while started.elapsed() < POLL_HOLD {
        let claims = c.leadership_claims("busy", 0).await;
        elected.extend(claims.into_iter().filter(|(e, _)| *e != epoch));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bg.wait_for_more(WRITES_DURING_ATTACK, "acks=all writes after holding the polls").await;
    elected.extend(c.leadership_claims("busy", 0).await.into_iter().filter(|(e, _)| *e != epoch));
    t.observe(!elected.is_empty(), || {
        format!("parked polls triggered elections: {elected:?} (was epoch {epoch})")
    });
    let mut answered = 0;
    while let Some(done) = polls.try_join_next() {
        answered += done.is_ok() as usize;
    }
    polls.abort_all();
    drop(rogues);
    let lost = lost(&c, bg, "busy", 0).await;
    println!(
        "figure: parked long polls {PARKED_POLLS} ({answered} answered early, refused or busy); \
         elections triggered {}",
        elected.len()
    );
    t.finish("parked long polls", lost, serving(&c).await, 3);
}

/// A frame just under the node's default limit (16 MiB + 64 KiB).
const LARGE_FRAME_BYTES: usize = 15 << 20;
/// Large requests sent in all.
const LARGE_FRAMES: usize = 96;
/// Large requests in flight at once (bounds the test process's own memory).
const LARGE_IN_FLIGHT: usize = 16;
/// A frame over every node's limit.
const OVERSIZED_FRAME_BYTES: usize = 40 << 20;
/// Streams that claim a large frame, send part of it and stall (per node).
const STALLED_STREAMS: usize = 128;
/// What a stalled stream claims and what it sends of it.
const STALLED_CLAIM_BYTES: u32 = 16 << 20;
const STALLED_SENT_BYTES: usize = 4 << 20;
/// How long writing one stalled frame's part may take (a node may stop reading).
const STALLED_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frames_keep_node_memory_bounded() {
    let c = Cluster::start(3).await;
    c.client(0).create_topic("big", 3, 3, Default::default()).await.unwrap();
    let bg = writer(&c, "big", 0);
    bg.wait_for_more(5, "writes before the flood").await;
    let (stop, sampler) = rss_sampler(pids(&c));
    let mut t = Tally::default();

    // Large (invalid) produce requests and frames over the limit, from several clients.
    let rogues = [Rogue::client(&addrs(&c)).await, Rogue::client(&addrs(&c)).await];
    let garbage = vec![0xAB_u8; LARGE_FRAME_BYTES];
    for wave in 0..LARGE_FRAMES / LARGE_IN_FLIGHT {
        let mut set = tokio::task::JoinSet::new();
        for k in 0..LARGE_IN_FLIGHT {
            let r = &rogues[k % rogues.len()];
            let (net, node) = (r.net.clone(), r.nodes[k % 3]);
            let size = if k == 0 { OVERSIZED_FRAME_BYTES } else { LARGE_FRAME_BYTES };
            let mut batch = garbage.clone();
            batch.resize(size, 0xAB);
            let req = ClientRequest::Produce(ProduceRequest {
                topic: "big".into(),
                partition: (wave % 3) as u32,
                acks: Acks::All,
                timeout_ms: 5_000,
                leader_epoch: None,
                batch,
            });
            set.spawn(async move { matches!(net.client_request(node, req).await, Ok(Ok(_))) });
        }
        while let Some(ok) = set.join_next().await {
            t.note(ok.unwrap_or(false), || "a node accepted a garbage or oversized produce".into());
        }
    }

    let stalled = stall_streams(&c, &mut t).await;
    bg.wait_for_more(WRITES_DURING_ATTACK, "acks=all writes during the flood").await;
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.await.unwrap();
    drop(stalled);
    let lost = lost(&c, bg, "big", 0).await;
    println!(
        "figure: peak node RSS under large frames {} MiB (limit {} MiB)",
        peak >> 10,
        RSS_LIMIT_KIB >> 10
    );
    t.observe(peak >= RSS_LIMIT_KIB, || format!("a node's RSS reached {} MiB", peak >> 10));
    t.finish("large and stalled frames", lost, serving(&c).await, 3);
}

/// Open streams that claim a large frame, send part of it and stall, on every node's
/// client protocol, until [`STALLED_STREAMS`] per node or a node passes the RSS limit
/// (then stop: the point is made, and the machine is shared). Returns what must stay
/// alive for the streams to stay open.
async fn stall_streams(c: &Cluster, t: &mut Tally) -> (Vec<libp2p::Stream>, Vec<rogue::RawPeer>) {
    use futures::AsyncWriteExt;
    let (mut stalled, mut peers) = (Vec::new(), Vec::new());
    let chunk = vec![0x5A_u8; STALLED_SENT_BYTES];
    for node in addrs(c) {
        let raw = rogue::RawPeer::connect(&node).await;
        for _ in 0..STALLED_STREAMS {
            t.tried(1);
            let Some(mut s) = raw.open("/meshlog/client/1").await else { continue };
            let sent = async {
                s.write_all(&STALLED_CLAIM_BYTES.to_be_bytes()).await?;
                s.write_all(&[1]).await?;
                s.write_all(&chunk).await?;
                s.flush().await
            };
            let _ = tokio::time::timeout(STALLED_WRITE_TIMEOUT, sent).await;
            stalled.push(s);
            if max_rss(&pids(c)) >= RSS_LIMIT_KIB {
                peers.push(raw);
                return (stalled, peers);
            }
        }
        peers.push(raw);
    }
    (stalled, peers)
}

/// Topic creations a client may try in the flood (a quota must refuse some first).
const FLOOD_TOPICS: usize = 2_000;
/// Creations in flight at once.
const FLOOD_IN_FLIGHT: usize = 32;
/// Partitions of each large topic in the partition flood.
const FLOOD_PARTITIONS_PER_TOPIC: u32 = 1_000;
/// Large topics tried (20,000 partitions in all: a quota must refuse some first).
const FLOOD_LARGE_TOPICS: usize = 20;

/// Creations tried, creations refused.
async fn create_many(rogue: &Rogue, prefix: &str, count: usize, partitions: u32) -> (u64, u64) {
    let (mut tried, mut refused) = (0, 0);
    for wave in 0..count.div_ceil(FLOOD_IN_FLIGHT) {
        let mut set = tokio::task::JoinSet::new();
        for k in wave * FLOOD_IN_FLIGHT..((wave + 1) * FLOOD_IN_FLIGHT).min(count) {
            let (net, node) = (rogue.net.clone(), rogue.nodes[k % rogue.nodes.len()]);
            let req = ClientRequest::CreateTopic {
                name: format!("{prefix}-{k}"),
                partitions,
                replication_factor: 1,
                config: BTreeMap::new(),
            };
            set.spawn(async move { matches!(net.client_request(node, req).await, Ok(Ok(_))) });
        }
        while let Some(ok) = set.join_next().await {
            tried += 1;
            refused += !ok.unwrap_or(false) as u64;
        }
        if refused > 0 {
            break;
        }
    }
    (tried, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_creation_floods_meet_a_quota() {
    // MESHLOG_HOSTILE_SPARE_VICTIM=1 also shrinks the floods (for a build without quotas).
    let spare = std::env::var("MESHLOG_HOSTILE_SPARE_VICTIM").is_ok();
    let (small, large) = if spare { (100, 2) } else { (FLOOD_TOPICS, FLOOD_LARGE_TOPICS) };
    let c = Cluster::start(3).await;
    c.client(0).create_topic("steady", 1, 3, Default::default()).await.unwrap();
    let bg = writer(&c, "steady", 0);
    bg.wait_for_more(5, "writes before the flood").await;
    let rogue = Rogue::client(&addrs(&c)).await;
    let (tried_small, refused_small) = create_many(&rogue, "flood", small, 1).await;
    let (tried_large, refused_large) = create_many(&rogue, "wide", large, FLOOD_PARTITIONS_PER_TOPIC).await;
    bg.wait_for_more(WRITES_DURING_ATTACK, "acks=all writes after the flood").await;
    let mut t = Tally::default();
    t.tried(tried_small + tried_large);
    println!(
        "figure: topic flood: {tried_small} creations tried, {refused_small} refused; \
         {tried_large} creations of {FLOOD_PARTITIONS_PER_TOPIC} partitions tried, {refused_large} refused"
    );
    t.observe(refused_small == 0, || format!("{tried_small} topic creations from one client met no quota"));
    t.observe(refused_large == 0, || {
        format!("{tried_large} creations of {FLOOD_PARTITIONS_PER_TOPIC} partitions met no quota")
    });
    let lost = lost(&c, bg, "steady", 0).await;
    t.finish("topic and partition creation floods", lost, serving(&c).await, 3);
}

/// Rounds of every hostile frame on every protocol of every node.
const RAW_ROUNDS: usize = 3;
const RAW_PROTOCOLS: [&str; 5] = [
    "/meshlog/client/1",
    "/meshlog/peer/1",
    "/meshlog/replicate/1",
    "/meshlog/replicate/2",
    "/meshlog/hello/1",
];

/// Byte strings no codec should survive badly: oversized and zero length prefixes, an
/// unknown version, garbage bodies, a truncated frame, random noise.
fn hostile_frames() -> Vec<Vec<u8>> {
    let frame =
        |len: u32, version: u8, body: Vec<u8>| [len.to_be_bytes().to_vec(), vec![version], body].concat();
    let noise = |n: usize| (0..n).map(|_| rand::random::<u8>()).collect::<Vec<u8>>();
    vec![
        u32::MAX.to_be_bytes().to_vec(),
        0x7fff_ffff_u32.to_be_bytes().iter().copied().chain(vec![0; 1 << 20]).collect(),
        0u32.to_be_bytes().to_vec(),
        frame(1000, 9, noise(999)),
        frame(1000, 1, noise(999)),
        frame(1000, 1, noise(10)),
        frame(5, 1, vec![0xff; 4]),
        frame(9, 1, vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0]),
        noise(64 << 10),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_do_not_stop_a_node() {
    let mut c = Cluster::start(3).await;
    c.client(0).create_topic("framed", 1, 3, Default::default()).await.unwrap();
    let bg = writer(&c, "framed", 0);
    bg.wait_for_more(5, "writes before the frames").await;
    let mut t = Tally::default();
    let mut reached = 0;
    for node in addrs(&c) {
        let raw = rogue::RawPeer::connect(&node).await;
        // Every frame on its own stream, all at once (a node that neither answers nor
        // closes costs one timeout, not one per frame).
        let raw = &raw;
        let mut sends = Vec::new();
        for _ in 0..RAW_ROUNDS {
            for protocol in RAW_PROTOCOLS {
                for bytes in hostile_frames() {
                    sends.push(async move { (protocol, raw_send(raw, protocol, bytes).await) });
                }
            }
        }
        for (protocol, out) in futures::future::join_all(sends).await {
            reached += matches!(out, rogue::RawOutcome::Answered(_)) as u64;
            // An answer that decodes as a successful response would be acceptance.
            let accepted = match &out {
                // A hello answered means the garbage passed for a hello.
                rogue::RawOutcome::Answered(b) if protocol.contains("hello") => {
                    meshlog_protocol::frame::decode_frame::<meshlog_protocol::admission::Hello>(b, usize::MAX)
                        .is_ok()
                }
                rogue::RawOutcome::Answered(b) => meshlog_protocol::frame::decode_frame::<
                    meshlog_protocol::messages::ClientResult,
                >(b, usize::MAX)
                .is_ok_and(|(r, _)| r.is_ok()),
                rogue::RawOutcome::Refused => false,
            };
            t.note(accepted, || format!("{node} answered a hostile frame on {protocol} with success"));
        }
    }
    println!("figure: hostile frames that reached a node's protocol handler: {reached} of {}", t.tried);
    // The client protocol is open to every peer, so frames must have reached a node.
    assert!(reached > 0, "no raw stream was opened: the attack never reached a node");
    bg.wait_for_more(WRITES_DURING_ATTACK, "acks=all writes after the frames").await;
    for (i, n) in c.nodes.iter_mut().enumerate() {
        let exited = n.as_mut().is_none_or(|n| !matches!(n.child.try_wait(), Ok(None)));
        t.observe(exited, || format!("node {i} exited under hostile frames"));
    }
    let peak = max_rss(&pids(&c));
    t.observe(peak >= RSS_LIMIT_KIB, || format!("a node's RSS reached {} MiB", peak >> 10));
    let lost = lost(&c, bg, "framed", 0).await;
    t.finish("hostile frames (client, peer, replication, hello protocols)", lost, serving(&c).await, 3);
}

async fn raw_send(raw: &rogue::RawPeer, protocol: &'static str, bytes: Vec<u8>) -> rogue::RawOutcome {
    raw.send(protocol, &bytes).await
}
