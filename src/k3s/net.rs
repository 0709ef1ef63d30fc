//! The NIC a node reaches its gateway through, from `ip -j route get <gateway>`: kube-vip's
//! `vip_interface` and K3s's `--flannel-iface`. Cloud images name it `eth0`, `ens18`,
//! `enp6s18`…; guessing breaks the VIP, so it is detected.

use std::net::IpAddr;

use serde::Deserialize;

use super::install::is_interface_name;

/// The route's output device and, when the kernel gave one, the source address it picks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDevice {
    pub dev: String,
    pub prefsrc: Option<IpAddr>,
}

/// Why the output of `ip -j route get` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("`ip -j route get` output is not JSON: {message} (line {line}, column {column})")]
    NotJson { message: String, line: usize, column: usize },

    #[error("`ip -j route get` gave no route (expected a list with one entry)")]
    NoRoute,

    #[error("`ip -j route get` gave a route without an output device (`dev`)")]
    NoDevice,

    #[error("`ip -j route get` gave {what} {value:?}, which is not valid")]
    Invalid { what: &'static str, value: String },
}

impl RouteError {
    /// A short, stable name of the error class, for scripts (`#{kind: ...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            RouteError::NotJson { .. } => "not_json",
            RouteError::NoRoute => "no_route",
            RouteError::NoDevice => "no_device",
            RouteError::Invalid { .. } => "invalid",
        }
    }
}

#[derive(Deserialize)]
struct Route {
    dev: Option<String>,
    prefsrc: Option<String>,
}

/// Parses `ip -j route get GW` (`[{"dst":"10.10.0.1","dev":"ens18","prefsrc":"10.10.0.50",...}]`)
/// into the device (and preferred source address) of the first route.
///
/// # Errors
///
/// [`RouteError`] when the text is not a JSON list of routes, the list is empty (no route to
/// the gateway), the route has no `dev` (e.g. a blackhole or unreachable route), or `dev` /
/// `prefsrc` are not an interface name / an IP address.
pub fn default_interface_from_route_json(json: &str) -> Result<RouteDevice, RouteError> {
    let routes: Vec<Route> = serde_json::from_str(json).map_err(|e| RouteError::NotJson {
        message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
        line: e.line(),
        column: e.column(),
    })?;
    let route = routes.into_iter().next().ok_or(RouteError::NoRoute)?;
    let dev = route.dev.filter(|d| !d.is_empty()).ok_or(RouteError::NoDevice)?;
    if !is_interface_name(&dev) {
        return Err(RouteError::Invalid { what: "the device", value: dev });
    }
    let prefsrc = match route.prefsrc {
        Some(p) => Some(p.parse().map_err(|_| RouteError::Invalid { what: "the source address", value: p })?),
        None => None,
    };
    Ok(RouteDevice { dev, prefsrc })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_and_source_address_are_read_from_real_ip_output() {
        let json = r#"[{"dst":"10.10.0.1","dev":"ens18","prefsrc":"10.10.0.50","flags":[],"uid":0,"cache":[]}]"#;
        let r = default_interface_from_route_json(json).unwrap();
        assert_eq!(r, RouteDevice { dev: "ens18".into(), prefsrc: Some("10.10.0.50".parse().unwrap()) });
    }

    #[test]
    fn a_route_without_prefsrc_still_names_its_device() {
        let json = "[{\"dst\":\"fd00::1\",\"gateway\":\"fe80::1\",\"dev\":\"enp6s18\"}]\n";
        let r = default_interface_from_route_json(json).unwrap();
        assert_eq!((r.dev.as_str(), r.prefsrc), ("enp6s18", None));
    }

    #[test]
    fn no_route_no_device_and_garbage_are_named_errors() {
        assert_eq!(default_interface_from_route_json("[]").unwrap_err().kind(), "no_route");
        assert_eq!(
            default_interface_from_route_json(r#"[{"type":"unreachable","dst":"10.9.9.9"}]"#).unwrap_err().kind(),
            "no_device"
        );
        let err = default_interface_from_route_json("RTNETLINK answers: Network is unreachable").unwrap_err();
        assert_eq!(err.kind(), "not_json");
        assert!(err.to_string().contains("line 1"), "{err}");
        assert_eq!(default_interface_from_route_json(r#"[{"dev":"eth0; reboot"}]"#).unwrap_err().kind(), "invalid");
        assert_eq!(
            default_interface_from_route_json(r#"[{"dev":"eth0","prefsrc":"x"}]"#).unwrap_err().kind(),
            "invalid"
        );
    }
}
