//! Test harnesses: real processes on loopback standing in for Proxmox and the VMs.

pub mod pve;
pub mod sshd;
