//! Address arithmetic: IPv4/IPv6 prefixes (CIDR, one generic type) and inclusive IPv4 ranges.
//!
//! Hand-written on `std::net` because k3sx needs only a handful of
//! operations and wants its own error wording.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A value that could not be parsed: `part` is the text as the user wrote it,
/// `reason` says what is wrong with it. Renders as `10.0.0.300/24: invalid address`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{part}: {reason}")]
pub struct ParseError {
    pub part: String,
    pub reason: String,
}

impl ParseError {
    pub(crate) fn new(part: impl Into<String>, reason: impl Into<String>) -> Self {
        ParseError { part: part.into(), reason: reason.into() }
    }
}

/// Parses a prefix length: decimal digits only (no sign, no spaces), at most `max`.
fn parse_prefix(text: &str, whole: &str, max: u8) -> Result<u8, ParseError> {
    let bad = || ParseError::new(whole, prefix_range(max));
    if text.is_empty() || text.len() > 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u8>() {
        Ok(p) if p <= max => Ok(p),
        _ => Err(bad()),
    }
}

fn prefix_range(max: u8) -> String {
    format!("invalid prefix length (expected 0-{max})")
}

/// Splits `addr/prefix`; a missing `/prefix` is an error, never a silent /32.
fn split_cidr<'a>(text: &'a str, example: &str) -> Result<(&'a str, &'a str), ParseError> {
    text.split_once('/').ok_or_else(|| {
        ParseError::new(text, format!("missing prefix length (expected address/prefix, e.g. {example})"))
    })
}

/// An address family a [`Cidr`] can hold: [`Ipv4Addr`] or [`Ipv6Addr`]. What differs between
/// the two is only here; parsing, checking and formatting are [`Cidr`]'s, once.
pub trait IpFamily: Copy + Eq + std::hash::Hash + fmt::Debug + fmt::Display + FromStr {
    /// Address width, which is also the longest prefix.
    const BITS: u8;
    /// A CIDR of this family, for error messages.
    const EXAMPLE: &'static str;
}

impl IpFamily for Ipv4Addr {
    const BITS: u8 = 32;
    const EXAMPLE: &'static str = "10.10.0.5/24";
}

impl IpFamily for Ipv6Addr {
    const BITS: u8 = 128;
    const EXAMPLE: &'static str = "2001:db8::5/64";
}

/// An interface address with its prefix length, e.g. `10.10.0.5/24` or `2001:db8::5/64`.
///
/// Host bits are kept: `10.10.0.5/24` is an address on a network, as in PVE's `ip=`;
/// [`Ipv4Cidr::network`] gives the network itself. The prefix is always within the family's
/// width (fields are private to keep that true). Equality compares the parsed address, so
/// `2001:db8:0::5/64` equals `2001:db8::5/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr<A> {
    addr: A,
    prefix: u8,
}

/// An IPv4 interface address with its prefix length, e.g. `10.10.0.5/24`.
pub type Ipv4Cidr = Cidr<Ipv4Addr>;

/// An IPv6 interface address with its prefix length, e.g. `2001:db8::5/64`.
pub type Ipv6Cidr = Cidr<Ipv6Addr>;

impl<A: IpFamily> Cidr<A> {
    /// Builds a CIDR; fails when `prefix` is longer than the address (32 or 128).
    pub fn new(addr: A, prefix: u8) -> Result<Self, ParseError> {
        if prefix > A::BITS {
            return Err(ParseError::new(format!("{addr}/{prefix}"), prefix_range(A::BITS)));
        }
        Ok(Cidr { addr, prefix })
    }

    /// The address as written (host bits included).
    pub fn addr(&self) -> A {
        self.addr
    }

    /// The prefix length, 0-32 or 0-128.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl Ipv4Cidr {
    /// The netmask, e.g. `255.255.255.0` for /24.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The broadcast address (host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether `ip` lies in this network (network and broadcast included).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// How many addresses a host can use: all but network and broadcast,
    /// except /31 (2, point-to-point, RFC 3021) and /32 (1).
    pub fn host_count(&self) -> u32 {
        match self.prefix {
            32 => 1,
            31 => 2,
            // u64: /0 holds 2^32 addresses; minus two it fits u32 again.
            p => ((1u64 << (32 - p)) - 2) as u32,
        }
    }

    /// Whether `ip` is this network's network or broadcast address, which no
    /// host may use. Always false for /31 and /32, which have neither.
    pub fn is_network_or_broadcast(&self, ip: Ipv4Addr) -> bool {
        self.prefix <= 30 && (ip == self.network() || ip == self.broadcast())
    }
}

impl<A: IpFamily> fmt::Display for Cidr<A> {
    /// IPv6 in canonical (compressed) form, which may differ from how it was written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<A: IpFamily> FromStr for Cidr<A> {
    type Err = ParseError;

    /// Parses `10.10.0.5/24` or `2001:db8::5/64`. A bare address without `/prefix` is
    /// rejected: guessing /32 or /24 would silently give a VM the wrong network.
    fn from_str(text: &str) -> Result<Self, ParseError> {
        let (addr, prefix) = split_cidr(text, A::EXAMPLE)?;
        let addr = addr.parse::<A>().map_err(|_| ParseError::new(text, "invalid address"))?;
        let prefix = parse_prefix(prefix, text, A::BITS)?;
        Ok(Cidr { addr, prefix })
    }
}

/// An inclusive range of IPv4 addresses, e.g. `10.10.0.151-10.10.0.199`.
/// Never empty: `start <= end` always holds (fields are private to keep it so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Range {
    start: Ipv4Addr,
    end: Ipv4Addr,
}

impl Ipv4Range {
    /// Builds a range; fails when `start` comes after `end`.
    pub fn new(start: Ipv4Addr, end: Ipv4Addr) -> Result<Self, ParseError> {
        if start > end {
            return Err(ParseError::new(format!("{start}-{end}"), "range start is after its end"));
        }
        Ok(Ipv4Range { start, end })
    }

    /// The first address of the range.
    pub fn start(&self) -> Ipv4Addr {
        self.start
    }

    /// The last address of the range (included).
    pub fn end(&self) -> Ipv4Addr {
        self.end
    }

    /// Whether `ip` lies in the range, both ends included.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.start <= ip && ip <= self.end
    }

    /// How many addresses the range holds (at least 1; u64 because
    /// `0.0.0.0-255.255.255.255` holds 2^32).
    #[allow(clippy::len_without_is_empty)] // a range is never empty
    pub fn len(&self) -> u64 {
        u64::from(u32::from(self.end)) - u64::from(u32::from(self.start)) + 1
    }

    /// The addresses of the range, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        (u32::from(self.start)..=u32::from(self.end)).map(Ipv4Addr::from)
    }

    /// Whether the two ranges share at least one address.
    pub fn overlaps(&self, other: &Ipv4Range) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for Ipv4Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl FromStr for Ipv4Range {
    type Err = ParseError;

    /// Parses `10.10.0.151-10.10.0.199` (spaces around the dash allowed).
    fn from_str(text: &str) -> Result<Self, ParseError> {
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| ParseError::new(text, "expected a range first-last, e.g. 10.10.0.151-10.10.0.199"))?;
        let addr = |part: &str, which: &str| {
            part.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| ParseError::new(text, format!("invalid {which} address `{}`", part.trim())))
        };
        let (start, end) = (addr(start, "start")?, addr(end, "end")?);
        Ipv4Range::new(start, end).map_err(|e| ParseError::new(text, e.reason))
    }
}

/// Whether two ranges share an address (for config validation, e.g. the
/// node range against the load-balancer range).
pub fn ranges_overlap(a: &Ipv4Range, b: &Ipv4Range) -> bool {
    a.overlaps(b)
}

/// Whether every address of `range` lies in `cidr`'s network. Network and
/// broadcast addresses count as inside; the allocator skips them anyway.
pub fn range_within_cidr(range: &Ipv4Range, cidr: &Ipv4Cidr) -> bool {
    cidr.contains(range.start) && cidr.contains(range.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    fn range(s: &str) -> Ipv4Range {
        s.parse().unwrap()
    }

    fn cidr_err(s: &str) -> String {
        s.parse::<Ipv4Cidr>().unwrap_err().to_string()
    }

    fn range_err(s: &str) -> String {
        s.parse::<Ipv4Range>().unwrap_err().to_string()
    }

    #[test]
    fn cidr_parse_keeps_host_bits_and_prefix() {
        let c = cidr("10.10.0.5/24");
        assert_eq!(c.addr(), ip("10.10.0.5"));
        assert_eq!(c.prefix(), 24);
        assert_eq!(c.to_string(), "10.10.0.5/24");
    }

    #[test]
    fn cidr_network_broadcast_netmask_for_common_prefixes() {
        let c = cidr("10.10.0.5/24");
        assert_eq!(c.network(), ip("10.10.0.0"));
        assert_eq!(c.broadcast(), ip("10.10.0.255"));
        assert_eq!(c.netmask(), ip("255.255.255.0"));
        let c = cidr("172.16.5.77/20");
        assert_eq!(c.network(), ip("172.16.0.0"));
        assert_eq!(c.broadcast(), ip("172.16.15.255"));
        assert_eq!(c.netmask(), ip("255.255.240.0"));
    }

    #[test]
    fn cidr_prefix_zero_and_thirty_two_do_not_overflow() {
        let all = cidr("1.2.3.4/0");
        assert_eq!(all.network(), ip("0.0.0.0"));
        assert_eq!(all.broadcast(), ip("255.255.255.255"));
        assert_eq!(all.netmask(), ip("0.0.0.0"));
        assert!(all.contains(ip("200.1.1.1")));
        assert_eq!(all.host_count(), u32::MAX - 1);
        let one = cidr("1.2.3.4/32");
        assert_eq!(one.network(), ip("1.2.3.4"));
        assert_eq!(one.broadcast(), ip("1.2.3.4"));
        assert!(one.contains(ip("1.2.3.4")));
        assert!(!one.contains(ip("1.2.3.5")));
    }

    #[test]
    fn cidr_contains_edges() {
        let c = cidr("10.10.0.5/24");
        assert!(c.contains(ip("10.10.0.0")));
        assert!(c.contains(ip("10.10.0.255")));
        assert!(!c.contains(ip("10.10.1.0")));
        assert!(!c.contains(ip("10.9.255.255")));
    }

    #[test]
    fn cidr_host_count_excludes_network_and_broadcast_except_31_and_32() {
        assert_eq!(cidr("10.0.0.0/24").host_count(), 254);
        assert_eq!(cidr("10.0.0.0/30").host_count(), 2);
        assert_eq!(cidr("10.0.0.0/31").host_count(), 2);
        assert_eq!(cidr("10.0.0.0/32").host_count(), 1);
        assert_eq!(cidr("10.0.0.0/16").host_count(), 65534);
    }

    #[test]
    fn cidr_network_or_broadcast_only_below_31() {
        let c = cidr("10.0.0.1/24");
        assert!(c.is_network_or_broadcast(ip("10.0.0.0")));
        assert!(c.is_network_or_broadcast(ip("10.0.0.255")));
        assert!(!c.is_network_or_broadcast(ip("10.0.0.1")));
        let p2p = cidr("10.0.0.0/31");
        assert!(!p2p.is_network_or_broadcast(ip("10.0.0.0")));
        assert!(!p2p.is_network_or_broadcast(ip("10.0.0.1")));
    }

    #[test]
    fn cidr_bare_address_is_rejected_with_an_example() {
        assert_eq!(
            cidr_err("10.10.0.5"),
            "10.10.0.5: missing prefix length (expected address/prefix, e.g. 10.10.0.5/24)"
        );
    }

    #[test]
    fn cidr_errors_name_the_input_and_the_problem() {
        assert_eq!(cidr_err("10.0.0.300/24"), "10.0.0.300/24: invalid address");
        assert_eq!(cidr_err("10.0.0/24"), "10.0.0/24: invalid address");
        assert_eq!(cidr_err("/24"), "/24: invalid address");
        // Leading zeros read as octal by some tools: refuse rather than guess.
        assert_eq!(cidr_err("010.0.0.1/24"), "010.0.0.1/24: invalid address");
        assert_eq!(cidr_err("10.0.0.1/33"), "10.0.0.1/33: invalid prefix length (expected 0-32)");
        assert_eq!(cidr_err("10.0.0.1/"), "10.0.0.1/: invalid prefix length (expected 0-32)");
        assert_eq!(cidr_err("10.0.0.1/+8"), "10.0.0.1/+8: invalid prefix length (expected 0-32)");
        assert_eq!(cidr_err("10.0.0.1/2 4"), "10.0.0.1/2 4: invalid prefix length (expected 0-32)");
        assert_eq!(cidr_err("10.0.0.1/24/8"), "10.0.0.1/24/8: invalid prefix length (expected 0-32)");
        assert_eq!(cidr_err("10.0.0.1/99999"), "10.0.0.1/99999: invalid prefix length (expected 0-32)");
    }

    #[test]
    fn cidr_new_checks_prefix() {
        assert_eq!(Ipv4Cidr::new(ip("10.0.0.1"), 24).unwrap(), cidr("10.0.0.1/24"));
        assert_eq!(
            Ipv4Cidr::new(ip("10.0.0.1"), 40).unwrap_err().to_string(),
            "10.0.0.1/40: invalid prefix length (expected 0-32)"
        );
    }

    #[test]
    fn ipv6_cidr_compares_parsed_address_and_formats_canonically() {
        let a: Ipv6Cidr = "2001:0db8:0:0::5/64".parse().unwrap();
        let b: Ipv6Cidr = "2001:db8::5/64".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "2001:db8::5/64");
        assert_eq!(a.prefix(), 64);
        assert_eq!(a.addr(), "2001:db8::5".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn ipv6_cidr_errors() {
        let err = |s: &str| s.parse::<Ipv6Cidr>().unwrap_err().to_string();
        assert_eq!(err("2001:db8::g/64"), "2001:db8::g/64: invalid address");
        assert_eq!(err("2001:db8::1/129"), "2001:db8::1/129: invalid prefix length (expected 0-128)");
        assert_eq!(
            err("2001:db8::1"),
            "2001:db8::1: missing prefix length (expected address/prefix, e.g. 2001:db8::5/64)"
        );
        assert!("::/0".parse::<Ipv6Cidr>().is_ok());
        assert!("::1/128".parse::<Ipv6Cidr>().is_ok());
        assert!(Ipv6Cidr::new(Ipv6Addr::LOCALHOST, 129).is_err());
    }

    /// One generic check: both families get the same parsing, limits and wording.
    fn check_family<A: IpFamily>(addr: &str, bad_addr: &str) {
        let max = A::BITS;
        let c: Cidr<A> = format!("{addr}/{max}").parse().unwrap();
        assert_eq!((c.prefix(), c.to_string()), (max, format!("{addr}/{max}")));
        assert_eq!(Cidr::new(c.addr(), max).unwrap(), c);
        let e = Cidr::new(c.addr(), max + 1).unwrap_err();
        assert_eq!(e.to_string(), format!("{addr}/{}: invalid prefix length (expected 0-{max})", max + 1));
        assert_eq!(format!("{bad_addr}/8").parse::<Cidr<A>>().unwrap_err().reason, "invalid address");
        let bare = addr.parse::<Cidr<A>>().unwrap_err().reason;
        assert_eq!(bare, format!("missing prefix length (expected address/prefix, e.g. {})", A::EXAMPLE));
    }

    #[test]
    fn both_families_share_parsing_limits_and_wording() {
        check_family::<Ipv4Addr>("10.0.0.1", "10.0.0.300");
        check_family::<Ipv6Addr>("2001:db8::1", "2001:db8::g");
    }

    #[test]
    fn range_parse_len_contains_and_display() {
        let r = range("10.10.0.151-10.10.0.199");
        assert_eq!(r.start(), ip("10.10.0.151"));
        assert_eq!(r.end(), ip("10.10.0.199"));
        assert_eq!(r.len(), 49);
        assert!(r.contains(ip("10.10.0.151")));
        assert!(r.contains(ip("10.10.0.199")));
        assert!(!r.contains(ip("10.10.0.150")));
        assert!(!r.contains(ip("10.10.0.200")));
        assert_eq!(r.to_string(), "10.10.0.151-10.10.0.199");
    }

    #[test]
    fn range_allows_spaces_around_the_dash() {
        assert_eq!(range("10.0.0.1 - 10.0.0.3"), range("10.0.0.1-10.0.0.3"));
    }

    #[test]
    fn range_of_one_address_and_of_everything() {
        let one = range("10.0.0.7-10.0.0.7");
        assert_eq!(one.len(), 1);
        assert_eq!(one.iter().collect::<Vec<_>>(), vec![ip("10.0.0.7")]);
        assert_eq!(range("0.0.0.0-255.255.255.255").len(), 1 << 32);
    }

    #[test]
    fn range_iter_crosses_octet_boundaries_and_stops_at_the_top() {
        let r = range("10.0.0.254-10.0.1.1");
        let got: Vec<String> = r.iter().map(|a| a.to_string()).collect();
        assert_eq!(got, ["10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1"]);
        assert_eq!(range("255.255.255.254-255.255.255.255").iter().count(), 2);
    }

    #[test]
    fn range_errors_name_the_input_and_the_bad_end() {
        assert_eq!(range_err("10.0.0.1"), "10.0.0.1: expected a range first-last, e.g. 10.10.0.151-10.10.0.199");
        assert_eq!(range_err("10.0.0.x-10.0.0.5"), "10.0.0.x-10.0.0.5: invalid start address `10.0.0.x`");
        assert_eq!(range_err("10.0.0.1-"), "10.0.0.1-: invalid end address ``");
        assert_eq!(
            range_err("10.0.0.1-10.0.0.2-10.0.0.3"),
            "10.0.0.1-10.0.0.2-10.0.0.3: invalid end address `10.0.0.2-10.0.0.3`"
        );
        assert_eq!(range_err("10.0.0.9-10.0.0.5"), "10.0.0.9-10.0.0.5: range start is after its end");
        assert_eq!(
            Ipv4Range::new(ip("10.0.0.9"), ip("10.0.0.5")).unwrap_err().to_string(),
            "10.0.0.9-10.0.0.5: range start is after its end"
        );
    }

    #[test]
    fn ranges_overlap_at_shared_edges_and_containment_only() {
        let a = range("10.0.0.10-10.0.0.20");
        assert!(ranges_overlap(&a, &range("10.0.0.20-10.0.0.30")));
        assert!(ranges_overlap(&range("10.0.0.1-10.0.0.10"), &a));
        assert!(ranges_overlap(&a, &range("10.0.0.12-10.0.0.13")));
        assert!(ranges_overlap(&range("10.0.0.0-10.0.0.255"), &a));
        assert!(!ranges_overlap(&a, &range("10.0.0.21-10.0.0.30")));
        assert!(!ranges_overlap(&range("10.0.0.1-10.0.0.9"), &a));
    }

    #[test]
    fn range_within_cidr_checks_both_ends() {
        let c = cidr("10.10.0.1/24");
        assert!(range_within_cidr(&range("10.10.0.151-10.10.0.199"), &c));
        assert!(range_within_cidr(&range("10.10.0.0-10.10.0.255"), &c));
        assert!(!range_within_cidr(&range("10.10.0.200-10.10.1.5"), &c));
        assert!(!range_within_cidr(&range("10.9.255.250-10.10.0.5"), &c));
    }
}
