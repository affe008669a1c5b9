//! Replica core unit tests: set a state, step once, assert the exact outputs.

use super::*;

fn cfg(me: ReplicaIdx, n: usize) -> Config {
    Config {
        me,
        replicas: n,
        min_insync: n / 2 + 1,
        heartbeat_ms: 50,
        election_timeout_ms: 500,
        lease_ms: 400,
        replica_lag_max_ms: 1000,
        max_fetch_entries: 100,
        seed: 42 + me as u64,
    }
}

fn fresh(me: ReplicaIdx, n: usize) -> Replica {
    Replica::recover(cfg(me, n), HardState::default(), Log::default(), 0)
}

/// An entry without a producer: (base, count, epoch, whether it is an epoch-start marker).
fn entry(base: u64, count: u32, epoch: u64, epoch_start: bool) -> Entry {
    Entry { base, count, epoch: Epoch::new(epoch), producer: None, epoch_start }
}

fn sends(out: &[Output]) -> Vec<(ReplicaIdx, Message)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { to, msg } => Some((*to, msg.clone())),
            _ => None,
        })
        .collect()
}

/// `r` takes a heartbeat of `epoch` from `leader` at `now`: it then knows who leads that
/// epoch, the only replica whose fetch answers of that epoch it takes.
fn heartbeat_from(r: &mut Replica, leader: ReplicaIdx, epoch: u64, now: u64) {
    let hb = Message::FetchResp { epoch: Epoch::new(epoch), hw: 0, body: FetchBody::Entries(vec![]) };
    r.step(now, Input::Receive { from: leader, msg: hb });
    assert_eq!(r.leader(), Some(leader));
}

/// A follower's fetch in epoch 1: from `offset`, its last epoch, and how far it has flushed.
fn fetch(offset: u64, last_epoch: u64, flushed_end: u64) -> Message {
    Message::Fetch { epoch: Epoch::new(1), offset, last_epoch: Epoch::new(last_epoch), flushed_end }
}

/// Drive replica 0 of three, its log empty, to leadership of epoch 1 with replica 1's
/// vote. A log that never held an entry gets no epoch-start marker: the leader's first
/// outputs are its announcement and a heartbeat to each follower, nothing stored, and
/// the first client batch lands at offset 0.
fn elect_leader() -> Replica {
    let mut r = fresh(0, 3);
    let out = r.step(5_000, Input::Tick);
    assert!(sends(&out)
        .iter()
        .all(|(_, m)| matches!(m, Message::PreVote { epoch, .. } if *epoch == Epoch::new(1))));
    r.step(
        5_001,
        Input::Receive { from: 1, msg: Message::PreVoteResp { epoch: Epoch::new(1), granted: true } },
    );
    assert_eq!(r.hard_state(), HardState { promised: Epoch::new(1), voted_for: Some(0) });
    let out = r.step(
        5_002,
        Input::Receive { from: 1, msg: Message::VoteResp { epoch: Epoch::new(1), granted: true } },
    );
    assert!(r.is_leader());
    let beat = Message::FetchResp { epoch: Epoch::new(1), hw: 0, body: FetchBody::Entries(vec![]) };
    assert_eq!(
        out,
        vec![
            Output::Leader { epoch: Epoch::new(1), leader: Some(0) },
            Output::Send { to: 1, msg: beat.clone() },
            Output::Send { to: 2, msg: beat },
        ]
    );
    assert_eq!(r.log().end(), 0, "no marker");
    r
}

#[test]
fn the_first_replica_of_a_new_partition_campaigns_at_its_first_tick_and_the_others_wait() {
    let prevote = Message::PreVote { epoch: Epoch::new(1), last_epoch: Epoch::new(0), last_end: 0 };
    let out = fresh(0, 3).step(0, Input::Tick);
    assert_eq!(out, vec![Output::Send { to: 1, msg: prevote.clone() }, Output::Send { to: 2, msg: prevote }]);
    assert!(fresh(1, 3).step(0, Input::Tick).is_empty(), "replica 1 waits its election timeout");
    // A replica 0 that promised before (a restart) waits too.
    let hard = HardState { promised: Epoch::new(1), voted_for: None };
    let mut restarted = Replica::recover(cfg(0, 3), hard, Log::default(), 0);
    assert!(restarted.step(0, Input::Tick).is_empty());
}

#[test]
fn a_leader_elected_over_an_empty_log_writes_its_first_batch_at_offset_0_and_commits_it() {
    let mut r = elect_leader();
    let out = r.step(5_003, Input::ClientAppend { token: 1, count: 3, producer: None, acks: AckLevel::All });
    let first = Entry { base: 0, count: 3, epoch: Epoch::new(1), producer: None, epoch_start: false };
    assert_eq!(out, vec![Output::AppendClient { token: 1, entry: first }, Output::Flush { id: 1 }]);
    r.step(5_004, Input::Flushed { id: 1 });
    // A follower holding nothing fetches from 0 with epoch 0: consistent, nothing to cut.
    let out = r.step(5_005, Input::Receive { from: 1, msg: fetch(0, 0, 0) });
    let entries = Message::FetchResp { epoch: Epoch::new(1), hw: 0, body: FetchBody::Entries(vec![first]) };
    assert_eq!(out, vec![Output::Send { to: 1, msg: entries }]);
    // Once it has flushed the batch, the batch is on a majority and past the epoch's
    // start: committed, and acknowledged.
    let out = r.step(5_006, Input::Receive { from: 1, msg: fetch(3, 1, 3) });
    assert_eq!(
        out,
        vec![
            Output::Ack { token: 1, result: Ok(Appended { base: 0, duplicate: false }) },
            Output::HighWatermark(3),
        ]
    );
}

#[test]
fn a_leader_whose_log_held_entries_still_starts_its_epoch_with_a_marker() {
    // Everything was deleted by retention (start 4, of epoch 1): not a pristine log.
    let log = Log::new(4, vec![]).with_start_epoch(Epoch::new(1));
    let mut r = Replica::recover(cfg(0, 3), HardState { promised: Epoch::new(1), voted_for: None }, log, 0);
    r.step(5_000, Input::Tick);
    r.step(
        5_001,
        Input::Receive { from: 1, msg: Message::PreVoteResp { epoch: Epoch::new(2), granted: true } },
    );
    let out = r.step(
        5_002,
        Input::Receive { from: 1, msg: Message::VoteResp { epoch: Epoch::new(2), granted: true } },
    );
    assert!(r.is_leader());
    assert!(out.contains(&Output::AppendMarker(entry(4, 1, 2, true))), "{out:?}");
    assert!(out.contains(&Output::Flush { id: 1 }));
}

#[test]
fn a_prevote_changes_nothing_and_a_vote_is_persisted_before_the_reply() {
    let mut r = fresh(1, 3);
    let out = r.step(
        1_000,
        Input::Receive {
            from: 0,
            msg: Message::PreVote { epoch: Epoch::new(1), last_epoch: Epoch::new(0), last_end: 0 },
        },
    );
    assert_eq!(sends(&out), vec![(0, Message::PreVoteResp { epoch: Epoch::new(1), granted: true })]);
    assert_eq!(r.hard_state(), HardState::default());
    let out = r.step(
        1_001,
        Input::Receive {
            from: 0,
            msg: Message::Vote { epoch: Epoch::new(1), last_epoch: Epoch::new(0), last_end: 0 },
        },
    );
    let persist = out.iter().position(|o| matches!(o, Output::PersistHardState(_))).expect("persisted");
    let reply = out.iter().position(|o| matches!(o, Output::Send { .. })).expect("replied");
    assert!(persist < reply, "the promise is durable before the reply");
    assert_eq!(r.hard_state(), HardState { promised: Epoch::new(1), voted_for: Some(0) });
    // A second candidate in the same epoch is refused.
    let out = r.step(
        1_002,
        Input::Receive {
            from: 2,
            msg: Message::Vote { epoch: Epoch::new(1), last_epoch: Epoch::new(0), last_end: 0 },
        },
    );
    assert_eq!(sends(&out), vec![(2, Message::VoteResp { epoch: Epoch::new(1), granted: false })]);
}

#[test]
fn a_restarted_replica_waits_a_lease_before_voting_and_never_votes_for_a_shorter_log() {
    let log = Log::new(
        0,
        vec![Entry { base: 0, count: 3, epoch: Epoch::new(2), producer: None, epoch_start: false }],
    );
    let mut r = Replica::recover(cfg(1, 3), HardState { promised: Epoch::new(2), voted_for: None }, log, 0);
    let vote = |epoch, last_epoch, last_end| Input::Receive {
        from: 0,
        msg: Message::Vote { epoch, last_epoch, last_end },
    };
    let out = r.step(100, vote(Epoch::new(3), Epoch::new(2), 3));
    assert_eq!(
        sends(&out),
        vec![(0, Message::VoteResp { epoch: Epoch::new(3), granted: false })],
        "within the lease"
    );
    let out = r.step(1_000, vote(Epoch::new(4), Epoch::new(2), 2));
    assert_eq!(
        sends(&out),
        vec![(0, Message::VoteResp { epoch: Epoch::new(4), granted: false })],
        "shorter log"
    );
    let out = r.step(1_001, vote(Epoch::new(5), Epoch::new(2), 3));
    assert_eq!(sends(&out), vec![(0, Message::VoteResp { epoch: Epoch::new(5), granted: true })]);
}

#[test]
fn messages_from_an_older_epoch_are_refused_with_the_current_one() {
    let mut r = fresh(1, 3);
    r.step(0, Input::Receive { from: 2, msg: Message::Stale { epoch: Epoch::new(7) } });
    let out = r.step(
        1,
        Input::Receive {
            from: 0,
            msg: Message::FetchResp { epoch: Epoch::new(6), hw: 0, body: FetchBody::Entries(vec![]) },
        },
    );
    assert_eq!(sends(&out), vec![(0, Message::Stale { epoch: Epoch::new(7) })]);
    let out = r.step(
        2,
        Input::Receive {
            from: 0,
            msg: Message::Fetch {
                epoch: Epoch::new(6),
                offset: 0,
                last_epoch: Epoch::new(0),
                flushed_end: 0,
            },
        },
    );
    assert_eq!(sends(&out), vec![(0, Message::Stale { epoch: Epoch::new(7) })]);
}

#[test]
fn acks_all_waits_for_a_majority_flush_and_the_high_watermark() {
    let mut r = elect_leader();
    // Follower 1 fetches from the (empty) log end: it is caught up, and in sync.
    let out = r.step(
        5_004,
        Input::Receive {
            from: 1,
            msg: Message::Fetch {
                epoch: Epoch::new(1),
                offset: 0,
                last_epoch: Epoch::new(0),
                flushed_end: 0,
            },
        },
    );
    assert!(!out.iter().any(|o| matches!(o, Output::HighWatermark(_))), "nothing to commit");
    assert_eq!(r.in_sync(), vec![0, 1]);
    let out = r.step(5_005, Input::ClientAppend { token: 9, count: 10, producer: None, acks: AckLevel::All });
    let entry = Entry { base: 0, count: 10, epoch: Epoch::new(1), producer: None, epoch_start: false };
    assert!(out.contains(&Output::AppendClient { token: 9, entry }));
    let fetched = Message::FetchResp { epoch: Epoch::new(1), hw: 0, body: FetchBody::Entries(vec![entry]) };
    assert!(sends(&out).contains(&(1, fetched)), "the parked fetch is answered with the new entry");
    r.step(5_006, Input::Flushed { id: 1 });
    assert!(
        !r.step(5_007, Input::Tick).iter().any(|o| matches!(o, Output::Ack { .. })),
        "not before the follower"
    );
    let out = r.step(
        5_010,
        Input::Receive {
            from: 1,
            msg: Message::Fetch {
                epoch: Epoch::new(1),
                offset: 10,
                last_epoch: Epoch::new(1),
                flushed_end: 10,
            },
        },
    );
    assert!(out.contains(&Output::HighWatermark(10)));
    assert!(out.contains(&Output::Ack { token: 9, result: Ok(Appended { base: 0, duplicate: false }) }));
}

#[test]
fn a_diverging_follower_is_told_where_the_shared_epoch_ends() {
    let mut r = elect_leader(); // log: empty
    let out = r.step(
        5_010,
        Input::Receive {
            from: 2,
            msg: Message::Fetch {
                epoch: Epoch::new(1),
                offset: 5,
                last_epoch: Epoch::new(0),
                flushed_end: 5,
            },
        },
    );
    let body = FetchBody::Diverging {
        epoch: Epoch::new(0),
        end: 0,
        fetch_offset: 5,
        fetch_last_epoch: Epoch::new(0),
    };
    let want = Message::FetchResp { epoch: Epoch::new(1), hw: 0, body };
    assert_eq!(sends(&out), vec![(2, want)]);
}

#[test]
fn a_follower_never_truncates_below_its_high_watermark() {
    let mut r = fresh(1, 3);
    let e = |base, count, epoch| Entry {
        base,
        count,
        epoch: Epoch::new(epoch),
        producer: None,
        epoch_start: false,
    };
    r.step(
        0,
        Input::Receive {
            from: 0,
            msg: Message::FetchResp {
                epoch: Epoch::new(1),
                hw: 4,
                body: FetchBody::Entries(vec![e(0, 2, 1), e(2, 2, 1)]),
            },
        },
    );
    assert_eq!(r.high_watermark(), 4);
    let out = r.step(
        1,
        Input::Receive {
            from: 0,
            msg: Message::FetchResp {
                epoch: Epoch::new(1),
                hw: 4,
                body: FetchBody::Diverging {
                    epoch: Epoch::new(0),
                    end: 0,
                    fetch_offset: 4,
                    fetch_last_epoch: Epoch::new(1),
                },
            },
        },
    );
    assert!(!out.iter().any(|o| matches!(o, Output::Truncate { .. })));
    assert_eq!(r.log().end(), 4);
}

#[test]
fn idempotent_retries_are_answered_with_the_original_offset() {
    let mut r = elect_leader();
    let p = Some(ProducerSeq { id: 1, epoch: 0, first_seq: 0, last_seq: 4 });
    r.step(5_003, Input::ClientAppend { token: 1, count: 5, producer: p, acks: AckLevel::None });
    let out = r.step(5_004, Input::ClientAppend { token: 2, count: 5, producer: p, acks: AckLevel::None });
    assert!(out.contains(&Output::Ack { token: 2, result: Ok(Appended { base: 0, duplicate: true }) }));
    assert!(!out.iter().any(|o| matches!(o, Output::AppendClient { .. })), "not written twice");
    let gap = Some(ProducerSeq { id: 1, epoch: 0, first_seq: 9, last_seq: 9 });
    let out = r.step(5_005, Input::ClientAppend { token: 3, count: 1, producer: gap, acks: AckLevel::None });
    let err = AppendError::OutOfOrderSequence { expected: 5, got: 9 };
    assert!(out.contains(&Output::Ack { token: 3, result: Err(err) }));
}

#[test]
fn a_leader_cut_off_from_the_majority_steps_down_and_fails_pending_writes() {
    let mut r = elect_leader();
    r.step(5_003, Input::ClientAppend { token: 7, count: 1, producer: None, acks: AckLevel::Leader });
    let out = r.step(20_000, Input::Tick);
    assert!(!r.is_leader());
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Ack { token: 7, result: Err(AppendError::LeadershipLost) })));
}

#[test]
fn acks_all_with_too_few_in_sync_replicas_is_refused_once_the_leader_has_settled() {
    let mut r = elect_leader();
    // Just elected: the followers have not fetched yet, so the write is taken and its
    // ack waits for the in-sync set (no answer yet, and certainly not a success).
    let out = r.step(5_003, Input::ClientAppend { token: 1, count: 1, producer: None, acks: AckLevel::All });
    assert!(!out.iter().any(|o| matches!(o, Output::Ack { token: 1, .. })));
    assert!(out.iter().any(|o| matches!(o, Output::AppendClient { token: 1, .. })));
    // One election timeout later, with nobody fetching, it is refused at once.
    let out = r.step(5_600, Input::ClientAppend { token: 2, count: 1, producer: None, acks: AckLevel::All });
    let err = AppendError::NotEnoughReplicas { in_sync: 1, required: 2 };
    assert!(out.contains(&Output::Ack { token: 2, result: Err(err) }), "{out:?}");
}

/// Sim bug 1 (seed 1, 5 replicas): a restarted replica whose log held entries of an
/// old epoch past the leader's got the leader's HW in a heartbeat before it ever
/// fetched, took `min(hw, log end)` as its own HW over entries the leader does not have,
/// and could then never truncate them (no truncation below the HW). A follower now gets
/// the HW only once it has fetched consistently in the leader's epoch.
#[test]
fn the_high_watermark_reaches_a_follower_only_once_its_log_is_known_to_match() {
    let mut r = elect_leader();
    r.step(5_003, Input::ClientAppend { token: 1, count: 1, producer: None, acks: AckLevel::None });
    r.step(5_003, Input::Flushed { id: 1 });
    let out = r.step(5_004, Input::Receive { from: 1, msg: fetch(1, 1, 1) });
    assert!(out.contains(&Output::HighWatermark(1)));
    let beat = |hw| Message::FetchResp { epoch: Epoch::new(1), hw, body: FetchBody::Entries(vec![]) };
    let out = r.step(5_100, Input::Tick);
    assert!(sends(&out).contains(&(1, beat(1))), "follower 1 fetched consistently");
    assert!(sends(&out).contains(&(2, beat(0))), "follower 2 never fetched: its log may diverge");
    // Follower 2 diverges (an epoch the leader never had): still no HW.
    let out = r.step(5_101, Input::Receive { from: 2, msg: fetch(7, 0, 7) });
    let diverging = FetchBody::Diverging {
        epoch: Epoch::new(0),
        end: 0,
        fetch_offset: 7,
        fetch_last_epoch: Epoch::new(0),
    };
    assert_eq!(sends(&out), vec![(2, Message::FetchResp { epoch: Epoch::new(1), hw: 0, body: diverging })]);
    // Once it fetches consistently it is told the HW.
    r.step(5_102, Input::Receive { from: 2, msg: fetch(1, 1, 0) });
    let out = r.step(5_200, Input::Tick);
    assert!(sends(&out).contains(&(2, beat(1))));
}

/// Sim bug 2 (seed 270, 3 replicas): a duplicated fetch from a diverging follower was
/// answered twice; the second `Diverging` arrived after the follower had truncated,
/// caught up and reported the new entries flushed (the leader counted them towards its
/// HW), and cut them again. A `Diverging` now names the fetch it answers and a follower
/// whose log has changed since ignores it.
#[test]
fn a_delayed_diverging_answer_about_an_older_log_is_ignored() {
    let e = entry;
    let log = Log::new(0, vec![e(0, 1, 1, true), e(1, 2, 1, false)]);
    let mut r = Replica::recover(cfg(1, 3), HardState { promised: Epoch::new(2), voted_for: None }, log, 0);
    heartbeat_from(&mut r, 0, 2, 5);
    let resp =
        |body| Input::Receive { from: 0, msg: Message::FetchResp { epoch: Epoch::new(2), hw: 0, body } };
    let diverging = || FetchBody::Diverging {
        epoch: Epoch::new(1),
        end: 1,
        fetch_offset: 3,
        fetch_last_epoch: Epoch::new(1),
    };
    let out = r.step(10, resp(diverging()));
    assert!(out.contains(&Output::Truncate { end: 1 }));
    r.step(11, resp(FetchBody::Entries(vec![e(1, 1, 2, true), e(2, 2, 2, false)])));
    r.step(12, Input::Flushed { id: 1 });
    assert_eq!((r.log().end(), r.flushed_end()), (4, 4));
    let out = r.step(13, resp(diverging()));
    assert!(!out.iter().any(|o| matches!(o, Output::Truncate { .. })), "{out:?}");
    assert_eq!(r.log().end(), 4);
}

/// Sim bug 3 (seed 5, 5 replicas, one entry per fetch): every fetch response made the
/// follower fetch again, even one that no longer applied (a duplicate, or the answer to
/// a fetch another had overtaken). Each flush and each duplicate started one more chain
/// of fetches, none ever ended during a catch-up, and a follower had thousands of
/// fetches in flight. Now a response that is of no use ends its chain.
#[test]
fn a_fetch_response_that_no_longer_applies_starts_no_new_fetch() {
    let mut r = fresh(1, 3);
    let marker = Entry { base: 0, count: 1, epoch: Epoch::new(1), producer: None, epoch_start: true };
    let resp = |entries| Input::Receive {
        from: 0,
        msg: Message::FetchResp { epoch: Epoch::new(1), hw: 0, body: FetchBody::Entries(entries) },
    };
    let fetch_at = |offset| {
        (0, Message::Fetch { epoch: Epoch::new(1), offset, last_epoch: Epoch::new(1), flushed_end: 0 })
    };
    let out = r.step(10, resp(vec![marker]));
    assert!(out.contains(&Output::AppendReplicated(vec![marker])));
    assert_eq!(sends(&out), vec![fetch_at(1)]);
    let out = r.step(11, resp(vec![marker]));
    assert!(sends(&out).is_empty(), "a duplicate ends its chain: {out:?}");
    assert!(!out.iter().any(|o| matches!(o, Output::AppendReplicated(_))));
    let out = r.step(12, resp(vec![]));
    assert_eq!(sends(&out), vec![fetch_at(1)], "a heartbeat is answered with a fetch");
}

/// Sim bug 4 (seed 744, 3 replicas, found once new leaders were struck soon after
/// their election): the leader's latest epoch at or below the follower's was one the
/// follower lacked (e3), and the follower cut its log at the leader's end of e3, in the
/// middle of one of its own e2 entries. The leader's end of an epoch says nothing about
/// a follower's other epochs: it now drops its later epochs and asks again.
#[test]
fn a_follower_lacking_the_leaders_epoch_backs_off_to_its_own_earlier_epoch() {
    let e = entry;
    let log = Log::new(0, vec![e(0, 1, 1, true), e(1, 3, 1, false), e(4, 1, 3, true)]);
    let mut r = Replica::recover(cfg(1, 3), HardState { promised: Epoch::new(4), voted_for: None }, log, 0);
    heartbeat_from(&mut r, 0, 4, 5);
    let diverging = |epoch, end, fetch_offset, fetch_last_epoch| Input::Receive {
        from: 0,
        msg: Message::FetchResp {
            epoch: Epoch::new(4),
            hw: 0,
            body: FetchBody::Diverging {
                epoch: Epoch::new(epoch),
                end,
                fetch_offset,
                fetch_last_epoch: Epoch::new(fetch_last_epoch),
            },
        },
    };
    // The leader holds e1 up to 1 and e2 up to 2; the follower has no e2.
    let out = r.step(10, diverging(2, 2, 5, 3));
    assert!(out.contains(&Output::Truncate { end: 4 }), "back to the end of its e1: {out:?}");
    let refetch =
        Message::Fetch { epoch: Epoch::new(4), offset: 4, last_epoch: Epoch::new(1), flushed_end: 4 };
    assert_eq!(sends(&out), vec![(0, refetch)]);
    let out = r.step(11, diverging(1, 1, 4, 1));
    assert!(out.contains(&Output::Truncate { end: 1 }), "the shared e1 ends at 1: {out:?}");
}

/// A replica rebuilt from a lost store (empty log, no saved promise) would grant any
/// candidate, letting a stale one win without entries committed on a majority that
/// counted the lost replica. It refuses votes until it durably holds the current
/// leader's committed epoch-start marker, and then votes normally.
#[test]
fn a_replica_rebuilt_from_a_lost_store_votes_only_after_catching_up() {
    let mut r = fresh(2, 3);
    r.set_catching_up();
    assert!(r.catching_up());
    let vote = |epoch| Message::Vote { epoch: Epoch::new(epoch), last_epoch: Epoch::new(0), last_end: 0 };
    let out = r.step(10_000, Input::Receive { from: 1, msg: vote(3) });
    assert!(out
        .contains(&Output::Send { to: 1, msg: Message::VoteResp { epoch: Epoch::new(3), granted: false } }));
    let out = r.step(20_000, Input::Tick);
    assert!(sends(&out).iter().all(|(_, m)| !matches!(m, Message::PreVote { .. })), "it does not campaign");
    // The leader of epoch 4 sends its history: an old entry and its marker, HW past it.
    let old = Entry { base: 0, count: 5, epoch: Epoch::new(2), producer: None, epoch_start: false };
    let marker = Entry { base: 5, count: 1, epoch: Epoch::new(4), producer: None, epoch_start: true };
    let resp =
        |hw, entries| Message::FetchResp { epoch: Epoch::new(4), hw, body: FetchBody::Entries(entries) };
    r.step(20_001, Input::Receive { from: 0, msg: resp(0, vec![old, marker]) });
    assert!(r.catching_up(), "nothing is flushed and no HW is known yet");
    r.step(20_002, Input::Flushed { id: 1 });
    r.step(20_003, Input::Receive { from: 0, msg: resp(6, vec![]) });
    assert!(!r.catching_up(), "it durably holds the committed marker");
    // Past the leader's lease, it votes again for an up-to-date candidate.
    let out = r.step(
        30_000,
        Input::Receive {
            from: 1,
            msg: Message::Vote { epoch: Epoch::new(5), last_epoch: Epoch::new(4), last_end: 6 },
        },
    );
    assert!(
        out.contains(&Output::Send { to: 1, msg: Message::VoteResp { epoch: Epoch::new(5), granted: true } })
    );
}

/// An epoch whose leader was elected over an empty log has no marker: a rebuilt replica
/// takes the epoch's first entry, at offset 0, as its start (nothing was committed
/// before it), and still waits to durably hold the first HW the leader reports.
#[test]
fn a_rebuilt_replica_catches_up_on_an_epoch_that_began_with_an_empty_log() {
    let mut r = fresh(2, 3);
    r.set_catching_up();
    let first = entry(0, 3, 1, false);
    let resp =
        |hw, entries| Message::FetchResp { epoch: Epoch::new(1), hw, body: FetchBody::Entries(entries) };
    r.step(10_000, Input::Receive { from: 0, msg: resp(0, vec![first]) });
    assert!(r.catching_up(), "nothing flushed, no HW known");
    r.step(10_001, Input::Flushed { id: 1 });
    assert!(r.catching_up(), "no HW known yet: the batch may not be committed");
    r.step(10_002, Input::Receive { from: 0, msg: resp(3, vec![]) });
    assert!(!r.catching_up(), "it durably holds the committed start of the epoch");
}

/// A follower that dies stops fetching: `acks=all` stops waiting for it after an
/// election timeout of silence, not after the whole lag bound (the other follower and
/// the leader are still `min_insync`).
#[test]
fn acks_all_stops_waiting_for_a_silent_follower_after_an_election_timeout() {
    let mut r = elect_leader();
    // A follower caught up to `offset` (the empty log's epoch 0 at 0, epoch 1 after).
    let fetch = |offset| fetch(offset, if offset == 0 { 0 } else { 1 }, offset);
    // Both followers are caught up with the (empty) log; follower 2 then goes silent.
    r.step(5_004, Input::Receive { from: 1, msg: fetch(0) });
    r.step(5_004, Input::Receive { from: 2, msg: fetch(0) });
    r.step(5_010, Input::ClientAppend { token: 1, count: 1, producer: None, acks: AckLevel::All });
    r.step(5_011, Input::Flushed { id: 1 });
    // Follower 1 keeps fetching and holds the write; follower 2 said nothing since 5_004.
    let out = r.step(5_012, Input::Receive { from: 1, msg: fetch(1) });
    assert!(!out.iter().any(|o| matches!(o, Output::Ack { token: 1, .. })), "follower 2 is still in sync");
    r.step(5_300, Input::Receive { from: 1, msg: fetch(1) });
    // 500 ms (the election timeout) after its last fetch, well inside the 1 s lag bound.
    let out = r.step(5_505, Input::Receive { from: 1, msg: fetch(1) });
    assert!(
        out.contains(&Output::Ack { token: 1, result: Ok(Appended { base: 0, duplicate: false }) }),
        "{out:?}"
    );
}

/// Replica 0 of three, recovered with epoch 1's log (a marker at 0, then 1..10), elected
/// for epoch 2 with replica 1's vote; its marker at 10 is committed by replica 1's fetch.
fn leader_of_epoch_2_over_ten_offsets() -> Replica {
    leader_of_epoch_2_over(Log::new(0, vec![entry(0, 1, 1, true), entry(1, 9, 1, false)]))
}

/// Like [`leader_of_epoch_2_over_ten_offsets`], over `log` (epoch 1's, ending at 10).
fn leader_of_epoch_2_over(log: Log) -> Replica {
    let mut r = Replica::recover(cfg(0, 3), HardState { promised: Epoch::new(1), voted_for: None }, log, 0);
    r.step(5_000, Input::Tick);
    r.step(
        5_001,
        Input::Receive { from: 1, msg: Message::PreVoteResp { epoch: Epoch::new(2), granted: true } },
    );
    let out = r.step(
        5_002,
        Input::Receive { from: 1, msg: Message::VoteResp { epoch: Epoch::new(2), granted: true } },
    );
    assert!(r.is_leader() && out.contains(&Output::AppendMarker(entry(10, 1, 2, true))));
    let Some(Output::Flush { id }) = out.iter().find(|o| matches!(o, Output::Flush { .. })).cloned() else {
        panic!("the marker is flushed: {out:?}")
    };
    r.step(5_003, Input::Flushed { id });
    let fetch =
        Message::Fetch { epoch: Epoch::new(2), offset: 11, last_epoch: Epoch::new(2), flushed_end: 11 };
    r.step(5_004, Input::Receive { from: 1, msg: fetch });
    assert_eq!(r.high_watermark(), 11);
    r
}

/// [`leader_of_epoch_2_over_ten_offsets`] after retention deleted epoch 1's batches:
/// its log starts at 10 (its marker), the entry below of epoch 1.
fn leader_with_its_log_deleted_below_10() -> Replica {
    let mut leader = leader_of_epoch_2_over_ten_offsets();
    leader.step(5_010, Input::LogStart { start: 10, producers: vec![] });
    leader
}

/// The leader's answer to a fetch from an empty log when its own log starts at 10,
/// after an entry of epoch 1.
fn behind_at_10_for_an_empty_log() -> FetchBody {
    FetchBody::Behind {
        start: 10,
        start_epoch: Epoch::new(1),
        producers: vec![],
        fetch_offset: 0,
        fetch_last_epoch: Epoch::new(0),
    }
}

#[test]
fn a_follower_below_the_leaders_trimmed_start_resets_to_it_and_catches_up() {
    let mut leader = leader_with_its_log_deleted_below_10();
    assert_eq!((leader.log().start(), leader.log().start_epoch()), (10, Epoch::new(1)));
    // Replica 2 comes back with an empty log: the leader cannot send what it deleted.
    let mut follower = fresh(2, 3);
    heartbeat_from(&mut follower, 0, 2, 5_015);
    let fetch = Message::Fetch { epoch: Epoch::new(2), offset: 0, last_epoch: Epoch::new(0), flushed_end: 0 };
    let out = leader.step(5_020, Input::Receive { from: 2, msg: fetch });
    let behind = behind_at_10_for_an_empty_log();
    let answer = Message::FetchResp { epoch: Epoch::new(2), hw: 0, body: behind };
    assert_eq!(sends(&out), vec![(2, answer.clone())]);

    // The follower drops its log (durably, before anything else runs) and fetches from 10.
    let out = follower.step(5_030, Input::Receive { from: 0, msg: answer.clone() });
    let reset = out
        .iter()
        .position(|o| *o == Output::ResetLog { start: 10, start_epoch: Epoch::new(1), producers: vec![] });
    let refetch =
        Message::Fetch { epoch: Epoch::new(2), offset: 10, last_epoch: Epoch::new(1), flushed_end: 10 };
    let send = out.iter().position(|o| *o == Output::Send { to: 0, msg: refetch.clone() });
    assert!(reset.is_some() && reset < send, "{out:?}");
    assert!(out.contains(&Output::HighWatermark(10)), "everything below the start is committed");
    assert_eq!((follower.log().end(), follower.log().last_epoch()), (10, Epoch::new(1)));

    // Its log now matches the leader's from the start: it gets the marker at 10.
    let out = leader.step(5_040, Input::Receive { from: 2, msg: refetch });
    let entries = FetchBody::Entries(vec![entry(10, 1, 2, true)]);
    assert_eq!(
        sends(&out),
        vec![(2, Message::FetchResp { epoch: Epoch::new(2), hw: 11, body: entries.clone() })]
    );
    let out = follower.step(
        5_050,
        Input::Receive { from: 0, msg: Message::FetchResp { epoch: Epoch::new(2), hw: 11, body: entries } },
    );
    assert!(out.contains(&Output::AppendReplicated(vec![entry(10, 1, 2, true)])));
    // A duplicate of the old answer is about a log the follower no longer holds.
    let out = follower.step(5_060, Input::Receive { from: 0, msg: answer });
    assert!(!out.iter().any(|o| matches!(o, Output::ResetLog { .. })), "{out:?}");
    assert_eq!(follower.log().end(), 11);
}

#[test]
fn a_log_reset_to_the_leaders_start_still_refuses_a_stale_candidate() {
    let mut r = fresh(1, 3);
    heartbeat_from(&mut r, 0, 2, 999);
    let behind = behind_at_10_for_an_empty_log();
    r.step(
        1_000,
        Input::Receive { from: 0, msg: Message::FetchResp { epoch: Epoch::new(2), hw: 0, body: behind } },
    );
    assert_eq!((r.log().end(), r.log().last_epoch()), (10, Epoch::new(1)));
    // Long after the leader went silent, a candidate whose log ends at 5 in epoch 1
    // asks: an empty log would grant it, one that ends at 10 in epoch 1 must not.
    let vote = Message::Vote { epoch: Epoch::new(3), last_epoch: Epoch::new(1), last_end: 5 };
    let out = r.step(10_000, Input::Receive { from: 2, msg: vote });
    assert_eq!(sends(&out), vec![(2, Message::VoteResp { epoch: Epoch::new(3), granted: false })]);
}

#[test]
fn a_follower_that_agrees_above_the_leaders_start_is_not_reset() {
    let mut leader = leader_with_its_log_deleted_below_10();
    // Replica 1 holds everything up to 11: its fetch from 11 in epoch 2 is consistent.
    let fetch =
        Message::Fetch { epoch: Epoch::new(2), offset: 11, last_epoch: Epoch::new(2), flushed_end: 11 };
    let out = leader.step(5_020, Input::Receive { from: 1, msg: fetch });
    assert!(
        !sends(&out)
            .iter()
            .any(|(_, m)| matches!(m, Message::FetchResp { body: FetchBody::Behind { .. }, .. })),
        "{out:?}"
    );
    // One at exactly the start with the start's epoch is consistent too.
    let fetch =
        Message::Fetch { epoch: Epoch::new(2), offset: 10, last_epoch: Epoch::new(1), flushed_end: 10 };
    let out = leader.step(5_030, Input::Receive { from: 2, msg: fetch });
    let want = Message::FetchResp {
        epoch: Epoch::new(2),
        hw: 11,
        body: FetchBody::Entries(vec![entry(10, 1, 2, true)]),
    };
    assert_eq!(sends(&out), vec![(2, want)]);
}

#[test]
fn a_reset_follower_still_recognises_a_retry_of_a_batch_retention_deleted() {
    let seq = ProducerSeq { id: 9, epoch: 0, first_seq: 0, last_seq: 4 };
    let batch = Entry { base: 1, count: 5, epoch: Epoch::new(1), producer: Some(seq), epoch_start: false };
    let mut r = leader_of_epoch_2_over(Log::new(0, vec![entry(0, 1, 1, true), batch, entry(6, 4, 1, false)]));
    // Retention deletes the producer's batch; the node saved its state with the start.
    let state = ProducerState { id: 9, epoch: 0, recent: vec![(0, 4, 1, 6)] };
    assert_eq!(producers::Producers::rebuild(&[batch]).snapshot(), std::slice::from_ref(&state));
    let out = r.step(5_010, Input::LogStart { start: 10, producers: vec![state.clone()] });
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(r.deleted_producers.snapshot(), std::slice::from_ref(&state), "what goes with the start");
    // A restarted leader remembers it too.
    let restarted = Replica::recover(cfg(0, 3), r.hard_state(), r.log().clone(), 6_000)
        .with_deleted_producers(std::slice::from_ref(&state));
    assert_eq!(restarted.producers.check(&seq), producers::Check::Duplicate { base: 1, end: 6 });
    // A follower reset to the start gets it with the answer, and would know the retry.
    let fetch = Message::Fetch { epoch: Epoch::new(2), offset: 0, last_epoch: Epoch::new(0), flushed_end: 0 };
    let out = r.step(5_020, Input::Receive { from: 2, msg: fetch });
    let [(2, answer)] = &sends(&out)[..] else { panic!("{out:?}") };
    assert!(
        matches!(answer, Message::FetchResp { body: FetchBody::Behind { producers, .. }, .. } if *producers == [state.clone()])
    );
    let mut follower = fresh(2, 3);
    heartbeat_from(&mut follower, 0, 2, 5_025);
    let out = follower.step(5_030, Input::Receive { from: 0, msg: answer.clone() });
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::ResetLog { producers, .. } if *producers == [state.clone()])));
    assert_eq!(follower.producers.check(&seq), producers::Check::Duplicate { base: 1, end: 6 });
}

#[test]
fn a_follower_is_reset_when_its_log_departs_from_the_leaders_at_or_below_the_start() {
    let mut leader = leader_with_its_log_deleted_below_10();
    // Replica 2 holds epoch 1 up to 10 and then entries of an epoch the leader never had.
    let fetch =
        Message::Fetch { epoch: Epoch::new(2), offset: 14, last_epoch: Epoch::new(1), flushed_end: 14 };
    let out = leader.step(5_020, Input::Receive { from: 2, msg: fetch });
    let [(2, Message::FetchResp { body: FetchBody::Behind { start: 10, fetch_offset: 14, .. }, .. })] =
        &sends(&out)[..]
    else {
        panic!("a log that agrees only up to the start is reset: {out:?}")
    };
}

/// Replica 1 of three, given epoch 1's log (a marker at 0, then 1..10) and then HW 10 by
/// replica 0, its flush of them not yet done.
fn follower_with_ten_unflushed_offsets_at_hw_10() -> Replica {
    let mut r = fresh(1, 3);
    let entries = FetchBody::Entries(vec![entry(0, 1, 1, true), entry(1, 9, 1, false)]);
    r.step(
        1_000,
        Input::Receive { from: 0, msg: Message::FetchResp { epoch: Epoch::new(1), hw: 0, body: entries } },
    );
    let hw = Message::FetchResp { epoch: Epoch::new(1), hw: 10, body: FetchBody::Entries(vec![]) };
    r.step(1_001, Input::Receive { from: 0, msg: hw });
    r
}

#[test]
fn a_behind_answer_never_takes_a_follower_below_its_high_watermark() {
    let mut r = follower_with_ten_unflushed_offsets_at_hw_10();
    assert_eq!(r.high_watermark(), 10);
    let behind = FetchBody::Behind {
        start: 5,
        start_epoch: Epoch::new(1),
        producers: vec![],
        fetch_offset: 10,
        fetch_last_epoch: Epoch::new(1),
    };
    let out = r.step(
        1_002,
        Input::Receive { from: 0, msg: Message::FetchResp { epoch: Epoch::new(1), hw: 0, body: behind } },
    );
    assert!(!out.iter().any(|o| matches!(o, Output::ResetLog { .. })), "{out:?}");
    assert_eq!(r.log().end(), 10);
}

#[test]
fn deleted_entries_are_forgotten_even_past_the_cores_own_hw() {
    // Restarted, a core's HW is 0 while retention goes by the HW the node saved: were
    // the entries kept, a follower below them would get neither their bytes nor `Behind`.
    let leader = leader_of_epoch_2_over_ten_offsets();
    let mut r = Replica::recover(cfg(0, 3), leader.hard_state(), leader.log().clone(), 20_000);
    assert_eq!(r.high_watermark(), 0);
    r.step(20_001, Input::LogStart { start: 10, producers: vec![] });
    assert_eq!((r.log().start(), r.log().start_epoch(), r.log().end()), (10, Epoch::new(1), 11));
}

#[test]
fn entries_deleted_past_what_a_follower_flushed_count_as_flushed() {
    let mut r = follower_with_ten_unflushed_offsets_at_hw_10();
    // The follower's HW covers entries its flush has not: retention may delete them.
    assert_eq!((r.high_watermark(), r.flushed_end()), (10, 0));
    r.step(1_002, Input::LogStart { start: 1, producers: vec![] });
    assert_eq!((r.log().start(), r.flushed_end()), (1, 1));
}

#[test]
fn the_producer_state_of_deleted_entries_keeps_the_latest_producers_only() {
    let n = producers::MAX_DELETED_PRODUCERS as i64 + 1;
    let entries: Vec<Entry> = (0..n)
        .map(|id| Entry {
            base: id as u64,
            count: 1,
            epoch: Epoch::new(1),
            producer: Some(ProducerSeq { id, epoch: 0, first_seq: 0, last_seq: 0 }),
            epoch_start: false,
        })
        .collect();
    let kept = producers_after(&[], &entries);
    assert_eq!(kept.len(), producers::MAX_DELETED_PRODUCERS);
    assert!(kept.iter().all(|s| s.id != 0), "the producer whose batch is oldest goes first");
}

mod hostile;
