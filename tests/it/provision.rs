//! `provision` and `kubeconfig` end to end: fakepve for the VMs, one sshd host per VM running
//! the strict K3s stand-in, the real `kubectl` reading the kubeconfig k3sx writes.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::lab::k3s_lab::{Fault, K3sLab, K3sOptions};
use crate::lab::pve::FakePve;
use crate::lab::sshd::{KnownHosts, USER_NOPASSWD};
use crate::support::{PVE_TOKEN_SECRET, Run, Test};

/// The VMs of a cluster on the lab's hosts: `servers` servers on pve1 (vmid 101...), the rest
/// agents on pve2 (201...); the agents whose index is in `storage` are tagged storage too.
/// Each VM's static ipconfig0 holds its host's address.
fn vms(lab: &K3sLab, servers: usize, storage: &[usize]) -> Vec<Value> {
    (0..lab.hosts().len())
        .map(|i| {
            let (node, vmid, tags) = if i < servers {
                ("pve1", 101 + i, "k3s-server".to_string())
            } else {
                let tags = if storage.contains(&i) { "k3s-agent;k3s-storage" } else { "k3s-agent" };
                ("pve2", 201 + i - servers, tags.to_string())
            };
            json!({"vmid": vmid, "name": format!("k3s-{vmid}"), "node": node, "status": "running", "tags": tags,
                   "config": {"ipconfig0": format!("ip={}/24,gw={}", lab.addr(i), lab.gateway())}})
        })
        .collect()
}

struct Site {
    lab: K3sLab,
    pve: FakePve,
    test: Test,
}

impl Site {
    /// The lab, fakepve and a k3sx configuration for them (online install from the lab's URL,
    /// kube-vip on the lab's VIP, MetalLB from the lab's manifest, a private kubeconfig path).
    fn start(hosts: usize, servers: usize, storage: &[usize], opts: K3sOptions) -> Option<Site> {
        let lab = K3sLab::start(hosts, opts)?;
        let pve = FakePve::start(json!({"tokens": {"root@pam!k3sx": PVE_TOKEN_SECRET}, "nodes": ["pve1", "pve2"],
            "vms": vms(&lab, servers, storage)}))?;
        let kh = lab.ssh().known_hosts(KnownHosts::Plain);
        let test = Test::new().pve(&pve, None).env("SSH_AUTH_SOCK", lab.ssh().agent_socket().to_str().unwrap());
        let site = Site { lab, pve, test };
        site.configure(&kh, json!({}));
        Some(site)
    }

    fn kubeconfig(&self) -> PathBuf {
        self.test.path().join("kube/config")
    }

    fn token_file(&self) -> PathBuf {
        self.test.path().join("k3s-token")
    }

    /// Writes `k3sx.json`; `extra` sections are merged over the defaults.
    fn configure(&self, known_hosts: &Path, extra: Value) {
        let lab = &self.lab;
        let mut config = json!({
            // 127.0.0.0/16: the hosts (127.0.1.x), the VIP (127.0.2.x) and the MetalLB pool.
            "network": {"gateway": lab.gateway().to_string(), "cidr": 16, "range_start": "127.0.1.2", "range_end": "127.0.1.250"},
            "k3s": {"version": "v1.32.4+k3s1", "token_file": self.token_file(), "install": {"url": lab.install_url(), "timeout_secs": 60}},
            "kube_vip": {"vip": lab.vip().to_string()},
            "metallb": {"range": "127.0.3.10-127.0.3.20", "manifest": lab.metallb_manifest()},
            "ssh": {"user": USER_NOPASSWD, "port": lab.port(), "known_hosts": known_hosts,
                    "connect_timeout_secs": 5, "command_timeout_secs": 60},
            "kubeconfig": {"path": self.kubeconfig()},
        });
        for (section, values) in extra.as_object().unwrap() {
            let target = config.as_object_mut().unwrap().entry(section.clone()).or_insert(json!({}));
            target.as_object_mut().unwrap().extend(values.as_object().unwrap().clone());
        }
        std::fs::write(self.test.path().join("k3sx.json"), config.to_string()).unwrap();
    }

    fn provision(&self, extra: &[&str]) -> Run {
        let mut args = vec!["provision", "--timeout", "60"];
        args.extend_from_slice(extra);
        self.test.run_args(&args)
    }
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl").env("KUBECONFIG", kubeconfig).args(args).output().expect("kubectl runs");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn provision_builds_an_ha_cluster_in_order_and_a_rerun_installs_nothing() {
    let Some(site) = Site::start(9, 3, &[7, 8], K3sOptions::default()) else { return };
    // An unrelated context the user already has must survive untouched.
    std::fs::create_dir_all(site.kubeconfig().parent().unwrap()).unwrap();
    std::fs::write(
        site.kubeconfig(),
        "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: https://other.example:6443\n\
         users:\n- name: other\n  user:\n    token: other-token\ncontexts:\n- name: other\n  context:\n    cluster: other\n    user: other\n\
         current-context: other\n",
    )
    .unwrap();
    let run = site.provision(&["-vv"]).status(0);

    let installs = site.lab.installs();
    assert_eq!(installs.len(), 9, "{installs:?}");
    let servers: Vec<_> = installs.iter().filter(|i| i.role == "server").collect();
    assert_eq!(servers.len(), 3);
    assert!(servers[0].args.iter().any(|a| a == "--cluster-init"), "bootstrap first: {:?}", servers[0]);
    assert!(servers[1..].iter().all(|s| !s.args.iter().any(|a| a == "--cluster-init")));
    for pair in servers.windows(2) {
        assert!(pair[1].started >= pair[0].finished, "servers one at a time: {pair:?}");
    }
    let agents: Vec<_> = installs.iter().filter(|i| i.role == "agent").collect();
    let last_server = servers.last().unwrap().finished;
    assert!(agents.iter().all(|a| a.started >= last_server), "agents after the servers");
    let first_done = agents.iter().map(|a| a.finished).fold(f64::MAX, f64::min);
    assert!(agents.iter().filter(|a| a.started < first_done).count() >= 2, "agents concurrently: {agents:?}");
    assert!(installs.iter().all(|i| i.outcome == "started"), "{installs:?}");

    // kube-vip's manifests were there when the first server started: it claimed the VIP.
    assert!(!site.lab.events_of("vip-acquired").is_empty(), "{}", site.lab.event_log_text());
    let nodes = site.lab.wait_nodes(std::time::Duration::from_secs(5), |n| n.len() == 9);
    assert!(nodes.iter().all(K3sLab::is_ready), "{nodes:?}");
    let storage: Vec<_> =
        nodes.iter().filter(|n| n["metadata"]["labels"]["node.longhorn.io/create-default-disk"] == "true").collect();
    assert!(storage.is_empty(), "no Longhorn labels while longhorn.enabled is false");

    // The token: never in the output at -vv, and the token file is 0600.
    let token = std::fs::read_to_string(site.token_file()).unwrap();
    let token = token.trim();
    assert_eq!(token.len(), 64);
    assert!(!run.stdout.contains(token) && !run.stderr.contains(token), "the token was printed");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(site.token_file()).unwrap().permissions().mode() & 0o777, 0o600);

    // The real kubectl reads the merged kubeconfig.
    let contexts = kubectl(&site.kubeconfig(), &["config", "get-contexts", "-o", "name"]);
    let mut names: Vec<&str> = contexts.lines().collect();
    names.sort();
    assert_eq!(names, ["k3sx", "other"]);
    let server = kubectl(
        &site.kubeconfig(),
        &["config", "view", "-o", "jsonpath={.clusters[?(@.name==\"k3sx\")].cluster.server}"],
    );
    assert_eq!(server, format!("https://{}:6443", site.lab.vip()));
    let other = kubectl(
        &site.kubeconfig(),
        &["config", "view", "-o", "jsonpath={.clusters[?(@.name==\"other\")].cluster.server}"],
    );
    assert_eq!(other, "https://other.example:6443");
    assert_eq!(kubectl(&site.kubeconfig(), &["config", "current-context"]).trim(), "other", "current-context kept");
    assert_eq!(std::fs::metadata(site.kubeconfig()).unwrap().permissions().mode() & 0o777, 0o600);

    // A re-run on the healthy cluster: no install command at all, nothing to do.
    let again = site.provision(&[]).status(0);
    again.stderr_has("nothing to do");
    assert_eq!(site.lab.installs().len(), 9, "a re-run ran an install");
    // And under --expect-no-changes it is clean.
    site.test.run_args(&["--expect-no-changes", "provision"]).status(0);
}

#[test]
fn dry_run_on_a_fresh_lab_sends_no_change_and_lists_each_step() {
    let Some(site) = Site::start(3, 1, &[], K3sOptions::default()) else { return };
    let run = site.test.run_args(&["--dry-run", "provision"]).status(0);
    assert!(site.lab.installs().is_empty(), "a dry run installed");
    assert!(!site.token_file().exists(), "a dry run kept a token");
    assert!(!site.kubeconfig().exists(), "a dry run wrote a kubeconfig");
    let mut run = run;
    for step in
        ["would write", "kube-vip.yaml", "would run on", "--cluster-init", "kubectl apply", "kubeconfig context"]
    {
        run = run.stderr_has(step);
    }
    let drift = site.test.run_args(&["--expect-no-changes", "provision"]).status(3);
    drift.stderr_has("change(s) pending");
}

#[test]
fn a_failing_agent_is_named_and_the_others_join() {
    let Some(site) = Site::start(4, 1, &[], K3sOptions::default()) else { return };
    site.lab.set_fault(2, Fault::InstallFails("disk full".into()));
    let run = site.provision(&[]).status(1);
    run.stderr_has("disk full").stderr_has("k3s-202");
    let nodes = site.lab.nodes();
    assert_eq!(nodes.len(), 3, "the bootstrap server and the two healthy agents: {nodes:?}");
    // After the fix a re-run converges, installing only the one that failed.
    site.lab.clear_faults(2);
    site.provision(&[]).status(0);
    assert_eq!(site.lab.nodes().len(), 4);
}

#[test]
fn the_second_servers_failure_stops_the_server_sequence() {
    let Some(site) = Site::start(4, 3, &[], K3sOptions::default()) else { return };
    site.lab.set_fault(1, Fault::InstallFails("cannot reach the registry".into()));
    let run = site.provision(&[]).status(1);
    run.stderr_has("k3s-102").stderr_has("not attempted").stderr_has("k3s-103");
    let servers: Vec<_> = site.lab.installs().into_iter().filter(|i| i.role == "server").collect();
    assert_eq!(servers.len(), 2, "the third server was not attempted: {servers:?}");
}

#[test]
fn preflight_names_every_bad_node_and_changes_nothing() {
    let opts = K3sOptions { hostnames: vec!["dup".into(), "dup".into(), String::new()], ..K3sOptions::default() };
    let Some(site) = Site::start(3, 1, &[], opts) else { return };
    site.lab.set_fault(2, Fault::SudoPassword);
    let run = site.provision(&[]).status(1);
    run.stderr_has("preflight failed, nothing was changed").stderr_has("same hostname 'dup'").stderr_has("k3s-202");
    assert!(site.lab.installs().is_empty());
    assert!(!site.token_file().exists());
}
