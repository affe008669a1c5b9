//! Consumer groups, served by the leader of their partition of the internal offsets
//! topic (DESIGN decision 12).
//!
//! - **State lives in the log.** Every committed offset and every completed rebalance
//!   (generation, members, assignment) is a record of `__consumer_offsets`, appended
//!   with `acks=all`; a commit is acknowledged only once it is committed there. The
//!   topic is compacted by key, so it holds about one record per live key.
//! - **Failover is a reload.** A node serves a group only while its replica of the
//!   group's offsets partition leads. The first request in a new leader epoch waits
//!   until everything in the leader's log is committed (its HW passes the log end it
//!   saw), then rebuilds the partition's groups from the log. Members keep their
//!   generation and assignment across a coordinator change; their sessions restart.
//! - **One lock per offsets partition** orders every change, so the in-memory state is
//!   always the log read up to the last append made here. An append whose outcome is
//!   unknown (a timeout, a lost leadership) drops the state, and the next request
//!   reloads it from the log.
//! - **Membership** follows Kafka: join (polled), sync, heartbeat, leave, generations,
//!   session and rebalance timeouts. The coordinator computes the assignment
//!   ([`assign`]); a partition a member still owns (cooperative assignor) is given to
//!   no one else until that member has rejoined without it.
//! - **Bounded** ([`limits`]): groups per offsets partition, members per group, each
//!   member's subscription, committed offsets per group and their metadata are capped;
//!   a request over a cap changes nothing and gets a stable error code.
//!
//! The parts: [`state`] is the pure core (`Shard::step(now_ms, input) -> outputs`: the
//! groups of one offsets partition, what to append and what to answer; no I/O, no
//! clock); `coordinator` is the thin async [`Coordinator`] that finds the leading
//! replica, loads, feeds the core, appends and answers; [`assign`] and [`limits`] are
//! pure functions the core uses.

pub mod assign;
mod coordinator;
pub mod limits;
pub mod state;

pub use coordinator::{Coordinator, GroupSettings, APPEND_TIMEOUT, TICK};
