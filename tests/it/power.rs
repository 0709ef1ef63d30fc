//! `start`, `stop`, `restart` against fakepve: every VM at once, each task awaited, failures
//! named with their reasons, nothing sent to VMs already in the wanted state.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::lab::pve::FakePve;
use crate::support::{PVE_TOKEN_SECRET, Test};

fn vm(vmid: u32, node: &str, status: &str, tags: &str) -> Value {
    json!({"vmid": vmid, "name": format!("vm{vmid}"), "node": node, "status": status, "tags": tags})
}

/// The power requests fakepve received, sorted (VMs are handled in parallel).
fn power_requests(pve: &FakePve) -> Vec<String> {
    let mut sent = pve
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.api_path().contains("/status/"))
        .map(|r| r.api_path().to_string())
        .collect::<Vec<_>>();
    sent.sort();
    sent
}

/// The JSON documents on stdout: the table's rows, then the plan (`{"plan": [...]}`) when the
/// run changed or planned anything.
fn documents(stdout: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(stdout).into_iter::<Value>().map(Result::unwrap).collect()
}

fn rows(stdout: &str) -> Vec<Value> {
    documents(stdout)[0].as_array().unwrap().clone()
}

#[test]
fn start_sends_nothing_to_running_vms_and_waits_for_the_others() {
    let Some(pve) = FakePve::start(json!({"tokens": {"root@pam!k3sx": PVE_TOKEN_SECRET},
        "vms": [vm(101, "pve1", "running", "k3s-server"), vm(102, "pve1", "stopped", "k3s-agent"), vm(103, "pve2", "stopped", "k3s-agent")]}))
    else {
        return;
    };
    let run = Test::new().pve(&pve, None).args(&["--json", "start"]).run().status(0);
    let rows = rows(&run.stdout);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["result"], "already running");
    assert_eq!(rows[1]["result"], "started");
    assert_eq!(power_requests(&pve), vec!["/nodes/pve1/qemu/102/status/start", "/nodes/pve2/qemu/103/status/start"]);
    assert_eq!(pve.vm(102)["status"], "running");
    // A second start touches nothing.
    pve.clear_requests();
    Test::new().pve(&pve, None).args(&["start"]).run().status(0).stdout_has("already running");
    assert!(power_requests(&pve).is_empty());
}

#[test]
fn stop_of_stopped_vms_sends_no_power_request_and_dry_run_sends_none_at_all() {
    let Some(pve) = FakePve::start(json!({"tokens": {"root@pam!k3sx": PVE_TOKEN_SECRET},
        "vms": [vm(101, "pve1", "stopped", "k3s-server"), vm(102, "pve1", "running", "k3s-agent")]}))
    else {
        return;
    };
    Test::new()
        .pve(&pve, None)
        .args(&["--dry-run", "stop"])
        .run()
        .status(0)
        .stderr_has("would POST /nodes/pve1/qemu/102/status/shutdown");
    assert!(power_requests(&pve).is_empty());
    let run = Test::new().pve(&pve, None).args(&["--json", "stop"]).run().status(0);
    let rows = rows(&run.stdout);
    assert_eq!(rows[0]["result"], "already stopped");
    assert_eq!(rows[1]["result"], "stopped");
    assert_eq!(power_requests(&pve), vec!["/nodes/pve1/qemu/102/status/shutdown"]);
}

#[test]
fn failures_are_named_with_reasons_and_the_others_succeed() {
    let failing = json!({"vmid": 104, "name": "vm104", "node": "pve1", "status": "stopped", "tags": "k3s-agent",
                         "start_error": "no bootable device"});
    let locked = json!({"vmid": 105, "name": "vm105", "node": "pve1", "status": "stopped", "tags": "k3s-agent", "lock": "backup"});
    let Some(pve) = FakePve::start(json!({"tokens": {"root@pam!k3sx": PVE_TOKEN_SECRET},
        "nodes": ["pve1", {"name": "pve3", "online": false}],
        "vms": [vm(101, "pve1", "stopped", "k3s-server"), vm(102, "pve1", "stopped", "k3s-agent"), failing, locked,
                vm(301, "pve3", "stopped", "k3s-agent")]}))
    else {
        return;
    };
    let run = Test::new().pve(&pve, None).args(&["start"]).run().status(1);
    assert!(run.stderr.contains("3 of 5 VMs failed: pve1/104 vm104, pve1/105 vm105, pve3/301 vm301"), "{}", run.stderr);
    // Each failure is in the table once, with its reason.
    let line = |vm: &str| run.stdout.lines().find(|l| l.starts_with(vm)).unwrap_or_default().to_string();
    assert!(line("pve1/104").contains("task failed: no bootable device"), "{}", run.stdout);
    assert!(line("pve1/105").contains("VM locked (backup)"), "{}", run.stdout);
    assert!(line("pve3/301").contains("node pve3 unreachable"), "{}", run.stdout);
    assert_eq!(pve.vm(101)["status"], "running");
    assert_eq!(pve.vm(102)["status"], "running");
    // The locked VM and the one on the offline node were not even asked.
    let sent = power_requests(&pve);
    assert!(!sent.iter().any(|p| p.contains("/105/") || p.contains("/301/")), "{sent:?}");
}

#[test]
fn a_start_refused_because_the_vm_got_locked_is_reported_as_locked_with_the_task_log() {
    // The lock is taken after discovery: the start task itself fails on it.
    let locking = json!({"vmid": 104, "name": "vm104", "node": "pve1", "status": "stopped", "tags": "k3s-agent",
                         "start_error": "VM is locked (snapshot)"});
    let Some(pve) = FakePve::start(json!({"tokens": {"root@pam!k3sx": PVE_TOKEN_SECRET}, "vms": [locking]})) else {
        return;
    };
    let run = Test::new().pve(&pve, None).args(&["--json", "start"]).run().status(1);
    let rows = rows(&run.stdout);
    assert_eq!((rows[0]["kind"].as_str(), rows[0]["result"].as_str()), (Some("locked"), Some("VM locked (snapshot)")));
    // The error map a script catches: the classified kind, the reason and the task's log tail.
    let t = Test::new().pve(&pve, None).file(
        "s.rhai",
        "let vm = pve::vms()[0];\ntry { pve::wait_task(pve::start(vm), 30); } catch (e) { print(to_json(e)); }",
    );
    let run = t.run_args(&["run", "s.rhai"]).status(0);
    let e: Value = serde_json::from_str(run.stdout.lines().next().unwrap()).unwrap();
    assert_eq!((e["kind"].as_str(), e["reason"].as_str()), (Some("locked"), Some("VM locked (snapshot)")), "{e}");
    assert!(e["log_tail"].as_array().is_some_and(|t| t.iter().any(|l| l.as_str().unwrap().contains("locked"))), "{e}");
    assert_eq!(e["item"], "pve1/104 vm104");
}

#[test]
fn restart_reboots_running_and_starts_stopped_vms_and_narrows_by_role_and_vm() {
    let Some(pve) = FakePve::start(json!({"tokens": {"root@pam!k3sx": PVE_TOKEN_SECRET},
        "vms": [vm(101, "pve1", "running", "k3s-server"), vm(102, "pve1", "stopped", "k3s-agent"), vm(103, "pve1", "running", "k3s-agent")]}))
    else {
        return;
    };
    let run = Test::new().pve(&pve, None).args(&["--json", "restart", "--role", "agent"]).run().status(0);
    let rows = rows(&run.stdout);
    assert_eq!(rows.iter().map(|r| r["action"].as_str().unwrap()).collect::<Vec<_>>(), vec!["start", "reboot"]);
    assert_eq!(power_requests(&pve), vec!["/nodes/pve1/qemu/102/status/start", "/nodes/pve1/qemu/103/status/reboot"]);
    pve.clear_requests();
    Test::new().pve(&pve, None).args(&["restart", "--vm", "101"]).run().status(0).stdout_has("rebooted");
    assert_eq!(power_requests(&pve), vec!["/nodes/pve1/qemu/101/status/reboot"]);
    Test::new().pve(&pve, None).args(&["restart", "--vm", "999"]).run().status(2).stderr_has("999");
    Test::new()
        .pve(&pve, None)
        .args(&["restart", "--role", "boss"])
        .run()
        .status(2)
        .stderr_has("'boss'")
        .stderr_has("server, agent, storage");
}

#[test]
fn stop_waits_for_slow_shutdowns_in_parallel() {
    // 6 VMs whose guests take 2 s each to shut down: all at once, so about one VM's time.
    let vms: Vec<Value> = (101..107)
        .map(|id| json!({"vmid": id, "name": format!("vm{id}"), "node": "pve1", "status": "running", "tags": "k3s-agent", "shutdown_secs": 2}))
        .collect();
    let Some(pve) = FakePve::start(json!({"tokens": {"root@pam!k3sx": PVE_TOKEN_SECRET}, "time_scale": 1, "vms": vms}))
    else {
        return;
    };
    let start = Instant::now();
    Test::new().pve(&pve, None).args(&["stop"]).run().status(0);
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(2), "did not wait for the tasks: {took:?}");
    assert!(took < Duration::from_secs(5), "not parallel: {took:?}");
    for id in 101..107 {
        assert_eq!(pve.vm(id)["status"], "stopped");
    }
}

#[test]
fn stop_reports_a_shutdown_timeout_and_force_hard_stops_the_vm() {
    // The guest ignores ACPI: a graceful shutdown can never finish.
    let stubborn =
        json!({"vmid": 101, "name": "vm101", "node": "pve1", "status": "running", "tags": "k3s-server", "acpi": false});
    let Some(pve) =
        FakePve::start(json!({"tokens": {"root@pam!k3sx": PVE_TOKEN_SECRET}, "time_scale": 1, "vms": [stubborn]}))
    else {
        return;
    };
    let run = Test::new().pve(&pve, None).args(&["stop", "--timeout", "1"]).run().status(1);
    assert!(run.stdout.contains("task failed: VM quit/powerdown failed - got timeout"), "{}", run.stdout);
    assert_eq!(pve.vm(101)["status"], "running");
    let run = Test::new().pve(&pve, None).args(&["--json", "stop", "--timeout", "1", "--force"]).run().status(0);
    assert_eq!(rows(&run.stdout)[0]["action"], "shutdown (force)");
    assert_eq!(pve.vm(101)["status"], "stopped");
}

#[test]
fn run_of_a_workflow_script_gets_the_flag_defaults_and_arg_cannot_replace_a_flag() {
    let Some(pve) = FakePve::start(json!({"tokens": {"root@pam!k3sx": PVE_TOKEN_SECRET},
        "vms": [vm(101, "pve1", "stopped", "k3s-server"), vm(102, "pve1", "stopped", "k3s-agent")]}))
    else {
        return;
    };
    let t = Test::new().pve(&pve, None);
    t.run_args(&["run", "discover", "--arg", "no_ip=true"]).status(0).stdout_has("vm101");
    t.run_args(&["run", "start", "--arg", "vm=102"]).status(0).stdout_has("started");
    assert_eq!(power_requests(&pve), vec!["/nodes/pve1/qemu/102/status/start"]);
    t.run_args(&["start", "--arg", "vm=101"]).status(2).stderr_has("use --vm");
}

#[test]
fn an_unknown_vm_names_the_vmids_that_can_be_selected() {
    let Some(pve) = FakePve::start(json!({"tokens": {"root@pam!k3sx": PVE_TOKEN_SECRET},
        "vms": [vm(101, "pve1", "running", "k3s-server"), vm(102, "pve1", "running", "k3s-agent"), vm(200, "pve1", "running", "web")]}))
    else {
        return;
    };
    let run = Test::new().pve(&pve, None).args(&["stop", "--vm", "999"]).run().status(2);
    assert!(run.stderr.contains("--vm 999: not among the selected K3s VMs (101, 102)"), "{}", run.stderr);
    let run = Test::new().pve(&pve, None).args(&["stop", "--role", "agent", "--vm", "101"]).run().status(2);
    assert!(run.stderr.contains("--vm 101: not among the selected K3s VMs (102)"), "{}", run.stderr);
}
