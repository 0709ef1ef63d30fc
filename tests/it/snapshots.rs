//! `pve::snapshots`, `pve::snapshot`, `pve::rollback`, `pve::delete_snapshot` against fakepve:
//! tasks awaited, refusals classified (name in use, no such snapshot, a locked VM), dry runs
//! planned in order and never sent.

use serde_json::{Value, json};

use crate::lab::pve::FakePve;
use crate::support::{PVE_TOKEN_SECRET, Run, Test};

/// A lab with VM 101 (running) and whatever `more` VMs a test needs.
fn lab(more: &[Value]) -> Option<FakePve> {
    let mut vms = vec![json!({"vmid": 101, "name": "web", "node": "pve1", "status": "running", "tags": "k3s-server",
                              "config": {"ipconfig0": "ip=10.0.0.5/24,gw=10.0.0.1"}})];
    vms.extend_from_slice(more);
    FakePve::start(json!({"tokens": {"root@pam!k3sx": PVE_TOKEN_SECRET}, "vms": vms}))
}

/// Runs `source` with `vm` bound to VM `vmid` (`flags` go before `run`).
fn script(pve: &FakePve, flags: &[&str], vmid: u32, source: &str) -> Run {
    let source = format!("let vm = pve::vms().filter(|v| v.vmid == {vmid})[0];\n{source}");
    let t = Test::new().pve(pve, None).file("s.rhai", &source);
    let mut args = flags.to_vec();
    args.extend(["run", "s.rhai"]);
    t.run_args(&args)
}

/// The JSON values the script printed, one a line.
fn printed(run: &Run) -> Vec<Value> {
    run.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"))).collect()
}

/// `METHOD path` of every write fakepve received.
fn writes(pve: &FakePve) -> Vec<String> {
    pve.requests().into_iter().filter(|r| r.method != "GET").map(|r| format!("{} {}", r.method, r.api_path())).collect()
}

#[test]
fn a_snapshot_is_created_listed_rolled_back_to_and_deleted() {
    let Some(pve) = lab(&[]) else { return };
    let run = script(
        &pve,
        &[],
        101,
        r#"let t = pve::snapshot(vm, "pre-upgrade", #{vmstate: true, description: "before v1.31"});
           print(to_json(pve::wait_task(t, 30)));
           pve::wait_task(pve::snapshot(vm, "second"), 30);
           print(to_json(pve::snapshots(vm)));"#,
    )
    .status(0);
    let out = printed(&run);
    assert_eq!((out[0]["ok"].as_bool(), out[0]["planned"].as_bool()), (Some(true), Some(false)), "{}", out[0]);
    let list = out[1].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["pre-upgrade", "second"], "`current` is left out");
    assert_eq!(list[0]["description"], "before v1.31");
    assert_eq!((list[0]["vmstate"].as_bool(), list[1]["vmstate"].as_bool()), (Some(true), Some(false)));
    assert_eq!((&list[0]["parent"], &list[1]["parent"]), (&Value::Null, &json!("pre-upgrade")));
    assert!(list[0]["time"].as_i64().is_some_and(|t| t > 1_600_000_000), "{}", list[0]);
    let create = pve.requests().into_iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(create.api_path(), "/nodes/pve1/qemu/101/snapshot");
    assert_eq!(create.body, "snapname=pre-upgrade&vmstate=1&description=before%20v1.31");

    // Someone changes the VM; the rollback brings the configuration back (and stops the VM).
    pve.change_config(101, json!({"ipconfig0": "ip=10.0.0.99/24"}));
    pve.clear_requests();
    script(&pve, &[], 101, r#"pve::wait_task(pve::rollback(vm, "pre-upgrade"), 30);"#).status(0);
    assert_eq!(writes(&pve), ["POST /nodes/pve1/qemu/101/snapshot/pre-upgrade/rollback"]);
    let state = pve.vm(101);
    assert_eq!(state["config"]["ipconfig0"], "ip=10.0.0.5/24,gw=10.0.0.1", "{state}");
    assert_eq!(state["status"], "stopped");

    pve.clear_requests();
    let run = script(
        &pve,
        &[],
        101,
        r#"for s in pve::snapshots(vm) { pve::wait_task(pve::delete_snapshot(vm, s.name), 30); }
           print(to_json(pve::snapshots(vm)));"#,
    )
    .status(0);
    assert_eq!(printed(&run), [json!([])]);
    assert_eq!(
        writes(&pve),
        ["DELETE /nodes/pve1/qemu/101/snapshot/pre-upgrade", "DELETE /nodes/pve1/qemu/101/snapshot/second"]
    );
}

#[test]
fn a_name_in_use_is_snapshot_exists_from_the_task_and_from_a_direct_answer() {
    let Some(pve) = lab(&[]) else { return };
    let catch = r#"pve::wait_task(pve::snapshot(vm, "pre"), 30);
        try { pve::wait_task(pve::snapshot(vm, "pre"), 30); } catch (e) { print(to_json(e)); }"#;
    let e = printed(&script(&pve, &[], 101, catch).status(0)).remove(0);
    assert_eq!(e["kind"], "snapshot_exists", "{e}");
    assert_eq!(e["reason"], "snapshot `pre` already exists");
    assert_eq!(e["exitstatus"], "snapshot name 'pre' already used");
    assert_eq!(e["item"], "pve1/101 web");
    // PVE answering the POST itself with the refusal (no task) is the same kind.
    pve.fail("POST", "/nodes/pve1/qemu/101/snapshot", 500, "snapshot name 'other' already used", Some(1));
    let direct = r#"try { pve::snapshot(vm, "other"); } catch (e) { print(to_json(e)); }"#;
    let e = printed(&script(&pve, &[], 101, direct).status(0)).remove(0);
    assert_eq!((e["kind"].as_str(), e["status"].as_i64()), (Some("snapshot_exists"), Some(500)), "{e}");
    assert!(e["message"].as_str().unwrap().contains("VM 101 on node `pve1` already has a snapshot `other`"), "{e}");
    // Uncaught, the run fails naming the VM and the snapshot.
    script(&pve, &[], 101, r#"pve::wait_task(pve::snapshot(vm, "pre"), 30);"#)
        .status(1)
        .stderr_has("snapshot name 'pre' already used");
}

#[test]
fn snapshot_and_rollback_of_a_locked_vm_fail_as_locked() {
    let Some(pve) = lab(&[]) else { return };
    script(&pve, &[], 101, r#"pve::wait_task(pve::snapshot(vm, "pre"), 30);"#).status(0);
    pve.lock_vm(101, "backup");
    let run = script(
        &pve,
        &[],
        101,
        r#"try { pve::wait_task(pve::snapshot(vm, "again"), 30); } catch (e) { print(to_json(e)); }
           try { pve::wait_task(pve::rollback(vm, "pre"), 30); } catch (e) { print(to_json(e)); }"#,
    )
    .status(0);
    let out = printed(&run);
    assert_eq!(out.len(), 2, "{}", run.stdout);
    for e in &out {
        assert_eq!((e["kind"].as_str(), e["reason"].as_str()), (Some("locked"), Some("VM locked (backup)")), "{e}");
    }
    assert_eq!(pve.vm(101)["status"], "running", "the refused rollback did not stop the VM");
}

#[test]
fn a_failed_rollback_task_carries_its_log_tail() {
    // VM 102 is a template: PVE refuses to roll one back, inside the task, after logging.
    let template = json!({"vmid": 102, "name": "tmpl", "node": "pve1", "status": "stopped", "template": true,
                          "task_log": {"qmrollback": ["rolling back scsi0 of VM 102"]}});
    let Some(pve) = lab(&[template]) else { return };
    pve.set_vm(101, json!({"task_log": {"qmrollback": ["looking for snapshot 'gone' of VM 101"]}}));
    let catch = r#"try { pve::wait_task(pve::rollback(vm, "gone"), 30); } catch (e) { print(to_json(e)); }"#;
    let e = printed(&script(&pve, &[], 102, catch).status(0)).remove(0);
    assert_eq!(e["kind"], "task_failed", "{e}");
    assert_eq!(e["exitstatus"], "you can't rollback if vm is a template");
    let tail: Vec<&str> = e["log_tail"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(tail.first(), Some(&"rolling back scsi0 of VM 102"), "{e}");
    assert_eq!(tail.last(), Some(&"TASK ERROR: you can't rollback if vm is a template"), "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.starts_with("qmrollback task of VM 102 on node `pve1` failed"), "{message}");
    assert!(message.contains("rolling back scsi0 of VM 102"), "{message}");
    // A snapshot that does not exist: classified, with the log all the same.
    let e = printed(&script(&pve, &[], 101, catch).status(0)).remove(0);
    assert_eq!(
        (e["kind"].as_str(), e["reason"].as_str()),
        (Some("snapshot_missing"), Some("no snapshot `gone`")),
        "{e}"
    );
    assert!(e["log_tail"].as_array().unwrap().iter().any(|l| l == "looking for snapshot 'gone' of VM 101"), "{e}");
}

#[test]
fn dry_run_sends_no_snapshot_write_and_prints_each_in_plan_order() {
    let Some(pve) = lab(&[]) else { return };
    let run = script(
        &pve,
        &["--dry-run"],
        101,
        r#"let t = pve::snapshot(vm, "pre", #{vmstate: true, description: "before the upgrade"});
           print(to_json(#{planned: t.planned(), outcome: pve::wait_task(t, 30)}));
           pve::wait_task(pve::rollback(vm, "pre"), 30);
           pve::wait_task(pve::delete_snapshot(vm, "pre"), 30);
           print(to_json(pve::snapshots(vm)));"#,
    )
    .status(0);
    let out = printed(&run);
    assert_eq!(out[0]["planned"], true, "{}", out[0]);
    assert_eq!(out[0]["outcome"]["planned"], true);
    assert_eq!(out[1], json!([]), "the list is read, and nothing was created");
    assert_eq!(writes(&pve), Vec::<String>::new());
    let lines = [
        "pve1/101 web: would POST /nodes/pve1/qemu/101/snapshot snapname=pre vmstate=1 description=\"before the upgrade\"",
        "pve1/101 web: would POST /nodes/pve1/qemu/101/snapshot/pre/rollback",
        "pve1/101 web: would DELETE /nodes/pve1/qemu/101/snapshot/pre",
    ];
    let at: Vec<usize> = lines
        .iter()
        .map(|l| run.stderr.find(l).unwrap_or_else(|| panic!("stderr lacks {l:?}:\n{}", run.stderr)))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "not in plan order:\n{}", run.stderr);
}

#[test]
fn a_bad_name_or_option_is_refused_before_anything_is_sent() {
    let Some(pve) = lab(&[]) else { return };
    let run = script(
        &pve,
        &[],
        101,
        r#"for attempt in [|vm| pve::snapshot(vm, "a"), |vm| pve::snapshot(vm, "current"), |vm| pve::rollback(vm, "pre.1"),
                       |vm| pve::delete_snapshot(vm, "pre/../x"), |vm| pve::snapshot(vm, "pre", #{vm_state: true}),
                       |vm| pve::snapshot(vm, "pre", #{vmstate: "yes"})] {
               try { attempt.call(vm); print("sent"); } catch (e) { print(to_json(#{kind: e.kind, message: e.message})); }
           }"#,
    )
    .status(0);
    let out = printed(&run);
    assert_eq!(out.len(), 6, "{}", run.stdout);
    for (e, needle) in out.iter().zip(["at least 2", "reserved", "contains `.`", "contains `/`", "`vm_state`", "bool"])
    {
        assert_eq!(e["kind"], "argument", "{e}");
        assert!(e["message"].as_str().unwrap().contains(needle), "{needle}: {e}");
    }
    assert_eq!(writes(&pve), Vec::<String>::new());
}
