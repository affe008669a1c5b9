//! The simulated world: replicas of the real core, their disks and clocks, the network,
//! the clients, and a discrete-event queue ordered by (time, sequence). Everything is a
//! function of the seed. This file holds the event loop; `driver` executes a step's
//! outputs, and clients, faults and the final check live beside it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use meshlog::replica::{
    AckLevel, AppendError, Appended, Config, FetchBody, Input, Message, ProducerSeq, Replica,
};

use super::clients::Client;
use super::driver::fetch_chain_of;
use super::invariants::Invariants;
use super::net::Net;
use super::rng::Rng;
use super::storage::Storage;
use super::trace::{Msg, Note, Trace};
use super::{SimConfig, Stats};

/// Something that will happen.
#[derive(Debug)]
pub(super) enum Event {
    Tick { node: usize, inc: u32 },
    Deliver { from: usize, to: usize, msg: Message, payloads: Vec<u64> },
    FlushDone { node: usize, inc: u32, id: u64 },
    Request { to: usize, token: u64 },
    Reply { token: u64, result: Result<Appended, AppendError> },
    ClientTimer { client: usize, token: u64 },
    Fault,
    Crash { node: usize, inc: u32 },
    Restart { node: usize },
    Heal { pairs: Vec<(usize, usize)> },
    EndFaults,
    Check,
    Retention,
}

/// An event in the queue; ordered by time, then by when it was scheduled.
#[derive(Debug)]
struct Scheduled {
    at: u64,
    seq: u64,
    ev: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// A client request as the sim remembers it (the "bytes" behind a token).
#[derive(Debug, Clone, Copy)]
pub(super) struct Request {
    pub client: usize,
    pub value: u64,
    pub count: u32,
    pub producer: Option<ProducerSeq>,
    pub acks: AckLevel,
}

/// One replica's process, disk and clock.
#[derive(Debug)]
pub(super) struct Host {
    pub replica: Option<Replica>,
    pub storage: Storage,
    /// Bumped at every crash: events of an older incarnation are dropped.
    pub inc: u32,
    pub paused_until: u64,
    drift_ppm: i64,
    clock_offset_ms: u64,
    /// When the disk finishes the flushes queued so far (flushes complete in order).
    pub flush_free_at: u64,
    /// After a lost disk, until the replica has caught up: what its disk held durably
    /// (the invariants count it as still held, as the protocol's safety argument does:
    /// the replica neither votes nor campaigns until it holds it again).
    pub lost: Option<Storage>,
}

impl Host {
    /// This host's monotonic clock (ms) at sim time `t_us`: its own rate and origin.
    pub fn local_ms(&self, t_us: u64) -> u64 {
        let scaled = t_us as i128 * (1_000_000 + self.drift_ppm as i128) / 1_000_000;
        self.clock_offset_ms + (scaled / 1000) as u64
    }

    /// Sim microseconds for `ms` of this host's clock.
    pub fn sim_us(&self, ms: u64) -> u64 {
        (ms as i128 * 1000 * 1_000_000 / (1_000_000 + self.drift_ppm as i128)) as u64
    }
}

/// The whole simulation of one seed.
pub(super) struct World {
    pub cfg: SimConfig,
    pub rng: Rng,
    pub now_us: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    pub hosts: Vec<Host>,
    pub net: Net,
    pub clients: Vec<Client>,
    pub requests: HashMap<u64, Request>,
    pub next_token: u64,
    pub next_value: u64,
    pub inv: Invariants,
    pub trace: Trace,
    pub stats: Stats,
    /// Payloads of the fetch response being stepped, by base offset.
    pub incoming: Vec<(u64, u64)>,
    pub settling: bool,
    pub settle_started_us: u64,
    pub settle_deadline_us: u64,
    pub done: bool,
    /// Fetches from, and fetch responses to, each replica in flight.
    pub fetch_inflight: Vec<u64>,
    /// acks=1 acknowledgements (value -> base), for the report.
    pub acked_leader: BTreeMap<u64, u64>,
}

impl World {
    pub fn new(seed: u64, cfg: SimConfig) -> World {
        let mut rng = Rng::new(seed);
        let n = cfg.replicas;
        let hosts = (0..n)
            .map(|_| Host {
                replica: None,
                storage: Storage::default(),
                inc: 0,
                paused_until: 0,
                drift_ppm: rng.range(0, 100_000) as i64 - 50_000,
                clock_offset_ms: rng.range(1_000, 1_000_000),
                flush_free_at: 0,
                lost: None,
            })
            .collect();
        World {
            clients: Client::fleet(&cfg, &mut rng),
            inv: Invariants::new(n),
            net: Net::new(n),
            cfg,
            rng,
            now_us: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            hosts,
            requests: HashMap::new(),
            next_token: 1,
            next_value: 1,
            trace: Trace::default(),
            stats: Stats::default(),
            incoming: Vec::new(),
            settling: false,
            settle_started_us: 0,
            settle_deadline_us: 0,
            done: false,
            acked_leader: BTreeMap::new(),
            fetch_inflight: vec![0; n],
        }
    }

    /// Schedule `ev` after `delay_us`.
    pub fn at(&mut self, delay_us: u64, ev: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at: self.now_us + delay_us, seq: self.seq, ev }));
    }

    /// Run until the world has converged and been checked, or an invariant broke.
    pub fn run(&mut self) -> Result<(), String> {
        self.boot();
        while let Some(Reverse(s)) = self.queue.pop() {
            self.now_us = s.at;
            self.stats.events += 1;
            if self.stats.events > self.cfg.max_events {
                return Err(format!("event budget exhausted ({} events)", self.cfg.max_events));
            }
            if let Some(node) = target(&s.ev).filter(|&n| self.hosts[n].paused_until > self.now_us) {
                // A paused process handles nothing until it resumes.
                let resume = self.hosts[node].paused_until - self.now_us;
                self.at(resume, s.ev);
                continue;
            }
            self.handle(s.ev)?;
            if self.done {
                return Ok(());
            }
        }
        Err("the event queue ran dry".into())
    }

    fn boot(&mut self) {
        for node in 0..self.cfg.replicas {
            self.start(node);
        }
        for c in 0..self.clients.len() {
            let d = self.rng.range(0, 50_000);
            self.at(d, Event::ClientTimer { client: c, token: 0 });
        }
        if self.cfg.faults {
            let (lo, hi) = self.cfg.fault_gap_ms;
            let d = self.rng.range(lo, hi) * 1000;
            self.at(d, Event::Fault);
        }
        self.at(self.cfg.fault_phase_ms * 1000, Event::EndFaults);
        if self.cfg.retention {
            let d = self.rng.range(20, 100) * 1000;
            self.at(d, Event::Retention);
        }
    }

    fn handle(&mut self, ev: Event) -> Result<(), String> {
        match ev {
            Event::Tick { node, inc } => self.on_tick(node, inc),
            Event::Deliver { from, to, msg, payloads } => self.on_deliver(from, to, msg, payloads),
            Event::FlushDone { node, inc, id } => self.on_flush_done(node, inc, id),
            Event::Request { to, token } => self.on_request(to, token),
            Event::Reply { token, result } => self.on_reply(token, result),
            Event::ClientTimer { client, token } => self.on_client_timer(client, token),
            Event::Fault => self.on_fault(),
            Event::Crash { node, inc } => {
                self.crash_incarnation(node, inc);
                Ok(())
            }
            Event::Restart { node } => {
                self.restart(node);
                Ok(())
            }
            Event::Heal { pairs } => {
                self.heal(&pairs);
                Ok(())
            }
            Event::EndFaults => self.end_faults(),
            Event::Check => self.on_check(),
            Event::Retention => self.on_retention(),
        }
    }

    /// The core's configuration for `node` in incarnation `inc`.
    pub fn replica_cfg(&self, node: usize, inc: u32) -> Config {
        Config {
            me: node,
            replicas: self.cfg.replicas,
            min_insync: self.cfg.min_insync,
            heartbeat_ms: self.cfg.timing_ms.heartbeat,
            election_timeout_ms: self.cfg.timing_ms.election,
            lease_ms: self.cfg.timing_ms.lease,
            replica_lag_max_ms: self.cfg.timing_ms.lag_max,
            max_fetch_entries: self.cfg.max_fetch_entries,
            seed: self.cfg.seed.wrapping_mul(31).wrapping_add(node as u64 * 1_000 + inc as u64),
        }
    }

    /// Start the tick chain of `node`'s current incarnation.
    pub fn schedule_tick(&mut self, node: usize) {
        let h = &self.hosts[node];
        let (inc, us) = (h.inc, h.sim_us(self.rng.range(2, 6)));
        self.at(us, Event::Tick { node, inc });
    }

    fn on_tick(&mut self, node: usize, inc: u32) -> Result<(), String> {
        if self.hosts[node].inc != inc || self.hosts[node].replica.is_none() {
            return Ok(());
        }
        self.trace.note(self.now_us, Some(node), Note::Tick);
        self.schedule_tick(node);
        self.step(node, Input::Tick)
    }

    fn on_deliver(&mut self, from: usize, to: usize, msg: Message, payloads: Vec<u64>) -> Result<(), String> {
        if let Some(f) = fetch_chain_of(from, to, &msg) {
            self.fetch_inflight[f] -= 1;
        }
        if self.hosts[to].replica.is_none() || self.net.blocked(from, to) {
            return Ok(());
        }
        self.trace.note(self.now_us, Some(to), Note::Recv { from, msg: Msg::of(&msg) });
        if let Message::FetchResp { body: FetchBody::Entries(es), .. } = &msg {
            self.incoming = es.iter().map(|e| e.base).zip(payloads).collect();
        }
        let r = self.step(to, Input::Receive { from, msg });
        self.incoming.clear();
        r
    }

    fn on_flush_done(&mut self, node: usize, inc: u32, id: u64) -> Result<(), String> {
        if self.hosts[node].inc != inc || self.hosts[node].replica.is_none() {
            return Ok(());
        }
        let everything = self.rng.chance(0.5);
        self.hosts[node].storage.complete_flush(id, everything);
        self.trace.note(self.now_us, Some(node), Note::Flushed { id });
        self.step(node, Input::Flushed { id })
    }
}

/// The node an event happens on, if it is one a paused process must not see yet.
fn target(ev: &Event) -> Option<usize> {
    match ev {
        Event::Tick { node, .. } | Event::FlushDone { node, .. } => Some(*node),
        Event::Deliver { to, .. } | Event::Request { to, .. } => Some(*to),
        _ => None,
    }
}
