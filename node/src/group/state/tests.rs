//! Group core unit tests: set a state, step once, assert the exact outputs (the records
//! to append and the answers).

use super::*;
use crate::group::limits;
use meshlog_protocol::group::{
    GroupDescription, GroupListing, JoinGroup, MemberDescription, OffsetCommit, StoredMember,
};

const SESSION_MS: u32 = 3_000;
const REBALANCE_MS: u32 = 10_000;

/// The initial rebalance delay of the shards `delayed()` returns.
const DELAY_MS: u64 = 3_000;

fn cfg() -> Config {
    Config {
        coordinator: "node-a".into(),
        min_session_timeout_ms: 1_000,
        max_session_timeout_ms: 60_000,
        initial_rebalance_delay_ms: 0,
    }
}

/// A shard loaded (from an empty log) in epoch 1.
fn loaded() -> Shard {
    loaded_with(cfg())
}

fn loaded_with(cfg: Config) -> Shard {
    let mut s = Shard::new(cfg);
    assert_eq!(s.step(0, Input::Loaded { epoch: Epoch::new(1) }), vec![]);
    s
}

/// A loaded shard whose groups wait [`DELAY_MS`] for more members when empty.
fn delayed() -> Shard {
    loaded_with(Config { initial_rebalance_delay_ms: DELAY_MS, ..cfg() })
}

fn id(nonce: u64) -> String {
    format!("c-{nonce:016x}")
}

fn tp(p: u32) -> TopicPartition {
    TopicPartition::new("t", p)
}

fn tps(ps: &[u32]) -> Vec<TopicPartition> {
    ps.iter().map(|&p| tp(p)).collect()
}

fn request(token: Token, request: GroupRequest) -> Input {
    Input::Request { token, request, context: Context::default() }
}

/// A join of group `g` to topic `t` (4 partitions): a new member (`member: None`) is
/// named by `nonce`.
fn join(token: Token, member: Option<&str>, nonce: u64) -> Input {
    let join = JoinGroup {
        group: "g".into(),
        member_id: member.map(String::from),
        client_id: "c".into(),
        topics: vec!["t".into()],
        assignor: Assignor::Range,
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        owned: Vec::new(),
    };
    let context =
        Context { partitions: BTreeMap::from([("t".to_string(), 4)]), member_nonce: nonce, unix_ms: 0 };
    Input::Request { token, request: GroupRequest::Join(join), context }
}

fn heartbeat(token: Token, member: &str, generation: u32) -> Input {
    request(token, GroupRequest::Heartbeat { group: "g".into(), member_id: member.into(), generation })
}

fn sync(token: Token, member: &str, generation: u32) -> Input {
    request(token, GroupRequest::Sync { group: "g".into(), member_id: member.into(), generation })
}

fn commit(token: Token, member: Option<(&str, u32)>, offsets: &[(u32, u64)], unix_ms: i64) -> Input {
    let offsets = offsets
        .iter()
        .map(|&(p, offset)| (tp(p), CommittedOffset { offset, metadata: String::new() }))
        .collect();
    let member = member.map(|(m, g)| (m.to_string(), g));
    let c = OffsetCommit { group: "g".into(), member, offsets };
    Input::Request {
        token,
        request: GroupRequest::Commit(c),
        context: Context { unix_ms, ..Context::default() },
    }
}

fn answer(token: Token, result: Result<GroupResponse, WireError>) -> Output {
    Output::Answer { token, result }
}

fn joined(member_id: &str, generation: Option<u32>, members: u32) -> Result<GroupResponse, WireError> {
    Ok(GroupResponse::Joined(JoinResult { member_id: member_id.into(), generation, members }))
}

fn group_value(generation: u32, members: &[(&str, &[u32])]) -> GroupValue {
    GroupValue {
        generation,
        assignor: Assignor::Range,
        members: members
            .iter()
            .map(|(m, ps)| StoredMember {
                member_id: m.to_string(),
                client_id: "c".into(),
                topics: vec!["t".into()],
                session_timeout_ms: SESSION_MS,
                rebalance_timeout_ms: REBALANCE_MS,
                partitions: tps(ps),
            })
            .collect(),
    }
}

fn group_record(generation: u32, members: &[(&str, &[u32])]) -> Record {
    Record {
        key: OffsetsKey::Group { group: "g".into() },
        value: Value::Group(group_value(generation, members)),
    }
}

fn offset_record(p: u32, offset: u64, commit_ms: i64) -> Record {
    let committed = CommittedOffset { offset, metadata: String::new() };
    Record {
        key: OffsetsKey::Offset { group: "g".into(), tp: tp(p) },
        value: Value::Offset(OffsetValue { committed, commit_ms }),
    }
}

/// A loaded shard whose group `g` has one member, `id(0xa)`, stable in generation 1 with
/// all four partitions, its group record at offset 0 and last seen at 1_000.
fn one_member() -> (Shard, String) {
    let mut s = loaded();
    let a = id(0xa);
    s.step(1_000, join(1, None, 0xa));
    assert_eq!(s.step(1_000, Input::Appended { base_offset: 0 }), vec![answer(1, joined(&a, Some(1), 1))]);
    (s, a)
}

/// `one_member` plus a second member `id(0xb)`: stable in generation 2, a with 0 and 1,
/// b with 2 and 3, both last seen at 2_000.
fn two_members() -> (Shard, String, String) {
    let (mut s, a) = one_member();
    let b = id(0xb);
    s.step(2_000, join(2, None, 0xb));
    s.step(2_000, join(3, Some(&a), 0));
    s.step(2_000, Input::Appended { base_offset: 1 });
    (s, a, b)
}

#[test]
fn a_first_join_appends_generation_one_and_is_answered_once_it_is_committed() {
    let mut s = loaded();
    let a = id(0xa);
    let out = s.step(1_000, join(1, None, 0xa));
    assert_eq!(out, vec![Output::Append(vec![group_record(1, &[(&a, &[0, 1, 2, 3])])])]);
    let out = s.step(1_001, Input::Appended { base_offset: 0 });
    assert_eq!(out, vec![answer(1, joined(&a, Some(1), 1))]);
    assert_eq!(s.live.offset(&OffsetsKey::Group { group: "g".into() }), Some(0));
    // Sync hands out the assignment, a heartbeat in the generation is taken: no records.
    assert_eq!(
        s.step(1_002, sync(2, &a, 1)),
        vec![answer(2, Ok(GroupResponse::Assignment(tps(&[0, 1, 2, 3]))))]
    );
    assert_eq!(s.step(1_003, heartbeat(3, &a, 1)), vec![answer(3, Ok(GroupResponse::Ok))]);
}

#[test]
fn a_second_member_starts_a_rebalance_that_ends_when_the_first_rejoins() {
    let (mut s, a) = one_member();
    let b = id(0xb);
    // Answered at once, without a generation: the first member has not rejoined.
    assert_eq!(s.step(2_000, join(2, None, 0xb)), vec![answer(2, joined(&b, None, 2))]);
    let rebalancing = WireError::new(ErrorCode::RebalanceInProgress, "group 'g' is rebalancing: rejoin");
    assert_eq!(s.step(2_001, heartbeat(3, &a, 1)), vec![answer(3, Err(rebalancing))]);
    let out = s.step(2_002, join(4, Some(&a), 0));
    assert_eq!(out, vec![Output::Append(vec![group_record(2, &[(&a, &[0, 1]), (&b, &[2, 3])])])]);
    assert_eq!(s.step(2_003, Input::Appended { base_offset: 1 }), vec![answer(4, joined(&a, Some(2), 2))]);
    // The new member polls again and learns its generation; nothing more is written.
    assert_eq!(s.step(2_004, join(5, Some(&b), 0)), vec![answer(5, joined(&b, Some(2), 2))]);
    assert_eq!(s.step(2_005, sync(6, &b, 2)), vec![answer(6, Ok(GroupResponse::Assignment(tps(&[2, 3]))))]);
}

#[test]
fn a_silent_member_expires_after_its_session_and_the_empty_group_is_written() {
    let (mut s, a) = one_member();
    let tick = |log_end| Input::Tick { log_start: 0, log_end, unix_ms: 0 };
    // Last seen at 1_000: still a member at exactly its session timeout.
    assert_eq!(s.step(1_000 + SESSION_MS as u64, tick(1)), vec![]);
    let out = s.step(1_001 + SESSION_MS as u64, tick(1));
    assert_eq!(out, vec![Output::Append(vec![group_record(2, &[])])]);
    assert_eq!(s.step(4_002, Input::Appended { base_offset: 1 }), vec![]);
    let gone = WireError::new(
        ErrorCode::UnknownMemberId,
        format!("group 'g' has no member '{a}' (its session lapsed or it left): rejoin"),
    );
    assert_eq!(s.step(4_003, heartbeat(1, &a, 1)), vec![answer(1, Err(gone))]);
    let listing = GroupListing {
        group: "g".into(),
        state: GroupState::Empty,
        members: 0,
        coordinator: "node-a".into(),
    };
    let list = request(2, GroupRequest::List { shard: 0 });
    assert_eq!(s.step(4_004, list), vec![answer(2, Ok(GroupResponse::Groups(vec![listing])))]);
}

#[test]
fn a_stale_generation_is_refused_on_heartbeat_sync_and_commit_and_writes_nothing() {
    let (mut s, a, _) = two_members();
    let stale =
        || Err(WireError::new(ErrorCode::IllegalGeneration, "group 'g' is at generation 2, not 1: rejoin"));
    assert_eq!(s.step(2_100, heartbeat(1, &a, 1)), vec![answer(1, stale())]);
    assert_eq!(s.step(2_101, sync(2, &a, 1)), vec![answer(2, stale())]);
    assert_eq!(s.step(2_102, commit(3, Some((&a, 1)), &[(0, 5)], 0)), vec![answer(3, stale())]);
    // Its own partitions only, in its generation.
    let not_owned = WireError::new(
        ErrorCode::PartitionNotAssigned,
        format!("member '{a}' of group 'g' does not own t-2 in generation 2"),
    );
    assert_eq!(
        s.step(2_103, commit(4, Some((&a, 2)), &[(0, 5), (2, 5)], 0)),
        vec![answer(4, Err(not_owned))]
    );
}

#[test]
fn a_commit_appends_exactly_one_offsets_record_and_is_answered_once_committed() {
    let (mut s, a) = one_member();
    let out = s.step(1_100, commit(1, Some((&a, 1)), &[(0, 5)], 1_234));
    assert_eq!(out, vec![Output::Append(vec![offset_record(0, 5, 1_234)])]);
    assert_eq!(
        s.step(1_101, Input::Appended { base_offset: 1 }),
        vec![answer(1, Ok(GroupResponse::Committed))]
    );
    let fetch = request(2, GroupRequest::FetchOffsets { group: "g".into(), partitions: None });
    let committed = vec![(tp(0), CommittedOffset { offset: 5, metadata: String::new() })];
    assert_eq!(s.step(1_102, fetch), vec![answer(2, Ok(GroupResponse::Offsets(committed)))]);
    assert_eq!(s.live.offset(&OffsetsKey::Offset { group: "g".into(), tp: tp(0) }), Some(1));
    // From outside the group, offsets are set only while it has no members.
    let busy = s.step(1_103, commit(3, None, &[(1, 9)], 0));
    assert!(
        matches!(&busy[..], [Output::Answer { token: 3, result: Err(e) }] if e.code == ErrorCode::NonEmptyGroup)
    );
}

#[test]
fn a_failed_append_answers_the_error_and_drops_the_state_until_a_reload() {
    let (mut s, a) = one_member();
    s.step(1_100, commit(1, Some((&a, 1)), &[(0, 5)], 0));
    let error = WireError::new(ErrorCode::RequestTimedOut, "no ack");
    assert_eq!(s.step(1_101, Input::AppendFailed { error: error.clone() }), vec![answer(1, Err(error))]);
    assert_eq!((s.epoch(), s.group_count()), (None, 0));
    let out = s.step(1_102, heartbeat(2, &a, 1));
    assert!(
        matches!(&out[..], [Output::Answer { token: 2, result: Err(e) }] if e.code == ErrorCode::CoordinatorLoadInProgress)
    );
}

#[test]
fn while_an_append_is_awaited_requests_are_refused_as_retriable_and_ticks_wait() {
    let (mut s, a) = one_member();
    s.step(1_100, commit(1, Some((&a, 1)), &[(0, 5)], 0));
    assert!(s.appending());
    let out = s.step(1_101, heartbeat(2, &a, 1));
    let busy =
        WireError::new(ErrorCode::CoordinatorLoadInProgress, "the coordinator is writing its log; retry");
    assert_eq!(out, vec![answer(2, Err(busy))]);
    assert_eq!(s.step(9_000, Input::Tick { log_start: 0, log_end: 2, unix_ms: 0 }), vec![]);
    // The commit is answered, and only then are its offsets visible.
    assert_eq!(
        s.step(9_001, Input::Appended { base_offset: 1 }),
        vec![answer(1, Ok(GroupResponse::Committed))]
    );
    assert!(!s.appending());
}

#[test]
fn a_leave_writes_the_empty_group_before_it_is_answered() {
    let (mut s, a) = one_member();
    let leave = request(1, GroupRequest::Leave { group: "g".into(), member_id: a.clone() });
    assert_eq!(s.step(1_100, leave), vec![Output::Append(vec![group_record(2, &[])])]);
    assert_eq!(s.step(1_101, Input::Appended { base_offset: 1 }), vec![answer(1, Ok(GroupResponse::Ok))]);
}

#[test]
fn bad_joins_are_refused_and_create_nothing() {
    let mut s = loaded();
    let Input::Request { request: GroupRequest::Join(mut j), context, .. } = join(1, None, 1) else {
        unreachable!()
    };
    j.session_timeout_ms = 999;
    let out = s.step(
        1_000,
        Input::Request { token: 1, request: GroupRequest::Join(j.clone()), context: context.clone() },
    );
    let range =
        WireError::new(ErrorCode::InvalidSessionTimeout, "session timeout 999 ms is outside 1000..=60000 ms");
    assert_eq!(out, vec![answer(1, Err(range))]);
    j.session_timeout_ms = SESSION_MS;
    j.topics.clear();
    let out = s.step(1_001, Input::Request { token: 2, request: GroupRequest::Join(j), context });
    let none = WireError::new(ErrorCode::InvalidRequest, "a member must subscribe to at least one topic");
    assert_eq!(out, vec![answer(2, Err(none))]);
    assert_eq!(s.group_count(), 0);
}

#[test]
fn nothing_is_served_before_the_log_is_loaded() {
    let mut s = Shard::new(cfg());
    let out = s.step(0, request(1, GroupRequest::Describe { group: "g".into() }));
    assert!(
        matches!(&out[..], [Output::Answer { token: 1, result: Err(e) }] if e.code == ErrorCode::CoordinatorLoadInProgress)
    );
    assert_eq!(s.step(0, Input::Tick { log_start: 0, log_end: 0, unix_ms: 0 }), vec![]);
}

/// An encoded record of the offsets log, as the coordinator reads it back.
fn replay(offset: u64, key: &OffsetsKey, value: Option<Vec<u8>>) -> Input {
    Input::Replay { offset, key: Some(codec::encode(key).unwrap()), value }
}

#[test]
fn replaying_the_log_restores_groups_members_and_offsets_with_sessions_restarted() {
    let mut s = Shard::new(cfg());
    let (a, b) = (id(0xa), id(0xb));
    let g = OffsetsKey::Group { group: "g".into() };
    let g_t0 = OffsetsKey::Offset { group: "g".into(), tp: tp(0) };
    let h_t0 = OffsetsKey::Offset { group: "h".into(), tp: tp(0) };
    let gone = OffsetsKey::Group { group: "h".into() };
    let value = group_value(3, &[(&a, &[0, 1]), (&b, &[2, 3])]);
    let offset = OffsetValue { committed: CommittedOffset { offset: 7, metadata: "m".into() }, commit_ms: 5 };
    for input in [
        replay(0, &g_t0, Some(codec::encode(&offset).unwrap())),
        replay(1, &h_t0, Some(codec::encode(&offset).unwrap())),
        replay(2, &g, Some(codec::encode(&value).unwrap())),
        replay(3, &gone, None),
        Input::Replay { offset: 4, key: Some(b"junk".to_vec()), value: None },
        Input::Loaded { epoch: Epoch::new(2) },
    ] {
        assert_eq!(s.step(50_000, input), vec![]);
    }
    assert_eq!((s.epoch(), s.group_count()), (Some(Epoch::new(2)), 1));
    assert_eq!((s.live.offset(&g_t0), s.live.offset(&g)), (Some(0), Some(2)));
    let member = |m: &str, ps: &[u32]| MemberDescription {
        member_id: m.into(),
        client_id: "c".into(),
        topics: vec!["t".into()],
        partitions: tps(ps),
    };
    let description = GroupDescription {
        group: "g".into(),
        state: GroupState::Stable,
        generation: 3,
        assignor: Assignor::Range,
        coordinator: "node-a".into(),
        members: vec![member(&a, &[0, 1]), member(&b, &[2, 3])],
        offsets: vec![(tp(0), offset.committed.clone())],
    };
    let describe = request(1, GroupRequest::Describe { group: "g".into() });
    assert_eq!(s.step(50_001, describe), vec![answer(1, Ok(GroupResponse::Group(description)))]);
    // Members keep their generation; their sessions restarted at the load: `b`, silent
    // since, expires, and `a` must rejoin to get the next generation.
    assert_eq!(s.step(50_002, heartbeat(2, &a, 3)), vec![answer(2, Ok(GroupResponse::Ok))]);
    let tick = Input::Tick { log_start: 0, log_end: 5, unix_ms: 0 };
    assert_eq!(s.step(50_001 + SESSION_MS as u64, tick), vec![]);
    let out = s.step(53_002, join(3, Some(&a), 0));
    assert_eq!(out, vec![Output::Append(vec![group_record(4, &[(&a, &[0, 1, 2, 3])])])]);
}

#[test]
fn the_oldest_live_records_are_written_again_when_they_pin_the_log() {
    let (mut s, a) = one_member();
    s.step(1_100, commit(1, Some((&a, 1)), &[(0, 5)], 1));
    s.step(1_100, Input::Appended { base_offset: 1 });
    // Two live records at 0 and 1 in a log of 5_000 offsets: both written again, the
    // offset stamped with the tick's wall clock.
    let out = s.step(1_200, Input::Tick { log_start: 0, log_end: 5_000, unix_ms: 99 });
    assert_eq!(
        out,
        vec![Output::Append(vec![group_record(1, &[(&a, &[0, 1, 2, 3])]), offset_record(0, 5, 99)])]
    );
    assert_eq!(s.step(1_201, Input::Appended { base_offset: 5_000 }), vec![]);
    // Now they sit in the log's newer half: nothing to write.
    assert_eq!(s.step(1_300, Input::Tick { log_start: 0, log_end: 5_002, unix_ms: 100 }), vec![]);
}

#[test]
fn a_full_partition_refuses_a_new_group_and_a_full_group_a_new_member() {
    let mut s = Shard::new(cfg());
    let offset = codec::encode(&OffsetValue {
        committed: CommittedOffset { offset: 1, metadata: String::new() },
        commit_ms: 0,
    })
    .unwrap();
    for i in 0..limits::MAX_GROUPS_PER_PARTITION {
        let key = OffsetsKey::Offset { group: format!("g{i}"), tp: tp(0) };
        s.step(0, replay(i as u64, &key, Some(offset.clone())));
    }
    let members: Vec<String> = (0..limits::MAX_MEMBERS_PER_GROUP).map(|i| format!("m{i:04}")).collect();
    let members: Vec<(&str, &[u32])> = members.iter().map(|m| (m.as_str(), &[][..])).collect();
    let full = codec::encode(&group_value(1, &members)).unwrap();
    s.step(0, replay(5_000, &OffsetsKey::Group { group: "g".into() }, Some(full)));
    s.step(0, Input::Loaded { epoch: Epoch::new(1) });
    assert_eq!(s.group_count(), limits::MAX_GROUPS_PER_PARTITION + 1);
    // A new group: refused, nothing created or written.
    let Input::Request { request: GroupRequest::Join(mut j), context, .. } = join(1, None, 1) else {
        unreachable!()
    };
    j.group = "new".into();
    let out = s.step(1, Input::Request { token: 1, request: GroupRequest::Join(j), context });
    assert!(
        matches!(&out[..], [Output::Answer { token: 1, result: Err(e) }] if e.code == ErrorCode::LimitExceeded && e.message.contains("cannot create group 'new'"))
    );
    assert_eq!(s.group_count(), limits::MAX_GROUPS_PER_PARTITION + 1);
    // A new member of the full group: refused, the group stays stable.
    let out = s.step(2, join(2, None, 2));
    assert!(
        matches!(&out[..], [Output::Answer { token: 2, result: Err(e) }] if e.code == ErrorCode::GroupMaxSizeReached)
    );
    assert_eq!(s.step(3, heartbeat(3, "m0000", 1)), vec![answer(3, Ok(GroupResponse::Ok))]);
}

fn tick() -> Input {
    Input::Tick { log_start: 0, log_end: 0, unix_ms: 0 }
}

#[test]
fn an_empty_group_waits_the_initial_delay_and_each_new_member_extends_it() {
    let mut s = delayed();
    let (a, b) = (id(0xa), id(0xb));
    // The first member holds the generation until 1_000 + DELAY_MS.
    assert_eq!(s.step(1_000, join(1, None, 0xa)), vec![answer(1, joined(&a, None, 1))]);
    assert_eq!(s.step(2_999, tick()), vec![]);
    // A second one, before it ends, holds it until 3_000 + DELAY_MS.
    assert_eq!(s.step(3_000, join(2, None, 0xb)), vec![answer(2, joined(&b, None, 2))]);
    assert_eq!(s.step(4_000, tick()), vec![]);
    assert_eq!(s.step(5_999, join(3, Some(&a), 0)), vec![answer(3, joined(&a, None, 2))]);
    // Both share the first generation.
    let gen1 = group_record(1, &[(&a, &[0, 1]), (&b, &[2, 3])]);
    assert_eq!(s.step(6_000, tick()), vec![Output::Append(vec![gen1])]);
    assert_eq!(s.step(6_000, Input::Appended { base_offset: 0 }), vec![]);
    assert_eq!(s.step(6_100, join(4, Some(&b), 0)), vec![answer(4, joined(&b, Some(1), 2))]);
}

#[test]
fn the_initial_delay_ends_at_the_first_members_rebalance_timeout_however_many_join() {
    let mut s = delayed();
    // A member every 2_000 ms from 0 would extend the delay forever; it ends at
    // REBALANCE_MS, the first member's rebalance timeout.
    let ids: Vec<String> = (0..5u64).map(|n| id(0xa + n)).collect();
    for n in 0..5u64 {
        // Those waiting ask again (as clients poll), which keeps their sessions.
        for (k, m) in ids.iter().enumerate().take(n as usize) {
            let out = s.step(n * 2_000, join(100 + k as u64, Some(m), 0));
            assert_eq!(out, vec![answer(100 + k as u64, joined(m, None, n as u32))]);
        }
        let out = s.step(n * 2_000, join(n, None, 0xa + n));
        assert_eq!(out, vec![answer(n, joined(&ids[n as usize], None, n as u32 + 1))]);
    }
    assert_eq!(s.step(u64::from(REBALANCE_MS) - 1, tick()), vec![]);
    let gen1: Vec<(&str, &[u32])> =
        vec![(&ids[0], &[0]), (&ids[1], &[1]), (&ids[2], &[2]), (&ids[3], &[3]), (&ids[4], &[])];
    assert_eq!(s.step(u64::from(REBALANCE_MS), tick()), vec![Output::Append(vec![group_record(1, &gen1)])]);
}

#[test]
fn a_group_with_members_rebalances_without_the_initial_delay() {
    let mut s = delayed();
    let (a, b) = (id(0xa), id(0xb));
    s.step(0, join(1, None, 0xa));
    assert_eq!(s.step(DELAY_MS, tick()), vec![Output::Append(vec![group_record(1, &[(&a, &[0, 1, 2, 3])])])]);
    s.step(DELAY_MS, Input::Appended { base_offset: 0 });
    // b joins a stable group: generation 2 forms as soon as a rejoins.
    assert_eq!(s.step(4_000, join(2, None, 0xb)), vec![answer(2, joined(&b, None, 2))]);
    let gen2 = group_record(2, &[(&a, &[0, 1]), (&b, &[2, 3])]);
    assert_eq!(s.step(4_000, join(3, Some(&a), 0)), vec![Output::Append(vec![gen2])]);
}

#[test]
fn a_group_without_members_is_deleted_with_tombstones_and_one_with_members_is_not() {
    let (mut s, a) = one_member();
    s.step(1_000, commit(2, Some((&a, 1)), &[(1, 7)], 5));
    s.step(1_000, Input::Appended { base_offset: 1 });
    let delete = |token| request(token, GroupRequest::Delete { group: "g".into() });
    let non_empty = s.step(1_100, delete(3));
    assert!(
        matches!(&non_empty[..], [Output::Answer { token: 3, result: Err(e) }] if e.code == ErrorCode::NonEmptyGroup)
    );
    s.step(1_200, request(4, GroupRequest::Leave { group: "g".into(), member_id: a.clone() }));
    s.step(1_200, Input::Appended { base_offset: 2 });
    let tombstones = vec![
        Record { key: OffsetsKey::Offset { group: "g".into(), tp: tp(1) }, value: Value::Deleted },
        Record { key: OffsetsKey::Group { group: "g".into() }, value: Value::Deleted },
    ];
    assert_eq!(s.step(1_300, delete(5)), vec![Output::Append(tombstones)]);
    assert_eq!(s.step(1_300, Input::Appended { base_offset: 3 }), vec![answer(5, Ok(GroupResponse::Ok))]);
    assert_eq!(s.group_count(), 0);
    assert_eq!(s.live.len(), 0, "nothing of the group is live in the log");
    let gone = s.step(1_400, delete(6));
    assert!(
        matches!(&gone[..], [Output::Answer { token: 6, result: Err(e) }] if e.code == ErrorCode::GroupIdNotFound)
    );
}
