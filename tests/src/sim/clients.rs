//! The workload: clients appending unique values. Plain clients mostly use
//! `acks=all` (some `acks=1`, `acks=0`) and retry only when the write certainly did not
//! happen (`NotLeader`, `NotEnoughReplicas`); idempotent producers (one batch in flight,
//! `acks=all`) retry the same batch with the same sequence after any error or timeout
//! and must never end up written twice.

use meshlog::replica::{AckLevel, AppendError, Appended, Input, ProducerSeq};

use super::rng::Rng;
use super::trace::Note;
use super::world::{Event, Request, World};
use super::SimConfig;

/// How long a client waits for an answer before giving up on (or retrying) a write.
const CLIENT_TIMEOUT_US: u64 = 250_000;
/// The attempt token of an operation waiting to be retried.
const RETRY: u64 = u64::MAX;

/// One operation in progress: a value (a batch of `count` records) being written.
#[derive(Debug, Clone, Copy)]
struct Op {
    value: u64,
    count: u32,
    acks: AckLevel,
    producer: Option<ProducerSeq>,
    /// The token of the attempt whose answer counts.
    token: u64,
}

/// A client.
#[derive(Debug, Clone)]
pub struct Client {
    /// The idempotent producer id, for producers.
    producer: Option<i64>,
    next_seq: i32,
    hint: Option<usize>,
    op: Option<Op>,
}

impl Client {
    /// The clients of a simulation.
    pub fn fleet(cfg: &SimConfig, rng: &mut Rng) -> Vec<Client> {
        let plain = (0..cfg.plain_clients).map(|_| None);
        let producers = (0..cfg.idempotent_clients).map(|i| Some(1_000 + i as i64));
        plain
            .chain(producers)
            .map(|producer| Client { producer, next_seq: 0, hint: Some(rng.pick(cfg.replicas)), op: None })
            .collect()
    }

    /// Whether it has a write in flight.
    pub fn busy(&self) -> bool {
        self.op.is_some()
    }
}

impl World {
    /// A client-side delay, or `None` if the message is lost.
    pub(super) fn client_delay(&mut self) -> Option<u64> {
        if self.rng.chance(self.net.drop_p / 2.0) {
            return None;
        }
        Some(self.net.delay(&mut self.rng))
    }

    /// `token == 0`: time for the next operation; otherwise the attempt `token` timed out.
    pub(super) fn on_client_timer(&mut self, client: usize, token: u64) -> Result<(), String> {
        let c = &mut self.clients[client];
        match c.op {
            None if token == 0 && !self.settling => self.new_op(client),
            Some(op) if op.token == RETRY && token == RETRY => self.attempt(client),
            Some(op) if op.token == token => {
                self.stats.timeouts += 1;
                c.hint = None;
                if c.producer.is_some() {
                    self.attempt(client);
                } else {
                    self.finish(client); // ambiguous: the value may or may not be written
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn new_op(&mut self, client: usize) {
        let value = self.next_value;
        self.next_value += 1;
        let count = self.rng.range(1, 4) as u32;
        let c = &mut self.clients[client];
        let (acks, producer) = match c.producer {
            Some(id) => {
                let first_seq = c.next_seq;
                c.next_seq += count as i32;
                let last_seq = c.next_seq - 1;
                (AckLevel::All, Some(ProducerSeq { id, epoch: 0, first_seq, last_seq }))
            }
            None => {
                let acks = match self.rng.below(10) {
                    0 => AckLevel::None,
                    1 | 2 => AckLevel::Leader,
                    _ => AckLevel::All,
                };
                (acks, None)
            }
        };
        self.clients[client].op = Some(Op { value, count, acks, producer, token: 0 });
        self.attempt(client);
    }

    /// Send the client's current operation (again) to the replica it believes leads.
    fn attempt(&mut self, client: usize) {
        let token = self.next_token;
        self.next_token += 1;
        let to = self.clients[client].hint.unwrap_or_else(|| self.rng.pick(self.cfg.replicas));
        let Some(op) = self.clients[client].op.as_mut() else { return };
        op.token = token;
        let op = *op;
        let req = Request { client, value: op.value, count: op.count, producer: op.producer, acks: op.acks };
        self.requests.insert(token, req);
        self.stats.requests += 1;
        if let Some(d) = self.client_delay() {
            self.at(d, Event::Request { to, token });
        }
        self.at(CLIENT_TIMEOUT_US, Event::ClientTimer { client, token });
    }

    fn finish(&mut self, client: usize) {
        self.clients[client].op = None;
        if !self.settling {
            let think = self.rng.range(1_000, 20_000);
            self.at(think, Event::ClientTimer { client, token: 0 });
        }
    }

    pub(super) fn on_request(&mut self, to: usize, token: u64) -> Result<(), String> {
        let r = self.requests[&token];
        self.trace.note(self.now_us, Some(to), Note::Request { token, value: r.value, acks: r.acks });
        let input = Input::ClientAppend { token, count: r.count, producer: r.producer, acks: r.acks };
        self.step(to, input)
    }

    pub(super) fn on_reply(
        &mut self,
        token: u64,
        result: Result<Appended, AppendError>,
    ) -> Result<(), String> {
        let client = self.requests[&token].client;
        let retry_us = self.rng.range(1_000, 30_000);
        let c = &mut self.clients[client];
        if c.op.is_none_or(|op| op.token != token) {
            return Ok(()); // an answer to an attempt the client gave up on
        }
        let idempotent = c.producer.is_some();
        match result {
            Ok(_) => self.finish(client),
            Err(AppendError::NotLeader { leader, .. }) => {
                c.hint = leader;
                self.retry_after(client, retry_us / 10);
            }
            Err(AppendError::NotEnoughReplicas { .. }) => self.retry_after(client, retry_us),
            Err(
                AppendError::LeadershipLost
                | AppendError::OutOfOrderSequence { .. }
                | AppendError::UnknownProducer,
            ) if idempotent => {
                // A stale leader may not know the producer's last batches (or any) yet: ask
                // another.
                c.hint = None;
                self.retry_after(client, retry_us);
            }
            Err(AppendError::LeadershipLost) => self.finish(client),
            Err(e) => return Err(format!("client {client} got {e:?} for token {token}")),
        }
        Ok(())
    }

    /// Retry the current operation after `us` (a new attempt token supersedes the old).
    fn retry_after(&mut self, client: usize, us: u64) {
        if let Some(op) = self.clients[client].op.as_mut() {
            op.token = RETRY; // no earlier attempt's answer counts any more
        }
        self.at(us, Event::ClientTimer { client, token: RETRY });
    }
}
