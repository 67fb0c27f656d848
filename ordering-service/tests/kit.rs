//! The kit is a library of its own: a service built on it compiles nothing of the order flow
//! of this repository's shells, and links no SQLite (a service may bring its own, of any
//! version).

use std::process::Command;

#[test]
fn a_service_on_the_kit_compiles_nothing_of_the_order_flow_and_no_sqlite() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = Command::new(cargo)
        .args(["tree", "--manifest-path", manifest, "-e", "features,normal"])
        .args(["--prefix", "none", "--offline"])
        .output()
        .expect("running cargo tree");
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        tree.contains("ordering-kafka"),
        "the tree is listed: {tree}"
    );
    let order: Vec<&str> = tree
        .lines()
        .filter(|l| l.contains("feature \"order\""))
        .collect();
    assert!(order.is_empty(), "the order flow is compiled: {order:?}");
    for crate_name in ["rusqlite", "libsqlite3-sys", "ordering-store"] {
        assert!(
            !tree.lines().any(|l| l.starts_with(crate_name)),
            "{crate_name} is linked"
        );
    }
}
