//! Semantic checks run before anything else happens; each error names its key(s) and origin.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::{Loaded, ProxmoxHost};
use crate::error::{Error, Result};
use crate::ipam::{Ipv4Cidr, Ipv4Range};

/// The longest timeout accepted: a day. Longer is a typo, and a Duration that large
/// overflows deadline arithmetic in the clients.
const MAX_TIMEOUT_SECS: u64 = 86_400;
/// Retries beyond this only delay the error a user needs to see.
const MAX_RETRIES: u32 = 10;

/// Checks everything; returns the Proxmox host, typed, when one is set.
pub fn validate(loaded: &Loaded) -> Result<Option<ProxmoxHost>> {
    let mut errors = Vec::new();
    let host = check_proxmox(loaded, &mut errors);
    check_ssh(loaded, &mut errors);
    check_network(loaded, &mut errors);
    check_tags(loaded, &mut errors);
    check_inventory(loaded, &mut errors);
    check_k3s(loaded, &mut errors);
    if errors.is_empty() { Ok(host) } else { Err(Error::Config(errors)) }
}

fn check_proxmox(l: &Loaded, errors: &mut Vec<String>) -> Option<ProxmoxHost> {
    let p = &l.config.proxmox;
    check_port(l, "proxmox.port", p.port, errors);
    check_timeout(l, "proxmox.timeout_secs", p.timeout_secs, errors);
    check_timeout(l, "proxmox.connect_timeout_secs", p.connect_timeout_secs, errors);
    if p.retries > MAX_RETRIES {
        errors.push(format!(
            "{}: {} retries is too many (0 to {MAX_RETRIES})",
            l.describe("proxmox.retries"),
            p.retries
        ));
    }
    let host = p.host.trim();
    if host.is_empty() {
        return None; // required only once Proxmox is used; the client says so then
    }
    host.parse().map_err(|why| errors.push(format!("{}: {why}", l.describe("proxmox.host")))).ok()
}

fn check_ssh(l: &Loaded, errors: &mut Vec<String>) {
    let s = &l.config.ssh;
    check_port(l, "ssh.port", s.port, errors);
    check_timeout(l, "ssh.connect_timeout_secs", s.connect_timeout_secs, errors);
    check_timeout(l, "ssh.command_timeout_secs", s.command_timeout_secs, errors);
}

fn check_port(l: &Loaded, key: &str, port: u16, errors: &mut Vec<String>) {
    if port == 0 {
        errors.push(format!("{}: port 0 is not a port (1 to 65535)", l.describe(key)));
    }
}

fn check_timeout(l: &Loaded, key: &str, secs: u64, errors: &mut Vec<String>) {
    if !(1..=MAX_TIMEOUT_SECS).contains(&secs) {
        errors.push(format!(
            "{}: {secs} seconds is not a usable timeout (1 to {MAX_TIMEOUT_SECS}, a day)",
            l.describe(key)
        ));
    }
}

fn ip(loaded: &Loaded, key: &str, text: &str, errors: &mut Vec<String>) -> Option<Ipv4Addr> {
    match text.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            errors.push(format!("{}: `{text}` is not an IPv4 address", loaded.describe(key)));
            None
        }
    }
}

fn check_network(l: &Loaded, errors: &mut Vec<String>) {
    let n = &l.config.network;
    if !(8..=30).contains(&n.cidr) {
        errors.push(format!("{}: prefix length {} must be between 8 and 30", l.describe("network.cidr"), n.cidr));
        return;
    }
    if n.ipconfig_index > 31 {
        errors.push(format!("{}: {} is not 0..31", l.describe("network.ipconfig_index"), n.ipconfig_index));
    }
    for (i, dns) in n.dns_servers.iter().enumerate() {
        ip(l, &format!("network.dns_servers[{i}]"), dns, errors);
    }
    let (Some(start), Some(end), Some(gw)) = (
        ip(l, "network.range_start", &n.range_start, errors),
        ip(l, "network.range_end", &n.range_end, errors),
        ip(l, "network.gateway", &n.gateway, errors),
    ) else {
        return;
    };
    let net = Ipv4Cidr::new(gw, n.cidr).expect("prefix checked above");
    let net_text = format!("{}/{}", net.network(), net.prefix());
    for (key, addr) in [("network.range_start", start), ("network.range_end", end)] {
        if !net.contains(addr) {
            errors.push(format!(
                "{}: {addr} is outside the node network {} (network.gateway/network.cidr)",
                l.describe(key),
                net_text
            ));
        }
    }
    if start > end {
        errors.push(format!(
            "{} is after {}: {start} > {end}",
            l.describe("network.range_start"),
            l.describe("network.range_end")
        ));
        return;
    }
    let nodes = Ipv4Range::new(start, end).expect("start <= end");
    if nodes.contains(gw) {
        errors.push(format!(
            "{}: {gw} is inside the node range {nodes} (network.range_start..network.range_end)",
            l.describe("network.gateway")
        ));
    }
    let vip = if l.config.kube_vip.enabled {
        ip(l, "kube_vip.vip", &l.config.kube_vip.vip, errors).inspect(|&vip| {
            if nodes.contains(vip) {
                errors.push(format!(
                    "{}: {vip} is inside the node range {} – {} ({nodes})",
                    l.describe("kube_vip.vip"),
                    l.describe("network.range_start"),
                    l.describe("network.range_end")
                ));
            } else if !net.contains(vip) {
                errors.push(format!("{}: {vip} is outside the node network {}", l.describe("kube_vip.vip"), net_text));
            } else if vip == gw {
                errors.push(format!("{} is the gateway {}", l.describe("kube_vip.vip"), l.describe("network.gateway")));
            }
        })
    } else {
        None
    };
    if l.config.metallb.enabled {
        match l.config.metallb.range.parse::<Ipv4Range>() {
            Err(e) => errors.push(format!("{}: {e}", l.describe("metallb.range"))),
            Ok(lb) => {
                if lb.overlaps(&nodes) {
                    errors.push(format!(
                        "{}: {lb} overlaps the node range {nodes} (network.range_start..network.range_end)",
                        l.describe("metallb.range")
                    ));
                }
                if !net.contains(lb.start()) || !net.contains(lb.end()) {
                    errors.push(format!(
                        "{}: {lb} is not inside the node network {}",
                        l.describe("metallb.range"),
                        net_text
                    ));
                }
                if let Some(vip) = vip.filter(|v| lb.contains(*v)) {
                    errors.push(format!(
                        "{}: {vip} is inside {} ({lb})",
                        l.describe("kube_vip.vip"),
                        l.describe("metallb.range")
                    ));
                }
            }
        }
    }
}

/// PVE tag syntax: `[a-z0-9_][a-z0-9_\-+.]*`, compared case-insensitively.
pub fn is_valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || "_-+.".contains(c))
}

fn check_tags(l: &Loaded, errors: &mut Vec<String>) {
    let t = &l.config.tags;
    let tags = [("tags.server", &t.server), ("tags.agent", &t.agent), ("tags.storage", &t.storage)];
    for (key, tag) in tags {
        if !is_valid_tag(tag) {
            errors.push(format!(
                "{}: `{tag}` is not a valid Proxmox tag (letters, digits, `_`, then also `-+.`)",
                l.describe(key)
            ));
        }
    }
    for (i, (k1, a)) in tags.iter().enumerate() {
        for (k2, b) in &tags[i + 1..] {
            if a.eq_ignore_ascii_case(b) {
                errors.push(format!("{} and {} are the same tag `{a}`", l.describe(k1), l.describe(k2)));
            }
        }
    }
}

fn check_inventory(l: &Loaded, errors: &mut Vec<String>) {
    let mut seen: HashMap<u32, String> = HashMap::new();
    let mut ips: HashMap<Ipv4Addr, String> = HashMap::new();
    for (n, node) in l.config.nodes.iter().enumerate() {
        if node.id.trim().is_empty() {
            errors.push(format!("{}: a Proxmox node name is required", l.describe(&format!("nodes[{n}].id"))));
        }
        for (v, vm) in node.vms.iter().enumerate() {
            let key = format!("nodes[{n}].vms[{v}]");
            if !["SERVER", "AGENT", "STORAGE"].contains(&vm.role.to_ascii_uppercase().as_str()) {
                errors.push(format!(
                    "{}: role `{}` is not SERVER, AGENT or STORAGE",
                    l.describe(&format!("{key}.role")),
                    vm.role
                ));
            }
            if let Some(addr) = vm.ip.as_deref().and_then(|a| ip(l, &format!("{key}.ip"), a, errors)) {
                if let Some(first) = ips.insert(addr, key.clone()) {
                    errors.push(format!(
                        "{}: {addr} is given to two VMs (also {first}.ip)",
                        l.describe(&format!("{key}.ip"))
                    ));
                }
                if let Some(why) = reserved_use(l, addr) {
                    errors.push(format!("{}: {addr} is {why}", l.describe(&format!("{key}.ip"))));
                }
            }
            if let Some(first) = seen.insert(vm.vmid, key.clone()) {
                errors.push(format!(
                    "{}: vmid {} is listed twice (also {first})",
                    l.describe(&format!("{key}.vmid")),
                    vm.vmid
                ));
            }
        }
    }
}

/// Why `addr` cannot be a node's address: the gateway, the VIP or in the load-balancer range.
fn reserved_use(l: &Loaded, addr: Ipv4Addr) -> Option<String> {
    let c = &l.config;
    if c.network.gateway.parse() == Ok(addr) {
        return Some("the gateway (`network.gateway`)".into());
    }
    if c.kube_vip.enabled && c.kube_vip.vip.parse() == Ok(addr) {
        return Some("the control-plane VIP (`kube_vip.vip`)".into());
    }
    let lb = c.metallb.range.parse::<Ipv4Range>().ok().filter(|_| c.metallb.enabled)?;
    lb.contains(addr).then(|| format!("in the load-balancer range `metallb.range` ({lb})"))
}

fn check_k3s(l: &Loaded, errors: &mut Vec<String>) {
    if let Err(e) = crate::k3s::Version::parse(&l.config.k3s.version) {
        errors.push(format!("{}: {e}", l.describe("k3s.version")));
    }
    let install = &l.config.k3s.install;
    check_timeout(l, "k3s.install.timeout_secs", install.timeout_secs, errors);
    if install.mode == super::InstallMode::Online
        && !install.url.starts_with("https://")
        && !install.url.starts_with("http://")
    {
        errors.push(format!("{}: `{}` is not an http(s) URL", l.describe("k3s.install.url"), install.url));
    }
    if install.mode == super::InstallMode::Airgap {
        for (key, path) in [("k3s.install.script", &install.script), ("k3s.install.binary", &install.binary)] {
            if path.is_none() {
                errors.push(format!("{}: required when k3s.install.mode is airgap", l.describe(key)));
            }
        }
    }
}
