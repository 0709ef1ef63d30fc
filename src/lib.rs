//! k3sx: build and run K3s clusters on Proxmox VE VMs, with every workflow a Rhai script.

pub mod ipam;
pub mod pve;
pub mod secret;
pub mod ssh;
