//! meshlog's wire protocol: everything two meshlog programs say to each other, and
//! nothing else.
//!
//! This crate is pure: it performs no I/O and imports no tokio, libp2p or sled.
//!
//! Module map:
//! - [`admission`]: the hello every connection starts with (node or client role) and a
//!   closed mesh's certificates and Kafka logins.
//! - [`frame`]: length-prefixed, versioned frames with a hard size limit checked
//!   before any allocation.
//! - [`codec`]: the one place that turns messages into bytes (bincode 2.0.1 via serde).
//! - [`messages`]: the client API (CLI and programs to a node) and the peer API
//!   (node to node) as request/response enums.
//! - [`error`]: stable numeric error codes and the error value sent over the wire.
//! - [`batch`]: Kafka record batch format v2 (magic 2), byte for byte, with CRC32C.
//! - [`group`]: consumer groups: membership, assignment, committed offsets.
//! - [`partitioner`]: Kafka's default key partitioner (murmur2), bit for bit.
//! - [`scram`]: SCRAM-SHA-256/512 (RFC 5802, 7677), the server's side and a client
//!   helper: how a Kafka client proves a closed mesh's client credential.
//! - [`ids`]: `NodeId`, `PartitionId`, `Offset`, `Epoch`: ids that say what they carry,
//!   encoded exactly as the bare values they wrap.
//! - [`types`]: small shared value types (acks, offset specs, topic descriptions).
//! - [`mesh`]: membership heartbeats, topic records, service instances (mesh hints).
//! - [`kafka`]: Kafka requests decoded with every wire length bounded before allocation
//!   (kafka-protocol's structs, walked first along tables generated from its decoders).

pub mod admission;
pub mod batch;
pub mod codec;
pub mod error;
pub mod frame;
pub mod group;
pub mod ids;
pub mod kafka;
pub mod mesh;
pub mod messages;
pub mod partitioner;
pub mod revision;
pub mod scram;
pub mod types;

pub use error::{ErrorCode, WireError};
pub use ids::{Epoch, NodeId, Offset, PartitionId};
pub use messages::{ClientRequest, ClientResponse, PeerRequest, PeerResponse};
