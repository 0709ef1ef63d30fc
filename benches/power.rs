//! `k3sx stop` on 1 VM versus 12 VMs whose guests take 5 s to shut down (fakepve, time
//! scale 1): every VM is handled at once, so 12 should take about as long as one.
//! `cargo bench --bench power` (needs the fakepve venv in .venv).

#[path = "../tests/lab/pve.rs"]
mod pve_lab;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_k3sx");
const TOKEN: &str = "bench-token-secret";
const SHUTDOWN_SECS: u32 = 5;
const RUNS: usize = 3;

fn scenario(vms: u32) -> Value {
    let vms: Vec<Value> = (0..vms)
        .map(|i| {
            json!({"vmid": 101 + i, "name": format!("k3s-{i}"), "node": format!("pve{}", i % 3 + 1), "status": "running",
                   "tags": "k3s-agent", "shutdown_secs": SHUTDOWN_SECS})
        })
        .collect();
    json!({"tokens": {"root@pam!k3sx": TOKEN}, "time_scale": 1, "nodes": ["pve1", "pve2", "pve3"], "vms": vms})
}

/// One `k3sx stop` against a fresh lab with `vms` running VMs; its wall time.
fn stop(vms: u32) -> Duration {
    let pve = pve_lab::FakePve::start(scenario(vms)).expect("fakepve (run .ci/run or create .venv)");
    let start = Instant::now();
    let status = Command::new(BIN)
        .args(["-q", "stop"])
        .stdout(std::process::Stdio::null())
        .env("PROXMOX_HOST", pve.host())
        .env("PROXMOX_PORT", pve.port().to_string())
        .env("PROXMOX_USER", "root@pam")
        .env("PROXMOX_API_TOKEN_ID", "k3sx")
        .env("PROXMOX_API_TOKEN_SECRET", TOKEN)
        .env("PROXMOX_CA_FILE", pve.ca_file())
        .status()
        .expect("k3sx runs");
    let took = start.elapsed();
    assert!(status.success(), "k3sx stop failed");
    took
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    if pve_lab::python().is_none() {
        eprintln!("skipped: no Python with fakepve (.venv)");
        return;
    }
    let one = median((0..RUNS).map(|_| stop(1)).collect());
    let twelve = median((0..RUNS).map(|_| stop(12)).collect());
    println!("stop, guests shutting down in {SHUTDOWN_SECS} s (median of {RUNS}):");
    println!("  1 VM    {:>6.2} s", one.as_secs_f64());
    println!(
        "  12 VMs  {:>6.2} s   ({:.2}x one VM; goal <= 1.3x)",
        twelve.as_secs_f64(),
        twelve.as_secs_f64() / one.as_secs_f64()
    );
}
