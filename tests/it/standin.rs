//! The K3s stand-in (`tests/lab/k3s/`) over real SSH: it behaves like the K3s install script
//! and binary where k3sx relies on them, and refuses what K3s refuses.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use k3sx::ssh::{Output, SshError, SshPool};
use serde_json::Value;

use crate::lab::k3s_lab::{Delays, Fault, K3sLab, K3sOptions};
use crate::lab::sshd::{KnownHosts, USER_NOPASSWD};

const V31: &str = "v1.31.12+k3s1";
const V32: &str = "v1.32.4+k3s1";
const V33: &str = "v1.33.4+k3s1";
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
        grace: 2.0,
        heartbeat: 0.25,
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

#[test]
fn a_server_join_while_another_server_is_a_learner_is_refused() {
    let Some(l) = Lab::start(3, K3sOptions::default()) else { return };
    l.bootstrap(0, V32, "");
    l.lab.set_delays(Delays { learner: 3.0, ..fast() });
    let out = l.join_server(1, 0, V32, "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let node = l.lab.node("k3sx-lab-2").unwrap();
    assert_eq!(K3sLab::condition(&node, "EtcdIsVoter").as_deref(), Some("False"), "a new server is a learner");
    let out = l.join_server(2, 0, V32, "");
    assert_ne!(out.code, 0, "refused while k3sx-lab-2 is a learner");
    assert!(out.stderr.contains("too many learner members") && out.stderr.contains("k3sx-lab-2"), "{}", out.stderr);
    assert_eq!(l.lab.etcd_members().len(), 2);
    l.lab.set_delays(fast());
    l.wait_voters(2);
    // Once it is a voter, the third server joins (the failed unit is restarted by the install).
    let out = l.install(
        2,
        &format!("INSTALL_K3S_FORCE_RESTART=true INSTALL_K3S_VERSION={V32} K3S_URL=https://{}:6443", l.lab.addr(0)),
        &format!("server --tls-san {} --node-ip {}", l.lab.vip(), l.lab.addr(2)),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    l.wait_voters(3);
}

#[test]
fn a_cluster_wide_flag_mismatch_is_refused() {
    let Some(l) = Lab::start(2, K3sOptions::default()) else { return };
    l.bootstrap(0, V32, "--disable servicelb --cluster-cidr 10.52.0.0/16");
    let out = l.join_server(1, 0, V32, "--cluster-cidr 10.52.0.0/16");
    assert_ne!(out.code, 0);
    let err = &out.stderr;
    assert!(err.contains("critical configuration value mismatch") && err.contains("--disable"), "{err}");
    assert!(!err.contains("--cluster-cidr"), "only what differs is named: {err}");
    let out = l.join_server(1, 0, V32, "--disable=servicelb --cluster-cidr 10.52.0.0/16");
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn the_token_never_appears_on_a_command_line_and_the_scan_would_see_it() {
    let Some(l) = Lab::start(3, K3sOptions::default()) else { return };
    let watch = l.lab.watch_cmdlines();
    l.bootstrap(0, V32, "");
    assert_eq!(l.join_server(1, 0, V32, "").code, 0);
    assert_eq!(l.join_agent(2, &l.lab.addr(0).to_string(), V32).code, 0);
    // The scan itself works: a command line with a marker is seen.
    l.run(1, "sleep 0.3 # k3sx-cmdline-marker").unwrap();
    let seen = watch.stop();
    assert!(seen.iter().any(|c| c.contains("k3sx-cmdline-marker")), "the watch sees SSH commands: {seen:#?}");
    assert!(seen.iter().any(|c| c.contains("/usr/local/bin/k3s server")), "and the services: {seen:#?}");
    let leaks: Vec<&String> = seen.iter().filter(|c| c.contains(TOKEN)).collect();
    assert!(leaks.is_empty(), "token on a command line: {leaks:#?}");
    let log = l.lab.event_log_text();
    assert!(!log.contains(TOKEN), "the lab's log never has the token");
    // Passing it as an argument is exactly what the scan catches.
    let watch = l.lab.watch_cmdlines();
    let _ = l.run(2, &format!("sleep 0.2; true --token {TOKEN}"));
    assert!(watch.stop().iter().any(|c| c.contains(TOKEN)));
    assert!(l.lab.processes_cmdlines().iter().any(|c| c.contains("/usr/local/bin/k3s agent")));
}

#[test]
fn metallb_pools_are_refused_until_the_webhook_is_ready() {
    let Some(l) = Lab::start(1, K3sOptions::default()) else { return };
    l.lab.set_delays(Delays { metallb: 1.5, ..fast() });
    l.bootstrap(0, V32, "--disable servicelb");
    let pool = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: k3sx-pool, namespace: metallb-system}\n\
                spec: {addresses: [\"127.0.3.10-127.0.3.20\"]}\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\n\
                metadata: {name: k3sx-l2, namespace: metallb-system}\nspec: {ipAddressPools: [k3sx-pool]}\n";
    let apply_pool = || l.pool.run_with_input(&l.target(0), "k3s kubectl apply -f -", pool.as_bytes(), false);
    let e = apply_pool().unwrap_err().to_string();
    assert!(
        e.contains("no matches for kind \"IPAddressPool\"") && e.contains("ensure CRDs are installed first"),
        "{e}"
    );

    let manifest = l.lab.url_of("metallb-native.yaml");
    let out = l.kubectl(0, &format!("apply -f {manifest}"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("namespace/metallb-system created"), "{}", out.stdout);
    assert!(out.stdout.contains("deployment.apps/controller created"), "{}", out.stdout);
    let e = apply_pool().unwrap_err().to_string();
    assert!(
        e.contains("failed calling webhook \"ipaddresspoolvalidationwebhook.metallb.io\"")
            && e.contains("connect: connection refused"),
        "{e}"
    );
    let ep = l.kubectl_json(0, "get endpoints -n metallb-system metallb-webhook-service");
    assert!(ep["subsets"].as_array().is_none_or(|s| s.iter().all(|s| s.get("addresses").is_none())), "{ep}");
    let dep = l.kubectl_json(0, "get deployment -n metallb-system controller");
    let available = dep["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Available").unwrap();
    assert_eq!(available["status"], "False");

    let start = Instant::now();
    let out = l.kubectl(0, "wait -n metallb-system deployment/controller --for condition=Available --timeout=20s");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "deployment.apps/controller condition met");
    assert!(start.elapsed() > Duration::from_millis(300), "it waited: {:?}", start.elapsed());
    let ep = l.kubectl_json(0, "get endpoints -n metallb-system metallb-webhook-service");
    assert!(ep["subsets"][0]["addresses"][0]["ip"].is_string(), "{ep}");
    let out = apply_pool().unwrap();
    assert_eq!(out.stdout, "ipaddresspool.metallb.io/k3sx-pool created\nl2advertisement.metallb.io/k3sx-l2 created\n");
    let out = apply_pool().unwrap();
    assert!(out.stdout.contains("ipaddresspool.metallb.io/k3sx-pool unchanged"), "{}", out.stdout);
    let pools = l.kubectl_json(0, "get ipaddresspools.metallb.io -n metallb-system");
    assert_eq!(pools["items"][0]["spec"]["addresses"][0], "127.0.3.10-127.0.3.20");
    let bad = pool.replace("127.0.3.10-127.0.3.20", "127.0.3.300-1");
    let e = l.pool.run_with_input(&l.target(0), "k3s kubectl apply -f -", bad.as_bytes(), false).unwrap_err();
    assert!(e.to_string().contains("denied the request: invalid CIDR"), "{e}");
    // A wait on something that does not exist fails at once, as kubectl's does.
    let out = l.kubectl(0, "wait -n metallb-system deployment/nope --for condition=Available --timeout=5s");
    assert!(out.code != 0 && out.stderr.contains("not found"), "{}", out.stderr);
}

fn kube_vip_manifest(vip: std::net::Ipv4Addr, iface: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: kube-vip-ds\n  namespace: kube-system\nspec:\n  selector:\n    \
         matchLabels: {{app.kubernetes.io/name: kube-vip-ds}}\n  template:\n    metadata:\n      labels: {{app.kubernetes.io/name: kube-vip-ds}}\n    \
         spec:\n      affinity:\n        nodeAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n            nodeSelectorTerms:\n            \
         - matchExpressions:\n              - {{key: node-role.kubernetes.io/master, operator: Exists}}\n            - matchExpressions:\n              \
         - {{key: node-role.kubernetes.io/control-plane, operator: Exists}}\n      containers:\n      - args: [manager]\n        env:\n        \
         - {{name: vip_arp, value: \"true\"}}\n        - {{name: port, value: \"6443\"}}\n        - {{name: vip_interface, value: {iface}}}\n        \
         - {{name: vip_subnet, value: \"32\"}}\n        - {{name: cp_enable, value: \"true\"}}\n        - {{name: cp_namespace, value: kube-system}}\n        \
         - {{name: vip_leaderelection, value: \"true\"}}\n        - {{name: address, value: {vip}}}\n        - {{name: svc_enable, value: \"false\"}}\n        \
         image: ghcr.io/kube-vip/kube-vip:v0.9.1\n        name: kube-vip\n      hostNetwork: true\n      serviceAccountName: kube-vip\n      \
         tolerations:\n      - {{effect: NoSchedule, operator: Exists}}\n      - {{effect: NoExecute, operator: Exists}}\n"
    )
}

impl Lab {
    fn write_kube_vip(&self, i: usize) {
        let dir = "/var/lib/rancher/k3s/server/manifests";
        self.run(i, &format!("mkdir -p {dir}")).unwrap();
        let rbac = std::fs::read(self.lab.kube_vip_rbac()).unwrap();
        self.pool.write(&self.target(i), &format!("{dir}/kube-vip-rbac.yaml"), &rbac, 0o600).unwrap();
        let ds = kube_vip_manifest(self.lab.vip(), &self.lab.iface(i));
        self.pool.write(&self.target(i), &format!("{dir}/kube-vip.yaml"), ds.as_bytes(), 0o600).unwrap();
    }

    fn wait_vip(&self) -> usize {
        let vip = self.lab.vip();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let holders = self.lab.hosts_with_address(vip);
            if std::net::TcpStream::connect_timeout(&(vip, 6443).into(), Duration::from_millis(200)).is_ok()
                && !holders.is_empty()
            {
                return holders[0];
            }
            assert!(Instant::now() < deadline, "the VIP did not come up:\n{}", self.lab.event_log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn vip_answers(vip: std::net::Ipv4Addr) -> bool {
    std::net::TcpStream::connect_timeout(&(vip, 6443).into(), Duration::from_millis(200)).is_ok()
}

#[test]
fn kube_vip_serves_the_vip_from_a_server_and_uninstall_leaves_it_on_the_nic() {
    let Some(l) = Lab::start(4, K3sOptions::default()) else { return };
    let vip = l.lab.vip();
    l.write_kube_vip(0);
    l.bootstrap(0, V32, "");
    assert_eq!(l.wait_vip(), 0, "the only server leads");
    let addrs = l.run(0, "ip -j addr show dev ens18").unwrap().stdout;
    assert!(addrs.contains(&format!("\"local\": \"{vip}\"")), "{addrs}");
    let route: Value = serde_json::from_str(&l.run(2, "ip -j route get 127.0.1.1").unwrap().stdout).unwrap();
    assert_eq!(
        (route[0]["dev"].as_str(), route[0]["prefsrc"].as_str()),
        (Some("ens18"), Some(&*l.lab.addr(2).to_string()))
    );
    // Servers and an agent join through the VIP.
    for i in [1, 2] {
        let out = l.join_server(i, 0, V32, "");
        assert_eq!(out.code, 0, "{}", out.stderr);
        l.wait_voters(i + 1);
    }
    let out = l.join_agent(3, &vip.to_string(), V32);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let manifests = &l.lab.events_of("manifests")[0];
    assert_eq!(manifests["files"], serde_json::json!(["kube-vip-rbac.yaml", "kube-vip.yaml"]), "present at start");

    // The leader's k3s goes: another server takes the VIP, the cluster keeps serving.
    l.run(0, "systemctl stop k3s").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(l.lab.hosts_with_address(vip).iter().any(|h| *h != 0) && vip_answers(vip)) {
        assert!(Instant::now() < deadline, "no other server took the VIP:\n{}", l.lab.event_log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let nodes = l.kubectl_json(1, "get nodes");
    assert_eq!(nodes["items"].as_array().unwrap().len(), 4);
    assert!(l.lab.nic_addresses(0).contains(&vip.to_string()), "a stopped kube-vip leaves its address behind");

    // Uninstall removes what the install wrote, and leaves the VIP on the NIC.
    let out = l.run_unchecked(0, "/usr/local/bin/k3s-uninstall.sh");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(l.lab.k3s_files(0), Vec::<String>::new());
    assert!(l.lab.nic_addresses(0).contains(&vip.to_string()), "uninstall leaves the VIP");
    assert!(l.lab.host(0).root().join("etc/rancher/node/password").exists(), "and the node password, as K3s does");
    let e = l.run(0, &format!("ip addr del {vip}/32 dev eth0")).unwrap_err().to_string();
    assert!(e.contains("Cannot find device \"eth0\""), "{e}");
    l.run(0, &format!("ip addr del {vip}/32 dev ens18")).unwrap();
    assert!(!l.lab.nic_addresses(0).contains(&vip.to_string()));
    let e = l.run(0, &format!("ip addr del {vip}/32 dev ens18")).unwrap_err().to_string();
    assert!(e.contains("Cannot assign requested address"), "{e}");
    // The uninstalled server is still a Node and an etcd member until it is deleted.
    assert!(l.lab.node("k3sx-lab-1").is_some());
    assert_eq!(l.lab.etcd_members().len(), 3);
}

#[test]
fn a_join_through_a_vip_that_is_not_in_tls_san_fails_with_an_x509_error() {
    let Some(l) = Lab::start(2, K3sOptions::default()) else { return };
    let vip = l.lab.vip();
    l.write_kube_vip(0);
    let out = l.install(0, &format!("INSTALL_K3S_VERSION={V32}"), "server --cluster-init");
    assert_eq!(out.code, 0, "{}", out.stderr);
    l.wait_vip();
    let out = l.join_agent(1, &vip.to_string(), V32);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("x509: certificate is valid for") && out.stderr.contains(&format!("not {vip}")),
        "{}",
        out.stderr
    );
}

#[test]
fn an_upgrade_restarts_with_the_new_version_and_skips_or_newer_agents_are_refused() {
    let Some(l) = Lab::start(3, K3sOptions::default()) else { return };
    l.bootstrap(0, V31, "");
    assert_eq!(l.join_server(1, 0, V31, "").code, 0);
    l.wait_voters(2);
    let out = l.join_agent(2, &l.lab.addr(0).to_string(), V32);
    assert_ne!(out.code, 0, "an agent newer than the servers");
    assert!(out.stderr.contains("newer than the cluster's oldest server"), "{}", out.stderr);
    assert_eq!(l.join_agent(2, &l.lab.addr(0).to_string(), V31).code, 0);

    let out = l.bootstrap_like(0, V33);
    assert_ne!(out.code, 0, "1.31 -> 1.33 skips a minor");
    assert!(out.stderr.contains("version skew"), "{}", out.stderr);
    // Slow enough to see the restarted server before it is Ready and a voter again.
    l.lab.set_delays(Delays { ready: 3.0, learner: 3.0, ..fast() });
    let out = l.bootstrap_like(0, V32);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let node = l.lab.node("k3sx-lab-1").unwrap();
    assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], V32);
    assert_eq!(K3sLab::condition(&node, "EtcdIsVoter").as_deref(), Some("False"), "learner again after a restart");
    assert_eq!(K3sLab::condition(&node, "Ready").as_deref(), Some("False"), "not Ready right after the restart");
    l.lab.set_delays(fast());
    l.wait_voters(2);
    let out = l.run(0, "k3s --version").unwrap().stdout;
    assert!(out.starts_with(&format!("k3s version {V32} (")), "{out}");
    assert_eq!(l.join_server(1, 0, V32, "").code, 0);
    l.wait_voters(2);
    assert_eq!(l.join_agent(2, &l.lab.addr(0).to_string(), V32).code, 0);
    let nodes = l.lab.wait_nodes(Duration::from_secs(5), |n| n.iter().all(K3sLab::is_ready));
    assert!(nodes.iter().all(|n| n["status"]["nodeInfo"]["kubeletVersion"] == V32));
    let versions: Vec<(usize, String)> =
        l.lab.installs().iter().map(|r| (r.index, r.version.clone().unwrap_or_default())).collect();
    assert_eq!(versions.len(), 8, "{versions:?}");
}

impl Lab {
    /// The bootstrap server's install again (same arguments) with another version.
    fn bootstrap_like(&self, i: usize, version: &str) -> Output {
        let vip = self.lab.vip();
        self.install(
            i,
            &format!("INSTALL_K3S_VERSION={version}"),
            &format!("server --cluster-init --tls-san {vip} --node-ip {} ", self.lab.addr(i)),
        )
    }
}

#[test]
fn drain_and_delete_node_act_on_the_cluster_and_a_servers_etcd_member_goes_with_it() {
    let Some(l) = Lab::start(4, K3sOptions::default()) else { return };
    l.bootstrap(0, V32, "");
    for i in [1, 2] {
        assert_eq!(l.join_server(i, 0, V32, "").code, 0);
        l.wait_voters(i + 1);
    }
    assert_eq!(l.join_agent(3, &l.lab.addr(0).to_string(), V32).code, 0);
    l.lab.wait_nodes(Duration::from_secs(5), |n| n.len() == 4 && n.iter().all(K3sLab::is_ready));

    // svclb (servicelb is on) runs a DaemonSet pod on every node: a bare drain is refused.
    let out = l.kubectl(0, "drain k3sx-lab-4");
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"),
        "{}",
        out.stderr
    );
    let out = l.kubectl(0, "drain k3sx-lab-4 --ignore-daemonsets --delete-emptydir-data --timeout=30s");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("node/k3sx-lab-4 drained"), "{}", out.stdout);
    let node = l.kubectl_json(0, "get node k3sx-lab-4");
    assert_eq!(node["spec"]["unschedulable"], true);
    let pods = l.kubectl_json(0, "get pods -A --field-selector spec.nodeName=k3sx-lab-4");
    let owners: Vec<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["ownerReferences"][0]["kind"].as_str().unwrap())
        .collect();
    assert!(owners.iter().all(|k| *k == "DaemonSet"), "only DaemonSet pods are left: {owners:?}");
    assert_eq!(l.kubectl(0, "uncordon k3sx-lab-4").stdout, "node/k3sx-lab-4 uncordoned\n");
    assert_eq!(l.kubectl(0, "label node k3sx-lab-4 node.longhorn.io/create-default-disk=true").code, 0);
    let out = l.kubectl(0, "label node k3sx-lab-4 node.longhorn.io/create-default-disk=false");
    assert!(out.code != 0 && out.stderr.contains("--overwrite is false"), "{}", out.stderr);
    assert_eq!(l.kubectl(0, "label node k3sx-lab-4 node.longhorn.io/create-default-disk=false --overwrite").code, 0);
    assert_eq!(
        l.lab.node("k3sx-lab-4").unwrap()["metadata"]["labels"]["node.longhorn.io/create-default-disk"],
        "false"
    );

    // A server's k3s stopped, then its Node deleted: the finalizer removes its etcd member.
    l.run(2, "systemctl stop k3s").unwrap();
    let out = l.kubectl(0, "delete node k3sx-lab-3");
    assert_eq!((out.code, out.stdout.as_str()), (0, "node \"k3sx-lab-3\" deleted\n"), "{}", out.stderr);
    assert!(l.lab.node("k3sx-lab-3").is_none());
    let members: Vec<String> = l.lab.etcd_members().iter().map(|m| m["node"].as_str().unwrap().to_string()).collect();
    assert_eq!(members, ["k3sx-lab-1", "k3sx-lab-2"]);
    // Its old data does not rejoin: the member was removed.
    let out = l.run_unchecked(2, "systemctl start k3s");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("permanently removed from the cluster"), "{}", out.stderr);
    // An agent deleted while its k3s still runs registers again (as a kubelet does).
    assert_eq!(l.kubectl(0, "delete node k3sx-lab-4").code, 0);
    let nodes = l.lab.wait_nodes(Duration::from_secs(5), |n| n.iter().any(|n| n["metadata"]["name"] == "k3sx-lab-4"));
    assert_eq!(nodes.len(), 3);
    let e = l.kubectl(0, "delete node nope");
    assert!(e.stderr.contains("nodes \"nope\" not found"), "{}", e.stderr);
    // A forced delete skips the finalizer: the Node goes, the etcd member stays; its
    // running k3s registers the Node again.
    let out = l.kubectl(0, "delete node k3sx-lab-2 --force");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(l.lab.etcd_members().len(), 2, "the member stays");
    l.lab.wait_nodes(Duration::from_secs(5), |n| n.iter().any(|n| n["metadata"]["name"] == "k3sx-lab-2"));
    // Two members, one of them down: no quorum (what `remove-node` must never leave).
    l.run(1, "systemctl stop k3s").unwrap();
    std::thread::sleep(Duration::from_secs_f64(fast().grace + 0.3));
    let out = l.kubectl(0, "get nodes");
    assert!(out.code != 0 && out.stderr.contains("etcdserver: request timed out"), "{}", out.stderr);
}

#[test]
fn a_rebuilt_vm_under_the_same_name_is_rejected_until_its_node_is_deleted() {
    let hostnames = ["k3sx-a", "k3sx-b", "k3sx-b"].map(String::from).to_vec();
    let Some(mut l) = Lab::start(3, K3sOptions { hostnames, ..K3sOptions::default() }) else { return };
    l.bootstrap(0, V32, "");
    let server = l.lab.addr(0).to_string();
    assert_eq!(l.join_agent(1, &server, V32).code, 0);
    let out = l.join_agent(2, &server, V32);
    assert_ne!(out.code, 0, "a second host with the same name");
    assert!(out.stderr.contains("Node password rejected"), "{}", out.stderr);

    // Reinstalling on the same VM keeps /etc/rancher/node: it may join again.
    l.run(1, "k3s-agent-uninstall.sh").unwrap();
    assert_eq!(l.join_agent(1, &server, V32).code, 0);
    // A rebuilt VM (new disk) is another node under the same name.
    l.lab.rebuild(1, None, false);
    l.write_token(1, TOKEN);
    let out = l.join_agent(1, &server, V32);
    assert!(out.code != 0 && out.stderr.contains("Node password rejected"), "{}", out.stderr);
    assert_eq!(l.kubectl(0, "delete node k3sx-b").code, 0);
    let out = l.install(
        1,
        &format!("INSTALL_K3S_FORCE_RESTART=true INSTALL_K3S_VERSION={V32} K3S_URL=https://{server}:6443"),
        &format!("--node-ip {}", l.lab.addr(1)),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(l.lab.node("k3sx-b").is_some());
}

#[test]
fn etcd_snapshot_save_writes_a_file_that_ls_lists() {
    let Some(l) = Lab::start(1, K3sOptions::default()) else { return };
    l.bootstrap(0, V32, "");
    let out = l.run(0, "k3s etcd-snapshot save --name k3sx-pre-upgrade-1").unwrap();
    let name = out.stderr.lines().find_map(|line| line.split("Snapshot ").nth(1)?.strip_suffix(" saved.\"")).unwrap();
    assert!(name.starts_with("k3sx-pre-upgrade-1-k3sx-lab-1-"), "{}", out.stderr);
    let dir = l.lab.host(0).root().join("var/lib/rancher/k3s/server/db/snapshots");
    assert!(dir.join(name).is_file());
    let ls = l.run(0, "k3s etcd-snapshot ls").unwrap().stdout;
    assert!(ls.contains(name), "{ls}");
    assert_eq!(l.lab.events_of("etcd-snapshot")[0]["name"], name);
    l.run(0, "systemctl stop k3s").unwrap();
    let e = l.run(0, "k3s etcd-snapshot save").unwrap_err().to_string();
    assert!(e.contains("etcd is not running"), "{e}");
}

#[test]
fn airgap_installs_need_the_binary_in_place_and_take_its_version() {
    let Some(l) = Lab::start(1, K3sOptions::default()) else { return };
    let t = l.target(0);
    l.pool.upload(&t, &l.lab.install_script(), "/tmp/k3s-install.sh", 0o755).unwrap();
    let cmd = format!(
        "INSTALL_K3S_SKIP_DOWNLOAD=true K3S_TOKEN_FILE={TOKEN_FILE} sh /tmp/k3s-install.sh server --cluster-init"
    );
    let out = l.run_unchecked(0, &cmd);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("Executable k3s binary not found at /usr/local/bin/k3s"), "{}", out.stderr);
    l.pool.upload(&t, &l.lab.binary(V31), "/usr/local/bin/k3s", 0o644).unwrap();
    let out = l.run_unchecked(0, &cmd);
    assert!(out.code != 0 && out.stderr.contains("Executable k3s binary not found"), "not executable: {}", out.stderr);
    l.pool.upload(&t, &l.lab.binary(V31), "/usr/local/bin/k3s", 0o755).unwrap();
    let out = l.run_unchecked(0, &cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("Skipping k3s download and verify"), "{}", out.stdout);
    let log = l.lab.install_log(0);
    assert_eq!((log[2].mode.as_str(), log[2].version.as_deref()), ("airgap", Some(V31)));
    assert_eq!(l.lab.node("k3sx-lab-1").unwrap()["status"]["nodeInfo"]["kubeletVersion"], V31);
    assert!(l.lab.http_requests().is_empty(), "nothing fetched: {:?}", l.lab.http_requests());
    // Online mode refuses to guess a version (there is no channel server on the hosts' side).
    let out = l.install(0, "", "server --cluster-init");
    assert!(out.code != 0 && out.stderr.contains("INSTALL_K3S_VERSION is required"), "{}", out.stderr);
    let out = l.install(0, "INSTALL_K3S_VERSION=v1.32.99+k3s1", "server --cluster-init");
    assert!(out.code != 0 && out.stderr.contains("Download failed"), "{}", out.stderr);
    assert_eq!(l.lab.http_requests().iter().filter(|r| r.ends_with("/install.sh")).count(), 2);
}

#[test]
fn injected_faults_fail_the_install_and_make_sudo_ask_for_a_password_on_one_host() {
    let Some(l) = Lab::start(2, K3sOptions::default()) else { return };
    l.lab.set_fault(1, Fault::InstallFails("simulated download failure".into()));
    l.bootstrap(0, V32, "");
    let out = l.join_agent(1, &l.lab.addr(0).to_string(), V32);
    assert!(out.code != 0 && out.stderr.contains("[ERROR]  simulated download failure"), "{}", out.stderr);
    assert_eq!(l.lab.k3s_files(1), Vec::<String>::new(), "nothing changed");
    l.lab.clear_faults(1);
    l.lab.set_fault(1, Fault::StartFails("simulated crash".into()));
    let out = l.join_agent(1, &l.lab.addr(0).to_string(), V32);
    assert!(out.code != 0 && out.stderr.contains("simulated crash"), "{}", out.stderr);
    assert_eq!(l.lab.service_state(1, "k3s-agent"), "activating", "Restart=always: auto-restart pending");
    l.lab.clear_faults(1);
    l.lab.set_fault(1, Fault::NeverReady);
    let out = l.install(
        1,
        &format!("INSTALL_K3S_FORCE_RESTART=true INSTALL_K3S_VERSION={V32} K3S_URL=https://{}:6443", l.lab.addr(0)),
        &format!("--node-ip {}", l.lab.addr(1)),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(K3sLab::condition(&l.lab.node("k3sx-lab-2").unwrap(), "Ready").as_deref(), Some("False"));

    l.lab.set_fault(1, Fault::SudoPassword);
    let kh = l.lab.ssh().known_hosts(KnownHosts::Plain);
    let user = SshPool::new(l.lab.settings(USER_NOPASSWD, &kh));
    assert_eq!(user.run(&l.target(0), "id -u", true).unwrap().stdout.trim(), "0");
    let e = user.run(&l.target(1), "id -u", true).unwrap_err();
    assert_eq!(e.kind(), "sudo_password", "{e}");
    l.lab.clear_faults(1);
    assert_eq!(user.run(&l.target(1), "id -u", true).unwrap().stdout.trim(), "0");
}

#[test]
fn three_servers_survive_one_down_and_lose_quorum_with_two_down() {
    let Some(l) = Lab::start(3, K3sOptions::default()) else { return };
    l.bootstrap(0, V32, "");
    for i in [1, 2] {
        assert_eq!(l.join_server(i, 0, V32, "").code, 0);
        l.wait_voters(i + 1);
    }
    assert_eq!(l.lab.ssh().hosts().iter().map(|h| h.port).collect::<BTreeSet<_>>().len(), 1, "one SSH port");
    l.run(0, "/usr/local/bin/k3s-killall.sh").unwrap();
    assert_eq!(l.lab.service_state(0, "k3s"), "inactive");
    let nodes = l.kubectl_json(1, "get nodes");
    assert_eq!(nodes["items"].as_array().unwrap().len(), 3, "the others serve without the bootstrap server");
    let n =
        l.lab.wait_nodes(Duration::from_secs(5), |n| K3sLab::condition(&n[0], "Ready").as_deref() == Some("Unknown"));
    assert!(K3sLab::is_ready(&n[1]) && K3sLab::is_ready(&n[2]));
    l.run(1, "systemctl stop k3s").unwrap();
    std::thread::sleep(Duration::from_secs_f64(fast().grace + 0.3)); // the members are seen dead
    let out = l.kubectl(2, "get nodes");
    assert!(out.code != 0 && out.stderr.contains("etcdserver: request timed out"), "{}{}", out.stdout, out.stderr);
    // Back to two voters of three: the cluster answers again.
    l.run(1, "systemctl start k3s").unwrap();
    let out = l.kubectl(2, "get nodes -o name");
    assert_eq!(out.stdout, "node/k3sx-lab-1\nnode/k3sx-lab-2\nnode/k3sx-lab-3\n", "{}", out.stderr);
}

#[test]
fn a_sudo_user_installs_and_a_rebooted_host_starts_its_enabled_unit() {
    let Some(mut l) = Lab::start(1, K3sOptions::default()) else { return };
    let kh = l.lab.ssh().known_hosts(KnownHosts::Plain);
    let user = SshPool::new(l.lab.settings(USER_NOPASSWD, &kh));
    let cmd = format!(
        "curl -sfL {} | INSTALL_K3S_VERSION={V32} K3S_TOKEN_FILE={TOKEN_FILE} sh -s - server --cluster-init",
        l.lab.install_url()
    );
    let out = user.run(&l.target(0), &cmd, true).unwrap();
    assert!(out.stdout.contains("systemd: Starting k3s"), "{}", out.stdout);
    // The kubeconfig is root's: kubectl without sudo cannot read it.
    let e = user.run(&l.target(0), "k3s kubectl get nodes", false).unwrap_err().to_string();
    assert!(e.contains("permission denied"), "{e}");
    assert_eq!(user.run(&l.target(0), "k3s kubectl get nodes -o name", true).unwrap().stdout, "node/k3sx-lab-1\n");

    l.lab.power_off(0);
    let n =
        l.lab.wait_nodes(Duration::from_secs(5), |n| K3sLab::condition(&n[0], "Ready").as_deref() == Some("Unknown"));
    assert_eq!(n.len(), 1);
    l.lab.boot(0);
    assert_eq!(l.lab.service_state(0, "k3s"), "active", "enabled: started at boot");
    l.lab.wait_nodes(Duration::from_secs(5), |n| K3sLab::is_ready(&n[0]));
    assert_eq!(l.lab.exec_ok(0, "systemctl is-active k3s"), "active\n");
}
