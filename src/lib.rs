//! k3sx: build and run K3s clusters on Proxmox VE VMs, with every workflow a Rhai script.
//!
//! Domain modules (`config`, `pve`, `ipam`, `ssh`, `k3s`) know nothing of Rhai;
//! `script` builds the engine and adapts them to it, one file per namespace.

pub mod app;
pub mod change;
pub mod cli;
pub mod config;
pub mod error;
pub mod fsutil;
pub mod ipam;
pub mod k3s;
pub mod pve;
pub mod script;
pub mod secret;
pub mod ssh;
pub mod ui;
