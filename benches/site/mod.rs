//! A lab site for the benches that drive a whole cluster: fakepve with `servers` + `agents`
//! VMs whose static ipconfig0 holds the address of their K3s stand-in host, a k3sx.json for
//! them, and the release binary run against it.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::lab::k3s_lab::{Delays, K3sLab, K3sOptions};
use crate::lab::pve::FakePve;
use crate::lab::sshd::{KnownHosts, USER_NOPASSWD};

const BIN: &str = env!("CARGO_BIN_EXE_k3sx");
const TOKEN: &str = "bench-token-secret";

pub struct Site {
    pub lab: K3sLab,
    pve: FakePve,
    dir: tempfile::TempDir,
}

impl Site {
    /// `servers` servers on pve1, `agents` agents on pve2, K3s `version` configured.
    pub fn start(servers: usize, agents: usize, delays: Delays, version: &str) -> Site {
        let lab = K3sLab::start(servers + agents, K3sOptions { delays, ..K3sOptions::default() })
            .expect("the K3s stand-in lab (run as root after `bash tests/setup`)");
        let vms: Vec<_> = (0..servers + agents)
            .map(|i| {
                let (node, vmid, tags) = if i < servers {
                    ("pve1", 101 + i, "k3s-server")
                } else {
                    ("pve2", 201 + i - servers, "k3s-agent")
                };
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
            "k3s": {"version": version, "channel_url": lab.channel_url(), "token_file": dir.path().join("token"),
                    "install": {"url": lab.install_url()}},
            "kube_vip": {"vip": lab.vip().to_string()},
            "metallb": {"range": "127.0.3.10-127.0.3.20", "manifest": lab.metallb_manifest()},
            "ssh": {"user": USER_NOPASSWD, "port": lab.port(), "known_hosts": kh},
            "kubeconfig": {"path": dir.path().join("kubeconfig")},
        });
        std::fs::write(dir.path().join("k3sx.json"), config.to_string()).unwrap();
        Site { lab, pve, dir }
    }

    /// Runs `k3sx ARGS` in the site's directory; its wall time. Panics when it fails.
    pub fn k3sx(&self, args: &[&str]) -> Duration {
        let start = Instant::now();
        let status = Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::null())
            .env("PROXMOX_HOST", self.pve.host())
            .env("PROXMOX_PORT", self.pve.port().to_string())
            .env("PROXMOX_USER", "root@pam")
            .env("PROXMOX_API_TOKEN_ID", "k3sx")
            .env("PROXMOX_API_TOKEN_SECRET", TOKEN)
            .env("PROXMOX_CA_FILE", self.pve.ca_file())
            .env("SSH_AUTH_SOCK", self.lab.ssh().agent_socket())
            .status()
            .expect("k3sx runs");
        assert!(status.success(), "k3sx {args:?} failed");
        start.elapsed()
    }
}

pub fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}
