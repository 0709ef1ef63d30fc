//! `discover` and the `pve::` primitives against a real fakepve over HTTPS.

use serde_json::{Value, json};

use crate::lab::pve::{FakePve, PASSWORD};
use crate::support::{PVE_TOKEN_SECRET, Test};

fn scenario() -> Value {
    json!({
        "tokens": {"root@pam!k3sx": PVE_TOKEN_SECRET},
        "nodes": ["pve1", "pve2", {"name": "pve3", "online": false}],
        "vms": [
            {"vmid": 205, "name": "srv-b", "node": "pve2", "status": "running", "tags": "K3S-Server",
             "config": {"ipconfig0": "gw=10.10.0.1,ip=10.10.0.205/24"}},
            {"vmid": 301, "name": "srv-a", "node": "pve1", "status": "running", "tags": "k3s-server;prod",
             "config": {"ipconfig0": "ip=10.10.0.201/24,gw=10.10.0.1"}},
            {"vmid": 102, "name": "agent-a", "node": "pve1", "status": "running", "tags": "team-a,k3s-agent",
             "config": {"agent": "1"},
             "agent": {"interfaces": [
                {"name": "lo", "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
                {"name": "eth0", "ip-addresses": [
                    {"ip-address": "fe80::1", "ip-address-type": "ipv6", "prefix": 64},
                    {"ip-address": "10.10.0.77", "ip-address-type": "ipv4", "prefix": 24}]}]}},
            {"vmid": 103, "name": "store", "node": "pve1", "status": "stopped", "tags": "k3s-agent k3s-storage"},
            {"vmid": 100, "name": "tmpl", "node": "pve1", "status": "stopped", "tags": "k3s-server", "template": true},
            {"vmid": 110, "name": "untagged", "node": "pve1", "status": "running"},
            {"vmid": 120, "name": "far", "node": "pve3", "status": "running", "tags": "k3s-agent"}
        ],
        "cts": [{"vmid": 200, "name": "ct", "node": "pve1", "status": "running", "tags": "k3s-server"}]
    })
}

fn ids(list: &Value) -> Vec<u64> {
    list.as_array().unwrap().iter().map(|vm| vm["vmid"].as_u64().unwrap()).collect()
}

#[test]
fn classifies_by_tags_in_one_api_call() {
    let Some(pve) = FakePve::start(scenario()) else { return };
    let run = Test::new().pve(&pve, None).args(&["--json", "discover", "--no-ip"]).run().status(0);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    // Templates and containers are not nodes; tag spellings are normalised; order is (node, vmid).
    assert_eq!(ids(&out["servers"]), vec![301, 205]);
    assert_eq!(ids(&out["agents"]), vec![102, 103]);
    assert_eq!(ids(&out["storage"]), vec![103]);
    assert_eq!(out["bootstrap_server"]["vmid"], 301);
    assert_eq!(
        out["servers"][0],
        json!({"node": "pve1", "vmid": 301, "name": "srv-a", "status": "running", "tags": ["k3s-server", "prod"], "ip": null})
    );
    assert_eq!(
        out["warnings"],
        json!(["Proxmox node pve3 is offline: 1 K3s VM(s) on it are not listed (--include-unreachable lists them)"])
    );
    let requests = pve.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].api_path(), "/cluster/resources");
}

#[test]
fn password_auth_adds_only_the_ticket_request() {
    let Some(pve) = FakePve::start(scenario()) else { return };
    Test::new().pve(&pve, Some(PASSWORD)).args(&["discover", "--no-ip"]).run().status(0).stdout_has("srv-a");
    let paths: Vec<String> = pve.requests().iter().map(|r| r.api_path().to_string()).collect();
    assert_eq!(paths, vec!["/access/ticket", "/cluster/resources"]);
}

#[test]
fn addresses_come_from_ipconfig_then_the_guest_agent() {
    let Some(pve) = FakePve::start(scenario()) else { return };
    let run = Test::new().pve(&pve, None).args(&["--json", "discover"]).run().status(0);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    let ip = |list: &str, i: usize| out[list][i]["ip"].clone();
    assert_eq!(ip("servers", 0), "10.10.0.201");
    assert_eq!(ip("servers", 1), "10.10.0.205");
    assert_eq!(ip("agents", 0), "10.10.0.77");
    assert_eq!(ip("agents", 1), Value::Null);
    // Nothing is read for the VM on the offline node, nor twice for a VM with two roles.
    let paths: Vec<String> = pve.requests().iter().map(|r| r.api_path().to_string()).collect();
    assert!(!paths.iter().any(|p| p.contains("/120/")), "{paths:?}");
    assert_eq!(paths.iter().filter(|p| p.contains("/103/config")).count(), 1, "{paths:?}");
}

#[test]
fn table_lists_role_node_vmid_name_status_ip() {
    let Some(pve) = FakePve::start(scenario()) else { return };
    let run = Test::new().pve(&pve, None).args(&["discover"]).run().status(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["ROLE", "NODE", "VMID", "NAME", "STATUS", "IP"]);
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["server", "pve1", "301", "srv-a", "running", "10.10.0.201"]
    );
    assert_eq!(lines.len(), 6, "{}", run.stdout);
    assert!(run.stderr.contains("warn Proxmox node pve3 is offline"), "{}", run.stderr);
}

#[test]
fn include_unreachable_lists_vms_of_offline_nodes_as_unknown() {
    let Some(pve) = FakePve::start(scenario()) else { return };
    let run = Test::new().pve(&pve, None).args(&["--json", "discover", "--include-unreachable"]).run().status(0);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(ids(&out["agents"]), vec![102, 103, 120]);
    assert_eq!(out["agents"][2]["status"], "unknown");
    assert_eq!(out["agents"][2]["ip"], Value::Null);
}

#[test]
fn seed_inventory_replaces_tags_and_unknown_vmid_is_a_config_error() {
    let Some(pve) = FakePve::start(scenario()) else { return };
    let inventory = r#"{"nodes": [{"id": "pve2", "vms": [{"vmid": 205, "role": "SERVER", "name": "k3s-master-01", "ip": "10.10.0.50"}]},
                                  {"id": "pve1", "vms": [{"vmid": 110, "role": "agent"}]}]}"#;
    let run = Test::new().pve(&pve, None).file("config.json", inventory).args(&["--json", "discover"]).run().status(0);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(ids(&out["servers"]), vec![205]);
    assert_eq!(out["servers"][0]["ip"], "10.10.0.50");
    assert_eq!(out["servers"][0]["name"], "srv-b");
    assert_eq!(ids(&out["agents"]), vec![110]);
    let bad = r#"{"nodes": [{"id": "pve1", "vms": [{"vmid": 4242, "role": "SERVER"}]}]}"#;
    Test::new().pve(&pve, None).file("config.json", bad).args(&["discover"]).run().status(2).stderr_has("4242");
}

#[test]
fn no_server_is_a_warning_not_an_error() {
    let Some(pve) = FakePve::start(json!({"tokens": {"root@pam!k3sx": PVE_TOKEN_SECRET},
        "vms": [{"vmid": 101, "name": "a", "node": "pve1", "status": "running", "tags": "k3s-agent"}]}))
    else {
        return;
    };
    let run = Test::new().pve(&pve, None).args(&["--json", "discover", "--no-ip"]).run().status(0);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["bootstrap_server"], Value::Null);
    assert!(out["warnings"][0].as_str().unwrap().contains("no server VM tagged k3s-server"));
}

#[test]
fn tls_without_trust_exits_2_showing_the_fingerprint_and_the_three_settings() {
    let Some(pve) = FakePve::start(scenario()) else { return };
    let base = || Test::new().pve(&pve, None).env("PROXMOX_CA_FILE", "").args(&["discover", "--no-ip"]);
    let run = base().run().status(2);
    for needle in [pve.fingerprint(), "PROXMOX_CA_FILE", "PROXMOX_TLS_FINGERPRINT", "PROXMOX_SSL_VERIFY=false"] {
        assert!(run.stderr.contains(needle), "missing {needle}: {}", run.stderr);
    }
    assert!(pve.requests().is_empty());
    base().env("PROXMOX_TLS_FINGERPRINT", pve.fingerprint()).run().status(0).stdout_has("srv-a");
    let lower = pve.fingerprint().replace(':', "").to_lowercase();
    base().env("PROXMOX_TLS_FINGERPRINT", &lower).run().status(0).stdout_has("srv-a");
    let wrong = format!("00{}", &lower[2..]);
    base().env("PROXMOX_TLS_FINGERPRINT", &wrong).run().status(2).stderr_has(pve.fingerprint());
    let insecure = base().env("PROXMOX_SSL_VERIFY", "false").run().status(0).stdout_has("srv-a");
    assert_eq!(insecure.stderr.matches("TLS verification").count(), 1, "{}", insecure.stderr);
}

#[test]
fn wrong_password_exits_2_and_no_secret_appears_at_any_verbosity() {
    let Some(pve) = FakePve::start(scenario()) else { return };
    let wrong = "Wr0ng-p4ss;&word";
    for v in [&[][..], &["-v"][..], &["-vv"][..]] {
        let mut args: Vec<&str> = v.to_vec();
        args.extend(["discover", "--no-ip"]);
        let run = Test::new().pve(&pve, Some(wrong)).args(&args).run().status(2);
        assert!(
            run.stderr.contains(&format!("authentication failed for `root@pam` at {}", pve.host())),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains(wrong) && !run.stdout.contains(wrong), "password leaked at {v:?}");
        let ok = Test::new().pve(&pve, None).args(&args).run().status(0);
        assert!(
            !ok.stderr.contains(PVE_TOKEN_SECRET) && !ok.stdout.contains(PVE_TOKEN_SECRET),
            "token leaked at {v:?}"
        );
    }
}

#[test]
fn raw_put_sends_semicolons_and_ampersands_intact_and_dry_run_sends_nothing() {
    let Some(pve) = FakePve::start(scenario()) else { return };
    let put = "pve::put(\"/nodes/pve1/qemu/301/config\", #{description: \"a;b&c d\"});";
    let read = "print(pve::config(#{node: \"pve1\", vmid: 301}).description);";
    let t = Test::new().pve(&pve, None).file("p.rhai", &format!("{put}\n{read}")).file("dry.rhai", put);
    t.run_args(&["--dry-run", "run", "dry.rhai"])
        .status(0)
        .stderr_has("would PUT /nodes/pve1/qemu/301/config description=\"a;b&c d\"");
    assert!(!pve.requests().iter().any(|r| r.method == "PUT"), "dry run sent a PUT");
    t.run_args(&["run", "p.rhai"]).status(0).stdout_has("a;b&c d");
    let put = pve.requests().into_iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(put.body, "description=a%3Bb%26c%20d");
}

#[test]
fn missing_credentials_exit_2_naming_the_variables() {
    Test::new().env("PROXMOX_HOST", "127.0.0.9").args(&["discover"]).run().status(2).stderr_has("PROXMOX_API_TOKEN_ID");
    Test::new().args(&["discover"]).run().status(2).stderr_has("PROXMOX_HOST");
}
