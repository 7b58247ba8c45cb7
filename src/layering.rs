//! Test only: the layering written in `lib.rs` ("## Layers") holds. Every `crate::…` path in a
//! module's source (comments left out) must name a module on a line above the module's own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers as `lib.rs` writes them: module → line number.
fn layers() -> BTreeMap<String, usize> {
    let lib = include_str!("lib.rs");
    let section = lib
        .split("//! ## Layers")
        .nth(1)
        .and_then(|rest| rest.split("//! ## ").next())
        .expect("lib.rs has a ## Layers section");
    let mut layers = BTreeMap::new();
    for line in section.lines() {
        let text = line.trim_start_matches("//!").trim();
        let Some((n, rest)) = text.split_once(". ") else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else { continue };
        let names = rest.split(':').next().unwrap_or_default();
        for name in names.split(',') {
            layers.insert(name.trim().trim_matches('`').to_owned(), n);
        }
    }
    layers
}

/// Top-level module → the top-level modules its files name through `crate::`.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let top = rel
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .unwrap_or_default()
                .trim_end_matches(".rs")
                .to_owned();
            if matches!(top.as_str(), "lib" | "main" | "layering") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("readable file");
            let used = out.entry(top.clone()).or_default();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or_default();
                for part in code.split("crate::").skip(1) {
                    let names: Vec<&str> = match part.strip_prefix('{') {
                        Some(group) => group
                            .split('}')
                            .next()
                            .unwrap_or_default()
                            .split(',')
                            .collect(),
                        None => vec![part],
                    };
                    for name in names {
                        let name: String = name
                            .trim()
                            .chars()
                            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                            .collect();
                        if !name.is_empty() && name != top && name != "self" {
                            used.insert(name);
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_module_uses_only_the_layers_above_it() {
    let layers = layers();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for (module, used) in imports(&src) {
        let Some(&mine) = layers.get(&module) else {
            wrong.push(format!("`{module}` is not in lib.rs's ## Layers"));
            continue;
        };
        for dep in used {
            match layers.get(&dep) {
                Some(&theirs) if theirs < mine => {}
                Some(&theirs) => wrong.push(format!(
                    "`{module}` (line {mine}) uses `{dep}` (line {theirs}): only lines above"
                )),
                None => wrong.push(format!("`{module}` uses `{dep}`, which has no layer")),
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn the_layers_name_every_module() {
    let layers = layers();
    for module in [
        "ids", "domain", "store", "bridge", "room", "session", "http", "node",
    ] {
        assert!(layers.contains_key(module), "{module} has no layer");
    }
}
