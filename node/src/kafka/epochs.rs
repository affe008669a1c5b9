//! OffsetForLeaderEpoch (API key 23, v2-4): where a leader epoch ends, per partition,
//! through [`Kafka::ask`] to the partition's leader, which answers from its log's epoch
//! history (the epoch every stored batch carries). A consumer asks after a leader change
//! with the epoch of the last record it read: an end below its position means the
//! records it read were truncated away (KIP-320).
//!
//! As Kafka: the largest epoch at or below the one asked and its end offset (the first
//! offset of the next later epoch, or the log end for the current epoch); -1 and -1 for
//! an epoch later than the current one or an asked epoch of -1. A `current_leader_epoch`
//! other than the leader's gets FENCED_LEADER_EPOCH (older) or UNKNOWN_LEADER_EPOCH
//! (newer); a node that does not lead gets NOT_LEADER_OR_FOLLOWER.

use super::{kafka_code, Kafka};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use meshlog_protocol::messages::{ClientRequest, ClientResponse};
use meshlog_protocol::{Epoch, ErrorCode};

/// An epoch as Kafka numbers it (-1: none) as meshlog's, if it is one.
fn epoch_of(kafka: i32) -> Option<Epoch> {
    u64::try_from(kafka).ok().map(Epoch::new)
}

impl Kafka {
    /// Answer an OffsetForLeaderEpoch request, every partition at once.
    pub(super) async fn offset_for_leader_epoch(
        &self,
        req: OffsetForLeaderEpochRequest,
    ) -> OffsetForLeaderEpochResponse {
        let topics = req.topics.into_iter().map(|t| async move {
            let name = t.topic.0.to_string();
            let parts = t.partitions.into_iter().map(|p| {
                let name = name.clone();
                async move {
                    let mut out = EpochEndOffset::default().with_partition(p.partition);
                    match self.epoch_end(name, p.partition, p.leader_epoch, p.current_leader_epoch).await {
                        Ok(Some((epoch, end))) => (out.leader_epoch, out.end_offset) = (epoch, end),
                        Ok(None) => {}
                        Err(code) => out.error_code = code,
                    }
                    out
                }
            });
            let partitions = futures::future::join_all(parts).await;
            OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions)
        });
        OffsetForLeaderEpochResponse::default().with_topics(futures::future::join_all(topics).await)
    }

    /// One partition's answer: (epoch, end offset), `None` for Kafka's -1 and -1.
    async fn epoch_end(
        &self,
        topic: String,
        partition: i32,
        asked: i32,
        current: i32,
    ) -> Result<Option<(i32, i64)>, i16> {
        let partition = u32::try_from(partition).map_err(|_| ErrorCode::UnknownTopicOrPartition.as_i16())?;
        // -1 asks nothing; any other negative epoch is not one.
        let epoch = match epoch_of(asked) {
            Some(e) => e,
            None if asked == -1 => Epoch::new(0),
            None => return Err(ErrorCode::InvalidRequest.as_i16()),
        };
        let leader_epoch = match current {
            -1 => None,
            c => Some(epoch_of(c).ok_or(ErrorCode::InvalidRequest.as_i16())?),
        };
        let req = ClientRequest::EpochEnd { topic, partition, epoch, leader_epoch };
        match self.ask(req).await {
            // The fencing check and the routing still ran for an asked epoch of -1.
            Ok(ClientResponse::EpochEnd(_)) if asked == -1 => Ok(None),
            Ok(ClientResponse::EpochEnd(found)) => {
                Ok(found.map(|f| (f.epoch.to_i32(), i64::try_from(f.end_offset).unwrap_or(i64::MAX))))
            }
            Ok(_) => Err(ErrorCode::Unknown.as_i16()),
            Err(e) => Err(kafka_code(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_epochs_map_onto_meshlogs() {
        assert_eq!(epoch_of(-1), None);
        assert_eq!(epoch_of(i32::MIN), None);
        assert_eq!(epoch_of(0), Some(Epoch::new(0)));
        assert_eq!(epoch_of(7), Some(Epoch::new(7)));
        assert_eq!(epoch_of(i32::MAX), Some(Epoch::new(i32::MAX as u64)));
    }
}
