//! Consumer groups on real processes: members share a topic's partitions, a killed
//! member's partitions move to the others after its session timeout, the coordinator's
//! node is killed in the middle of commits, and bad requests get clear errors. Each test
//! prints its figure line.

use meshlog::client::group::{group_call, Consumed, GroupConfig, GroupConsumer};
use meshlog::client::producer::{Producer, ProducerConfig};
use meshlog::client::{Client, ClientError};
use meshlog_protocol::group::{
    coordinator_partition, Assignor, CommittedOffset, GroupRequest, GroupResponse, JoinGroup, OffsetCommit,
    TopicPartition, OFFSETS_TOPIC,
};
use meshlog_protocol::ErrorCode;
use meshlog_tests::cluster::Cluster;
use meshlog_tests::{wait_until, LONG_BUDGET, SHORT_BUDGET};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Short sessions so a killed member is noticed quickly (the bound is 1 s).
const SESSION: Duration = Duration::from_secs(3);

/// What the members of a test did, shared with the test.
#[derive(Default)]
struct Seen {
    /// (member, partition, offset) of every record a member processed.
    reads: Vec<(usize, TopicPartition, u64)>,
    /// Each member's assignment now.
    assigned: BTreeMap<usize, Vec<TopicPartition>>,
    /// Each member's last acknowledged commit per partition.
    committed: BTreeMap<usize, BTreeMap<TopicPartition, u64>>,
    /// Commits acknowledged, per member.
    commits: BTreeMap<usize, u64>,
}

type Shared = Arc<Mutex<Seen>>;

fn config(group: &str, topic: &str, assignor: Assignor) -> GroupConfig {
    let mut cfg = GroupConfig::new(group, vec![topic.to_string()]);
    cfg.assignor = assignor;
    cfg.session_timeout = SESSION;
    cfg.rebalance_timeout = Duration::from_secs(10);
    cfg.fetch_wait = Duration::from_millis(100);
    cfg.retry_budget = LONG_BUDGET;
    cfg
}

/// A member that processes (records) every record, then commits, until stopped; abort
/// its task to kill it (no leave, no last commit).
fn spawn_member(
    id: usize,
    client: Client,
    cfg: GroupConfig,
    seen: Shared,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut m = GroupConsumer::new(client, cfg);
        while !stop.load(Ordering::Relaxed) {
            let records: Vec<Consumed> = match m.poll().await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("member {id}: poll failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            {
                let mut s = seen.lock().unwrap();
                for c in &records {
                    s.reads.push((id, c.tp.clone(), c.record.offset as u64));
                }
                s.assigned.insert(id, m.assignment());
            }
            for c in &records {
                m.ack(c);
            }
            match m.commit().await {
                Ok(()) => {
                    let mut s = seen.lock().unwrap();
                    s.committed.insert(id, m.committed().clone());
                    s.commits.insert(id, m.stats().commits);
                }
                Err(e) => eprintln!("member {id}: commit failed: {e}"),
            }
        }
        if let Err(e) = m.close().await {
            eprintln!("member {id}: close failed: {e}");
        }
    })
}

/// Write `n` records spread over the topic's partitions (acks=all, idempotent);
/// returns the next value number.
async fn produce(client: &Client, topic: &str, from: u64, n: u64) -> u64 {
    let mut p = Producer::new(client.clone(), topic, ProducerConfig::default()).await.unwrap();
    for i in from..from + n {
        let key = format!("k{i}");
        p.send(Some(key.as_bytes()), format!("v{i}").as_bytes(), 0).await.unwrap();
    }
    p.flush().await.unwrap();
    from + n
}

/// Every partition's high watermark.
async fn log_ends(client: &Client, topic: &str, partitions: u32) -> BTreeMap<TopicPartition, u64> {
    let mut out = BTreeMap::new();
    for p in 0..partitions {
        let hw = meshlog::client::consumer::start_offset(
            client,
            topic,
            p,
            meshlog::client::consumer::StartAt::End,
        )
        .await
        .unwrap();
        out.insert(TopicPartition::new(topic, p), hw);
    }
    out
}

/// Wait until the group's committed offsets reach every partition's log end.
async fn wait_caught_up(client: &Client, group: &str, topic: &str, partitions: u32) {
    let ends = log_ends(client, topic, partitions).await;
    wait_until(&format!("group {group} commits up to the log ends {ends:?}"), LONG_BUDGET, || async {
        let c: BTreeMap<TopicPartition, u64> =
            client.committed_offsets(group).await.ok()?.into_iter().map(|(tp, o)| (tp, o.offset)).collect();
        ends.iter().all(|(tp, e)| c.get(tp).is_some_and(|o| o >= e)).then_some(())
    })
    .await;
}

/// Every record below the log ends (offsets of records, not markers) was read by
/// someone: returns how many distinct records were read.
async fn check_at_least_once(
    client: &Client,
    topic: &str,
    partitions: u32,
    reads: &[(usize, TopicPartition, u64)],
) -> usize {
    let read: BTreeSet<(TopicPartition, u64)> = reads.iter().map(|(_, tp, o)| (tp.clone(), *o)).collect();
    let mut total = 0;
    for p in 0..partitions {
        for r in meshlog_tests::read_partition(client, topic, p).await {
            let tp = TopicPartition::new(topic, p);
            assert!(
                read.contains(&(tp.clone(), r.offset as u64)),
                "{tp} offset {} was never consumed",
                r.offset
            );
            total += 1;
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_six_partitions_and_a_killed_members_partitions_move() {
    let c = Cluster::start(3).await;
    let topic = "work";
    c.any_client().create_topic(topic, 6, 3, BTreeMap::new()).await.unwrap();
    let mut next = produce(&c.client(0), topic, 0, 600).await;
    let seen: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut members = Vec::new();
    for id in 0..3 {
        let cfg = config("workers", topic, Assignor::CooperativeSticky);
        members.push(spawn_member(id, c.client(id), cfg, seen.clone(), stop.clone()));
    }
    wait_until("three members hold two partitions each", LONG_BUDGET, || async {
        let s = seen.lock().unwrap();
        let sizes: Vec<usize> = (0..3).map(|i| s.assigned.get(&i).map_or(0, Vec::len)).collect();
        (sizes == [2, 2, 2]).then_some(())
    })
    .await;
    wait_caught_up(&c.client(0), "workers", topic, 6).await;
    // Kill member 2 mid-stream: more records arrive while it dies.
    next = produce(&c.client(0), topic, next, 300).await;
    let victim_parts = seen.lock().unwrap().assigned[&2].clone();
    members[2].abort();
    let _ = (&mut members[2]).await;
    let killed_at = Instant::now();
    let (last_commit, victim_reads, reads_at_kill) = {
        let s = seen.lock().unwrap();
        let reads: Vec<(TopicPartition, u64)> =
            s.reads.iter().filter(|(m, _, _)| *m == 2).map(|(_, tp, o)| (tp.clone(), *o)).collect();
        (s.committed.get(&2).cloned().unwrap_or_default(), reads, s.reads.len())
    };
    let moved = wait_until("the killed member's partitions move to the others", LONG_BUDGET, || async {
        let s = seen.lock().unwrap();
        let held: Vec<&TopicPartition> =
            (0..2).flat_map(|i| s.assigned.get(&i).into_iter().flatten()).collect();
        (held.len() == 6 && victim_parts.iter().all(|tp| held.contains(&tp))).then(|| killed_at.elapsed())
    })
    .await;
    next = produce(&c.client(1), topic, next, 300).await;
    wait_caught_up(&c.client(0), "workers", topic, 6).await;
    stop.store(true, Ordering::Relaxed);
    for m in members.drain(..2) {
        m.await.unwrap();
    }
    let s = std::mem::take(&mut *seen.lock().unwrap());
    let distinct = check_at_least_once(&c.client(0), topic, 6, &s.reads).await;
    // Duplicates: records of the killed member's partitions read by a survivor too.
    // A survivor starts each such partition at the killed member's last commit.
    let mut duplicates = 0;
    for tp in &victim_parts {
        let survivor_first =
            s.reads[reads_at_kill..].iter().filter(|(m, t, _)| *m != 2 && t == tp).map(|(_, _, o)| *o).min();
        let committed = last_commit.get(tp).copied().unwrap_or(0);
        if let Some(first) = survivor_first {
            let victim_max = victim_reads.iter().filter(|(t, _)| t == tp).map(|(_, o)| *o).max();
            assert!(
                first >= committed && victim_max.is_none_or(|m| first <= m + 1),
                "{tp}: survivors started at {first}, the killed member had committed {committed} and read up to {victim_max:?}"
            );
        }
        duplicates +=
            victim_reads.iter().filter(|(t, o)| t == tp && survivor_first.is_some_and(|f| *o >= f)).count();
    }
    let dup_total = s.reads.len() - distinct;
    assert_eq!(dup_total, duplicates, "duplicates outside the killed member's uncommitted tail");
    println!(
        "FIGURE groups: 3 members x 6 partitions, member killed: partitions moved in {} ms (session {} ms); \
         records {distinct} ({next} produced) consumed at least once, duplicates {duplicates} (all after the \
         killed member's last commit)",
        moved.as_millis(),
        SESSION.as_millis()
    );
}

/// A group and the node that coordinates it (leads its partition of the offsets topic).
async fn group_and_its_coordinator(c: &Cluster) -> (String, usize) {
    c.client(0).list_groups().await.unwrap(); // creates the offsets topic
    let t = c.client(0).topic_info(OFFSETS_TOPIC).await.unwrap();
    let name = "jobs-0".to_string();
    let leader = c.leader_id(OFFSETS_TOPIC, coordinator_partition(&name, t.partitions)).await;
    (name, c.index_of(&leader).expect("the coordinator is a node of the cluster"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_coordinator_mid_commits_keeps_offsets_and_the_group_going() {
    let mut c = Cluster::start(3).await;
    let topic = "jobs";
    c.any_client().create_topic(topic, 3, 3, BTreeMap::new()).await.unwrap();
    let (group, coordinator) = group_and_its_coordinator(&c).await;
    // The member and every client run on a node that survives the coordinator's death.
    let m = (coordinator + 1) % 3;
    let mut next = produce(&c.client(m), topic, 0, 300).await;
    let seen: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let member =
        spawn_member(0, c.client(m), config(&group, topic, Assignor::Range), seen.clone(), stop.clone());
    // A monitor reads the committed offsets all along: they must never go backwards.
    let watch_stop = Arc::new(AtomicBool::new(false));
    let regressions = Arc::new(AtomicU64::new(0));
    let monitor = {
        let (client, group, stop, regressions) =
            (c.client(m), group.clone(), watch_stop.clone(), regressions.clone());
        tokio::spawn(async move {
            let mut high: BTreeMap<TopicPartition, u64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(v) = client.committed_offsets(&group).await {
                    for (tp, o) in v {
                        let h = high.entry(tp.clone()).or_insert(o.offset);
                        if o.offset < *h {
                            eprintln!("{tp}: committed offset went back from {h} to {}", o.offset);
                            regressions.fetch_add(1, Ordering::Relaxed);
                        }
                        *h = (*h).max(o.offset);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    wait_caught_up(&c.client(m), &group, topic, 3).await;
    // Keep records (and so commits) flowing while the coordinator dies.
    let writer_stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, stop) = (c.client(m), writer_stop.clone());
        tokio::spawn(async move {
            let mut next = next;
            while !stop.load(Ordering::Relaxed) {
                next = produce(&client, "jobs", next, 10).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            next
        })
    };
    let commits_before = wait_until("commits are flowing", SHORT_BUDGET, || async {
        let n = seen.lock().unwrap().commits.get(&0).copied().unwrap_or(0);
        (n >= 3).then_some(n)
    })
    .await;
    let killed_id = c.ids[coordinator].clone();
    c.kill9(coordinator);
    let killed_at = Instant::now();
    let (monitor_client, g) = (c.client(m), group.clone());
    let moved = wait_until("another node coordinates the group", LONG_BUDGET, || async {
        let d = monitor_client.describe_group(&g).await.ok()?;
        (d.coordinator != killed_id && d.members.len() == 1).then(|| killed_at.elapsed())
    })
    .await;
    let resumed =
        wait_until("commits succeed again after the coordinator's node died", LONG_BUDGET, || async {
            let n = seen.lock().unwrap().commits.get(&0).copied().unwrap_or(0);
            (n > commits_before + 2).then(|| killed_at.elapsed())
        })
        .await;
    writer_stop.store(true, Ordering::Relaxed);
    next = writer.await.unwrap();
    next = produce(&c.client(m), topic, next, 100).await;
    wait_caught_up(&c.client(m), &group, topic, 3).await;
    let d = c.client(m).describe_group(&group).await.unwrap();
    let new_coordinator = c.index_of(d.coordinator.as_str()).unwrap();
    assert_ne!(new_coordinator, coordinator);
    stop.store(true, Ordering::Relaxed);
    member.await.unwrap();
    watch_stop.store(true, Ordering::Relaxed);
    monitor.await.unwrap();
    let s = std::mem::take(&mut *seen.lock().unwrap());
    let distinct = check_at_least_once(&c.client(m), topic, 3, &s.reads).await;
    assert_eq!(regressions.load(Ordering::Relaxed), 0, "committed offsets went backwards");
    println!(
        "FIGURE groups: coordinator node killed mid-commits: new coordinator (node {new_coordinator}) serving the \
         group, member kept, after {} ms; commits resumed after {} ms; committed offsets went back 0 times; \
         records {distinct} ({next} produced) consumed at least once, duplicates {}",
        moved.as_millis(),
        resumed.as_millis(),
        s.reads.len() - distinct
    );
}

fn code(r: Result<GroupResponse, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Server(w)) => {
            assert!(!w.message.is_empty());
            w.code
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_group_requests_get_clear_errors_and_change_nothing() {
    let c = Cluster::start(1).await;
    let client = c.client(0);
    client.create_topic("t", 2, 1, BTreeMap::new()).await.unwrap();
    client.create_topic("other", 1, 1, BTreeMap::new()).await.unwrap();
    produce(&client, "t", 0, 20).await;
    let budget = Duration::from_secs(10);
    let call = |req: GroupRequest| group_call(&client, req, budget);
    // A member holding both partitions of t, with one commit.
    let mut m = GroupConsumer::new(client.clone(), config("g", "t", Assignor::Range));
    let mut got = 0;
    while got < 20 {
        for r in m.poll().await.unwrap() {
            m.ack(&r);
            got += 1;
        }
    }
    m.commit().await.unwrap();
    let (member, generation) = (m.member_id().unwrap().to_string(), m.generation().unwrap());
    let before = client.committed_offsets("g").await.unwrap();
    assert_eq!(before.len(), 2);
    let commit = |member: Option<(String, u32)>, tp: TopicPartition| {
        GroupRequest::Commit(OffsetCommit {
            group: "g".into(),
            member,
            offsets: vec![(tp, CommittedOffset { offset: 1, metadata: String::new() })],
        })
    };
    let checks = [
        (
            "describe an unknown group",
            call(GroupRequest::Describe { group: "nope".into() }).await,
            ErrorCode::GroupIdNotFound,
        ),
        (
            "heartbeat in an unknown group",
            call(GroupRequest::Heartbeat { group: "nope".into(), member_id: member.clone(), generation })
                .await,
            ErrorCode::GroupIdNotFound,
        ),
        (
            "commit a partition the member does not own",
            call(commit(Some((member.clone(), generation)), TopicPartition::new("other", 0))).await,
            ErrorCode::PartitionNotAssigned,
        ),
        (
            "commit with a stale generation",
            call(commit(Some((member.clone(), generation - 1)), TopicPartition::new("t", 0))).await,
            ErrorCode::IllegalGeneration,
        ),
        (
            "commit as an unknown member",
            call(commit(Some(("ghost".into(), generation)), TopicPartition::new("t", 0))).await,
            ErrorCode::UnknownMemberId,
        ),
        (
            "reset the offsets of an active group",
            call(commit(None, TopicPartition::new("t", 0))).await,
            ErrorCode::NonEmptyGroup,
        ),
        (
            "commit a partition that does not exist",
            call(commit(Some((member.clone(), generation)), TopicPartition::new("t", 9))).await,
            ErrorCode::UnknownTopicOrPartition,
        ),
        (
            "an invalid group name",
            call(GroupRequest::Describe { group: "a b".into() }).await,
            ErrorCode::InvalidGroupId,
        ),
    ];
    for (what, result, want) in checks {
        assert_eq!(code(result), want, "{what}");
    }
    let join = |assignor: Assignor, session_ms: u32| {
        GroupRequest::Join(JoinGroup {
            group: "g".into(),
            member_id: None,
            client_id: "test".into(),
            topics: vec!["t".into()],
            assignor,
            session_timeout_ms: session_ms,
            rebalance_timeout_ms: 5_000,
            owned: Vec::new(),
        })
    };
    assert_eq!(code(call(join(Assignor::RoundRobin, 5_000)).await), ErrorCode::InconsistentGroupProtocol);
    assert_eq!(code(call(join(Assignor::Range, 10)).await), ErrorCode::InvalidSessionTimeout);
    // Nothing changed: same offsets, same member, same generation.
    assert_eq!(client.committed_offsets("g").await.unwrap(), before);
    let d = client.describe_group("g").await.unwrap();
    assert_eq!((d.generation, d.members.len()), (generation, 1));
    m.close().await.unwrap();
    // Once the group is empty an admin reset works.
    client.set_offsets("g", vec![(TopicPartition::new("t", 0), 0)]).await.unwrap();
    let after: BTreeMap<TopicPartition, u64> =
        client.committed_offsets("g").await.unwrap().into_iter().map(|(tp, o)| (tp, o.offset)).collect();
    assert_eq!(after[&TopicPartition::new("t", 0)], 0);
    println!("FIGURE groups: 10 bad requests refused with their codes; offsets and membership unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_consumers_on_two_nodes_share_a_topic_and_describe_shows_the_lag() {
    let c = Cluster::start(2).await;
    let (a, b) = (c.nodes[0].as_ref().unwrap().addr.clone(), c.nodes[1].as_ref().unwrap().addr.clone());
    let run = |server: &str, args: &[&str]| meshlog_tests::run_cli(server, args, None);
    assert_eq!(
        run(&a, &["topic", "create", "tasks", "--partitions", "4", "--replication-factor", "2"]).code,
        0
    );
    // Two members on two nodes; each stops after 15 s without a record: longer than the
    // group takes to form and balance on a loaded machine (with 4 s, a member could quit
    // before the second one had joined, and the test then waited for a group that was gone).
    let spawn = |server: String| {
        std::thread::spawn(move || {
            let args = [
                "consume",
                "tasks",
                "--group",
                "workers",
                "--print-offset",
                "--timeout-ms",
                "15000",
                "--session-timeout-ms",
                "3000",
            ];
            meshlog_tests::run_cli(&server, &args, None)
        })
    };
    let (ta, tb) = (spawn(a.clone()), spawn(b.clone()));
    let client = c.client(0);
    wait_until("two CLI members hold two partitions each", LONG_BUDGET, || async {
        let d = client.describe_group("workers").await.ok()?;
        (d.members.len() == 2 && d.members.iter().all(|m| m.partitions.len() == 2)).then_some(())
    })
    .await;
    let input: String = (0..200).map(|i| format!("k{i}:task-{i}\n")).collect();
    let p = meshlog_tests::run_cli(&a, &["produce", "tasks", "--key-separator", ":"], Some(input.as_bytes()));
    assert_eq!(p.code, 0, "{}", p.stderr);
    let (oa, ob) = (ta.join().unwrap(), tb.join().unwrap());
    assert_eq!((oa.code, ob.code), (0, 0), "{}\n{}", oa.stderr, ob.stderr);
    let values = |o: &str| -> Vec<String> {
        o.lines().filter_map(|l| l.split('\t').nth(2)).map(String::from).collect()
    };
    let (va, vb) = (values(&oa.stdout), values(&ob.stdout));
    assert!(!va.is_empty() && !vb.is_empty(), "both members got work: {} and {}", va.len(), vb.len());
    let all: BTreeSet<&String> = va.iter().chain(&vb).collect();
    assert_eq!(all.len(), 200, "every task consumed");
    // Lag 0 and an empty group after both left.
    let d = run(&a, &["group", "describe", "workers", "--json"]);
    assert_eq!(d.code, 0, "{}", d.stderr);
    let j: serde_json::Value = serde_json::from_str(&d.stdout).unwrap();
    assert_eq!(j["state"], "Empty");
    assert_eq!(j["total_lag"], 0);
    assert_eq!(j["partitions"].as_array().unwrap().len(), 4);
    let table = run(&b, &["group", "describe", "workers"]);
    assert!(table.stdout.contains("LOG-END-OFFSET") && table.stdout.contains("LAG"), "{}", table.stdout);
    assert!(run(&b, &["group", "list"]).stdout.contains("workers"));
    // The group resumes where it left off (nothing new), and a reset re-reads it all.
    let again = run(&b, &["consume", "tasks", "--group", "workers", "--timeout-ms", "1500"]);
    assert_eq!(again.stdout.lines().count(), 0, "resumed after the last commit: {}", again.stdout);
    let reset = run(
        &b,
        &["consume", "tasks", "--group", "workers", "--reset-offsets", "earliest", "--timeout-ms", "2000"],
    );
    assert_eq!(reset.stdout.lines().count(), 200, "{}", reset.stderr);
    println!(
        "FIGURE groups: 2 CLI members on 2 nodes split 200 tasks {}/{}; lag 0 after; resume read 0; reset re-read 200",
        va.len(),
        vb.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offsets_log_stays_bounded_and_keeps_every_groups_offsets_across_a_restart() {
    use meshlog::server;
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        meshlog::config::NodeConfig { offsets_topic_partitions: 1, ..meshlog_tests::test_config(dir.path()) };
    let node = server::start(cfg.clone()).await.unwrap();
    let client = Client::connect(&node.listen_addrs()[0]).await.unwrap();
    client.create_topic("t", 1, 1, BTreeMap::new()).await.unwrap();
    let tp = TopicPartition::new("t", 0);
    // One group commits once and then never again: without care its record would pin
    // the head of the offsets log while another group commits over and over.
    client.set_offsets("idle", vec![(tp.clone(), 7)]).await.unwrap();
    const COMMITS: u64 = 2_500;
    for i in 1..=COMMITS {
        client.set_offsets("busy", vec![(tp.clone(), i)]).await.unwrap();
    }
    let held = wait_until("compaction frees the head of the offsets log", LONG_BUDGET, || async {
        node.broker().enforce_retention();
        let d = client.describe_topic(OFFSETS_TOPIC).await.ok()?;
        let p = &d.partitions[0];
        let held = p.log_end_offset - p.log_start_offset;
        // Bounded: about four offsets per live key plus a slack of 1,000 (group/mod.rs).
        (p.log_start_offset > 2_000 && held <= 1_010).then_some((held, p.size_bytes))
    })
    .await;
    node.shutdown().await;
    drop(client);
    let node = server::start(cfg).await.unwrap();
    let client = Client::connect(&node.listen_addrs()[0]).await.unwrap();
    for (group, want) in [("idle", 7), ("busy", COMMITS)] {
        let got = wait_until(&format!("{group}'s offsets after the restart"), SHORT_BUDGET, || async {
            client
                .committed_offsets(group)
                .await
                .ok()?
                .into_iter()
                .find(|(t, _)| *t == tp)
                .map(|(_, o)| o.offset)
        })
        .await;
        assert_eq!(got, want, "{group}");
    }
    println!(
        "FIGURE groups: {COMMITS} commits of one group beside an idle group: the offsets log holds {} offsets \
         ({} bytes) after compaction; both groups' offsets survive a restart",
        held.0, held.1
    );
    node.shutdown().await;
}

/// A `meshlog consume --group` process whose stdout is collected as it prints.
struct CliMember {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
}

impl CliMember {
    fn start(server: &str, group: &str) -> CliMember {
        use std::io::BufRead;
        let mut child = std::process::Command::new(meshlog_tests::meshlog_bin())
            .args(["consume", "tasks", "--group", group, "--print-offset", "--timeout-ms", "8000"])
            .args(["--session-timeout-ms", "3000", "--server", server, "--log", "warn"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn meshlog consume");
        let out = child.stdout.take().expect("stdout");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        });
        CliMember { child, lines, reader }
    }

    fn values(&self) -> Vec<String> {
        self.lines.lock().unwrap().iter().filter_map(|l| l.split('\t').nth(2)).map(String::from).collect()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait(mut self) -> (i32, Vec<String>) {
        let status = self.child.wait().unwrap();
        let lines = self.lines.clone();
        self.reader.join().unwrap();
        let values =
            lines.lock().unwrap().iter().filter_map(|l| l.split('\t').nth(2)).map(String::from).collect();
        (status.code().unwrap_or(-1), values)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_members_survive_a_killed_member_and_the_coordinators_node_without_losing_a_task() {
    let mut c = Cluster::start(3).await;
    c.client(0).create_topic("tasks", 4, 3, BTreeMap::new()).await.unwrap();
    // The group's coordinator is the node that dies with one of the members; the members
    // run on the other two. (Searching for a group that node 2 coordinates never ended
    // when node 2 happened to lead no partition of the offsets topic.)
    let group = "workers".to_string();
    c.client(0).list_groups().await.unwrap();
    let offsets = c.client(0).topic_info(OFFSETS_TOPIC).await.unwrap().partitions;
    let leader = c.leader_id(OFFSETS_TOPIC, coordinator_partition(&group, offsets)).await;
    let coord = c.index_of(&leader).expect("the coordinator is a node of the cluster");
    let (ia, ib) = ((coord + 1) % 3, (coord + 2) % 3);
    let addr = |i: usize| c.nodes[i].as_ref().unwrap().addr.clone();
    let (a, b) = (addr(ia), addr(ib));
    let mut ma = CliMember::start(&a, &group);
    let mb = CliMember::start(&b, &group);
    let client = c.client(ia);
    wait_until("two CLI members hold two partitions each", LONG_BUDGET, || async {
        let d = client.describe_group(&group).await.ok()?;
        (d.members.len() == 2 && d.members.iter().all(|m| m.partitions.len() == 2)).then_some(())
    })
    .await;
    let produce = |from: usize, to: usize| {
        let input: String = (from..to).map(|i| format!("k{i}:task-{i}\n")).collect();
        let p =
            meshlog_tests::run_cli(&a, &["produce", "tasks", "--key-separator", ":"], Some(input.as_bytes()));
        assert_eq!(p.code, 0, "{}", p.stderr);
    };
    produce(0, 200);
    wait_caught_up(&client, &group, "tasks", 4).await;
    // kill -9 member A and the coordinator's node, then keep the work coming.
    ma.kill9();
    c.kill9(coord);
    let killed_at = Instant::now();
    produce(200, 400);
    let a_values = ma.values();
    let (code, b_values) = mb.wait();
    assert_eq!(code, 0, "member B ends on its idle timeout");
    let all: BTreeSet<&String> = a_values.iter().chain(&b_values).collect();
    let missing: Vec<String> = (0..400).map(|i| format!("task-{i}")).filter(|t| !all.contains(t)).collect();
    assert!(missing.is_empty(), "tasks never consumed: {missing:?}");
    let d = c.client(ia).describe_group(&group).await.unwrap();
    assert_ne!(c.index_of(d.coordinator.as_str()), Some(coord));
    let duplicates = a_values.len() + b_values.len() - all.len();
    println!(
        "FIGURE groups: CLI member and coordinator's node killed -9: 400 tasks, member A {} + member B {} \
         (duplicates {duplicates}), none lost; B finished {} ms after the kills (including its 8 s idle stop)",
        a_values.len(),
        b_values.len(),
        killed_at.elapsed().as_millis()
    );
}

/// The first group requests of a fresh mesh, asked of every node at the same moment:
/// each node tries to create the offsets topic, one creation wins, and every request
/// is answered from the winner's topic (a losing node waits for the winner's record
/// instead of failing with UNKNOWN_TOPIC_OR_PARTITION).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_group_requests_on_every_node_at_once_share_one_offsets_topic() {
    let c = Cluster::start(3).await;
    let clients: Vec<Client> = (0..3).map(|i| c.client(i)).collect();
    let asks = clients.iter().map(|client| client.list_groups());
    for (i, answer) in futures::future::join_all(asks).await.into_iter().enumerate() {
        let groups = answer.unwrap_or_else(|e| panic!("node {i}: {e}"));
        assert!(groups.is_empty(), "node {i}: no groups yet, got {}", groups.len());
    }
    let mut created = BTreeSet::new();
    for (i, client) in clients.iter().enumerate() {
        let t = wait_until(&format!("node {i} knows the offsets topic"), SHORT_BUDGET, || async {
            client.topic_info(OFFSETS_TOPIC).await.ok()
        })
        .await;
        created.insert(t.creation_id);
    }
    assert_eq!(created.len(), 1, "every node holds the same (winning) offsets topic");
    println!("figure: 3 concurrent first group requests answered; one offsets topic");
}
