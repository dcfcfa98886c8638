//! Differential conformance suite: scripted exchanges run byte for byte against a
//! fresh gearmand and a fresh gearboxd (or an external server), compared after a
//! minimal normalisation.
//!
//! * [`case`]: the case DSL ([`Case`]), run by a [`session::Session`].
//! * [`cases`]: the cases themselves, by category, and [`cases::KNOWN_BUGS`].
//! * [`runner`]: servers, verdicts, summary.
//!
//! Used by `tests/differential.rs` and the `protocol-diff` binary.

pub mod case;
pub mod cases;
pub mod normalise;
pub mod runner;
pub mod session;
pub mod wire;

pub use case::Case;
pub use runner::{run_case, run_cases, summary, Mode, Outcome, Verdict};
