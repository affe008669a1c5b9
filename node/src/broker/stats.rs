//! The data path's counters and histograms: records and bytes produced and fetched per
//! partition, the ack latency of produces, elections won and failover times.
//!
//! It owns the instruments (prometheus-client's, which are atomics: recording costs a
//! few atomic adds and, for a partition's counters, one read-locked map lookup) and
//! names them in [`BrokerStats::register`]. It does not serve them: the admin port
//! encodes the registry. Gauges that can be read off the replicas (high watermark, ISR,
//! leaders) are not kept here; the admin port computes them when it is scraped.

use meshlog_protocol::batch;
use meshlog_protocol::types::Acks;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A partition as a metric's labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
}

/// A produce's `acks` as a metric's label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AcksLabels {
    /// `0`, `1`, `all` or `local`.
    pub acks: &'static str,
}

type PerPartition = Family<PartitionLabels, Counter>;

/// This node's data-path instruments (cloning shares them).
#[derive(Debug, Clone)]
pub struct BrokerStats {
    produced_records: PerPartition,
    produced_bytes: PerPartition,
    fetched_records: PerPartition,
    fetched_bytes: PerPartition,
    ack_latency: Family<AcksLabels, Histogram>,
    elections: Counter,
    failover: Histogram,
    /// When each replica here lost its leader (leader changes are rare: a lock is fine).
    leaderless_since_ms: Arc<Mutex<HashMap<(String, u32), u64>>>,
}

impl Default for BrokerStats {
    fn default() -> Self {
        BrokerStats {
            produced_records: Family::default(),
            produced_bytes: Family::default(),
            fetched_records: Family::default(),
            fetched_bytes: Family::default(),
            // 100 us to ~52 s: a group commit's fsync up to a produce timeout.
            ack_latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(1e-4, 2.0, 20))),
            elections: Counter::default(),
            // 10 ms to ~41 s: an election takes one to two election timeouts.
            failover: Histogram::new(exponential_buckets(0.01, 2.0, 13)),
            leaderless_since_ms: Arc::default(),
        }
    }
}

fn partition(topic: &str, partition: u32) -> PartitionLabels {
    PartitionLabels { topic: topic.to_string(), partition }
}

/// Records in the batches `bytes` holds back to back (by their headers).
pub fn record_count(bytes: &[u8]) -> u64 {
    batch::split_batches(bytes)
        .map_while(Result::ok)
        .filter_map(|b| batch::parse_header(b).ok())
        .map(|h| h.records_count.max(0) as u64)
        .sum()
}

impl BrokerStats {
    /// A produce to `topic`-`p` was acknowledged after `latency`.
    pub fn produced(&self, topic: &str, p: u32, records: u32, bytes: usize, acks: Acks, latency: Duration) {
        let labels = partition(topic, p);
        self.produced_records.get_or_create(&labels).inc_by(records as u64);
        self.produced_bytes.get_or_create(&labels).inc_by(bytes as u64);
        let acks = match acks {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
            Acks::Local => "local",
        };
        self.ack_latency.get_or_create(&AcksLabels { acks }).observe(latency.as_secs_f64());
    }

    /// A fetch from `topic`-`p` returned `records` (the batches served, whole).
    pub fn fetched(&self, topic: &str, p: u32, records: &[u8]) {
        if records.is_empty() {
            return;
        }
        let labels = partition(topic, p);
        self.fetched_records.get_or_create(&labels).inc_by(record_count(records));
        self.fetched_bytes.get_or_create(&labels).inc_by(records.len() as u64);
    }

    /// The replica of `topic`-`p` here learned of a leader change: it is marked when it
    /// loses its leader and, when it knows one again, the gap is a failover. `won`
    /// counts an election it won.
    pub fn leader_changed(&self, topic: &str, p: u32, has_leader: bool, won: bool, now_ms: u64) {
        if won {
            self.elections.inc();
        }
        let mut since = crate::sync::lock(&self.leaderless_since_ms);
        if !has_leader {
            since.entry((topic.to_string(), p)).or_insert(now_ms);
        } else if let Some(at) = since.remove(&(topic.to_string(), p)) {
            self.failover.observe(now_ms.saturating_sub(at) as f64 / 1000.0);
        }
    }

    /// Name the instruments in `registry` (prefixed by the caller, e.g. `meshlog_`).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register(
            "produced_records",
            "Records appended through this node's leaders",
            self.produced_records.clone(),
        );
        r.register_with_unit(
            "produced",
            "Batch bytes appended through this node's leaders",
            Unit::Bytes,
            self.produced_bytes.clone(),
        );
        r.register(
            "fetched_records",
            "Records in batches served by fetches here",
            self.fetched_records.clone(),
        );
        r.register_with_unit(
            "fetched",
            "Batch bytes served by fetches here",
            Unit::Bytes,
            self.fetched_bytes.clone(),
        );
        r.register_with_unit(
            "produce_ack_latency",
            "From a produce reaching its leader to its acknowledgement, by acks",
            Unit::Seconds,
            self.ack_latency.clone(),
        );
        r.register("elections_won", "Elections won by replicas on this node", self.elections.clone());
        r.register_with_unit(
            "failover",
            "From a replica here losing its leader to knowing the next",
            Unit::Seconds,
            self.failover.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(stats: &BrokerStats) -> String {
        let mut registry = Registry::default();
        stats.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn a_failover_is_measured_from_the_loss_to_the_next_leader() {
        let stats = BrokerStats::default();
        stats.leader_changed("t", 0, true, false, 1_000);
        assert!(encoded(&stats).contains("failover_seconds_count 0\n"), "a first leader is no failover");
        stats.leader_changed("t", 0, false, false, 2_000);
        stats.leader_changed("t", 1, false, false, 2_100);
        stats.leader_changed("t", 0, false, false, 2_500);
        stats.leader_changed("t", 0, true, true, 3_200);
        assert_eq!(stats.elections.get(), 1);
        let text = encoded(&stats);
        assert!(
            text.contains("failover_seconds_count 1\n") && text.contains("failover_seconds_sum 1.2\n"),
            "{text}"
        );
    }

    #[test]
    fn produces_and_fetches_are_counted_per_partition() {
        let stats = BrokerStats::default();
        let ms = Duration::from_millis(3);
        stats.produced("t", 1, 5, 500, Acks::All, ms);
        stats.produced("t", 1, 2, 200, Acks::All, ms);
        let text = encoded(&stats);
        assert!(text.contains("produced_records_total{topic=\"t\",partition=\"1\"} 7\n"), "{text}");
        assert!(text.contains("produced_bytes_total{topic=\"t\",partition=\"1\"} 700\n"), "{text}");
        assert!(text.contains("produce_ack_latency_seconds_count{acks=\"all\"} 2\n"), "{text}");
    }

    #[test]
    fn records_are_counted_from_the_batch_headers() {
        let mut b = batch::BatchBuilder::new();
        b.push(0, None, Some(b"a"), &[]);
        b.push(0, None, Some(b"b"), &[]);
        let one = b.build().expect("a batch of two records");
        let two = [one.clone(), one].concat();
        assert_eq!(record_count(&two), 4);
        assert_eq!(record_count(b"garbage"), 0);
    }
}
