//! The Proxmox host as a typed value: a host name or an IP address, nothing else.
//!
//! The value ends up in a URL (`https://HOST:PORT/api2/json/...`). Anything that could
//! change where that URL points — a path (`127.0.0.47/x`), user info (`evil@host/`), a
//! port (`host:443`) or a scheme — is refused here, before any request is built.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// A validated Proxmox host (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxmoxHost {
    /// A DNS name of RFC 1123 labels (`pve1`, `pve1.lab.example.com`, a trailing dot allowed).
    Name(String),
    /// An IPv4 or IPv6 address (IPv6 may be written in brackets: `[2001:db8::5]`).
    Ip(IpAddr),
}

impl fmt::Display for ProxmoxHost {
    /// The host as a client takes it: a name, or an address without brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxmoxHost::Name(name) => f.write_str(name),
            ProxmoxHost::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Says what a Proxmox host value must look like, after the reason it was refused.
const EXPECTED: &str = "give only the host, e.g. pve1.example.com or 10.0.0.5";

impl FromStr for ProxmoxHost {
    /// Why the text was refused, for a message that already names the key.
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let port_hint = |host: &str| {
            format!("`{text}` includes a port; set the host to `{host}` and the port in PROXMOX_PORT (`proxmox.port`)")
        };
        if text.contains("://") {
            return Err(format!(
                "`{text}` is a URL, not a host name or IP address; {EXPECTED}, and the port in PROXMOX_PORT (`proxmox.port`)"
            ));
        }
        if let Some(inner) = text.strip_prefix('[') {
            let (addr, rest) = inner.split_once(']').ok_or_else(|| format!("`{text}`: missing `]`; {EXPECTED}"))?;
            let addr: Ipv6Addr = addr.parse().map_err(|_| format!("`{text}`: `{addr}` is not an IPv6 address"))?;
            return match rest {
                "" => Ok(ProxmoxHost::Ip(IpAddr::V6(addr))),
                _ if is_port_suffix(rest) => Err(port_hint(&addr.to_string())),
                _ => Err(format!("`{text}`: unexpected `{rest}` after the address; {EXPECTED}")),
            };
        }
        if let Ok(addr) = text.parse::<IpAddr>() {
            return Ok(ProxmoxHost::Ip(addr));
        }
        if let Some((host, port)) = text.rsplit_once(':')
            && !host.contains(':')
            && is_port_suffix(&format!(":{port}"))
        {
            return Err(port_hint(host));
        }
        check_host_name(text).map_err(|why| format!("`{text}` is not a host name or IP address: {why}; {EXPECTED}"))?;
        Ok(ProxmoxHost::Name(text.to_string()))
    }
}

/// `:8006`.
fn is_port_suffix(text: &str) -> bool {
    text.strip_prefix(':').is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// RFC 1123 host name: labels of 1-63 letters, digits and inner hyphens, 253 characters at
/// most; an all-numeric last label is a mistyped address, not a name.
fn check_host_name(text: &str) -> Result<(), String> {
    if let Some(c) = text.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.')) {
        return Err(format!("`{}` is not allowed", c.escape_default()));
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() || name.len() > 253 {
        return Err("a name has 1 to 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated label has 1 to 63 characters".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` starts or ends with `-`"));
        }
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    if last.bytes().all(|b| b.is_ascii_digit()) {
        // (A valid address was taken as one before names are checked.)
        return Err(if name.split('.').count() == 4 {
            "not a valid IPv4 address".into()
        } else {
            "the last label of a name is not all digits".into()
        });
    }
    Ok(())
}
