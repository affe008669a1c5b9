//! The deterministic simulator (TESTING.md level 3): many replicas of the real replica
//! core for one partition, driven by a seeded discrete-event loop with a lossy,
//! duplicating, reordering, partitionable network, disks that lose unflushed writes on a
//! crash, drifting clocks, paused processes, and clients (plain and idempotent). After
//! every event it checks the invariants I1-I6; after the faults it heals everything,
//! waits (bounded) for the logs to converge and runs the workload checker.
//!
//! A run is a pure function of its seed: `run(seed, &SimConfig::mixed(seed))` replays a
//! failure exactly. [`seeds`] reads `MESHLOG_SIM_SEED` (one seed) or `MESHLOG_SIM_SEEDS`
//! and `MESHLOG_SIM_START` (a range).
//!
//! Codemap: `world` (event loop, driver contract), `storage` (disk model), `net`,
//! `clients` (workload), `faults` (faults, heal, convergence), `invariants` (I1-I6),
//! `checker` (final workload check), `trace` (recent events for failure reports),
//! `rng` (splitmix64).

mod checker;
mod clients;
mod driver;
mod faults;
mod invariants;
mod net;
mod rng;
mod storage;
mod trace;
mod world;

use std::fmt;

pub use checker::Verdict;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed (also seeds the cores' election jitter).
    pub seed: u64,
    /// Replicas of the partition.
    pub replicas: usize,
    /// `min.insync.replicas`.
    pub min_insync: usize,
    /// Clients writing plain values.
    pub plain_clients: usize,
    /// Idempotent producers.
    pub idempotent_clients: usize,
    /// Whether to inject faults and bad network weather.
    pub faults: bool,
    /// Bounds of the gap between two faults, simulated ms.
    pub fault_gap_ms: (u64, u64),
    /// Probability that a newly elected leader is crashed or isolated soon after.
    pub new_leader_fault_p: f64,
    /// Entries per fetch response (small values make catch-up take many rounds).
    pub max_fetch_entries: usize,
    /// The cores' heartbeat, election timeout, lease and ISR lag bound, ms. Safety
    /// must not depend on them, so they vary by seed.
    pub timing_ms: Timing,
    /// Length of the phase with writes (and faults), simulated ms.
    pub fault_phase_ms: u64,
    /// Bound on the quiet phase after the heal, simulated ms.
    pub settle_ms_max: u64,
    /// Bound on events per run.
    pub max_events: u64,
    /// Whether retention deletes committed heads of the replicas' logs as they run.
    pub retention: bool,
}

impl SimConfig {
    /// The default mix: 3 replicas for even seeds, 5 for odd ones, every fault, and the
    /// other knobs drawn from the seed (their own stream, so any range of seeds covers
    /// every combination).
    pub fn mixed(seed: u64) -> SimConfig {
        let mut r = rng::Rng::new(seed ^ 0x5EED_C0FF_EE00_0001);
        let mut pick = |xs: &[u64]| xs[r.pick(xs.len())];
        let replicas = if seed.is_multiple_of(2) { 3 } else { 5 };
        // Usually a bare majority; sometimes every replica but one must be in sync.
        let min_insync = if pick(&[0, 0, 0, 1]) == 1 { replicas - 1 } else { replicas / 2 + 1 };
        // Storms, steady trouble, and rare faults with long stable stretches between.
        let gap = pick(&[0, 1, 2]) as usize;
        let fault_gap_ms = [(20, 150), (50, 500), (200, 1_500)][gap];
        let heartbeat = pick(&[10, 20, 40]);
        let election = heartbeat * pick(&[4, 8]);
        SimConfig {
            seed,
            replicas,
            min_insync,
            plain_clients: pick(&[1, 2, 3, 4]) as usize,
            idempotent_clients: pick(&[1, 2, 3]) as usize,
            faults: true,
            fault_gap_ms,
            new_leader_fault_p: pick(&[0, 2, 5]) as f64 / 10.0,
            max_fetch_entries: pick(&[1, 4, 16]) as usize,
            timing_ms: Timing { heartbeat, election, lease: election * 4 / 5, lag_max: election * 2 },
            fault_phase_ms: 4_000,
            settle_ms_max: 10_000,
            max_events: 2_000_000,
            retention: false,
        }
    }

    /// The mix, with retention deleting committed heads of random replicas' logs every
    /// few dozen ms, so crashed, cut-off and wiped followers fall behind their leader's
    /// start and must reset to it.
    pub fn with_retention(seed: u64) -> SimConfig {
        SimConfig { retention: true, ..SimConfig::mixed(seed) }
    }

    /// No faults and a perfect network: for liveness.
    pub fn calm(seed: u64, replicas: usize) -> SimConfig {
        SimConfig {
            replicas,
            min_insync: replicas / 2 + 1,
            plain_clients: 3,
            idempotent_clients: 2,
            faults: false,
            max_fetch_entries: 16,
            timing_ms: Timing { heartbeat: 20, election: 160, lease: 128, lag_max: 320 },
            ..SimConfig::mixed(seed)
        }
    }
}

/// Protocol timings, ms of each replica's own clock.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// `heartbeat_ms`.
    pub heartbeat: u64,
    /// `election_timeout_ms`.
    pub election: u64,
    /// `lease_ms`.
    pub lease: u64,
    /// `replica_lag_max_ms`.
    pub lag_max: u64,
}

/// Counters of one run.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Events handled.
    pub events: u64,
    /// Messages sent between replicas.
    pub messages: u64,
    /// Client attempts.
    pub requests: u64,
    /// Client attempts that timed out.
    pub timeouts: u64,
    /// Faults injected.
    pub faults: u64,
    /// Crashes among them.
    pub crashes: u64,
    /// Disks lost among them.
    pub disks_lost: u64,
    /// Truncations executed.
    pub truncations: u64,
    /// Log heads deleted by retention.
    pub trims: u64,
    /// Followers reset to their leader's log start.
    pub resets: u64,
    /// The highest epoch any replica promised.
    pub max_epoch: u64,
    /// The most fetch messages of one follower in flight at once.
    pub max_fetch_inflight: u64,
}

/// The outcome of a passing run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Seed.
    pub seed: u64,
    /// Replicas.
    pub replicas: usize,
    /// Counters.
    pub stats: Stats,
    /// Epochs that had a leader.
    pub leaders: usize,
    /// `acks=all` acknowledgements checked.
    pub acked_all: usize,
    /// `acks=1` acknowledgements, and how many of them were lost (allowed).
    pub acked_leader: (usize, usize),
    /// Entries in the converged log.
    pub final_entries: usize,
    /// Simulated ms from the heal to convergence.
    pub settle_ms: u64,
}

/// A failing run: the seed, what broke and the events just before.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Seed (replay with `MESHLOG_SIM_SEED`).
    pub seed: u64,
    /// Replicas.
    pub replicas: usize,
    /// What broke.
    pub what: String,
    /// Recent events, oldest first.
    pub trace: Vec<String>,
    /// Every replica's state when it broke.
    pub state: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {} ({} replicas): {}", self.seed, self.replicas, self.what)?;
        writeln!(
            f,
            "  replay: MESHLOG_SIM_SEED={} cargo nextest run -p meshlog-tests -E 'binary(simulation)'",
            self.seed
        )?;
        writeln!(f, "  recent events:")?;
        for l in &self.trace {
            writeln!(f, "  {l}")?;
        }
        writeln!(f, "  replicas:")?;
        for l in &self.state {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

/// Simulate one seed.
pub fn run(cfg: &SimConfig) -> Result<Report, Failure> {
    let mut w = world::World::new(cfg.seed, cfg.clone());
    let fail = |w: &world::World, what: String| Failure {
        seed: cfg.seed,
        replicas: cfg.replicas,
        what: format!("at {} ms: {what}", w.now_us / 1000),
        trace: w.trace.lines(),
        state: w.state_lines(),
    };
    if cfg.faults {
        w.change_weather();
    }
    w.run().map_err(|e| fail(&w, e))?;
    let l = w.leader().expect("converged with a leader");
    let log = w.hosts[l].storage.current().to_vec();
    let v = checker::check(&w, &log, w.hosts[l].storage.start().0);
    if !v.clean() {
        return Err(fail(&w, format!("workload checker: {v:?}")));
    }
    Ok(Report {
        seed: cfg.seed,
        replicas: cfg.replicas,
        leaders: w.inv.leaders.len(),
        acked_all: w.inv.acked.len(),
        acked_leader: (w.acked_leader.len(), v.leader_acked_lost),
        final_entries: log.len(),
        settle_ms: (w.now_us - w.settle_started_us) / 1000,
        stats: w.stats,
    })
}

/// The seeds to run: `MESHLOG_SIM_SEED=n` (just n), else `MESHLOG_SIM_SEEDS` seeds from
/// `MESHLOG_SIM_START` (defaults: `count` from `start`). `MESHLOG_SIM_VERBOSE=1` prints
/// every passing run's report.
pub fn seeds(start: u64, count: u64) -> Vec<u64> {
    let var = |k: &str| std::env::var(k).ok().map(|v| v.parse::<u64>().unwrap_or_else(|_| panic!("{k}={v}")));
    if let Some(s) = var("MESHLOG_SIM_SEED") {
        return vec![s];
    }
    let start = var("MESHLOG_SIM_START").unwrap_or(start);
    (start..start + var("MESHLOG_SIM_SEEDS").unwrap_or(count)).collect()
}

/// Totals over many runs, for the `figure:` line.
#[derive(Debug, Default)]
pub struct Totals {
    /// Seeds run.
    pub seeds: usize,
    /// Seeds that passed.
    pub passed: usize,
    /// `acks=all` acknowledgements checked.
    pub acked_all: usize,
    /// Epochs that had a leader, summed.
    pub leaders: usize,
    /// The highest epoch seen.
    pub max_epoch: u64,
    /// The most fetch messages of one follower in flight at once.
    pub max_fetch_inflight: u64,
    /// Faults injected.
    pub faults: u64,
    /// Crashes among them.
    pub crashes: u64,
    /// Disks lost among them.
    pub disks_lost: u64,
    /// Log heads deleted by retention.
    pub trims: u64,
    /// Followers reset to their leader's log start.
    pub resets: u64,
    /// Events handled.
    pub events: u64,
    /// `acks=1` acknowledgements lost (allowed).
    pub leader_acked_lost: usize,
    /// Failures, in seed order.
    pub failures: Vec<Failure>,
}

impl Totals {
    /// Run every seed with the config `cfg(seed)`.
    pub fn run(seeds: &[u64], cfg: impl Fn(u64) -> SimConfig) -> Totals {
        let mut t = Totals::default();
        let verbose = std::env::var_os("MESHLOG_SIM_VERBOSE").is_some();
        for &seed in seeds {
            t.seeds += 1;
            match run(&cfg(seed)) {
                Ok(r) => {
                    if verbose {
                        println!("{r:?}");
                    }
                    t.passed += 1;
                    t.acked_all += r.acked_all;
                    t.leaders += r.leaders;
                    t.max_epoch = t.max_epoch.max(r.stats.max_epoch);
                    t.max_fetch_inflight = t.max_fetch_inflight.max(r.stats.max_fetch_inflight);
                    t.faults += r.stats.faults;
                    t.crashes += r.stats.crashes;
                    t.disks_lost += r.stats.disks_lost;
                    t.trims += r.stats.trims;
                    t.resets += r.stats.resets;
                    t.events += r.stats.events;
                    t.leader_acked_lost += r.acked_leader.1;
                }
                Err(f) => t.failures.push(f),
            }
        }
        t
    }

    /// The one-line summary.
    pub fn figure(&self) -> String {
        format!(
            "seeds passed {}/{}, acked writes checked {}, leaders elected {}, max epoch {}, \
             faults injected {} ({} crashes, {} disks lost), log heads deleted {}, followers reset {}, events {}, \
             acks=1 writes lost {} (allowed), max fetches in flight {}",
            self.passed,
            self.seeds,
            self.acked_all,
            self.leaders,
            self.max_epoch,
            self.faults,
            self.crashes,
            self.disks_lost,
            self.trims,
            self.resets,
            self.events,
            self.leader_acked_lost,
            self.max_fetch_inflight
        )
    }
}
