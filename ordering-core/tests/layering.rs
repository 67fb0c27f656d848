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

/// The engine's ground floor is layered: no module, through the modules it uses, uses itself
/// (`use crate::x` or `crate::x::` outside a file's tests), so each can be read knowing only
/// those below it.
#[test]
fn the_engine_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = [
        "cause",
        "dead_letter",
        "handler",
        "header",
        "position",
        "record",
        "redrive",
        "retry",
        "sink",
        "source",
        "storage",
        "time",
        "trace",
    ];
    let uses = |module: &str| -> Vec<&str> {
        let text = std::fs::read_to_string(src.join(format!("{module}.rs"))).expect("a module");
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        modules
            .iter()
            .copied()
            .filter(|other| *other != module && code.contains(&format!("crate::{other}")))
            .collect()
    };
    // Depth-first search for a path back to where it started.
    fn reaches<'a>(
        from: &'a str,
        to: &str,
        uses: &dyn Fn(&str) -> Vec<&'a str>,
        seen: &mut Vec<&'a str>,
    ) -> bool {
        for next in uses(from) {
            if next == to {
                return true;
            }
            if !seen.contains(&next) {
                seen.push(next);
                if reaches(next, to, uses, seen) {
                    return true;
                }
            }
        }
        false
    }
    let cyclic: Vec<&str> = modules
        .iter()
        .copied()
        .filter(|m| reaches(m, m, &uses, &mut Vec::new()))
        .collect();
    assert!(cyclic.is_empty(), "modules on a cycle: {cyclic:?}");
}
