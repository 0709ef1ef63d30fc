//! Configuration: typed sections with the seed's defaults, merged from
//! built-in defaults < config file < environment < `--set` flags.
//!
//! Every leaf value remembers where it came from ([`Origin`]) so `config show` and
//! validation errors can say "k3sx.json:7" or "env PROXMOX_HOST". Secrets never live
//! in [`Config`]: they are in [`Secrets`], which only the clients read.

mod clients;
mod file;
mod host;
mod layers;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::secret::Secret;

pub use clients::{pve_settings, ssh_settings};
pub use file::{JsonFile, ValueEdit, plan_value_in_file, set_value_in_file};
pub use host::ProxmoxHost;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub proxmox: Proxmox,
    pub tags: Tags,
    pub network: Network,
    pub k3s: K3s,
    pub kube_vip: KubeVip,
    pub metallb: Metallb,
    pub longhorn: Longhorn,
    pub ssh: Ssh,
    pub kubeconfig: Kubeconfig,
    /// The seed's inventory; when non-empty it replaces tag discovery.
    pub nodes: Vec<InventoryNode>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Proxmox {
    pub host: String,
    pub port: u16,
    /// `user@realm`.
    pub user: String,
    /// API token name (`k3sx`), or the full `user@realm!k3sx`.
    pub token_id: Option<String>,
    pub verify_tls: bool,
    /// CA that signed the PVE certificate (`/etc/pve/pve-root-ca.pem`).
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of the server certificate, `AA:BB:...`.
    pub fingerprint: Option<String>,
    /// File holding the password (instead of `PROXMOX_PASSWORD`).
    pub password_file: Option<PathBuf>,
    /// File holding the API token secret (instead of `PROXMOX_API_TOKEN_SECRET`).
    pub token_secret_file: Option<PathBuf>,
    pub timeout_secs: u64,
    pub connect_timeout_secs: u64,
    /// How often an idempotent read is retried on a connection error or 5xx.
    pub retries: u32,
}

impl Default for Proxmox {
    fn default() -> Self {
        Proxmox {
            host: String::new(),
            port: 8006,
            user: "root@pam".into(),
            token_id: None,
            verify_tls: true,
            ca_file: None,
            fingerprint: None,
            password_file: None,
            token_secret_file: None,
            timeout_secs: 30,
            connect_timeout_secs: 10,
            retries: 3,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Tags {
    pub server: String,
    pub agent: String,
    pub storage: String,
}

impl Default for Tags {
    fn default() -> Self {
        Tags { server: "k3s-server".into(), agent: "k3s-agent".into(), storage: "k3s-storage".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    pub range_start: String,
    pub range_end: String,
    /// Prefix length of the node network.
    pub cidr: u8,
    pub gateway: String,
    pub dns_servers: Vec<String>,
    pub search_domain: String,
    /// Which `ipconfigN` / `netN` pair carries the node address.
    pub ipconfig_index: u8,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            range_start: "10.10.0.201".into(),
            range_end: "10.10.0.229".into(),
            cidr: 24,
            gateway: "10.10.0.1".into(),
            dns_servers: vec!["10.10.0.1".into()],
            search_domain: String::new(),
            ipconfig_index: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct K3s {
    pub version: String,
    pub channel: String,
    /// Where the cluster token is kept (mode 0600); generated when missing.
    pub token_file: PathBuf,
    pub server_args: Vec<String>,
    pub agent_args: Vec<String>,
    pub tls_san: Vec<String>,
    pub install: Install,
    /// The K3s channel server (`<url>` lists channels with their latest version).
    pub channel_url: String,
    /// GitHub's "latest release" endpoint for k3s.
    pub github_url: String,
}

impl Default for K3s {
    fn default() -> Self {
        K3s {
            version: "v1.32.4+k3s1".into(),
            channel: "stable".into(),
            token_file: PathBuf::from("~/.config/k3sx/k3s-token"),
            server_args: vec![],
            agent_args: vec![],
            tls_san: vec![],
            install: Install::default(),
            channel_url: "https://update.k3s.io/v1-release/channels".into(),
            github_url: "https://api.github.com/repos/k3s-io/k3s/releases/latest".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Install {
    pub mode: InstallMode,
    /// Online: the install script each VM fetches.
    pub url: String,
    /// Air-gap: local copies uploaded by SFTP.
    pub script: Option<PathBuf>,
    pub binary: Option<PathBuf>,
    pub images: Option<PathBuf>,
    /// Seconds one node's install may take (a joining server's `systemctl restart` blocks
    /// until its etcd join is done).
    pub timeout_secs: u64,
}

impl Default for Install {
    fn default() -> Self {
        Install {
            mode: InstallMode::Online,
            url: "https://get.k3s.io".into(),
            script: None,
            binary: None,
            images: None,
            timeout_secs: 600,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum InstallMode {
    #[default]
    Online,
    Airgap,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KubeVip {
    pub enabled: bool,
    pub version: String,
    pub vip: String,
    /// NIC for the VIP; detected from the node's routes when unset.
    pub interface: Option<String>,
}

impl Default for KubeVip {
    fn default() -> Self {
        KubeVip { enabled: true, version: "v0.9.1".into(), vip: "10.10.0.150".into(), interface: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Metallb {
    pub enabled: bool,
    pub version: String,
    /// `first-last` addresses of the load-balancer pool.
    pub range: String,
    /// The MetalLB manifest: a URL the bootstrap server fetches (online), or a local file that
    /// is uploaded. `{version}` is replaced by `version`.
    pub manifest: String,
}

impl Default for Metallb {
    fn default() -> Self {
        Metallb {
            enabled: true,
            version: "v0.14.9".into(),
            range: "10.10.0.151-10.10.0.199".into(),
            manifest:
                "https://raw.githubusercontent.com/metallb/metallb/{version}/config/manifests/metallb-native.yaml"
                    .into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Longhorn {
    pub enabled: bool,
    pub version: String,
    /// The Longhorn manifest (URL or local file; `{version}` is replaced by `version`). Its
    /// default settings are rewritten so disks are created on storage nodes only.
    pub manifest: String,
}

impl Default for Longhorn {
    fn default() -> Self {
        Longhorn {
            enabled: false,
            version: "v1.8.1".into(),
            manifest: "https://raw.githubusercontent.com/longhorn/longhorn/{version}/deploy/longhorn.yaml".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Ssh {
    pub user: String,
    pub port: u16,
    /// Tried after the ssh-agent.
    pub identity_file: Option<PathBuf>,
    /// Environment variable holding the identity file's passphrase.
    pub passphrase_env: Option<String>,
    pub known_hosts: PathBuf,
    pub host_key_policy: HostKeyPolicy,
    /// Where host keys are trusted from: `known-hosts`, or `guest-agent` (read through Proxmox).
    pub host_keys: HostKeySource,
    /// Run root commands through `sudo -n` (ignored when `user` is root).
    pub sudo: bool,
    pub connect_timeout_secs: u64,
    pub command_timeout_secs: u64,
}

impl Default for Ssh {
    fn default() -> Self {
        Ssh {
            user: "ubuntu".into(),
            port: 22,
            identity_file: None,
            passphrase_env: None,
            known_hosts: PathBuf::from("~/.ssh/known_hosts"),
            host_key_policy: HostKeyPolicy::Strict,
            host_keys: HostKeySource::KnownHosts,
            sudo: true,
            connect_timeout_secs: 10,
            command_timeout_secs: 600,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    #[default]
    Strict,
    AcceptNew,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeySource {
    #[default]
    KnownHosts,
    GuestAgent,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Kubeconfig {
    /// Merged into this file; `$KUBECONFIG` or `~/.kube/config` when unset.
    pub path: Option<PathBuf>,
    pub context: String,
}

impl Default for Kubeconfig {
    fn default() -> Self {
        Kubeconfig { path: None, context: "k3sx".into() }
    }
}

/// One Proxmox node of the seed's inventory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InventoryNode {
    pub id: String,
    #[serde(default)]
    pub vms: Vec<InventoryVm>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InventoryVm {
    pub vmid: u32,
    /// `SERVER`, `AGENT` or `STORAGE`, any case.
    pub role: String,
    #[serde(default)]
    pub name: Option<String>,
    /// A fixed address for this VM (kept by `configure-ips`, shown by `discover`).
    #[serde(default)]
    pub ip: Option<String>,
}

/// Secrets, read from the environment or from files the config names; never serialised.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub proxmox_password: Option<Secret>,
    pub proxmox_token_secret: Option<Secret>,
}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File { path: PathBuf, line: usize },
    Env(String),
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// The merged configuration with the origin of every leaf.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub secrets: Secrets,
    /// Dotted key path (`network.gateway`, `nodes[0].vms[1].ip`) → origin.
    pub origins: BTreeMap<String, Origin>,
    /// The config file in use, if any (`check-version --update` writes here).
    pub file: Option<PathBuf>,
    /// The inventory file in use, when it is not the config file.
    pub inventory_file: Option<PathBuf>,
    /// `proxmox.host` as validated; `None` when no host is set.
    pub proxmox_host: Option<ProxmoxHost>,
}

/// Inputs to [`load`]; `env` is a lookup so tests need not touch the process environment.
pub struct LoadOptions<'a> {
    pub config_file: Option<PathBuf>,
    /// `--set key=value` overrides, in order.
    pub sets: Vec<String>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Directory in which `./k3sx.json` and the seed's `./config.json` are looked for.
    pub cwd: PathBuf,
}

/// Loads, merges and validates the configuration. Every problem found is reported at once.
pub fn load(opts: &LoadOptions) -> Result<Loaded> {
    let mut layers = layers::Layers::new()?;
    let file = locate_config_file(opts);
    if let Some(path) = &file {
        let parsed = JsonFile::read(path)?;
        layers.apply_file(&parsed, None)?;
    }
    let mut inventory_file = None;
    if layers.is_default("nodes") {
        let seed = opts.cwd.join("config.json");
        if seed.is_file()
            && file.as_deref() != Some(seed.as_path())
            && let Some(parsed) = read_seed_inventory(&seed)
        {
            layers.apply_file(&parsed, Some(&["nodes"]))?;
            inventory_file = Some(seed);
        }
    }
    layers.apply_env(opts.env)?;
    layers.apply_sets(&opts.sets)?;
    let (config, mut origins) = layers.finish()?;
    let secrets = load_secrets(&config, opts.env, &mut origins)?;
    let mut loaded = Loaded { config, secrets, origins, file, inventory_file, proxmox_host: None };
    loaded.proxmox_host = validate::validate(&loaded)?;
    Ok(loaded)
}

/// Checks a config file's whole document as [`load`] checks it (known keys, types,
/// validation), over the defaults and nothing else.
fn check_document(file: &JsonFile) -> Result<()> {
    let mut layers = layers::Layers::new()?;
    layers.apply_file(file, None)?;
    let (config, origins) = layers.finish()?;
    let loaded =
        Loaded { config, secrets: Secrets::default(), origins, file: None, inventory_file: None, proxmox_host: None };
    validate::validate(&loaded)?;
    Ok(())
}

/// `./config.json` as the seed's inventory when it has the seed's shape, `{"nodes": [...]}`;
/// its keys are then checked like any config file's. Any other file of that name (a Node
/// project's, say) is not k3sx's business: it is left alone, and `-v` says so.
fn read_seed_inventory(path: &Path) -> Option<JsonFile> {
    let why = match JsonFile::read(path) {
        Ok(parsed) if parsed.value.get("nodes").is_some_and(serde_json::Value::is_array) => return Some(parsed),
        Ok(_) => "no top-level `nodes` array".to_string(),
        Err(e) => format!("no top-level `nodes` array: {e}"),
    };
    tracing::debug!("ignoring {}: not a k3sx inventory ({why})", path.display());
    None
}

fn locate_config_file(opts: &LoadOptions) -> Option<PathBuf> {
    if let Some(path) = &opts.config_file {
        return Some(path.clone());
    }
    let local = opts.cwd.join("k3sx.json");
    if local.is_file() {
        return Some(local);
    }
    let user = dirs::config_dir()?.join("k3sx").join("config.json");
    user.is_file().then_some(user)
}

/// Secrets come from the environment first, else from a file the config names.
/// Their origin is recorded under a key of their own (`proxmox.password`), never their value.
fn load_secrets(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
    origins: &mut BTreeMap<String, Origin>,
) -> Result<Secrets> {
    let mut from = |var: &str, file: &Option<PathBuf>, key: &str| -> Result<Option<Secret>> {
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            origins.insert(key.to_string(), Origin::Env(var.to_string()));
            return Ok(Some(Secret::new(v)));
        }
        let Some(path) = file else { return Ok(None) };
        let path = expand_home(path);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Config(vec![format!("`{key}_file`: cannot read {}: {e}", path.display())]))?;
        origins.insert(key.to_string(), Origin::File { path, line: 1 });
        Ok(Some(Secret::new(text.trim_end_matches(['\n', '\r']))))
    };
    Ok(Secrets {
        proxmox_password: from("PROXMOX_PASSWORD", &config.proxmox.password_file, "proxmox.password")?,
        proxmox_token_secret: from(
            "PROXMOX_API_TOKEN_SECRET",
            &config.proxmox.token_secret_file,
            "proxmox.token_secret",
        )?,
    })
}

/// `~/x` → `$HOME/x`; other paths unchanged.
pub fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => dirs::home_dir().map(|h| h.join(rest)).unwrap_or_else(|| path.to_path_buf()),
        Err(_) => path.to_path_buf(),
    }
}

impl Loaded {
    /// The built-in defaults alone (for `k3sx doc`, which must work whatever the config says).
    pub fn defaults() -> Loaded {
        Loaded {
            config: Config::default(),
            secrets: Secrets::default(),
            origins: BTreeMap::new(),
            file: None,
            inventory_file: None,
            proxmox_host: None,
        }
    }

    /// The origin of a key, `default` when it was never set.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// `key (origin)`, for messages that must say where to fix a value.
    pub fn describe(&self, key: &str) -> String {
        match self.origin(key) {
            Origin::Default => format!("`{key}` (default)"),
            origin => format!("`{key}` ({origin})"),
        }
    }

    /// Every leaf as `(key, value as JSON text, origin)`, secrets included as `<redacted>`.
    pub fn show(&self) -> Vec<(String, String, String)> {
        let value = serde_json::to_value(&self.config).expect("config serialises");
        let mut out = Vec::new();
        layers::for_each_leaf(&value, "", &mut |key, v| {
            out.push((key.to_string(), v.to_string(), self.origin(key).to_string()));
        });
        let secrets = [
            ("proxmox.password", &self.secrets.proxmox_password),
            ("proxmox.token_secret", &self.secrets.proxmox_token_secret),
        ];
        for (key, secret) in secrets {
            if secret.is_some() {
                out.push((key.to_string(), "<redacted>".into(), self.origin(key).to_string()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
