//! `doctor` against the lab: a healthy site passes; each problem is one failing check that
//! names its node and its fix; nothing is ever changed.

use serde_json::{Value, json};

use crate::lab::k3s_lab::{Fault, K3sOptions};
use crate::provision::Site;

/// The report's rows (`--json`).
fn rows(stdout: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")).as_array().unwrap().clone()
}

fn failures(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .filter(|r| r["status"] == "fail")
        .map(|r| format!("{} {}: {}", r["check"].as_str().unwrap(), r["item"].as_str().unwrap(), r["detail"]))
        .collect()
}

#[test]
fn doctor_passes_on_a_healthy_lab_and_changes_nothing() {
    let Some(site) = Site::start(3, 1, &[], K3sOptions::default()) else { return };
    let run = site.test.run_args(&["--json", "doctor"]).status(0);
    let rows = rows(&run.stdout);
    assert!(failures(&rows).is_empty(), "{:?}", failures(&rows));
    for check in ["proxmox", "privileges", "node", "inventory", "guest agent", "ssh", "time", "disk", "vip"] {
        assert!(rows.iter().any(|r| r["check"] == check && r["status"] == "pass"), "no passing {check}: {rows:?}");
    }
    assert_eq!(rows.iter().filter(|r| r["check"] == "ssh").count(), 3, "one SSH check per node");
    assert!(site.lab.installs().is_empty() && site.lab.events_of("install-start").is_empty());
    // Read-only: a dry run of it plans nothing.
    site.test.run_args(&["--expect-no-changes", "doctor"]).status(0);
}

#[test]
fn doctor_names_sudo_with_a_password_a_duplicate_hostname_and_a_taken_vip() {
    let opts = K3sOptions { hostnames: vec![String::new(), "twin".into(), "twin".into()], ..K3sOptions::default() };
    let Some(site) = Site::start(3, 1, &[], opts) else { return };
    site.lab.set_fault(0, Fault::SudoPassword);
    let _taken = std::net::TcpListener::bind((site.lab.vip(), 6443)).unwrap();
    let run = site.test.run_args(&["--json", "doctor"]).status(1);
    let rows = rows(&run.stdout);
    let failed = failures(&rows);
    assert!(failed.iter().any(|f| f.starts_with("ssh pve1/101")), "{failed:?}");
    let sudo = rows.iter().find(|r| r["check"] == "ssh" && r["status"] == "fail").unwrap();
    assert!(sudo["fix"].as_str().unwrap().contains("NOPASSWD"), "{sudo}");
    assert!(failed.iter().any(|f| f.starts_with("hostname pve2/202") && f.contains("pve2/201")), "{failed:?}");
    assert!(failed.iter().any(|f| f.starts_with("vip")), "{failed:?}");
}

#[test]
fn doctor_names_a_token_without_power_management_and_a_stopped_guest_agent() {
    let privs = json!(["VM.Audit", "VM.Config.Network", "VM.Config.Cloudinit", "VM.Snapshot", "Sys.Audit"]);
    let Some(site) =
        Site::start_as(2, 1, &[], K3sOptions::default(), "k3sx@pve", json!([["k3sx@pve!k3sx", "/", privs]]))
    else {
        return;
    };
    // The guest agent of VM 201 stops answering.
    site.pve.command(json!({"cmd": "set_vm", "vmid": 201, "agent": null}));
    let run = site.test.run_args(&["--json", "doctor"]).status(1);
    let rows = rows(&run.stdout);
    let privileges = rows.iter().find(|r| r["check"] == "privileges").unwrap();
    assert_eq!(privileges["status"], "fail", "{privileges}");
    assert!(privileges["detail"].as_str().unwrap().contains("VM.PowerMgmt"), "{privileges}");
    assert!(!privileges["detail"].as_str().unwrap().contains("VM.Audit"), "{privileges}");
    let agent =
        rows.iter().find(|r| r["check"] == "guest agent" && r["item"].as_str().unwrap().contains("201")).unwrap();
    assert_ne!(agent["status"], "pass", "{agent}");
}
