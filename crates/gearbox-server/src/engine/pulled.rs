//! Jobs pulled from peers, from assignment to their end here: results go
//! home under the peer's handle, a worker's loss re-queues them locally, and
//! a local CAN_DO_TIMEOUT leaves them to the peer's own timer. See `peering`.

use super::jobs::{JobId, JobState, HIGH};
use super::peering::{LinkMsg, PeerCounters};
use super::Engine;
use bytes::BytesMut;
use gearbox_proto::packet::encode_req;
use gearbox_proto::{Packet, PacketType};

impl Engine {
    /// Sends a pulled job's WORK_* packet home under the peer's handle.
    /// Returns false if `id` is not a pulled job.
    pub(super) fn relay_work(&mut self, id: JobId, p: &Packet) -> bool {
        let Some(pulled) = self.peering.pulled.get(&id) else {
            return false;
        };
        let Some(link) = pulled.link else {
            if is_final(p.kind) {
                tracing::debug!(
                    handle = %String::from_utf8_lossy(&pulled.handle),
                    "result of a pulled job dropped: its peer connection has gone and the peer has re-queued it"
                );
            }
            return true;
        };
        let mut fields: Vec<&[u8]> = vec![&pulled.handle];
        fields.extend(p.args().iter().skip(1).map(|a| &a[..]));
        let mut buf = BytesMut::new();
        encode_req(&mut buf, p.kind, &fields);
        if let Some(l) = self.peering.links.get(&link) {
            l.send(LinkMsg::Send(buf.freeze()));
            let peer = l.peer;
            self.peering.counters(peer).last_moved = Some(std::time::Instant::now());
        }
        true
    }

    /// A pulled job leaves the tables.
    pub(super) fn forget_pulled(&mut self, id: JobId) {
        self.peering.pulled.remove(&id);
    }

    /// A pulled job whose worker gave it up: back to the front of the local
    /// queue (it is already out of its peer), or dropped if its link has gone.
    /// Returns false if `id` is not a pulled job.
    pub(super) fn requeue_pulled(&mut self, id: JobId) -> bool {
        let Some(pulled) = self.peering.pulled.get(&id) else {
            return false;
        };
        if pulled.link.is_none() {
            self.remove_job(id);
            return true;
        }
        let job = self.jobs.get_mut(id).expect("pulled jobs are live");
        let JobState::Running { worker, .. } = job.state else {
            return true;
        };
        job.retries += 1;
        job.numerator = 0;
        job.denominator = 0;
        job.state = JobState::Queued;
        let func = job.func;
        self.stopped_running(worker, id, func);
        self.functions.get_mut(func).push_front(HIGH, id);
        self.wake(func, 1);
        true
    }

    /// A pulled job's CAN_DO_TIMEOUT expired here. If its link registered
    /// the function with a timeout, the peer's own timer (armed when it
    /// assigned the job, so no later than ours) re-queues it there: drop it
    /// here, or it would run twice. Otherwise it is re-queued here. Returns
    /// false if `id` is not a pulled job.
    pub(super) fn pulled_timed_out(&mut self, id: JobId) -> bool {
        let Some(pulled) = self.peering.pulled.get(&id) else {
            return false;
        };
        if pulled.link.is_none() {
            self.remove_job(id);
            return true;
        }
        let name = self
            .jobs
            .get(id)
            .map(|j| self.functions.get(j.func).name.clone());
        let timed_upstream = self
            .peering
            .wanted_sent
            .iter()
            .any(|w| Some(&w.name) == name.as_ref() && w.timeout.is_some());
        if !timed_upstream {
            return false;
        }
        tracing::debug!(
            job = id,
            handle = %String::from_utf8_lossy(&pulled.handle),
            "CAN_DO_TIMEOUT expired on a pulled job; its peer re-queues it"
        );
        self.remove_job(id);
        true
    }

    /// Per peer, in `--peer` order: its counters and the GRABs and pulled
    /// jobs it has in flight, for `peers`.
    pub(super) fn peer_figures(&self, peers: usize) -> Vec<(PeerCounters, usize)> {
        let mut figures: Vec<(PeerCounters, usize)> = (0..peers)
            .map(|p| (self.peering.counters.get(p).copied().unwrap_or_default(), 0))
            .collect();
        for l in self.peering.links.values() {
            if let Some(f) = figures.get_mut(l.peer) {
                f.1 += l.waiting.len();
            }
        }
        for pulled in self.peering.pulled.values() {
            let peer = pulled
                .link
                .and_then(|id| self.peering.links.get(&id))
                .map(|l| l.peer);
            if let Some(f) = peer.and_then(|p| figures.get_mut(p)) {
                f.1 += 1;
            }
        }
        figures
    }
}

fn is_final(kind: PacketType) -> bool {
    matches!(
        kind,
        PacketType::WORK_COMPLETE | PacketType::WORK_FAIL | PacketType::WORK_EXCEPTION
    )
}
