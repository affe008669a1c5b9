//! `/metrics`: the node's metrics in the OpenMetrics text format (which Prometheus
//! scrapes), encoded by prometheus-client.
//!
//! Three sources, one answer:
//! - the instruments recorded as the node works, registered once at start: the data
//!   path's (`broker::stats`: produce and fetch records and bytes per partition, ack
//!   latency, elections, failover time) and the group commit's (fsync latency, group
//!   commit size), all prefixed `meshlog_`;
//! - gauges read at scrape time from the replicas, the mesh, the resilience layer, the
//!   outbox and the last group-lag sample ([`NodeView`]): nothing is kept up to date on
//!   the hot path for them, and a scrape of 1,000 partitions reads 1,000 replica views;
//! - libp2p's own (`libp2p_*`), recorded by the swarm task into the network's registry.

use super::Admin;
use crate::broker::stats::PartitionLabels;
use crate::broker::Broker;
use crate::sync::lock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt::Write;

/// The prefix of every meshlog series.
pub const PREFIX: &str = "meshlog";

/// The registered instruments.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// Register the broker's and the group commit's instruments.
    pub fn new(broker: &Broker) -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        broker.stats().register(&mut registry);
        broker.group_commit().stats().register(&mut registry);
        Metrics { registry }
    }
}

/// One held partition at scrape time.
#[derive(Debug)]
struct PartitionRow {
    labels: PartitionLabels,
    leader_here: bool,
    has_leader: bool,
    online: bool,
    epoch: u64,
    replicas: usize,
    isr: usize,
    log_start: u64,
    high_watermark: u64,
    log_end: u64,
    size_bytes: u64,
}

/// Everything read at scrape time.
#[derive(Debug, Default)]
struct NodeView {
    partitions: Vec<PartitionRow>,
    members: [(&'static str, i64); 3],
    breakers: Vec<(String, String)>,
    outbox: Vec<(PartitionLabels, u64, u64)>,
    lag: Vec<super::lag::LagRow>,
    connected_peers: i64,
    http_registrations: i64,
}

fn partitions(broker: &Broker) -> Vec<PartitionRow> {
    let mut rows = Vec::new();
    for t in broker.topics().all() {
        for (p, r) in t.held() {
            let view = r.view();
            let (log_start, log_end, size_bytes) = r.part.offsets();
            rows.push(PartitionRow {
                labels: PartitionLabels { topic: t.info.name.clone(), partition: p },
                leader_here: view.is_leader,
                has_leader: view.leader.is_some(),
                online: r.part.write_failure().is_none() && r.part.failure().is_none(),
                epoch: view.epoch.get(),
                replicas: r.members.len(),
                isr: view.isr.len(),
                log_start,
                high_watermark: r.part.high_watermark(),
                log_end,
                size_bytes,
            });
        }
    }
    rows
}

async fn gather(admin: &Admin) -> NodeView {
    let members = admin.mesh().member_counts().map(|(state, n)| (state, clamp(n as u64)));
    let breakers = admin
        .gateway
        .resilience()
        .breaker_states()
        .into_iter()
        .map(|b| (b.peer.into_string(), b.state))
        .collect();
    let outbox = admin
        .gateway
        .outbox()
        .depth()
        .into_iter()
        .map(|o| (PartitionLabels { topic: o.topic, partition: o.partition }, o.batches, o.bytes))
        .collect();
    let connected_peers = admin.net().connected_peers().await.map_or(0, |p| p.len() as i64);
    NodeView {
        partitions: partitions(admin.broker()),
        members,
        breakers,
        outbox,
        lag: lock(&admin.lag).clone(),
        connected_peers,
        http_registrations: lock(&admin.registrations).len() as i64,
    }
}

/// The whole scrape: registered instruments, scrape-time gauges, libp2p's.
pub async fn scrape(admin: &Admin) -> Result<String, std::fmt::Error> {
    let view = gather(admin).await;
    let mut out = String::with_capacity(64 * 1024 + view.partitions.len() * 1024);
    encode_registry(&mut out, &admin.metrics.registry)?;
    let mut now = Registry::with_prefix(PREFIX);
    now.register_collector(Box::new(view));
    encode_registry(&mut out, &now)?;
    encode_registry(&mut out, admin.net().metrics())?;
    encode_eof(&mut out)?;
    // Keep the answer one well-formed document even if a source wrote a partial line.
    if !out.ends_with('\n') {
        out.write_char('\n')?;
    }
    Ok(out)
}

/// An offset or size as a gauge's value.
fn clamp(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// A gauge family: one descriptor, one sample per label set.
fn gauges<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, i64)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A gauge without labels.
fn gauge(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

impl NodeView {
    fn per_partition(&self, enc: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let p = &self.partitions;
        let each = |f: fn(&PartitionRow) -> i64| p.iter().map(move |r| (r.labels.clone(), f(r)));
        gauges(
            enc,
            "partition_high_watermark",
            "High watermark of a replica held here",
            each(|r| clamp(r.high_watermark)),
        )?;
        gauges(
            enc,
            "partition_log_end_offset",
            "Log end offset of a replica held here",
            each(|r| clamp(r.log_end)),
        )?;
        gauges(
            enc,
            "partition_log_start_offset",
            "Log start offset of a replica held here",
            each(|r| clamp(r.log_start)),
        )?;
        gauges(
            enc,
            "partition_size_bytes",
            "Bytes stored for a replica held here",
            each(|r| clamp(r.size_bytes)),
        )?;
        gauges(
            enc,
            "partition_leader_epoch",
            "Epoch a replica held here has promised",
            each(|r| clamp(r.epoch)),
        )?;
        gauges(enc, "partition_replicas", "Replicas in a partition's set", each(|r| r.replicas as i64))?;
        gauges(enc, "partition_leader", "1 if the replica held here leads", each(|r| r.leader_here as i64))?;
        gauges(
            enc,
            "partition_online",
            "1 if the replica held here serves (0 after a storage failure)",
            each(|r| r.online as i64),
        )?;
        let led = p.iter().filter(|r| r.leader_here);
        gauges(
            enc,
            "partition_isr_size",
            "In-sync replicas of a partition led here",
            led.map(|r| (r.labels.clone(), r.isr as i64)),
        )
    }

    fn per_node(&self, enc: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let p = &self.partitions;
        let count = |f: fn(&PartitionRow) -> bool| p.iter().filter(|r| f(r)).count() as i64;
        gauge(enc, "partitions_held", "Partition replicas held here", p.len() as i64)?;
        gauge(enc, "leaders_held", "Partitions led here", count(|r| r.leader_here))?;
        gauge(
            enc,
            "under_replicated_partitions",
            "Partitions led here with fewer in-sync replicas than replicas",
            count(|r| r.leader_here && r.isr < r.replicas),
        )?;
        gauge(
            enc,
            "leaderless_partitions",
            "Partitions held here whose replica knows no leader",
            count(|r| !r.has_leader),
        )?;
        gauge(
            enc,
            "connected_peers",
            "Peers (nodes and clients) with an open connection",
            self.connected_peers,
        )?;
        gauge(
            enc,
            "http_service_registrations",
            "Service instances registered through this admin port",
            self.http_registrations,
        )?;
        let members = self.members.iter().map(|(s, n)| ([("state", *s)], *n));
        gauges(
            enc,
            "mesh_members",
            "Mesh members as this node sees them, by state (itself included)",
            members,
        )?;
        let breakers = self
            .breakers
            .iter()
            .map(|(peer, state)| ([("peer", peer.as_str()), ("state", state.as_str())], 1i64));
        gauges(
            enc,
            "breaker_not_closed",
            "Circuit breakers of this node that are open or half-open",
            breakers,
        )?;
        let batches = self.outbox.iter().map(|(l, b, _)| (l.clone(), *b as i64));
        gauges(enc, "outbox_batches", "Batches waiting in this node's store-and-forward outbox", batches)?;
        let bytes = self.outbox.iter().map(|(l, _, b)| (l.clone(), *b as i64));
        gauges(enc, "outbox_bytes", "Bytes waiting in this node's store-and-forward outbox", bytes)?;
        let lag = self.lag.iter().map(|r| {
            let labels = [
                ("group", r.group.clone()),
                ("topic", r.topic.clone()),
                ("partition", r.partition.to_string()),
            ];
            (labels, clamp(r.lag))
        });
        gauges(
            enc,
            "group_lag",
            "Log end minus committed offset, for groups coordinated here (sampled every 15 s)",
            lag,
        )
    }
}

impl Collector for NodeView {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        self.per_partition(&mut encoder)?;
        self.per_node(&mut encoder)
    }
}
