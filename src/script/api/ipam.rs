//! `ipam::` — cloud-init `ipconfigN` values, IPv4 networks and ranges, sticky allocation.

use std::net::Ipv4Addr;
use std::sync::Arc;

use rhai::{Array, Dynamic, INT, Map, Module};

use super::{RhaiResult, register, script_error};
use crate::ipam::{
    AllocAction, AllocPool, AllocRequest, IpConfig, Ipv4Cidr, Ipv4Range, Ipv4Setting, Ipv6Setting, allocate_sticky,
};
use crate::script::Host;

pub fn module(host: &Arc<Host>) -> Module {
    let mut m = Module::new();
    register_ipconfig(&mut m);
    register_networks(&mut m);
    register_allocation(&mut m, host);
    m
}

fn register_ipconfig(m: &mut Module) {
    register(
        m,
        "parse_ipconfig",
        &["text: &str", "Map"],
        "Parses a PVE `ipconfigN` value into `#{ip, gw, ip6, gw6, extra, address}`: `ip` is\n\
         `\"10.10.0.5/24\"`, `\"dhcp\"` or `()`; `address` is the static IPv4 address alone (or `()`);\n\
         `extra` keeps unknown `[key, value]` pairs in order.\n\n\
         ```rhai\nlet c = ipam::parse_ipconfig(\"gw=10.10.0.1,ip=10.10.0.5/24\");\nc.address // \"10.10.0.5\"\n```",
        |text: &str| -> RhaiResult<Map> { Ok(ipconfig_map(&parse(text)?)) },
    );
    register(
        m,
        "format_ipconfig",
        &["config: Map", "String"],
        "Formats `#{ip, gw, ip6, gw6, extra}` (as `parse_ipconfig` returns) as an `ipconfigN` value in\n\
         canonical order (`ip`, `gw`, `ip6`, `gw6`, then the others).\n\n\
         ```rhai\nipam::format_ipconfig(#{ip: \"10.10.0.5/24\", gw: \"10.10.0.1\"}) // \"ip=10.10.0.5/24,gw=10.10.0.1\"\n```",
        |map: Map| -> RhaiResult<String> { Ok(from_map(&map)?.format()) },
    );
    register(
        m,
        "same_ipconfig",
        &["a: &str", "b: &str", "bool"],
        "True when two `ipconfigN` values mean the same, whatever the order of their keys.\n\n\
         ```rhai\nipam::same_ipconfig(\"gw=10.0.0.1,ip=10.0.0.5/24\", \"ip=10.0.0.5/24,gw=10.0.0.1\") // true\n```",
        |a: &str, b: &str| -> RhaiResult<bool> { Ok(parse(a)? == parse(b)?) },
    );
}

fn parse(text: &str) -> RhaiResult<IpConfig> {
    IpConfig::parse(text).map_err(|e| script_error("ipconfig", format!("`{text}`: {e}"), Some(text)))
}

fn ipconfig_map(c: &IpConfig) -> Map {
    let text = |v: Option<String>| v.map(Dynamic::from).unwrap_or(Dynamic::UNIT);
    let mut m = Map::new();
    m.insert(
        "ip".into(),
        text(c.ip.map(|ip| match ip {
            Ipv4Setting::Dhcp => "dhcp".to_string(),
            Ipv4Setting::Static(cidr) => cidr.to_string(),
        })),
    );
    m.insert("gw".into(), text(c.gw.map(|g| g.to_string())));
    m.insert(
        "ip6".into(),
        text(c.ip6.map(|ip| match ip {
            Ipv6Setting::Dhcp => "dhcp".to_string(),
            Ipv6Setting::Auto => "auto".to_string(),
            Ipv6Setting::Static(cidr) => cidr.to_string(),
        })),
    );
    m.insert("gw6".into(), text(c.gw6.map(|g| g.to_string())));
    let extra: Array =
        c.extra.iter().map(|(k, v)| Dynamic::from_array(vec![k.clone().into(), v.clone().into()])).collect();
    m.insert("extra".into(), extra.into());
    m.insert("address".into(), text(c.static_address().map(|a| a.to_string())));
    m
}

/// The map form back to an `IpConfig`, going through the parser so the rules stay in one place.
fn from_map(map: &Map) -> RhaiResult<IpConfig> {
    let mut parts = Vec::new();
    for key in ["ip", "gw", "ip6", "gw6"] {
        if let Some(v) = map.get(key).filter(|v| !v.is_unit()) {
            parts.push(format!("{key}={v}"));
        }
    }
    if let Some(extra) = map.get("extra").and_then(|e| e.read_lock::<Array>().map(|a| a.clone())) {
        for pair in extra {
            let pair =
                pair.into_array().map_err(|_| script_error("ipconfig", "extra: expected [key, value] pairs", None))?;
            if let [k, v] = &pair[..] {
                parts.push(format!("{k}={v}"));
            }
        }
    }
    parse(&parts.join(","))
}

fn register_networks(m: &mut Module) {
    register(
        m,
        "cidr_contains",
        &["cidr: &str", "ip: &str", "bool"],
        "True when `ip` is inside the network `cidr` (`\"10.10.0.0/24\"`; any address of it works).\n\n\
         ```rhai\nipam::cidr_contains(\"10.10.0.1/24\", \"10.10.0.77\") // true\n```",
        |cidr: &str, ip: &str| -> RhaiResult<bool> { Ok(cidr_arg(cidr)?.contains(ip_arg(ip)?)) },
    );
    register(
        m,
        "network",
        &["cidr: &str", "Map"],
        "The network of a CIDR: `#{network, broadcast, prefix, netmask, hosts}`.\n\n\
         ```rhai\nipam::network(\"10.10.0.5/24\").broadcast // \"10.10.0.255\"\n```",
        |cidr: &str| -> RhaiResult<Map> {
            let c = cidr_arg(cidr)?;
            let mut m = Map::new();
            m.insert("network".into(), c.network().to_string().into());
            m.insert("broadcast".into(), c.broadcast().to_string().into());
            m.insert("prefix".into(), (c.prefix() as INT).into());
            m.insert("netmask".into(), c.netmask().to_string().into());
            m.insert("hosts".into(), (c.host_count() as INT).into());
            Ok(m)
        },
    );
    register(
        m,
        "range",
        &["range: &str", "Array"],
        "Every address of a range `\"first-last\"`, in order.\n\n```rhai\nipam::range(\"10.10.0.201-10.10.0.203\").len() // 3\n```",
        |range: &str| -> RhaiResult<Array> {
            let r = range_arg(range)?;
            if r.len() > 65_536 {
                return Err(script_error("argument", format!("{range}: more than 65536 addresses"), Some(range)));
            }
            Ok(r.iter().map(|a| Dynamic::from(a.to_string())).collect())
        },
    );
    register(
        m,
        "range_contains",
        &["range: &str", "ip: &str", "bool"],
        "True when `ip` lies in the range `\"first-last\"`.",
        |range: &str, ip: &str| -> RhaiResult<bool> { Ok(range_arg(range)?.contains(ip_arg(ip)?)) },
    );
}

fn ip_arg(ip: &str) -> RhaiResult<Ipv4Addr> {
    ip.trim().parse().map_err(|_| script_error("argument", format!("`{ip}` is not an IPv4 address"), Some(ip)))
}

fn cidr_arg(cidr: &str) -> RhaiResult<Ipv4Cidr> {
    cidr.parse().map_err(|e| script_error("argument", format!("{e}"), Some(cidr)))
}

fn range_arg(range: &str) -> RhaiResult<Ipv4Range> {
    range.parse().map_err(|e| script_error("argument", format!("{e}"), Some(range)))
}

fn register_allocation(m: &mut Module, host: &Arc<Host>) {
    let doc = "Plans static addresses for VMs, sticky: a VM that already holds a static address inside the\n\
               range (and not taken by an earlier VM) keeps it; a `fixed` address is used as given; every other\n\
               VM gets the lowest free address. The gateway, network, broadcast, VIP and load-balancer range\n\
               (from `CONFIG`) are never handed out. `requests` are `#{key, current, fixed}` (addresses or `()`)\n\
               in the order to serve them (by node, then vmid). Returns `#{key, address, action, note}` per VM,\n\
               `action` being `keep`, `set` or `fixed`; fails before planning anything when the range is too\n\
               small, saying how many addresses are needed and free.\n\n\
               ```rhai\nlet plan = ipam::allocate([#{key: \"pve1/101\", current: \"10.10.0.205\", fixed: ()}]);\n```";
    let h = host.clone();
    register(m, "allocate", &["requests: Array", "Array"], doc, move |requests: Array| {
        allocate(&requests, &pool_from_config(&h)?)
    });
}

/// The node range and everything that must not be handed out, from the configuration.
fn pool_from_config(host: &Host) -> RhaiResult<AllocPool> {
    let c = host.config();
    let n = &c.network;
    let bad = |key: &str, e: String| script_error("config", format!("{key}: {e}"), Some(key));
    let start = ip_arg(&n.range_start).map_err(|_| bad("network.range_start", n.range_start.clone()))?;
    let end = ip_arg(&n.range_end).map_err(|_| bad("network.range_end", n.range_end.clone()))?;
    let gateway = ip_arg(&n.gateway).map_err(|_| bad("network.gateway", n.gateway.clone()))?;
    let range = Ipv4Range::new(start, end).map_err(|e| bad("network.range_start", e.to_string()))?;
    let cidr = Ipv4Cidr::new(gateway, n.cidr).map_err(|e| bad("network.cidr", e.to_string()))?;
    let mut reserved = Vec::new();
    if c.kube_vip.enabled {
        reserved.push(ip_arg(&c.kube_vip.vip)?);
    }
    let mut reserved_ranges = Vec::new();
    if c.metallb.enabled {
        reserved_ranges.push(range_arg(&c.metallb.range)?);
    }
    Ok(AllocPool { range, cidr, gateway, reserved, reserved_ranges })
}

fn allocate(requests: &Array, pool: &AllocPool) -> RhaiResult<Array> {
    let optional_ip = |m: &Map, key: &str| -> RhaiResult<Option<Ipv4Addr>> {
        match m.get(key).filter(|v| !v.is_unit()) {
            Some(v) => ip_arg(&v.to_string()).map(Some),
            None => Ok(None),
        }
    };
    let mut reqs = Vec::with_capacity(requests.len());
    for r in requests {
        let m = r
            .read_lock::<Map>()
            .ok_or_else(|| script_error("argument", "each request is a map #{key, current, fixed}", None))?;
        let key = m.get("key").map(|k| k.to_string()).unwrap_or_default();
        reqs.push(AllocRequest { current: optional_ip(&m, "current")?, fixed: optional_ip(&m, "fixed")?, key });
    }
    let plan = allocate_sticky(&reqs, pool).map_err(|e| script_error("allocation", e.to_string(), None))?;
    Ok(plan
        .into_iter()
        .map(|a| {
            let mut m = Map::new();
            m.insert("key".into(), a.key.into());
            m.insert("address".into(), a.address.to_string().into());
            let action = match a.action {
                AllocAction::Keep => "keep",
                AllocAction::Set => "set",
                AllocAction::Fixed => "fixed",
            };
            m.insert("action".into(), action.into());
            m.insert("note".into(), a.note.map(Dynamic::from).unwrap_or(Dynamic::UNIT));
            Dynamic::from_map(m)
        })
        .collect())
}
