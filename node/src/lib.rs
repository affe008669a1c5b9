//! meshlog: a partitioned log (Kafka's model) served by a mesh of equal peers.
//!
//! Module map (layers, bottom first, each importing only from below, enforced by
//! `tests/tests/architecture.rs`: protocol; time, sync, listener; storage, network, replica;
//! resilience; config; broker; outbox, mesh, services, group, client; gateway; admin,
//! kafka; server; cli):
//! - [`time`]: `monotonic_ms` and `unix_ms`, the two clocks by name.
//! - [`sync`]: the one mutex helper (`lock`) and `stopped` (shutdown).
//! - [`listener`]: binding the TCP sockets served outside libp2p (admin port, Kafka).
//! - [`config`]: the node's configuration: defaults, strict TOML, env, flags, `validate()`.
//! - [`replica`]: the sans-IO replication core of one partition (elections, epochs,
//!   fencing, reconciliation, high watermark, ISR, acks, idempotence): no I/O, no clock.
//! - [`resilience`]: timeouts per call type, circuit breakers per peer, retries with
//!   backoff, jitter and a budget: every remote call goes through it.
//! - [`storage`]: the only module that imports sled; partition logs, metadata, durable flush,
//!   group commit.
//! - [`broker`]: request semantics: topics, partitions, offsets, acks, the high watermark,
//!   retention.
//! - [`network`]: the only module that imports libp2p; one task owns the swarm, others use a
//!   cloneable handle.
//! - [`mesh`]: membership (heartbeats, failure detection) and the topic registry kept in
//!   agreement across nodes (signed records, gossip, DHT, anti-entropy).
//! - [`services`]: the service registry (registrations with TTLs, discovery via DHT providers).
//! - [`gateway`]: any node is an entry point: serve locally or forward to the owner.
//! - [`group`]: the consumer-group coordinator (membership, assignors, offsets kept in the
//!   replicated, compacted `__consumer_offsets` topic).
//! - [`outbox`]: store-and-forward (`acks=local`) for nodes cut off from a partition's owner.
//! - [`admin`]: the HTTP admin port: Prometheus metrics, probes, JSON views, the service
//!   registry over HTTP with health checks, the live status page.
//! - [`kafka`]: the Kafka listener: Kafka clients (kcat, librdkafka, ...) served through
//!   the gateway's client API.
//! - [`server`]: a running node: wires storage, broker, network, mesh and gateway.
//! - [`client`]: the client library (a light peer) with a batching producer and fetch helpers.
//! - [`cli`]: the `meshlog` command line.

pub mod admin;
pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod gateway;
pub mod group;
pub mod kafka;
pub mod listener;
pub mod mesh;
pub mod network;
pub mod outbox;
pub mod replica;
pub mod resilience;
pub mod server;
pub mod services;
pub mod storage;
pub mod sync;
pub mod time;
