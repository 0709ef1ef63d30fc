//! `pve::` — the Proxmox API: the cluster in one call, per-VM reads, and a raw escape hatch.
//!
//! A VM is a map `#{node, vmid, name, status, tags, template, lock}`; functions taking a VM
//! accept any map with `node` and `vmid` (what `pve::vms()` and the inventory return).

use std::sync::Arc;

use rhai::{Array, Dynamic, INT, Map, Module};
use serde_json::Value;

use std::time::Duration;

use super::{RhaiResult, pve_error, register, register_method, script_error, vm_ref};
use crate::change::{Applied, Change};
use crate::pve::{
    ApiPath, NodeInfo, ParamValue, PveClient, PveError, TaskOutcome, Upid, Vm, WriteMethod, WriteRequest,
};
use crate::script::Host;
use crate::secret::Secret;

pub fn module(host: &Arc<Host>) -> Module {
    let mut m = Module::new();
    register_reads(&mut m, host);
    register_power(&mut m, host);
    register_config_writes(&mut m, host);
    register_snapshots(&mut m, host);
    register_raw(&mut m, host);
    m
}

fn register_reads(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    register(
        m,
        "cluster",
        &["Map"],
        "The whole cluster in ONE API call (`GET /cluster/resources`): `#{nodes, vms}`.\n\
         `nodes`: `#{name, status, online}`; `vms`: QEMU guests only (containers dropped),\n\
         templates included with `template: true`.\n\n```rhai\nlet c = pve::cluster();\nlet offline = c.nodes.filter(|n| !n.online);\n```",
        move || -> RhaiResult<Map> {
            let cluster = h.pve().and_then(|c| c.cluster()).map_err(pve_error(None))?;
            let mut m = Map::new();
            m.insert("nodes".into(), cluster.nodes.iter().map(node_map).collect::<Array>().into());
            m.insert("vms".into(), cluster.vms.iter().map(vm_map).collect::<Array>().into());
            Ok(m)
        },
    );
    let h = host.clone();
    register(
        m,
        "vms",
        &["Array"],
        "Every QEMU VM of the cluster in one API call, as `#{node, vmid, name, status, tags, template, lock}`.\n\
         `tags` are split and normalised (lower case; `;`, `,` and spaces separate them).\n\n\
         ```rhai\nlet servers = pve::vms().filter(|vm| \"k3s-server\" in vm.tags && !vm.template);\n```",
        move || -> RhaiResult<Array> {
            let cluster = h.pve().and_then(|c| c.cluster()).map_err(pve_error(None))?;
            Ok(cluster.vms.iter().map(vm_map).collect())
        },
    );
    let h = host.clone();
    register(
        m,
        "nodes",
        &["Array"],
        "The Proxmox nodes (`GET /nodes`): `#{name, status, online}`.",
        move || -> RhaiResult<Array> {
            let nodes = h.pve().and_then(|c| c.nodes()).map_err(pve_error(None))?;
            Ok(nodes.iter().map(node_map).collect())
        },
    );
    let h = host.clone();
    register(
        m,
        "config",
        &["vm: Map", "Map"],
        "The VM's configuration with pending changes applied, including `digest`\n\
         (e.g. `ipconfig0`, `nameserver`, `searchdomain`, `agent`).\n\n```rhai\nlet cfg = pve::config(vm);\nprint(cfg.ipconfig0);\n```",
        move |vm: Map| -> RhaiResult<Dynamic> {
            let (node, vmid, label) = vm_ref(&vm)?;
            let cfg = h.pve().and_then(|c| c.vm_config(&node, vmid)).map_err(pve_error(Some(&label)))?;
            json_to_dynamic(Value::Object(cfg))
        },
    );
    let h = host.clone();
    register(
        m,
        "status",
        &["vm: Map", "Map"],
        "The VM's current state (`status/current`): `#{status, qmpstatus, lock, agent, uptime}`;\n\
         `agent` is true when the guest agent is enabled in the VM's config.",
        move |vm: Map| -> RhaiResult<Map> {
            let (node, vmid, label) = vm_ref(&vm)?;
            let st = h.pve().and_then(|c| c.vm_status(&node, vmid)).map_err(pve_error(Some(&label)))?;
            let mut m = Map::new();
            m.insert("status".into(), st.status.into());
            m.insert("qmpstatus".into(), opt(st.qmpstatus));
            m.insert("lock".into(), opt(st.lock));
            m.insert("agent".into(), st.agent.into());
            m.insert("uptime".into(), (st.uptime as INT).into());
            Ok(m)
        },
    );
    let h = host.clone();
    register(
        m,
        "agent_ips",
        &["vm: Map", "Array"],
        "Addresses the QEMU guest agent reports, without loopback and link-local ones:\n\
         `#{interface, ip, prefix}`. Fails with kind `agent_not_running` while the agent is not up.\n\n\
         ```rhai\ntry { let ips = pve::agent_ips(vm); } catch (e) { if e.kind == \"agent_not_running\" { sleep(2); } }\n```",
        move |vm: Map| -> RhaiResult<Array> {
            let (node, vmid, label) = vm_ref(&vm)?;
            let ips = h.pve().and_then(|c| c.agent_ips(&node, vmid)).map_err(pve_error(Some(&label)))?;
            Ok(ips
                .into_iter()
                .map(|ip| {
                    let mut m = Map::new();
                    m.insert("interface".into(), ip.interface.into());
                    m.insert("ip".into(), ip.ip.to_string().into());
                    m.insert("prefix".into(), ip.prefix.map(|p| Dynamic::from(p as INT)).unwrap_or(Dynamic::UNIT));
                    Dynamic::from_map(m)
                })
                .collect())
        },
    );
    let h = host.clone();
    register(
        m,
        "request_count",
        &["INT"],
        "How many HTTP requests this run has sent to Proxmox (logins included).",
        move || -> INT { h.pve().map(|c| c.requests_sent() as INT).unwrap_or(0) },
    );
}

/// A task handle: the UPID of a task that was started, or a planned one (`--dry-run`), which
/// every wait accepts and returns from at once. Scripts never parse UPIDs.
#[derive(Debug, Clone)]
pub struct Task {
    upid: Option<Upid>,
    /// The VM (`node/vmid name`) or path the task is about, for messages.
    item: String,
}

impl Task {
    fn planned(&self) -> bool {
        self.upid.is_none()
    }
}

fn register_task_type(m: &mut Module) {
    m.set_custom_type::<Task>("Task");
    register_method(
        m,
        "planned",
        &["task: &mut Task", "bool"],
        "True when the task was only planned (`--dry-run`): nothing runs in Proxmox, and waiting\n\
         for it returns at once.\n\n```rhai\nlet t = pve::start(vm);\nlet result = if t.planned() { \"would start\" } else { \"started\" };\n```",
        |t: &mut Task| t.planned(),
    );
    register_method(
        m,
        "upid",
        &["task: &mut Task", "Dynamic"],
        "The task's UPID as text, `()` for a planned task.",
        |t: &mut Task| t.upid.as_ref().map(|u| Dynamic::from(u.to_string())).unwrap_or(Dynamic::UNIT),
    );
    register_method(
        m,
        "to_string",
        &["task: &mut Task", "String"],
        "`task UPID:...` or `planned task`.",
        |t: &mut Task| t.upid.as_ref().map(|u| format!("task {u}")).unwrap_or_else(|| "planned task".into()),
    );
}

/// A request that starts a task, through the change log; a planned task under `--dry-run`.
fn start_task(host: &Host, item: &str, request: Result<WriteRequest, String>) -> RhaiResult<Task> {
    let request = request.map_err(|e| script_error("argument", e, Some(item)))?;
    let applied = apply_pve(host, item, request, PveClient::send_task)?;
    Ok(Task {
        upid: match applied {
            Applied::Made(u) => Some(u),
            Applied::Planned => None,
        },
        item: item.to_string(),
    })
}

fn secs(seconds: INT) -> RhaiResult<u32> {
    match u32::try_from(seconds) {
        Ok(s) if (1..=86_400).contains(&s) => Ok(s),
        _ => Err(script_error("argument", format!("{seconds}: expected seconds from 1 to 86400"), None)),
    }
}

fn register_power(m: &mut Module, host: &Arc<Host>) {
    register_task_type(m);
    let h = host.clone();
    register(
        m,
        "start",
        &["vm: Map", "Task"],
        "Starts the VM; returns its task for `wait_task` (a planned task under `--dry-run`, where\n\
         the request is printed, not sent). PVE refuses to start a running VM: check `status` first.\n\n\
         ```rhai\nlet task = pve::start(vm);\npve::wait_task(task, 120);\n```",
        move |vm: Map| {
            let (node, vmid, label) = vm_ref(&vm)?;
            start_task(&h, &label, WriteRequest::start(&node, vmid))
        },
    );
    let h = host.clone();
    register(
        m,
        "stop",
        &["vm: Map", "Task"],
        "Stops the VM at once, without a guest shutdown (pulls the plug); returns its task.",
        move |vm: Map| {
            let (node, vmid, label) = vm_ref(&vm)?;
            start_task(&h, &label, WriteRequest::stop(&node, vmid))
        },
    );
    let h = host.clone();
    let shutdown = move |vm: Map, timeout: INT, force: bool| -> RhaiResult<Task> {
        let (node, vmid, label) = vm_ref(&vm)?;
        start_task(&h, &label, WriteRequest::shutdown(&node, vmid, Some(secs(timeout)?), force))
    };
    let plain = shutdown.clone();
    register(
        m,
        "shutdown",
        &["vm: Map", "timeout: INT", "Task"],
        "Asks the guest to shut down (ACPI); the task fails if it is not off after `timeout` seconds.\n\
         Returns its task. On a stopped VM check `status` first.\n\n\
         ```rhai\npve::wait_task(pve::shutdown(vm, 120), 150);\n```",
        move |vm: Map, timeout: INT| plain(vm, timeout, false),
    );
    register(
        m,
        "shutdown",
        &["vm: Map", "timeout: INT", "force: bool", "Task"],
        "Graceful shutdown (ACPI) that PVE turns into a hard stop when the guest is not off after\n\
         `timeout` seconds and `force` is true; returns its task.",
        shutdown,
    );
    let h = host.clone();
    register(
        m,
        "reboot",
        &["vm: Map", "timeout: INT", "Task"],
        "Reboots the VM (shutdown with `timeout`, then start, applying pending changes); returns its\n\
         task. The task ends after the shutdown half: `wait_status(task, \"running\", t)` afterwards.",
        move |vm: Map, timeout: INT| {
            let (node, vmid, label) = vm_ref(&vm)?;
            start_task(&h, &label, WriteRequest::reboot(&node, vmid, Some(secs(timeout)?)))
        },
    );
    let h = host.clone();
    register(
        m,
        "wait_task",
        &["task: Task", "timeout: INT", "Map"],
        "Waits until the task ends and returns `#{ok: true, exitstatus, seconds, planned}` when it\n\
         succeeded (`OK` or `WARNINGS: n`). A task that failed is an error whose `kind` says why:\n\
         `locked`, `lock_timeout`, `already_running`, `not_running` or `task_failed`, with `reason`\n\
         (one line for a table), `exitstatus` and `log_tail` (its last log lines). Still running\n\
         after `timeout` seconds: kind `timeout`. A planned task returns at once.\n\n\
         ```rhai\ntry { pve::wait_task(pve::start(vm), 120); } catch (e) { error(`${e.item}: ${e.reason}`); }\n```",
        move |task: Task, timeout: INT| -> RhaiResult<Map> {
            let Some(upid) = &task.upid else {
                return Ok(outcome_map(None));
            };
            let timeout = Duration::from_secs(secs(timeout)?.into());
            let client = h.pve().map_err(pve_error(Some(&task.item)))?;
            let cancel = || h.cancelled();
            let outcome = client
                .wait_task(upid, timeout, &cancel, &mut |_| {})
                .and_then(TaskOutcome::into_result)
                .map_err(pve_error(Some(&task.item)))?;
            Ok(outcome_map(Some(&outcome)))
        },
    );
    let h = host.clone();
    register(
        m,
        "wait_status",
        &["task: Task", "status: &str", "timeout: INT", "()"],
        "After the task (e.g. a reboot), waits until its VM's status is `status` (`running`,\n\
         `stopped`); kind `timeout` after `timeout` seconds. A planned task returns at once.",
        move |task: Task, wanted: &str, timeout: INT| -> RhaiResult<()> {
            let Some(upid) = &task.upid else { return Ok(()) };
            let vmid = upid
                .vmid()
                .ok_or_else(|| script_error("argument", format!("{upid} is not the task of a VM"), Some(&task.item)))?;
            wait_for_status(&h, upid.node(), vmid, &task.item, wanted, timeout)
        },
    );
    let h = host.clone();
    register(
        m,
        "wait_status",
        &["vm: Map", "status: &str", "timeout: INT", "()"],
        "Waits until the VM's status is `status` (`running`, `stopped`); an error of kind `timeout`\n\
         after `timeout` seconds. A read: it waits under `--dry-run` too.",
        move |vm: Map, wanted: &str, timeout: INT| -> RhaiResult<()> {
            let (node, vmid, label) = vm_ref(&vm)?;
            wait_for_status(&h, &node, vmid, &label, wanted, timeout)
        },
    );
}

fn wait_for_status(host: &Host, node: &str, vmid: u32, item: &str, wanted: &str, timeout: INT) -> RhaiResult<()> {
    let timeout = Duration::from_secs(secs(timeout)?.into());
    let cancel = || host.cancelled();
    host.pve()
        .and_then(|c| c.wait_status(node, vmid, wanted, timeout, &cancel, &mut |_| {}))
        .map(|_| ())
        .map_err(pve_error(Some(item)))
}

fn outcome_map(outcome: Option<&TaskOutcome>) -> Map {
    let mut m = Map::new();
    m.insert("ok".into(), true.into());
    m.insert("planned".into(), outcome.is_none().into());
    m.insert("exitstatus".into(), outcome.map(|o| o.exitstatus.clone()).unwrap_or_else(|| "planned".into()).into());
    let tail: Array = outcome.map(|o| o.log_tail.iter().cloned().map(Dynamic::from).collect()).unwrap_or_default();
    m.insert("log_tail".into(), tail.into());
    m.insert("seconds".into(), outcome.map(|o| o.elapsed.as_secs_f64()).unwrap_or(0.0).into());
    m
}

fn register_config_writes(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    let set = move |vm: Map, changes: Map, digest: Dynamic| -> RhaiResult<bool> {
        let (node, vmid, label) = vm_ref(&vm)?;
        if changes.is_empty() {
            return Ok(false);
        }
        let changes: Vec<(String, Option<String>)> = changes
            .iter()
            .map(|(k, v)| (k.to_string(), if v.is_unit() { None } else { Some(param_text(v)) }))
            .collect();
        // Without a digest from the caller's own read, read one now (a read, so also under
        // --dry-run): the write must not overwrite a change made since.
        let digest = if digest.is_unit() {
            let client = h.pve().map_err(pve_error(Some(&label)))?;
            client
                .vm_config(&node, vmid)
                .map_err(pve_error(Some(&label)))?
                .get("digest")
                .and_then(|d| d.as_str().map(String::from))
        } else {
            Some(digest.to_string())
        };
        let request = WriteRequest::set_config(&node, vmid, &changes, digest.as_deref())
            .map_err(|e| script_error("argument", e, Some(&label)))?;
        Ok(matches!(apply_pve(&h, &label, request, PveClient::send_write)?, Applied::Made(_)))
    };
    let plain = set.clone();
    register(
        m,
        "set_config",
        &["vm: Map", "changes: Map", "bool"],
        "Writes configuration keys in one synchronous `PUT .../config`, guarded by the digest read\n\
         just before (a concurrent change is refused, kind `digest_mismatch`, never overwritten);\n\
         a `()` value deletes the key. True when written; false when there was nothing to write or\n\
         the write was only planned (`--dry-run`, where it is printed, not sent).\n\n\
         ```rhai\npve::set_config(vm, #{nameserver: \"10.10.0.1\", searchdomain: ()});\n```",
        move |vm: Map, changes: Map| plain(vm, changes, Dynamic::UNIT),
    );
    register(
        m,
        "set_config",
        &["vm: Map", "changes: Map", "digest: Dynamic", "bool"],
        "Like `set_config(vm, changes)`, with the `digest` of the caller's own read of the config\n\
         (so nothing is read again): PVE refuses the write (kind `digest_mismatch`) if the\n\
         configuration changed since.",
        set,
    );
    let h = host.clone();
    register(
        m,
        "regenerate_cloudinit",
        &["vm: Map", "()"],
        "Rebuilds the VM's cloud-init drive from its current settings (PVE 8.1+), so a reboot applies\n\
         them. A change: printed, not sent, under `--dry-run`.",
        move |vm: Map| -> RhaiResult<()> {
            let (node, vmid, label) = vm_ref(&vm)?;
            let request = WriteRequest::regenerate_cloudinit(&node, vmid)
                .map_err(|e| script_error("argument", e, Some(&label)))?;
            send_write(&h, &label, request).map(|_| ())
        },
    );
}

fn register_snapshots(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    register(
        m,
        "snapshots",
        &["vm: Map", "Array"],
        "The VM's snapshots, oldest first, as `#{name, description, time, vmstate, parent}`: `time` is\n\
         the Unix time it was taken (`()` if PVE does not say), `vmstate` true when it holds the RAM,\n\
         `parent` the snapshot it was taken on top of (or `()`). PVE's `current` entry (the present\n\
         state) is left out. A read: it runs under `--dry-run` too.\n\n\
         ```rhai\nlet names = pve::snapshots(vm).map(|s| s.name);\nif \"pre-upgrade\" in names { print(\"already taken\"); }\n```",
        move |vm: Map| -> RhaiResult<Array> {
            let (node, vmid, label) = vm_ref(&vm)?;
            let list = h.pve().and_then(|c| c.snapshots(&node, vmid)).map_err(pve_error(Some(&label)))?;
            Ok(list
                .into_iter()
                .map(|s| {
                    let mut m = Map::new();
                    m.insert("name".into(), s.name.into());
                    m.insert("description".into(), s.description.into());
                    let time = s.time.and_then(|t| INT::try_from(t).ok());
                    m.insert("time".into(), time.map(Dynamic::from).unwrap_or(Dynamic::UNIT));
                    m.insert("vmstate".into(), s.vmstate.into());
                    m.insert("parent".into(), opt(s.parent));
                    Dynamic::from_map(m)
                })
                .collect())
        },
    );
    let h = host.clone();
    let create = move |vm: Map, name: &str, options: Map| -> RhaiResult<Task> {
        let (node, vmid, label) = vm_ref(&vm)?;
        let (vmstate, description) = snapshot_options(&options, &label)?;
        start_task(&h, &label, WriteRequest::snapshot_create(&node, vmid, name, vmstate, description.as_deref()))
    };
    let plain = create.clone();
    register(
        m,
        "snapshot",
        &["vm: Map", "name: &str", "Task"],
        "Takes a snapshot of the VM's disks and configuration; returns its task for `wait_task` (a\n\
         planned task under `--dry-run`, where the request is printed, not sent). The name is checked\n\
         as PVE checks it: a letter, then letters, digits, `_` or `-`, 2 to 40 characters, not\n\
         `current`. The task fails with kind `snapshot_exists` when the VM has a snapshot of that\n\
         name, `locked` when the VM is locked (a backup, another snapshot).\n\n\
         ```rhai\ntry { pve::wait_task(pve::snapshot(vm, \"pre-upgrade\"), 600); }\n\
         catch (e) { if e.kind != \"snapshot_exists\" { throw e; } }\n```",
        move |vm: Map, name: &str| plain(vm, name, Map::new()),
    );
    register(
        m,
        "snapshot",
        &["vm: Map", "name: &str", "options: Map", "Task"],
        "Like `snapshot(vm, name)`, with options: `vmstate` (bool: also save the RAM of a running VM,\n\
         so a rollback resumes it where it was) and `description` (text shown in PVE). Other keys\n\
         are refused.\n\n\
         ```rhai\nlet t = pve::snapshot(vm, \"pre-v1-31\", #{vmstate: true, description: \"before the upgrade\"});\npve::wait_task(t, 900);\n```",
        create,
    );
    let h = host.clone();
    register(
        m,
        "rollback",
        &["vm: Map", "name: &str", "Task"],
        "Rolls the VM back to snapshot `name` (disks, configuration, and the RAM of a `vmstate`\n\
         snapshot); PVE stops a running VM first. Returns its task; the task fails with kind\n\
         `snapshot_missing` when there is no such snapshot, `locked` when the VM is locked, and\n\
         `task_failed` (with `log_tail`) otherwise.\n\n\
         ```rhai\npve::wait_task(pve::rollback(vm, \"pre-upgrade\"), 600);\npve::wait_task(pve::start(vm), 120);\n```",
        move |vm: Map, name: &str| {
            let (node, vmid, label) = vm_ref(&vm)?;
            start_task(&h, &label, WriteRequest::snapshot_rollback(&node, vmid, name))
        },
    );
    let h = host.clone();
    register(
        m,
        "delete_snapshot",
        &["vm: Map", "name: &str", "Task"],
        "Deletes snapshot `name` of the VM (`DELETE .../snapshot/{name}`); returns its task. The task\n\
         fails with kind `snapshot_missing` when there is no such snapshot.\n\n\
         ```rhai\nfor s in pve::snapshots(vm).filter(|s| s.name.starts_with(\"k3sx-\")) {\n    pve::wait_task(pve::delete_snapshot(vm, s.name), 600);\n}\n```",
        move |vm: Map, name: &str| {
            let (node, vmid, label) = vm_ref(&vm)?;
            start_task(&h, &label, WriteRequest::snapshot_delete(&node, vmid, name))
        },
    );
}

/// `#{vmstate, description}` of `pve::snapshot`: `(vmstate, description)`.
fn snapshot_options(options: &Map, item: &str) -> RhaiResult<(bool, Option<String>)> {
    let bad = |message: String| script_error("argument", message, Some(item));
    if let Some(key) = options.keys().find(|k| !matches!(k.as_str(), "vmstate" | "description")) {
        return Err(bad(format!("unknown snapshot option `{key}` (known: `vmstate`, `description`)")));
    }
    let vmstate = match options.get("vmstate") {
        None => false,
        Some(v) if v.is_unit() => false,
        Some(v) => v.as_bool().map_err(|t| bad(format!("snapshot option `vmstate` is a bool, not {t}")))?,
    };
    let description = match options.get("description") {
        None => None,
        Some(v) if v.is_unit() => None,
        Some(v) => Some(
            v.clone().into_string().map_err(|t| bad(format!("snapshot option `description` is a string, not {t}")))?,
        ),
    };
    Ok((vmstate, description))
}

fn register_raw(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    let get = move |path: &str, params: Map| -> RhaiResult<Dynamic> {
        let api_path = ApiPath::parse(path).map_err(|e| script_error("argument", e, Some(path)))?;
        let query: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), param_text(v))).collect();
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let data = h.pve().and_then(|c| c.get(&api_path.to_string(), &query)).map_err(pve_error(Some(path)))?;
        json_to_dynamic(data)
    };
    let plain = get.clone();
    register(
        m,
        "get",
        &["path: &str", "Dynamic"],
        "`GET` any API path (e.g. `/cluster/status`); returns the answer's `data`. Parameters go in\n\
         the map of `get(path, params)`, never in the path (a `?`, `..` or control character in a\n\
         path is refused).",
        move |path: &str| plain(path, Map::new()),
    );
    register(
        m,
        "get",
        &["path: &str", "params: Map", "Dynamic"],
        "`GET` any API path with query parameters; returns the answer's `data`.\n\n\
         ```rhai\nlet guests = pve::get(\"/cluster/resources\", #{type: \"vm\"});\n```",
        get,
    );
    let methods: [(&str, WriteMethod, &str); 3] = [
        (
            "post",
            WriteMethod::Post,
            "`POST` to any API path (a change: printed, not sent, under `--dry-run`). An answer that is a\n\
             UPID comes back as a task for `wait_task` (a planned task under `--dry-run`), any other\n\
             answer as its `data`. Parameters only in the map; values that are `Secret`s are sent and\n\
             never shown.",
        ),
        (
            "put",
            WriteMethod::Put,
            "`PUT` to any API path (a change: printed, not sent, under `--dry-run`); returns `data`\n\
             (`()` under `--dry-run`).\n\n```rhai\npve::put(`/nodes/${vm.node}/qemu/${vm.vmid}/config`, #{tags: \"k3s-server;prod\"});\n```",
        ),
        (
            "delete",
            WriteMethod::Delete,
            "`DELETE` any API path (a change: printed, not sent, under `--dry-run`); returns `data`\n\
             (`()` under `--dry-run`).",
        ),
    ];
    for (name, method, doc) in methods {
        let h = host.clone();
        register(m, name, &["path: &str", "params: Map", "Dynamic"], doc, move |path: &str, params: Map| {
            raw_write(&h, method, path, &params)
        });
    }
}

fn raw_write(host: &Host, method: WriteMethod, path: &str, params: &Map) -> RhaiResult<Dynamic> {
    let api_path = ApiPath::parse(path).map_err(|e| script_error("argument", e, Some(path)))?;
    let params = params.iter().map(|(k, v)| {
        let value = match v.clone().try_cast::<Secret>() {
            Some(secret) => ParamValue::Secret(secret),
            None => ParamValue::Plain(param_text(v)),
        };
        (k.to_string(), value)
    });
    let request = WriteRequest::new(method, api_path, params).map_err(|e| script_error("argument", e, Some(path)))?;
    if method == WriteMethod::Post {
        return start_or_send(host, path, request);
    }
    send_write(host, path, request)
}

/// A raw POST: a UPID answer becomes a task, anything else is returned as data.
fn start_or_send(host: &Host, item: &str, request: WriteRequest) -> RhaiResult<Dynamic> {
    match apply_pve(host, item, request, PveClient::send_write)? {
        Applied::Planned => Ok(Dynamic::from(Task { upid: None, item: item.to_string() })),
        Applied::Made(data) => match data.as_str().map(Upid::parse) {
            Some(Ok(upid)) => Ok(Dynamic::from(Task { upid: Some(upid), item: item.to_string() })),
            _ => json_to_dynamic(data),
        },
    }
}

/// A write through the change log; `item` names the VM or path in messages and in the plan.
/// Returns the answer's `data`, `()` when only planned.
fn send_write(host: &Host, item: &str, request: WriteRequest) -> RhaiResult<Dynamic> {
    match apply_pve(host, item, request, PveClient::send_write)? {
        Applied::Planned => Ok(Dynamic::UNIT),
        Applied::Made(data) => json_to_dynamic(data),
    }
}

/// Every Proxmox write goes through here: the change log decides, `send` sends.
fn apply_pve<T>(
    host: &Host,
    item: &str,
    request: WriteRequest,
    send: fn(&PveClient, &WriteRequest) -> Result<T, PveError>,
) -> RhaiResult<Applied<T>> {
    host.changes
        .apply(Some(item), Change::Pve(request), |c| match c {
            Change::Pve(r) => host.pve().and_then(|client| send(&client, r)),
            _ => unreachable!("a Proxmox change"),
        })
        .map_err(pve_error(Some(item)))
}

/// Form values: booleans as PVE's 0/1, everything else as text.
fn param_text(v: &Dynamic) -> String {
    match v.as_bool() {
        Ok(b) => (if b { "1" } else { "0" }).to_string(),
        Err(_) => v.to_string(),
    }
}

pub fn vm_map(vm: &Vm) -> Dynamic {
    let mut m = Map::new();
    m.insert("node".into(), vm.node.clone().into());
    m.insert("vmid".into(), (vm.vmid as INT).into());
    m.insert("name".into(), opt(vm.name.clone()));
    m.insert("status".into(), vm.status.clone().into());
    m.insert("tags".into(), vm.tags.iter().cloned().map(Dynamic::from).collect::<Array>().into());
    m.insert("template".into(), vm.template.into());
    m.insert("lock".into(), opt(vm.lock.clone()));
    m.into()
}

fn node_map(n: &NodeInfo) -> Dynamic {
    let mut m = Map::new();
    m.insert("name".into(), n.name.clone().into());
    m.insert("status".into(), n.status.clone().into());
    m.insert("online".into(), n.online.into());
    m.into()
}

fn opt(v: Option<String>) -> Dynamic {
    v.map(Dynamic::from).unwrap_or(Dynamic::UNIT)
}

fn json_to_dynamic(v: Value) -> RhaiResult<Dynamic> {
    rhai::serde::to_dynamic(v)
}
