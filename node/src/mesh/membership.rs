//! The live membership view: who is up, their addresses, when they were last heard
//! from. Fed by heartbeats, leaves and connection events; pure bookkeeping with time
//! passed in, so it is tested without a network or a clock.

use meshlog_protocol::mesh::{Heartbeat, MemberStatus};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A member's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Heard from within the timeout.
    Up,
    /// Not heard from within the timeout (crashed, cut off or frozen).
    Down,
    /// Said it was leaving.
    Left,
}

impl MemberState {
    fn as_str(self) -> &'static str {
        match self {
            MemberState::Up => "up",
            MemberState::Down => "down",
            MemberState::Left => "left",
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    addrs: Vec<String>,
    last_seen: Instant,
    incarnation: u64,
    seq: u64,
    partitions: u32,
    state: MemberState,
}

/// Every member this node knows, except itself.
#[derive(Debug)]
pub struct Membership {
    members: BTreeMap<String, Member>,
    timeout: Duration,
    /// Members unheard of for this long are forgotten.
    forget_after: Duration,
}

impl Membership {
    /// A view where a member is down after `timeout` without a heartbeat.
    pub fn new(timeout: Duration) -> Self {
        Membership { members: BTreeMap::new(), timeout, forget_after: timeout * 60 }
    }

    /// Apply a heartbeat; returns true if the member is new or came back up.
    pub fn on_heartbeat(&mut self, hb: &Heartbeat, now: Instant) -> bool {
        match self.members.get_mut(&hb.peer) {
            Some(m) => {
                // A stale heartbeat of the same incarnation is ignored, and so is any
                // heartbeat of an incarnation that said it left (only a restart returns).
                if m.incarnation == hb.incarnation && (hb.seq <= m.seq || m.state == MemberState::Left) {
                    return false;
                }
                // Back from down, restarted, or moved: worth (re)connecting to.
                let revived =
                    m.state != MemberState::Up || m.incarnation != hb.incarnation || m.addrs != hb.addrs;
                *m = Member::from_heartbeat(hb, now);
                revived
            }
            None => {
                self.members.insert(hb.peer.clone(), Member::from_heartbeat(hb, now));
                true
            }
        }
    }

    /// A member announced it is leaving.
    pub fn on_leave(&mut self, peer: &str) {
        if let Some(m) = self.members.get_mut(peer) {
            m.state = MemberState::Left;
        }
    }

    /// Mark members down after the timeout and forget long-gone ones; returns the peers
    /// that went down in this sweep.
    pub fn sweep(&mut self, now: Instant) -> Vec<String> {
        let mut down = Vec::new();
        let (timeout, forget) = (self.timeout, self.forget_after);
        self.members.retain(|peer, m| {
            let quiet = now.saturating_duration_since(m.last_seen);
            if m.state == MemberState::Up && quiet > timeout {
                m.state = MemberState::Down;
                down.push(peer.clone());
            }
            quiet <= forget
        });
        down
    }

    /// Peers currently up (not including this node).
    pub fn live(&self) -> Vec<String> {
        self.members.iter().filter(|(_, m)| m.state == MemberState::Up).map(|(p, _)| p.clone()).collect()
    }

    /// Addresses of a member.
    pub fn addrs(&self, peer: &str) -> Vec<String> {
        self.members.get(peer).map(|m| m.addrs.clone()).unwrap_or_default()
    }

    /// Whether `peer` is up.
    pub fn is_up(&self, peer: &str) -> bool {
        self.members.get(peer).is_some_and(|m| m.state == MemberState::Up)
    }

    /// Every member's status, for `cluster status`.
    pub fn status(&self, now: Instant) -> Vec<MemberStatus> {
        self.members
            .iter()
            .map(|(peer, m)| MemberStatus {
                peer: peer.clone(),
                addrs: m.addrs.clone(),
                state: m.state.as_str().to_string(),
                last_seen_ms_ago: now.saturating_duration_since(m.last_seen).as_millis() as u64,
                partitions: m.partitions,
            })
            .collect()
    }
}

impl Member {
    fn from_heartbeat(hb: &Heartbeat, now: Instant) -> Member {
        Member {
            addrs: hb.addrs.clone(),
            last_seen: now,
            incarnation: hb.incarnation,
            seq: hb.seq,
            partitions: hb.partitions,
            state: MemberState::Up,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(peer: &str, inc: u64, seq: u64) -> Heartbeat {
        Heartbeat { peer: peer.into(), addrs: vec![], seq, incarnation: inc, partitions: 0 }
    }

    #[test]
    fn members_go_down_after_the_timeout_and_come_back() {
        let t0 = Instant::now();
        let mut m = Membership::new(Duration::from_secs(5));
        assert!(m.on_heartbeat(&hb("a", 1, 1), t0));
        assert!(!m.on_heartbeat(&hb("a", 1, 2), t0 + Duration::from_secs(1)));
        assert!(m.sweep(t0 + Duration::from_secs(3)).is_empty());
        assert_eq!(m.sweep(t0 + Duration::from_secs(7)), vec!["a".to_string()]);
        assert!(m.live().is_empty());
        // A restart (new incarnation) brings it back even with a lower seq.
        assert!(m.on_heartbeat(&hb("a", 2, 1), t0 + Duration::from_secs(8)));
        assert_eq!(m.live(), vec!["a".to_string()]);
    }

    #[test]
    fn stale_heartbeats_do_not_revive_and_leaves_are_final_for_an_incarnation() {
        let t0 = Instant::now();
        let mut m = Membership::new(Duration::from_secs(5));
        m.on_heartbeat(&hb("a", 1, 5), t0);
        m.on_leave("a");
        assert!(!m.on_heartbeat(&hb("a", 1, 4), t0), "an old heartbeat");
        assert!(!m.on_heartbeat(&hb("a", 1, 6), t0), "a late heartbeat of the leaver");
        assert_eq!(m.status(t0)[0].state, "left");
        assert!(m.on_heartbeat(&hb("a", 2, 1), t0), "a restart (new incarnation) returns");
    }
}
