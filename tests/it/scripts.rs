//! Running scripts: error reporting, modules, overrides, parallel, cancellation.

use std::time::{Duration, Instant};

use crate::support::Test;

#[test]
fn runtime_error_prints_file_line_column_source_line_and_exits_1() {
    Test::new()
        .file("x.rhai", "let a = 1;\nlet b = 2;\nlet c = a + missing;\n")
        .args(&["run", "x.rhai"])
        .run()
        .status(1)
        .stderr_has("x.rhai:3:13: Variable not found: missing")
        .stderr_has("3 | let c = a + missing;")
        .stderr_has("  |             ^");
}

#[test]
fn error_at_line_3_column_5_is_reported_there() {
    Test::new()
        .file("x.rhai", "fn f() {\n  let x = 1;\n    nope(x)\n}\nf();\n")
        .args(&["run", "x.rhai"])
        .run()
        .status(1)
        .stderr_has("x.rhai:3:5:")
        .stderr_has("    nope(x)")
        .stderr_has("in `f`, called at x.rhai:5:1");
}

#[test]
fn syntax_error_exits_2_with_position() {
    Test::new()
        .file("s.rhai", "let ok = 1;\nlet a = ;\n")
        .args(&["run", "s.rhai"])
        .run()
        .status(2)
        .stderr_has("s.rhai:2:9: syntax error");
}

#[test]
fn error_inside_an_imported_module_names_the_module_file_and_line() {
    Test::new()
        .file("stdlib/helpers.rhai", "fn twice(x) {\n  x * undefined_thing\n}\n")
        .file("main.rhai", "import \"helpers\" as h;\nh::twice(2);\n")
        .args(&["run", "main.rhai"])
        .run()
        .status(1)
        .stderr_has("stdlib/helpers.rhai:2:7: Variable not found: undefined_thing")
        .stderr_has("in `twice`, called at main.rhai:2:4");
}

#[test]
fn syntax_error_inside_a_module_exits_2_and_names_the_module() {
    Test::new()
        .file("stdlib/broken.rhai", "fn f( {\n")
        .file("main.rhai", "import \"broken\" as b;\n")
        .args(&["run", "main.rhai"])
        .run()
        .status(2)
        .stderr_has("stdlib/broken.rhai:1:");
}

#[test]
fn primitive_errors_are_catchable_maps_with_kind_and_message() {
    Test::new()
        .file(
            "c.rhai",
            "try { k3s::compare(\"v1\", \"v1.2.3+k3s1\"); print(\"no\"); } catch (e) { print(`${e.kind}|${e.item}|${e.message}`); }",
        )
        .args(&["run", "c.rhai"])
        .run()
        .status(0)
        .stdout_has("version|v1|`v1` is not a K3s version");
}

#[test]
fn config_args_and_dry_run_are_visible_in_functions_and_modules() {
    Test::new()
        .file("stdlib/m.rhai", "fn tag() { CONFIG.tags.server }\nfn dry() { DRY_RUN }\n")
        .file(
            "t.rhai",
            "import \"m\" as m;\nfn who() { ARGS.who }\nprint(`${m::tag()} ${who()} ${m::dry()} ${ARGS.n + 1}`);",
        )
        .args(&["--dry-run", "run", "t.rhai", "--arg", "who=me", "--arg", "n=41"])
        .run()
        .status(0)
        .stdout_has("k3s-server me true 42");
}

#[test]
fn unknown_config_property_is_an_error_not_unit() {
    Test::new()
        .file("t.rhai", "let x = CONFIG.netwrok;")
        .args(&["run", "t.rhai"])
        .run()
        .status(1)
        .stderr_has("netwrok");
}

#[test]
fn fail_exits_1_with_just_the_message() {
    let run = Test::new().file("f.rhai", "fail(\"2 VMs failed\");").args(&["run", "f.rhai"]).run().status(1);
    assert_eq!(run.stderr.trim(), "error: 2 VMs failed");
}

#[test]
fn parallel_runs_16_half_second_items_8_at_a_time_in_input_order() {
    let t = Test::new()
        .file(
            "p.rhai",
            r#"
let items = [];
for i in 0..16 { items.push(i); }
let results = parallel(items, |i| { sleep(0.5); if i == 5 { throw `item ${i} broke`; } i * 2 }, 8);
let ok = results.filter(|r| r.ok);
let bad = results.filter(|r| !r.ok);
print(`${ok.len()} ${bad.len()} ${bad[0].item} ${bad[0].error}`);
print(to_json(results.map(|r| r.item)));
print(to_json(ok.map(|r| r.value)));
"#,
        )
        .args(&["run", "p.rhai"]);
    let start = Instant::now();
    let run = t.run().status(0);
    let took = start.elapsed();
    assert!(took <= Duration::from_millis(1500), "took {took:?}");
    assert!(took >= Duration::from_millis(1000), "took {took:?}: not limited to 8 at a time?");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "15 1 5 item 5 broke");
    assert_eq!(lines[1], "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]");
    assert_eq!(lines[2], "[0,2,4,6,8,12,14,16,18,20,22,24,26,28,30]");
}

#[test]
fn closures_in_parallel_keep_captured_variables_and_call_script_functions() {
    Test::new()
        .file("p.rhai", "fn add(a, b) { a + b }\nlet base = 100;\nlet r = parallel([1, 2], |x| add(base, x));\nprint(`${r[0].value} ${r[1].value}`);")
        .args(&["run", "p.rhai"])
        .run()
        .status(0)
        .stdout_has("101 102");
}

#[test]
fn ctrl_c_cancels_a_running_script_with_exit_130() {
    let t = Test::new().file("loop.rhai", "let i = 0; loop { i += 1; }").args(&["run", "loop.rhai"]);
    let mut child = t.command().spawn().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let start = Instant::now();
    let status = child.wait().unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(status.code(), Some(130));
}

#[test]
fn ctrl_c_interrupts_sleep_and_parallel_too() {
    let t = Test::new().file("s.rhai", "parallel([1, 2, 3], |x| sleep(30));").args(&["run", "s.rhai"]);
    let mut child = t.command().spawn().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let start = Instant::now();
    let status = child.wait().unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(status.code(), Some(130));
}

#[test]
fn write_file_is_atomic_with_mode_and_skipped_under_dry_run() {
    let t = Test::new().file("w.rhai", "write_file(\"out/secret\", \"s\", 0o600);").file("out/.keep", "");
    let run = Test::new()
        .file("w.rhai", "write_file(\"out/secret\", \"s\", 0o600);")
        .file("out/.keep", "")
        .args(&["--dry-run", "run", "w.rhai"])
        .run();
    run.status(0).stderr_has("dry-run: would write out/secret (mode 0600, 1 bytes)");
    let t = t.args(&["run", "w.rhai"]);
    t.run().status(0);
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(t.path().join("out/secret")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[test]
fn confirm_without_a_terminal_fails_unless_yes() {
    let t = Test::new().file("c.rhai", "if confirm(\"go?\") { print(\"went\"); }");
    let t = t.args(&["run", "c.rhai"]);
    t.run().status(1).stderr_has("pass --yes");
    let t = t.args(&["--yes", "run", "c.rhai"]);
    t.run().status(0).stdout_has("went");
}

#[test]
fn table_prints_aligned_text_or_json() {
    let t = Test::new()
        .file("t.rhai", "table([#{a: 1, b: \"x\"}, #{a: 22, b: ()}], [\"a\", \"b\"]);")
        .args(&["run", "t.rhai"]);
    let run = t.run().status(0);
    assert_eq!(run.stdout, "A   B\n1   x\n22  -\n");
    let run = t.args(&["--json", "run", "t.rhai"]).run().status(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v[1]["a"], 22);
}

#[test]
fn unknown_script_name_is_a_usage_error_listing_the_built_ins() {
    Test::new().args(&["run", "nope"]).run().status(2).stderr_has("check-version");
}

#[test]
fn sort_by_orders_maps_by_several_keys_numbers_numerically() {
    let script = r#"
let vms = [#{node: "pve2", vmid: 101}, #{node: "pve1", vmid: 1000}, #{node: "pve1", vmid: 99}, #{node: (), vmid: 5}];
print(to_json(sort_by(vms, ["node", "vmid"]).map(|v| v.vmid)));"#;
    Test::new().file("s.rhai", script).args(&["run", "s.rhai"]).run().status(0).stdout_has("[5,99,1000,101]");
}

#[test]
fn an_uncaught_primitive_error_names_the_line_and_column_of_the_call() {
    Test::new()
        .file("stdlib/checks.rhai", "fn check(v) {\n    k3s::parse_version(v)\n}\n")
        .file("c.rhai", "import \"checks\" as c;\nlet ok = 1;\nc::check(\"v1.x\");\n")
        .args(&["run", "c.rhai"])
        .run()
        .status(1)
        .stderr_has("stdlib/checks.rhai:2:10: `v1.x` is not a K3s version")
        .stderr_has("2 |     k3s::parse_version(v)")
        .stderr_has("in `check`, called at c.rhai:3:4");
}

#[test]
fn exit_ends_the_script_with_its_status() {
    for (code, status) in [(0, 0), (1, 1), (2, 2), (7, 1)] {
        let run = Test::new()
            .file("e.rhai", &format!("fn f() {{ exit({code}); }}\nf();\nprint(\"not reached\");\n"))
            .args(&["run", "e.rhai"])
            .run()
            .status(status);
        assert!(!run.stdout.contains("not reached") && run.stderr.is_empty(), "{}", run.stderr);
    }
}

#[test]
fn parallel_gives_every_worker_its_own_copy_of_captured_closures_and_maps() {
    let script = r#"
let secret = 1000;
let hosts = [1, 2, 3, 4, 5, 6, 7, 8];
let f = |h| { sleep(0.05); secret + h };
let direct = parallel(hosts, |h| f.call(h), 8);
let cfg = #{base: 5, nested: #{k: 7}, add: |x| x + 1};
let g = |h| cfg.add.call(h) + cfg.base + cfg.nested.k;
let k = |h| { sleep(0.02); g.call(h) * 2 };
let nested = parallel(hosts, |h| k.call(h), 4);
let show = |rs| to_json(rs.map(|r| if r.ok { r.value } else { r.error }));
print(show.call(direct));
print(show.call(nested));
"#;
    let t = Test::new().file("p.rhai", script).args(&["run", "p.rhai"]);
    for _ in 0..3 {
        let run = t.run().status(0);
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines, ["[1001,1002,1003,1004,1005,1006,1007,1008]", "[28,30,32,34,36,38,40,42]"], "{}", run.stderr);
    }
}

#[test]
fn parallel_accepts_exclusive_and_inclusive_ranges() {
    Test::new()
        .file(
            "r.rhai",
            "print(to_json(parallel(0..16, |i| i * 2, 4).map(|r| r.value)));\n\
             print(to_json(parallel(0..=3, |i| i + 1).map(|r| r.item)));",
        )
        .args(&["run", "r.rhai"])
        .run()
        .status(0)
        .stdout_has("[0,2,4,6,8,10,12,14,16,18,20,22,24,26,28,30]\n[0,1,2,3]\n");
}

fn script_error(script: &str) -> String {
    let run = Test::new().file("e.rhai", script).args(&["run", "e.rhai"]).run().status(1);
    assert!(!run.stderr.contains("anon$"), "an internal closure name in: {}", run.stderr);
    run.stderr
}

#[test]
fn a_module_used_without_import_says_how_to_import_it_and_lists_the_modules() {
    let err = script_error("inventory::load(false);");
    assert!(err.contains("add `import \"inventory\" as inventory;`"), "{err}");
    assert!(err.contains("modules: cluster, inventory, ipplan, lifecycle, power, versions"), "{err}");
    let err = script_error("import \"invntory\" as inventory;");
    assert!(err.contains("did you mean `inventory`?"), "{err}");
    assert!(err.contains("modules: cluster, inventory, ipplan, lifecycle, power, versions"), "{err}");
}

#[test]
fn a_function_called_with_the_wrong_arguments_lists_the_signatures_and_a_near_miss_is_named() {
    let err = script_error("pve::status(5);");
    assert!(err.contains("Function not found: pve::status (i64)"), "{err}");
    assert!(err.contains("pve::status(vm: Map) -> Map"), "{err}");
    let err = script_error("pve::vm();");
    assert!(err.contains("did you mean `pve::vms`?"), "{err}");
    let err = script_error("let vms = [1]; sort_bi(vms, [\"node\"]);");
    assert!(err.contains("did you mean `sort_by`?"), "{err}");
}

#[test]
fn a_missing_map_property_names_the_keys_the_map_has() {
    let err = script_error("let m = #{a: 1, bcd: 2};\nm.abc");
    assert!(err.contains("Property not found: abc"), "{err}");
    assert!(err.contains("the map has: a, bcd"), "{err}");
    let err = script_error("fn net() { CONFIG.netwrok }\nnet()");
    assert!(err.contains("did you mean `network`?"), "{err}");
}

#[test]
fn closures_are_called_a_closure_in_errors() {
    let err = script_error("let f = |x| x + 1;\nf.call(\"a\", 2)");
    assert!(err.contains("a closure"), "{err}");
    let err = script_error("let f = |x| x.nosuch();\nf.call(1)");
    assert!(err.contains("in a closure, called at e.rhai:2:3"), "{err}");
}

#[test]
fn a_method_on_unit_explains_that_string_methods_change_in_place() {
    let err = script_error("let text = \"a-b\";\ntext.replace(\"a\", \"b\").replace(\"c\", \"d\")");
    assert!(err.contains("change a string in place and return `()`"), "{err}");
    assert!(err.contains("text.replace(a, b); text.replace(c, d);"), "{err}");
    let err = script_error("let text = \" x \";\ntext.trim().len()");
    assert!(err.contains("`len` was called on `()`. Rhai's `trim`"), "{err}");
}
