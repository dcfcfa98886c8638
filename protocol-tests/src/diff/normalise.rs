//! Turns a [`Transcript`] into comparable lines. The only normalisations are the ones
//! two conforming servers cannot avoid: the `getpid` value, the fd and address columns
//! of `workers` rows, the `version` value, and the row order of `status`,
//! `prioritystatus`, `show jobs` and `show unique jobs`. In `--target` mode job handles
//! are also renamed by order of first appearance, because an external server has its
//! own prefix and counter.

use std::collections::BTreeMap;

use super::session::{AdminKind, Transcript};
use super::wire::{render_frame, Frame};

/// Normalised transcript: per block, per connection (1-based), rendered frames.
/// Connections that received nothing in a block are absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalised {
    pub blocks: Vec<BTreeMap<usize, Vec<String>>>,
}

impl Normalised {
    /// The transcript as text lines: a `== block N ==` header per settle block and one
    /// `cN: frame` line per frame.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            out.push(format!("== block {} ==", i + 1));
            for (conn, frames) in block {
                for f in frames {
                    out.push(format!("c{conn}: {f}"));
                }
            }
        }
        out
    }
}

fn text_frame(line: &[u8]) -> String {
    render_frame(&Frame::Text(line.to_vec()))
}

fn is_sorted_listing(kind: AdminKind) -> bool {
    matches!(
        kind,
        AdminKind::Status
            | AdminKind::PriorityStatus
            | AdminKind::ShowJobs
            | AdminKind::ShowUniqueJobs
    )
}

fn is_listing(kind: AdminKind) -> bool {
    is_sorted_listing(kind) || kind == AdminKind::Workers
}

/// `FD IP rest` → `<fd> <addr> rest`.
fn normalise_worker_row(row: &[u8]) -> Vec<u8> {
    let mut parts = row.splitn(3, |&b| b == b' ');
    let _fd = parts.next();
    let _addr = parts.next();
    match parts.next() {
        Some(rest) => {
            let mut out = b"<fd> <addr> ".to_vec();
            out.extend_from_slice(rest);
            out
        }
        None => row.to_vec(),
    }
}

struct Listing {
    kind: AdminKind,
    rows: Vec<Vec<u8>>,
}

fn flush_listing(listing: Listing, out: &mut Vec<String>, terminated: bool, sort_workers: bool) {
    let mut rows = listing.rows;
    if listing.kind == AdminKind::Workers {
        rows = rows.iter().map(|r| normalise_worker_row(r)).collect();
        if terminated && sort_workers {
            rows.sort();
        }
    } else if terminated && is_sorted_listing(listing.kind) {
        rows.sort();
    }
    out.extend(rows.iter().map(|r| text_frame(r)));
    if terminated {
        out.push(text_frame(b".\n"));
    }
}

/// Normalises one transcript. In `--target` mode the caller then applies
/// [`canonicalise_handles`].
pub fn normalise(t: &Transcript) -> Normalised {
    normalise_with(t, false)
}

/// [`normalise`], with the `--target` extras when `target` is set: `workers` rows are
/// sorted (an external server's connection order cannot be compared with a fresh
/// gearmand's), the `verbose` value is hidden (it is configuration), and `show jobs`
/// rows of jobs this transcript did not create are dropped (other clients' jobs, or
/// leftovers gearmand keeps).
pub fn normalise_with(t: &Transcript, target: bool) -> Normalised {
    let sort_workers = target;
    let own_handles = issued_handles(t);
    let nconns = t.blocks.first().map(Vec::len).unwrap_or(0);
    let mut blocks: Vec<BTreeMap<usize, Vec<String>>> = vec![BTreeMap::new(); t.blocks.len()];
    for c in 0..nconns {
        let mut listing: Option<Listing> = None;
        for (b, block) in t.blocks.iter().enumerate() {
            let mut admin = t
                .admin
                .get(b)
                .and_then(|a| a.get(c))
                .cloned()
                .unwrap_or_default()
                .into_iter();
            let mut out: Vec<String> = Vec::new();
            for frame in &block[c] {
                match frame {
                    Frame::Text(line) => {
                        if let Some(mut l) = listing.take() {
                            if line.as_slice() == b".\n" {
                                flush_listing(l, &mut out, true, sort_workers);
                            } else {
                                if !(target && l.kind == AdminKind::ShowJobs)
                                    || own_job_row(line, &own_handles)
                                {
                                    l.rows.push(line.clone());
                                }
                                listing = Some(l);
                            }
                            continue;
                        }
                        let kind = admin.next().unwrap_or(AdminKind::Other);
                        if is_listing(kind)
                            && !line.starts_with(b"ERR ")
                            && line.as_slice() != b".\n"
                        {
                            let keep = !(target && kind == AdminKind::ShowJobs)
                                || own_job_row(line, &own_handles);
                            listing = Some(Listing {
                                kind,
                                rows: if keep { vec![line.clone()] } else { Vec::new() },
                            });
                            continue;
                        }
                        let shown: Vec<u8> = match kind {
                            AdminKind::Getpid
                                if line.len() > 4
                                    && line.starts_with(b"OK ")
                                    && line.ends_with(b"\n")
                                    && line[3..line.len() - 1].iter().all(u8::is_ascii_digit) =>
                            {
                                b"OK <pid>\n".to_vec()
                            }
                            AdminKind::Version
                                if line.starts_with(b"OK ")
                                    && line.ends_with(b"\n")
                                    && !line.ends_with(b"\r\n") =>
                            {
                                b"OK <version>\n".to_vec()
                            }
                            AdminKind::Verbose if target && line.starts_with(b"OK ") => {
                                b"OK <verbose>\n".to_vec()
                            }
                            _ => line.clone(),
                        };
                        out.push(text_frame(&shown));
                    }
                    other => {
                        if let Some(l) = listing.take() {
                            flush_listing(l, &mut out, false, sort_workers);
                        }
                        out.push(render_frame(other));
                    }
                }
            }
            if b + 1 == t.blocks.len() {
                if let Some(l) = listing.take() {
                    flush_listing(l, &mut out, false, sort_workers);
                }
            }
            if !out.is_empty() {
                blocks[b].insert(c + 1, out);
            }
        }
    }
    Normalised { blocks }
}

/// Is this `show jobs` row about one of `handles`?
fn own_job_row(row: &[u8], handles: &[String]) -> bool {
    let end = row.iter().position(|&b| b == b'\t').unwrap_or(row.len());
    let handle = super::wire::escape(&row[..end]);
    handles.contains(&handle)
}

/// Handles the server issued (JOB_CREATED bodies, JOB_ASSIGN* first fields), escaped
/// as in the transcript, in order of first appearance.
pub fn issued_handles(t: &Transcript) -> Vec<String> {
    let mut handles: Vec<String> = Vec::new();
    for block in &t.blocks {
        for frames in block {
            for f in frames {
                if let Frame::Packet { ptype, body, .. } = f {
                    if matches!(ptype, 8 | 11 | 31 | 40) {
                        let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                        let h = super::wire::escape(&body[..end]);
                        if !h.is_empty() && !handles.contains(&h) {
                            handles.push(h);
                        }
                    }
                }
            }
        }
    }
    handles
}

/// Renames every occurrence of `handles[i]` to `<handle#i+1>` (`--target` mode: an
/// external server has its own prefix and counter).
pub fn canonicalise_handles(handles: &[String], n: &mut Normalised) {
    // Longest first, so `X:12` is not rewritten as `<handle#…>2` by `X:1`.
    let mut order: Vec<(usize, &String)> = handles.iter().enumerate().collect();
    order.sort_by_key(|(_, h)| std::cmp::Reverse(h.len()));
    for block in &mut n.blocks {
        for frames in block.values_mut() {
            for f in frames.iter_mut() {
                for (i, h) in &order {
                    *f = replace_token(f, h, &format!("<handle#{}>", i + 1));
                }
            }
        }
    }
}

/// Replaces `needle` where it is not followed by a digit.
fn replace_token(hay: &str, needle: &str, with: &str) -> String {
    let mut out = String::with_capacity(hay.len());
    let mut rest = hay;
    while let Some(pos) = rest.find(needle) {
        let after = &rest[pos + needle.len()..];
        out.push_str(&rest[..pos]);
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str(needle);
        } else {
            out.push_str(with);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(admin: Vec<AdminKind>, lines: &[&[u8]]) -> Transcript {
        Transcript {
            blocks: vec![vec![lines
                .iter()
                .map(|l| Frame::Text(l.to_vec()))
                .collect()]],
            admin: vec![vec![admin]],
            notes: Vec::new(),
        }
    }

    #[test]
    fn sorts_status_rows_and_normalises_values() {
        let t = transcript(
            vec![
                AdminKind::Status,
                AdminKind::Getpid,
                AdminKind::Version,
                AdminKind::Workers,
            ],
            &[
                b"b\t0\t0\t1\n",
                b"a\t1\t0\t0\n",
                b".\n",
                b"OK 4242\n",
                b"OK 1.1.20+ds\n",
                b"33 127.0.0.1 - : f\n",
                b".\n",
            ],
        );
        let n = normalise(&t);
        assert_eq!(
            n.lines(),
            vec![
                "== block 1 ==",
                "c1: text \"a\\t1\\t0\\t0\\n\"",
                "c1: text \"b\\t0\\t0\\t1\\n\"",
                "c1: text \".\\n\"",
                "c1: text \"OK <pid>\\n\"",
                "c1: text \"OK <version>\\n\"",
                "c1: text \"<fd> <addr> - : f\\n\"",
                "c1: text \".\\n\"",
            ]
        );
    }

    #[test]
    fn error_reply_to_listing_is_not_a_listing() {
        let t = transcript(
            vec![AdminKind::ShowJobs, AdminKind::Other],
            &[b"ERR x\r\n", b"OK\r\n"],
        );
        assert_eq!(normalise(&t).blocks[0][&1].len(), 2);
    }

    #[test]
    fn replaces_handles_as_tokens() {
        assert_eq!(
            replace_token("A:1 A:12 A:1\\0", "A:1", "<h>"),
            "<h> A:12 <h>\\0"
        );
    }
}
