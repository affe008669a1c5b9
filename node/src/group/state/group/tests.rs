//! One group's state machine without a log: joins, rebalances, session expiry, the
//! cooperative hand-over. (The shard around it is tested step by step in
//! `state/tests.rs`, the coordinator on real nodes in tests/groups.rs.)

use super::*;
use std::sync::atomic::{AtomicU64, Ordering};

const SESSION_MS: u32 = 3_000;

fn join_req(member: Option<&str>, assignor: Assignor, owned: &[u32]) -> JoinGroup {
    JoinGroup {
        group: "g".into(),
        member_id: member.map(String::from),
        client_id: "c".into(),
        topics: vec!["t".into()],
        assignor,
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: 10_000,
        owned: owned.iter().map(|&p| TopicPartition::new("t", p)).collect(),
    }
}

/// Join with a fresh nonce (what the coordinator draws), so new members get distinct ids.
fn join(g: &mut Group, j: JoinGroup, now: u64) -> Result<String, WireError> {
    static NONCE: AtomicU64 = AtomicU64::new(1);
    g.join("g", j, NONCE.fetch_add(1, Ordering::Relaxed), now, 0)
}

fn group(partitions: u32, assignor: Assignor) -> Group {
    let mut g = Group::new(assignor);
    g.topics.insert("t".into(), partitions);
    g
}

/// End the rebalance as the shard does once its record is appended.
fn complete(g: &mut Group, now: u64) -> u32 {
    assert!(g.ready(now), "rebalance not ready: {:?}", g.state);
    g.next_generation();
    if g.state == GroupState::CompletingRebalance {
        g.state = GroupState::Stable;
    }
    g.generation
}

fn parts(g: &Group, id: &str) -> Vec<u32> {
    g.members[id].assignment.iter().map(|tp| tp.partition).collect()
}

#[test]
fn a_new_members_id_is_its_client_id_and_the_nonce() {
    let mut g = group(1, Assignor::Range);
    let id = g.join("g", join_req(None, Assignor::Range, &[]), 0xab, 0, 0).unwrap();
    assert_eq!(id, "c-00000000000000ab");
}

#[test]
fn a_rebalance_waits_for_every_member_and_then_splits_the_partitions() {
    let now = 1_000;
    let mut g = group(6, Assignor::Range);
    let a = join(&mut g, join_req(None, Assignor::Range, &[]), now).unwrap();
    assert_eq!(complete(&mut g, now), 1);
    assert_eq!(parts(&g, &a), [0, 1, 2, 3, 4, 5]);
    // A second member: the group rebalances and waits for the first to rejoin.
    let b = join(&mut g, join_req(None, Assignor::Range, &[]), now).unwrap();
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert!(!g.ready(now), "the first member has not rejoined");
    join(&mut g, join_req(Some(&a), Assignor::Range, &[]), now).unwrap();
    assert_eq!(complete(&mut g, now), 2);
    let (pa, pb) = (parts(&g, &a), parts(&g, &b));
    assert_eq!((pa.len(), pb.len()), (3, 3));
    assert!(pa.iter().all(|p| !pb.contains(p)));
}

#[test]
fn a_member_that_does_not_rejoin_is_dropped_at_the_deadline_and_a_silent_one_expires() {
    let t0 = 1_000;
    let mut g = group(4, Assignor::RoundRobin);
    let a = join(&mut g, join_req(None, Assignor::RoundRobin, &[]), t0).unwrap();
    complete(&mut g, t0);
    let b = join(&mut g, join_req(None, Assignor::RoundRobin, &[]), t0).unwrap();
    // `a` never rejoins: at the rebalance deadline (10 s) it is dropped.
    assert!(!g.ready(t0 + 9_000));
    complete(&mut g, t0 + 10_000);
    assert!(!g.members.contains_key(&a));
    assert_eq!(parts(&g, &b).len(), 4);
    // `b` stops heartbeating: gone after its session timeout, not before.
    let seen = g.members[&b].last_seen_ms;
    assert!(g.expire(seen + SESSION_MS as u64).is_empty());
    assert_eq!(g.expire(seen + SESSION_MS as u64 + 1), vec![b]);
}

#[test]
fn a_different_assignor_is_refused_and_changes_nothing() {
    let now = 1_000;
    let mut g = group(2, Assignor::Range);
    join(&mut g, join_req(None, Assignor::Range, &[]), now).unwrap();
    complete(&mut g, now);
    let e = join(&mut g, join_req(None, Assignor::RoundRobin, &[]), now).unwrap_err();
    assert_eq!(e.code, ErrorCode::InconsistentGroupProtocol);
    assert_eq!((g.members.len(), g.state, g.generation), (1, GroupState::Stable, 1));
    let e = join(&mut g, join_req(Some("ghost"), Assignor::Range, &[]), now).unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownMemberId);
}

#[test]
fn cooperative_hand_over_withholds_a_partition_until_its_owner_lets_go() {
    let now = 1_000;
    let co = Assignor::CooperativeSticky;
    let mut g = group(4, co);
    let a = join(&mut g, join_req(None, co, &[]), now).unwrap();
    complete(&mut g, now);
    assert_eq!(parts(&g, &a), [0, 1, 2, 3]);
    g.members.get_mut(&a).unwrap().synced = true;
    // `b` joins; `a` rejoins still owning all four (it keeps reading meanwhile).
    let b = join(&mut g, join_req(None, co, &[]), now).unwrap();
    join(&mut g, join_req(Some(&a), co, &[0, 1, 2, 3]), now).unwrap();
    complete(&mut g, now);
    // `a` keeps two; the two that move are withheld from `b` while `a` owns them.
    assert_eq!(parts(&g, &a), [0, 1]);
    assert_eq!(parts(&g, &b), Vec::<u32>::new());
    let revoking: Vec<u32> = g.members[&a].revoking.iter().map(|tp| tp.partition).collect();
    assert_eq!(revoking, [2, 3]);
    assert!(g.follow_up);
    // No follow-up before `a` has fetched its new assignment.
    assert!(!g.maybe_follow_up(now));
    g.members.get_mut(&a).unwrap().synced = true;
    assert!(g.maybe_follow_up(now));
    // `a` rejoins owning only what it kept; now `b` gets the other two.
    join(&mut g, join_req(Some(&a), co, &[0, 1]), now).unwrap();
    join(&mut g, join_req(Some(&b), co, &[]), now).unwrap();
    complete(&mut g, now);
    assert_eq!(parts(&g, &a), [0, 1]);
    assert_eq!(parts(&g, &b), [2, 3]);
    assert!(!g.follow_up);
}

#[test]
fn a_group_record_restores_generation_members_and_assignment() {
    let now = 1_000;
    let mut g = group(3, Assignor::Range);
    let a = join(&mut g, join_req(None, Assignor::Range, &[]), now).unwrap();
    complete(&mut g, now);
    let record = g.record();
    let mut restored = Group::new(Assignor::default());
    restored.restore(record, now);
    assert_eq!(
        (restored.generation, restored.state, restored.assignor),
        (1, GroupState::Stable, Assignor::Range)
    );
    assert_eq!(parts(&restored, &a), [0, 1, 2]);
}

#[test]
fn a_full_group_refuses_a_new_member_and_changes_nothing() {
    let now = 1_000;
    let mut g = group(4, Assignor::Range);
    let first = join(&mut g, join_req(None, Assignor::Range, &[]), now).unwrap();
    for _ in 1..limits::MAX_MEMBERS_PER_GROUP {
        join(&mut g, join_req(None, Assignor::Range, &[]), now).unwrap();
    }
    let (state, generation) = (g.state, g.generation);
    let e = join(&mut g, join_req(None, Assignor::Range, &[]), now).unwrap_err();
    assert_eq!(e.code, ErrorCode::GroupMaxSizeReached);
    assert!(e.message.contains("already has 1000 members"), "{e}");
    assert_eq!((g.members.len(), g.state, g.generation), (limits::MAX_MEMBERS_PER_GROUP, state, generation));
    // A member already in the group still rejoins.
    join(&mut g, join_req(Some(&first), Assignor::Range, &[]), now).unwrap();
}
