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
                   "agent": {}, "config": {"agent": "1", "ipconfig0": format!("ip={}/24,gw={}", lab.addr(i), lab.gateway())}})
        })
        .collect()
}

pub(crate) struct Site {
    pub(crate) lab: K3sLab,
    pub(crate) pve: FakePve,
    pub(crate) test: Test,
}

impl Site {
    /// The lab, fakepve and a k3sx configuration for them (online install from the lab's URL,
    /// kube-vip on the lab's VIP, MetalLB from the lab's manifest, a private kubeconfig path).
    pub(crate) fn start(hosts: usize, servers: usize, storage: &[usize], opts: K3sOptions) -> Option<Site> {
        Site::start_as(hosts, servers, storage, opts, "root@pam", json!([]))
    }

    /// [`Site::start`] with k3sx using `user`'s API token `k3sx`, holding only `grants`
    /// (`[[token, path, [privileges]]]`; none: every privilege).
    pub(crate) fn start_as(
        hosts: usize,
        servers: usize,
        storage: &[usize],
        opts: K3sOptions,
        user: &str,
        grants: Value,
    ) -> Option<Site> {
        let lab = K3sLab::start(hosts, opts)?;
        let pve =
            FakePve::start(json!({"tokens": {format!("{user}!k3sx"): PVE_TOKEN_SECRET}, "nodes": ["pve1", "pve2"],
            "grants": grants, "vms": vms(&lab, servers, storage)}))?;
        let kh = lab.ssh().known_hosts(KnownHosts::Plain);
        let test = Test::new()
            .pve(&pve, None)
            .env("PROXMOX_USER", user)
            .env("SSH_AUTH_SOCK", lab.ssh().agent_socket().to_str().unwrap());
        let site = Site { lab, pve, test };
        site.configure(&kh, json!({}));
        Some(site)
    }

    /// A kubeconfig the user already has, with an unrelated context `other` (its server
    /// `https://other.example:6443`, the current context): k3sx must leave it untouched.
    pub(crate) fn write_other_kubeconfig(&self) {
        std::fs::create_dir_all(self.kubeconfig().parent().unwrap()).unwrap();
        std::fs::write(
            self.kubeconfig(),
            "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: https://other.example:6443\n\
             users:\n- name: other\n  user:\n    token: other-token\ncontexts:\n- name: other\n  context:\n    cluster: other\n    user: other\n\
             current-context: other\n",
        )
        .unwrap();
    }

    pub(crate) fn kubeconfig(&self) -> PathBuf {
        self.test.path().join("kube/config")
    }

    pub(crate) fn token_file(&self) -> PathBuf {
        self.test.path().join("k3s-token")
    }

    /// Writes `k3sx.json`; `extra` sections are merged over the defaults.
    pub(crate) fn configure(&self, known_hosts: &Path, extra: Value) {
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
        // Pretty-printed, as a user's file would be: save_config must keep its layout.
        std::fs::write(self.config_path(), serde_json::to_string_pretty(&config).unwrap()).unwrap();
    }

    /// [`Site::start`] with `k3s.version` = `version` and the lab's channel server, no storage
    /// nodes: the site of the day-2 tests.
    pub(crate) fn at_version(hosts: usize, servers: usize, version: &str, opts: K3sOptions) -> Option<Site> {
        let site = Site::start(hosts, servers, &[], opts)?;
        let kh = site.lab.ssh().known_hosts(KnownHosts::Plain);
        site.configure(&kh, json!({"k3s": {"version": version, "channel_url": site.lab.channel_url()}}));
        Some(site)
    }

    fn config_path(&self) -> PathBuf {
        self.test.path().join("k3sx.json")
    }

    /// The `k3s.version` the config file holds now.
    pub(crate) fn configured_version(&self) -> String {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(self.config_path()).unwrap()).unwrap();
        v["k3s"]["version"].as_str().unwrap().to_string()
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        self.test.run_args(args)
    }

    /// Each Node's name and kubelet version, sorted.
    pub(crate) fn versions(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .lab
            .nodes()
            .iter()
            .map(|n| {
                let name = n["metadata"]["name"].as_str().unwrap().to_string();
                (name, n["status"]["nodeInfo"]["kubeletVersion"].as_str().unwrap().to_string())
            })
            .collect();
        v.sort();
        v
    }

    pub(crate) fn provision(&self, extra: &[&str]) -> Run {
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
    // A joined server stays an etcd learner for a while: the next server may not join before
    // it votes (the stand-in refuses that join), so the workflow must wait for EtcdIsVoter.
    let mut opts = K3sOptions::default();
    opts.delays.learner = 2.0;
    opts.delays.webhook_lag = 1.0;
    let Some(site) = Site::start(9, 3, &[7, 8], opts) else { return };
    // An unrelated context the user already has must survive untouched.
    site.write_other_kubeconfig();
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

impl Site {
    /// Runs `cmd` as root on host `i` (through the lab's no-password sudo user).
    fn root(&self, i: usize, cmd: &str) -> String {
        let kh = self.lab.ssh().known_hosts(KnownHosts::Plain);
        let pool = k3sx::ssh::SshPool::new(self.lab.settings(USER_NOPASSWD, &kh));
        pool.run(&self.lab.host(i).target(), cmd, true).unwrap_or_else(|e| panic!("{cmd} on host {i}: {e}")).stdout
    }

    /// Tags VM `vmid` (on `node`) through k3sx itself, as a user would retag in the UI.
    fn tag(&self, node: &str, vmid: u32, tags: &str) {
        let script = format!("pve::put(\"/nodes/{node}/qemu/{vmid}/config\", #{{tags: \"{tags}\"}});");
        std::fs::write(self.test.path().join("tag.rhai"), script).unwrap();
        self.test.run_args(&["run", "tag.rhai"]).status(0);
    }
}

#[test]
fn the_token_is_never_on_a_command_line_and_only_in_0600_files() {
    let Some(site) = Site::start(3, 2, &[], K3sOptions::default()) else { return };
    let watch = site.lab.watch_cmdlines();
    site.provision(&["-vv"]).status(0);
    let seen = watch.stop();
    assert!(seen.len() > 20, "the watch saw the run's processes: {seen:?}");
    let token = std::fs::read_to_string(site.token_file()).unwrap().trim().to_string();
    assert!(seen.iter().all(|c| !c.contains(&token)), "the token was on a command line");
    // On the hosts: only K3s's own state and the installer's 0600 env file hold it.
    use std::os::unix::fs::PermissionsExt;
    for i in 0..3 {
        let root = site.lab.host(i).root();
        for entry in walk(&root) {
            let Ok(text) = std::fs::read(&entry) else { continue };
            if !String::from_utf8_lossy(&text).contains(&token) {
                continue;
            }
            let rel = entry.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            let k3s_state = rel.starts_with("var/lib/rancher/k3s/server/");
            let env_file = rel.starts_with("etc/systemd/system/") && rel.ends_with(".env");
            assert!(k3s_state || env_file, "the token is in {rel}");
            if env_file {
                assert_eq!(std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777, 0o600, "{rel}");
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(walk(&p)),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
    out
}

#[test]
fn a_newly_tagged_vm_joins_alone_and_a_wrong_token_is_named() {
    let Some(site) = Site::start(4, 1, &[], K3sOptions::default()) else { return };
    site.tag("pve2", 203, "other");
    site.provision(&[]).status(0);
    assert_eq!(site.lab.installs().len(), 3);

    // The 4th VM is tagged: only it is installed.
    site.tag("pve2", 203, "k3s-agent");
    let good = std::fs::read_to_string(site.token_file()).unwrap();
    std::fs::write(site.token_file(), format!("{}\n", "f".repeat(64))).unwrap();
    let run = site.provision(&[]).status(1);
    run.stderr_has("k3s-203");
    let last = site.lab.installs().pop().unwrap();
    assert_eq!((last.index, last.outcome.as_str()), (4, "failed"), "{last:?}");
    assert_eq!(site.lab.nodes().len(), 3, "nothing else changed");

    std::fs::write(site.token_file(), good).unwrap();
    site.provision(&[]).status(0);
    let installs = site.lab.installs();
    assert_eq!(installs.len(), 5, "one more install, of the new VM only: {installs:?}");
    assert_eq!(installs[4].index, 4);
    assert_eq!(site.lab.nodes().len(), 4);
}

#[test]
fn a_vm_rebuilt_under_the_same_name_has_its_stale_node_deleted_before_it_joins() {
    let Some(mut site) = Site::start(2, 1, &[], K3sOptions::default()) else { return };
    site.provision(&[]).status(0);
    // The VM is rebuilt: a fresh disk (K3s and its node password gone), the same hostname.
    site.lab.rebuild(1, Some("k3sx-lab-2"), false);
    assert_eq!(site.lab.nodes().len(), 2, "the cluster still has the agent's Node");
    let run = site.provision(&[]).status(0);
    run.stdout_has("replace");
    assert!(!site.lab.events_of("kubectl-delete-node").is_empty());
    let nodes =
        site.lab.wait_nodes(std::time::Duration::from_secs(5), |n| n.len() == 2 && n.iter().all(K3sLab::is_ready));
    assert_eq!(nodes.len(), 2);
}

#[test]
fn a_vip_that_already_answers_stops_the_run_before_any_change() {
    let Some(site) = Site::start(2, 1, &[], K3sOptions::default()) else { return };
    let _taken = std::net::TcpListener::bind((site.lab.vip(), 6443)).unwrap();
    let run = site.provision(&[]).status(1);
    run.stderr_has(&format!("the VIP {} already answers", site.lab.vip()));
    assert!(site.lab.installs().is_empty());
}

#[test]
fn a_rebuilt_cluster_replaces_the_k3sx_credentials_in_the_kubeconfig() {
    let Some(site) = Site::start(2, 1, &[], K3sOptions::default()) else { return };
    site.provision(&[]).status(0);
    let before = std::fs::read_to_string(site.kubeconfig()).unwrap();
    site.root(1, "/usr/local/bin/k3s-agent-uninstall.sh");
    site.root(0, "/usr/local/bin/k3s-uninstall.sh");
    std::fs::remove_file(site.token_file()).unwrap();
    site.provision(&[]).status(0);
    let after = std::fs::read_to_string(site.kubeconfig()).unwrap();
    let cert = |text: &str| kubectl_of(text, "{.users[?(@.name==\"k3sx\")].user.client-certificate-data}");
    assert_ne!(cert(&before), cert(&after), "the new cluster's credentials replace the old ones");
    let contexts = kubectl(&site.kubeconfig(), &["config", "get-contexts", "-o", "name"]);
    assert_eq!(contexts.lines().filter(|l| *l == "k3sx").count(), 1);
}

fn kubectl_of(kubeconfig: &str, jsonpath: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(&path, kubeconfig).unwrap();
    kubectl(&path, &["config", "view", "--raw", "-o", &format!("jsonpath={jsonpath}")])
}

#[test]
fn air_gap_uploads_script_binary_and_images_once_and_installs_without_download() {
    let Some(site) = Site::start(2, 1, &[], K3sOptions::default()) else { return };
    let images = site.test.path().join("k3s-airgap-images-amd64.tar.zst");
    std::fs::write(&images, b"not really images").unwrap();
    let kh = site.lab.ssh().known_hosts(KnownHosts::Plain);
    site.configure(
        &kh,
        json!({"k3s": {"version": "v1.32.4+k3s1", "token_file": site.token_file(), "install": {
            "mode": "airgap", "script": site.lab.install_script(), "binary": site.lab.binary("v1.32.4+k3s1"),
            "images": images, "url": site.lab.install_url(), "timeout_secs": 60}}}),
    );
    site.provision(&[]).status(0);
    let installs = site.lab.installs();
    assert!(installs.iter().all(|i| i.mode == "airgap"), "{installs:?}");
    assert!(site.lab.http_requests().iter().all(|r| !r.contains("install.sh")), "nothing was downloaded");
    let on_host = site.lab.host(1).root().join("var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst");
    assert_eq!(std::fs::read(on_host).unwrap(), b"not really images");
    // A second run uploads nothing and plans nothing.
    let dry = site.test.run_args(&["--json", "--dry-run", "provision"]).status(0);
    assert!(dry.stdout.contains("\"plan\": []"), "{}", dry.stdout);
}

#[test]
fn a_rebuilt_bootstrap_server_joins_the_running_cluster_instead_of_starting_a_second_one() {
    let Some(mut site) = Site::start(3, 3, &[], K3sOptions::default()) else { return };
    site.provision(&[]).status(0);
    assert_eq!(site.lab.clusters().len(), 1);
    // The first server's VM is rebuilt (fresh disk, same name) while the other two run.
    site.lab.rebuild(0, Some("k3sx-lab-1"), false);
    let run = site.provision(&[]).status(0);
    run.stdout_has("replace");
    assert_eq!(site.lab.clusters().len(), 1, "a second --cluster-init would have made a second cluster");
    let last = site.lab.installs().pop().unwrap();
    assert_eq!(last.index, 1);
    assert!(!last.args.iter().any(|a| a == "--cluster-init"), "it joined: {last:?}");
    assert!(last.args.iter().any(|a| a == "--server"), "{last:?}");
    let nodes =
        site.lab.wait_nodes(std::time::Duration::from_secs(5), |n| n.len() == 3 && n.iter().all(K3sLab::is_ready));
    assert_eq!(nodes.len(), 3);
}
