//! Nothing here: the programs are the `[[example]]` targets of this package.
//! Run one with `cargo run -p ordering-examples --example status_flow`.
