//! The async group coordinator: serves the consumer groups whose offsets partitions this
//! node leads by driving one pure [`Shard`] per partition.
//!
//! It owns the I/O the core may not do: finding this node's leading replica of the
//! partition; on a new leader epoch, waiting until its log is committed and replaying it
//! into the shard; looking up topics' partition counts in the mesh; drawing the nonce of
//! a new member's id and reading the clocks; appending what the shard returns with
//! `acks=all` and stepping the outcome back; the tick. It decides nothing about groups:
//! every answer comes from the shard.
//!
//! One async lock per offsets partition orders everything: a request holds it from its
//! step through its append to its answer, so the shard never has two appends in flight.

use super::limits;
use super::state::{self, Context, Input, Output, Record, Shard, Token, Value};
use crate::broker::{Broker, ReplicaHandle};
use crate::mesh::Mesh;
use meshlog_protocol::batch::{self, BatchBuilder};
use meshlog_protocol::codec;
use meshlog_protocol::group::{GroupRequest, GroupResponse, OFFSETS_TOPIC};
use meshlog_protocol::messages::{ClientResponse, ClientResult};
use meshlog_protocol::types::Acks;
use meshlog_protocol::{Epoch, ErrorCode, WireError};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bounds and budgets of the coordinator, from the node's config.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    /// Shortest session timeout a member may ask for.
    pub min_session_timeout_ms: u32,
    /// Longest session timeout a member may ask for.
    pub max_session_timeout_ms: u32,
    /// How long a group that was empty waits for more members (Kafka's
    /// `group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay_ms: u32,
    /// How long an append to the offsets log may take.
    pub append_timeout: Duration,
    /// How long a new coordinator waits for its log to be committed before it loads.
    pub load_wait: Duration,
}

/// How long an append to the offsets log may take before the coordinator gives up.
pub const APPEND_TIMEOUT: Duration = crate::resilience::COMMIT_TIMEOUT;

/// How often the coordinator expires sessions and ends rebalances past their deadline.
pub const TICK: Duration = Duration::from_millis(100);

/// How often a new coordinator looks again whether its log is committed.
const LOAD_POLL: Duration = Duration::from_millis(10);

/// Bytes read from the offsets log at a time while loading.
const LOAD_READ_BYTES: usize = 1 << 20;

/// The coordinator of the groups whose offsets partitions this node leads.
pub struct Coordinator {
    broker: Arc<Broker>,
    mesh: Arc<Mesh>,
    settings: GroupSettings,
    shards: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<Shard>>>>,
    next_token: AtomicU64,
}

impl Coordinator {
    /// A coordinator over this node's replicas of the offsets topic.
    pub fn new(broker: Arc<Broker>, mesh: Arc<Mesh>, settings: GroupSettings) -> Coordinator {
        Coordinator {
            broker,
            mesh,
            settings,
            shards: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
        }
    }

    fn shard(&self, p: u32) -> Arc<tokio::sync::Mutex<Shard>> {
        let cfg = state::Config {
            coordinator: self.broker.node_id().clone(),
            min_session_timeout_ms: self.settings.min_session_timeout_ms,
            max_session_timeout_ms: self.settings.max_session_timeout_ms,
            initial_rebalance_delay_ms: u64::from(self.settings.initial_rebalance_delay_ms),
        };
        let mut map = crate::sync::lock(&self.shards);
        map.entry(p).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Shard::new(cfg)))).clone()
    }

    /// This node's replica of offsets partition `p`, which must lead.
    fn leading_replica(&self, p: u32) -> Result<(Arc<ReplicaHandle>, Epoch), WireError> {
        let not_here = || {
            WireError::new(
                ErrorCode::NotLeaderOrFollower,
                format!("this node does not coordinate the groups of {OFFSETS_TOPIC}-{p}"),
            )
        };
        let r = self.broker.replica(OFFSETS_TOPIC, p).ok_or_else(not_here)?;
        let v = r.view();
        if !v.is_leader {
            return Err(not_here());
        }
        Ok((r, v.epoch))
    }

    /// Serve a group request whose offsets partition is `p` (the gateway routed it to
    /// this node because its replica of `p` leads).
    pub async fn handle(&self, p: u32, req: GroupRequest) -> ClientResult {
        check_shape(&req)?;
        // Topic lookups may ask the DHT: done before the partition's lock is taken.
        let partitions = self.lookup_partitions(&req).await?;
        let (replica, _) = self.leading_replica(p)?;
        let shard = self.shard(p);
        let mut s = shard.lock().await;
        drop_abandoned_append(p, &mut s);
        self.ensure_loaded(p, &mut s).await?;
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let context = Context { partitions, member_nonce: rand::random(), unix_ms: crate::time::unix_ms() };
        let out = s.step(crate::time::monotonic_ms(), Input::Request { token, request: req, context });
        let answer = self.drive(&mut s, &replica, out, Some(token)).await;
        let answer = answer.unwrap_or_else(|| {
            Err(WireError::new(ErrorCode::Unknown, "the group coordinator gave no answer"))
        });
        answer.map(ClientResponse::Group)
    }

    /// The partition counts a join needs, looked up in the mesh; for a commit, a check
    /// that its partitions exist.
    async fn lookup_partitions(&self, req: &GroupRequest) -> Result<BTreeMap<String, u32>, WireError> {
        match req {
            GroupRequest::Join(j) => self.partition_counts(&j.topics).await,
            GroupRequest::Commit(c) => {
                let topics: Vec<String> = c.offsets.iter().map(|(tp, _)| tp.topic.clone()).collect();
                let counts = self.partition_counts(&topics).await?;
                for (tp, _) in &c.offsets {
                    if tp.partition >= counts[&tp.topic] {
                        return Err(WireError::new(
                            ErrorCode::UnknownTopicOrPartition,
                            format!("topic '{}' has no partition {}", tp.topic, tp.partition),
                        ));
                    }
                }
                Ok(BTreeMap::new())
            }
            _ => Ok(BTreeMap::new()),
        }
    }

    async fn partition_counts(&self, topics: &[String]) -> Result<BTreeMap<String, u32>, WireError> {
        let mut out = BTreeMap::new();
        for t in topics {
            if !out.contains_key(t) {
                out.insert(t.clone(), self.mesh.topic(t).await?.info.partitions);
            }
        }
        Ok(out)
    }

    /// Carry out the shard's outputs: append (stepping each outcome back, which may
    /// ask for more) and collect the answer to `want`.
    async fn drive(
        &self,
        s: &mut Shard,
        replica: &ReplicaHandle,
        mut out: Vec<Output>,
        want: Option<Token>,
    ) -> Option<Result<GroupResponse, WireError>> {
        let mut answer = None;
        while !out.is_empty() {
            let mut next = Vec::new();
            for o in out {
                match o {
                    Output::Answer { token, result } if Some(token) == want => answer = Some(result),
                    Output::Answer { token, .. } => tracing::debug!(token, "group answer without a waiter"),
                    Output::Append(records) => {
                        let input = match self.append(replica, &records).await {
                            Ok(base_offset) => Input::Appended { base_offset },
                            Err(error) => {
                                tracing::warn!(partition = replica.part.id(), error = %error, "offsets append failed; state will be reloaded");
                                Input::AppendFailed { error }
                            }
                        };
                        next.extend(s.step(crate::time::monotonic_ms(), input));
                    }
                }
            }
            out = next;
        }
        answer
    }

    /// Append records to the offsets partition and wait until they are committed;
    /// returns the first one's offset.
    async fn append(&self, replica: &ReplicaHandle, records: &[Record]) -> Result<u64, WireError> {
        let ts = crate::time::unix_ms();
        let mut b = BatchBuilder::new();
        for r in records {
            let value = match &r.value {
                Value::Offset(v) => Some(encode(v)?),
                Value::Group(v) => Some(encode(v)?),
                Value::Deleted => None,
            };
            b.push(ts, Some(&encode(&r.key)?), value.as_deref(), &[]);
        }
        let bytes = b.build().ok_or_else(|| WireError::new(ErrorCode::Unknown, "empty offsets batch"))?;
        let topic = self.broker.topics().get(OFFSETS_TOPIC)?;
        let r = replica.append(bytes, Acks::All, &topic.info.config, self.settings.append_timeout).await?;
        Ok(r.base_offset.unwrap_or_default())
    }

    /// Load the partition's groups from its log if this is a new leader epoch.
    async fn ensure_loaded(&self, p: u32, s: &mut Shard) -> Result<(), WireError> {
        let (replica, epoch) = self.leading_replica(p)?;
        if s.epoch() == Some(epoch) {
            return Ok(());
        }
        self.wait_committed(p, &replica).await?;
        let started = Instant::now();
        s.clear();
        let records = replay(p, &replica, s)?;
        s.step(crate::time::monotonic_ms(), Input::Loaded { epoch });
        tracing::info!(
            partition = p,
            epoch = epoch.get(),
            records,
            groups = s.group_count(),
            ms = started.elapsed().as_millis() as u64,
            "coordinator loaded"
        );
        Ok(())
    }

    /// Everything in a leader's log becomes committed once its epoch's first entry is:
    /// wait for the HW to pass the log end as it is now.
    async fn wait_committed(&self, p: u32, replica: &ReplicaHandle) -> Result<(), WireError> {
        let (_, log_end, _) = replica.part.offsets();
        let deadline = Instant::now() + self.settings.load_wait;
        while replica.part.high_watermark() < log_end {
            if Instant::now() >= deadline || !replica.view().is_leader {
                return Err(WireError::new(
                    ErrorCode::CoordinatorLoadInProgress,
                    format!("the coordinator of {OFFSETS_TOPIC}-{p} is still loading; retry"),
                ));
            }
            tokio::time::sleep(LOAD_POLL).await;
        }
        Ok(())
    }

    /// Expire sessions and end rebalances past their deadline, in every offsets
    /// partition this node leads; drop the state of those it no longer leads.
    pub async fn tick(&self) {
        let shards: Vec<(u32, Arc<tokio::sync::Mutex<Shard>>)> =
            crate::sync::lock(&self.shards).iter().map(|(p, s)| (*p, s.clone())).collect();
        for (p, shard) in shards {
            // A partition busy with a request is ticked next time.
            let Ok(mut s) = shard.try_lock() else { continue };
            drop_abandoned_append(p, &mut s);
            let replica = match self.leading_replica(p) {
                Ok((r, epoch)) if s.epoch() == Some(epoch) => r,
                _ => {
                    s.clear();
                    continue;
                }
            };
            let (log_start, log_end, _) = replica.part.offsets();
            let tick = Input::Tick { log_start, log_end, unix_ms: crate::time::unix_ms() };
            let out = s.step(crate::time::monotonic_ms(), tick);
            self.drive(&mut s, &replica, out, None).await;
        }
    }

    /// Run [`Coordinator::tick`] until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.tick().await,
                _ = crate::sync::stopped(&mut shutdown) => return,
            }
        }
    }
}

/// An append still awaited when the partition's lock is free again was left by a
/// request whose future was dropped mid-append (its caller gave up): its outcome is
/// unknown, so the shard drops its state, to be reloaded from the log. Without this the
/// shard would refuse every later request while it waited.
fn drop_abandoned_append(p: u32, s: &mut Shard) {
    if s.appending() {
        tracing::warn!(partition = p, "an offsets append was abandoned; state will be reloaded");
        let error = WireError::new(ErrorCode::RequestTimedOut, "the offsets append was abandoned");
        s.step(crate::time::monotonic_ms(), Input::AppendFailed { error });
    }
}

/// Check what a request can be judged on alone (its group's name, its own size),
/// before anything is looked up for it.
fn check_shape(req: &GroupRequest) -> Result<(), WireError> {
    if let Some(g) = req.group() {
        meshlog_protocol::group::validate_group_name(g)?;
    }
    match req {
        GroupRequest::Join(j) => limits::check_join(j),
        GroupRequest::Commit(c) => limits::check_commit(c),
        _ => Ok(()),
    }
}

/// Feed the committed records of offsets partition `p` to the shard, in order;
/// returns how many.
fn replay(p: u32, replica: &ReplicaHandle, s: &mut Shard) -> Result<u64, WireError> {
    let load_err = |e: String| {
        WireError::new(ErrorCode::CoordinatorLoadInProgress, format!("loading {OFFSETS_TOPIC}-{p}: {e}"))
    };
    let hw = replica.part.high_watermark();
    let (mut next, _, _) = replica.part.offsets();
    // Members' sessions restart at the load.
    let now = crate::time::monotonic_ms();
    let mut count = 0u64;
    while next < hw {
        let batches =
            replica.part.read_batches(next, hw, LOAD_READ_BYTES).map_err(|e| load_err(e.to_string()))?;
        if batches.is_empty() {
            break;
        }
        for (base, bytes) in batches {
            let h = batch::parse_header(&bytes).map_err(|e| load_err(e.to_string()))?;
            next = base + h.last_offset_delta as u64 + 1;
            if h.is_control() {
                continue;
            }
            for r in batch::records(&bytes).map_err(|e| load_err(e.to_string()))? {
                if r.offset as u64 >= hw {
                    continue;
                }
                s.step(now, Input::Replay { offset: r.offset as u64, key: r.key, value: r.value });
                count += 1;
            }
        }
    }
    Ok(count)
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, WireError> {
    codec::encode(v)
        .map_err(|e| WireError::new(ErrorCode::Unknown, format!("cannot encode an offsets record: {e}")))
}
