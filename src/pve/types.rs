//! Plain types for what the client reads, and the pure functions that parse API answers into them.

use std::net::IpAddr;

use serde_json::Value;

/// The cluster as one `GET /cluster/resources` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cluster {
    /// Nodes sorted by name.
    pub nodes: Vec<NodeInfo>,
    /// QEMU guests (templates included, flagged) sorted by (node, vmid); containers are dropped.
    pub vms: Vec<Vm>,
}

impl Cluster {
    /// Names of the nodes that are not online.
    pub fn offline_nodes(&self) -> Vec<&str> {
        self.nodes.iter().filter(|n| !n.online).map(|n| n.name.as_str()).collect()
    }
}

/// A Proxmox node and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// `online`, `offline` or `unknown`, as reported.
    pub status: String,
    pub online: bool,
}

/// A QEMU guest as the cluster resource list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vm {
    pub node: String,
    pub vmid: u32,
    /// Absent for VMs created without a name.
    pub name: Option<String>,
    /// `running`, `stopped`, `paused`, or `unknown` when its node is offline.
    pub status: String,
    /// Normalised: split on `;`, `,` and whitespace, trimmed, lower-cased, empty ones dropped.
    pub tags: Vec<String>,
    pub template: bool,
    /// `backup`, `snapshot`, `migrate`, ... when the VM is locked.
    pub lock: Option<String>,
}

impl Vm {
    /// True if the VM carries `tag` (compared case-insensitively).
    pub fn has_tag(&self, tag: &str) -> bool {
        let tag = tag.trim().to_lowercase();
        self.tags.contains(&tag)
    }
}

/// `GET /nodes/{node}/qemu/{vmid}/status/current`, the fields k3sx uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmStatus {
    pub status: String,
    pub qmpstatus: Option<String>,
    pub lock: Option<String>,
    /// The guest agent is enabled in the VM's config.
    pub agent: bool,
    pub uptime: u64,
}

/// One address reported by the guest agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestIp {
    pub interface: String,
    pub ip: IpAddr,
    pub prefix: Option<u8>,
}

/// Splits a PVE tag string as PVE's own parser does (`;`, `,`, whitespace), trimmed and lower-cased.
pub fn normalize_tags(raw: &str) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for tag in raw.split(|c: char| c == ';' || c == ',' || c.is_whitespace()) {
        let tag = tag.trim().to_lowercase();
        if !tag.is_empty() && !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    tags
}

/// A JSON value PVE may send as a number or a numeric string.
fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// PVE booleans arrive as 0/1, "0"/"1" or true/false.
fn as_flag(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(other) => as_u64(other).is_some_and(|n| n != 0),
        None => false,
    }
}

fn opt_string(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses the `data` of `GET /cluster/resources` (any `type` filter): nodes and QEMU guests.
pub fn parse_resources(data: &Value) -> Result<Cluster, String> {
    let items = data.as_array().ok_or("expected a list of resources")?;
    let mut cluster = Cluster::default();
    for item in items {
        match item.get("type").and_then(Value::as_str) {
            Some("node") => {
                let name = opt_string(item.get("node")).ok_or("a node resource without `node`")?;
                let status = opt_string(item.get("status")).unwrap_or_else(|| "unknown".into());
                cluster.nodes.push(NodeInfo { online: status == "online", name, status });
            }
            Some("qemu") => cluster.vms.push(parse_vm(item)?),
            _ => {} // lxc, storage, sdn, pool: not ours
        }
    }
    cluster.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    cluster.vms.sort_by(|a, b| (&a.node, a.vmid).cmp(&(&b.node, b.vmid)));
    Ok(cluster)
}

fn parse_vm(item: &Value) -> Result<Vm, String> {
    let vmid = item.get("vmid").and_then(as_u64).and_then(|n| u32::try_from(n).ok());
    let vmid = vmid.ok_or_else(|| format!("a qemu resource without a valid `vmid`: {item}"))?;
    let node = opt_string(item.get("node")).ok_or_else(|| format!("VM {vmid} without `node`"))?;
    Ok(Vm {
        node,
        vmid,
        name: opt_string(item.get("name")),
        status: opt_string(item.get("status")).unwrap_or_else(|| "unknown".into()),
        tags: item.get("tags").and_then(Value::as_str).map(normalize_tags).unwrap_or_default(),
        template: as_flag(item.get("template")),
        lock: opt_string(item.get("lock")),
    })
}

/// Parses the `data` of `GET /nodes`.
pub fn parse_nodes(data: &Value) -> Result<Vec<NodeInfo>, String> {
    let items = data.as_array().ok_or("expected a list of nodes")?;
    let mut nodes = Vec::with_capacity(items.len());
    for item in items {
        let name = opt_string(item.get("node")).ok_or("a node without `node`")?;
        let status = opt_string(item.get("status")).unwrap_or_else(|| "unknown".into());
        nodes.push(NodeInfo { online: status == "online", name, status });
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nodes)
}

/// Parses the `data` of `GET .../status/current`.
pub fn parse_vm_status(data: &Value) -> Result<VmStatus, String> {
    Ok(VmStatus {
        status: opt_string(data.get("status")).ok_or("no `status` in the VM status")?,
        qmpstatus: opt_string(data.get("qmpstatus")),
        lock: opt_string(data.get("lock")),
        agent: as_flag(data.get("agent")),
        uptime: data.get("uptime").and_then(as_u64).unwrap_or(0),
    })
}

/// Parses `agent/network-get-interfaces`: every address except loopback and link-local ones.
pub fn parse_agent_interfaces(data: &Value) -> Result<Vec<GuestIp>, String> {
    let list = data.get("result").unwrap_or(data);
    let list = list.as_array().ok_or("expected a `result` list of interfaces")?;
    let mut out = Vec::new();
    for iface in list {
        let name = iface.get("name").and_then(Value::as_str).unwrap_or_default();
        if name == "lo" || name.starts_with("lo:") {
            continue;
        }
        let addrs = iface.get("ip-addresses").and_then(Value::as_array);
        for addr in addrs.into_iter().flatten() {
            let Some(ip) = addr.get("ip-address").and_then(Value::as_str) else {
                continue;
            };
            // Zone ids (`fe80::1%eth0`) are link-local anyway; parse without them.
            let Ok(ip) = ip.split('%').next().unwrap_or(ip).parse::<IpAddr>() else {
                continue;
            };
            if is_loopback_or_link_local(&ip) {
                continue;
            }
            let prefix = addr.get("prefix").and_then(as_u64).and_then(|p| u8::try_from(p).ok());
            out.push(GuestIp { interface: name.to_string(), ip, prefix });
        }
    }
    Ok(out)
}

fn is_loopback_or_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tags_split_on_semicolon_comma_and_space_and_are_lower_cased() {
        assert_eq!(normalize_tags("K3S-Server"), ["k3s-server"]);
        assert_eq!(normalize_tags("k3s-server;prod"), ["k3s-server", "prod"]);
        assert_eq!(normalize_tags("team-a,k3s-agent"), ["team-a", "k3s-agent"]);
        assert_eq!(normalize_tags(" a ; b,,c\td  "), ["a", "b", "c", "d"]);
        assert_eq!(normalize_tags("x;X"), ["x"]);
        assert!(normalize_tags("").is_empty());
        assert!(normalize_tags(" ; , ").is_empty());
    }

    #[test]
    fn resources_keep_qemu_drop_lxc_and_flag_templates() {
        let data = json!([
            {"id": "qemu/102", "type": "qemu", "node": "pve2", "vmid": 102, "name": "b", "status": "running",
             "tags": "K3S-Agent", "template": 0},
            {"id": "qemu/101", "type": "qemu", "node": "pve1", "vmid": 101, "status": "stopped"},
            {"id": "qemu/900", "type": "qemu", "node": "pve1", "vmid": "900", "name": "tpl",
             "status": "stopped", "template": 1, "tags": "k3s-server"},
            {"id": "lxc/200", "type": "lxc", "node": "pve1", "vmid": 200, "name": "ct", "status": "running",
             "tags": "k3s-server"},
            {"id": "qemu/103", "type": "qemu", "node": "pve1", "vmid": 103, "name": null, "status": "running",
             "lock": "backup"},
            {"id": "node/pve2", "type": "node", "node": "pve2", "status": "offline"},
            {"id": "node/pve1", "type": "node", "node": "pve1", "status": "online"},
            {"id": "storage/pve1/local", "type": "storage", "node": "pve1", "status": "available"}
        ]);
        let c = parse_resources(&data).unwrap();
        let ids: Vec<u32> = c.vms.iter().map(|v| v.vmid).collect();
        assert_eq!(ids, [101, 103, 900, 102], "sorted by (node, vmid), lxc dropped");
        let v101 = &c.vms[0];
        assert_eq!(
            (v101.name.as_deref(), v101.tags.len(), v101.template, v101.lock.as_deref()),
            (None, 0, false, None)
        );
        assert_eq!(c.vms[1].name, None, "null name is no name");
        assert_eq!(c.vms[1].lock.as_deref(), Some("backup"));
        assert!(c.vms[2].template);
        assert!(c.vms[3].has_tag("k3s-agent") && c.vms[3].has_tag("K3S-AGENT"));
        assert_eq!(
            c.nodes.iter().map(|n| (n.name.as_str(), n.online)).collect::<Vec<_>>(),
            [("pve1", true), ("pve2", false)]
        );
        assert_eq!(c.offline_nodes(), ["pve2"]);
    }

    #[test]
    fn resources_reject_a_qemu_entry_without_vmid() {
        assert!(parse_resources(&json!([{"type": "qemu", "node": "pve1"}])).is_err());
        assert!(parse_resources(&json!({"not": "a list"})).is_err());
    }

    #[test]
    fn agent_interfaces_skip_loopback_and_link_local() {
        let data = json!({"result": [
            {"name": "lo", "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
            {"name": "eth0", "ip-addresses": [
                {"ip-address": "10.10.0.201", "ip-address-type": "ipv4", "prefix": 24},
                {"ip-address": "fe80::1%eth0", "ip-address-type": "ipv6", "prefix": 64},
                {"ip-address": "169.254.3.4", "ip-address-type": "ipv4", "prefix": 16},
                {"ip-address": "2001:db8::5", "ip-address-type": "ipv6", "prefix": 64}]},
            {"name": "eth1"}
        ]});
        let ips = parse_agent_interfaces(&data).unwrap();
        let shown: Vec<String> =
            ips.iter().map(|i| format!("{}={}/{}", i.interface, i.ip, i.prefix.unwrap())).collect();
        assert_eq!(shown, ["eth0=10.10.0.201/24", "eth0=2001:db8::5/64"]);
    }

    #[test]
    fn vm_status_reads_agent_flag_and_lock() {
        let s = parse_vm_status(&json!({"status": "running", "qmpstatus": "running", "agent": 1, "uptime": 5,
                                         "lock": "snapshot"}))
        .unwrap();
        assert!(s.agent);
        assert_eq!(s.lock.as_deref(), Some("snapshot"));
        assert!(parse_vm_status(&json!({})).is_err());
    }
}
