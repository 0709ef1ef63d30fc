//! `k3sx provision` on 3 servers + 6 agents against the K3s stand-in, whose install takes 3 s
//! and whose nodes are Ready 1.5 s after they start: the wall time against the critical path
//! (the bootstrap server, two server joins one after the other, one agent, MetalLB's
//! readiness), and a re-run on the healthy cluster.
//! `cargo bench --bench provision` (root; needs the lab's prerequisites: `bash tests/setup`).

#[path = "../tests/lab/mod.rs"]
#[allow(dead_code)]
mod lab;

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

struct Figures {
    provision: Duration,
    rerun: Duration,
    installs: usize,
    rerun_installs: usize,
}

fn delays() -> Delays {
    Delays { install: 3.0, ready: 1.5, learner: 0.5, metallb: 1.0, ..Delays::default() }
}

/// The stand-in's own time on the critical path: per server and for the agent its install,
/// start and readiness (a server also until it is a voter), then MetalLB's controller.
fn critical_path(d: &Delays) -> f64 {
    let server = d.install + d.start + d.ready.max(d.learner);
    let agent = d.install + d.start + d.ready;
    SERVERS as f64 * server + agent + d.metallb + d.webhook_lag
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
        "k3s": {"version": "v1.32.4+k3s1", "token_file": dir.path().join("token"), "install": {"url": lab.install_url()}},
        "kube_vip": {"vip": lab.vip().to_string()},
        "metallb": {"range": "127.0.3.10-127.0.3.20", "manifest": lab.metallb_manifest()},
        "ssh": {"user": USER_NOPASSWD, "port": lab.port(), "known_hosts": kh},
        "kubeconfig": {"path": dir.path().join("kubeconfig")},
    });
    std::fs::write(dir.path().join("k3sx.json"), config.to_string()).unwrap();
    let run = || {
        let start = Instant::now();
        let status = Command::new(BIN)
            .args(["-q", "provision"])
            .current_dir(dir.path())
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
        assert!(status.success(), "k3sx provision failed");
        start.elapsed()
    };
    let provision = run();
    let installs = lab.installs().len();
    let rerun = run();
    Figures { provision, rerun, installs, rerun_installs: lab.installs().len() - installs }
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    let runs: Vec<Figures> = (0..RUNS).map(|_| one_run()).collect();
    let cp = critical_path(&delays());
    let provision = median(runs.iter().map(|f| f.provision).collect()).as_secs_f64();
    let rerun = median(runs.iter().map(|f| f.rerun).collect()).as_secs_f64();
    println!("provision, {SERVERS} servers + {AGENTS} agents, install 3 s, Ready 1.5 s (median of {RUNS}):");
    println!("  critical path   {cp:>6.2} s   (bootstrap + 2 server joins in sequence + 1 agent + MetalLB)");
    println!("  provision       {provision:>6.2} s   ({:.2}x the critical path; goal <= 1.15x)", provision / cp);
    println!("  re-run          {rerun:>6.2} s   (goal <= 1.5 s)");
    println!(
        "  installs        {} per provision, {} per re-run (goal 0)",
        runs[0].installs,
        runs.iter().map(|f| f.rerun_installs).max().unwrap_or(0)
    );
}
