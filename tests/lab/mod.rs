//! Test harnesses: real processes on loopback standing in for VMs and Proxmox.

pub mod sshd;
