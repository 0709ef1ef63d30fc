//! `configure-ips` against fakepve: planned before any write, sticky, idempotent, and only
//! what differs is written.

use std::process::Stdio;

use serde_json::{Value, json};

use crate::lab::pve::FakePve;
use crate::support::{PVE_TOKEN_SECRET, Test};

const CONFIG: &str = r#"{"network": {"range_start": "10.10.0.201", "range_end": "10.10.0.210", "cidr": 24,
    "gateway": "10.10.0.1", "dns_servers": ["10.10.0.1", "1.1.1.1"], "search_domain": "lab.example"}}"#;

fn vm(vmid: u32, status: &str, tags: &str, config: Value) -> Value {
    json!({"vmid": vmid, "name": format!("vm{vmid}"), "node": "pve1", "status": status, "tags": tags, "config": config})
}

fn puts(pve: &FakePve) -> Vec<(String, String)> {
    pve.requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .map(|r| (r.api_path().to_string(), r.body.clone()))
        .collect()
}

/// The VM's `ipconfig0` as PVE's config API shows it: pending changes applied (a running VM
/// keeps them pending until it restarts).
fn ipconfig(pve: &FakePve, vmid: u32) -> String {
    let vm = pve.vm(vmid);
    let value =
        if vm["pending"]["ipconfig0"].is_string() { &vm["pending"]["ipconfig0"] } else { &vm["config"]["ipconfig0"] };
    value.as_str().unwrap_or_default().to_string()
}

fn lab(vms: Vec<Value>) -> Option<FakePve> {
    FakePve::start(json!({"tokens": {"root@pam!k3sx": PVE_TOKEN_SECRET}, "vms": vms}))
}

#[test]
fn dry_run_writes_nothing_then_the_run_sets_every_vm_then_a_second_run_sends_no_put() {
    let Some(pve) = lab(vec![
        vm(101, "running", "k3s-server", json!({})),
        vm(102, "stopped", "k3s-agent", json!({"ipconfig0": "ip=dhcp"})),
        vm(103, "stopped", "k3s-agent", json!({})),
    ]) else {
        return;
    };
    let t = Test::new().pve(&pve, None).file("k3sx.json", CONFIG);
    let dry = t.run_args(&["--dry-run", "configure-ips"]).status(0);
    assert!(dry.stdout.contains("10.10.0.201/24"), "{}", dry.stdout);
    assert!(dry.stderr.contains("would PUT /nodes/pve1/qemu/101/config"), "{}", dry.stderr);
    assert!(puts(&pve).is_empty(), "a dry run wrote: {:?}", puts(&pve));

    let run = t.run_args(&["configure-ips"]).status(0);
    assert!(run.stderr.contains("3 VM(s) updated"), "{}", run.stderr);
    assert!(run.stderr.contains("1 running VM(s) need cloud-init regenerated and a reboot (k3sx configure-ips --restart does both): pve1/101 vm101"), "{}", run.stderr);
    assert!(
        run.stderr.contains("2 stopped VM(s) get their address at the next start: pve1/102 vm102, pve1/103 vm103"),
        "{}",
        run.stderr
    );
    assert_eq!(ipconfig(&pve, 101), "ip=10.10.0.201/24,gw=10.10.0.1");
    assert_eq!(ipconfig(&pve, 102), "ip=10.10.0.202/24,gw=10.10.0.1");
    assert_eq!(ipconfig(&pve, 103), "ip=10.10.0.203/24,gw=10.10.0.1");
    assert_eq!(pve.vm(102)["config"]["nameserver"], "10.10.0.1 1.1.1.1");
    assert_eq!(pve.vm(102)["config"]["searchdomain"], "lab.example");
    assert_eq!(pve.vm(101)["pending"]["nameserver"], "10.10.0.1 1.1.1.1");
    // Every PUT carried the digest of the config just read.
    assert!(puts(&pve).iter().all(|(_, body)| body.contains("digest=")), "{:?}", puts(&pve));

    pve.clear_requests();
    let again = t.run_args(&["configure-ips"]).status(0);
    assert!(again.stderr.contains("nothing to change"), "{}", again.stderr);
    assert!(puts(&pve).is_empty());
}

#[test]
fn addresses_are_sticky_when_a_vm_with_a_lower_vmid_joins() {
    let Some(pve) = lab(vec![
        vm(110, "stopped", "k3s-server", json!({"ipconfig0": "ip=10.10.0.205/24,gw=10.10.0.1"})),
        vm(111, "stopped", "k3s-agent", json!({"ipconfig0": "ip=10.10.0.201/24,gw=10.10.0.1"})),
        vm(100, "stopped", "k3s-agent", json!({})),
    ]) else {
        return;
    };
    let t = Test::new().pve(&pve, None).file("k3sx.json", CONFIG);
    t.run_args(&["configure-ips"]).status(0);
    assert_eq!(ipconfig(&pve, 110), "ip=10.10.0.205/24,gw=10.10.0.1");
    assert_eq!(ipconfig(&pve, 111), "ip=10.10.0.201/24,gw=10.10.0.1");
    // The newcomer, first in (node, vmid) order, gets the lowest free address, not .201.
    assert_eq!(ipconfig(&pve, 100), "ip=10.10.0.202/24,gw=10.10.0.1");
    // The VMs that kept their address got only nameserver and search domain.
    let (_, body) = puts(&pve).into_iter().find(|(p, _)| p.contains("/110/")).unwrap();
    assert!(!body.contains("ipconfig0"), "{body}");
}

#[test]
fn keys_in_another_order_count_as_unchanged() {
    let Some(pve) = lab(vec![vm(
        101,
        "stopped",
        "k3s-server",
        json!({"ipconfig0": "gw=10.10.0.1,ip=10.10.0.201/24", "nameserver": "10.10.0.1 1.1.1.1", "searchdomain": "lab.example"}),
    )]) else {
        return;
    };
    Test::new()
        .pve(&pve, None)
        .file("k3sx.json", CONFIG)
        .args(&["configure-ips"])
        .run()
        .status(0)
        .stderr_has("nothing to change");
    assert!(puts(&pve).is_empty());
}

#[test]
fn range_too_small_fails_before_any_write_saying_needed_and_free() {
    let config = CONFIG.replace("10.10.0.210", "10.10.0.202");
    let Some(pve) = lab((101..105).map(|id| vm(id, "stopped", "k3s-agent", json!({}))).collect()) else {
        return;
    };
    let run = Test::new().pve(&pve, None).file("k3sx.json", &config).args(&["configure-ips"]).run().status(1);
    assert!(run.stderr.contains("2 free address") && run.stderr.contains("4 VMs need one"), "{}", run.stderr);
    assert!(puts(&pve).is_empty());
}

#[test]
fn a_digest_mismatch_is_reported_for_that_vm_and_the_others_are_applied() {
    let Some(pve) = lab(vec![vm(101, "stopped", "k3s-server", json!({})), vm(102, "stopped", "k3s-agent", json!({}))])
    else {
        return;
    };
    pve.fail_named("PUT", "/qemu/102/config", "checksum_mismatch_file_change_other", Some(1));
    let run = Test::new().pve(&pve, None).file("k3sx.json", CONFIG).args(&["configure-ips"]).run().status(1);
    assert!(run.stderr.contains("pve1/102 vm102") && run.stderr.contains("changed by someone else"), "{}", run.stderr);
    assert_eq!(ipconfig(&pve, 101), "ip=10.10.0.201/24,gw=10.10.0.1");
    assert_eq!(ipconfig(&pve, 102), "");
}

#[test]
fn restart_applies_cloud_init_to_the_changed_vms() {
    let Some(pve) = lab(vec![vm(101, "running", "k3s-server", json!({})), vm(102, "stopped", "k3s-agent", json!({}))])
    else {
        return;
    };
    Test::new().pve(&pve, None).file("k3sx.json", CONFIG).args(&["configure-ips", "--restart"]).run().status(0);
    let paths: Vec<String> = pve.requests().into_iter().map(|r| format!("{} {}", r.method, r.api_path())).collect();
    assert!(paths.contains(&"PUT /nodes/pve1/qemu/101/cloudinit".to_string()), "{paths:?}");
    assert!(paths.contains(&"POST /nodes/pve1/qemu/101/status/reboot".to_string()), "{paths:?}");
    assert!(paths.contains(&"POST /nodes/pve1/qemu/102/status/start".to_string()), "{paths:?}");
    assert_eq!(pve.vm(102)["status"], "running");
}

#[test]
fn a_vm_on_an_offline_node_stops_the_plan_so_its_address_is_not_handed_out() {
    let Some(pve) = FakePve::start(json!({"tokens": {"root@pam!k3sx": PVE_TOKEN_SECRET},
        "nodes": ["pve1", {"name": "pve2", "online": false}],
        "vms": [vm(101, "stopped", "k3s-server", json!({})),
                {"vmid": 201, "name": "far", "node": "pve2", "status": "running", "tags": "k3s-agent",
                 "config": {"ipconfig0": "ip=10.10.0.201/24,gw=10.10.0.1"}}]}))
    else {
        return;
    };
    let run = Test::new().pve(&pve, None).file("k3sx.json", CONFIG).args(&["configure-ips"]).run().status(1);
    assert!(run.stderr.contains("pve2/201 far"), "{}", run.stderr);
    assert!(puts(&pve).is_empty());
}

#[test]
fn restart_later_still_applies_what_an_earlier_run_wrote() {
    let Some(pve) = lab(vec![vm(101, "running", "k3s-server", json!({}))]) else { return };
    let t = Test::new().pve(&pve, None).file("k3sx.json", CONFIG);
    t.run_args(&["configure-ips"]).status(0);
    pve.clear_requests();
    t.run_args(&["configure-ips", "--restart"]).status(0).stderr_has("nothing to change");
    let paths: Vec<String> = pve.requests().into_iter().map(|r| format!("{} {}", r.method, r.api_path())).collect();
    assert!(paths.contains(&"PUT /nodes/pve1/qemu/101/cloudinit".to_string()), "{paths:?}");
    assert!(paths.contains(&"POST /nodes/pve1/qemu/101/status/reboot".to_string()), "{paths:?}");
    // Now the drive is current: a third run restarts nothing.
    pve.clear_requests();
    t.run_args(&["configure-ips", "--restart"]).status(0);
    assert!(!pve.requests().iter().any(|r| r.method != "GET"), "{:?}", pve.requests());
}

#[test]
fn a_failed_cloud_init_regenerate_is_reported_and_the_other_vms_are_restarted() {
    let Some(pve) = lab(vec![vm(101, "running", "k3s-server", json!({})), vm(102, "running", "k3s-agent", json!({}))])
    else {
        return;
    };
    pve.fail("PUT", "/qemu/101/cloudinit", 500, "VM is locked (backup)", None);
    let run =
        Test::new().pve(&pve, None).file("k3sx.json", CONFIG).args(&["configure-ips", "--restart"]).run().status(1);
    assert!(run.stderr.contains("pve1/101 vm101: cloud-init not regenerated"), "{}", run.stderr);
    let paths: Vec<String> = pve.requests().into_iter().map(|r| format!("{} {}", r.method, r.api_path())).collect();
    assert!(paths.contains(&"POST /nodes/pve1/qemu/102/status/reboot".to_string()), "{paths:?}");
    assert!(!paths.contains(&"POST /nodes/pve1/qemu/101/status/reboot".to_string()), "{paths:?}");
}

#[test]
fn two_runs_at_once_are_serialised_and_never_hand_out_one_address_twice() {
    // Slow answers: both runs would read and plan before either wrote.
    let vms: Vec<Value> = (0..6).map(|i| vm(101 + i, "stopped", "k3s-agent", json!({}))).collect();
    let Some(pve) = FakePve::start(
        json!({"tokens": {"root@pam!k3sx": PVE_TOKEN_SECRET}, "latency": 0.05, "time_scale": 1, "vms": vms}),
    ) else {
        return;
    };
    let other = CONFIG.replace("10.10.0.201", "10.10.0.204").replace("10.10.0.210", "10.10.0.220");
    // Two sites, one workstation user: the same cache directory holds the lock.
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().to_str().unwrap();
    let a = Test::new().pve(&pve, None).env("XDG_CACHE_HOME", cache).file("k3sx.json", CONFIG).args(&["configure-ips"]);
    let b = Test::new().pve(&pve, None).env("XDG_CACHE_HOME", cache).file("k3sx.json", &other).args(&["configure-ips"]);
    let spawn = |t: &Test| t.command().stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (first, second) = (spawn(&a), spawn(&b));
    let (one, two) = (first.wait_with_output().unwrap(), second.wait_with_output().unwrap());
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(one.status.success() && two.status.success(), "{}\n---\n{}", stderr(&one), stderr(&two));
    assert!(
        stderr(&one).contains("waiting for another k3sx run") || stderr(&two).contains("waiting for another k3sx run"),
        "the runs were not serialised"
    );
    let addresses: Vec<String> = (101..107).map(|id| ipconfig(&pve, id)).collect();
    let mut unique = addresses.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6, "an address was handed out twice: {addresses:?}");
}
