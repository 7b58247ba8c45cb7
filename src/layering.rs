//! Test only: the crate's module graph, read with `syn` so that every `use` form counts (a
//! `use crate::{a::{b, c}, d}` over several lines, a rename, a glob) and so do paths written in
//! code (`crate::metrics::SLOW_STORE_S`, `super::sequencer::Verdict`). Two rules:
//!
//! 1. **Layers.** A top-level module names only modules on lines above its own in `lib.rs`'s
//!    "## Layers" (through every module a path passes, re-exports included).
//! 2. **No cycles.** Between the crate's files, "uses an item defined in" is acyclic. A path is
//!    followed through re-exports (`pub use`) to the file that defines the item, so a `mod.rs` that
//!    re-exports its children's types is not a cycle with the children that use each other
//!    through it, while two files that use each other's items are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// File → the files whose items it uses.
type Edges = BTreeMap<PathBuf, BTreeSet<PathBuf>>;
/// (module a path is written in, module it passes through).
type Passes = Vec<(ModPath, ModPath)>;

/// A module path from the crate root (`["room", "core"]`); the root is empty.
type ModPath = Vec<String>;

#[derive(Default)]
struct Module {
    /// The file it is written in (inline modules share their file's).
    file: PathBuf,
    children: BTreeSet<String>,
    /// Items defined here (types, functions, traits, constants, statics, macros).
    items: BTreeSet<String>,
    /// `use` names: the local name → the absolute path it stands for (in-crate paths only).
    imports: BTreeMap<String, ModPath>,
    /// `use …::*` of in-crate modules.
    globs: Vec<ModPath>,
}

/// Every module of the crate (but `main.rs`, a crate of its own, and this file).
struct Crate {
    modules: BTreeMap<ModPath, Module>,
}

fn module_path_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    match last.as_str() {
        "lib.rs" | "mod.rs" => {}
        name => parts.push(name.trim_end_matches(".rs").to_owned()),
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The absolute form of a path written in module `at`, or `None` if it leaves the crate.
fn absolute(krate: &Crate, at: &ModPath, segs: &[String]) -> Option<ModPath> {
    let first = segs.first()?;
    let mut base: ModPath = match first.as_str() {
        "crate" => Vec::new(),
        "self" => at.clone(),
        "super" => at[..at.len().checked_sub(1)?].to_vec(),
        name => {
            let here = krate.modules.get(at)?;
            if here.children.contains(name) {
                let mut p = at.clone();
                p.push(name.to_owned());
                return Some(p.into_iter().chain(segs[1..].iter().cloned()).collect());
            }
            // A name this module imported (`use crate::store; store::X`).
            let imported = here.imports.get(name)?;
            return Some(imported.iter().chain(&segs[1..]).cloned().collect());
        }
    };
    let mut rest = &segs[1..];
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    Some(base.into_iter().chain(rest.iter().cloned()).collect())
}

impl Crate {
    fn read(src: &Path) -> Crate {
        let mut files = Vec::new();
        rust_files(src, &mut files);
        let mut krate = Crate {
            modules: BTreeMap::new(),
        };
        let mut parsed = Vec::new();
        for file in files {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if file.parent() == Some(src) && matches!(name, "main.rs" | "layering.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("readable file");
            let ast = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", file.display()));
            let at = module_path_of(src, &file);
            if let Some((child, parent)) = at.split_last() {
                let parent = krate.modules.entry(parent.to_vec()).or_default();
                parent.children.insert(child.clone());
            }
            collect_items(&mut krate, &file, &at, &ast.items);
            parsed.push((file, at, ast));
        }
        // Imports need every module's children known first (`use sibling::X`).
        for (_, at, ast) in &parsed {
            collect_imports(&mut krate, at, &ast.items);
        }
        krate
    }

    /// Follows `path` to the module that defines what it names, through re-exports; calls `pass`
    /// with every module it passes through on the way.
    fn resolve(&self, path: &[String], pass: &mut dyn FnMut(&ModPath), depth: usize) -> ModPath {
        let mut cur: ModPath = Vec::new();
        pass(&cur);
        if depth > 16 {
            return cur;
        }
        for (i, seg) in path.iter().enumerate() {
            let Some(m) = self.modules.get(&cur) else {
                return cur;
            };
            if m.children.contains(seg) {
                cur.push(seg.clone());
                pass(&cur);
                continue;
            }
            if m.items.contains(seg) {
                return cur;
            }
            if let Some(target) = m.imports.get(seg) {
                let next: ModPath = target.iter().chain(&path[i + 1..]).cloned().collect();
                return self.resolve(&next, pass, depth + 1);
            }
            for glob in &m.globs {
                let next: ModPath = glob.iter().chain(&path[i..]).cloned().collect();
                let mut probe = |_: &ModPath| {};
                let found = self.resolve(&next, &mut probe, depth + 1);
                if found != *glob || self.defines(glob, seg) {
                    return self.resolve(&next, pass, depth + 1);
                }
            }
            return cur; // a variant, an associated item, or something external
        }
        cur
    }

    fn defines(&self, module: &ModPath, name: &str) -> bool {
        self.modules.get(module).is_some_and(|m| {
            m.items.contains(name) || m.imports.contains_key(name) || m.children.contains(name)
        })
    }
}

fn item_name(item: &syn::Item) -> Option<String> {
    let ident = match item {
        syn::Item::Const(i) => &i.ident,
        syn::Item::Enum(i) => &i.ident,
        syn::Item::Fn(i) => &i.sig.ident,
        syn::Item::Static(i) => &i.ident,
        syn::Item::Struct(i) => &i.ident,
        syn::Item::Trait(i) => &i.ident,
        syn::Item::Type(i) => &i.ident,
        syn::Item::Union(i) => &i.ident,
        syn::Item::Macro(i) => i.ident.as_ref()?,
        _ => return None,
    };
    Some(ident.to_string())
}

fn collect_items(krate: &mut Crate, file: &Path, at: &ModPath, items: &[syn::Item]) {
    let module = krate.modules.entry(at.clone()).or_default();
    module.file = file.to_path_buf();
    for item in items {
        if let Some(name) = item_name(item) {
            krate
                .modules
                .get_mut(at)
                .expect("just made")
                .items
                .insert(name);
        }
        if let syn::Item::Mod(m) = item {
            let name = m.ident.to_string();
            krate
                .modules
                .get_mut(at)
                .expect("just made")
                .children
                .insert(name.clone());
            if let Some((_, inner)) = &m.content {
                let mut child = at.clone();
                child.push(name);
                collect_items(krate, file, &child, inner);
            }
        }
    }
}

/// The leaves of a `use` tree: (local name, path) pairs and glob prefixes.
fn use_leaves(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Option<String>, Vec<String>)>,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_leaves(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            let mut path = prefix.clone();
            if name == "self" {
                let local = path.last().cloned();
                out.push((local, path));
            } else {
                path.push(name.clone());
                out.push((Some(name), path));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            path.push(r.ident.to_string());
            out.push((Some(r.rename.to_string()), path));
        }
        syn::UseTree::Glob(_) => out.push((None, prefix.clone())),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_leaves(t, prefix, out);
            }
        }
    }
}

fn collect_imports(krate: &mut Crate, at: &ModPath, items: &[syn::Item]) {
    for item in items {
        match item {
            syn::Item::Use(u) => {
                let mut leaves = Vec::new();
                use_leaves(&u.tree, &mut Vec::new(), &mut leaves);
                for (name, path) in leaves {
                    let Some(abs) = absolute(krate, at, &path) else {
                        continue;
                    };
                    let m = krate.modules.get_mut(at).expect("collected");
                    match name {
                        Some(name) => {
                            m.imports.insert(name, abs);
                        }
                        None => m.globs.push(abs),
                    }
                }
            }
            syn::Item::Mod(m) => {
                if let Some((_, inner)) = &m.content {
                    let mut child = at.clone();
                    child.push(m.ident.to_string());
                    collect_imports(krate, &child, inner);
                }
            }
            _ => {}
        }
    }
}

/// Every in-crate path a file writes, with the module it is written in.
struct Paths<'a> {
    krate: &'a Crate,
    at: ModPath,
    found: Vec<(ModPath, ModPath)>,
}

impl Paths<'_> {
    fn note(&mut self, segs: Vec<String>) {
        if let Some(abs) = absolute(self.krate, &self.at, &segs) {
            self.found.push((self.at.clone(), abs));
        }
    }
}

impl<'ast> Visit<'ast> for Paths<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.at.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.at.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut leaves = Vec::new();
        use_leaves(&u.tree, &mut Vec::new(), &mut leaves);
        for (_, path) in leaves {
            self.note(path);
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if segs.len() > 1 {
            self.note(segs);
        }
        syn::visit::visit_path(self, p);
    }
}

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

/// (file → files it uses items of), and every (module, module passed through) for the layers.
fn graph(src: &Path) -> (Edges, Passes) {
    let krate = Crate::read(src);
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    let mut passes = Vec::new();
    let mut files: Vec<PathBuf> = krate.modules.values().map(|m| m.file.clone()).collect();
    files.sort();
    files.dedup();
    for file in files {
        if file.as_os_str().is_empty() {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable file");
        let ast = syn::parse_file(&text).expect("parsed before");
        let mut paths = Paths {
            krate: &krate,
            at: module_path_of(src, &file),
            found: Vec::new(),
        };
        paths.visit_file(&ast);
        for (at, abs) in paths.found {
            let mut pass = |m: &ModPath| passes.push((at.clone(), m.clone()));
            let target = krate.resolve(&abs, &mut pass, 0);
            let Some(to) = krate.modules.get(&target).map(|m| m.file.clone()) else {
                continue;
            };
            if to != file && !to.as_os_str().is_empty() {
                edges.entry(file.clone()).or_default().insert(to);
            }
        }
    }
    (edges, passes)
}

/// The cycles of a directed graph: each strongly connected component of more than one node.
fn cycles(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    // Kosaraju: order by finish time, then collect components on the reversed graph.
    let nodes: BTreeSet<&PathBuf> = edges
        .iter()
        .flat_map(|(a, bs)| std::iter::once(a).chain(bs))
        .collect();
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for &start in &nodes {
        if seen.contains(start) {
            continue;
        }
        let mut stack = vec![(start, false)];
        while let Some((n, done)) = stack.pop() {
            if done {
                order.push(n);
                continue;
            }
            if !seen.insert(n) {
                continue;
            }
            stack.push((n, true));
            for next in edges.get(n).into_iter().flatten() {
                if !seen.contains(next) {
                    stack.push((next, false));
                }
            }
        }
    }
    let mut reverse: HashMap<&PathBuf, Vec<&PathBuf>> = HashMap::new();
    for (a, bs) in edges {
        for b in bs {
            reverse.entry(b).or_default().push(a);
        }
    }
    let mut assigned = BTreeSet::new();
    let mut out = Vec::new();
    for &n in order.iter().rev() {
        if assigned.contains(n) {
            continue;
        }
        let mut component = Vec::new();
        let mut stack = vec![n];
        while let Some(m) = stack.pop() {
            if !assigned.insert(m) {
                continue;
            }
            component.push(m.clone());
            stack.extend(reverse.get(m).into_iter().flatten().copied());
        }
        if component.len() > 1 {
            component.sort();
            out.push(component);
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_module_uses_only_the_layers_above_it() {
    let layers = layers();
    let (_, passes) = graph(&src());
    let mut wrong = BTreeSet::new();
    for (from, through) in passes {
        let (Some(a), Some(b)) = (from.first(), through.first()) else {
            continue; // the crate root (lib.rs: the version constants)
        };
        if a == b {
            continue;
        }
        match (layers.get(a), layers.get(b)) {
            (Some(mine), Some(theirs)) if theirs < mine => {}
            (Some(mine), Some(theirs)) => {
                wrong.insert(format!(
                    "`{a}` (line {mine}) uses `{b}` (line {theirs}): only lines above"
                ));
            }
            (None, _) => {
                wrong.insert(format!("`{a}` is not in lib.rs's ## Layers"));
            }
            (_, None) => {
                wrong.insert(format!("`{a}` uses `{b}`, which has no layer"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "layering broken:\n{}",
        wrong.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn no_two_files_use_each_other_even_through_others() {
    let (edges, _) = graph(&src());
    let root = src();
    let found: Vec<String> = cycles(&edges)
        .into_iter()
        .map(|c| {
            c.iter()
                .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
                .collect::<Vec<_>>()
                .join(" ⇄ ")
        })
        .collect();
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
}

#[test]
fn the_layers_name_every_module() {
    let layers = layers();
    let krate = Crate::read(&src());
    for module in krate.modules.keys().filter(|m| m.len() == 1) {
        assert!(
            layers.contains_key(&module[0]),
            "{} has no layer",
            module[0]
        );
    }
}

#[test]
fn the_checker_sees_multi_line_groups_renames_and_cycles() {
    let dir = std::env::temp_dir().join(format!("chorus-layering-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("a")).expect("temp dir");
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).expect("write");
    write("lib.rs", "pub mod a;\npub mod b;\n");
    write("a/mod.rs", "mod x;\nmod y;\npub use x::X;\npub use y::Y;\n");
    // y uses x through the parent's re-export: no cycle between a/mod.rs and its children.
    write("a/x.rs", "pub struct X;\n");
    write("a/y.rs", "use super::X;\npub struct Y(X);\n");
    // b uses a over several lines with a rename, and names an item in code.
    write(
        "b.rs",
        "use crate::{\n    a::{\n        Y as Why,\n    },\n};\npub struct B(Why);\npub fn f() { let _ = crate::a::X; }\n",
    );
    let (edges, passes) = graph(&dir);
    let file = |p: &str| dir.join(p);
    assert!(edges[&file("b.rs")].contains(&file("a/y.rs")), "{edges:?}");
    assert!(edges[&file("b.rs")].contains(&file("a/x.rs")), "{edges:?}");
    assert!(passes.iter().any(|(f, t)| f == &["b"] && t == &["a"]));
    assert!(cycles(&edges).is_empty(), "{:?}", cycles(&edges));
    // x now uses y as well: a cycle, found through the parent's re-export.
    write(
        "a/x.rs",
        "use crate::a::Y;\npub struct X;\npub fn g(_: Y) {}\n",
    );
    let (edges, _) = graph(&dir);
    assert_eq!(cycles(&edges), vec![vec![file("a/x.rs"), file("a/y.rs")]]);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
