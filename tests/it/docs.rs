//! The script API reference is generated from the engine and kept in `docs/api.md`.

use crate::support::Test;

#[test]
fn every_registered_function_has_a_doc_comment() {
    let run = Test::new().args(&["--json", "doc"]).run().status(0);
    let docs: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).unwrap();
    assert!(docs.len() > 20, "suspiciously few functions: {}", docs.len());
    let undocumented: Vec<&str> = docs
        .iter()
        .filter(|d| d["doc"].as_str().unwrap().trim().is_empty())
        .map(|d| d["signature"].as_str().unwrap())
        .collect();
    assert!(undocumented.is_empty(), "functions without a doc comment: {undocumented:?}");
    for name in ["parallel", "k3s::compare", "k3s::latest", "table", "confirm"] {
        assert!(
            docs.iter().any(|d| d["signature"].as_str().unwrap().starts_with(&format!("{name}("))),
            "{name} missing"
        );
    }
}

#[test]
fn docs_api_md_is_current() {
    let run = Test::new().args(&["doc", "--markdown"]).run().status(0);
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap_or_default();
    assert!(
        committed == run.stdout,
        "docs/api.md is stale: regenerate it with `cargo run -q -- doc --markdown > docs/api.md`"
    );
}

#[test]
fn doc_for_one_function_and_unknown_name() {
    Test::new()
        .args(&["doc", "k3s::compare"])
        .run()
        .status(0)
        .stdout_has("k3s::compare(a: &str, b: &str) -> i64")
        .stdout_has("+k3sN");
    Test::new().args(&["doc", "nosuch"]).run().status(2);
}

#[test]
fn definitions_are_written_for_editors() {
    let t = Test::new().args(&["doc", "--definitions", "defs"]);
    t.run().status(0);
    let names: Vec<String> = std::fs::read_dir(t.path().join("defs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.contains("k3s")), "{names:?}");
}

#[test]
fn stdlib_modules_are_documented_with_signatures_and_doc_comments() {
    let run = Test::new().args(&["--json", "doc"]).run().status(0);
    let docs: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).unwrap();
    let namespaces: std::collections::BTreeSet<&str> = docs.iter().map(|d| d["namespace"].as_str().unwrap()).collect();
    let stdlib: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/stdlib"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".rhai").map(str::to_string))
        .collect();
    assert!(stdlib.len() >= 5, "{stdlib:?}");
    for module in &stdlib {
        assert!(namespaces.contains(module.as_str()), "module {module} missing from `k3sx doc`: {namespaces:?}");
    }
    let load = docs.iter().find(|d| d["signature"] == "inventory::load(include_unreachable)").expect("inventory::load");
    assert!(load["doc"].as_str().unwrap().starts_with("The K3s VMs: `#{servers, agents, storage"), "{load}");
    assert!(!run.stdout.contains("anon$"), "closures are no API");
    let md = Test::new().args(&["doc", "--markdown"]).run().status(0);
    assert!(md.stdout.contains("### `inventory::load(include_unreachable)`"), "not in the markdown reference");
    assert!(
        md.stdout.contains("import \"inventory\" as inventory;"),
        "the markdown does not say how to import a module"
    );
}

#[test]
fn every_stdlib_function_has_a_doc_comment() {
    let run = Test::new().args(&["--json", "doc"]).run().status(0);
    let docs: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).unwrap();
    let undocumented: Vec<&str> = docs
        .iter()
        .filter(|d| d["module"] == true && d["doc"].as_str().unwrap().trim().is_empty())
        .map(|d| d["signature"].as_str().unwrap())
        .collect();
    assert!(docs.iter().filter(|d| d["module"] == true).count() > 30, "the stdlib functions are not listed");
    assert!(undocumented.is_empty(), "stdlib functions without a `///` doc comment: {undocumented:?}");
}

#[test]
fn doc_of_one_stdlib_module() {
    let run = Test::new().args(&["doc", "inventory"]).run().status(0);
    assert!(run.stdout.contains("inventory::label(vm)\n    `pve1/101 name`"), "{}", run.stdout);
    assert!(!run.stdout.contains("power::") && !run.stdout.contains("k3s::"), "{}", run.stdout);
}

#[test]
fn definitions_include_the_stdlib_modules() {
    let t = Test::new().args(&["doc", "--definitions", "defs"]);
    t.run().status(0);
    let all: String = std::fs::read_dir(t.path().join("defs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(all.contains("module inventory"), "no inventory module in the definitions");
    assert!(all.contains("fn load(include_unreachable: ?) -> ?;"), "no inventory::load in the definitions");
    assert!(!all.contains("anon$"), "closures in the definitions");
    assert!(all.contains("/// The K3s VMs:"), "the definitions lack the doc comment");
}
