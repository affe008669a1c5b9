//! The live membership view: who is up, their addresses, when they were last heard
//! from. Fed by heartbeats, leaves and connection events; pure bookkeeping with time
//! passed in, so it is tested without a network or a clock.

use meshlog_protocol::mesh::{Heartbeat, MemberStatus};
use meshlog_protocol::NodeId;
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

/// Most members tracked (this node excluded). The live view, the peer book and the
/// connections kept all grow with it; meshlog meshes are tens of nodes.
pub const MAX_MEMBERS: usize = 1024;
/// Most addresses kept per member, and the longest one.
const MAX_ADDRS_PER_MEMBER: usize = 16;
const MAX_ADDR_LEN: usize = 256;

/// What a sweep found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Members that went down in this sweep.
    pub down: Vec<NodeId>,
    /// Members forgotten (unheard of for long).
    pub forgotten: Vec<NodeId>,
}

#[derive(Debug, Clone)]
struct Member {
    addrs: Vec<String>,
    last_seen: Instant,
    incarnation: u64,
    seq: u64,
    partitions: u32,
    /// Its advertised Kafka listener (`host:port`), if it runs one.
    kafka: Option<String>,
    state: MemberState,
}

/// Every member this node knows, except itself.
#[derive(Debug)]
pub struct Membership {
    members: BTreeMap<NodeId, Member>,
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
        let full = self.members.len() >= MAX_MEMBERS;
        match self.members.get_mut(hb.peer.as_str()) {
            Some(m) => {
                // A stale heartbeat of the same incarnation is ignored, and so is any
                // heartbeat of an incarnation that said it left (only a restart returns).
                if m.incarnation == hb.incarnation && (hb.seq <= m.seq || m.state == MemberState::Left) {
                    return false;
                }
                // Back from down, restarted, or moved: worth (re)connecting to.
                let revived =
                    m.state != MemberState::Up || m.incarnation != hb.incarnation || m.addrs != hb.addrs;
                // A bad Kafka address is reported once per incarnation, not per heartbeat.
                let report = m.state != MemberState::Up || m.incarnation != hb.incarnation;
                *m = Member::from_heartbeat(hb, now, report);
                revived
            }
            None if full => {
                tracing::warn!(peer = %hb.peer, "membership full ({MAX_MEMBERS} members); heartbeat ignored");
                false
            }
            None => {
                self.members.insert(hb.peer.clone(), Member::from_heartbeat(hb, now, true));
                true
            }
        }
    }

    /// A member announced it is leaving.
    pub fn on_leave(&mut self, peer: &NodeId) {
        if let Some(m) = self.members.get_mut(peer) {
            m.state = MemberState::Left;
        }
    }

    /// Mark members down after the timeout and forget long-gone ones.
    pub fn sweep(&mut self, now: Instant) -> Swept {
        let mut swept = Swept::default();
        let (timeout, forget) = (self.timeout, self.forget_after);
        self.members.retain(|peer, m| {
            let quiet = now.saturating_duration_since(m.last_seen);
            if m.state == MemberState::Up && quiet > timeout {
                m.state = MemberState::Down;
                swept.down.push(peer.clone());
            }
            if quiet > forget {
                swept.forgotten.push(peer.clone());
            }
            quiet <= forget
        });
        swept
    }

    /// Peers currently up (not including this node).
    pub fn live(&self) -> Vec<NodeId> {
        self.members.iter().filter(|(_, m)| m.state == MemberState::Up).map(|(p, _)| p.clone()).collect()
    }

    /// Addresses of a member.
    pub fn addrs(&self, peer: &NodeId) -> Vec<String> {
        self.members.get(peer).map(|m| m.addrs.clone()).unwrap_or_default()
    }

    /// (PeerId, advertised Kafka listener) of every member up that runs a listener.
    pub fn kafka_listeners(&self) -> Vec<(NodeId, String)> {
        let up = self.members.iter().filter(|(_, m)| m.state == MemberState::Up);
        up.filter_map(|(p, m)| Some((p.clone(), m.kafka.clone()?))).collect()
    }

    /// Whether `peer` is up.
    pub fn is_up(&self, peer: &NodeId) -> bool {
        self.members.get(peer).is_some_and(|m| m.state == MemberState::Up)
    }

    /// How many members are in each state (this node excluded), read off the view
    /// without copying it: the metrics scrape's `mesh_members`.
    pub fn count_by_state(&self) -> [(&'static str, usize); 3] {
        let (mut up, mut down, mut left) = (0, 0, 0);
        for m in self.members.values() {
            match m.state {
                MemberState::Up => up += 1,
                MemberState::Down => down += 1,
                MemberState::Left => left += 1,
            }
        }
        [("up", up), ("down", down), ("left", left)]
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
    fn from_heartbeat(hb: &Heartbeat, now: Instant, report: bool) -> Member {
        Member {
            addrs: hb
                .addrs
                .iter()
                .filter(|a| a.len() <= MAX_ADDR_LEN)
                .take(MAX_ADDRS_PER_MEMBER)
                .cloned()
                .collect(),
            last_seen: now,
            incarnation: hb.incarnation,
            seq: hb.seq,
            partitions: hb.partitions,
            kafka: hb.kafka.as_deref().and_then(|k| kafka_addr(hb.peer.as_str(), k, report)),
            state: MemberState::Up,
        }
    }
}

/// A peer's advertised Kafka address if it is a sane `HOST:PORT`, else `None` with a
/// warning (when `report`): it is shown to Kafka clients as a broker address, so it is
/// not trusted.
fn kafka_addr(peer: &str, addr: &str, report: bool) -> Option<String> {
    match check_host_port(addr) {
        Ok(()) => Some(addr.to_string()),
        Err(_) if !report => None,
        Err(why) => {
            let shown: String = addr.chars().take(64).collect::<String>().escape_debug().to_string();
            tracing::warn!(%peer, addr = %shown, %why, "ignoring the Kafka address a peer advertises");
            None
        }
    }
}

/// `HOST:PORT` with a port in 1..=65535 and a host that is an IP address (IPv6 in
/// brackets) or a DNS name (letters, digits, `-`, `_`, dots; labels of 1 to 63), at
/// most [`MAX_ADDR_LEN`] bytes.
pub fn check_host_port(addr: &str) -> Result<(), String> {
    if addr.len() > MAX_ADDR_LEN {
        return Err(format!("longer than {MAX_ADDR_LEN} bytes"));
    }
    let (host, port) = addr.rsplit_once(':').ok_or("no ':PORT'")?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
        _ => return Err("the port is not a number from 1 to 65535".into()),
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| "not an IPv6 address in brackets".into());
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if host.is_empty() || !host.split('.').all(label_ok) {
        return Err("the host is neither an IP address nor a DNS name".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(peer: &str) -> NodeId {
        NodeId::new(peer)
    }

    fn hb(peer: &str, inc: u64, seq: u64) -> Heartbeat {
        Heartbeat { peer: peer.into(), addrs: vec![], seq, incarnation: inc, partitions: 0, kafka: None }
    }

    #[test]
    fn members_go_down_after_the_timeout_and_come_back() {
        let t0 = Instant::now();
        let mut m = Membership::new(Duration::from_secs(5));
        assert!(m.on_heartbeat(&hb("a", 1, 1), t0));
        assert!(!m.on_heartbeat(&hb("a", 1, 2), t0 + Duration::from_secs(1)));
        assert_eq!(m.sweep(t0 + Duration::from_secs(3)), Swept::default());
        assert_eq!(m.sweep(t0 + Duration::from_secs(7)).down, vec![id("a")]);
        assert!(m.live().is_empty());
        // A restart (new incarnation) brings it back even with a lower seq.
        assert!(m.on_heartbeat(&hb("a", 2, 1), t0 + Duration::from_secs(8)));
        assert_eq!(m.live(), vec![id("a")]);
    }

    #[test]
    fn stale_heartbeats_do_not_revive_and_leaves_are_final_for_an_incarnation() {
        let t0 = Instant::now();
        let mut m = Membership::new(Duration::from_secs(5));
        m.on_heartbeat(&hb("a", 1, 5), t0);
        m.on_leave(&id("a"));
        assert!(!m.on_heartbeat(&hb("a", 1, 4), t0), "an old heartbeat");
        assert!(!m.on_heartbeat(&hb("a", 1, 6), t0), "a late heartbeat of the leaver");
        assert_eq!(m.status(t0)[0].state, "left");
        assert!(m.on_heartbeat(&hb("a", 2, 1), t0), "a restart (new incarnation) returns");
    }

    #[test]
    fn kafka_listeners_of_members_up_are_listed() {
        let t0 = Instant::now();
        let mut m = Membership::new(Duration::from_secs(5));
        let mut a = hb("a", 1, 1);
        a.kafka = Some("10.0.0.1:9092".into());
        m.on_heartbeat(&a, t0);
        m.on_heartbeat(&hb("b", 1, 1), t0);
        let mut c = hb("c", 1, 1);
        c.kafka = Some("10.0.0.3:9092".into());
        m.on_heartbeat(&c, t0);
        m.on_leave(&id("c"));
        assert_eq!(m.kafka_listeners(), vec![(id("a"), "10.0.0.1:9092".to_string())]);
        // A restart that moved the listener is told by its next heartbeat.
        a.seq = 2;
        a.kafka = Some("10.0.0.1:19092".into());
        m.on_heartbeat(&a, t0);
        assert_eq!(m.kafka_listeners()[0].1, "10.0.0.1:19092");
    }

    #[test]
    fn counts_by_state_match_the_status_view() {
        let t0 = Instant::now();
        let mut m = Membership::new(Duration::from_secs(5));
        assert_eq!(m.count_by_state(), [("up", 0), ("down", 0), ("left", 0)]);
        m.on_heartbeat(&hb("a", 1, 1), t0);
        m.on_heartbeat(&hb("b", 1, 1), t0);
        m.on_heartbeat(&hb("c", 1, 1), t0 + Duration::from_secs(4));
        m.on_leave(&id("b"));
        m.sweep(t0 + Duration::from_secs(6));
        assert_eq!(m.count_by_state(), [("up", 1), ("down", 1), ("left", 1)]);
        for (state, n) in m.count_by_state() {
            assert_eq!(m.status(t0).iter().filter(|s| s.state == state).count(), n, "{state}");
        }
    }

    #[test]
    fn membership_and_addresses_are_bounded_and_long_gone_members_are_forgotten() {
        let t0 = Instant::now();
        let mut m = Membership::new(Duration::from_secs(5));
        for i in 0..MAX_MEMBERS {
            assert!(m.on_heartbeat(&hb(&format!("p{i}"), 1, 1), t0));
        }
        assert!(!m.on_heartbeat(&hb("one-more", 1, 1), t0), "over the cap");
        assert!(!m.is_up(&id("one-more")));
        let mut many = hb("p0", 1, 2);
        many.addrs = (0..100).map(|i| format!("/ip4/10.0.0.{i}/tcp/1")).collect();
        m.on_heartbeat(&many, t0);
        assert_eq!(m.addrs(&id("p0")).len(), MAX_ADDRS_PER_MEMBER);
        let mut long = hb("p1", 1, 2);
        long.kafka = Some("x".repeat(MAX_ADDR_LEN + 1));
        m.on_heartbeat(&long, t0);
        assert!(m.kafka_listeners().iter().all(|(p, _)| p != "p1"), "an overlong address is dropped");
        let mut bad = hb("p2", 1, 2);
        bad.kafka = Some("evil host:9092".into());
        m.on_heartbeat(&bad, t0);
        assert!(m.kafka_listeners().iter().all(|(p, _)| p != "p2"), "an invalid address is dropped");
        let swept = m.sweep(t0 + Duration::from_secs(5 * 60 + 1));
        assert_eq!(swept.forgotten.len(), MAX_MEMBERS);
        assert!(m.on_heartbeat(&hb("one-more", 1, 1), t0 + Duration::from_secs(302)));
    }

    #[test]
    fn advertised_kafka_addresses_must_be_host_port() {
        for ok in ["10.0.0.5:9092", "[::1]:9092", "node-1.lan:1", "localhost:65535", "kafka_0.svc:9092"] {
            assert_eq!(check_host_port(ok), Ok(()), "{ok}");
        }
        let long = format!("{}:9092", "a".repeat(MAX_ADDR_LEN));
        let label = format!("{}.lan:9092", "a".repeat(64));
        for bad in [
            "",
            "9092",
            ":9092",
            "host:",
            "host:0",
            "host:65536",
            "host:+80",
            "host:80x",
            "ho st:9092",
            "host\n:9092",
            "host\u{0}:9092",
            "[::1:9092",
            "::1:9092",
            "[nope]:9092",
            "a..b:9092",
            "é.lan:9092",
            "host:9092\r",
            &long,
            &label,
        ] {
            assert!(check_host_port(bad).is_err(), "{bad:?} accepted");
        }
    }
}
