//! The import graph of a crate's modules, read from its sources, so that a test can hold every
//! crate of the workspace to a graph without loops: a module that needs something from one that
//! needs it back belongs with it, or the shared thing belongs in a third module.
//!
//! A module's file imports another when it names a path into it: `crate::a::b` (in a `use` or
//! inline), `super::…`, or, in the crate root, a path through one of its own modules (`a::f()`).
//! A child that takes something from its parent imports it too (the parent declares the child,
//! and usually uses it). A `mod a;` declaration is no import, and a file's tests (from its
//! `#[cfg(test)]` on, where `super` is the file itself) are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};

/// Each module (`crate`, `crate::a`, `crate::a::b`) and the modules it imports.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// The graph of the crate whose root (`lib.rs` or `main.rs`) sits in `src`.
pub fn read(src: &Path) -> Result<Graph> {
    let mut files = Vec::new();
    collect(src, src, &mut files)?;
    let modules: BTreeSet<String> = files.iter().map(|(module, _)| module.clone()).collect();
    let mut graph = Graph::new();
    for (module, text) in &files {
        let imports = imports(module, text, &modules);
        graph.insert(module.clone(), imports);
    }
    Ok(graph)
}

/// Every `.rs` file below `dir`, as its module path and its text.
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|entry| entry.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files)?;
            continue;
        }
        if path.extension().is_none_or(|extension| extension != "rs") {
            continue;
        }
        let relative = path.strip_prefix(root)?.with_extension("");
        let mut parts: Vec<String> =
            relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
        if parts.len() == 1 && matches!(parts[0].as_str(), "lib" | "main") {
            parts.clear();
        } else if parts.last().is_some_and(|last| last == "mod") {
            parts.pop();
        } else if parts.first().is_some_and(|first| first == "bin") {
            // A binary of its own: a crate apart, not a module of this one.
            continue;
        }
        let module = std::iter::once("crate".to_owned()).chain(parts).collect::<Vec<_>>();
        let text = std::fs::read_to_string(&path)?;
        files.push((module.join("::"), text));
    }
    Ok(())
}

/// The modules of `modules` other than itself that `module`'s text names a path into.
fn imports(module: &str, text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let is_root = module == "crate";
    let mut found = BTreeSet::new();
    for path in paths(code) {
        let absolute = if path.starts_with("crate::") {
            path
        } else if path.starts_with("super::") {
            let mut base = module;
            let mut rest = path.as_str();
            while let Some(after) = rest.strip_prefix("super::") {
                base = base.rsplit_once("::").map_or(base, |(parent, _)| parent);
                rest = after;
            }
            format!("{base}::{rest}")
        } else if is_root {
            format!("crate::{path}")
        } else {
            continue;
        };
        // The longest module the path runs through.
        let mut target = absolute.as_str();
        loop {
            if modules.contains(target) {
                break;
            }
            match target.rsplit_once("::") {
                Some((shorter, _)) => target = shorter,
                None => break,
            }
        }
        if modules.contains(target) && target != module {
            found.insert(target.to_owned());
        }
    }
    found
}

/// Every path in `text` with at least one `::`, its `use` groups expanded (`a::{b, c::d}` gives
/// `a::b` and `a::c::d`). Comments and string contents are not told apart from code: a path
/// spelt out in a doc comment counts, which errs on the side of a loop.
fn paths(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for statement in text.split(';') {
        let statement = statement.trim_start();
        if let Some(tree) =
            statement.strip_prefix("use ").or_else(|| statement.strip_prefix("pub use "))
        {
            expand("", tree, &mut paths);
        }
    }
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    for token in text.split(|c: char| !word(c)) {
        if token.contains("::") && !token.starts_with(':') {
            paths.push(token.trim_end_matches(':').to_owned());
        }
    }
    paths
}

/// Appends the paths of a `use` tree under `prefix`, renames (`as name`) dropped.
fn expand(prefix: &str, tree: &str, paths: &mut Vec<String>) {
    let mut words = tree.split_whitespace();
    let mut kept = String::new();
    while let Some(word) = words.next() {
        if word == "as" {
            let renamed = words.next().unwrap_or_default();
            kept.push_str(renamed.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_'));
        } else {
            kept.push_str(word);
        }
    }
    expand_tree(prefix, &kept, paths);
}

fn expand_tree(prefix: &str, tree: &str, paths: &mut Vec<String>) {
    let Some(open) = tree.find('{') else {
        paths.push(format!("{prefix}{tree}"));
        return;
    };
    let head = &tree[..open];
    let body = tree[open + 1..].strip_suffix('}').unwrap_or(&tree[open + 1..]);
    let mut depth = 0;
    let mut start = 0;
    for (index, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand_tree(&format!("{prefix}{head}"), &body[start..index], paths);
                start = index + 1;
            }
            _ => {}
        }
    }
    if start < body.len() {
        expand_tree(&format!("{prefix}{head}"), &body[start..], paths);
    }
}

/// A loop of the graph, if it has one, as the modules along it (the first repeated last).
pub fn find_loop(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        graph: &'a Graph,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|n| *n == node).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|n| n.to_string()).collect();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node, Mark::Open);
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph.keys().find_map(|node| visit(node, graph, &mut marks, &mut Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::repo_root;

    /// The graph of a crate made of `files`, written under a scratch folder named `name`.
    fn graph_of(name: &str, files: &[(&str, &str)]) -> Graph {
        let dir = std::env::temp_dir().join(format!("module-graph-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let graph = read(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        graph
    }

    #[test]
    fn imports_are_read_from_use_groups_inline_paths_and_the_roots_calls() {
        let graph = graph_of(
            "groups",
            &[
                ("lib.rs", "mod a;\nmod b;\nmod c;\nfn f() { a::go(); }"),
                ("a.rs", "use crate::{b::{Thing, other}, c as see};"),
                ("b.rs", "fn g() -> crate::c::deep::Type { todo!() }"),
                ("c/mod.rs", "pub mod deep;"),
                ("c/deep.rs", "use super::Shared;"),
            ],
        );
        let imports = |module: &str| graph[module].iter().cloned().collect::<Vec<_>>();
        assert_eq!(imports("crate"), ["crate::a"]);
        assert_eq!(imports("crate::a"), ["crate::b", "crate::c"]);
        assert_eq!(imports("crate::b"), ["crate::c::deep"]);
        assert!(imports("crate::c").is_empty());
        assert_eq!(imports("crate::c::deep"), ["crate::c"]);
        assert_eq!(find_loop(&graph), None);
    }

    #[test]
    fn a_loop_is_found_with_the_modules_along_it() {
        let graph = graph_of(
            "pair",
            &[
                ("main.rs", "mod a;\nmod b;\nfn main() { a::run(); }"),
                ("a.rs", "use crate::b::helper;"),
                ("b.rs", "pub fn helper() { crate::a::run() }"),
            ],
        );
        let cycle = find_loop(&graph).expect("a loop");
        assert_eq!(cycle.first(), cycle.last());
        assert!(cycle.contains(&"crate::a".to_owned()) && cycle.contains(&"crate::b".to_owned()));

        let graph = graph_of(
            "root",
            &[("main.rs", "mod a;\nfn main() { a::run(); }"), ("a.rs", "use crate::helper;")],
        );
        assert_eq!(
            find_loop(&graph),
            Some(vec!["crate".into(), "crate::a".into(), "crate".into()])
        );
    }

    /// No crate of the workspace has an import loop.
    #[test]
    fn no_crate_has_an_import_loop() {
        for src in ["src", "xtask/src", "gatling/replay/src"] {
            let graph = read(&repo_root().join(src)).unwrap();
            assert!(graph.len() > 3, "{src}: only {} modules read", graph.len());
            if let Some(cycle) = find_loop(&graph) {
                panic!("{src} has an import loop: {}", cycle.join(" -> "));
            }
        }
    }

    /// The service's files are split along their concerns before any grows past 450 lines.
    #[test]
    fn no_file_of_the_service_is_over_450_lines() {
        let mut files = Vec::new();
        collect(&repo_root().join("src"), &repo_root().join("src"), &mut files).unwrap();
        assert!(files.len() > 10, "only {} files read", files.len());
        let long: Vec<(String, usize)> = files
            .into_iter()
            .map(|(module, text)| (module, text.lines().count()))
            .filter(|(_, lines)| *lines > 450)
            .collect();
        assert!(long.is_empty(), "over 450 lines: {long:?}");
    }

    /// Each import from a module of `layer` (the module or one below it) into a module that is
    /// under none of `allowed`, as (importer, imported).
    fn imports_outside(graph: &Graph, layer: &str, allowed: &[&str]) -> Vec<(String, String)> {
        let under = |module: &str, root: &str| {
            module == root || module.strip_prefix(root).is_some_and(|rest| rest.starts_with("::"))
        };
        graph
            .iter()
            .filter(|(module, _)| under(module, layer))
            .flat_map(|(module, imports)| {
                imports
                    .iter()
                    .filter(|import| !allowed.iter().any(|root| under(import, root)))
                    .map(move |import| (module.clone(), import.clone()))
            })
            .collect()
    }

    #[test]
    fn an_import_past_a_layers_seam_is_found() {
        let graph = graph_of(
            "layers",
            &[
                ("lib.rs", "mod http;\nmod people;\nmod store;\nmod https;"),
                ("http/mod.rs", "mod routes;\nuse crate::people::People;"),
                ("http/routes.rs", "fn f(error: crate::store::StoreError) {}"),
                ("people.rs", "use crate::store::{Store, StoreError};"),
                ("store.rs", ""),
                ("https.rs", "use crate::store::Store;"),
            ],
        );
        let allowed = ["crate::http", "crate::people"];
        assert_eq!(
            imports_outside(&graph, "crate::http", &allowed),
            [("crate::http::routes".to_owned(), "crate::store".to_owned())],
            "a submodule's import counts, a module whose name merely starts alike does not"
        );
        assert!(imports_outside(&graph, "crate::people", &["crate::store"]).is_empty());
    }

    /// The service's HTTP layer reaches the database, the mirror and the writers only through
    /// `people`, and its metrics are a sink that knows none of the parts it reports on.
    #[test]
    fn the_service_keeps_its_layers() {
        let graph = read(&repo_root().join("src")).unwrap();
        for module in ["crate::http", "crate::people", "crate::metrics"] {
            assert!(graph.contains_key(module), "no module {module} in src");
        }
        let past_http = imports_outside(
            &graph,
            "crate::http",
            &["crate::http", "crate::people", "crate::domain", "crate::config", "crate::metrics"],
        );
        // store, index, mirror and writer among what it must not import.
        assert!(
            past_http.is_empty(),
            "the HTTP layer reaches the store, the index, the mirror and the writers only \
             through crate::people, yet imports {past_http:?}"
        );
        let past_metrics = imports_outside(
            &graph,
            "crate::metrics",
            &["crate::metrics", "crate::config", "crate::domain"],
        );
        assert!(
            past_metrics.is_empty(),
            "crate::metrics must import no part it reports on: {past_metrics:?}"
        );
    }
}
