//! `pve::` — the Proxmox API: the cluster in one call, per-VM reads, and a raw escape hatch.
//!
//! A VM is a map `#{node, vmid, name, status, tags, template, lock}`; functions taking a VM
//! accept any map with `node` and `vmid` (what `pve::vms()` and the inventory return).

use std::sync::Arc;

use rhai::{Array, Dynamic, INT, Map, Module};
use serde_json::Value;

use super::{RhaiResult, register, script_error};
use std::time::Duration;

use crate::pve::{NodeInfo, PveError, TaskOutcome, Upid, Vm, WriteRequest};
use crate::script::Host;
use crate::ui::Level;

pub fn module(host: &Arc<Host>) -> Module {
    let mut m = Module::new();
    register_reads(&mut m, host);
    register_power(&mut m, host);
    register_config_writes(&mut m, host);
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

/// A power action: under `--dry-run` the request is printed and `()` is returned instead of
/// a UPID (which `wait_task` accepts).
fn power(host: &Host, vm: &Map, request: impl Fn(&str, u32) -> WriteRequest) -> RhaiResult<Dynamic> {
    let (node, vmid, label) = vm_ref(vm)?;
    let request = request(&node, vmid);
    if host.options.dry_run {
        return send_write(host, &label, &request);
    }
    let upid = host.pve().and_then(|c| c.send_power(&request)).map_err(pve_error(Some(&label)))?;
    Ok(upid.as_str().to_string().into())
}

fn secs(seconds: INT) -> RhaiResult<u32> {
    u32::try_from(seconds).map_err(|_| script_error("argument", format!("{seconds}: expected seconds >= 0"), None))
}

fn register_power(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    register(
        m,
        "start",
        &["vm: Map", "Dynamic"],
        "Starts the VM; returns the task's UPID for `wait_task` (`()` under `--dry-run`, where the\n\
         request is printed, not sent). PVE refuses to start a running VM: check `status` first.\n\n\
         ```rhai\nlet upid = pve::start(vm);\nlet outcome = pve::wait_task(upid, 120);\n```",
        move |vm: Map| power(&h, &vm, WriteRequest::start),
    );
    let h = host.clone();
    register(
        m,
        "stop",
        &["vm: Map", "Dynamic"],
        "Stops the VM at once, without a guest shutdown (pulls the plug); returns the UPID.\n\
         A change: printed, not sent, under `--dry-run`.",
        move |vm: Map| power(&h, &vm, WriteRequest::stop),
    );
    for force in [false, true] {
        let h = host.clone();
        let shutdown = move |vm: Map, timeout: INT, force: bool| -> RhaiResult<Dynamic> {
            let t = secs(timeout)?;
            power(&h, &vm, |n, id| WriteRequest::shutdown(n, id, Some(t), force))
        };
        if force {
            register(
                m,
                "shutdown",
                &["vm: Map", "timeout: INT", "force: bool", "Dynamic"],
                "Graceful shutdown (ACPI) that PVE turns into a hard stop when the guest is not off after\n\
                 `timeout` seconds and `force` is true; returns the UPID.",
                shutdown,
            );
        } else {
            register(
                m,
                "shutdown",
                &["vm: Map", "timeout: INT", "Dynamic"],
                "Asks the guest to shut down (ACPI); the task fails if it is not off after `timeout` seconds.\n\
                 Returns the UPID (`()` under `--dry-run`). On a stopped VM check `status` first.\n\n\
                 ```rhai\npve::wait_task(pve::shutdown(vm, 120), 150);\n```",
                move |vm: Map, timeout: INT| shutdown(vm, timeout, false),
            );
        }
    }
    let h = host.clone();
    register(
        m,
        "reboot",
        &["vm: Map", "timeout: INT", "Dynamic"],
        "Reboots the VM (shutdown with `timeout`, then start, applying pending changes); returns the\n\
         UPID. The task ends after the shutdown half: `wait_status(vm, \"running\", t)` afterwards.",
        move |vm: Map, timeout: INT| -> RhaiResult<Dynamic> {
            let t = secs(timeout)?;
            power(&h, &vm, |n, id| WriteRequest::reboot(n, id, Some(t)))
        },
    );
    let h = host.clone();
    register(
        m,
        "wait_task",
        &["upid: Dynamic", "timeout: INT", "Map"],
        "Waits until a task ends: `#{ok, exitstatus, log_tail, seconds}`; `OK` and `WARNINGS: n` are\n\
         success, and a failed task's `log_tail` holds its last log lines. A task still running after\n\
         `timeout` seconds is an error of kind `timeout`. `()` (a dry-run UPID) returns at once.\n\n\
         ```rhai\nlet r = pve::wait_task(pve::start(vm), 120);\nif !r.ok { error(r.log_tail[-1]); }\n```",
        move |upid: Dynamic, timeout: INT| -> RhaiResult<Map> {
            if upid.is_unit() {
                return Ok(outcome_map(None));
            }
            let text = upid.to_string();
            let upid =
                Upid::parse(&text).map_err(|e| script_error("argument", format!("`{text}`: {e}"), Some(&text)))?;
            let timeout = Duration::from_secs(secs(timeout)?.into());
            let client = h.pve().map_err(pve_error(Some(&text)))?;
            let cancel = || h.cancelled();
            let outcome = client.wait_task(&upid, timeout, &cancel, &mut |_| {}).map_err(pve_error(Some(&text)))?;
            Ok(outcome_map(Some(&outcome)))
        },
    );
    let h = host.clone();
    register(
        m,
        "wait_status",
        &["vm: Map", "status: &str", "timeout: INT", "()"],
        "Waits until the VM's status is `status` (`running`, `stopped`); an error of kind `timeout`\n\
         after `timeout` seconds. Does nothing under `--dry-run` (nothing was changed to wait for).",
        move |vm: Map, wanted: &str, timeout: INT| -> RhaiResult<()> {
            let (node, vmid, label) = vm_ref(&vm)?;
            if h.options.dry_run {
                return Ok(());
            }
            let timeout = Duration::from_secs(secs(timeout)?.into());
            let cancel = || h.cancelled();
            h.pve()
                .and_then(|c| c.wait_status(&node, vmid, wanted, timeout, &cancel, &mut |_| {}))
                .map(|_| ())
                .map_err(pve_error(Some(&label)))
        },
    );
}

fn outcome_map(outcome: Option<&TaskOutcome>) -> Map {
    let mut m = Map::new();
    m.insert("ok".into(), outcome.is_none_or(|o| o.ok).into());
    m.insert("exitstatus".into(), outcome.map(|o| o.exitstatus.clone()).unwrap_or_else(|| "dry-run".into()).into());
    let tail: Array = outcome.map(|o| o.log_tail.iter().cloned().map(Dynamic::from).collect()).unwrap_or_default();
    m.insert("log_tail".into(), tail.into());
    m.insert("seconds".into(), outcome.map(|o| o.elapsed.as_secs_f64()).unwrap_or(0.0).into());
    m
}

fn register_config_writes(m: &mut Module, host: &Arc<Host>) {
    for with_digest in [false, true] {
        let h = host.clone();
        let set = move |vm: Map, changes: Map, digest: Dynamic| -> RhaiResult<()> {
            let (node, vmid, label) = vm_ref(&vm)?;
            if changes.is_empty() {
                return Ok(());
            }
            let changes: Vec<(String, Option<String>)> = changes
                .iter()
                .map(|(k, v)| (k.to_string(), if v.is_unit() { None } else { Some(param_text(v)) }))
                .collect();
            let client = h.pve().map_err(pve_error(Some(&label)))?;
            // Without a digest from the caller's own read, read one now: the write must not
            // overwrite a change made since.
            let digest = if digest.is_unit() {
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
            send_write(&h, &label, &request).map(|_| ())
        };
        if with_digest {
            register(
                m,
                "set_config",
                &["vm: Map", "changes: Map", "digest: Dynamic", "()"],
                "Like `set_config(vm, changes)`, with the `digest` of the caller's own read of the config\n\
                 (so nothing is read again): PVE refuses the write (kind `digest_mismatch`) if the\n\
                 configuration changed since.",
                set,
            );
        } else {
            register(
                m,
                "set_config",
                &["vm: Map", "changes: Map", "()"],
                "Writes configuration keys in one synchronous `PUT .../config`, guarded by the digest read\n\
                 just before (a concurrent change is refused, kind `digest_mismatch`, never overwritten);\n\
                 a `()` value deletes the key. A change: printed, not sent, under `--dry-run`.\n\n\
                 ```rhai\npve::set_config(vm, #{nameserver: \"10.10.0.1\", searchdomain: ()});\n```",
                move |vm: Map, changes: Map| set(vm, changes, Dynamic::UNIT),
            );
        }
    }
    let h = host.clone();
    register(
        m,
        "regenerate_cloudinit",
        &["vm: Map", "()"],
        "Rebuilds the VM's cloud-init drive from its current settings (PVE 8.1+), so a reboot applies\n\
         them. A change: printed, not sent, under `--dry-run`.",
        move |vm: Map| -> RhaiResult<()> {
            let (node, vmid, label) = vm_ref(&vm)?;
            send_write(&h, &label, &WriteRequest::regenerate_cloudinit(&node, vmid)).map(|_| ())
        },
    );
}

fn register_raw(m: &mut Module, host: &Arc<Host>) {
    for with_params in [false, true] {
        let h = host.clone();
        let get = move |path: &str, params: Map| -> RhaiResult<Dynamic> {
            let query: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), param_text(v))).collect();
            let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let data = h.pve().and_then(|c| c.get(path, &query)).map_err(pve_error(Some(path)))?;
            json_to_dynamic(data)
        };
        if with_params {
            register(
                m,
                "get",
                &["path: &str", "params: Map", "Dynamic"],
                "`GET` any API path with query parameters; returns the answer's `data`.\n\n\
                 ```rhai\nlet guests = pve::get(\"/cluster/resources\", #{type: \"vm\"});\n```",
                get,
            );
        } else {
            register(
                m,
                "get",
                &["path: &str", "Dynamic"],
                "`GET` any API path (e.g. `/cluster/status`); returns the answer's `data`.",
                move |path: &str| get(path, Map::new()),
            );
        }
    }
    let methods: [(&str, &'static str, &str); 3] = [
        (
            "post",
            "POST",
            "`POST` to any API path (a change: printed, not sent, under `--dry-run`); returns `data` (often a task UPID).",
        ),
        (
            "put",
            "PUT",
            "`PUT` to any API path (a change: printed, not sent, under `--dry-run`); returns `data`.\n\n```rhai\npve::put(`/nodes/${vm.node}/qemu/${vm.vmid}/config`, #{tags: \"k3s-server;prod\"});\n```",
        ),
        ("delete", "DELETE", "`DELETE` any API path (a change: printed, not sent, under `--dry-run`); returns `data`."),
    ];
    for (name, method, doc) in methods {
        let h = host.clone();
        register(m, name, &["path: &str", "params: Map", "Dynamic"], doc, move |path: &str, params: Map| {
            write(&h, method, path, &params)
        });
    }
}

fn write(host: &Host, method: &'static str, path: &str, params: &Map) -> RhaiResult<Dynamic> {
    let request = WriteRequest {
        method,
        path: path.to_string(),
        params: params.iter().map(|(k, v)| (k.to_string(), param_text(v))).collect(),
    };
    send_write(host, path, &request)
}

/// A change: under `--dry-run` printed (the request's Display masks secrets) and `()` returned,
/// else sent; `item` names the VM or path in messages.
fn send_write(host: &Host, item: &str, request: &WriteRequest) -> RhaiResult<Dynamic> {
    if host.options.dry_run {
        let on = if item == request.path { String::new() } else { format!("{item}: ") };
        host.log(Level::Info, &format!("dry-run: {on}would {request}"));
        return Ok(Dynamic::UNIT);
    }
    let data = host.pve().and_then(|c| c.send_write(request)).map_err(pve_error(Some(item)))?;
    json_to_dynamic(data)
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

/// `(node, vmid, "node/vmid name")` of a VM map, for calls and error messages.
pub fn vm_ref(vm: &Map) -> RhaiResult<(String, u32, String)> {
    let node = vm.get("node").and_then(|n| n.clone().into_string().ok());
    let vmid = vm.get("vmid").and_then(|v| v.as_int().ok()).and_then(|v| u32::try_from(v).ok());
    let (Some(node), Some(vmid)) = (node, vmid) else {
        return Err(script_error("argument", "expected a VM map with `node` and `vmid` (as pve::vms() returns)", None));
    };
    let name = vm.get("name").filter(|n| !n.is_unit()).map(|n| format!(" {n}")).unwrap_or_default();
    Ok((node.clone(), vmid, format!("{node}/{vmid}{name}")))
}

fn json_to_dynamic(v: Value) -> RhaiResult<Dynamic> {
    rhai::serde::to_dynamic(v)
}

/// A Proxmox error as a catchable script error; auth/TLS/config kinds exit 2 when uncaught.
pub fn pve_error(item: Option<&str>) -> impl Fn(PveError) -> Box<rhai::EvalAltResult> + '_ {
    move |e| script_error(e.kind(), e.to_string(), item)
}
