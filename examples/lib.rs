//! Nothing here: the programs are the `[[example]]` targets of this package.
//! Run one with `cargo run -p ordering-examples --example status_flow` (in memory) or
//! `--example status_audit` (against the broker of `scripts/start`).
