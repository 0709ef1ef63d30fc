//! The K3s stand-in (`tests/lab/k3s/`) over real SSH: it behaves like the K3s install script
//! and binary where k3sx relies on them, and refuses what K3s refuses.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use k3sx::ssh::{Output, SshError, SshPool};
use serde_json::Value;

use crate::lab::k3s_lab::{Delays, Fault, K3sLab, K3sOptions};
use crate::lab::sshd::{KnownHosts, USER_NOPASSWD};

const V31: &str = "v1.31.12+k3s1";
const V32: &str = "v1.32.4+k3s1";
const V33: &str = "v1.33.4+k3s1";
const V30: &str = "v1.30.14+k3s2";
const TOKEN: &str = "k3sx-standin-test-token-0123456789abcdef";
/// Where the tests keep the token on each host: a private, root-only file.
const TOKEN_FILE: &str = "/etc/rancher/k3sx-test/token";

/// Delays that keep the suite fast.
fn fast() -> Delays {
    Delays {
        install: 0.1,
        start: 0.05,
        ready: 0.3,
        learner: 0.4,
        metallb: 0.4,
        webhook_lag: 0.0,
        finalizer: 0.1,
        grace: 1.0,
        heartbeat: 0.1,
        restart: 30.0,
        join_timeout: 3.0,
        start_timeout: 30.0,
    }
}

struct Lab {
    lab: K3sLab,
    pool: SshPool,
}

impl Lab {
    fn start(n: usize, opts: K3sOptions) -> Option<Lab> {
        let lab = K3sLab::start(n, K3sOptions { delays: fast(), ..opts })?;
        let kh = lab.ssh().known_hosts(KnownHosts::Plain);
        let pool = SshPool::new(lab.settings("root", &kh));
        let lab = Lab { lab, pool };
        for i in 0..n {
            lab.write_token(i, TOKEN);
        }
        Some(lab)
    }

    fn target(&self, i: usize) -> String {
        self.lab.host(i).target()
    }

    fn write_token(&self, i: usize, token: &str) {
        self.pool.run(&self.target(i), "mkdir -p /etc/rancher/k3sx-test", false).unwrap();
        self.pool.write(&self.target(i), TOKEN_FILE, format!("{token}\n").as_bytes(), 0o600).unwrap();
    }

    fn run(&self, i: usize, cmd: &str) -> Result<Output, SshError> {
        self.pool.run(&self.target(i), cmd, false)
    }

    fn run_unchecked(&self, i: usize, cmd: &str) -> Output {
        self.pool.run_unchecked(&self.target(i), cmd, false).unwrap()
    }

    /// `curl -sfL URL | ENV sh -s - ARGS` on host `i`, as k3sx runs it in online mode.
    fn install(&self, i: usize, env: &str, args: &str) -> Output {
        let cmd = format!("curl -sfL {} | {env} K3S_TOKEN_FILE={TOKEN_FILE} sh -s - {args}", self.lab.install_url());
        self.run_unchecked(i, &cmd)
    }

    fn bootstrap(&self, i: usize, version: &str, extra: &str) -> Output {
        let vip = self.lab.vip();
        let out = self.install(
            i,
            &format!("INSTALL_K3S_VERSION={version}"),
            &format!("server --cluster-init --tls-san {vip} --node-ip {} {extra}", self.lab.addr(i)),
        );
        assert_eq!(out.code, 0, "bootstrap on host {i}:\n{}{}", out.stdout, out.stderr);
        out
    }

    fn join_server(&self, i: usize, via: usize, version: &str, extra: &str) -> Output {
        let vip = self.lab.vip();
        self.install(
            i,
            &format!("INSTALL_K3S_VERSION={version} K3S_URL=https://{}:6443", self.lab.addr(via)),
            &format!("server --tls-san {vip} --node-ip {} {extra}", self.lab.addr(i)),
        )
    }

    fn join_agent(&self, i: usize, via: &str, version: &str) -> Output {
        self.install(
            i,
            &format!("INSTALL_K3S_VERSION={version} K3S_URL=https://{via}:6443"),
            &format!("--node-ip {}", self.lab.addr(i)),
        )
    }

    fn kubectl(&self, i: usize, args: &str) -> Output {
        self.run_unchecked(i, &format!("k3s kubectl {args}"))
    }

    fn kubectl_json(&self, i: usize, args: &str) -> Value {
        let out = self.kubectl(i, &format!("{args} -o json"));
        assert_eq!(out.code, 0, "kubectl {args}: {}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("kubectl {args}: {e}\n{}", out.stdout))
    }

    fn wait_voters(&self, servers: usize) {
        self.lab.wait_nodes(Duration::from_secs(10), |nodes| {
            nodes.iter().filter(|n| K3sLab::condition(n, "EtcdIsVoter").as_deref() == Some("True")).count() == servers
                && nodes.iter().all(K3sLab::is_ready)
        });
    }
}

fn condition_types(node: &Value) -> Vec<String> {
    node["status"]["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap().to_string()).collect()
}

#[test]
fn bootstrap_join_and_agent_show_up_as_real_nodes_with_ready_not_last() {
    let Some(l) = Lab::start(3, K3sOptions::default()) else { return };
    let out = l.bootstrap(0, V32, "--disable servicelb");
    assert!(out.stdout.contains("[INFO]  systemd: Starting k3s"), "{}", out.stdout);
    assert_eq!(l.lab.service_state(0, "k3s"), "active");
    // A joiner is refused while the bootstrap server is not Ready... no: it may join at once.
    let out = l.join_server(1, 0, V32, "--disable servicelb");
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    l.wait_voters(2);
    let out = l.join_agent(2, &l.lab.addr(0).to_string(), V32);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(l.lab.service_state(2, "k3s-agent"), "active");

    let doc = l.kubectl_json(0, "get nodes");
    let nodes = doc["items"].as_array().unwrap().clone();
    let names: Vec<&str> = nodes.iter().map(|n| n["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["k3sx-lab-1", "k3sx-lab-2", "k3sx-lab-3"]);
    for (i, n) in nodes.iter().enumerate() {
        let types = condition_types(n);
        assert!(types.len() >= 4 && types.contains(&"Ready".to_string()), "{types:?}");
        assert_ne!(types.last().unwrap(), "Ready", "Ready is not the last condition: {types:?}");
        assert_ne!(types.first().unwrap(), "Ready", "nor the first: {types:?}");
        assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], V32);
        let addrs = n["status"]["addresses"].as_array().unwrap();
        assert!(addrs.iter().any(|a| a["type"] == "InternalIP" && a["address"] == l.lab.addr(i).to_string()));
        let labels = &n["metadata"]["labels"];
        let server = i < 2;
        for role in ["control-plane", "etcd", "master"] {
            let v = &labels[format!("node-role.kubernetes.io/{role}")];
            assert_eq!(v.as_str() == Some("true"), server, "{role} on {}: {labels}", names[i]);
        }
        assert_eq!(types.contains(&"EtcdIsVoter".to_string()), server, "{types:?}");
        assert!(n["spec"].get("unschedulable").is_none());
    }
    // The agent becomes Ready after the stand-in's delay.
    let nodes = l.lab.wait_nodes(Duration::from_secs(5), |n| n.len() == 3 && n.iter().all(K3sLab::is_ready));
    assert_eq!(nodes.len(), 3);
    // What tests read from outside agrees with kubectl on the host.
    assert_eq!(
        l.lab.installs().iter().map(|r| (r.index, r.role.as_str(), r.outcome.as_str())).collect::<Vec<_>>(),
        [(1, "server", "started"), (2, "server", "started"), (3, "agent", "started")]
    );
    // An agent has no working kubectl (no kubeconfig), like the real one.
    let out = l.kubectl(2, "get nodes");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("localhost:8080 was refused"), "{}", out.stderr);
}

#[test]
fn a_rerun_with_the_same_inputs_changes_nothing_and_the_env_file_is_0600() {
    let Some(l) = Lab::start(1, K3sOptions::default()) else { return };
    l.bootstrap(0, V32, "");
    let started = l.lab.events_of("service-start").len();
    let out = l.bootstrap(0, V32, "");
    assert!(out.stdout.contains("No change detected so skipping service start"), "{}", out.stdout);
    assert_eq!(l.lab.events_of("service-start").len(), started, "not restarted");
    let log = l.lab.install_log(0);
    assert_eq!(log.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>(), ["started", "no-change"]);
    assert_eq!(log[1].version.as_deref(), Some(V32));
    assert_eq!(log[1].token_file.as_deref(), Some(TOKEN_FILE));

    let root = l.lab.host(0).root();
    let env = root.join("etc/systemd/system/k3s.service.env");
    assert_eq!(std::fs::metadata(&env).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&env).unwrap();
    assert!(text.contains(&format!("K3S_TOKEN_FILE='{TOKEN_FILE}'")), "{text}");
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/k3s.service")).unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("'--cluster-init'"), "{unit}");
    for f in ["usr/local/bin/k3s-uninstall.sh", "usr/local/bin/k3s-killall.sh", "var/lib/rancher/k3s/server/token"] {
        assert!(root.join(f).exists(), "{f}");
    }
    assert!(std::fs::symlink_metadata(root.join("usr/local/bin/kubectl")).unwrap().file_type().is_symlink());
    let kubeconfig = root.join("etc/rancher/k3s/k3s.yaml");
    assert_eq!(std::fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(root.join("var/lib/rancher/k3s/server/token")).unwrap();
    assert!(token.starts_with("K10") && token.trim_end().ends_with(&format!("::server:{TOKEN}")), "{token}");
    // A changed argument set restarts the service.
    let out = l.bootstrap(0, V32, "--node-label a=b");
    assert!(out.stdout.contains("systemd: Starting k3s"), "{}", out.stdout);
    assert_eq!(l.lab.events_of("service-start").len(), started + 1);
}

#[test]
fn a_wrong_token_is_refused_and_the_install_fails_naming_it() {
    let Some(l) = Lab::start(3, K3sOptions::default()) else { return };
    l.bootstrap(0, V32, "");
    l.write_token(1, "not-the-cluster-token");
    let out = l.join_server(1, 0, V32, "");
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(out.stderr.contains("token") && out.stderr.contains("401"), "{}", out.stderr);
    l.write_token(2, "not-the-cluster-token");
    let out = l.join_agent(2, &l.lab.addr(0).to_string(), V32);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("token is not valid"), "{}", out.stderr);
    assert_eq!(l.lab.nodes().len(), 1, "nobody joined");
    assert_eq!(l.lab.install_log(1)[0].outcome, "failed");
}
