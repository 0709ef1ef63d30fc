//! `pve::` — the Proxmox API: the cluster in one call, per-VM reads, and a raw escape hatch.
//!
//! A VM is a map `#{node, vmid, name, status, tags, template, lock}`; functions taking a VM
//! accept any map with `node` and `vmid` (what `pve::vms()` and the inventory return).

use std::sync::Arc;

use rhai::{Array, Dynamic, INT, Map, Module};
use serde_json::Value;

use super::{RhaiResult, register, script_error};
use crate::pve::{NodeInfo, PveError, Vm};
use crate::script::Host;
use crate::ui::Level;

pub fn module(host: &Arc<Host>) -> Module {
    let mut m = Module::new();
    register_reads(&mut m, host);
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
    let methods = [
        (
            "post",
            "`POST` to any API path (a change: printed, not sent, under `--dry-run`); returns `data` (often a task UPID).",
        ),
        (
            "put",
            "`PUT` to any API path (a change: printed, not sent, under `--dry-run`); returns `data`.\n\n```rhai\npve::put(`/nodes/${vm.node}/qemu/${vm.vmid}/config`, #{tags: \"k3s-server;prod\"});\n```",
        ),
        ("delete", "`DELETE` any API path (a change: printed, not sent, under `--dry-run`); returns `data`."),
    ];
    for (method, doc) in methods {
        let h = host.clone();
        register(m, method, &["path: &str", "params: Map", "Dynamic"], doc, move |path: &str, params: Map| {
            write(&h, method, path, &params)
        });
    }
}

fn write(host: &Host, method: &str, path: &str, params: &Map) -> RhaiResult<Dynamic> {
    let form: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), param_text(v))).collect();
    if host.options.dry_run {
        let shown: Vec<String> = form.iter().map(|(k, v)| format!("{k}={}", mask(k, v))).collect();
        host.log(Level::Info, &format!("dry-run: would {} {path} {}", method.to_uppercase(), shown.join(" ")));
        return Ok(Dynamic::UNIT);
    }
    let client = host.pve().map_err(pve_error(Some(path)))?;
    let data = match method {
        "post" => client.post(path, &form),
        "put" => client.put(path, &form),
        _ => client.delete(path, &form),
    }
    .map_err(pve_error(Some(path)))?;
    json_to_dynamic(data)
}

/// Parameters whose values are secrets are never printed, not even in a dry run.
fn mask<'a>(key: &str, value: &'a str) -> &'a str {
    const SECRET_KEYS: &[&str] = &["password", "cipassword", "token", "secret", "sshkeys_private"];
    if SECRET_KEYS.iter().any(|s| key.to_ascii_lowercase().contains(s)) { "***" } else { value }
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
