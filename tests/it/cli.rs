//! The command line: scripts list/show/eject and local overrides, completions.

use crate::support::Test;

const EDITED: &str = "print(\"edited copy ran\");\n";

#[test]
fn ejected_and_edited_script_overrides_the_built_in() {
    let t = Test::new().args(&["scripts", "eject", "check-version", "--to", "scripts/"]);
    t.run().status(0);
    let ejected = t.read("scripts/check-version.rhai");
    assert!(ejected.contains("k3s::latest"), "{ejected}");
    let t = t.file("scripts/check-version.rhai", EDITED);
    t.run_args(&["check-version"]).status(0).stdout_has("edited copy ran");
    let run = t.run_args(&["scripts", "list"]).status(0);
    let line = run.stdout.lines().find(|l| l.contains("check-version")).unwrap().to_string();
    assert!(line.contains("scripts/check-version.rhai") && line.contains("overrides built-in"), "{line}");
}

#[test]
fn eject_never_overwrites_without_force() {
    let t = Test::new().file("scripts/check-version.rhai", EDITED).args(&["scripts", "eject", "check-version"]);
    t.run().status(2).stderr_has("--force");
    assert_eq!(t.read("scripts/check-version.rhai"), EDITED);
    let t = t.args(&["scripts", "eject", "check-version", "--force"]);
    t.run().status(0);
    assert_ne!(t.read("scripts/check-version.rhai"), EDITED);
}

#[test]
fn eject_puts_modules_in_stdlib_and_a_local_module_overrides_the_built_in() {
    let t = Test::new().args(&["scripts", "eject", "versions"]);
    t.run().status(0);
    assert!(t.read("stdlib/versions.rhai").contains("fn verdict"));
    let t = t
        .file("stdlib/versions.rhai", "fn verdict(a, b) { #{status: \"local\", message: \"from the local module\"} }\n")
        .file("v.rhai", "import \"versions\" as v;\nprint(v::verdict(1, 2).message);\n");
    t.run_args(&["run", "v.rhai"]).status(0).stdout_has("from the local module");
    let run = t.run_args(&["scripts", "list"]).status(0);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("module") && l.contains("versions") && l.contains("overrides built-in")),
        "{}",
        run.stdout
    );
}

#[test]
fn user_scripts_dir_is_searched_after_the_local_one() {
    let t = Test::new().file("user/check-version.rhai", "print(\"user copy\");\n");
    let user = t.path().join("user");
    t.args(&["check-version"]).env("K3SX_SCRIPTS", user.to_str().unwrap()).run().status(0).stdout_has("user copy");
}

#[test]
fn scripts_show_prints_the_script_that_would_run() {
    let t = Test::new().args(&["scripts", "show", "check-version"]);
    t.run().status(0).stdout_has("k3s::latest");
    let t = t.file("scripts/check-version.rhai", EDITED);
    t.run().status(0).stdout_has("edited copy ran");
    t.args(&["scripts", "show", "check-version", "--builtin"]).run().status(0).stdout_has("k3s::latest");
}

#[test]
fn completions_are_generated_for_bash() {
    Test::new().args(&["completions", "bash"]).run().status(0).stdout_has("check-version");
}

#[test]
fn bad_usage_exits_2() {
    Test::new().args(&["frobnicate"]).run().status(2);
    Test::new().args(&["run", "x.rhai", "--arg", "novalue"]).file("x.rhai", "").run().status(2).stderr_has("KEY=VALUE");
}
