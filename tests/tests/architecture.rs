//! The architecture ARCHITECTURE.md states, enforced: the node's modules form layers and
//! each imports only what its row in [`ALLOWED`] names; libp2p is imported only inside
//! `network/`, sled only inside `storage/`; `replica/` and the `protocol` crate are pure
//! (no tokio, libp2p, sled, clock or randomness); nothing below imports `server` or
//! `cli`; and no source file outside tests passes [`MAX_FILE_LINES`] lines.
//!
//! The check reads the sources as text: every `crate::<module>` path (in `use` lines and
//! in expressions) of a file under `node/src/<module>/` or `node/src/<module>.rs` is an
//! edge from `<module>` to `<module>`. Comments are skipped. Function length is enforced
//! by clippy's `too_many_lines` (threshold in `clippy.toml`), run by `.ci/run`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// No source file outside tests may be longer than this (STYLE.md: files of a few
/// hundred lines with one main type each).
const MAX_FILE_LINES: usize = 600;

/// Each module of the node crate, the modules it may import (`crate::x`), and the module
/// whose every allowed import it may also make (empty: none), so each layer names only
/// what it adds over the one below. Layers, bottom first: `time`, `sync`, `listener`;
/// `storage`, `network`, `replica` (which never meet); `resilience`; `config`; `broker`;
/// `outbox`, `mesh`, `services`, `group`, `client`; `gateway`; `admin`, `kafka`;
/// `server`; `cli`. `main.rs` and `lib.rs` are the crate's roots. A row names only
/// modules of earlier rows.
const ALLOWED: &[(&str, &[&str], &str)] = &[
    ("time", &[], ""),
    ("sync", &[], ""),
    ("listener", &[], ""),
    ("storage", &["time", "sync"], ""),
    ("network", &["time", "sync"], ""),
    ("replica", &[], ""),
    ("resilience", &["network", "time", "sync"], ""),
    ("config", &["network", "resilience", "time", "sync"], ""),
    ("broker", &["storage", "network", "replica", "time", "sync"], ""),
    ("outbox", &["storage", "broker", "network", "time", "sync"], ""),
    ("mesh", &["broker", "storage", "network", "resilience", "replica", "time", "sync"], ""),
    ("services", &["network", "resilience", "storage", "time", "sync"], ""),
    ("group", &["broker", "mesh", "network", "resilience", "replica", "storage", "time", "sync"], ""),
    ("client", &["network", "resilience", "time", "sync"], ""),
    ("gateway", &["group", "outbox", "services", "config"], "mesh"),
    ("admin", &["gateway", "listener"], "gateway"),
    ("kafka", &["gateway", "network", "storage", "config", "listener", "time", "sync"], ""),
    ("server", &["admin", "kafka"], "admin"),
    ("cli", &["server", "client"], "server"),
];

/// [`ALLOWED`] with every row's inherited imports spelled out.
fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (module, deps, inherits) in ALLOWED {
        let mut may: BTreeSet<&str> = deps.iter().copied().collect();
        if !inherits.is_empty() {
            let below = out.get(inherits).unwrap_or_else(|| {
                panic!("ALLOWED: `{module}` inherits `{inherits}`, which has no earlier row")
            });
            may.extend(below.iter().copied());
            may.insert(inherits);
        }
        out.insert(module, may);
    }
    out
}

/// Crates a module may name only if it is the one listed: the swarm is owned by
/// `network/`, the key-value engine is hidden behind `storage/`.
const EXCLUSIVE_CRATES: &[(&str, &str)] =
    &[("libp2p", "network"), ("libp2p_stream", "network"), ("sled", "storage")];

/// What a pure core must not name: an executor, the network, the disk, a clock,
/// randomness.
const IMPURE: &[&str] = &[
    "tokio::",
    "libp2p",
    "sled::",
    "std::fs",
    "std::net",
    "Instant::now",
    "SystemTime::now",
    "rand::",
    "std::thread",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether a file holds only tests: `tests.rs`, `*_tests.rs`, or anything under a
/// `tests/` directory.
fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs" || name.ends_with("_tests.rs") || path.components().any(|c| c.as_os_str() == "tests")
}

/// The source without `//` comments (line and doc comments), line by line. A `//` inside a
/// string literal is rare in this codebase's import lines; string contents are kept, so
/// a path written in a message does not count as code only if it sits in a comment.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, line)| {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        (i + 1, code)
    })
}

/// The part of a file that is compiled outside tests: everything before a line that
/// opens `#[cfg(test)]` followed by an inline `mod tests {`.
fn non_test_part(text: &str) -> &str {
    let mut offset = 0;
    let mut after_cfg_test = false;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if after_cfg_test && t.starts_with("mod ") && t.ends_with('{') {
            return &text[..offset];
        }
        after_cfg_test = t == "#[cfg(test)]";
        offset += line.len();
    }
    text
}

/// The node module a file under `node/src` belongs to (`broker` for
/// `broker/driver.rs` and `broker.rs`; `None` for the crate roots).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// Every `crate::<name>` named in the code of `text`.
fn crate_paths(text: &str) -> BTreeSet<(String, usize)> {
    let mut found = BTreeSet::new();
    for (n, code) in code_lines(text) {
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let preceded_by_ident =
                rest[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_');
            let tail = &rest[at + "crate::".len()..];
            let name: String = tail.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !preceded_by_ident && !name.is_empty() {
                found.insert((name, n));
            }
            rest = tail;
        }
    }
    found
}

/// Every `use crate::{a, b::c, ..}` group's top-level names, which `crate_paths` sees only
/// as `crate::` followed by `{`.
fn grouped_crate_uses(text: &str) -> BTreeSet<(String, usize)> {
    let mut found = BTreeSet::new();
    let code: Vec<(usize, &str)> = code_lines(text).collect();
    for (i, (n, line)) in code.iter().enumerate() {
        let Some(at) = line.find("crate::{") else { continue };
        // Join lines until the group closes, then take the first path segment of each
        // item at depth one.
        let mut joined = line[at + "crate::{".len()..].to_string();
        let mut j = i + 1;
        while !joined.contains("};") && j < code.len() {
            joined.push_str(code[j].1);
            j += 1;
        }
        let mut depth = 0usize;
        let mut item = String::new();
        for c in joined.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    push_first_segment(&mut found, &item, *n);
                    item.clear();
                    continue;
                }
                _ => {}
            }
            if depth == 0 {
                item.push(c);
            }
        }
        push_first_segment(&mut found, &item, *n);
    }
    found
}

fn push_first_segment(found: &mut BTreeSet<(String, usize)>, item: &str, line: usize) {
    let first: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    if !first.is_empty() && first != "self" {
        found.insert((first, line));
    }
}

/// Whether `code` names crate `krate` as a path root (`krate::`, `use krate;`,
/// `krate::{`), not as part of a longer identifier.
fn names_crate(code: &str, krate: &str) -> bool {
    code.match_indices(krate).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = &code[at + krate.len()..];
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            && (after.starts_with("::") || after.starts_with(';'))
    })
}

struct Violations(Vec<String>);

impl Violations {
    fn check(self) {
        assert!(self.0.is_empty(), "{} architecture violation(s):\n{}", self.0.len(), self.0.join("\n"));
    }
}

fn node_sources() -> (PathBuf, Vec<PathBuf>) {
    let src = root().join("node/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    (src, files)
}

#[test]
fn every_node_module_imports_only_the_layers_below_it() {
    let allowed = allowed();
    let (src, files) = node_sources();
    let mut bad = Vec::new();
    let mut seen_modules = BTreeSet::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else { continue };
        seen_modules.insert(module.clone());
        let Some(may) = allowed.get(module.as_str()) else {
            bad.push(format!(
                "{}: module `{module}` has no row in ALLOWED: place it in a layer",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a readable source file");
        let text = if is_test_file(file) { "" } else { non_test_part(&text) };
        for (target, line) in crate_paths(text).into_iter().chain(grouped_crate_uses(text)) {
            if target != module && allowed.contains_key(target.as_str()) && !may.contains(target.as_str()) {
                bad.push(format!(
                    "{}:{line}: `{module}` imports `crate::{target}` across a forbidden edge",
                    file.display()
                ));
            }
        }
    }
    for (module, _, _) in ALLOWED {
        if !seen_modules.contains(*module) && *module != "admin" {
            bad.push(format!(
                "ALLOWED names `{module}`, which is not a module of node/src: keep the table true"
            ));
        }
    }
    Violations(bad).check();
}

#[test]
fn libp2p_lives_only_in_network_and_sled_only_in_storage() {
    let (src, files) = node_sources();
    let mut bad = Vec::new();
    for file in &files {
        let module = module_of(&src, file).unwrap_or_default();
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for (n, code) in code_lines(&text) {
            for (krate, owner) in EXCLUSIVE_CRATES {
                if module != *owner && names_crate(code, krate) {
                    bad.push(format!("{}:{n}: `{krate}` is named outside `{owner}/`", file.display()));
                }
            }
        }
    }
    Violations(bad).check();
}

#[test]
fn the_replica_core_and_the_protocol_crate_are_pure() {
    let mut files = Vec::new();
    rust_files(&root().join("node/src/replica"), &mut files);
    rust_files(&root().join("protocol/src"), &mut files);
    let mut bad = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for (n, code) in code_lines(&text) {
            for word in IMPURE {
                if code.contains(word) {
                    bad.push(format!("{}:{n}: a pure module names `{word}`", file.display()));
                }
            }
            if file.starts_with(root().join("node/src/replica")) {
                for (target, _) in crate_paths(code) {
                    if target != "replica" {
                        bad.push(format!("{}:{n}: `replica/` imports `crate::{target}`", file.display()));
                    }
                }
            }
        }
    }
    let manifest = std::fs::read_to_string(root().join("protocol/Cargo.toml")).expect("protocol's manifest");
    for krate in ["tokio", "libp2p", "sled", "rand"] {
        if manifest.lines().any(|l| l.trim_start().starts_with(krate)) {
            bad.push(format!("protocol/Cargo.toml depends on `{krate}`: the protocol crate is a pure codec"));
        }
    }
    Violations(bad).check();
}

#[test]
fn no_source_file_outside_tests_passes_the_size_limit() {
    let mut files = Vec::new();
    for dir in ["node/src", "protocol/src", "tests/src"] {
        rust_files(&root().join(dir), &mut files);
    }
    let mut bad = Vec::new();
    for file in files.iter().filter(|f| !is_test_file(f)) {
        let text = std::fs::read_to_string(file).expect("a readable source file");
        let lines = non_test_part(&text).lines().count();
        if lines > MAX_FILE_LINES {
            bad.push(format!("{}: {lines} lines (limit {MAX_FILE_LINES}): split it", file.display()));
        }
    }
    Violations(bad).check();
}

/// The checker itself: a forbidden edge written the three ways the code writes imports is
/// found, and one in a comment is not.
#[test]
fn the_checker_sees_each_way_of_naming_a_module() {
    let text = "use crate::server::stopped;\n\
                // crate::cli::run in a comment\n\
                let x = crate::gateway::call();\n\
                use crate::{\n    broker::Broker,\n    mesh::{Mesh, MeshEvent},\n};\n";
    let named: BTreeSet<String> =
        crate_paths(text).into_iter().chain(grouped_crate_uses(text)).map(|(m, _)| m).collect();
    let expected: BTreeSet<String> =
        ["server", "gateway", "broker", "mesh"].iter().map(|s| s.to_string()).collect();
    assert_eq!(named, expected);
    assert!(names_crate("use libp2p::PeerId;", "libp2p"));
    assert!(!names_crate("let my_libp2p = 1;", "libp2p"));
    assert!(!names_crate("use crate::network::libp2p_types;", "libp2p"));
    assert_eq!(
        non_test_part("fn a() {}\n#[cfg(test)]\nmod tests {\n fn b() {}\n}\n"),
        "fn a() {}\n#[cfg(test)]\n"
    );
}
