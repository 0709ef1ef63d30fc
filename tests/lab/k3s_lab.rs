//! The K3s stand-in lab: sshd hosts (see [`super::sshd`]) that run a strict stand-in for the
//! K3s install script and binary (`tests/lab/k3s/`, described in its `README.md`).
//!
//! ```ignore
//! let Some(lab) = K3sLab::start(3, K3sOptions::default()) else { return };
//! // k3sx config: ssh.port = lab.port(), k3s.install.url = lab.install_url(), hosts lab.addr(i)
//! // ... run provision ...
//! assert_eq!(lab.installs().len(), 3);
//! assert!(lab.nodes().iter().all(|n| K3sLab::is_ready(n)));
//! ```
//!
//! What the lab adds to the sshd hosts:
//! - every host listens on the same SSH port ([`K3sLab::port`]), each on its own 127.0.1.x;
//! - `systemctl`, `journalctl` and `ip` stand-ins in each host's private `/usr/local/bin`;
//! - `/run/k3sx-lab/lab`: the lab-wide directory ([`K3sLab::dir`]: scripts, "releases",
//!   `config.json` with delays and faults, the event log, the clusters' datastores) and
//!   `/run/k3sx-lab/state`: the host's own stand-in state ([`K3sLab::state_dir`]);
//! - an HTTP server on 127.0.0.1 ([`K3sLab::install_url`]) serving the install script like
//!   `https://get.k3s.io`, a channel server ([`K3sLab::channel_url`]) and files
//!   ([`K3sLab::serve`], e.g. the MetalLB manifest);
//! - readers: the event log ([`K3sLab::events`], [`K3sLab::installs`]), the cluster's Nodes as
//!   `kubectl get nodes -o json` would show them ([`K3sLab::nodes`]), etcd members, services'
//!   states and logs, addresses on each host's NIC, every process's command line on the hosts
//!   ([`K3sLab::processes_cmdlines`], [`K3sLab::watch_cmdlines`]);
//! - faults ([`K3sLab::set_fault`]) and delays ([`K3sLab::set_delays`], env `K3SX_STANDIN_*_SECS`).
//!
//! Prerequisites: those of the sshd lab plus `/usr/bin/python3`, `curl` and `nsenter`.
//! Everything is ended on drop: the hosts (and with them every stand-in process), the HTTP
//! server, the directories.

#![allow(dead_code)] // each test uses a different part of the lab

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use k3sx::ssh::SshSettings;

use super::sshd::{AddressLock, LabHost, LabOptions, SshLab, lock_address, missing_prerequisite};

/// Where the stand-in's files are in the repository.
const STANDIN_SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lab/k3s");
/// The lab's "network": hosts are 127.0.1.x/24, the gateway is this address.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 1);
/// Releases the lab can "download" unless [`K3sOptions::releases`] says otherwise.
pub const DEFAULT_RELEASES: [&str; 8] = [
    "v1.30.12+k3s1",
    "v1.30.14+k3s2",
    "v1.31.8+k3s1",
    "v1.31.12+k3s1",
    "v1.32.4+k3s1",
    "v1.32.8+k3s1",
    "v1.33.3+k3s1",
    "v1.33.4+k3s1",
];

/// The stand-in's timings, in seconds. [`Default`] takes `K3SX_STANDIN_<NAME>_SECS` from the
/// environment (e.g. `K3SX_STANDIN_INSTALL_SECS=3`), else small values that keep tests fast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delays {
    /// The install script's binary "download" (online mode, when the binary changes).
    pub install: f64,
    /// Service start until it notifies systemd (the install's `systemctl restart` returns).
    pub start: f64,
    /// Service start until its Node is Ready.
    pub ready: f64,
    /// A new or restarted server is an etcd learner (`EtcdIsVoter` False) this long.
    pub learner: f64,
    /// An applied Deployment (MetalLB's controller) becomes Available after this.
    pub metallb: f64,
    /// MetalLB's webhook still refuses this long after its Service has ready endpoints.
    pub webhook_lag: f64,
    /// `kubectl delete node` of a server: its etcd member is removed after this.
    pub finalizer: f64,
    /// A node whose heartbeat is older is NotReady (a member: dead, for quorum).
    pub grace: f64,
    /// How often services send their heartbeat.
    pub heartbeat: f64,
    /// `Restart=always`: a service that exited is started again after this.
    pub restart: f64,
    /// A joiner retries a server it cannot reach this long, then fails.
    pub join_timeout: f64,
    /// `systemctl start` gives up after this.
    pub start_timeout: f64,
}

impl Default for Delays {
    fn default() -> Delays {
        let env = |name: &str, default: f64| -> f64 {
            std::env::var(format!("K3SX_STANDIN_{name}_SECS")).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
        };
        Delays {
            install: env("INSTALL", 0.2),
            start: env("START", 0.1),
            ready: env("READY", 0.3),
            learner: env("LEARNER", 0.3),
            metallb: env("METALLB", 0.3),
            webhook_lag: env("WEBHOOK_LAG", 0.0),
            finalizer: env("FINALIZER", 0.1),
            grace: env("GRACE", 1.5),
            heartbeat: env("HEARTBEAT", 0.2),
            restart: env("RESTART", 5.0),
            join_timeout: env("JOIN_TIMEOUT", 10.0),
            start_timeout: env("START_TIMEOUT", 90.0),
        }
    }
}

impl Delays {
    fn to_json(self) -> Value {
        json!({
            "install": self.install, "start": self.start, "ready": self.ready, "learner": self.learner,
            "metallb": self.metallb, "webhook_lag": self.webhook_lag, "finalizer": self.finalizer,
            "grace": self.grace, "heartbeat": self.heartbeat, "restart": self.restart,
            "join_timeout": self.join_timeout, "start_timeout": self.start_timeout,
        })
    }
}

/// How [`K3sLab::start`] builds the lab.
#[derive(Debug, Clone)]
pub struct K3sOptions {
    /// Hostname of host `i` (`k3sx-lab-{i+1}` when missing or empty); duplicates allowed.
    pub hostnames: Vec<String>,
    /// `/etc/machine-id` of host `i` (random when missing or empty); duplicates allowed.
    pub machine_ids: Vec<String>,
    /// The NIC name every host shows (`ip`), unless [`K3sOptions::ifaces`] names another.
    pub iface: String,
    /// The NIC name of host `i`.
    pub ifaces: Vec<String>,
    pub delays: Delays,
    /// The versions the install script can "download" (and the channel server knows).
    pub releases: Vec<String>,
    /// Fixed host addresses (see [`LabOptions::addresses`]); free 127.0.1.x when empty.
    pub addresses: Vec<Ipv4Addr>,
    /// A fixed SSH port for every host; a free one when `None`.
    pub ssh_port: Option<u16>,
    /// A fixed address for the HTTP server (install script, channels, files); 127.0.0.1 and a
    /// free port when `None`.
    pub http_addr: Option<SocketAddrV4>,
    /// A fixed [`K3sLab::vip`] (claimed like the free ones; panics when another lab holds it);
    /// a free 127.0.2.x when `None`.
    pub vip: Option<Ipv4Addr>,
}

impl Default for K3sOptions {
    fn default() -> K3sOptions {
        K3sOptions {
            hostnames: Vec::new(),
            machine_ids: Vec::new(),
            iface: "ens18".into(),
            ifaces: Vec::new(),
            delays: Delays::default(),
            releases: DEFAULT_RELEASES.iter().map(|s| s.to_string()).collect(),
            addresses: Vec::new(),
            ssh_port: None,
            http_addr: None,
            vip: None,
        }
    }
}

/// A failure to inject on one host ([`K3sLab::set_fault`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The install script fails at once (before changing anything) with `[ERROR]  <message>`.
    InstallFails(String),
    /// The k3s service exits with `level=fatal msg="<message>"` at start (and at each restart).
    StartFails(String),
    /// The service starts, but its Node never becomes Ready.
    NeverReady,
    /// sudo asks the lab's no-password user (`USER_NOPASSWD`) for a password on this host.
    SudoPassword,
}

impl Fault {
    fn key(&self) -> &'static str {
        match self {
            Fault::InstallFails(_) => "install_fails",
            Fault::StartFails(_) => "start_fails",
            Fault::NeverReady => "never_ready",
            Fault::SudoPassword => "sudo_password",
        }
    }
}

/// One run of the install script, from the event log (the token only as a digest).
#[derive(Debug, Clone, Deserialize)]
pub struct Install {
    /// Hostname at the time.
    pub host: String,
    pub addr: String,
    /// 1-based index of the host (`lab.host(index - 1)`).
    pub index: usize,
    /// `server` or `agent`.
    pub role: String,
    /// `INSTALL_K3S_VERSION`, or the version of the binary in air-gap mode.
    pub version: Option<String>,
    /// `online` or `airgap` (`INSTALL_K3S_SKIP_DOWNLOAD=true`).
    pub mode: String,
    /// The k3s arguments (after the role), token values replaced by their digest.
    pub args: Vec<String>,
    /// Names of the `K3S_*` variables set.
    pub env: Vec<String>,
    /// `sha256:<12 hex>` of `K3S_TOKEN` when it was set.
    pub token: Option<String>,
    pub token_file: Option<String>,
    /// `started` (service restarted and up), `no-change`, `skip-start`, `skip-enable`, `failed`.
    pub outcome: String,
    #[serde(default)]
    pub message: String,
    /// Unix times.
    pub started: f64,
    pub finished: f64,
}

/// The lab; see the module documentation.
pub struct K3sLab {
    ssh: SshLab,
    dir: tempfile::TempDir,
    opts: K3sOptions,
    http: Option<HttpServer>,
    vips: Mutex<Vec<(Ipv4Addr, AddressLock)>>,
    faults: Mutex<serde_json::Map<String, Value>>,
    delays: Mutex<Delays>,
}

static NEXT_VIP: AtomicU32 = AtomicU32::new(0);

impl K3sLab {
    /// Starts `n` hosts with the stand-in. `None` (after `skipped: ...`) when the machine
    /// cannot run the lab; panics then under `CI=true`.
    pub fn start(n: usize, opts: K3sOptions) -> Option<K3sLab> {
        if let Some(why) = missing_prerequisite().or_else(missing_k3s_prerequisite) {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("the K3s stand-in lab cannot run: {why}");
            }
            eprintln!("skipped: the K3s stand-in lab cannot run: {why}");
            return None;
        }
        let dir = tempfile::Builder::new().prefix("k3sx-k3slab-").tempdir().expect("create k3s lab dir");
        chmod(dir.path(), 0o755);
        let shared = dir.path().to_path_buf();
        for sub in ["bin", "log", "clusters", "releases", "www"] {
            std::fs::create_dir_all(shared.join(sub)).expect("create lab dirs");
            chmod(&shared.join(sub), 0o755);
        }
        for entry in std::fs::read_dir(STANDIN_SRC).expect("read tests/lab/k3s") {
            let path = entry.expect("dir entry").path();
            if path.is_file() {
                let dest = shared.join("bin").join(path.file_name().unwrap());
                std::fs::copy(&path, &dest).expect("copy stand-in file");
                chmod(&dest, 0o755);
            }
        }
        let k3s = std::fs::read_to_string(Path::new(STANDIN_SRC).join("k3s")).expect("read the k3s stand-in");
        for v in &opts.releases {
            let d = shared.join("releases").join(v);
            std::fs::create_dir_all(&d).expect("create release dir");
            let text = k3s.replacen("VERSION = \"@K3S_VERSION@\"", &format!("VERSION = \"{v}\""), 1);
            std::fs::write(d.join("k3s"), text).expect("write release");
            chmod(&d.join("k3s"), 0o755);
        }
        for (name, file) in
            [("metallb-native.yaml", "metallb-native.yaml"), ("kube-vip-rbac.yaml", "kube-vip-rbac.yaml")]
        {
            let _ = std::fs::copy(Path::new(STANDIN_SRC).join("fixtures").join(file), shared.join("www").join(name));
        }

        let ifaces: Vec<String> = (0..n)
            .map(|i| opts.ifaces.get(i).filter(|s| !s.is_empty()).cloned().unwrap_or(opts.iface.clone()))
            .collect();
        let setup_shared = shared.clone();
        let setup = Arc::new(move |h: &LabHost| host_setup(h, &setup_shared, &ifaces[h.index - 1]));
        let ssh = SshLab::start_with(
            n,
            LabOptions {
                same_port: true,
                hostnames: opts.hostnames.clone(),
                machine_ids: opts.machine_ids.clone(),
                setup: Some(setup),
                addresses: opts.addresses.clone(),
                port: opts.ssh_port,
            },
        )?;
        let mut lab = K3sLab {
            ssh,
            dir,
            delays: Mutex::new(opts.delays),
            opts,
            http: None,
            vips: Mutex::new(Vec::new()),
            faults: Mutex::new(serde_json::Map::new()),
        };
        lab.write_config();
        let http_addr = lab.opts.http_addr.map_or("127.0.0.1:0".to_string(), |a| a.to_string());
        lab.http = Some(HttpServer::start(
            &http_addr,
            shared.join("bin/install.sh"),
            shared.join("www"),
            lab.opts.releases.clone(),
        ));
        Some(lab)
    }

    pub fn ssh(&self) -> &SshLab {
        &self.ssh
    }

    pub fn ssh_mut(&mut self) -> &mut SshLab {
        &mut self.ssh
    }

    pub fn hosts(&self) -> &[LabHost] {
        self.ssh.hosts()
    }

    /// Host `i`, counting from 0.
    pub fn host(&self, i: usize) -> &LabHost {
        self.ssh.host(i)
    }

    pub fn addr(&self, i: usize) -> Ipv4Addr {
        self.ssh.host(i).addr
    }

    /// The SSH port, the same on every host.
    pub fn port(&self) -> u16 {
        self.ssh.host(0).port
    }

    /// `addr:port` of every host.
    pub fn targets(&self) -> Vec<String> {
        self.hosts().iter().map(|h| h.target()).collect()
    }

    /// The sshd lab's settings with the lab's port.
    pub fn settings(&self, user: &str, known_hosts: &Path) -> SshSettings {
        SshSettings { port: self.port(), ..self.ssh.settings(user, known_hosts) }
    }

    /// The NIC name host `i` shows.
    pub fn iface(&self, i: usize) -> String {
        self.opts.ifaces.get(i).filter(|s| !s.is_empty()).cloned().unwrap_or(self.opts.iface.clone())
    }

    pub fn gateway(&self) -> Ipv4Addr {
        GATEWAY
    }

    /// The lab-wide directory (`/run/k3sx-lab/lab` inside the hosts).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Host `i`'s stand-in state (`/run/k3sx-lab/state` inside it): `units/`, `nic.json`, `host.json`.
    pub fn state_dir(&self, i: usize) -> PathBuf {
        self.host(i).dir().join("standin")
    }

    fn http(&self) -> &HttpServer {
        self.http.as_ref().expect("http server")
    }

    /// `http://127.0.0.1:PORT/install.sh`: what `k3s.install.url` is in the lab; the hosts'
    /// `curl -sfL URL | sh -s - ...` gets the stand-in install script.
    pub fn install_url(&self) -> String {
        format!("{}/install.sh", self.http().base)
    }

    /// `http://127.0.0.1:PORT/v1-release/channels`: a channel server answering from the
    /// lab's releases (`stable`, `latest`, `testing`, `v1.NN`).
    pub fn channel_url(&self) -> String {
        format!("{}/v1-release/channels", self.http().base)
    }

    /// Serves `content` at `http://127.0.0.1:PORT/www/NAME` and returns that URL.
    /// `metallb-native.yaml` and `kube-vip-rbac.yaml` are served from the start.
    pub fn serve(&self, name: &str, content: &str) -> String {
        std::fs::write(self.dir().join("www").join(name), content).expect("write served file");
        self.url_of(name)
    }

    /// The URL of a served file.
    pub fn url_of(&self, name: &str) -> String {
        format!("{}/www/{name}", self.http().base)
    }

    /// Paths requested from the HTTP server so far (`GET /install.sh`, ...).
    pub fn http_requests(&self) -> Vec<String> {
        self.http().requests.lock().unwrap().clone()
    }

    /// The stand-in install script on the machine (air-gap: `k3s.install.script`).
    pub fn install_script(&self) -> PathBuf {
        self.dir().join("bin/install.sh")
    }

    /// The stand-in binary of `version` on the machine (air-gap: `k3s.install.binary`).
    pub fn binary(&self, version: &str) -> PathBuf {
        let p = self.dir().join("releases").join(version).join("k3s");
        assert!(p.exists(), "{version} is not one of the lab's releases {:?}", self.opts.releases);
        p
    }

    /// A MetalLB manifest with the real one's objects that matter (namespace, CRDs,
    /// controller, speaker, webhook Service and configuration), on the machine.
    pub fn metallb_manifest(&self) -> PathBuf {
        self.dir().join("www/metallb-native.yaml")
    }

    /// The kube-vip RBAC manifest (`https://kube-vip.io/manifests/rbac.yaml`), on the machine.
    pub fn kube_vip_rbac(&self) -> PathBuf {
        self.dir().join("www/kube-vip-rbac.yaml")
    }

    pub fn releases(&self) -> &[String] {
        &self.opts.releases
    }

    /// A free VIP (127.0.2.x) held for this lab, the same one on every call.
    pub fn vip(&self) -> Ipv4Addr {
        self.vips_claimed(1)[0]
    }

    /// `n` distinct VIPs held for this lab (the first is [`K3sLab::vip`]).
    pub fn vips_claimed(&self, n: usize) -> Vec<Ipv4Addr> {
        let mut vips = self.vips.lock().unwrap();
        if let (true, Some(vip)) = (vips.is_empty(), self.opts.vip) {
            let lock = lock_address(&format!("vip-{vip}"))
                .unwrap_or_else(|| panic!("the VIP {vip} is held by another k3sx lab (a running `cargo test`?)"));
            vips.push((vip, lock));
        }
        while vips.len() < n {
            let k = NEXT_VIP.fetch_add(1, Ordering::Relaxed);
            let addr = Ipv4Addr::new(127, 0, 2, 2 + (k % 250) as u8);
            if let Some(lock) = lock_address(&format!("vip-{addr}")) {
                vips.push((addr, lock));
            }
        }
        vips.iter().take(n).map(|(a, _)| *a).collect()
    }

    // --- faults and delays ---

    fn write_config(&self) {
        let cfg = json!({
            "delays": self.delays.lock().unwrap().to_json(),
            "releases": self.opts.releases,
            "faults": Value::Object(self.faults.lock().unwrap().clone()),
        });
        let path = self.dir().join("config.json");
        let tmp = self.dir().join(".config.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&cfg).unwrap()).expect("write lab config");
        chmod(&tmp, 0o644);
        std::fs::rename(tmp, path).expect("replace lab config");
    }

    /// Injects `fault` on host `i` (from now on; a running service is not touched).
    pub fn set_fault(&self, i: usize, fault: Fault) {
        if fault == Fault::SudoPassword {
            self.ssh.set_sudo_password(i, true);
            return;
        }
        let value = match &fault {
            Fault::InstallFails(m) | Fault::StartFails(m) => json!(m),
            _ => json!(true),
        };
        let addr = self.addr(i).to_string();
        {
            let mut faults = self.faults.lock().unwrap();
            let entry = faults.entry(addr).or_insert_with(|| json!({}));
            entry[fault.key()] = value;
        }
        self.write_config();
    }

    /// Removes every fault of host `i`.
    pub fn clear_faults(&self, i: usize) {
        self.ssh.set_sudo_password(i, false);
        self.faults.lock().unwrap().remove(&self.addr(i).to_string());
        self.write_config();
    }

    /// Changes the stand-in's timings (read by every stand-in process when it needs them).
    pub fn set_delays(&self, delays: Delays) {
        *self.delays.lock().unwrap() = delays;
        self.write_config();
    }

    pub fn delays(&self) -> Delays {
        *self.delays.lock().unwrap()
    }

    /// Marks system services as running on host `i` for the `systemctl` shim (`iscsid`, ...).
    pub fn set_system_services(&self, i: usize, names: &[&str]) {
        let path = self.state_dir(i).join("system-services.json");
        std::fs::write(path, serde_json::to_string(names).unwrap()).expect("write system services");
    }

    // --- reading what happened ---

    /// Every event of the lab's log, oldest first: `install-start`, `install`,
    /// `service-start`, `service-ready`, `service-exit`, `cluster-init`, `joined`,
    /// `restarted`, `node-ready`, `etcd-voter`, `vip-acquired`, `manifests`,
    /// `kubectl-delete-node`, `node-deleted`, `etcd-member-removed`, `etcd-snapshot`,
    /// `killall`, `uninstall`, `ip-addr-add`, `ip-addr-del`... Each has `ts`, `event`, `host`,
    /// `addr`, `index` (1-based) and its own fields.
    pub fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir().join("log/events.jsonl")).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// The events of one kind.
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events().into_iter().filter(|e| e["event"] == kind).collect()
    }

    /// Every finished install run, oldest first.
    pub fn installs(&self) -> Vec<Install> {
        self.events_of("install").into_iter().map(|e| serde_json::from_value(e).expect("install record")).collect()
    }

    /// The finished install runs on host `i`.
    pub fn install_log(&self, i: usize) -> Vec<Install> {
        self.installs().into_iter().filter(|r| r.index == i + 1).collect()
    }

    /// The raw event log file (for failure messages).
    pub fn event_log_text(&self) -> String {
        std::fs::read_to_string(self.dir().join("log/events.jsonl")).unwrap_or_default()
    }

    fn lab_query(&self, args: &[&str]) -> Value {
        let out = Command::new("/usr/bin/python3")
            .arg(self.dir().join("bin/k3s"))
            .arg("__lab")
            .args(args)
            .env("K3SX_LAB_DIR", self.dir())
            .output()
            .expect("run the stand-in's lab query");
        assert!(out.status.success(), "lab query {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("lab query output is JSON")
    }

    /// The Nodes of the newest cluster as `kubectl get nodes -o json` shows them (`items`),
    /// read from the datastore directly: works while every server is down, too.
    pub fn nodes(&self) -> Vec<Value> {
        self.lab_query(&["nodes"])["items"].as_array().cloned().unwrap_or_default()
    }

    /// The Node named `name`, if the newest cluster has it.
    pub fn node(&self, name: &str) -> Option<Value> {
        self.nodes().into_iter().find(|n| n["metadata"]["name"] == name)
    }

    /// The etcd members of the newest cluster: `{id, node, addr, voter, alive, ...}`.
    pub fn etcd_members(&self) -> Vec<Value> {
        self.lab_query(&["members"]).as_array().cloned().unwrap_or_default()
    }

    /// The ids of every cluster the lab's servers created, oldest first.
    pub fn clusters(&self) -> Vec<String> {
        serde_json::from_value(self.lab_query(&["clusters"])).unwrap_or_default()
    }

    /// The status of condition `ctype` (`Ready`, `EtcdIsVoter`, ...) of a Node, by type.
    pub fn condition(node: &Value, ctype: &str) -> Option<String> {
        node["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == ctype)
            .and_then(|c| c["status"].as_str().map(str::to_string))
    }

    pub fn is_ready(node: &Value) -> bool {
        K3sLab::condition(node, "Ready").as_deref() == Some("True")
    }

    /// Waits until `check(nodes)` holds, up to `timeout`; the nodes then, or a panic naming them.
    pub fn wait_nodes(&self, timeout: Duration, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let nodes = self.nodes();
            if check(&nodes) {
                return nodes;
            }
            if std::time::Instant::now() > deadline {
                panic!("nodes did not reach the expected state in {timeout:?}:\n{}", summary(&nodes));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `active`, `activating`, `inactive` or `failed`: the systemctl shim's state of `unit`
    /// (`k3s` or `k3s-agent`) on host `i`.
    pub fn service_state(&self, i: usize, unit: &str) -> String {
        let unit = if unit.contains('.') { unit.to_string() } else { format!("{unit}.service") };
        let text = std::fs::read_to_string(self.state_dir(i).join("units").join(format!("{unit}.json")));
        let state: Value = text.ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(json!({}));
        state["state"].as_str().unwrap_or("inactive").to_string()
    }

    /// What the service of `unit` printed on host `i` (the `journalctl -u` of the lab).
    pub fn service_log(&self, i: usize, unit: &str) -> String {
        let unit = if unit.contains('.') { unit.to_string() } else { format!("{unit}.service") };
        std::fs::read_to_string(self.state_dir(i).join("units").join(format!("{unit}.log"))).unwrap_or_default()
    }

    /// The addresses added to host `i`'s NIC (a VIP kube-vip holds or left there).
    pub fn nic_addresses(&self, i: usize) -> Vec<String> {
        let text = std::fs::read_to_string(self.state_dir(i).join("nic.json")).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(json!({"extra": []}));
        v["extra"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["local"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    /// Which hosts have `vip` on their NIC.
    pub fn hosts_with_address(&self, vip: Ipv4Addr) -> Vec<usize> {
        (0..self.hosts().len()).filter(|i| self.nic_addresses(*i).contains(&vip.to_string())).collect()
    }

    /// Which of the K3s install's files exist on host `i` (what an uninstall must remove).
    pub fn k3s_files(&self, i: usize) -> Vec<String> {
        let root = self.host(i).root();
        let candidates = [
            "/usr/local/bin/k3s",
            "/usr/local/bin/kubectl",
            "/usr/local/bin/crictl",
            "/usr/local/bin/ctr",
            "/usr/local/bin/k3s-killall.sh",
            "/usr/local/bin/k3s-uninstall.sh",
            "/usr/local/bin/k3s-agent-uninstall.sh",
            "/etc/systemd/system/k3s.service",
            "/etc/systemd/system/k3s.service.env",
            "/etc/systemd/system/k3s-agent.service",
            "/etc/systemd/system/k3s-agent.service.env",
            "/etc/systemd/system/multi-user.target.wants/k3s.service",
            "/etc/systemd/system/multi-user.target.wants/k3s-agent.service",
            "/etc/rancher/k3s",
            "/var/lib/rancher/k3s",
        ];
        candidates
            .iter()
            .filter(|p| std::fs::symlink_metadata(root.join(p.trim_start_matches('/'))).is_ok())
            .map(|p| p.to_string())
            .collect()
    }

    /// The command line of every process now running on the lab's hosts (their PID namespaces).
    pub fn processes_cmdlines(&self) -> Vec<String> {
        host_cmdlines(&self.host_pid_namespaces())
    }

    /// Collects the command line of every process on the hosts, sampled every 10 ms, until
    /// [`CmdlineWatch::stop`]: proves a secret never appeared on any command line during a run.
    pub fn watch_cmdlines(&self) -> CmdlineWatch {
        let namespaces = self.host_pid_namespaces();
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let now = host_cmdlines(&namespaces);
                s.lock().unwrap().extend(now);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        CmdlineWatch { seen, stop, thread: Some(thread) }
    }

    fn host_pid_namespaces(&self) -> Vec<PathBuf> {
        self.hosts()
            .iter()
            .filter_map(|h| h.init_pid())
            .filter_map(|pid| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok())
            .collect()
    }

    // --- acting on hosts from outside (no SSH involved) ---

    /// Runs `sh -c cmd` as root inside host `i`'s namespaces (like a root shell on the VM).
    pub fn exec(&self, i: usize, cmd: &str) -> Output {
        let pid = self.host(i).init_pid().expect("host is running");
        Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-m", "-u", "-p", "--", "sh", "-c", cmd])
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    /// [`K3sLab::exec`] that must succeed; its stdout.
    pub fn exec_ok(&self, i: usize, cmd: &str) -> String {
        let out = self.exec(i, cmd);
        assert!(
            out.status.success(),
            "on host {i}: `{cmd}` exited {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills host `i`'s k3s processes (a crash: the shim's `Restart=always` starts it again
    /// after the `restart` delay).
    pub fn kill_service(&self, i: usize) {
        self.exec(
            i,
            "for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null) || continue; \
             case \"$c\" in *'/usr/local/bin/k3s server'*|*'/usr/local/bin/k3s agent'*) kill -9 ${p#/proc/};; esac; done",
        );
    }

    /// Powers host `i` off: sshd and every process on it end, its files stay.
    pub fn power_off(&mut self, i: usize) {
        self.ssh.stop_host(i);
    }

    /// Boots host `i`: sshd, then the enabled k3s units start (as systemd would at boot).
    pub fn boot(&mut self, i: usize) {
        self.ssh.start_host(i);
        self.exec(
            i,
            "for u in /etc/systemd/system/multi-user.target.wants/k3s*.service; do \
             [ -e \"$u\" ] && systemctl start $(basename $u) >/dev/null 2>&1 & done; wait",
        );
    }

    /// Replaces host `i` by a fresh VM: powered off, its disk (every private directory and
    /// the stand-in state) wiped, optionally a new hostname and host key, booted again.
    pub fn rebuild(&mut self, i: usize, hostname: Option<&str>, new_host_key: bool) {
        self.ssh.stop_host(i);
        let host_dir = self.host(i).dir().to_path_buf();
        for d in super::sshd::PRIVATE_DIRS {
            let p = self.host(i).root().join(d.trim_start_matches('/'));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("recreate private dir");
        }
        let _ = std::fs::remove_dir_all(host_dir.join("standin"));
        if let Some(name) = hostname {
            self.ssh.set_hostname(i, name);
        }
        if new_host_key {
            self.ssh.regenerate_host_key(i);
        } else {
            self.ssh.start_host(i);
        }
    }
}

impl Drop for K3sLab {
    fn drop(&mut self) {
        if let Some(http) = self.http.take() {
            http.stop();
        }
    }
}

/// The shell each host runs before sshd: the lab-wide directory, the host's state, shims.
fn host_setup(h: &LabHost, shared: &Path, iface: &str) -> String {
    let state = h.dir().join("standin");
    std::fs::create_dir_all(state.join("units")).expect("create host state dir");
    chmod(&state, 0o755);
    let mac = format!("bc:24:11:00:{:02x}:{:02x}", h.addr.octets()[2], h.addr.octets()[3]);
    let info = json!({
        "index": h.index, "addr": h.addr.to_string(), "iface": iface, "gateway": GATEWAY.to_string(),
        "prefix": 24, "mac": mac,
    });
    std::fs::write(state.join("host.json"), info.to_string()).expect("write host.json");
    format!(
        "mkdir -p /run/k3sx-lab/lab /run/k3sx-lab/state\n\
         mount --bind {shared} /run/k3sx-lab/lab\n\
         mount --bind {state} /run/k3sx-lab/state\n\
         for f in systemctl journalctl ip; do cp {shared}/bin/$f /usr/local/bin/$f; chmod 755 /usr/local/bin/$f; done",
        shared = shared.display(),
        state = state.display(),
    )
}

fn missing_k3s_prerequisite() -> Option<String> {
    for tool in ["/usr/bin/python3", "/usr/bin/curl", "/usr/bin/nsenter"] {
        if !Path::new(tool).exists() {
            return Some(format!("`{tool}` is missing (install `python3 curl util-linux`)"));
        }
    }
    None
}

fn host_cmdlines(namespaces: &[PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().filter(|s| s.bytes().all(|b| b.is_ascii_digit())) else { continue };
        let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/pid")) else { continue };
        if !namespaces.contains(&ns) {
            continue;
        }
        if let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let line = String::from_utf8_lossy(&raw).replace('\0', " ").trim_end().to_string();
            if !line.is_empty() {
                out.push(line);
            }
        }
    }
    out
}

/// See [`K3sLab::watch_cmdlines`].
pub struct CmdlineWatch {
    seen: Arc<Mutex<BTreeSet<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CmdlineWatch {
    /// Every distinct command line seen on the hosts since the watch started.
    pub fn stop(mut self) -> Vec<String> {
        self.halt();
        self.seen.lock().unwrap().iter().cloned().collect()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for CmdlineWatch {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One line per node: name, Ready, EtcdIsVoter, version (for failure messages).
pub fn summary(nodes: &[Value]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "{} Ready={} EtcdIsVoter={} {}\n",
                n["metadata"]["name"].as_str().unwrap_or("?"),
                K3sLab::condition(n, "Ready").unwrap_or_default(),
                K3sLab::condition(n, "EtcdIsVoter").unwrap_or("-".into()),
                n["status"]["nodeInfo"]["kubeletVersion"].as_str().unwrap_or("?"),
            )
        })
        .collect()
}

/// The install URL, channel server and file server: tiny_http on 127.0.0.1.
struct HttpServer {
    base: String,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl HttpServer {
    fn start(addr: &str, install_sh: PathBuf, www: PathBuf, releases: Vec<String>) -> HttpServer {
        let server = Arc::new(
            tiny_http::Server::http(addr)
                .unwrap_or_else(|e| panic!("cannot start the lab's HTTP server on {addr}: {e}")),
        );
        let base = format!("http://{}", server.server_addr().to_ip().expect("ip listener"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (srv, reqs, channel_base) = (server.clone(), requests.clone(), base.clone());
        let thread = std::thread::spawn(move || {
            for req in srv.incoming_requests() {
                let url = req.url().to_string();
                reqs.lock().unwrap().push(format!("{} {url}", req.method()));
                let path = url.split('?').next().unwrap_or("").to_string();
                let response = route(&path, &install_sh, &www, &releases, &channel_base);
                let _ = req.respond(response);
            }
        });
        HttpServer { base, server, thread: Some(thread), requests }
    }

    fn stop(mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn route(
    path: &str,
    install_sh: &Path,
    www: &Path,
    releases: &[String],
    base: &str,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let text = |code: u16, body: String| tiny_http::Response::from_string(body).with_status_code(code);
    let json_header = tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap();
    if path == "/install.sh" || path == "/" {
        return match std::fs::read_to_string(install_sh) {
            Ok(s) => text(200, s),
            Err(e) => text(500, e.to_string()),
        };
    }
    if let Some(name) = path.strip_prefix("/www/") {
        if name.contains("..") {
            return text(404, "not found\n".into());
        }
        return match std::fs::read_to_string(www.join(name)) {
            Ok(s) => text(200, s),
            Err(_) => text(404, "not found\n".into()),
        };
    }
    let channels = channels(releases);
    if path == "/v1-release/channels" {
        let data: Vec<Value> = channels
            .iter()
            .map(|(id, latest)| {
                json!({"id": id, "type": "channel", "links": {"self": format!("{base}/v1-release/channels/{id}")},
                       "name": id, "latest": latest})
            })
            .collect();
        let body = json!({"type": "collection", "links": {"self": format!("{base}/v1-release/channels")},
                          "actions": {}, "resourceType": "channels", "data": data});
        return text(200, body.to_string()).with_header(json_header);
    }
    if let Some(id) = path.strip_prefix("/v1-release/channels/")
        && let Some((_, latest)) = channels.iter().find(|(c, _)| c == id)
    {
        let location = format!("https://github.com/k3s-io/k3s/releases/tag/{latest}");
        return text(302, String::new()).with_header(tiny_http::Header::from_bytes("Location", location).unwrap());
    }
    text(404, "not found\n".into())
}

/// (channel, latest version): stable/latest/testing = the newest release, v1.NN = its newest patch.
fn channels(releases: &[String]) -> Vec<(String, String)> {
    let key = |v: &str| -> (u64, u64, u64, u64) {
        let nums: Vec<u64> = v
            .trim_start_matches('v')
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap_or(0))
            .collect();
        (
            nums.first().copied().unwrap_or(0),
            nums.get(1).copied().unwrap_or(0),
            nums.get(2).copied().unwrap_or(0),
            nums.get(3).copied().unwrap_or(0),
        )
    };
    let mut sorted = releases.to_vec();
    sorted.sort_by_key(|v| key(v));
    let mut out = Vec::new();
    if let Some(newest) = sorted.last() {
        for c in ["stable", "latest", "testing"] {
            out.push((c.to_string(), newest.clone()));
        }
    }
    for v in sorted.iter().rev() {
        let (major, minor, _, _) = key(v);
        let id = format!("v{major}.{minor}");
        if !out.iter().any(|(c, _)| c == &id) {
            out.push((id, v.clone()));
        }
    }
    out
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
