//! Sticky IPv4 allocation: plan every VM's address at once, never moving an
//! address a VM already holds unless it must.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::cidr::{Ipv4Cidr, Ipv4Range, range_within_cidr};

/// One VM asking for an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocRequest {
    /// Names the VM in messages, e.g. `pve1/101 k3s-master-01`.
    pub key: String,
    /// The static address the VM has now, if any (not a DHCP lease).
    pub current: Option<Ipv4Addr>,
    /// An address the inventory pins; used as is once validated.
    pub fixed: Option<Ipv4Addr>,
}

/// Where addresses come from and what must never be handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocPool {
    /// New and kept addresses come from here; must lie inside `cidr`.
    pub range: Ipv4Range,
    /// The network; fixed addresses must lie inside it.
    pub cidr: Ipv4Cidr,
    pub gateway: Ipv4Addr,
    /// Single addresses nobody may get (the VIP, hosts outside k3sx, ...).
    pub reserved: Vec<Ipv4Addr>,
    /// Ranges nobody may get (the load-balancer range, ...).
    pub reserved_ranges: Vec<Ipv4Range>,
}

/// Why a VM gets its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AllocAction {
    /// Its current static address, unchanged (sticky).
    Keep,
    /// A new address, the lowest free one in the range.
    Set,
    /// The address the inventory pins. It may equal `current`: compare
    /// before writing.
    Fixed,
}

/// The planned address of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub key: String,
    pub address: Ipv4Addr,
    pub action: AllocAction,
    /// For [`AllocAction::Set`] on a VM that had a static address: why it could
    /// not keep it (e.g. ``10.10.0.160 is already held by `pve1/101 k3s-master-01` ``).
    pub note: Option<String>,
}

/// Why no plan could be made. Nothing is allocated when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("the range {range} is not inside the network {network}; fix the range or the network")]
    RangeOutsideNetwork { range: Ipv4Range, network: String },

    #[error("`{key}`: the fixed address {address} is outside the network {network}; pin an address inside it")]
    FixedOutsideNetwork { key: String, address: Ipv4Addr, network: String },

    #[error("`{key}`: the fixed address {address} {why}; pin another address")]
    FixedUnusable { key: String, address: Ipv4Addr, why: String },

    #[error("`{first}` and `{second}` are both pinned to {address}; give each VM its own address")]
    DuplicateFixed { first: String, second: String, address: Ipv4Addr },

    #[error(
        "the range {range} has {free} but {needed} {need_one} ({keeping} {keep}); widen the range",
        free = plural(*free, "free address", "free addresses"),
        need_one = if *needed == 1 { "VM needs one" } else { "VMs need one" },
        keep = if *keeping == 1 { "keeps its own" } else { "keep theirs" },
    )]
    RangeTooSmall { range: Ipv4Range, free: u64, needed: usize, keeping: usize },
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The address shown as a network, e.g. `10.10.0.0/24` for `10.10.0.5/24`.
fn network_text(cidr: &Ipv4Cidr) -> String {
    format!("{}/{}", cidr.network(), cidr.prefix())
}

impl AllocPool {
    /// Why no VM may hold `ip` (gateway, network, broadcast, reserved), if so.
    fn excluded(&self, ip: Ipv4Addr) -> Option<String> {
        if ip == self.gateway {
            return Some("is the gateway".into());
        }
        if self.cidr.is_network_or_broadcast(ip) {
            let which = if ip == self.cidr.network() { "network" } else { "broadcast" };
            return Some(format!("is the {which} address of {}", network_text(&self.cidr)));
        }
        if self.reserved.contains(&ip) {
            return Some("is reserved".into());
        }
        self.reserved_ranges.iter().find(|r| r.contains(ip)).map(|r| format!("is in the reserved range {r}"))
    }

    /// Inclusive intervals no new address may come from, before kept/fixed ones.
    fn blocked(&self) -> Vec<(u32, u32)> {
        let single = |ip: Ipv4Addr| (u32::from(ip), u32::from(ip));
        let mut blocked = vec![single(self.gateway)];
        if self.cidr.prefix() <= 30 {
            blocked.push(single(self.cidr.network()));
            blocked.push(single(self.cidr.broadcast()));
        }
        blocked.extend(self.reserved.iter().copied().map(single));
        blocked.extend(self.reserved_ranges.iter().map(|r| (u32::from(r.start()), u32::from(r.end()))));
        blocked
    }
}

/// A VM's address before new ones are handed out.
enum Plan {
    /// Fixed or kept.
    Has(Ipv4Addr, AllocAction),
    /// Gets a new address; `note` says why it lost the static one it had.
    Needs { note: Option<String> },
}

/// The free stretches of `range` once `blocked` is taken out, lowest first.
fn free_gaps(range: &Ipv4Range, mut blocked: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    let (lo, hi) = (u32::from(range.start()), u32::from(range.end()));
    blocked.sort_unstable();
    let mut gaps = Vec::new();
    // u64 so that "one past 255.255.255.255" does not overflow.
    let mut next = u64::from(lo);
    for (start, end) in blocked {
        if end < lo || start > hi {
            continue;
        }
        let (start, end) = (start.max(lo), end.min(hi));
        if u64::from(start) > next {
            gaps.push((next as u32, start - 1));
        }
        next = next.max(u64::from(end) + 1);
    }
    if next <= u64::from(hi) {
        gaps.push((next as u32, hi));
    }
    gaps
}

/// Plans an address for every request, in the order given (the caller sorts,
/// e.g. by (node, vmid), so plans are reproducible).
///
/// 1. A fixed address is used as is, after checking it lies in the network and
///    is not the gateway, network, broadcast or reserved, and that no other VM
///    is pinned to it.
/// 2. A VM whose current static address lies in the range, is not excluded and
///    is not taken (fixed, or kept by an earlier VM) keeps it.
/// 3. Every other VM gets the lowest free address of the range.
///
/// Addresses held by machines k3sx does not manage must be passed in
/// `pool.reserved`, or they may be handed out. The plan is all or nothing: on
/// any error, including a range too small, no allocation is returned.
pub fn allocate_sticky(requests: &[AllocRequest], pool: &AllocPool) -> Result<Vec<Allocation>, AllocError> {
    if !range_within_cidr(&pool.range, &pool.cidr) {
        return Err(AllocError::RangeOutsideNetwork { range: pool.range, network: network_text(&pool.cidr) });
    }

    // Who holds which address so far, to reject or move later claimants.
    let mut holder: HashMap<Ipv4Addr, &str> = HashMap::new();
    for req in requests {
        let Some(address) = req.fixed else { continue };
        if !pool.cidr.contains(address) {
            return Err(AllocError::FixedOutsideNetwork {
                key: req.key.clone(),
                address,
                network: network_text(&pool.cidr),
            });
        }
        if let Some(why) = pool.excluded(address) {
            return Err(AllocError::FixedUnusable { key: req.key.clone(), address, why });
        }
        if let Some(first) = holder.insert(address, &req.key) {
            return Err(AllocError::DuplicateFixed { first: first.to_string(), second: req.key.clone(), address });
        }
    }

    let mut planned: Vec<Plan> = Vec::with_capacity(requests.len());
    for req in requests {
        if let Some(address) = req.fixed {
            planned.push(Plan::Has(address, AllocAction::Fixed));
            continue;
        }
        let Some(current) = req.current else {
            planned.push(Plan::Needs { note: None });
            continue;
        };
        let lost = if !pool.range.contains(current) {
            Some(format!("{current} is outside the range {}", pool.range))
        } else {
            (pool.excluded(current).map(|why| format!("{current} {why}")))
                .or_else(|| holder.get(&current).map(|other| format!("{current} is already held by `{other}`")))
        };
        match lost {
            Some(note) => planned.push(Plan::Needs { note: Some(note) }),
            None => {
                holder.insert(current, &req.key);
                planned.push(Plan::Has(current, AllocAction::Keep));
            }
        }
    }

    let mut blocked = pool.blocked();
    blocked.extend(holder.keys().map(|&ip| (u32::from(ip), u32::from(ip))));
    let gaps = free_gaps(&pool.range, blocked);
    let free: u64 = gaps.iter().map(|&(s, e)| u64::from(e - s) + 1).sum();
    let needed = planned.iter().filter(|p| matches!(p, Plan::Needs { .. })).count();
    if (needed as u64) > free {
        return Err(AllocError::RangeTooSmall { range: pool.range, free, needed, keeping: requests.len() - needed });
    }

    let mut fresh = gaps.into_iter().flat_map(|(s, e)| (s..=e).map(Ipv4Addr::from));
    let allocations = requests
        .iter()
        .zip(planned)
        .map(|(req, plan)| {
            let (address, action, note) = match plan {
                Plan::Has(address, action) => (address, action, None),
                // Enough free addresses were counted above.
                Plan::Needs { note } => (fresh.next().expect("free addresses counted"), AllocAction::Set, note),
            };
            Allocation { key: req.key.clone(), address, action, note }
        })
        .collect();
    Ok(allocations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn pool(range: &str) -> AllocPool {
        AllocPool {
            range: range.parse().unwrap(),
            cidr: "10.10.0.0/24".parse().unwrap(),
            gateway: ip("10.10.0.1"),
            reserved: vec![],
            reserved_ranges: vec![],
        }
    }

    fn new_vm(key: &str) -> AllocRequest {
        AllocRequest { key: key.into(), current: None, fixed: None }
    }

    fn holding(key: &str, current: &str) -> AllocRequest {
        AllocRequest { key: key.into(), current: Some(ip(current)), fixed: None }
    }

    fn pinned(key: &str, fixed: &str) -> AllocRequest {
        AllocRequest { key: key.into(), current: None, fixed: Some(ip(fixed)) }
    }

    /// `key address action` per VM, for compact assertions.
    fn plan(requests: &[AllocRequest], pool: &AllocPool) -> Vec<String> {
        allocate_sticky(requests, pool)
            .unwrap()
            .iter()
            .map(|a| format!("{} {} {:?}", a.key, a.address, a.action))
            .collect()
    }

    fn error(requests: &[AllocRequest], pool: &AllocPool) -> String {
        allocate_sticky(requests, pool).unwrap_err().to_string()
    }

    #[test]
    fn new_vms_get_the_lowest_addresses_in_request_order() {
        let got = plan(&[new_vm("a"), new_vm("b"), new_vm("c")], &pool("10.10.0.201-10.10.0.210"));
        assert_eq!(got, ["a 10.10.0.201 Set", "b 10.10.0.202 Set", "c 10.10.0.203 Set"]);
    }

    #[test]
    fn no_requests_give_an_empty_plan() {
        assert!(allocate_sticky(&[], &pool("10.10.0.201-10.10.0.210")).unwrap().is_empty());
    }

    #[test]
    fn static_address_in_range_is_kept_and_skipped_for_new_vms() {
        let got = plan(&[new_vm("a"), holding("b", "10.10.0.201"), new_vm("c")], &pool("10.10.0.201-10.10.0.210"));
        assert_eq!(got, ["a 10.10.0.202 Set", "b 10.10.0.201 Keep", "c 10.10.0.203 Set"]);
    }

    #[test]
    fn adding_a_vm_earlier_in_order_moves_nobody() {
        let pool = pool("10.10.0.201-10.10.0.210");
        let before = plan(&[new_vm("pve1/105"), new_vm("pve1/106")], &pool);
        assert_eq!(before, ["pve1/105 10.10.0.201 Set", "pve1/106 10.10.0.202 Set"]);
        let after =
            plan(&[new_vm("pve1/100"), holding("pve1/105", "10.10.0.201"), holding("pve1/106", "10.10.0.202")], &pool);
        assert_eq!(after, ["pve1/100 10.10.0.203 Set", "pve1/105 10.10.0.201 Keep", "pve1/106 10.10.0.202 Keep"]);
    }

    #[test]
    fn a_rerun_keeps_everything() {
        let pool = pool("10.10.0.201-10.10.0.210");
        let first = allocate_sticky(&[new_vm("a"), new_vm("b")], &pool).unwrap();
        let again: Vec<AllocRequest> = first.iter().map(|a| holding(&a.key, &a.address.to_string())).collect();
        let second = allocate_sticky(&again, &pool).unwrap();
        assert!(second.iter().all(|a| a.action == AllocAction::Keep && a.note.is_none()));
        assert_eq!(
            first.iter().map(|a| a.address).collect::<Vec<_>>(),
            second.iter().map(|a| a.address).collect::<Vec<_>>()
        );
    }

    #[test]
    fn new_addresses_fill_holes_lowest_first() {
        let got = plan(
            &[holding("a", "10.10.0.201"), holding("b", "10.10.0.203"), new_vm("c"), new_vm("d")],
            &pool("10.10.0.201-10.10.0.210"),
        );
        assert_eq!(got, ["a 10.10.0.201 Keep", "b 10.10.0.203 Keep", "c 10.10.0.202 Set", "d 10.10.0.204 Set"]);
    }

    #[test]
    fn duplicate_current_address_first_in_order_keeps_it() {
        let result = allocate_sticky(
            &[holding("pve1/101 m1", "10.10.0.205"), holding("pve2/102 m2", "10.10.0.205")],
            &pool("10.10.0.201-10.10.0.210"),
        )
        .unwrap();
        assert_eq!((result[0].address, result[0].action), (ip("10.10.0.205"), AllocAction::Keep));
        assert_eq!((result[1].address, result[1].action), (ip("10.10.0.201"), AllocAction::Set));
        assert_eq!(result[1].note.as_deref(), Some("10.10.0.205 is already held by `pve1/101 m1`"));
        assert_eq!(result[0].note, None);
    }

    #[test]
    fn current_address_outside_the_range_is_replaced_with_a_note() {
        let result = allocate_sticky(&[holding("a", "10.10.0.50")], &pool("10.10.0.201-10.10.0.210")).unwrap();
        assert_eq!((result[0].address, result[0].action), (ip("10.10.0.201"), AllocAction::Set));
        assert_eq!(result[0].note.as_deref(), Some("10.10.0.50 is outside the range 10.10.0.201-10.10.0.210"));
    }

    #[test]
    fn current_address_that_is_excluded_is_replaced_with_the_reason() {
        let mut pool = pool("10.10.0.0-10.10.0.255");
        pool.reserved = vec![ip("10.10.0.100")];
        pool.reserved_ranges = vec!["10.10.0.150-10.10.0.160".parse().unwrap()];
        let reqs = [
            holding("gw", "10.10.0.1"),
            holding("net", "10.10.0.0"),
            holding("bc", "10.10.0.255"),
            holding("vip", "10.10.0.100"),
            holding("lb", "10.10.0.155"),
        ];
        let notes: Vec<String> = allocate_sticky(&reqs, &pool).unwrap().into_iter().map(|a| a.note.unwrap()).collect();
        assert_eq!(
            notes,
            [
                "10.10.0.1 is the gateway",
                "10.10.0.0 is the network address of 10.10.0.0/24",
                "10.10.0.255 is the broadcast address of 10.10.0.0/24",
                "10.10.0.100 is reserved",
                "10.10.0.155 is in the reserved range 10.10.0.150-10.10.0.160",
            ]
        );
    }

    #[test]
    fn new_addresses_skip_gateway_network_broadcast_and_reservations() {
        let mut pool = pool("10.10.0.0-10.10.0.8");
        pool.reserved = vec![ip("10.10.0.2"), ip("10.10.0.99")];
        pool.reserved_ranges = vec!["10.10.0.4-10.10.0.6".parse().unwrap(), "10.10.0.3-10.10.0.3".parse().unwrap()];
        let got = plan(&[new_vm("a"), new_vm("b")], &pool);
        assert_eq!(got, ["a 10.10.0.7 Set", "b 10.10.0.8 Set"]);
    }

    #[test]
    fn broadcast_at_range_end_is_skipped() {
        let got = plan(&[new_vm("a"), new_vm("b")], &pool("10.10.0.253-10.10.0.255"));
        assert_eq!(got, ["a 10.10.0.253 Set", "b 10.10.0.254 Set"]);
        assert_eq!(
            error(&[new_vm("a"), new_vm("b"), new_vm("c")], &pool("10.10.0.253-10.10.0.255")),
            "the range 10.10.0.253-10.10.0.255 has 2 free addresses but 3 VMs need one (0 keep theirs); widen the range"
        );
    }

    #[test]
    fn slash_31_uses_both_addresses() {
        let pool = AllocPool {
            range: "10.0.0.0-10.0.0.1".parse().unwrap(),
            cidr: "10.0.0.0/31".parse().unwrap(),
            gateway: ip("192.0.2.1"),
            reserved: vec![],
            reserved_ranges: vec![],
        };
        assert_eq!(plan(&[new_vm("a"), new_vm("b")], &pool), ["a 10.0.0.0 Set", "b 10.0.0.1 Set"]);
    }

    #[test]
    fn fixed_address_is_used_as_is_even_outside_the_range() {
        let got = plan(
            &[pinned("a", "10.10.0.10"), pinned("b", "10.10.0.201"), new_vm("c")],
            &pool("10.10.0.201-10.10.0.210"),
        );
        assert_eq!(got, ["a 10.10.0.10 Fixed", "b 10.10.0.201 Fixed", "c 10.10.0.202 Set"]);
    }

    #[test]
    fn fixed_wins_over_current_even_when_equal() {
        let req = AllocRequest { key: "a".into(), current: Some(ip("10.10.0.205")), fixed: Some(ip("10.10.0.205")) };
        assert_eq!(plan(&[req], &pool("10.10.0.201-10.10.0.210")), ["a 10.10.0.205 Fixed"]);
    }

    #[test]
    fn fixed_address_takes_precedence_over_an_earlier_sticky_claim() {
        let result = allocate_sticky(
            &[holding("a", "10.10.0.203"), pinned("b", "10.10.0.203")],
            &pool("10.10.0.201-10.10.0.210"),
        )
        .unwrap();
        assert_eq!((result[0].address, result[0].action), (ip("10.10.0.201"), AllocAction::Set));
        assert_eq!(result[0].note.as_deref(), Some("10.10.0.203 is already held by `b`"));
        assert_eq!((result[1].address, result[1].action), (ip("10.10.0.203"), AllocAction::Fixed));
    }

    #[test]
    fn duplicate_fixed_addresses_name_both_vms() {
        assert_eq!(
            error(
                &[pinned("pve1/101 m1", "10.10.0.5"), new_vm("x"), pinned("pve2/201 m2", "10.10.0.5")],
                &pool("10.10.0.201-10.10.0.210")
            ),
            "`pve1/101 m1` and `pve2/201 m2` are both pinned to 10.10.0.5; give each VM its own address"
        );
    }

    #[test]
    fn fixed_address_must_be_usable() {
        let mut pool = pool("10.10.0.201-10.10.0.210");
        pool.reserved = vec![ip("10.10.0.100")];
        pool.reserved_ranges = vec!["10.10.0.150-10.10.0.160".parse().unwrap()];
        let cases = [
            (
                "10.10.1.5",
                "`vm`: the fixed address 10.10.1.5 is outside the network 10.10.0.0/24; pin an address inside it",
            ),
            ("10.10.0.1", "`vm`: the fixed address 10.10.0.1 is the gateway; pin another address"),
            (
                "10.10.0.0",
                "`vm`: the fixed address 10.10.0.0 is the network address of 10.10.0.0/24; pin another address",
            ),
            (
                "10.10.0.255",
                "`vm`: the fixed address 10.10.0.255 is the broadcast address of 10.10.0.0/24; pin another address",
            ),
            ("10.10.0.100", "`vm`: the fixed address 10.10.0.100 is reserved; pin another address"),
            (
                "10.10.0.150",
                "`vm`: the fixed address 10.10.0.150 is in the reserved range 10.10.0.150-10.10.0.160; pin another address",
            ),
        ];
        for (fixed, message) in cases {
            assert_eq!(error(&[new_vm("ok"), pinned("vm", fixed)], &pool), message);
        }
    }

    #[test]
    fn range_too_small_says_needed_and_free_and_returns_nothing() {
        let reqs = [
            holding("a", "10.10.0.201"),
            holding("b", "10.10.0.202"),
            pinned("c", "10.10.0.10"),
            new_vm("d"),
            new_vm("e"),
            new_vm("f"),
            holding("g", "10.10.0.50"),
            new_vm("h"),
        ];
        let err = allocate_sticky(&reqs, &pool("10.10.0.201-10.10.0.203")).unwrap_err();
        assert_eq!(
            err,
            AllocError::RangeTooSmall {
                range: "10.10.0.201-10.10.0.203".parse().unwrap(),
                free: 1,
                needed: 5,
                keeping: 3
            }
        );
        assert_eq!(
            err.to_string(),
            "the range 10.10.0.201-10.10.0.203 has 1 free address but 5 VMs need one (3 keep theirs); widen the range"
        );
    }

    #[test]
    fn range_too_small_singular_wording() {
        assert_eq!(
            error(&[holding("a", "10.10.0.201"), new_vm("b")], &pool("10.10.0.201-10.10.0.201")),
            "the range 10.10.0.201-10.10.0.201 has 0 free addresses but 1 VM needs one (1 keeps its own); widen the range"
        );
    }

    #[test]
    fn a_range_exactly_full_succeeds() {
        let got = plan(&[new_vm("a"), holding("b", "10.10.0.202"), new_vm("c")], &pool("10.10.0.201-10.10.0.203"));
        assert_eq!(got, ["a 10.10.0.201 Set", "b 10.10.0.202 Keep", "c 10.10.0.203 Set"]);
    }

    #[test]
    fn range_outside_the_network_is_rejected() {
        assert_eq!(
            error(&[new_vm("a")], &pool("10.10.0.250-10.10.1.5")),
            "the range 10.10.0.250-10.10.1.5 is not inside the network 10.10.0.0/24; fix the range or the network"
        );
    }

    #[test]
    fn huge_range_mostly_reserved_is_planned_without_walking_it() {
        let pool = AllocPool {
            range: "10.0.0.0-10.255.255.255".parse().unwrap(),
            cidr: "10.0.0.0/8".parse().unwrap(),
            gateway: ip("10.0.0.1"),
            reserved: vec![],
            reserved_ranges: vec!["10.0.0.0-10.255.255.250".parse().unwrap()],
        };
        let got = plan(&[new_vm("a"), new_vm("b")], &pool);
        assert_eq!(got, ["a 10.255.255.251 Set", "b 10.255.255.252 Set"]);
        assert_eq!(
            error(&[new_vm("a"), new_vm("b"), new_vm("c"), new_vm("d"), new_vm("e")], &pool),
            "the range 10.0.0.0-10.255.255.255 has 4 free addresses but 5 VMs need one (0 keep theirs); widen the range"
        );
    }

    #[test]
    fn free_gaps_merges_overlapping_blocks_and_clips_to_the_range() {
        let range: Ipv4Range = "0.0.0.10-0.0.0.30".parse().unwrap();
        let gaps = free_gaps(&range, vec![(12, 15), (14, 18), (5, 10), (30, 40), (25, 25), (100, 200)]);
        assert_eq!(gaps, vec![(11, 11), (19, 24), (26, 29)]);
        assert_eq!(free_gaps(&range, vec![]), vec![(10, 30)]);
        assert_eq!(free_gaps(&range, vec![(0, u32::MAX)]), vec![]);
        let top: Ipv4Range = "255.255.255.250-255.255.255.255".parse().unwrap();
        assert_eq!(free_gaps(&top, vec![(u32::MAX, u32::MAX)]), vec![(u32::MAX - 5, u32::MAX - 1)]);
        assert_eq!(free_gaps(&top, vec![(u32::MAX - 5, u32::MAX - 5)]), vec![(u32::MAX - 4, u32::MAX)]);
    }
}
