//! Differential conformance: every case of `protocol_tests::diff::cases` runs against
//! a fresh gearmand and a fresh gearboxd, and the normalised transcripts must be
//! identical, or differ exactly as declared under a docs/compat.md id. Cases listed in
//! `KNOWN_BUGS` are reported but do not fail the test.
//!
//! Run one case with both transcripts shown:
//! `cargo run -p protocol-tests --bin protocol-diff -- --case NAME --show`.

use std::time::Instant;

use protocol_tests::diff::case::Step;
use protocol_tests::diff::cases::{all_cases, KNOWN_BUGS};
use protocol_tests::diff::runner::{compat_id_exists, default_jobs, describe_outcome};
use protocol_tests::diff::{run_cases, summary, Mode, Verdict};

#[test]
fn every_case_against_gearmand_and_gearboxd() {
    let cases = all_cases();
    assert!(cases.len() >= 150, "only {} cases", cases.len());
    let started = Instant::now();
    let outcomes = run_cases(&cases, &Mode::Gearboxd, default_jobs(), &|_| {});
    let mut report = String::new();
    for o in &outcomes {
        if matches!(o.verdict, Verdict::Failed(_) | Verdict::KnownBug(_)) {
            report.push_str(&describe_outcome(o));
            report.push('\n');
        }
    }
    let summary = summary(&outcomes, started.elapsed());
    eprintln!("{report}{summary}");
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| matches!(o.verdict, Verdict::Failed(_)))
        .map(|o| o.name.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "{} case(s) failed: {}\n(transcripts and diffs above)\n{summary}",
        failed.len(),
        failed.join(", ")
    );
}

/// Cheap static checks, so a bad declaration fails fast and clearly.
#[test]
fn declarations_are_consistent() {
    let cases = all_cases();
    for c in &cases {
        if let Some(dev) = &c.deviation {
            assert!(
                compat_id_exists(&dev.id),
                "{}: {} is not an id of docs/compat.md",
                c.name,
                dev.id
            );
            assert!(
                !dev.overrides.is_empty(),
                "{}: deviation without expectation",
                c.name
            );
            for o in &dev.overrides {
                assert!(o.block <= c.blocks(), "{}: no block {}", c.name, o.block);
                assert!(
                    o.conn >= 1 && o.conn <= c.connections(),
                    "{}: no connection {}",
                    c.name,
                    o.conn
                );
            }
        }
        assert!(
            c.steps.iter().any(|s| matches!(s, Step::Connect { .. })),
            "{}: opens no connection",
            c.name
        );
    }
    for (name, why) in KNOWN_BUGS {
        assert!(
            cases.iter().any(|c| c.name == *name),
            "KNOWN_BUGS names {name}, which is not a case"
        );
        assert!(
            !why.is_empty(),
            "KNOWN_BUGS entry {name} needs an explanation"
        );
    }
}
