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
