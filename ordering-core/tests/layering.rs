//! The engine never imports the order flow: `src/order/` is an application of the engine, and
//! a newcomer reading the engine should meet no order in it (ARCHITECTURE.md).

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_engine_module_imports_the_order_flow() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let engine: Vec<_> = files
        .iter()
        .filter(|f| !f.starts_with(src.join("order")))
        .collect();
    assert!(engine.len() >= 10, "engine modules found: {engine:?}");
    let offenders: Vec<_> = engine
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).expect("a source file");
            // `pub mod order;` in lib.rs declares it; nothing else may name it.
            text.lines().any(|line| {
                let line = line.trim();
                !line.starts_with("//") && line != "pub mod order;" && line.contains("order::")
            })
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "engine modules that import the order flow: {offenders:?}"
    );
}
