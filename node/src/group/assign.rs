//! Assignors: how a group's partitions are spread over its members. Pure functions of
//! the members (sorted by id), their subscriptions, the previous assignment and the
//! partition counts, so every coordinator computes the same answer.

use meshlog_protocol::group::{Assignor, TopicPartition};
use std::collections::{BTreeMap, BTreeSet};

/// A member as an assignor sees it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// Member id.
    pub id: String,
    /// Subscribed topics.
    pub topics: BTreeSet<String>,
    /// Its assignment in the previous generation (used by the sticky assignor).
    pub previous: Vec<TopicPartition>,
}

/// Member id -> assigned partitions (sorted), with an entry for every member.
pub type Assignment = BTreeMap<String, Vec<TopicPartition>>;

/// Assign every partition of every subscribed topic (`partitions`: topic -> count) to
/// exactly one member subscribed to its topic.
pub fn assign(assignor: Assignor, members: &[Subscriber], partitions: &BTreeMap<String, u32>) -> Assignment {
    let mut members: Vec<&Subscriber> = members.iter().collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out: Assignment = members.iter().map(|m| (m.id.clone(), Vec::new())).collect();
    match assignor {
        Assignor::Range => range(&members, partitions, &mut out),
        Assignor::RoundRobin => round_robin(&members, partitions, &mut out),
        Assignor::CooperativeSticky => sticky(&members, partitions, &mut out),
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

fn subscribed_topics<'a>(
    members: &[&Subscriber],
    partitions: &'a BTreeMap<String, u32>,
) -> Vec<(&'a String, u32)> {
    let wanted: BTreeSet<&String> = members.iter().flat_map(|m| m.topics.iter()).collect();
    partitions.iter().filter(|(t, _)| wanted.contains(t)).map(|(t, &n)| (t, n)).collect()
}

/// Kafka's range assignor: per topic, the subscribers in id order each take a
/// contiguous run; the first `n % m` take one extra.
fn range(members: &[&Subscriber], partitions: &BTreeMap<String, u32>, out: &mut Assignment) {
    for (topic, n) in subscribed_topics(members, partitions) {
        let subs: Vec<&&Subscriber> = members.iter().filter(|m| m.topics.contains(topic)).collect();
        let m = subs.len() as u32;
        let mut next = 0;
        for (i, s) in subs.iter().enumerate() {
            let take = n / m + u32::from((i as u32) < n % m);
            let v = out.entry(s.id.clone()).or_default();
            v.extend((next..next + take).map(|p| TopicPartition::new(topic.clone(), p)));
            next += take;
        }
    }
}

/// Kafka's round-robin assignor: every partition (by topic, then number) dealt to the
/// next member in id order that subscribes to its topic.
fn round_robin(members: &[&Subscriber], partitions: &BTreeMap<String, u32>, out: &mut Assignment) {
    let mut turn = 0usize;
    for (topic, n) in subscribed_topics(members, partitions) {
        for p in 0..n {
            for k in 0..members.len() {
                let m = members[(turn + k) % members.len()];
                if m.topics.contains(topic) {
                    out.entry(m.id.clone()).or_default().push(TopicPartition::new(topic.clone(), p));
                    turn = (turn + k + 1) % members.len();
                    break;
                }
            }
        }
    }
}

/// Sticky: every member keeps what it had (up to its fair share), the rest goes to the
/// members with the fewest, and then partitions move one at a time from the most to
/// the least loaded eligible member until no two differ by more than one.
fn sticky(members: &[&Subscriber], partitions: &BTreeMap<String, u32>, out: &mut Assignment) {
    let all: Vec<TopicPartition> = subscribed_topics(members, partitions)
        .into_iter()
        .flat_map(|(t, n)| (0..n).map(move |p| TopicPartition::new(t.clone(), p)))
        .collect();
    if members.is_empty() || all.is_empty() {
        return;
    }
    let eligible = |m: &Subscriber, tp: &TopicPartition| m.topics.contains(&tp.topic);
    let fair = all.len().div_ceil(members.len());
    let valid: BTreeSet<&TopicPartition> = all.iter().collect();
    let mut taken: BTreeSet<TopicPartition> = BTreeSet::new();
    for m in members {
        let mut prev: Vec<&TopicPartition> = m.previous.iter().collect();
        prev.sort();
        let keep = out.entry(m.id.clone()).or_default();
        for tp in prev {
            if keep.len() < fair && valid.contains(tp) && eligible(m, tp) && taken.insert(tp.clone()) {
                keep.push(tp.clone());
            }
        }
    }
    for tp in all.iter().filter(|tp| !taken.contains(*tp)) {
        let least = members.iter().filter(|m| eligible(m, tp)).min_by_key(|m| (out[&m.id].len(), &m.id));
        if let Some(m) = least {
            out.entry(m.id.clone()).or_default().push(tp.clone());
        }
    }
    // Even out: bounded, each move lowers the spread between two members.
    for _ in 0..all.len() * members.len() {
        let mut moved = false;
        let mut by_load: Vec<&&Subscriber> = members.iter().collect();
        by_load.sort_by_key(|m| (std::cmp::Reverse(out[&m.id].len()), &m.id));
        'find: for from in &by_load {
            for to in by_load.iter().rev() {
                if out[&from.id].len() < out[&to.id].len() + 2 {
                    continue;
                }
                // The most recently added partition moves first, so kept ones stay.
                let pick = out[&from.id].iter().rposition(|tp| eligible(to, tp));
                if let Some(i) = pick {
                    let tp = out.get_mut(&from.id).map(|v| v.remove(i));
                    if let Some(tp) = tp {
                        out.entry(to.id.clone()).or_default().push(tp);
                    }
                    moved = true;
                    break 'find;
                }
            }
        }
        if !moved {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(id: &str, topics: &[&str], previous: &[(&str, u32)]) -> Subscriber {
        Subscriber {
            id: id.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            previous: previous.iter().map(|(t, p)| TopicPartition::new(*t, *p)).collect(),
        }
    }

    fn counts(parts: &[(&str, u32)]) -> BTreeMap<String, u32> {
        parts.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn tps(v: &[(&str, u32)]) -> Vec<TopicPartition> {
        v.iter().map(|(t, p)| TopicPartition::new(*t, *p)).collect()
    }

    /// Every partition of a subscribed topic is held by exactly one subscriber.
    fn check_complete(a: &Assignment, members: &[Subscriber], parts: &BTreeMap<String, u32>) {
        let mut seen = BTreeSet::new();
        for (m, v) in a {
            let sub = members.iter().find(|s| &s.id == m).expect("member");
            for tp in v {
                assert!(sub.topics.contains(&tp.topic), "{m} got {tp} without subscribing");
                assert!(seen.insert(tp.clone()), "{tp} assigned twice");
            }
        }
        let wanted: usize = parts
            .iter()
            .filter(|(t, _)| members.iter().any(|m| m.topics.contains(*t)))
            .map(|(_, n)| *n as usize)
            .sum();
        assert_eq!(seen.len(), wanted);
    }

    fn spread(a: &Assignment) -> usize {
        let lens: Vec<usize> = a.values().map(Vec::len).collect();
        lens.iter().max().unwrap_or(&0) - lens.iter().min().unwrap_or(&0)
    }

    #[test]
    fn range_splits_each_topic_into_runs() {
        let m = [sub("a", &["t"], &[]), sub("b", &["t"], &[]), sub("c", &["t"], &[])];
        let parts = counts(&[("t", 7)]);
        let a = assign(Assignor::Range, &m, &parts);
        check_complete(&a, &m, &parts);
        assert_eq!(a["a"], tps(&[("t", 0), ("t", 1), ("t", 2)]));
        assert_eq!(a["b"], tps(&[("t", 3), ("t", 4)]));
        assert_eq!(a["c"], tps(&[("t", 5), ("t", 6)]));
    }

    #[test]
    fn round_robin_deals_in_turn_and_skips_non_subscribers() {
        let m = [sub("a", &["t", "u"], &[]), sub("b", &["t"], &[])];
        let parts = counts(&[("t", 3), ("u", 2)]);
        let a = assign(Assignor::RoundRobin, &m, &parts);
        check_complete(&a, &m, &parts);
        assert_eq!(a["a"], tps(&[("t", 0), ("t", 2), ("u", 0), ("u", 1)]));
        assert_eq!(a["b"], tps(&[("t", 1)]));
    }

    #[test]
    fn six_partitions_over_three_members_two_each_for_every_assignor() {
        let m = [sub("a", &["t"], &[]), sub("b", &["t"], &[]), sub("c", &["t"], &[])];
        let parts = counts(&[("t", 6)]);
        for assignor in Assignor::ALL {
            let a = assign(assignor, &m, &parts);
            check_complete(&a, &m, &parts);
            assert!(a.values().all(|v| v.len() == 2), "{assignor}: {a:?}");
        }
    }

    #[test]
    fn sticky_moves_only_a_lost_members_partitions() {
        let parts = counts(&[("t", 6)]);
        let m = [
            sub("a", &["t"], &[("t", 0), ("t", 1)]),
            sub("c", &["t"], &[("t", 4), ("t", 5)]),
            // "b" (t-2, t-3) is gone.
        ];
        let a = assign(Assignor::CooperativeSticky, &m, &parts);
        check_complete(&a, &m, &parts);
        assert!(a["a"].starts_with(&tps(&[("t", 0), ("t", 1)])) || a["a"].len() == 3);
        for (id, kept) in [("a", [0, 1]), ("c", [4, 5])] {
            for p in kept {
                assert!(a[id].contains(&TopicPartition::new("t", p)), "{id} lost t-{p}: {a:?}");
            }
        }
        assert_eq!(spread(&a), 0);
    }

    #[test]
    fn sticky_gives_a_newcomer_a_fair_share_and_moves_no_more() {
        let parts = counts(&[("t", 6)]);
        let m = [
            sub("a", &["t"], &[("t", 0), ("t", 1), ("t", 2)]),
            sub("b", &["t"], &[("t", 3), ("t", 4), ("t", 5)]),
            sub("c", &["t"], &[]),
        ];
        let a = assign(Assignor::CooperativeSticky, &m, &parts);
        check_complete(&a, &m, &parts);
        assert_eq!(spread(&a), 0);
        let moved = m[..2]
            .iter()
            .map(|s| s.previous.iter().filter(|tp| !a[&s.id].contains(tp)).count())
            .sum::<usize>();
        assert_eq!(moved, 2, "only the newcomer's share moves: {a:?}");
    }

    #[test]
    fn sticky_balances_random_shapes() {
        // A small deterministic sweep: members 1..=5, partitions 0..=13, any previous.
        for members in 1..=5usize {
            for n in 0..=13u32 {
                let m: Vec<Subscriber> = (0..members)
                    .map(|i| {
                        let prev: Vec<(&str, u32)> = (0..n)
                            .filter(|p| (*p as usize * 7 + i).is_multiple_of(3))
                            .map(|p| ("t", p))
                            .collect();
                        sub(&format!("m{i}"), &["t"], &prev)
                    })
                    .collect();
                let parts = counts(&[("t", n)]);
                let a = assign(Assignor::CooperativeSticky, &m, &parts);
                check_complete(&a, &m, &parts);
                assert!(spread(&a) <= 1, "members {members}, partitions {n}: {a:?}");
            }
        }
    }

    #[test]
    fn no_members_or_no_topics_assign_nothing() {
        let parts = counts(&[("t", 3)]);
        for assignor in Assignor::ALL {
            assert!(assign(assignor, &[], &parts).is_empty());
            let m = [sub("a", &["other"], &[])];
            let a = assign(assignor, &m, &parts);
            assert_eq!(a["a"], Vec::<TopicPartition>::new());
        }
    }
}
