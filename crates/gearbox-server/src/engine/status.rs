//! Small request/reply commands: GET_STATUS, GET_STATUS_UNIQUE, OPTION_REQ and
//! SET_CLIENT_ID.

use super::jobs::CoalesceKey;
use super::{ConnId, Engine};
use bytes::Bytes;
use gearbox_proto::PacketType;

/// gearmand keeps at most this many bytes of a client id.
const MAX_CLIENT_ID: usize = 127;
/// gearmand accepts option names up to this length.
const MAX_OPTION: usize = 63;

impl Engine {
    /// STATUS_RES: handle, known, running, numerator, denominator. A handle we
    /// do not hold (finished, cancelled or never ours) reads as all zeros.
    pub(super) fn get_status(&mut self, conn: ConnId, handle: &[u8]) {
        let job = self
            .parse_handle(handle)
            .and_then(|id| self.jobs.get(id))
            .filter(|j| !j.cancelled);
        let (known, running, num, den) = match job {
            Some(j) => (b"1", flag(j.is_running()), j.numerator, j.denominator),
            None => (b"0", b"0", 0, 0),
        };
        let (num, den) = (num.to_string(), den.to_string());
        self.conns.send(
            conn,
            PacketType::STATUS_RES,
            &[handle, known, running, num.as_bytes(), den.as_bytes()],
        );
    }

    /// STATUS_RES_UNIQUE: the first job under any function whose stored unique
    /// is exactly `unique`, plus the number of attached foreground clients.
    pub(super) fn get_status_unique(&mut self, conn: ConnId, unique: &[u8]) {
        let job = (!unique.is_empty())
            .then(|| {
                self.functions.sorted().into_iter().find_map(|f| {
                    let func = self.functions.id(&f.name)?;
                    let key = CoalesceKey {
                        by_data: false,
                        key: unique,
                    };
                    let id = self.jobs.find_unique(func, key)?;
                    self.jobs.get(id).filter(|j| !j.cancelled)
                })
            })
            .flatten();
        let (known, running, num, den, clients) = match job {
            Some(j) => (
                b"1",
                flag(j.is_running()),
                j.numerator,
                j.denominator,
                j.clients.len(),
            ),
            None => (b"0", b"0", 0, 0, 0),
        };
        let (num, den, clients) = (num.to_string(), den.to_string(), clients.to_string());
        self.conns.send(
            conn,
            PacketType::STATUS_RES_UNIQUE,
            &[
                unique,
                known,
                running,
                num.as_bytes(),
                den.as_bytes(),
                clients.as_bytes(),
            ],
        );
    }

    /// OPTION_REQ: only `exceptions` exists. PHP sends it on every addServer and
    /// throws unless the reply echoes the request.
    pub(super) fn option(&mut self, conn: ConnId, body: &[u8]) {
        let name = body.split(|&b| b == 0).next().unwrap_or_default();
        if name.len() <= MAX_OPTION && name.eq_ignore_ascii_case(b"exceptions") {
            if let Some(c) = self.conns.map.get_mut(&conn) {
                c.exceptions = true;
            }
            self.conns.send(conn, PacketType::OPTION_RES, &[body]);
        } else {
            self.conns.error(
                conn,
                "UNKNOWN_OPTION",
                "Server does not recognize given option",
            );
        }
    }

    pub(super) fn set_client_id(&mut self, conn: ConnId, id: &[u8]) {
        if let Some(c) = self.conns.map.get_mut(&conn) {
            c.client_id = Bytes::copy_from_slice(&id[..id.len().min(MAX_CLIENT_ID)]);
            let downstream = super::peer_registration::downstream_ids(id);
            if downstream.is_some() || c.downstream.is_some() {
                c.downstream = downstream;
                self.peering.mark_wanted_dirty();
            }
        }
    }
}

fn flag(on: bool) -> &'static [u8; 1] {
    if on {
        b"1"
    } else {
        b"0"
    }
}
