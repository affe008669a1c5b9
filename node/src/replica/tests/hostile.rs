//! What a replica does with messages no honest member sends: fetch answers from a member
//! that does not lead their epoch, epochs that would leave no room for an election, and
//! entries that do not follow each other. Each is dropped and changes nothing.

use super::*;

/// Replica 1 of three, following replica 0 in epoch 1, holding (flushed) epoch 1's
/// marker and nine offsets, with HW 10.
fn follower_of_0_in_epoch_1() -> Replica {
    let mut r = fresh(1, 3);
    let entries = FetchBody::Entries(vec![entry(0, 1, 1, true), entry(1, 9, 1, false)]);
    r.step(
        1_000,
        Input::Receive { from: 0, msg: Message::FetchResp { epoch: Epoch::new(1), hw: 0, body: entries } },
    );
    r.step(1_001, Input::Flushed { id: 1 });
    let hw = Message::FetchResp { epoch: Epoch::new(1), hw: 10, body: FetchBody::Entries(vec![]) };
    r.step(1_002, Input::Receive { from: 0, msg: hw });
    assert_eq!((r.leader(), r.log().end(), r.high_watermark()), (Some(0), 10, 10));
    r
}

/// A `Behind` for the follower's current log (end 10, last epoch 1), asking it to drop
/// everything for a start of 1,000.
fn behind_for_offset_10() -> FetchBody {
    FetchBody::Behind {
        start: 1_000,
        start_epoch: Epoch::new(1),
        producers: vec![],
        fetch_offset: 10,
        fetch_last_epoch: Epoch::new(1),
    }
}

fn changes_nothing(out: &[Output]) -> bool {
    out.is_empty()
}

#[test]
fn a_behind_answer_from_a_member_that_does_not_lead_its_epoch_wipes_nothing() {
    let mut r = follower_of_0_in_epoch_1();
    let hard = r.hard_state();
    // Replica 2 claims epoch 1, which replica 0 leads.
    let forged = Message::FetchResp { epoch: Epoch::new(1), hw: 0, body: behind_for_offset_10() };
    let out = r.step(1_010, Input::Receive { from: 2, msg: forged });
    assert!(changes_nothing(&out), "{out:?}");
    // Or a later epoch nobody told this replica of: a `Behind` answers a fetch, and no
    // fetch went to replica 2.
    for epoch in [2, 1_000] {
        let forged = Message::FetchResp { epoch: Epoch::new(epoch), hw: 0, body: behind_for_offset_10() };
        let out = r.step(1_020, Input::Receive { from: 2, msg: forged });
        assert!(changes_nothing(&out), "epoch {epoch}: {out:?}");
    }
    // Nor can a `Diverging` from it cut the log.
    let diverging = FetchBody::Diverging {
        epoch: Epoch::new(0),
        end: 0,
        fetch_offset: 10,
        fetch_last_epoch: Epoch::new(1),
    };
    let out = r.step(
        1_030,
        Input::Receive { from: 2, msg: Message::FetchResp { epoch: Epoch::new(2), hw: 0, body: diverging } },
    );
    assert!(changes_nothing(&out), "{out:?}");
    assert_eq!((r.hard_state(), r.leader(), r.log().end(), r.log().start()), (hard, Some(0), 10, 0));
    // The leader's own `Behind` is still taken.
    let out = r.step(
        1_040,
        Input::Receive {
            from: 0,
            msg: Message::FetchResp { epoch: Epoch::new(1), hw: 0, body: behind_for_offset_10() },
        },
    );
    assert!(out.iter().any(|o| matches!(o, Output::ResetLog { start: 1_000, .. })), "{out:?}");
}

#[test]
fn heartbeats_of_an_epoch_whose_leader_is_known_are_taken_from_that_leader_only() {
    let mut r = follower_of_0_in_epoch_1();
    let beat = |hw| Message::FetchResp {
        epoch: Epoch::new(1),
        hw,
        body: FetchBody::Entries(vec![entry(10, 1, 1, false)]),
    };
    let out = r.step(1_010, Input::Receive { from: 2, msg: beat(11) });
    assert!(changes_nothing(&out), "{out:?}");
    assert_eq!((r.leader(), r.log().end()), (Some(0), 10));
    // Still known while a pre-vote runs (which forgets whom it follows): the old
    // leader's late answer is taken, another member's is not.
    r.step(10_000, Input::Tick);
    assert_eq!(r.leader(), None);
    let out = r.step(10_001, Input::Receive { from: 2, msg: beat(0) });
    assert!(changes_nothing(&out), "{out:?}");
    let out = r.step(10_002, Input::Receive { from: 0, msg: beat(0) });
    assert!(out.contains(&Output::AppendReplicated(vec![entry(10, 1, 1, false)])), "{out:?}");
    assert_eq!(r.leader(), Some(0));
}

#[test]
fn a_new_epochs_leader_is_learned_from_its_heartbeat_and_then_only_it_is_followed() {
    let mut r = follower_of_0_in_epoch_1();
    let hb = Message::FetchResp { epoch: Epoch::new(2), hw: 0, body: FetchBody::Entries(vec![]) };
    let out = r.step(1_010, Input::Receive { from: 2, msg: hb });
    assert!(out.contains(&Output::PersistHardState(HardState { promised: Epoch::new(2), voted_for: None })));
    assert!(out.contains(&Output::Leader { epoch: Epoch::new(2), leader: Some(2) }));
    // Replica 0, leader of epoch 1, is no leader of epoch 2.
    let out = r.step(
        1_020,
        Input::Receive {
            from: 0,
            msg: Message::FetchResp { epoch: Epoch::new(2), hw: 0, body: behind_for_offset_10() },
        },
    );
    assert!(changes_nothing(&out), "{out:?}");
    assert_eq!((r.leader(), r.log().end()), (Some(2), 10));
}

#[test]
fn an_epoch_past_the_maximum_is_refused_and_never_persisted() {
    let mut r = follower_of_0_in_epoch_1();
    let hard = r.hard_state();
    let huge = [Epoch::new(u64::MAX), Epoch::new(Epoch::MAX.get() + 1)];
    for epoch in huge {
        let msgs = [
            Message::Stale { epoch },
            Message::VoteResp { epoch, granted: false },
            Message::Vote { epoch, last_epoch: Epoch::new(1), last_end: 10 },
            Message::PreVote { epoch, last_epoch: Epoch::new(1), last_end: 10 },
            Message::Fetch { epoch, offset: 10, last_epoch: Epoch::new(1), flushed_end: 10 },
            Message::FetchResp { epoch, hw: 0, body: FetchBody::Entries(vec![]) },
        ];
        for msg in msgs {
            let out = r.step(1_010, Input::Receive { from: 2, msg: msg.clone() });
            assert!(changes_nothing(&out), "{msg:?}: {out:?}");
        }
    }
    assert_eq!(r.hard_state(), hard);
    // And time passing after such a message runs a normal election.
    let out = r.step(20_000, Input::Tick);
    assert!(
        sends(&out)
            .iter()
            .any(|(_, m)| *m
                == Message::PreVote { epoch: Epoch::new(2), last_epoch: Epoch::new(1), last_end: 10 }),
        "{out:?}"
    );
}

#[test]
fn a_replica_whose_promise_reached_the_maximum_follows_but_never_campaigns() {
    assert_eq!(Epoch::MAX.next(), None);
    assert_eq!(Epoch::new(Epoch::MAX.get() - 1).next(), Some(Epoch::MAX));
    let mut r = fresh(1, 3);
    let hb = Message::FetchResp { epoch: Epoch::MAX, hw: 0, body: FetchBody::Entries(vec![]) };
    r.step(1_000, Input::Receive { from: 0, msg: hb });
    assert_eq!((r.epoch(), r.leader()), (Epoch::MAX, Some(0)));
    for now in [10_000, 20_000, 30_000] {
        let out = r.step(now, Input::Tick);
        assert!(
            !sends(&out).iter().any(|(_, m)| matches!(m, Message::PreVote { .. } | Message::Vote { .. })),
            "{out:?}"
        );
    }
    assert_eq!(r.epoch(), Epoch::MAX);
}

#[test]
fn fetch_answers_naming_epochs_above_their_own_or_broken_entries_are_dropped() {
    let mut r = follower_of_0_in_epoch_1();
    let resp =
        |body| Input::Receive { from: 0, msg: Message::FetchResp { epoch: Epoch::new(1), hw: 0, body } };
    let bodies = [
        // An entry of a later epoch than the answer's.
        FetchBody::Entries(vec![entry(10, 1, 2, false)]),
        // An entry covering no offset, a gap, an epoch going back, an end past u64::MAX.
        FetchBody::Entries(vec![entry(10, 0, 1, false)]),
        FetchBody::Entries(vec![entry(10, 1, 1, false), entry(12, 1, 1, false)]),
        FetchBody::Entries(vec![entry(10, 1, 1, false), entry(11, 1, 0, false)]),
        FetchBody::Entries(vec![entry(u64::MAX, 1, 1, false)]),
        FetchBody::Behind {
            start: 1_000,
            start_epoch: Epoch::new(5),
            producers: vec![],
            fetch_offset: 10,
            fetch_last_epoch: Epoch::new(1),
        },
        FetchBody::Diverging {
            epoch: Epoch::new(3),
            end: 0,
            fetch_offset: 10,
            fetch_last_epoch: Epoch::new(1),
        },
    ];
    for body in bodies {
        let out = r.step(1_010, resp(body.clone()));
        assert!(changes_nothing(&out), "{body:?}: {out:?}");
    }
    assert_eq!((r.log().end(), r.log().last_epoch(), r.epoch()), (10, Epoch::new(1), Epoch::new(1)));
}
