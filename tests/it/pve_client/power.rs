//! Power actions, tasks and configuration writes against fakepve: round trips, failing and
//! locked VMs, concurrency, digests, timeouts and cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k3sx::pve::{PveClient, PveError, TaskOutcome, TaskState, Upid, WriteRequest};
use serde_json::{Value, json};

use super::{TOKEN_ID, TOKEN_SECRET, api_calls, token_settings};
use crate::lab::pve::FakePve;

fn never() -> bool {
    false
}

/// Starts fakepve with `vms` (and any other scenario keys in `extra`) and a token client.
fn lab(vms: Value, extra: Value) -> Option<(FakePve, PveClient)> {
    let mut scenario = json!({"tokens": {TOKEN_ID: TOKEN_SECRET}, "vms": vms});
    if let Value::Object(extra) = extra {
        scenario.as_object_mut().unwrap().extend(extra);
    }
    let pve = FakePve::start(scenario)?;
    let client = PveClient::new(token_settings(&pve)).unwrap();
    Some((pve, client))
}

fn wait(client: &PveClient, upid: &Upid) -> TaskOutcome {
    client.wait_task(upid, Duration::from_secs(30), &never, &mut |_| {}).unwrap()
}

/// A config write as the adapter sends it: built (a refused argument is `invalid`), then sent.
#[allow(clippy::result_large_err)] // the client's own error type, as its methods return it
fn set_config(
    client: &PveClient,
    node: &str,
    vmid: u32,
    changes: &[(String, Option<String>)],
    digest: Option<&str>,
) -> Result<(), PveError> {
    if changes.is_empty() {
        return Ok(());
    }
    let request = WriteRequest::set_config(node, vmid, changes, digest)
        .map_err(|message| PveError::Invalid { host: client.address().to_string(), message })?;
    client.send_write(&request).map(|_| ())
}

fn status(client: &PveClient, node: &str, vmid: u32) -> String {
    client.vm_status(node, vmid).unwrap().status
}

fn set(list: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    list.iter().map(|(k, v)| (k.to_string(), v.map(String::from))).collect()
}

fn posts(pve: &FakePve) -> Vec<String> {
    api_calls(pve).into_iter().filter(|c| !c.starts_with("GET ")).collect()
}

#[test]
fn start_reboot_shutdown_stop_round_trip_with_wait_task() {
    // 0.05 real seconds per PVE second: each action's task runs for 0.2 s, so waiting polls.
    let vm = json!([{"vmid": 101, "name": "s1", "node": "pve1", "status": "stopped",
                     "start_secs": 4, "shutdown_secs": 4}]);
    let Some((pve, client)) = lab(vm, json!({"time_scale": 0.05})) else {
        return;
    };
    let upid = client.send_task(&WriteRequest::start("pve1", 101).unwrap()).unwrap();
    assert_eq!((upid.node(), upid.task_type(), upid.vmid()), ("pve1", "qmstart", Some(101)));
    let mut seen: Vec<TaskState> = Vec::new();
    let outcome = client.wait_task(&upid, Duration::from_secs(30), &never, &mut |s| seen.push(s.clone())).unwrap();
    assert!(outcome.ok && outcome.exitstatus == "OK", "{outcome:?}");
    assert!(outcome.log_tail.is_empty(), "a clean OK reads no log: {outcome:?}");
    assert!(seen.first().is_some_and(TaskState::running), "the task was seen running first: {seen:?}");
    assert!(!seen.last().unwrap().running());
    assert_eq!(status(&client, "pve1", 101), "running");

    let upid = client.send_task(&WriteRequest::reboot("pve1", 101, Some(30)).unwrap()).unwrap();
    assert_eq!(upid.task_type(), "qmreboot");
    assert!(wait(&client, &upid).ok);
    // As on PVE, the reboot task ends with the guest down; a separate start brings it back.
    let mut looks = 0;
    let up = client.wait_status("pve1", 101, "running", Duration::from_secs(10), &never, &mut |_| looks += 1).unwrap();
    assert_eq!(up.status, "running");
    assert!(looks >= 1);

    let upid = client.send_task(&WriteRequest::shutdown("pve1", 101, Some(30), false).unwrap()).unwrap();
    assert!(wait(&client, &upid).ok);
    assert_eq!(status(&client, "pve1", 101), "stopped");

    assert!(wait(&client, &client.send_task(&WriteRequest::start("pve1", 101).unwrap()).unwrap()).ok);
    let upid = client.send_task(&WriteRequest::stop("pve1", 101).unwrap()).unwrap();
    assert_eq!(upid.task_type(), "qmstop");
    assert!(wait(&client, &upid).ok);
    assert_eq!(status(&client, "pve1", 101), "stopped");

    let tasks: Vec<String> = pve.tasks().iter().map(|t| t["type"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(tasks, ["qmstart", "qmreboot", "qmstart", "qmshutdown", "qmstart", "qmstop"]);
    let writes: Vec<(String, String)> =
        pve.requests().into_iter().filter(|r| r.method == "POST").map(|r| (r.api_path().to_string(), r.body)).collect();
    let base = "/nodes/pve1/qemu/101/status";
    assert_eq!(
        writes,
        [
            (format!("{base}/start"), String::new()),
            (format!("{base}/reboot"), "timeout=30".into()),
            (format!("{base}/shutdown"), "timeout=30".into()),
            (format!("{base}/start"), String::new()),
            (format!("{base}/stop"), String::new()),
        ]
    );
    assert!(
        api_calls(&pve).iter().any(|c| c.starts_with("GET /nodes/pve1/tasks/UPID:pve1:") && c.ends_with(":/status")),
        "the task is polled on its node, UPID unescaped"
    );
}

#[test]
fn failing_start_task_is_not_ok_and_carries_the_log_tail() {
    let vm = json!([{"vmid": 101, "node": "pve1", "status": "stopped", "start_error": "QEMU exited with code 1",
                     "task_log": {"qmstart": ["kvm: -drive file=/dev/pve/vm-101-disk-0: Could not open: No such file"]}}]);
    let Some((_pve, client)) = lab(vm, json!({})) else {
        return;
    };
    let upid = client
        .send_task(&WriteRequest::start("pve1", 101).unwrap())
        .expect("the start request itself succeeds; its task fails");
    let outcome = wait(&client, &upid);
    assert!(!outcome.ok);
    assert_eq!(outcome.exitstatus, "QEMU exited with code 1");
    assert!(outcome.log_tail.iter().any(|l| l.contains("Could not open")), "{:?}", outcome.log_tail);
    assert_eq!(outcome.log_tail.last().map(String::as_str), Some("TASK ERROR: QEMU exited with code 1"));
    let err = outcome.into_result().unwrap_err();
    assert_eq!(err.kind(), "task_failed");
    assert_eq!(err.vm(), Some(("pve1".to_string(), 101)));
    let text = err.to_string();
    assert!(text.contains("qmstart task of VM 101 on node `pve1` failed: QEMU exited with code 1"), "{text}");
    assert!(text.contains("Could not open"), "{text}");
    assert_eq!(status(&client, "pve1", 101), "stopped");
}

#[test]
fn locked_vm_is_refused_with_its_lock_named_and_nothing_retried() {
    let vms = json!([
        {"vmid": 105, "name": "busy", "node": "pve2", "status": "running", "lock": "backup"},
        {"vmid": 106, "name": "snap", "node": "pve2", "status": "stopped", "lock": "snapshot"}
    ]);
    let Some((pve, client)) = lab(vms, json!({})) else {
        return;
    };
    let err = client.send_task(&WriteRequest::shutdown("pve2", 105, Some(60), false).unwrap()).unwrap_err();
    assert!(matches!(&err, PveError::Locked { lock, vmid: 105, .. } if lock == "backup"), "{err}");
    assert_eq!(err.kind(), "locked");
    assert_eq!(err.vm(), Some(("pve2".to_string(), 105)));
    assert!(err.to_string().contains("VM 105 on node `pve2` is locked (backup)"), "{err}");
    assert_eq!(err.reason(), "VM locked (backup)");
    assert_eq!(client.send_task(&WriteRequest::stop("pve2", 105).unwrap()).unwrap_err().kind(), "locked");
    assert_eq!(client.send_task(&WriteRequest::reboot("pve2", 105, None).unwrap()).unwrap_err().kind(), "locked");
    let err = set_config(&client, "pve2", 105, &set(&[("description", Some("x"))]), None).unwrap_err();
    assert_eq!(err.kind(), "locked", "{err}");
    assert_eq!(
        client.send_write(&WriteRequest::regenerate_cloudinit("pve2", 105).unwrap()).unwrap_err().kind(),
        "locked"
    );
    // PVE checks the lock of a start inside its task.
    let outcome = wait(&client, &client.send_task(&WriteRequest::start("pve2", 106).unwrap()).unwrap());
    assert_eq!((outcome.ok, outcome.exitstatus.as_str()), (false, "VM is locked (snapshot)"));
    assert_eq!(outcome.into_result().unwrap_err().kind(), "locked");
    assert_eq!(posts(&pve).len(), 6, "every write sent once: {:?}", posts(&pve));
}

#[test]
fn held_config_lock_is_a_lock_timeout_for_writes_and_tasks() {
    let vms = json!([{"vmid": 101, "node": "pve1", "status": "stopped", "config_lock": true},
                     {"vmid": 102, "node": "pve1", "status": "stopped"}]);
    let Some((pve, client)) = lab(vms, json!({})) else {
        return;
    };
    let err = set_config(&client, "pve1", 101, &set(&[("description", Some("x"))]), None).unwrap_err();
    assert!(matches!(err, PveError::LockTimeout { vmid: 101, .. }), "{err}");
    assert!(err.to_string().contains("configuration lock is held by another task"), "{err}");
    let outcome = wait(&client, &client.send_task(&WriteRequest::start("pve1", 101).unwrap()).unwrap());
    assert!(!outcome.ok && outcome.exitstatus.contains("got timeout"), "{outcome:?}");
    assert_eq!(outcome.into_result().unwrap_err().kind(), "lock_timeout");
    // The other VM is not affected; once released, the first one works too.
    assert!(wait(&client, &client.send_task(&WriteRequest::start("pve1", 102).unwrap()).unwrap()).ok);
    pve.release_config_lock(101);
    assert!(wait(&client, &client.send_task(&WriteRequest::start("pve1", 101).unwrap()).unwrap()).ok);
}

#[test]
fn power_action_on_an_offline_node_is_unreachable_and_sent_once() {
    let vms = json!([{"vmid": 301, "node": "pve3", "status": "running"}]);
    let Some((pve, client)) = lab(vms, json!({"nodes": ["pve1", {"name": "pve3", "online": false}]})) else {
        return;
    };
    let err = client.send_task(&WriteRequest::shutdown("pve3", 301, Some(60), false).unwrap()).unwrap_err();
    assert_eq!(err.kind(), "unreachable", "{err}");
    assert_eq!(err.vm(), Some(("pve3".to_string(), 301)));
    assert_eq!(err.reason(), "node pve3 unreachable");
    assert!(err.to_string().contains("pve3"), "{err}");
    assert_eq!(api_calls(&pve), ["POST /nodes/pve3/qemu/301/status/shutdown"], "a write is not retried");
}

#[test]
fn shutdown_of_a_stopped_vm_is_refused_by_fakepve_as_not_running() {
    let vms = json!([{"vmid": 101, "node": "pve1", "status": "stopped"}]);
    let Some((_pve, client)) = lab(vms, json!({})) else {
        return;
    };
    let err = client.send_task(&WriteRequest::shutdown("pve1", 101, None, false).unwrap()).unwrap_err();
    assert_eq!(err.kind(), "not_running", "{err}");
    // Real PVE answers a task that does nothing; either way, check the status first.
    let upid = client.send_task(&WriteRequest::start("pve1", 101).unwrap()).unwrap();
    assert!(wait(&client, &upid).ok);
    let again = wait(&client, &client.send_task(&WriteRequest::start("pve1", 101).unwrap()).unwrap());
    assert_eq!(again.into_result().unwrap_err().kind(), "already_running");
}

#[test]
fn shutdown_timeout_fails_the_task_unless_force_stop() {
    let vms = json!([{"vmid": 101, "node": "pve1", "status": "running", "acpi": false},
                     {"vmid": 102, "node": "pve1", "status": "running", "acpi": false}]);
    let Some((pve, client)) = lab(vms, json!({})) else {
        return;
    };
    let outcome =
        wait(&client, &client.send_task(&WriteRequest::shutdown("pve1", 101, Some(5), false).unwrap()).unwrap());
    assert_eq!((outcome.ok, outcome.exitstatus.as_str()), (false, "VM quit/powerdown failed - got timeout"));
    assert_eq!(status(&client, "pve1", 101), "running");
    let outcome =
        wait(&client, &client.send_task(&WriteRequest::shutdown("pve1", 102, Some(5), true).unwrap()).unwrap());
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(status(&client, "pve1", 102), "stopped");
    let bodies: Vec<String> = pve.requests().into_iter().filter(|r| r.method == "POST").map(|r| r.body).collect();
    assert_eq!(bodies, ["timeout=5", "timeout=5&forceStop=1"]);
}

#[test]
fn twelve_shutdowns_of_five_seconds_from_twelve_threads_take_one_vm_time() {
    const ONE_VM: Duration = Duration::from_secs(5);
    let vms: Vec<Value> = (0..12)
        .map(|i| {
            json!({"vmid": 201 + i, "name": format!("k3s-{i}"), "node": if i % 2 == 0 { "pve1" } else { "pve2" },
                   "status": "running", "shutdown_secs": ONE_VM.as_secs()})
        })
        .collect();
    // Real time (1 real second per PVE second), a little latency on every answer.
    let Some((pve, client)) = lab(json!(vms), json!({"time_scale": 1, "latency": 0.02})) else {
        return;
    };
    let client = Arc::new(client);
    let polls = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..12u32)
        .map(|i| {
            let (client, polls) = (client.clone(), polls.clone());
            std::thread::spawn(move || {
                let node = if i % 2 == 0 { "pve1" } else { "pve2" };
                let upid = client.send_task(&WriteRequest::shutdown(node, 201 + i, Some(60), false).unwrap()).unwrap();
                let outcome = client
                    .wait_task(&upid, Duration::from_secs(30), &never, &mut |_| {
                        polls.fetch_add(1, Ordering::Relaxed);
                    })
                    .unwrap();
                (outcome.ok, outcome.elapsed)
            })
        })
        .collect();
    let results: Vec<(bool, Duration)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let total = started.elapsed();
    assert!(results.iter().all(|(ok, _)| *ok), "{results:?}");
    assert!(total >= ONE_VM, "the shutdowns really took their time: {total:?}");
    assert!(total < ONE_VM.mul_f64(1.5), "12 shutdowns in parallel took {total:?}, one takes {ONE_VM:?}");
    let stopped = (0..12u32).filter(|i| pve.vm(201 + i)["status"] == "stopped").count();
    assert_eq!(stopped, 12);
    // Backing off: about a dozen looks per VM in 5 s, not hundreds.
    let polls = polls.load(Ordering::Relaxed);
    assert!(polls <= 12 * 12, "{polls} task status polls");
    eprintln!("12 parallel shutdowns of {ONE_VM:?}: {total:?}, {polls} polls");
}

#[test]
fn wait_task_times_out_distinctly_and_can_be_cancelled() {
    // A 30 PVE-second shutdown at 0.1 real seconds each: 3 s.
    let vms = json!([{"vmid": 101, "node": "pve1", "status": "running", "shutdown_secs": 30}]);
    let Some((pve, client)) = lab(vms, json!({"time_scale": 0.1})) else {
        return;
    };
    let upid = client.send_task(&WriteRequest::shutdown("pve1", 101, Some(60), false).unwrap()).unwrap();
    let started = Instant::now();
    let mut looks = 0;
    let err = client.wait_task(&upid, Duration::from_secs(1), &never, &mut |_| looks += 1).unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(&err, PveError::TaskTimeout { vmid: Some(101), after, .. } if *after == Duration::from_secs(1)));
    assert_eq!((err.kind(), err.reason().as_str()), ("timeout", "timeout: task still running after 1s"));
    assert!(err.to_string().contains("qmshutdown task of VM 101") && err.to_string().contains(upid.as_str()), "{err}");
    assert!(waited >= Duration::from_secs(1) && waited < Duration::from_secs(3), "{waited:?}");
    assert!((2..=8).contains(&looks), "{looks} looks in one second");

    let cancelled = Arc::new(AtomicBool::new(false));
    let flag = cancelled.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        flag.store(true, Ordering::Relaxed);
    });
    let started = Instant::now();
    let err = client
        .wait_task(&upid, Duration::from_secs(30), &|| cancelled.load(Ordering::Relaxed), &mut |_| {})
        .unwrap_err();
    assert_eq!(err.kind(), "cancelled", "{err}");
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());

    // The task went on meanwhile; waiting again sees it through.
    assert!(wait(&client, &upid).ok);
    assert_eq!(pve.vm(101)["status"], "stopped");
    let err = client.wait_status("pve1", 101, "running", Duration::from_millis(600), &never, &mut |_| {}).unwrap_err();
    assert!(matches!(&err, PveError::StatusTimeout { last, .. } if last == "stopped"), "{err}");
    assert_eq!(err.kind(), "timeout");
}

#[test]
fn set_config_with_digest_keeps_values_intact_and_deletes_keys() {
    let vms = json!([{"vmid": 104, "name": "plain", "node": "pve1", "status": "stopped",
                      "config": {"searchdomain": "old.example", "ipconfig1": "ip=dhcp", "cores": 2}}]);
    let Some((pve, client)) = lab(vms, json!({})) else {
        return;
    };
    let before = client.vm_config("pve1", 104).unwrap();
    let digest = before["digest"].as_str().unwrap().to_string();
    let changes = set(&[
        ("ipconfig0", Some("ip=10.0.0.5/24,gw=10.0.0.1")),
        ("nameserver", Some("1.1.1.1 8.8.8.8")),
        ("searchdomain", Some("k3s.example lab.example")),
        ("description", Some("a;b&c = d+e%20f")),
        ("ipconfig1", None),
    ]);
    set_config(&client, "pve1", 104, &changes, Some(&digest)).unwrap();
    let config = &pve.vm(104)["config"];
    assert_eq!(config["ipconfig0"], "ip=10.0.0.5/24,gw=10.0.0.1");
    assert_eq!(config["nameserver"], "1.1.1.1 8.8.8.8");
    assert_eq!(config["searchdomain"], "k3s.example lab.example");
    assert_eq!(config["description"], "a;b&c = d+e%20f");
    assert!(config.get("ipconfig1").is_none(), "deleted: {config}");
    assert_eq!(config["cores"], 2, "other keys untouched");
    let put = pve.requests().into_iter().find(|r| r.method == "PUT").unwrap();
    assert!(put.body.contains("&delete=ipconfig1&digest="), "{}", put.body);

    // The digest read before the first write is stale now: refused, nothing written.
    let err = set_config(&client, "pve1", 104, &set(&[("nameserver", Some("9.9.9.9"))]), Some(&digest)).unwrap_err();
    assert!(matches!(err, PveError::DigestMismatch { vmid: 104, .. }), "{err}");
    assert_eq!(err.kind(), "digest_mismatch");
    assert!(err.to_string().contains("VM 104 on node `pve1`"), "{err}");
    assert_eq!(pve.vm(104)["config"]["nameserver"], "1.1.1.1 8.8.8.8");

    // No change: no request at all.
    pve.clear_requests();
    set_config(&client, "pve1", 104, &[], Some(&digest)).unwrap();
    assert!(pve.requests().is_empty());
    // A key given twice is refused before sending.
    let err = set_config(&client, "pve1", 104, &set(&[("cores", Some("2")), ("cores", None)]), None).unwrap_err();
    assert_eq!(err.kind(), "invalid", "{err}");
    assert!(pve.requests().is_empty());
}

#[test]
fn config_changed_between_read_and_write_is_refused_once_and_the_other_change_kept() {
    let vms = json!([{"vmid": 104, "node": "pve1", "status": "stopped",
                      "config_race": {"set": {"description": "edited elsewhere"}, "times": 1}}]);
    let Some((pve, client)) = lab(vms, json!({})) else {
        return;
    };
    let digest = client.vm_config("pve1", 104).unwrap()["digest"].as_str().unwrap().to_string();
    let changes = set(&[("nameserver", Some("1.1.1.1"))]);
    let err = set_config(&client, "pve1", 104, &changes, Some(&digest)).unwrap_err();
    assert_eq!(err.kind(), "digest_mismatch", "{err}");
    assert_eq!(api_calls(&pve).iter().filter(|c| c.starts_with("PUT")).count(), 1, "never retried blindly");
    let config = client.vm_config("pve1", 104).unwrap();
    assert_eq!(config["description"], "edited elsewhere");
    assert!(config.get("nameserver").is_none());
    // Read again, write again: accepted.
    set_config(&client, "pve1", 104, &changes, config["digest"].as_str()).unwrap();
    assert_eq!(pve.vm(104)["config"]["nameserver"], "1.1.1.1");
}

#[test]
fn running_vm_change_is_read_back_pending_applied_and_cloudinit_regenerates() {
    let vms = json!([{"vmid": 101, "node": "pve1", "status": "running",
                      "config": {"ipconfig0": "ip=10.0.0.9/24,gw=10.0.0.1", "ide2": "local-lvm:cloudinit,media=cdrom"}}]);
    let Some((pve, client)) = lab(vms, json!({})) else {
        return;
    };
    let digest = client.vm_config("pve1", 101).unwrap()["digest"].as_str().unwrap().to_string();
    set_config(&client, "pve1", 101, &set(&[("ipconfig0", Some("ip=10.0.0.5/24,gw=10.0.0.1"))]), Some(&digest))
        .unwrap();
    let state = pve.vm(101);
    assert_eq!(state["pending"]["ipconfig0"], "ip=10.0.0.5/24,gw=10.0.0.1", "running: pending in fakepve");
    assert_eq!(client.vm_config("pve1", 101).unwrap()["ipconfig0"], "ip=10.0.0.5/24,gw=10.0.0.1", "read back applied");
    assert_eq!(state["cloudinit"]["ipconfig0"], "ip=10.0.0.9/24,gw=10.0.0.1", "the drive still has the old one");
    let pending = client.get("/nodes/pve1/qemu/101/cloudinit", &[]).unwrap();
    assert!(pending.as_array().unwrap().iter().any(|i| i["key"] == "ipconfig0" && i.get("pending").is_some()));

    client.send_write(&WriteRequest::regenerate_cloudinit("pve1", 101).unwrap()).unwrap();
    let state = pve.vm(101);
    assert_eq!(state["cloudinit_regenerated"], 1);
    assert_eq!(state["cloudinit"]["ipconfig0"], "ip=10.0.0.5/24,gw=10.0.0.1");
    let pending = client.get("/nodes/pve1/qemu/101/cloudinit", &[]).unwrap();
    assert!(pending.as_array().unwrap().iter().all(|i| i.get("pending").is_none()), "{pending}");
    assert_eq!(api_calls(&pve).iter().filter(|c| c.as_str() == "PUT /nodes/pve1/qemu/101/cloudinit").count(), 1);

    // A reboot applies the pending value and rebuilds the drive too.
    assert!(wait(&client, &client.send_task(&WriteRequest::reboot("pve1", 101, None).unwrap()).unwrap()).ok);
    let state = pve.vm(101);
    assert_eq!(state["config"]["ipconfig0"], "ip=10.0.0.5/24,gw=10.0.0.1");
    assert_eq!(state["cloudinit_regenerated"], 2);
}

#[test]
fn backup_lock_ends_with_the_backup() {
    // A 4 PVE-second backup at 0.25 real seconds each: locked for 1 s.
    let vms = json!([{"vmid": 101, "node": "pve1", "status": "running", "backup_secs": 4}]);
    let Some((_pve, client)) = lab(vms, json!({"time_scale": 0.25})) else {
        return;
    };
    let err = client.send_task(&WriteRequest::shutdown("pve1", 101, None, false).unwrap()).unwrap_err();
    assert!(matches!(&err, PveError::Locked { lock, .. } if lock == "backup"), "{err}");
    std::thread::sleep(Duration::from_millis(1300));
    let upid = client.send_task(&WriteRequest::shutdown("pve1", 101, None, false).unwrap()).unwrap();
    assert!(wait(&client, &upid).ok);
}
