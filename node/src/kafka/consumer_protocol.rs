//! Kafka's "consumer" embedded protocol: the subscription a member sends in JoinGroup
//! (topics, partitions it still owns) and the assignment it gets in SyncGroup. Pure;
//! every length is checked against the bytes left before it is used, and lists grow
//! one element at a time, so no claimed count is ever allocated.

use bytes::{BufMut, Bytes, BytesMut};
use meshlog_protocol::group::TopicPartition;

/// What a member subscribes to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    /// The topics it reads.
    pub topics: Vec<String>,
    /// Partitions it still consumes (subscription v1+; cooperative assignors).
    pub owned: Vec<TopicPartition>,
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err(format!("subscription cut short: {n} bytes wanted, {} left", self.0.len()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, String> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, String> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<String, String> {
        let n = usize::try_from(self.i16()?).map_err(|_| "null string in a subscription".to_string())?;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    /// An array length; a null array (-1) is empty.
    fn count(&mut self) -> Result<usize, String> {
        let n = self.i32()?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

/// Parse a ConsumerProtocolSubscription (any version: fields past v1 are ignored).
pub fn parse_subscription(bytes: &[u8]) -> Result<Subscription, String> {
    let mut r = Reader(bytes);
    let version = r.i16()?;
    let mut sub = Subscription::default();
    for _ in 0..r.count()? {
        sub.topics.push(r.string()?);
    }
    let user_data = r.i32()?;
    if let Ok(n) = usize::try_from(user_data) {
        r.take(n)?;
    }
    if version >= 1 && !r.0.is_empty() {
        for _ in 0..r.count()? {
            let topic = r.string()?;
            for _ in 0..r.count()? {
                let p = u32::try_from(r.i32()?).map_err(|_| "negative owned partition".to_string())?;
                sub.owned.push(TopicPartition::new(topic.clone(), p));
            }
        }
    }
    Ok(sub)
}

/// Encode a ConsumerProtocolSubscription v0: the topics, no user data (what
/// DescribeGroups shows as a member's metadata).
pub fn encode_subscription(topics: &[String]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1);
    b.freeze()
}

/// Encode a ConsumerProtocolAssignment v0: partitions grouped by topic, no user data.
pub fn encode_assignment(partitions: &[TopicPartition]) -> Bytes {
    let mut by_topic: std::collections::BTreeMap<&str, Vec<u32>> = std::collections::BTreeMap::new();
    for tp in partitions {
        by_topic.entry(tp.topic.as_str()).or_default().push(tp.partition);
    }
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(by_topic.len() as i32);
    for (topic, parts) in by_topic {
        b.put_i16(topic.len() as i16);
        b.put_slice(topic.as_bytes());
        b.put_i32(parts.len() as i32);
        for p in parts {
            b.put_i32(p as i32);
        }
    }
    b.put_i32(-1);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription_v1(topics: &[&str], owned: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i32(topics.len() as i32);
        for t in topics {
            b.put_i16(t.len() as i16);
            b.put_slice(t.as_bytes());
        }
        b.put_i32(3);
        b.put_slice(b"abc");
        b.put_i32(owned.len() as i32);
        for (t, ps) in owned {
            b.put_i16(t.len() as i16);
            b.put_slice(t.as_bytes());
            b.put_i32(ps.len() as i32);
            for p in *ps {
                b.put_i32(*p);
            }
        }
        b.to_vec()
    }

    #[test]
    fn subscriptions_parse_with_owned_partitions() {
        let s = parse_subscription(&subscription_v1(&["a", "bb"], &[("a", &[0, 2])])).unwrap();
        assert_eq!(s.topics, vec!["a", "bb"]);
        assert_eq!(s.owned, vec![TopicPartition::new("a", 0), TopicPartition::new("a", 2)]);
        // v0: no owned partitions.
        let mut v0 = subscription_v1(&["a"], &[]);
        v0[1] = 0;
        v0.truncate(v0.len() - 4);
        assert_eq!(parse_subscription(&v0).unwrap().owned, vec![]);
    }

    #[test]
    fn hostile_counts_are_errors_not_allocations() {
        let mut b = BytesMut::new();
        b.put_i16(0);
        b.put_i32(i32::MAX);
        b.put_i16(1);
        b.put_slice(b"a");
        assert!(parse_subscription(&b).is_err());
        assert!(parse_subscription(&[0, 1, 0x7f]).is_err());
    }

    #[test]
    fn encoded_subscriptions_parse_back() {
        let topics = vec!["a".to_string(), "bb".to_string()];
        let s = parse_subscription(&encode_subscription(&topics)).unwrap();
        assert_eq!((s.topics, s.owned), (topics, vec![]));
    }

    #[test]
    fn assignments_group_partitions_by_topic() {
        let a = encode_assignment(&[TopicPartition::new("t", 1), TopicPartition::new("t", 3)]);
        let want: Vec<u8> = [
            &0i16.to_be_bytes()[..],
            &1i32.to_be_bytes(),
            &1i16.to_be_bytes(),
            b"t",
            &2i32.to_be_bytes(),
            &1i32.to_be_bytes(),
            &3i32.to_be_bytes(),
            &(-1i32).to_be_bytes(),
        ]
        .concat();
        assert_eq!(&a[..], &want[..]);
    }
}
