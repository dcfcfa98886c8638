//! What this server's links register upstream: the functions its relayable
//! workers do, and the client id that carries the cycle rule. See `peering`.

use super::peering::{PeerCmd, Wanted, PEER_CLIENT_ID};
use super::Engine;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::time::Duration;

/// The ids in a `gearbox-peer:` client id, or `None` for any other client.
pub(super) fn downstream_ids(client_id: &[u8]) -> Option<Vec<Bytes>> {
    let list = client_id.strip_prefix(PEER_CLIENT_ID)?;
    Some(
        list.split(|&b| b == b',')
            .filter(|id| !id.is_empty())
            .map(Bytes::copy_from_slice)
            .collect(),
    )
}

impl Engine {
    /// Sends the links' registrations and client id if they changed. Called
    /// on every flush; does nothing unless a worker or link came or went.
    pub(super) fn update_peering(&mut self) {
        if !self.peering.wanted_dirty {
            return;
        }
        self.peering.wanted_dirty = false;
        self.update_client_id();
        // Per function: whether some worker registered it without a timeout,
        // the longest timeout of the others, and the servers every one of
        // its workers' demand came through (a local worker: none).
        let mut functions: BTreeMap<Bytes, (bool, Duration, Option<Vec<Bytes>>)> = BTreeMap::new();
        for (&id, c) in &self.conns.map {
            if c.abilities.is_empty() || !self.relayable(id) {
                continue;
            }
            let through: Vec<Bytes> = c.downstream.clone().unwrap_or_default();
            for a in &c.abilities {
                let name = self.functions.get(a.func).name.clone();
                let entry = functions
                    .entry(name)
                    .or_insert((false, Duration::ZERO, None));
                match a.timeout {
                    None => entry.0 = true,
                    Some(t) => entry.1 = entry.1.max(t),
                }
                entry.2 = Some(match entry.2.take() {
                    None => through.clone(),
                    Some(common) => common
                        .into_iter()
                        .filter(|id| through.contains(id))
                        .collect(),
                });
            }
        }
        let wanted: Vec<Wanted> = functions
            .into_iter()
            .map(|(name, (untimed, longest, exclude))| Wanted {
                name,
                timeout: (!untimed).then_some(longest),
                exclude: exclude.unwrap_or_default(),
            })
            .collect();
        if wanted != self.peering.wanted_sent {
            self.peering.wanted_sent = wanted.clone();
            self.peering.send(PeerCmd::Wanted(wanted));
        }
    }

    /// This server's id and every id named by a link connected here.
    pub(super) fn update_client_id(&mut self) {
        let mut ids = vec![self.peering.server_id.clone()];
        for c in self.conns.map.values() {
            for id in c.downstream.iter().flatten() {
                if !ids.contains(id) {
                    ids.push(id.clone());
                }
            }
        }
        ids[1..].sort();
        let mut value = PEER_CLIENT_ID.to_vec();
        value.extend_from_slice(&ids.join(&b","[..]));
        let value = Bytes::from(value);
        if value != self.peering.client_id_sent {
            self.peering.client_id_sent = value.clone();
            self.peering.send(PeerCmd::ClientId(value));
        }
    }
}
