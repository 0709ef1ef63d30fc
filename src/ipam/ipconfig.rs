//! PVE `ipconfigN` values (`ip=10.10.0.5/24,gw=10.10.0.1`): parse, format,
//! and compare by meaning.
//!
//! PVE stores the keys in whatever order they were written, so two values
//! that mean the same can differ as strings; k3sx must compare them parsed,
//! or every run would rewrite configs that are already right.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::cidr::{Ipv4Cidr, Ipv6Cidr, ParseError};

/// The `ip=` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ipv4Setting {
    /// `ip=dhcp`
    Dhcp,
    /// `ip=10.10.0.5/24`
    Static(Ipv4Cidr),
}

/// The `ip6=` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ipv6Setting {
    /// `ip6=dhcp`
    Dhcp,
    /// `ip6=auto` (SLAAC)
    Auto,
    /// `ip6=2001:db8::5/64`
    Static(Ipv6Cidr),
}

/// One parsed `ipconfigN` value.
///
/// `ip=manual` / `ip6=manual` parse as "not set" (`None`): it means the same
/// (cloud-init leaves that family alone) and writing `ip=manual` breaks VM
/// start on some PVE versions, so [`IpConfig::format`] can never produce it.
///
/// Equality ([`PartialEq`], [`same_meaning`]) compares parsed values and
/// ignores key order, including the order of `extra`.
#[derive(Debug, Clone, Default)]
pub struct IpConfig {
    pub ip: Option<Ipv4Setting>,
    pub gw: Option<Ipv4Addr>,
    pub ip6: Option<Ipv6Setting>,
    pub gw6: Option<Ipv6Addr>,
    /// Keys k3sx does not know, in the order they were found, kept so a
    /// rewrite does not drop settings made by someone else.
    pub extra: Vec<(String, String)>,
}

impl IpConfig {
    /// A static IPv4 setting with an optional gateway, nothing else.
    pub fn static_v4(address: Ipv4Cidr, gateway: Option<Ipv4Addr>) -> Self {
        IpConfig { ip: Some(Ipv4Setting::Static(address)), gw: gateway, ..IpConfig::default() }
    }

    /// Parses a stored or user-written value; keys in any order, surrounding
    /// spaces ignored. The empty string is a config with nothing set.
    ///
    /// Errors name the offending item: `ip=10.0.0.300/24: invalid address`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut config = IpConfig::default();
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(config);
        }
        // Known keys may appear once; `manual` leaves the field None but still counts.
        let mut seen: [bool; 4] = [false; 4];
        for raw in trimmed.split(',') {
            let item = raw.trim();
            if item.is_empty() {
                return Err(ParseError::new(text, "empty item (two commas in a row, or a comma at an end)"));
            }
            let Some((key, value)) = item.split_once('=') else {
                return Err(ParseError::new(item, "expected key=value"));
            };
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() {
                return Err(ParseError::new(item, "missing key before `=`"));
            }
            let slot = match key {
                "ip" => 0,
                "gw" => 1,
                "ip6" => 2,
                "gw6" => 3,
                _ => {
                    config.extra.push((key.to_string(), value.to_string()));
                    continue;
                }
            };
            if seen[slot] {
                return Err(ParseError::new(item, format!("`{key}` is given more than once")));
            }
            seen[slot] = true;
            if value.is_empty() {
                return Err(ParseError::new(item, "missing value"));
            }
            let at_item = |e: ParseError| ParseError::new(item, e.reason);
            let bad_address = || ParseError::new(item, "invalid address");
            let word = value.to_ascii_lowercase();
            match (slot, word.as_str()) {
                (0 | 2, "manual") => {}
                (0, "dhcp") => config.ip = Some(Ipv4Setting::Dhcp),
                (0, _) => config.ip = Some(Ipv4Setting::Static(value.parse().map_err(at_item)?)),
                (1, _) => config.gw = Some(value.parse().map_err(|_| bad_address())?),
                (2, "dhcp") => config.ip6 = Some(Ipv6Setting::Dhcp),
                (2, "auto") => config.ip6 = Some(Ipv6Setting::Auto),
                (2, _) => config.ip6 = Some(Ipv6Setting::Static(value.parse().map_err(at_item)?)),
                _ => config.gw6 = Some(value.parse().map_err(|_| bad_address())?),
            }
        }
        Ok(config)
    }

    /// The canonical string: `ip`, `gw`, `ip6`, `gw6`, then the extra keys in
    /// their order; unset keys are left out. IPv6 addresses come out in
    /// compressed form.
    pub fn format(&self) -> String {
        let mut items: Vec<String> = Vec::with_capacity(4 + self.extra.len());
        match self.ip {
            Some(Ipv4Setting::Dhcp) => items.push("ip=dhcp".into()),
            Some(Ipv4Setting::Static(cidr)) => items.push(format!("ip={cidr}")),
            None => {}
        }
        if let Some(gw) = self.gw {
            items.push(format!("gw={gw}"));
        }
        match self.ip6 {
            Some(Ipv6Setting::Dhcp) => items.push("ip6=dhcp".into()),
            Some(Ipv6Setting::Auto) => items.push("ip6=auto".into()),
            Some(Ipv6Setting::Static(cidr)) => items.push(format!("ip6={cidr}")),
            None => {}
        }
        if let Some(gw6) = self.gw6 {
            items.push(format!("gw6={gw6}"));
        }
        items.extend(self.extra.iter().map(|(k, v)| format!("{k}={v}")));
        items.join(",")
    }

    /// The static IPv4 address, if `ip=` holds one (not for `dhcp` or unset).
    pub fn static_address(&self) -> Option<Ipv4Addr> {
        match self.ip {
            Some(Ipv4Setting::Static(cidr)) => Some(cidr.addr()),
            _ => None,
        }
    }
}

/// Whether two configs mean the same: parsed values equal, key order ignored.
pub fn same_meaning(a: &IpConfig, b: &IpConfig) -> bool {
    fn sorted(c: &IpConfig) -> Vec<&(String, String)> {
        let mut extra: Vec<&(String, String)> = c.extra.iter().collect();
        extra.sort();
        extra
    }
    a.ip == b.ip && a.gw == b.gw && a.ip6 == b.ip6 && a.gw6 == b.gw6 && sorted(a) == sorted(b)
}

impl PartialEq for IpConfig {
    fn eq(&self, other: &Self) -> bool {
        same_meaning(self, other)
    }
}

impl Eq for IpConfig {}

impl fmt::Display for IpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format())
    }
}

impl FromStr for IpConfig {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        IpConfig::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> IpConfig {
        IpConfig::parse(s).unwrap()
    }

    fn err(s: &str) -> String {
        IpConfig::parse(s).unwrap_err().to_string()
    }

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_static_ipv4_with_gateway() {
        let c = parse("ip=10.10.0.5/24,gw=10.10.0.1");
        assert_eq!(c.ip, Some(Ipv4Setting::Static(cidr("10.10.0.5/24"))));
        assert_eq!(c.gw, Some(Ipv4Addr::new(10, 10, 0, 1)));
        assert_eq!(c.ip6, None);
        assert_eq!(c.gw6, None);
        assert!(c.extra.is_empty());
        assert_eq!(c.static_address(), Some(Ipv4Addr::new(10, 10, 0, 5)));
    }

    #[test]
    fn parses_every_known_key_in_any_order() {
        let c = parse("gw6=2001:db8::1,ip6=2001:db8::5/64,gw=10.0.0.1,ip=10.0.0.5/24");
        assert_eq!(c.ip, Some(Ipv4Setting::Static(cidr("10.0.0.5/24"))));
        assert_eq!(c.gw, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(c.ip6, Some(Ipv6Setting::Static("2001:db8::5/64".parse().unwrap())));
        assert_eq!(c.gw6, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(c.format(), "ip=10.0.0.5/24,gw=10.0.0.1,ip6=2001:db8::5/64,gw6=2001:db8::1");
    }

    #[test]
    fn parses_dhcp_and_auto_case_insensitively() {
        let c = parse("ip=dhcp,ip6=auto");
        assert_eq!(c.ip, Some(Ipv4Setting::Dhcp));
        assert_eq!(c.ip6, Some(Ipv6Setting::Auto));
        assert_eq!(c.static_address(), None);
        assert_eq!(parse("ip=DHCP,ip6=Dhcp"), parse("ip=dhcp,ip6=dhcp"));
        assert_eq!(parse("ip=DHCP").format(), "ip=dhcp");
    }

    #[test]
    fn empty_value_is_a_config_with_nothing_set() {
        for s in ["", "   "] {
            let c = parse(s);
            assert_eq!(c, IpConfig::default());
            assert_eq!(c.format(), "");
        }
    }

    #[test]
    fn manual_reads_as_unset_and_is_never_written() {
        let c = parse("ip=manual,ip6=manual,gw=10.0.0.1");
        assert_eq!(c.ip, None);
        assert_eq!(c.ip6, None);
        assert_eq!(c.format(), "gw=10.0.0.1");
        assert_eq!(parse("ip=manual"), parse(""));
        assert!(!parse("ip=MANUAL").format().contains("manual"));
    }

    #[test]
    fn unknown_keys_are_kept_in_order_after_known_ones() {
        let c = parse("zeta=1,ip=dhcp,alpha=two=2,mtu=");
        assert_eq!(
            c.extra,
            vec![
                ("zeta".to_string(), "1".to_string()),
                ("alpha".to_string(), "two=2".to_string()),
                ("mtu".to_string(), String::new()),
            ]
        );
        assert_eq!(c.format(), "ip=dhcp,zeta=1,alpha=two=2,mtu=");
    }

    #[test]
    fn keys_are_case_sensitive_like_pve() {
        let c = parse("IP=10.0.0.5/24");
        assert_eq!(c.ip, None);
        assert_eq!(c.extra, vec![("IP".to_string(), "10.0.0.5/24".to_string())]);
    }

    #[test]
    fn format_is_canonical_and_round_trips() {
        let stored = "gw=10.10.0.1, ip=10.10.0.5/24 ,foo=bar";
        let c = parse(stored);
        assert_eq!(c.format(), "ip=10.10.0.5/24,gw=10.10.0.1,foo=bar");
        assert_eq!(c.to_string(), c.format());
        assert_eq!(parse(&c.format()).format(), c.format());
    }

    #[test]
    fn ipv6_is_formatted_compressed() {
        assert_eq!(parse("ip6=2001:0db8:0000::0005/64").format(), "ip6=2001:db8::5/64");
    }

    #[test]
    fn same_meaning_ignores_key_order_and_spelling() {
        let a = parse("ip=10.10.0.5/24,gw=10.10.0.1");
        let b = parse("gw=10.10.0.1,ip=10.10.0.5/24");
        assert!(same_meaning(&a, &b));
        assert_eq!(a, b);
        let a6 = parse("ip6=2001:db8::5/64,gw6=2001:db8::1");
        let b6 = parse("gw6=2001:db8:0:0:0:0:0:1,ip6=2001:0db8::5/64");
        assert_eq!(a6, b6);
    }

    #[test]
    fn same_meaning_ignores_extra_order_but_not_extra_values() {
        assert_eq!(parse("ip=dhcp,a=1,b=2"), parse("b=2,ip=dhcp,a=1"));
        assert_ne!(parse("ip=dhcp,a=1"), parse("ip=dhcp,a=2"));
        assert_ne!(parse("ip=dhcp,a=1"), parse("ip=dhcp"));
    }

    #[test]
    fn different_meanings_are_not_equal() {
        let base = parse("ip=10.10.0.5/24,gw=10.10.0.1");
        for other in [
            "ip=10.10.0.6/24,gw=10.10.0.1",
            "ip=10.10.0.5/25,gw=10.10.0.1",
            "ip=10.10.0.5/24,gw=10.10.0.254",
            "ip=10.10.0.5/24",
            "ip=dhcp,gw=10.10.0.1",
            "ip=10.10.0.5/24,gw=10.10.0.1,ip6=auto",
            "ip=10.10.0.5/24,gw=10.10.0.1,gw6=::1",
        ] {
            assert!(!same_meaning(&base, &parse(other)), "{other} should differ");
        }
        assert_ne!(parse("ip6=auto"), parse("ip6=dhcp"));
    }

    #[test]
    fn static_v4_builds_only_ip_and_gw() {
        let c = IpConfig::static_v4(cidr("10.10.0.5/24"), Some(Ipv4Addr::new(10, 10, 0, 1)));
        assert_eq!(c.format(), "ip=10.10.0.5/24,gw=10.10.0.1");
        assert_eq!(IpConfig::static_v4(cidr("10.10.0.5/24"), None).format(), "ip=10.10.0.5/24");
    }

    #[test]
    fn from_str_matches_parse() {
        let c: IpConfig = "ip=dhcp".parse().unwrap();
        assert_eq!(c, parse("ip=dhcp"));
    }

    #[test]
    fn errors_name_the_bad_item() {
        assert_eq!(err("ip=10.0.0.300/24"), "ip=10.0.0.300/24: invalid address");
        assert_eq!(err("gw=10.0.0.1,ip=10.0.0.300/24"), "ip=10.0.0.300/24: invalid address");
        assert_eq!(err("ip=10.0.0.5/33"), "ip=10.0.0.5/33: invalid prefix length (expected 0-32)");
        assert_eq!(
            err("ip=10.0.0.5"),
            "ip=10.0.0.5: missing prefix length (expected address/prefix, e.g. 10.10.0.5/24)"
        );
        assert_eq!(err("ip=10.0.0.5/24,gw=10.0.0"), "gw=10.0.0: invalid address");
        assert_eq!(err("gw=10.0.0.1/24"), "gw=10.0.0.1/24: invalid address");
        assert_eq!(err("ip6=2001:db8::zz/64"), "ip6=2001:db8::zz/64: invalid address");
        assert_eq!(err("ip6=2001:db8::5/129"), "ip6=2001:db8::5/129: invalid prefix length (expected 0-128)");
        assert_eq!(
            err("ip6=static"),
            "ip6=static: missing prefix length (expected address/prefix, e.g. 2001:db8::5/64)"
        );
        assert_eq!(err("gw6=10.0.0.1"), "gw6=10.0.0.1: invalid address");
        assert_eq!(err("ip6=10.0.0.1/24"), "ip6=10.0.0.1/24: invalid address");
    }

    #[test]
    fn ipv4_values_in_ipv6_keys_and_back_are_rejected() {
        assert_eq!(err("ip=2001:db8::5/64"), "ip=2001:db8::5/64: invalid address");
        assert_eq!(err("gw=2001:db8::1"), "gw=2001:db8::1: invalid address");
        assert_eq!(err("ip=auto"), "ip=auto: missing prefix length (expected address/prefix, e.g. 10.10.0.5/24)");
    }

    #[test]
    fn structural_errors() {
        assert_eq!(
            err("ip=dhcp,,gw=10.0.0.1"),
            "ip=dhcp,,gw=10.0.0.1: empty item (two commas in a row, or a comma at an end)"
        );
        assert_eq!(err("ip=dhcp,"), "ip=dhcp,: empty item (two commas in a row, or a comma at an end)");
        assert_eq!(err("dhcp"), "dhcp: expected key=value");
        assert_eq!(err("ip=dhcp,=5"), "=5: missing key before `=`");
        assert_eq!(err("ip="), "ip=: missing value");
        assert_eq!(err("gw= "), "gw=: missing value");
    }

    #[test]
    fn a_known_key_given_twice_is_an_error_even_with_manual() {
        assert_eq!(err("ip=dhcp,ip=10.0.0.5/24"), "ip=10.0.0.5/24: `ip` is given more than once");
        assert_eq!(err("ip=manual,ip=dhcp"), "ip=dhcp: `ip` is given more than once");
        assert_eq!(err("gw6=::1,gw6=::2"), "gw6=::2: `gw6` is given more than once");
    }

    #[test]
    fn unknown_keys_may_repeat_and_are_kept() {
        let c = parse("tag=a,tag=b");
        assert_eq!(c.format(), "tag=a,tag=b");
    }
}
