//! The state a run shares with every primitive: configuration, flags, output, cancellation,
//! and the clients created on first use.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use std::sync::Mutex;

use crate::config::{HostKeyPolicy, HostKeySource, Loaded};
use crate::pve::{PveClient, PveError, PveSettings};
use crate::ssh::{SshPool, SshSettings};
use crate::ui::{Level, Ui};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub dry_run: bool,
    pub yes: bool,
    pub json: bool,
    pub verbose: u8,
    pub quiet: bool,
    pub no_color: bool,
    /// Where `./scripts`, `./stdlib` and `./k3sx.json` are looked for.
    pub cwd: PathBuf,
}

pub struct Host {
    pub loaded: Arc<Loaded>,
    pub options: RunOptions,
    pub ui: Ui,
    /// Set by Ctrl-C; the engine's progress hook turns it into a clean termination.
    pub cancel: Arc<AtomicBool>,
    /// `ARGS`: the workflow's flags and `--arg` values.
    pub args: rhai::Map,
    http: OnceLock<reqwest::blocking::Client>,
    pve: Mutex<Option<Arc<PveClient>>>,
    ssh: OnceLock<SshPool>,
}

impl Host {
    pub fn new(loaded: Loaded, options: RunOptions, args: rhai::Map, cancel: Arc<AtomicBool>) -> Arc<Host> {
        let ui = Ui::new(options.quiet, options.no_color, options.json);
        Arc::new(Host {
            loaded: Arc::new(loaded),
            options,
            ui,
            cancel,
            args,
            http: OnceLock::new(),
            pve: Mutex::new(None),
            ssh: OnceLock::new(),
        })
    }

    pub fn config(&self) -> &crate::config::Config {
        &self.loaded.config
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    pub fn log(&self, level: Level, message: &str) {
        self.ui.log(level, message);
    }

    /// A plain HTTPS client (system trust) for public endpoints such as the K3s channel server.
    pub fn http(&self) -> &reqwest::blocking::Client {
        self.http.get_or_init(|| {
            reqwest::blocking::Client::builder()
                .user_agent(concat!("k3sx/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a default HTTP client builds")
        })
    }

    /// The Proxmox client, created on first use and shared by every thread of the run.
    pub fn pve(&self) -> Result<Arc<PveClient>, PveError> {
        let mut slot = self.pve.lock().expect("not poisoned");
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = Arc::new(PveClient::new(pve_settings(&self.loaded)?)?);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// The SSH session pool (one session per host), created on first use from the `ssh`
    /// settings and shared by every thread of the run.
    pub fn ssh(&self) -> &SshPool {
        self.ssh.get_or_init(|| {
            let s = &self.config().ssh;
            let defaults = SshSettings::default(); // the agent from SSH_AUTH_SOCK, OpenSSH's key files
            let passphrase = s.passphrase_env.as_deref().and_then(|var| match std::env::var(var) {
                Ok(v) if !v.is_empty() => Some(crate::secret::Secret::new(v)),
                _ => {
                    self.log(Level::Warn, &format!("ssh.passphrase_env names `{var}`, which is not set"));
                    None
                }
            });
            SshPool::new(SshSettings {
                user: s.user.clone(),
                port: s.port,
                identity_files: match &s.identity_file {
                    Some(f) => vec![crate::config::expand_home(f)],
                    None => defaults.identity_files,
                },
                passphrase,
                agent_socket: defaults.agent_socket,
                known_hosts: crate::config::expand_home(&s.known_hosts),
                // With keys pinned through the guest agent nothing is trusted on first use: a host
                // no `ssh::trust_vm` pinned must already be in known_hosts.
                policy: match (s.host_keys, s.host_key_policy) {
                    (HostKeySource::GuestAgent, _) | (_, HostKeyPolicy::Strict) => crate::ssh::HostKeyPolicy::Strict,
                    (_, HostKeyPolicy::AcceptNew) => crate::ssh::HostKeyPolicy::AcceptNew,
                },
                sudo: s.sudo,
                connect_timeout: Duration::from_secs(s.connect_timeout_secs),
                command_timeout: Duration::from_secs(s.command_timeout_secs),
            })
            .with_cancel(self.cancel.clone())
        })
    }

    /// Sleeps in small steps so Ctrl-C is answered promptly; false when cancelled.
    pub fn sleep(&self, total: Duration) -> bool {
        let deadline = std::time::Instant::now() + total;
        loop {
            if self.cancelled() {
                return false;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}

/// Client settings from the merged configuration; missing essentials are configuration errors.
fn pve_settings(loaded: &Loaded) -> Result<PveSettings, PveError> {
    let p = &loaded.config.proxmox;
    let missing = |message: &str| PveError::Config { host: p.host.clone(), message: message.to_string() };
    if p.host.trim().is_empty() {
        return Err(missing("no Proxmox host: set PROXMOX_HOST (or proxmox.host in the config file)"));
    }
    let secrets = &loaded.secrets;
    if p.token_id.is_some() && secrets.proxmox_token_secret.is_none() {
        return Err(missing("PROXMOX_API_TOKEN_ID is set but PROXMOX_API_TOKEN_SECRET is not"));
    }
    if p.token_id.is_none() && secrets.proxmox_password.is_none() {
        return Err(missing(
            "no Proxmox credentials: set PROXMOX_API_TOKEN_ID and PROXMOX_API_TOKEN_SECRET, or PROXMOX_PASSWORD",
        ));
    }
    let mut s = PveSettings::new(p.host.trim(), p.user.trim());
    s.port = p.port;
    s.token_id = p.token_id.clone();
    s.token_secret = secrets.proxmox_token_secret.clone();
    s.password = if p.token_id.is_some() { None } else { secrets.proxmox_password.clone() };
    s.verify_tls = p.verify_tls;
    s.ca_file = p.ca_file.as_deref().map(crate::config::expand_home);
    s.fingerprint = p.fingerprint.clone();
    s.connect_timeout = Duration::from_secs(p.connect_timeout_secs);
    s.timeout = Duration::from_secs(p.timeout_secs);
    s.retries = p.retries;
    Ok(s)
}
