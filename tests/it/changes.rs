//! The one door for changes: a dry run's plan is exactly what the real run sends, in plan
//! order; `--expect-no-changes`; bad input cannot bend a request; only shipped workflows are
//! offered.

use serde_json::{Value, json};

use crate::lab::pve::FakePve;
use crate::support::{PVE_TOKEN_SECRET, Test};

const CONFIG: &str = r#"{"network": {"range_start": "10.10.0.201", "range_end": "10.10.0.210", "cidr": 24,
    "gateway": "10.10.0.1", "dns_servers": ["10.10.0.1"], "search_domain": "lab.example"}}"#;

fn vm(vmid: u32, node: &str) -> Value {
    json!({"vmid": vmid, "name": format!("vm{vmid}"), "node": node, "status": "stopped", "tags": "k3s-agent", "config": {}})
}

/// Two nodes, two VMs each: worker threads finish in any order.
fn lab() -> Option<FakePve> {
    FakePve::start(json!({"tokens": {"root@pam!k3sx": PVE_TOKEN_SECRET}, "nodes": ["pve1", "pve2"],
        "vms": [vm(101, "pve1"), vm(102, "pve1"), vm(201, "pve2"), vm(202, "pve2")]}))
}

/// The writes fakepve received, as `METHOD /path body`.
fn writes(pve: &FakePve) -> Vec<String> {
    pve.requests()
        .into_iter()
        .filter(|r| r.method != "GET" && !r.api_path().starts_with("/access/"))
        .map(|r| format!("{} {} {}", r.method, r.api_path(), r.body))
        .collect()
}

/// The last JSON document on stdout: the run's plan.
fn plan(stdout: &str) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_json::Deserializer::from_str(stdout).into_iter::<Value>().map(Result::unwrap).collect();
    docs.last().and_then(|d| d["plan"].as_array()).cloned().unwrap_or_else(|| panic!("no plan in {stdout}"))
}

/// A planned Proxmox write as the request it stands for.
fn as_request(change: &Value) -> String {
    let params: Vec<(String, String)> = change["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string()))
        .collect();
    format!(
        "{} {} {}",
        change["method"].as_str().unwrap(),
        change["path"].as_str().unwrap(),
        k3sx::pve::encode_form(&params)
    )
}

#[test]
fn the_dry_run_plan_of_configure_ips_is_exactly_what_the_real_run_then_sends_in_plan_order() {
    let Some(pve) = lab() else { return };
    let t = Test::new().pve(&pve, None).file("k3sx.json", CONFIG);

    let drift = t.run_args(&["--expect-no-changes", "configure-ips"]).status(3);
    drift.stderr_has("4 change(s) pending (--expect-no-changes)");
    assert!(writes(&pve).is_empty(), "a dry run sent {:?}", writes(&pve));

    let dry = t.run_args(&["--json", "--dry-run", "configure-ips"]).status(0);
    let planned: Vec<String> = plan(&dry.stdout).iter().map(as_request).collect();
    let paths: Vec<&str> = planned.iter().map(|p| p.split(' ').nth(1).unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/nodes/pve1/qemu/101/config",
            "/nodes/pve1/qemu/102/config",
            "/nodes/pve2/qemu/201/config",
            "/nodes/pve2/qemu/202/config"
        ],
        "plan order is (node, vmid), not the order the workers finished"
    );
    // The dry-run lines on stderr are in the same order.
    let lines: Vec<&str> = dry.stderr.lines().filter(|l| l.contains("dry-run:")).collect();
    assert_eq!(lines.len(), 4, "{}", dry.stderr);
    for (line, path) in lines.iter().zip(&paths) {
        assert!(line.contains(&format!("would PUT {path} ")), "{line}");
    }
    dry.stderr_has("dry run: 4 change(s) planned, none made");
    assert!(writes(&pve).is_empty());

    t.run_args(&["configure-ips"]).status(0);
    let mut sent = writes(&pve);
    sent.sort();
    let mut expected = planned.clone();
    expected.sort();
    assert_eq!(sent, expected, "the real run sends exactly the plan, byte for byte");

    pve.clear_requests();
    t.run_args(&["--expect-no-changes", "configure-ips"]).status(0).stderr_has("dry run: nothing to change");
    assert!(writes(&pve).is_empty());
}

#[test]
fn power_dry_runs_plan_exactly_the_requests_the_real_run_sends() {
    let Some(pve) = lab() else { return };
    let t = Test::new().pve(&pve, None);
    let dry = t.run_args(&["--json", "--dry-run", "start"]).status(0);
    let planned: Vec<String> = plan(&dry.stdout).iter().map(as_request).collect();
    assert_eq!(planned.len(), 4);
    assert!(writes(&pve).is_empty());
    t.run_args(&["start"]).status(0);
    let mut sent = writes(&pve);
    sent.sort();
    assert_eq!(sent, planned, "planned in (node, vmid) order, the same requests");
    pve.clear_requests();
    t.run_args(&["--expect-no-changes", "start"]).status(0);
    let dry = t.run_args(&["--json", "--dry-run", "restart"]).status(0);
    let planned: Vec<String> = plan(&dry.stdout).iter().map(as_request).collect();
    t.run_args(&["restart"]).status(0);
    let mut sent = writes(&pve);
    sent.sort();
    assert_eq!(sent, planned);
    pve.clear_requests();
    let dry = t.run_args(&["--json", "--dry-run", "stop"]).status(0);
    let planned: Vec<String> = plan(&dry.stdout).iter().map(as_request).collect();
    t.run_args(&["stop"]).status(0);
    let mut sent = writes(&pve);
    sent.sort();
    assert_eq!(sent, planned);
}

#[test]
fn raw_requests_that_would_reach_another_path_are_refused_and_nothing_is_sent() {
    let Some(pve) = lab() else { return };
    let t = Test::new().pve(&pve, None);
    for (script, expect) in [
        (r#"pve::put("/nodes/pve1/qemu/101/config?delete=scsi0", #{})"#, "pass parameters in the map"),
        (r#"pve::put("/nodes/pve1/qemu/101/../../../../access/users", #{a: 1})"#, "`..` is not allowed"),
        ("pve::put(\"/nodes/pve1/qemu/10\\n1/config\", #{description: \"x\"})", "control character"),
        (r#"pve::post("/nodes/pve1/qemu/101/status/start#x", #{})"#, "`#`"),
        (r#"pve::get("/nodes/pve1/qemu/101/config?current=1")"#, "pass parameters in the map"),
        (r#"pve::start(#{node: "pve1/qemu/102/status/stop?x=", vmid: 101})"#, "VM node name"),
        (r#"pve::config(#{node: "..", vmid: 101})"#, "VM node name"),
        (r#"pve::put("/nodes/pve1/qemu/101/config", #{"a&b": 1})"#, "is not a parameter name"),
    ] {
        std::fs::write(t.path().join("s.rhai"), script).unwrap();
        let run = t.run_args(&["run", "s.rhai"]).status(1);
        assert!(run.stderr.contains(expect), "{script}: {}", run.stderr);
        let dry = t.run_args(&["--dry-run", "run", "s.rhai"]).status(1);
        assert!(dry.stderr.contains(expect), "{script} under --dry-run: {}", dry.stderr);
    }
    assert!(writes(&pve).is_empty(), "{:?}", writes(&pve));
    assert!(pve.requests().iter().all(|r| !r.api_path().contains("..") && r.query.is_empty()));
}

#[test]
fn no_shipped_script_or_module_tests_dry_run_to_avoid_a_change() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["scripts", "stdlib"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains("DRY_RUN"), "{} tests DRY_RUN: a change primitive decides that", path.display());
        }
    }
}

#[test]
fn help_offers_only_workflows_whose_script_exists_and_a_local_script_adds_one() {
    let help = Test::new().args(&["--help"]).run().status(0);
    for shipped in ["discover", "start", "configure-ips", "check-version"] {
        assert!(help.stdout.contains(&format!("  {shipped} ")), "{shipped} missing: {}", help.stdout);
    }
    let offered = |stdout: &str, name: &str| stdout.lines().any(|l| l.trim_start().starts_with(&format!("{name} ")));
    let completions = Test::new().args(&["completions", "bash"]).run().status(0);
    let local = Test::new().file("scripts/teardown.rhai", "info(\"local teardown\");");
    if !offered(&help.stdout, "teardown") {
        assert!(!completions.stdout.contains(" teardown "), "completions offer a workflow without a script");
        let help = local.run_args(&["--help"]).status(0);
        assert!(offered(&help.stdout, "teardown"), "a local scripts/teardown.rhai makes it appear: {}", help.stdout);
    }
    local.run_args(&["teardown"]).status(0).stderr_has("local teardown");
    // A shortcut without a script still answers, saying how to add one.
    let none = Test::new().args(&["snapshot"]).run();
    if !offered(&help.stdout, "snapshot") {
        none.status(2).stderr_has("snapshot");
    }
}
