//! IP address management for k3sx VMs: `ipconfigN` values, CIDR and range
//! arithmetic, and sticky allocation. Pure Rust; the Rhai adapter lives elsewhere.
//!
//! Allocation is *sticky*: a VM that already holds a usable static address in
//! the range keeps it, and only VMs without one get new addresses. Re-running
//! `configure-ips` after adding a VM must never renumber the existing cluster
//! (nodes, certificates, kubeconfigs and DNS all remember addresses), so a
//! plan is computed in full, deterministically, before anything is written.
//!
//! - [`ipconfig`] parses and formats PVE `ipconfigN`, and compares them by meaning, not as strings.
//! - [`cidr`] has [`Cidr`] ([`Ipv4Cidr`], [`Ipv6Cidr`]), [`Ipv4Range`] and config validation helpers.
//! - [`alloc`] has [`allocate_sticky`], the planner.
//!
//! The address types (de)serialize as the strings users write.

pub mod alloc;
pub mod cidr;
pub mod ipconfig;
mod text_serde;

pub use alloc::{AllocAction, AllocError, AllocPool, AllocRequest, Allocation, allocate_sticky};
pub use cidr::{Cidr, IpFamily, Ipv4Cidr, Ipv4Range, Ipv6Cidr, ParseError, range_within_cidr, ranges_overlap};
pub use ipconfig::{IpConfig, Ipv4Setting, Ipv6Setting, same_meaning};
