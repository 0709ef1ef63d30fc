//! Test harnesses: real processes on loopback standing in for Proxmox and the VMs.

pub mod k3s_lab;
pub mod pve;
pub mod sshd;
