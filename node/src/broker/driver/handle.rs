//! The replica handle's operations: what the rest of the node asks of one replica
//! (produce, fetch, views, leadership, shutdown), each a message to its driver task.
//! Owns no state beyond [`ReplicaHandle`]'s fields (defined in `driver.rs`).

use super::*;

impl ReplicaHandle {
    /// Open the replica of `topic`-`p` whose set is `peers` (this node is `peers[me]`),
    /// recover its core from the store and start its driver. A replica whose store
    /// failed to load does not start: it neither votes nor serves.
    pub fn open(
        ctx: &DriverContext,
        topic: &str,
        p: u32,
        peers: Vec<NodeId>,
        me: usize,
        min_insync: usize,
    ) -> Result<ReplicaHandle, StorageError> {
        let (part, entries) = Partition::open(ctx.store.clone(), topic, p)?;
        let part = Arc::new(part);
        let saved = ctx.store.meta_get(&keys::hard_state(topic, p))?;
        let hard: HardState = match &saved {
            Some(b) => codec::decode(b)
                .map_err(|e| StorageError::decode(format!("replica state of {topic}-{p}"), e))?,
            None => HardState::default(),
        };
        // A replica with no saved state on a node that lost its store may have voted or
        // acknowledged before the loss: it catches up before it votes (until then the
        // mark is kept, across restarts too).
        let catch_up_key = keys::catch_up(topic, p);
        if ctx.store_lost && saved.is_none() && peers.len() > 1 {
            ctx.store.meta_put(&catch_up_key, b"1")?;
        }
        let catching_up = ctx.store.meta_get(&catch_up_key)?.is_some();
        let members: Arc<Vec<Member>> = Arc::new(peers.into_iter().map(Member::parse).collect());
        let (view_tx, view) = watch::channel(ReplicaView::default());
        if part.failure().is_some() {
            return Ok(ReplicaHandle { part, members, me, tx: None, view });
        }
        let s = &ctx.settings;
        let cfg = replica::Config {
            me,
            replicas: members.len(),
            min_insync: min_insync.clamp(1, members.len()),
            heartbeat_ms: s.heartbeat_ms,
            election_timeout_ms: s.election_timeout_ms,
            lease_ms: s.lease_ms,
            replica_lag_max_ms: s.replica_lag_max_ms,
            max_fetch_entries: 256,
            seed: seed(topic, p, members[me].id.as_str()),
        };
        let start = part.offsets().0;
        let mut core = replica::Replica::recover(
            cfg,
            hard,
            replica::Log::new(start, entries).with_start_epoch(part.start_epoch()),
            monotonic_ms(),
        )
        .with_deleted_producers(&part.deleted_producers());
        if catching_up {
            tracing::warn!(
                topic,
                partition = p,
                "replica rebuilt after a lost store: it will not vote until it has caught up"
            );
            core.set_catching_up();
        }
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let driver = Driver {
            core,
            part: part.clone(),
            members: members.clone(),
            me,
            ctx: ctx.clone(),
            rx,
            weak: tx.downgrade(),
            pending: HashMap::new(),
            next_token: 1,
            incoming: HashMap::new(),
            incoming_bytes: Vec::new(),
            recent: Recent::new(ctx.recent.clone()),
            stored_since_tick: false,
            view: view_tx,
            catching_up,
        };
        // Every line the driver logs carries its topic and partition (JSON logs show the
        // span's fields on each line).
        let span = tracing::info_span!("replica", topic = %topic, partition = p);
        tokio::spawn(tracing::Instrument::instrument(driver.run(), span));
        Ok(ReplicaHandle { part, members, me, tx: Some(tx), view })
    }

    /// This replica's state for routing and status.
    pub fn view(&self) -> ReplicaView {
        self.view.borrow().clone()
    }

    /// The leader's PeerId as text, if one is known.
    pub fn leader(&self) -> Option<&NodeId> {
        self.view.borrow().leader.and_then(|l| self.members.get(l)).map(|m| &m.id)
    }

    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        self.view.borrow().is_leader
    }

    fn stopped(&self) -> WireError {
        let why = self.part.write_failure().unwrap_or_else(|| "the replica stopped".into());
        WireError::new(
            ErrorCode::StorageError,
            format!(
                "{}-{} is not served here: {why}; it needs a restart (and a catch-up from a healthy replica)",
                self.part.topic(),
                self.part.id()
            ),
        )
    }

    /// Append a producer's batch through the replica core and wait for its ack.
    pub async fn append(
        &self,
        bytes: Vec<u8>,
        acks: Acks,
        config: &TopicConfig,
        timeout: Duration,
    ) -> Result<ProduceResponse, WireError> {
        let tx = self.tx.as_ref().ok_or_else(|| self.stopped())?;
        let header = check_batch(&bytes, config)?;
        let count = header.last_offset_delta as u32 + 1;
        let level = match acks {
            Acks::None => AckLevel::None,
            Acks::Leader => AckLevel::Leader,
            Acks::All | Acks::Local => AckLevel::All,
        };
        let (reply, rx) = oneshot::channel();
        let input = DriverInput::Append { bytes, count, producer: producer_seq(&header), acks: level, reply };
        let timed_out = || {
            WireError::new(
                ErrorCode::RequestTimedOut,
                format!(
                    "{}-{}: the batch was not acknowledged within {} ms; it may still be committed",
                    self.part.topic(),
                    self.part.id(),
                    timeout.as_millis()
                ),
            )
        };
        let wait = async {
            tx.send(input).await.map_err(|_| self.stopped())?;
            rx.await.map_err(|_| self.stopped())
        };
        let result = tokio::time::timeout(timeout, wait).await.map_err(|_| timed_out())??;
        match result {
            Ok(a) => Ok(ProduceResponse {
                base_offset: Some(a.base),
                record_count: count,
                accepted_locally: false,
                duplicate: a.duplicate,
            }),
            Err(e) => Err(self.append_error(e)),
        }
    }

    /// Where leader epoch `epoch` ends in this partition's log, asked of the core, which
    /// must lead (Kafka's OffsetForLeaderEpoch); `None` for an epoch after the current.
    pub async fn epoch_end(&self, epoch: Epoch) -> Result<Option<EpochEnd>, WireError> {
        let tx = self.tx.as_ref().ok_or_else(|| self.stopped())?;
        let (reply, rx) = oneshot::channel();
        tx.send(DriverInput::EpochEnd { epoch, reply }).await.map_err(|_| self.stopped())?;
        let found = rx.await.map_err(|_| self.stopped())?.map_err(|e| self.append_error(e))?;
        Ok(found.map(|(epoch, end_offset)| EpochEnd { epoch, end_offset }))
    }

    fn append_error(&self, e: AppendError) -> WireError {
        let tp = format!("{}-{}", self.part.topic(), self.part.id());
        match e {
            AppendError::NotLeader { leader: Some(l), epoch } => WireError::new(
                ErrorCode::NotLeaderOrFollower,
                format!("{tp} is led by {} in epoch {epoch}, not by this node", self.peer(l)),
            ),
            AppendError::NotLeader { leader: None, epoch } => WireError::new(
                ErrorCode::LeaderNotAvailable,
                format!("{tp} has no leader right now (epoch {epoch}); an election is under way"),
            ),
            AppendError::NotEnoughReplicas { in_sync, required } => WireError::new(
                ErrorCode::NotEnoughReplicas,
                format!("{tp} has {in_sync} in-sync replica(s), min.insync.replicas={required}; not written"),
            ),
            AppendError::OutOfOrderSequence { expected, got } => WireError::new(
                ErrorCode::OutOfOrderSequenceNumber,
                format!("{tp}: the producer sent sequence {got} but {expected} was expected next"),
            ),
            AppendError::ProducerFenced => WireError::new(
                ErrorCode::InvalidProducerEpoch,
                format!("{tp}: the producer's epoch is fenced by a newer one"),
            ),
            AppendError::UnknownProducer => WireError::new(
                ErrorCode::UnknownProducerId,
                format!("{tp}: no state for this producer id, and its batch does not start at sequence 0"),
            ),
            AppendError::LeadershipLost => WireError::new(
                ErrorCode::NotLeaderOrFollower,
                format!("{tp}: this node {LEADERSHIP_LOST}; it may or may not survive (an idempotent producer's retry is safe)"),
            ),
        }
    }

    fn peer(&self, idx: usize) -> &str {
        self.members.get(idx).map_or("?", |m| m.id.as_str())
    }

    /// Hand a replication message from `from` (authenticated PeerId) to the driver.
    /// Messages from outside the replica set, undecodable ones and any beyond a full
    /// queue are dropped: the protocol recovers from loss.
    pub fn deliver(&self, from: &PeerId, m: ReplicateMessage) {
        let Some(tx) = &self.tx else { return };
        let Some(idx) =
            self.members.iter().position(|m| m.peer.as_ref() == Some(from)).filter(|i| *i != self.me)
        else {
            return tracing::warn!(%from, topic = %m.topic, partition = m.partition, "replication message from outside the replica set dropped");
        };
        let msg: Message = match codec::decode(&m.message) {
            Ok(msg) => msg,
            Err(e) => return tracing::warn!(%from, error = %e, "undecodable replication message dropped"),
        };
        let _ = tx.try_send(DriverInput::Peer { from: idx, msg, records: m.records });
    }

    /// Stop the driver and wait until it has left its loop (at once if it never ran or
    /// has already stopped). Later requests to this handle are answered as stopped.
    pub async fn stop(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, stopped) = oneshot::channel();
        if tx.send(DriverInput::Stop(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }

    /// The partition's state as this replica knows it.
    pub fn status(&self) -> PartitionStatus {
        let v = self.view();
        let (log_start, log_end, size) = self.part.offsets();
        let name = |i: &usize| self.members.get(*i).map(|m| m.id.clone()).unwrap_or_default();
        PartitionStatus {
            partition: self.part.id(),
            leader: v.leader.map(|l| name(&l)).unwrap_or_default(),
            epoch: v.epoch,
            replicas: self.members.iter().map(|m| m.id.clone()).collect(),
            isr: v.isr.iter().map(name).collect(),
            log_start_offset: log_start,
            high_watermark: self.part.high_watermark(),
            log_end_offset: log_end,
            size_bytes: size,
            online: self.tx.is_some() && self.part.write_failure().is_none(),
            holders: Vec::new(),
        }
    }
}
