//! Keeps `docs/architecture.md` true: the crates form layers and a crate depends only on
//! crates of lower layers; the alert engine builds without the service's I/O crates; no module
//! of a crate imports one that imports it back; no source file has over 1,000 lines of code
//! before its tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The layers, bottom first: a crate may depend on crates of lower layers only. The same
/// table is in `docs/architecture.md`.
const LAYERS: [&[&str]; 6] = [
    &["ioc-schemas"],
    &[
        "ioc-ingest",
        "ioc-dataflow",
        "ioc-store",
        "ioc-alert-engine",
        "ioc-simulator",
    ],
    &["ioc-alerts"],
    &["ioc-dashboard-api"],
    &["iocd"],
    &["ioc-benches"],
];

/// Crates the pure alert engine must build without (they belong to the alert service).
const NOT_IN_THE_ENGINE: [&str; 4] = ["axum", "reqwest", "redb", "tokio"];

const MAX_CODE_LINES: usize = 1_000;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("iocd sits in the workspace")
        .to_path_buf()
}

/// The workspace's crates and their declared dependencies.
fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--no-deps",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata is JSON")
}

fn layer_of(name: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&name))
}

#[test]
fn every_crate_depends_only_on_lower_layers() {
    let meta = metadata();
    let packages = meta["packages"].as_array().expect("packages");
    let mut seen = BTreeSet::new();
    let mut wrong = Vec::new();
    for package in packages {
        let name = package["name"].as_str().expect("name");
        let Some(layer) = layer_of(name) else {
            panic!("crate {name} is in no layer: add it to LAYERS and docs/architecture.md");
        };
        seen.insert(name.to_owned());
        for dep in package["dependencies"].as_array().expect("dependencies") {
            let dep_name = dep["name"].as_str().expect("dependency name");
            if dep["path"].is_null() {
                continue; // from crates.io
            }
            let kind = dep["kind"].as_str().unwrap_or("normal");
            match layer_of(dep_name) {
                Some(l) if l < layer => {}
                // A test may use a crate of its own layer or below (the simulator's fleet).
                Some(l) if kind == "dev" && l <= layer && dep_name != name => {}
                _ => wrong.push(format!("{name} ({kind}) -> {dep_name}")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies against the layers: {wrong:?}"
    );
    let listed: BTreeSet<String> = LAYERS
        .iter()
        .flat_map(|l| l.iter())
        .map(|s| s.to_string())
        .collect();
    assert_eq!(seen, listed, "LAYERS lists exactly the workspace's crates");
}

#[test]
fn the_alert_engine_builds_without_the_services_io_crates() {
    // `cargo tree -p` resolves the features the engine itself asks for (the workspace-wide
    // resolve of `cargo metadata` would add the `http` feature other crates ask of schemas).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "ioc-alert-engine",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let names: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        names.contains("ioc-schemas"),
        "cargo tree lists the engine's dependencies: {text}"
    );
    let found: Vec<&str> = NOT_IN_THE_ENGINE
        .into_iter()
        .filter(|n| names.contains(n))
        .collect();
    assert!(found.is_empty(), "ioc-alert-engine depends on {found:?}");
}

/// The Rust sources of each crate's `src`, by crate folder.
fn crate_sources() -> BTreeMap<String, Vec<PathBuf>> {
    let root = workspace_root();
    let meta = metadata();
    let mut out = BTreeMap::new();
    for package in meta["packages"].as_array().expect("packages") {
        let manifest = PathBuf::from(package["manifest_path"].as_str().expect("manifest"));
        let dir = manifest.parent().expect("crate folder").to_path_buf();
        let mut files = Vec::new();
        collect_rs(&dir.join("src"), &mut files);
        let name = dir
            .strip_prefix(&root)
            .unwrap_or(&dir)
            .display()
            .to_string();
        out.insert(name, files);
    }
    out
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's lines before its unit tests.
fn code_of(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|line| line.trim() != "#[cfg(test)]")
        .collect()
}

/// The module path of a source file under `src` (`a/b.rs` and `a/b/mod.rs` are `a::b`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

#[test]
fn no_source_file_is_over_a_thousand_lines_of_code() {
    let mut long = Vec::new();
    for files in crate_sources().values() {
        for file in files {
            let text = std::fs::read_to_string(file).expect("readable");
            let n = code_of(&text).len();
            if n > MAX_CODE_LINES {
                long.push(format!("{}: {n}", file.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_CODE_LINES} lines of code: {long:?}"
    );
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = workspace_root();
    let mut circles = Vec::new();
    for (krate, files) in crate_sources() {
        let src = root.join(&krate).join("src");
        let modules: BTreeMap<String, String> = files
            .iter()
            .map(|f| {
                (
                    module_of(&src, f),
                    std::fs::read_to_string(f).expect("readable"),
                )
            })
            .collect();
        let known: BTreeSet<&str> = modules.keys().map(String::as_str).collect();
        // Module -> the modules its code names through `crate::` paths (the longest known
        // prefix of each path), leaving out its own ancestors and descendants (a parent
        // re-exporting its children is not a circle).
        let mut uses: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (module, text) in &modules {
            // Comments (doc links among them) name modules without using them.
            let code = code_of(text)
                .into_iter()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let mut targets = BTreeSet::new();
            let mut paths = Vec::new();
            for (i, _) in code.match_indices("crate::") {
                if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                    continue; // `ioc_crate::`, not `crate::`
                }
                expand_paths("", &code[i + "crate::".len()..], &mut paths);
            }
            for path in paths {
                let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
                let target = (1..=segments.len())
                    .rev()
                    .map(|n| segments[..n].join("::"))
                    .find(|p| known.contains(p.as_str()));
                if let Some(target) = target {
                    let related = target == *module
                        || module.starts_with(&format!("{target}::"))
                        || target.starts_with(&format!("{module}::"))
                        || module.is_empty();
                    if !related {
                        targets.insert(known.get(target.as_str()).copied().expect("known"));
                    }
                }
            }
            uses.insert(known.get(module.as_str()).copied().expect("known"), targets);
        }
        for (a, targets) in &uses {
            for b in targets {
                if a < b && uses.get(b).is_some_and(|t| t.contains(a)) {
                    circles.push(format!("{krate}: {a} <-> {b}"));
                }
            }
        }
        for cycle in longer_cycles(&uses) {
            circles.push(format!("{krate}: {}", cycle.join(" -> ")));
        }
    }
    assert!(circles.is_empty(), "import circles: {circles:?}");
}

/// The paths a `use` tree starting at `text` names, each prefixed with `prefix`:
/// `a::b::{c, d::{e, f}}` gives `a::b::c`, `a::b::d::e` and `a::b::d::f`.
fn expand_paths(prefix: &str, text: &str, out: &mut Vec<String>) {
    let head: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let path = format!("{prefix}{head}");
    let rest = &text[head.len()..];
    if !path.ends_with("::") || !rest.starts_with('{') {
        out.push(path);
        return;
    }
    // The brace group's top-level items.
    let mut depth = 0;
    let mut start = 1;
    for (i, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' | ',' if depth == 1 => {
                expand_paths(&path, rest[start..i].trim_start(), out);
                start = i + 1;
                if c == '}' {
                    return;
                }
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
}

/// Cycles of three or more modules (strongly connected components without a two-module
/// circle inside, which the caller names itself).
fn longer_cycles<'a>(uses: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    // Tarjan's strongly connected components.
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(v: &'a str, uses: &BTreeMap<&'a str, BTreeSet<&'a str>>, s: &mut State<'a>) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in uses.get(v).into_iter().flatten().copied() {
            if !s.index.contains_key(w) {
                visit(w, uses, s);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            s.components.push(component);
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for v in uses.keys().copied() {
        if !s.index.contains_key(v) {
            visit(v, uses, &mut s);
        }
    }
    s.components
        .into_iter()
        .filter(|c| {
            c.len() > 2
                && !c.iter().any(|a| {
                    uses[a]
                        .iter()
                        .any(|b| c.contains(b) && uses.get(b).is_some_and(|t| t.contains(a)))
                })
        })
        .collect()
}
