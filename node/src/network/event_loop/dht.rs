//! The DHT and discovery events of the swarm task: Kademlia commands and queries (the
//! pending maps keyed by query id), inbound DHT writes (only a node's, only valid
//! records), mDNS discoveries and identify's listen addresses.
//!
//! Owns no state of its own beyond the pending queries in [`EventLoop`]; it decides
//! nothing about topics: found records go back to the asker, checked.

use super::EventLoop;
use crate::network::behaviour::KAD_PROTOCOL;
use crate::network::Command;
use libp2p::kad::store::RecordStore;
use libp2p::kad::{self, QueryId};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{identify, mdns, Multiaddr, PeerId};
use meshlog_protocol::admission::PeerRole;
use meshlog_protocol::codec;
use meshlog_protocol::mesh::SignedRecord;
use std::collections::{HashMap, HashSet};

/// Identify listen addresses remembered per peer until it is admitted.
const IDENTIFY_ADDRS_MAX: usize = 16;

impl EventLoop {
    pub(super) fn on_dht_command(&mut self, cmd: Command) {
        let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() else {
            return;
        };
        match cmd {
            Command::PutRecord { key, record } => match codec::encode(&record) {
                Ok(value) => {
                    let rec = kad::Record::new(key.into_bytes(), value);
                    if let Err(e) = kad.put_record(rec, kad::Quorum::One) {
                        tracing::warn!(error = %e, "cannot store a DHT record");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot encode a DHT record"),
            },
            Command::GetRecord { key, reply } => {
                let id = kad.get_record(kad::RecordKey::new(&key));
                self.pending_records.insert(id, (reply, Vec::new()));
            }
            Command::StartProviding { key } => {
                if let Err(e) = kad.start_providing(kad::RecordKey::new(&key)) {
                    tracing::warn!(%key, error = %e, "cannot provide a DHT key");
                }
            }
            Command::StopProviding { key } => kad.stop_providing(&kad::RecordKey::new(&key)),
            Command::GetProviders { key, reply } => {
                let id = kad.get_providers(kad::RecordKey::new(&key));
                self.pending_providers.insert(id, (reply, HashSet::new()));
            }
            _ => {}
        }
    }

    pub(super) fn on_mdns(&mut self, e: mdns::Event) {
        if let mdns::Event::Discovered(found) = e {
            let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
            for (peer, addr) in found {
                by_peer.entry(peer).or_default().push(addr);
            }
            for (peer, addrs) in by_peer {
                tracing::debug!(%peer, ?addrs, "discovered by mDNS");
                self.connect(peer, addrs);
            }
        }
    }

    /// Peers mDNS still sees but this node is not connected to are dialled again.
    /// mDNS reports a peer once per record lifetime (minutes), so a first meeting lost
    /// while both nodes were starting (every hello refused, the connection closed) would
    /// otherwise never be tried again, and the mesh would not form.
    pub(super) fn redial_mdns(&mut self) {
        let Some(mdns) = self.swarm.behaviour().mdns.as_ref() else { return };
        let me = *self.swarm.local_peer_id();
        let apart: HashSet<PeerId> =
            mdns.discovered_nodes().filter(|p| **p != me && !self.swarm.is_connected(p)).copied().collect();
        for peer in apart {
            tracing::debug!(%peer, "seen by mDNS but not connected: dialling again");
            // mDNS hands the swarm the peer's addresses for a dial by peer id.
            let opts = DialOpts::peer_id(peer).condition(PeerCondition::DisconnectedAndNotDialing).build();
            let _ = self.swarm.dial(opts);
        }
    }

    pub(super) fn on_identify(&mut self, e: identify::Event) {
        if let identify::Event::Received { peer_id, info, .. } = e {
            if !info.protocols.contains(&KAD_PROTOCOL) {
                return;
            }
            let mut addrs = info.listen_addrs;
            addrs.truncate(IDENTIFY_ADDRS_MAX);
            match self.roles.get(&peer_id) {
                Some(PeerRole::Node) => self.add_dht_addresses(&peer_id, addrs),
                Some(PeerRole::Client) => {}
                None => {
                    self.admissions.identified.insert(peer_id, addrs);
                }
            }
        }
    }

    pub(super) fn add_dht_addresses(&mut self, peer: &PeerId, addrs: Vec<Multiaddr>) {
        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
            for a in addrs {
                kad.add_address(peer, a);
            }
        }
    }

    pub(super) fn on_kad(&mut self, e: kad::Event) {
        match e {
            kad::Event::InboundRequest { request } => self.on_kad_inbound(request),
            kad::Event::OutboundQueryProgressed { id, result, step, .. } => match result {
                kad::QueryResult::GetRecord(r) => self.on_get_record(id, r, step.last),
                kad::QueryResult::GetProviders(r) => self.on_get_providers(id, r, step.last),
                _ => {}
            },
            _ => {}
        }
    }

    pub(super) fn on_kad_inbound(&mut self, request: kad::InboundRequest) {
        let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() else { return };
        match request {
            kad::InboundRequest::PutRecord { source, .. } if !self.roles.is_node(&source) => {
                tracing::warn!(%source, "DHT write from a peer that is not a node dropped");
            }
            kad::InboundRequest::AddProvider { record: Some(record) }
                if !self.roles.is_node(&record.provider) =>
            {
                tracing::warn!(provider = %record.provider, "DHT provider record from a peer that is not a node dropped");
            }
            kad::InboundRequest::PutRecord { source, record: Some(record), .. } => {
                match crate::network::records::check_dht_record(&record) {
                    Ok(()) => {
                        let _ = kad.store_mut().put(record);
                    }
                    Err(e) => tracing::warn!(%source, error = %e, "DHT record rejected"),
                }
            }
            kad::InboundRequest::AddProvider { record: Some(record) } => {
                let _ = kad.store_mut().add_provider(record);
            }
            _ => {}
        }
    }

    pub(super) fn on_get_record(
        &mut self,
        id: QueryId,
        r: Result<kad::GetRecordOk, kad::GetRecordError>,
        last: bool,
    ) {
        if let Ok(kad::GetRecordOk::FoundRecord(found)) = r {
            if let Some((_, acc)) = self.pending_records.get_mut(&id) {
                match crate::network::records::check_dht_record(&found.record) {
                    Ok(()) => {
                        if let Ok(rec) = codec::decode::<SignedRecord>(&found.record.value) {
                            acc.push(rec);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "invalid DHT record ignored"),
                }
            }
        }
        if last {
            if let Some((reply, acc)) = self.pending_records.remove(&id) {
                let _ = reply.send(Ok(acc));
            }
        }
    }

    pub(super) fn on_get_providers(
        &mut self,
        id: QueryId,
        r: Result<kad::GetProvidersOk, kad::GetProvidersError>,
        last: bool,
    ) {
        if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = r {
            if let Some((_, acc)) = self.pending_providers.get_mut(&id) {
                acc.extend(providers);
            }
        }
        if last {
            if let Some((reply, acc)) = self.pending_providers.remove(&id) {
                let _ = reply.send(Ok(acc.into_iter().collect()));
            }
        }
    }
}
