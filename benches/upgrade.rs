//! `k3sx upgrade` of one minor (v1.31.12 -> v1.32.8) on 3 servers + 6 agents against the K3s
//! stand-in, whose restarted node is back 3 s after its service starts (Ready and, for a
//! server, an etcd voter): the wall time against the critical path (3 servers in sequence,
//! then the 6 agents at once with `--parallel 6`), and the second upgrade that has nothing
//! to do. `cargo bench --bench upgrade` (root; needs the lab's prerequisites: `bash tests/setup`).

#[path = "../tests/lab/mod.rs"]
#[allow(dead_code)]
mod lab;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use lab::k3s_lab::{Delays, K3sLab, K3sOptions};
use lab::pve::FakePve;
use lab::sshd::{KnownHosts, USER_NOPASSWD};

const BIN: &str = env!("CARGO_BIN_EXE_k3sx");
const TOKEN: &str = "bench-token-secret";
const SERVERS: usize = 3;
const AGENTS: usize = 6;
const RUNS: usize = 3;
const FROM: &str = "v1.31.12+k3s1";
const TO: &str = "v1.32.8+k3s1";

struct Figures {
    upgrade: Duration,
    again: Duration,
    installs: usize,
    again_installs: usize,
}

/// A restart that takes 3 s: the service notifies systemd after 1 s, its Node is Ready and a
/// server a voter 3 s after it started.
fn delays() -> Delays {
    Delays { install: 0.2, start: 1.0, ready: 3.0, learner: 3.0, ..Delays::default() }
}

/// The stand-in's own time on the critical path: per server its binary download, then its
/// restart until it is Ready and a voter (a restarted server is a learner from the moment it
/// rejoins, `start` after its process started); the agents all at once, so one agent's.
fn critical_path(d: &Delays) -> f64 {
    let server = d.install + d.ready.max(d.start + d.learner);
    let agent = d.install + d.start.max(d.ready);
    SERVERS as f64 * server + agent
}

fn k3sx(dir: &Path, pve: &FakePve, lab: &K3sLab, args: &[&str]) -> Duration {
    let start = Instant::now();
    let status = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .env("PROXMOX_HOST", pve.host())
        .env("PROXMOX_PORT", pve.port().to_string())
        .env("PROXMOX_USER", "root@pam")
        .env("PROXMOX_API_TOKEN_ID", "k3sx")
        .env("PROXMOX_API_TOKEN_SECRET", TOKEN)
        .env("PROXMOX_CA_FILE", pve.ca_file())
        .env("SSH_AUTH_SOCK", lab.ssh().agent_socket())
        .status()
        .expect("k3sx runs");
    assert!(status.success(), "k3sx {args:?} failed");
    start.elapsed()
}

fn one_run() -> Figures {
    let lab = K3sLab::start(SERVERS + AGENTS, K3sOptions { delays: delays(), ..K3sOptions::default() })
        .expect("the K3s stand-in lab (run as root after `bash tests/setup`)");
    let vms: Vec<_> = (0..SERVERS + AGENTS)
        .map(|i| {
            let (node, vmid, tags) =
                if i < SERVERS { ("pve1", 101 + i, "k3s-server") } else { ("pve2", 201 + i - SERVERS, "k3s-agent") };
            json!({"vmid": vmid, "name": format!("k3s-{vmid}"), "node": node, "status": "running", "tags": tags,
                   "config": {"ipconfig0": format!("ip={}/24,gw={}", lab.addr(i), lab.gateway())}})
        })
        .collect();
    let pve = FakePve::start(json!({"tokens": {"root@pam!k3sx": TOKEN}, "nodes": ["pve1", "pve2"], "vms": vms}))
        .expect("fakepve (bash tests/setup)");
    let dir = tempfile::tempdir().unwrap();
    let kh = lab.ssh().known_hosts(KnownHosts::Plain);
    let config = json!({
        "network": {"gateway": lab.gateway().to_string(), "cidr": 16, "range_start": "127.0.1.2", "range_end": "127.0.1.250"},
        "k3s": {"version": FROM, "channel_url": lab.channel_url(), "token_file": dir.path().join("token"),
                "install": {"url": lab.install_url()}},
        "kube_vip": {"vip": lab.vip().to_string()},
        "metallb": {"range": "127.0.3.10-127.0.3.20", "manifest": lab.metallb_manifest()},
        "ssh": {"user": USER_NOPASSWD, "port": lab.port(), "known_hosts": kh},
        "kubeconfig": {"path": dir.path().join("kubeconfig")},
    });
    std::fs::write(dir.path().join("k3sx.json"), config.to_string()).unwrap();
    k3sx(dir.path(), &pve, &lab, &["-q", "provision"]);
    let before = lab.installs().len();
    let upgrade = k3sx(dir.path(), &pve, &lab, &["-q", "upgrade", "--to", TO, "--parallel", "6"]);
    let installs = lab.installs().len() - before;
    let again = k3sx(dir.path(), &pve, &lab, &["-q", "upgrade", "--parallel", "6"]);
    Figures { upgrade, again, installs, again_installs: lab.installs().len() - before - installs }
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    let runs: Vec<Figures> = (0..RUNS).map(|_| one_run()).collect();
    let cp = critical_path(&delays());
    let times = |f: fn(&Figures) -> Duration| -> Vec<f64> { runs.iter().map(|r| f(r).as_secs_f64()).collect() };
    let range = |xs: &[f64]| (xs.iter().cloned().fold(f64::MAX, f64::min), xs.iter().cloned().fold(0.0, f64::max));
    let upgrade = median(runs.iter().map(|f| f.upgrade).collect()).as_secs_f64();
    let again = median(runs.iter().map(|f| f.again).collect()).as_secs_f64();
    let (lo, hi) = range(&times(|f| f.upgrade));
    println!("upgrade {FROM} -> {TO}, {SERVERS} servers + {AGENTS} agents, restart 3 s (median of {RUNS}):");
    println!("  critical path   {cp:>6.2} s   (3 servers in sequence, each back and a voter, + 6 agents at once)");
    println!("  upgrade         {upgrade:>6.2} s   ({:.2}x the critical path; min {lo:.2}, max {hi:.2})", upgrade / cp);
    println!(
        "  beyond it       {:>6.2} s   (survey and plan, etcd snapshot, stopping the old services, polling)",
        upgrade - cp
    );
    println!("  second upgrade  {again:>6.2} s   (nothing to do)");
    println!(
        "  installs        {} per upgrade, {} by the second (goal 0)",
        runs[0].installs,
        runs.iter().map(|f| f.again_installs).max().unwrap_or(0)
    );
}
