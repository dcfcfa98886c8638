//! Shared bits of the gearbox examples (see README.md). The programs are in
//! `src/bin/`.
