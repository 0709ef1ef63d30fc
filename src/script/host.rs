//! The state a run shares with every primitive: configuration, flags, output, cancellation,
//! and the clients created on first use.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use std::sync::Mutex;

use crate::change::ChangeLog;
use crate::config::Loaded;
use crate::pve::{PveClient, PveError};
use crate::ssh::SshPool;
use crate::ui::{Level, Ui};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--dry-run`, also set by `--expect-no-changes`.
    pub dry_run: bool,
    /// `--expect-no-changes`: exit 3 when the (dry) run planned any change.
    pub expect_no_changes: bool,
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
    /// Every change of the run, made or (under `--dry-run`) planned: the one door.
    pub changes: ChangeLog,
    http: OnceLock<reqwest::blocking::Client>,
    pve: Mutex<Option<Arc<PveClient>>>,
    ssh: OnceLock<SshPool>,
    /// Workstation locks the run holds (`run_lock`), released when the run ends.
    locks: Mutex<Vec<std::fs::File>>,
}

impl Host {
    pub fn new(loaded: Loaded, options: RunOptions, args: rhai::Map, cancel: Arc<AtomicBool>) -> Arc<Host> {
        let ui = Ui::new(options.quiet, options.no_color, options.json);
        let shown = ui.clone();
        let changes =
            ChangeLog::new(options.dry_run, move |e| shown.log(Level::Info, &format!("dry-run: {}", e.line())));
        Arc::new(Host {
            changes,
            loaded: Arc::new(loaded),
            options,
            ui,
            cancel,
            args,
            http: OnceLock::new(),
            pve: Mutex::new(None),
            ssh: OnceLock::new(),
            locks: Mutex::new(Vec::new()),
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
        let client = Arc::new(PveClient::new(crate::config::pve_settings(&self.loaded)?)?);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// The SSH session pool (one session per host), created on first use from the `ssh`
    /// settings and shared by every thread of the run.
    pub fn ssh(&self) -> &SshPool {
        self.ssh.get_or_init(|| {
            let warn = |message: &str| self.log(Level::Warn, message);
            SshPool::new(crate::config::ssh_settings(&self.loaded, &warn)).with_cancel(self.cancel.clone())
        })
    }

    /// Holds the workstation lock `name` for the rest of the run, waiting (Ctrl-C answered)
    /// while another k3sx process holds it; `on_wait` is called once when it has to wait.
    /// Two runs that plan from the same state (configure-ips) must not interleave.
    ///
    /// # Errors
    /// The lock file cannot be created or locked; `Ok(false)` when cancelled while waiting.
    pub fn run_lock(&self, name: &str, on_wait: &dyn Fn(&std::path::Path)) -> std::io::Result<bool> {
        let dir = dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("k3sx/locks");
        std::fs::create_dir_all(&dir)?;
        let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let path = dir.join(format!("{safe}.lock"));
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    if !told {
                        on_wait(&path);
                        told = true;
                    }
                    if !self.sleep(Duration::from_millis(100)) {
                        return Ok(false);
                    }
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
        self.locks.lock().expect("not poisoned").push(file);
        Ok(true)
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
