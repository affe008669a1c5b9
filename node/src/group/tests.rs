//! The group state machine without a log: joins, rebalances, session expiry, the
//! cooperative hand-over. (The coordinator around it is tested on real nodes in
//! tests/groups.rs.)

use super::*;

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

fn group(partitions: u32, assignor: Assignor) -> Group {
    let mut g = Group::new(assignor);
    g.topics.insert("t".into(), partitions);
    g
}

/// End the rebalance as the coordinator does once its record is appended.
fn complete(g: &mut Group, now: Instant) -> u32 {
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
fn a_rebalance_waits_for_every_member_and_then_splits_the_partitions() {
    let now = Instant::now();
    let mut g = group(6, Assignor::Range);
    let a = g.join("g", join_req(None, Assignor::Range, &[]), now).unwrap();
    assert_eq!(complete(&mut g, now), 1);
    assert_eq!(parts(&g, &a), [0, 1, 2, 3, 4, 5]);
    // A second member: the group rebalances and waits for the first to rejoin.
    let b = g.join("g", join_req(None, Assignor::Range, &[]), now).unwrap();
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert!(!g.ready(now), "the first member has not rejoined");
    g.join("g", join_req(Some(&a), Assignor::Range, &[]), now).unwrap();
    assert_eq!(complete(&mut g, now), 2);
    let (pa, pb) = (parts(&g, &a), parts(&g, &b));
    assert_eq!((pa.len(), pb.len()), (3, 3));
    assert!(pa.iter().all(|p| !pb.contains(p)));
}

#[test]
fn a_member_that_does_not_rejoin_is_dropped_at_the_deadline_and_a_silent_one_expires() {
    let t0 = Instant::now();
    let mut g = group(4, Assignor::RoundRobin);
    let a = g.join("g", join_req(None, Assignor::RoundRobin, &[]), t0).unwrap();
    complete(&mut g, t0);
    let b = g.join("g", join_req(None, Assignor::RoundRobin, &[]), t0).unwrap();
    // `a` never rejoins: at the rebalance deadline (10 s) it is dropped.
    assert!(!g.ready(t0 + Duration::from_secs(9)));
    complete(&mut g, t0 + Duration::from_secs(10));
    assert!(!g.members.contains_key(&a));
    assert_eq!(parts(&g, &b).len(), 4);
    // `b` stops heartbeating: gone after its session timeout, not before.
    let seen = g.members[&b].last_seen;
    assert!(g.expire(seen + Duration::from_millis(SESSION_MS as u64)).is_empty());
    assert_eq!(g.expire(seen + Duration::from_millis(SESSION_MS as u64 + 1)), vec![b]);
}

#[test]
fn a_different_assignor_is_refused_and_changes_nothing() {
    let now = Instant::now();
    let mut g = group(2, Assignor::Range);
    g.join("g", join_req(None, Assignor::Range, &[]), now).unwrap();
    complete(&mut g, now);
    let e = g.join("g", join_req(None, Assignor::RoundRobin, &[]), now).unwrap_err();
    assert_eq!(e.code, ErrorCode::InconsistentGroupProtocol);
    assert_eq!((g.members.len(), g.state, g.generation), (1, GroupState::Stable, 1));
    let e = g.join("g", join_req(Some("ghost"), Assignor::Range, &[]), now).unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownMemberId);
}

#[test]
fn cooperative_hand_over_withholds_a_partition_until_its_owner_lets_go() {
    let now = Instant::now();
    let co = Assignor::CooperativeSticky;
    let mut g = group(4, co);
    let a = g.join("g", join_req(None, co, &[]), now).unwrap();
    complete(&mut g, now);
    assert_eq!(parts(&g, &a), [0, 1, 2, 3]);
    g.members.get_mut(&a).unwrap().synced = true;
    // `b` joins; `a` rejoins still owning all four (it keeps reading meanwhile).
    let b = g.join("g", join_req(None, co, &[]), now).unwrap();
    g.join("g", join_req(Some(&a), co, &[0, 1, 2, 3]), now).unwrap();
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
    g.join("g", join_req(Some(&a), co, &[0, 1]), now).unwrap();
    g.join("g", join_req(Some(&b), co, &[]), now).unwrap();
    complete(&mut g, now);
    assert_eq!(parts(&g, &a), [0, 1]);
    assert_eq!(parts(&g, &b), [2, 3]);
    assert!(!g.follow_up);
}

#[test]
fn a_group_record_restores_generation_members_and_assignment() {
    let now = Instant::now();
    let mut g = group(3, Assignor::Range);
    let a = g.join("g", join_req(None, Assignor::Range, &[]), now).unwrap();
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
    let now = Instant::now();
    let mut g = group(4, Assignor::Range);
    let first = g.join("g", join_req(None, Assignor::Range, &[]), now).unwrap();
    for _ in 1..limits::MAX_MEMBERS_PER_GROUP {
        g.join("g", join_req(None, Assignor::Range, &[]), now).unwrap();
    }
    let (state, generation) = (g.state, g.generation);
    let e = g.join("g", join_req(None, Assignor::Range, &[]), now).unwrap_err();
    assert_eq!(e.code, ErrorCode::GroupMaxSizeReached);
    assert!(e.message.contains("already has 1000 members"), "{e}");
    assert_eq!((g.members.len(), g.state, g.generation), (limits::MAX_MEMBERS_PER_GROUP, state, generation));
    // A member already in the group still rejoins.
    g.join("g", join_req(Some(&first), Assignor::Range, &[]), now).unwrap();
}

#[test]
fn oversized_joins_are_refused_with_limit_exceeded() {
    let ok = join_req(None, Assignor::Range, &[0, 1]);
    limits::check_join(&ok).unwrap();
    let mut topics = ok.clone();
    topics.topics = (0..=limits::MAX_TOPICS_PER_MEMBER).map(|i| format!("t{i}")).collect();
    let mut owned = ok.clone();
    owned.owned = (0..=limits::MAX_OWNED_PER_MEMBER as u32).map(|p| TopicPartition::new("t", p)).collect();
    let mut client = ok.clone();
    client.client_id = "c".repeat(limits::MAX_CLIENT_ID_BYTES + 1);
    // Few topics, but long names: the byte cap.
    let mut bytes = ok.clone();
    bytes.topics = (0..limits::MAX_TOPICS_PER_MEMBER).map(|i| format!("{i}-{}", "x".repeat(300))).collect();
    for (what, j) in [("topics", topics), ("owned", owned), ("client id", client), ("bytes", bytes)] {
        let e = limits::check_join(&j).unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded, "{what}: {e}");
    }
}

#[test]
fn groups_per_partition_are_capped() {
    limits::check_new_group("g", limits::MAX_GROUPS_PER_PARTITION - 1).unwrap();
    let e = limits::check_new_group("g", limits::MAX_GROUPS_PER_PARTITION).unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert!(e.message.contains("cannot create group 'g'"), "{e}");
}

#[test]
fn commits_are_capped_in_metadata_and_offsets_per_group() {
    let offset = |p: u32, metadata: &str| {
        (TopicPartition::new("t", p), CommittedOffset { offset: 1, metadata: metadata.into() })
    };
    let commit = |offsets| OffsetCommit { group: "g".into(), member: None, offsets };
    limits::check_commit(&commit(vec![offset(0, &"m".repeat(limits::MAX_OFFSET_METADATA_BYTES))])).unwrap();
    let e =
        limits::check_commit(&commit(vec![offset(0, &"m".repeat(limits::MAX_OFFSET_METADATA_BYTES + 1))]))
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::OffsetMetadataTooLarge);

    let max = limits::MAX_OFFSETS_PER_GROUP as u32;
    let held: BTreeMap<TopicPartition, CommittedOffset> = (0..max - 1).map(|p| offset(p, "")).collect();
    // Re-committing held partitions, and one new one twice, fits.
    limits::check_offsets("g", &held, &[offset(0, ""), offset(max - 1, ""), offset(max - 1, "")]).unwrap();
    let e = limits::check_offsets("g", &held, &[offset(max - 1, ""), offset(max, "")]).unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert!(e.message.contains("would hold 100001 committed offsets"), "{e}");
}
