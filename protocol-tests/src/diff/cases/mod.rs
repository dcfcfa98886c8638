//! The differential cases, one module per category. Each case runs unchanged against
//! gearmand and gearboxd; see `protocol-tests/README.md` for the DSL.

use super::case::Case;

mod admin;
mod cancel;
mod coalesce;
mod epoch;
mod exceptions;
mod interleave;
mod malformed;
mod maxqueue;
mod packets;
mod reduce;
mod retries;
mod scheduling;
mod status;
mod timeouts;
mod wakeup;

/// Cases that fail because of a gearboxd bug not covered by docs/compat.md. Each still
/// asserts gearmand's behaviour; the test prints them but does not fail on them.
/// (case name, one line of explanation)
pub const KNOWN_BUGS: &[(&str, &str)] = &[];

/// Every case, in a stable order. Panics on duplicate names.
pub fn all_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(packets::cases());
    cases.extend(admin::cases());
    cases.extend(coalesce::cases());
    cases.extend(scheduling::cases());
    cases.extend(wakeup::cases());
    cases.extend(retries::cases());
    cases.extend(timeouts::cases());
    cases.extend(maxqueue::cases());
    cases.extend(cancel::cases());
    cases.extend(epoch::cases());
    cases.extend(reduce::cases());
    cases.extend(exceptions::cases());
    cases.extend(status::cases());
    cases.extend(interleave::cases());
    cases.extend(malformed::cases());
    let mut names = std::collections::BTreeSet::new();
    for c in &cases {
        assert!(
            names.insert(c.name.clone()),
            "duplicate case name {}",
            c.name
        );
    }
    cases
}

/// Shorthand for [`Case::new`].
pub(crate) fn case(name: &str, category: &'static str) -> Case {
    Case::new(name, category)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::case::Step;

    /// Within one settle block, a step on connection B that reads server state (an
    /// admin line, a GRAB, a status query) must not follow a step on another
    /// connection A that changes it: the server may process them in either order.
    #[test]
    fn no_cross_connection_races() {
        let mut problems = Vec::new();
        for case in all_cases() {
            let mut writers: Vec<usize> = Vec::new();
            for step in &case.steps {
                let (conn, reads, writes) = match step {
                    Step::Settle { .. } | Step::Sleep { .. } => {
                        writers.clear();
                        continue;
                    }
                    Step::Line { conn, lines, .. } => {
                        let writes = lines.iter().any(|l| {
                            let word = l.split(' ').next().unwrap_or("").to_ascii_lowercase();
                            matches!(
                                word.as_str(),
                                "cancel" | "create" | "drop" | "maxqueue" | "shutdown"
                            )
                        });
                        (*conn, true, writes)
                    }
                    Step::Send { conn, ptype, .. } => {
                        let reads = matches!(ptype, 9 | 15 | 30 | 39 | 41 | 4);
                        let writes = !matches!(ptype, 15 | 16 | 26 | 41);
                        (*conn, reads, writes)
                    }
                    Step::Batch { conn, .. } | Step::Raw { conn, .. } => (*conn, true, true),
                    Step::Close { conn } => (*conn, false, true),
                    Step::Connect { .. } => continue,
                };
                if reads && writers.iter().any(|&w| w != conn) {
                    problems.push(format!("{}: {}", case.name, step.describe()));
                }
                if writes && !writers.contains(&conn) {
                    writers.push(conn);
                }
            }
        }
        assert!(problems.is_empty(), "racy steps:\n{}", problems.join("\n"));
    }

    /// Every packet type 1..=42 is sent by at least one case.
    #[test]
    fn every_packet_type_is_sent() {
        let mut sent = std::collections::BTreeSet::new();
        for case in all_cases() {
            for step in &case.steps {
                match step {
                    Step::Send { ptype, .. } => {
                        sent.insert(*ptype);
                    }
                    Step::Batch { items, .. } => {
                        for i in items {
                            if let crate::diff::case::BatchItem::Packet { ptype, .. } = i {
                                sent.insert(*ptype);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let missing: Vec<u32> = (1..=42).filter(|t| !sent.contains(t)).collect();
        assert!(missing.is_empty(), "packet types never sent: {missing:?}");
    }

    #[test]
    fn at_least_150_cases_with_unique_names() {
        assert!(all_cases().len() >= 150);
    }
}
