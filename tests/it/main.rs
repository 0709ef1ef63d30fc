//! The integration tests: one binary, running the real `k3sx` executable against real
//! processes (a local HTTP server, fakepve, sshd hosts).

#[path = "../lab/mod.rs"]
mod lab;

mod changes;
mod check_version;
mod cli;
mod config;
mod configure_ips;
mod discover;
mod docs;
mod doctor;
mod lab_skips;
mod output;
mod power;
mod provision;
mod pve_client;
mod repl;
mod scripts;
mod snapshots;
mod ssh;
mod ssh_script;
mod standin;
mod support;
mod teardown;
mod upgrade;
