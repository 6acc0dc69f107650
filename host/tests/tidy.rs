//! Structural rules of the workspace, checked by reading its sources (rust-analyzer's "tidy"
//! style): the one-way dependencies ARCHITECTURE.md lists as invariants fail here when broken.

use std::fs;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, relative paths with `/`.
fn rust_files(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = fs::read_dir(&folder) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|name| name == "target") {
                    continue;
                }
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let text = fs::read_to_string(&path).expect("readable source");
                let relative = path.strip_prefix(workspace()).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                found.push((relative.trim_start_matches("../").to_owned(), text));
            }
        }
    }
    found.sort();
    found
}

/// The part of a source file that is built outside tests: a whole `tests*.rs` file is a test
/// module, and in other files everything from the first `#[cfg(test)]` on is.
fn product_code(path: &str, text: &str) -> Option<String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.starts_with("tests") {
        return None;
    }
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    // Comments say what they like; only code counts.
    Some(code.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n"))
}

fn host_sources() -> Vec<(String, String)> {
    rust_files(&workspace().join("host/src"))
}

/// The host's modules of one layer: `host/src/NAME.rs` and everything under `host/src/NAME/`.
fn in_module(path: &str, module: &str) -> bool {
    path == format!("host/src/{module}.rs") || path.starts_with(&format!("host/src/{module}/"))
}

fn violations(rule: impl Fn(&str, &str) -> Option<String>) -> Vec<String> {
    host_sources()
        .iter()
        .filter_map(|(path, text)| product_code(path, text).and_then(|code| rule(path, &code)))
        .collect()
}

/// The names of `crate::` modules a piece of code reaches, in `use` lines or paths.
fn crate_modules(code: &str) -> Vec<String> {
    let mut modules = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `tandem_crate::`, not ours
        }
        let rest = &code[at + "crate::".len()..];
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            modules.push(name);
        }
        // `crate::{a, b}` names several.
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or("");
            for part in group.split(',') {
                let name: String = part.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    modules.push(name);
                }
            }
        }
    }
    modules
}

#[test]
fn the_host_library_never_names_the_emulators() {
    let broken = violations(|path, code| code.contains("tandem_sim").then(|| path.to_owned()));
    assert!(broken.is_empty(), "the host library uses tandem_sim outside tests: {broken:?}");
    let manifest = fs::read_to_string(workspace().join("host/Cargo.toml")).expect("host manifest");
    let dependencies = manifest.split("[dependencies]").nth(1).expect("a [dependencies] table");
    let dependencies = dependencies.split("\n[").next().unwrap_or(dependencies);
    assert!(
        !dependencies.contains("tandem-sim"),
        "tandem-sim must be a dev-dependency of tandem-host, never a normal one"
    );
}

/// The `[dependencies]` table of a workspace crate's manifest, as text.
fn normal_dependencies(krate: &str) -> String {
    let manifest = fs::read_to_string(workspace().join(krate).join("Cargo.toml")).expect("a manifest");
    let table = manifest.split("\n[dependencies]").nth(1).unwrap_or("");
    table.split("\n[").next().unwrap_or(table).to_owned()
}

#[test]
fn crates_depend_one_way() {
    // The packed format and the EWS wire vocabulary stand alone; the SDK and the emulators
    // never depend on the product.
    let packed = normal_dependencies("packed");
    assert!(packed.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')), "tandem-packed has no dependencies:{packed}");
    for (krate, forbidden) in [
        ("ews-wire", &["tandem-"][..]),
        ("plugin-api", &["tandem-host", "tandem-sim", "tandem-ews-wire"][..]),
        ("sim", &["tandem-host", "tandem-packed", "tandem-plugin-api"][..]),
        ("host", &["tandem-sim", "\ntandem =", "\ntandem.workspace"][..]),
    ] {
        let dependencies = normal_dependencies(krate);
        for name in forbidden {
            assert!(!dependencies.contains(name), "{krate} must not depend on {name}:{dependencies}");
        }
    }
    assert!(normal_dependencies("cli").contains("tandem-host"), "the manifests read are the real ones");
}

#[test]
fn only_the_cli_crate_has_the_command_line() {
    assert!(!workspace().join("host/src/main.rs").exists(), "the tandem binary lives in cli/");
    let manifest = fs::read_to_string(workspace().join("host/Cargo.toml")).expect("host manifest");
    assert!(!manifest.contains("[[bin]]"), "tandem-host is a library only");
    let broken = violations(|path, code| code.contains("clap::").then(|| path.to_owned()));
    assert!(broken.is_empty(), "command-line parsing belongs in cli/: {broken:?}");
}

#[test]
fn connectors_and_plugins_never_reach_up() {
    const ABOVE: &[&str] = &["admin", "scheduler", "service", "engine", "metrics", "config", "doctor"];
    let broken = violations(|path, code| {
        if !["exchange", "siebel", "plugin", "registry", "package", "store"].iter().any(|m| in_module(path, m)) {
            return None;
        }
        let reached: Vec<String> = crate_modules(code).into_iter().filter(|m| ABOVE.contains(&m.as_str())).collect();
        (!reached.is_empty()).then(|| format!("{path} imports {reached:?}"))
    });
    assert!(broken.is_empty(), "a lower layer imports a higher one: {broken:?}");
}

#[test]
fn ews_and_graph_never_import_each_other() {
    let broken = violations(|path, code| {
        let other = if in_module(path, "exchange/ews") {
            "graph"
        } else if in_module(path, "exchange/graph") {
            "ews"
        } else {
            return None;
        };
        let imports = code.contains(&format!("exchange::{other}")) || code.contains(&format!("super::{other}"));
        imports.then(|| format!("{path} imports {other}"))
    });
    assert!(broken.is_empty(), "the Exchange backends must stay apart: {broken:?}");
}

#[test]
fn the_vocabulary_at_the_bottom_imports_nothing_above_it() {
    const BOTTOM: &[&str] = &["domain", "record", "telemetry", "secrets", "transport", "oauth"];
    let broken = violations(|path, code| {
        if !BOTTOM.iter().any(|m| in_module(path, m)) {
            return None;
        }
        let reached: Vec<String> = crate_modules(code).into_iter().filter(|m| !BOTTOM.contains(&m.as_str())).collect();
        (!reached.is_empty()).then(|| format!("{path} imports {reached:?}"))
    });
    assert!(broken.is_empty(), "domain, record, telemetry, secrets, transport and oauth are the bottom layer: {broken:?}");
}

#[test]
fn outbound_connections_are_built_in_one_place_and_always_verified() {
    // No switch turns certificate or host-name checks off, anywhere in the product.
    const UNVERIFIED: &[&str] = &["danger_accept_invalid", "dangerous()", "ServerCertVerifier", "tls_certs_only"];
    let broken = violations(|path, code| {
        let found: Vec<&str> = UNVERIFIED.iter().copied().filter(|word| code.contains(word)).collect();
        (!found.is_empty()).then(|| format!("{path} uses {found:?}"))
    });
    assert!(broken.is_empty(), "certificate verification must stay on: {broken:?}");
    // Connectors get their clients from `transport`, never a bare `reqwest::Client`.
    let bare = violations(|path, code| {
        let builds = code.contains("Client::builder()") || code.contains("Client::new()");
        (builds && path != "host/src/transport.rs").then(|| path.to_owned())
    });
    assert!(bare.is_empty(), "HTTP clients not built by transport::client_builder: {bare:?}");
}

#[test]
fn every_source_file_says_why_it_exists_and_cites_no_issue_numbers() {
    let mut undocumented = Vec::new();
    let mut issue_refs = Vec::new();
    for folder in ["host", "cli", "sim", "packed", "ews-wire", "plugin-api", "plugins", "tests", "fuzz"] {
        for (path, text) in rust_files(&workspace().join(folder)) {
            if !text.trim_start().starts_with("//!") {
                undocumented.push(path.clone());
            }
            for (number, line) in text.lines().enumerate() {
                let comment = line.split_once("//").map(|(_, c)| c).unwrap_or("");
                if comment.contains("(issue ") {
                    issue_refs.push(format!("{path}:{}", number + 1));
                }
            }
        }
    }
    assert!(undocumented.is_empty(), "files without a `//!` line on why they exist: {undocumented:?}");
    assert!(issue_refs.is_empty(), "code comments citing issue numbers: {issue_refs:?}");
}

#[test]
fn the_rules_see_what_they_check() {
    // A rule that reads nothing passes for nothing: the scan must find the layers it names.
    let sources = host_sources();
    for module in ["exchange/ews", "exchange/graph", "siebel", "engine", "domain", "admin"] {
        assert!(sources.iter().any(|(path, _)| in_module(path, module)), "no source found for {module}");
    }
    assert_eq!(crate_modules("use crate::{admin, engine::Engine};\nlet x = crate::store::now();"), ["admin", "engine", "store"]);
    assert_eq!(product_code("host/src/a.rs", "use a;\n// crate::admin\n#[cfg(test)]\nuse tandem_sim;"), Some("use a;".to_owned()));
    assert_eq!(product_code("host/src/exchange/ews/tests.rs", "use tandem_sim;"), None);
}

#[test]
fn the_planner_decides_without_doing() {
    const ALLOWED: &[&str] = &["domain", "record", "plugin"];
    let path = "host/src/engine/plan.rs";
    let text = fs::read_to_string(workspace().join(path)).expect("the planner");
    let code = product_code(path, &text).expect("product code");
    let reached: Vec<String> = crate_modules(&code).into_iter().filter(|m| !ALLOWED.contains(&m.as_str())).collect();
    assert!(reached.is_empty(), "{path} may use only {ALLOWED:?} of the host, not {reached:?}");
    assert!(code.contains("use crate::plugin::Side;"), "of the plugin layer, the planner uses only Side");
    assert!(!code.contains("crate::plugin::{"), "of the plugin layer, the planner uses only Side");
    for doing in ["async ", ".await", "store::", "Store", "tokio", "reqwest"] {
        assert!(!code.contains(doing), "{path} must not do IO; found `{doing}`");
    }
}
