#[path = "../lab/mod.rs"]
mod lab;
mod pve_client;
