//! Deterministic simulation of the replica core (TESTING.md level 3): under crashes that
//! lose unflushed writes, power cuts, partitions (also one-way), isolated and paused
//! nodes, loss, duplication, reordering and drifting clocks, no seed breaks I1-I6, no
//! acknowledged `acks=all` write is lost, nothing is written twice or out of producer
//! order, no committed offset changes meaning, fetches do not multiply, and after the
//! heal the replicas converge on one log; also with retention deleting committed heads,
//! so that followers fall behind their leader's start and reset to it.
//!
//! `MESHLOG_SIM_SEED=<n>` replays one seed of the mixed run; `MESHLOG_SIM_SEEDS=<count>`
//! and `MESHLOG_SIM_START=<n>` choose a range (`scripts/sim.sh` runs thousands).

use meshlog_tests::sim::{self, SimConfig, Totals};

/// Seeds of the mixed run by default: 3 replicas on even seeds, 5 on odd ones.
const MIXED_SEEDS: u64 = 500;

fn assert_clean(t: &Totals) {
    if let Some(f) = t.failures.first() {
        let seeds: Vec<u64> = t.failures.iter().map(|f| f.seed).collect();
        panic!("{} of {} seeds failed: {seeds:?}\nfirst failure:\n{f}", t.failures.len(), t.seeds);
    }
}

/// Run fixed seeds of the mixed configuration; each once broke the core.
fn assert_seeds_pass(seeds: &[u64]) {
    let t = Totals::run(seeds, SimConfig::mixed);
    println!("figure: {}", t.figure());
    assert_clean(&t);
}

#[test]
fn mixed_fault_seeds_keep_every_invariant() {
    let seeds = sim::seeds(0, MIXED_SEEDS);
    let started = std::time::Instant::now();
    let t = Totals::run(&seeds, SimConfig::mixed);
    println!("figure: {} in {:.1?}", t.figure(), started.elapsed());
    assert_clean(&t);
    assert!(t.acked_all > 0 && t.faults > 0, "the run wrote and broke things");
}

/// Seeds of the mixed run with retention deleting committed heads of the logs.
const RETENTION_SEEDS: u64 = 200;

#[test]
fn with_retention_followers_left_behind_reset_and_every_invariant_holds() {
    let seeds = sim::seeds(0, RETENTION_SEEDS);
    let t = Totals::run(&seeds, SimConfig::with_retention);
    println!("figure: with retention: {}", t.figure());
    assert_clean(&t);
    assert!(t.trims > 0 && t.resets > 0, "retention deleted heads and left followers behind");
}

#[test]
fn without_faults_a_leader_is_elected_writes_are_acknowledged_and_logs_converge() {
    for (seed, replicas) in [(1, 3), (2, 5)] {
        let r = sim::run(&SimConfig::calm(seed, replicas)).unwrap_or_else(|f| panic!("{f}"));
        println!("calm, {replicas} replicas: {r:?}");
        assert_eq!(r.leaders, 1, "one election and no churn");
        assert!(r.acked_all >= 100, "writes make progress: {} acknowledged", r.acked_all);
        assert!(r.settle_ms <= 100, "converged {} ms after the writes stopped", r.settle_ms);
    }
}

#[test]
fn a_seed_replays_exactly() {
    let once = sim::run(&SimConfig::mixed(7)).unwrap_or_else(|f| panic!("{f}"));
    let again = sim::run(&SimConfig::mixed(7)).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(format!("{once:?}"), format!("{again:?}"));
}

/// Bug 1: a replica whose log held entries of an old epoch past the leader's got the
/// leader's HW in a heartbeat before it had ever fetched, took it as its own HW over
/// entries the leader does not have (I4), and could then never truncate them. Fixed in
/// the core: a follower is told the HW only once it has fetched consistently.
#[test]
fn regression_a_follower_takes_no_hw_before_its_log_is_known_to_match() {
    assert_seeds_pass(&[0, 5]);
}

/// Bug 2: a duplicated or delayed `Diverging` answer to a follower's old fetch arrived
/// after it had caught up and reported new entries flushed; it cut them although the
/// leader had counted them towards its HW (I4). Fixed in the core: a `Diverging` names
/// the fetch it answers and is ignored by a follower whose log has changed since.
#[test]
fn regression_a_stale_diverging_answer_cuts_nothing() {
    assert_seeds_pass(&[72, 403]);
}

/// Bug 3: every fetch response made the follower fetch again, even one that no longer
/// applied, so each flush and duplicate started another fetch chain and a catching-up
/// follower had thousands of fetches in flight. Fixed in the core: a useless response
/// ends its chain. The simulator bounds a follower's fetches in flight.
#[test]
fn regression_fetches_do_not_multiply_during_a_catch_up() {
    assert_seeds_pass(&[43, 48]);
}

/// Bug 4: the leader's latest epoch at or below the follower's was one the follower did
/// not hold, and the follower cut its log at the leader's end of that epoch, in the
/// middle of one of its own entries. Fixed in the core (KIP-279's rule): it drops its
/// later epochs and asks again with its own earlier one.
#[test]
fn regression_a_follower_without_the_leaders_epoch_backs_off_to_its_own() {
    assert_seeds_pass(&[744, 2577]);
}

/// Sim bug 5 (seed 76): with a third replica not voting (catching up after a lost disk),
/// the replica whose log must lead lagged in epoch behind the other, whose promise
/// refused its pre-vote for ever. A pre-vote below the promise is now answered with the
/// epoch (`Stale`), which the pre-candidate adopts.
#[test]
fn regression_a_pre_candidate_behind_in_epoch_learns_the_epoch() {
    assert_seeds_pass(&[76, 144]);
}

/// Sim bug 6 (seed 116): a replica rebuilt after a lost disk stopped catching up once it
/// held the current leader's marker, though that leader had committed entries past the
/// marker by counting the lost copy. It now also waits to hold the first HW a leader
/// reported to it.
#[test]
fn regression_a_rebuilt_replica_holds_what_was_committed_with_its_lost_copy() {
    assert_seeds_pass(&[116]);
}

/// Sim bug 7 (seeds 355, 753 of the retention run): a follower reset to its leader's start
/// knew nothing of the producers whose batches retention had deleted; once it led, a late
/// retry of such a batch was written a second time. The leader's producer state of the
/// deleted entries now comes with `Behind`, and every replica saves its own for a restart.
#[test]
fn regression_a_reset_follower_remembers_the_producers_of_deleted_batches() {
    let t = Totals::run(&[355, 753, 1218], SimConfig::with_retention);
    println!("figure: {}", t.figure());
    assert_clean(&t);
}
