//! A fake Proxmox VE for tests and benchmarks: `fakepve` (PyPI) driven by `fakepve_lab.py`,
//! on its own 127.x.y.z address and a free port, with a generated CA and server certificate.
//!
//! ```ignore
//! let Some(pve) = FakePve::start(json!({"vms": [{"vmid": 101, "name": "a", "tags": "k3s-server"}]})) else {
//!     return; // no fakepve here, and K3SX_SKIP_LAB=1 (else the test fails)
//! };
//! ```
//! The scenario keys are documented at the top of `fakepve_lab.py`. The process is killed on drop.
#![allow(dead_code)] // each test binary or bench uses a different part

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

// Here rather than in `mod.rs`: the benches include this file alone.
#[path = "skip.rs"]
pub mod skip;

/// The login fakepve accepts unless the scenario says otherwise.
pub const USER: &str = "root@pam";
pub const PASSWORD: &str = "secret";
/// How long fakepve may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One request as fakepve recorded it (secrets such as `password=` replaced by `***`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The full path, `/api2/json/...`, without the query string.
    pub path: String,
    /// The raw query string, without `?` (empty when none).
    pub query: String,
    /// The raw body as sent (form encoding untouched).
    pub body: String,
}

impl Request {
    /// The path below `/api2/json`.
    pub fn api_path(&self) -> &str {
        self.path.strip_prefix("/api2/json").unwrap_or(&self.path)
    }
}

struct Io {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// A running fakepve; killed when dropped.
pub struct FakePve {
    child: Child,
    /// `None` once dropped: closing stdin tells the driver to exit.
    io: Mutex<Option<Io>>,
    dir: tempfile::TempDir,
    host: String,
    port: u16,
    url: String,
    ca_file: PathBuf,
    fingerprint: String,
}

/// The Python that has fakepve: `$K3SX_TEST_PYTHON`, else `<repo>/.venv/bin/python3`.
pub fn python_path() -> PathBuf {
    std::env::var_os("K3SX_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3"))
}

/// [`python_path`] when it exists (the benches skip their lab sections on `None`).
pub fn python() -> Option<PathBuf> {
    Some(python_path()).filter(|p| p.exists())
}

/// A loopback address of its own for each lab in this process (the port is picked by the system).
fn next_host() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    format!("127.{}.{}.{}", 100 + pid % 100, (pid / 100) % 250, n % 250 + 2)
}

impl FakePve {
    /// Starts fakepve with `scenario` (a JSON object; `dir` and `host` are filled in) and waits
    /// until it answers. Without the fakepve venv the test fails naming the install command;
    /// `None` (the test returns early, counted as skipped) only under `K3SX_SKIP_LAB=1`, see
    /// [`skip`]. Panics on any other failure.
    pub fn start(scenario: Value) -> Option<FakePve> {
        let Some(python) = python() else {
            skip::unavailable(
                "fakepve lab",
                &format!("no Python with fakepve at {}", python_path().display()),
                &format!("install it with `{}` (or point K3SX_TEST_PYTHON at a Python that has it)", skip::INSTALL),
            );
            return None;
        };
        let dir = tempfile::Builder::new().prefix("k3sx-fakepve-").tempdir().expect("temp dir");
        let mut scenario = match scenario {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            other => panic!("a fakepve scenario is a JSON object, not {other}"),
        };
        scenario.insert("dir".into(), json!(dir.path()));
        scenario.entry("host").or_insert_with(|| json!(next_host()));
        let scenario_file = dir.path().join("scenario.json");
        std::fs::write(&scenario_file, serde_json::to_vec_pretty(&scenario).unwrap()).expect("write scenario");
        let stderr_file = dir.path().join("fakepve.stderr");
        let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/fakepve_lab.py");
        let mut child = Command::new(&python)
            .arg(&driver)
            .arg(&scenario_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_file).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());

        // The first line says "ready" (or why not); read it on a thread so a hang becomes a timeout.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut stdout = stdout;
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send((line, stdout));
        });
        let fail = |child: &mut Child, why: String| -> ! {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&stderr_file).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
            panic!("fakepve did not start: {why}\n--- its stderr ---\n{}", tail.join("\n"));
        };
        let (line, stdout) = match rx.recv_timeout(START_TIMEOUT) {
            Ok(got) => got,
            Err(_) => fail(&mut child, format!("no answer within {START_TIMEOUT:?}")),
        };
        let ready: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if ready["ready"] != json!(true) {
            fail(&mut child, format!("first line was {:?}", line.trim()));
        }
        Some(FakePve {
            child,
            io: Mutex::new(Some(Io { stdin, stdout })),
            host: ready["host"].as_str().unwrap().to_string(),
            port: u16::try_from(ready["port"].as_u64().unwrap()).unwrap(),
            url: ready["url"].as_str().unwrap().to_string(),
            ca_file: PathBuf::from(ready["ca_file"].as_str().unwrap()),
            fingerprint: ready["fingerprint"].as_str().unwrap().to_string(),
            dir,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://host:port`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The PEM CA that signed the server certificate (what `/etc/pve/pve-root-ca.pem` is on PVE).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// SHA-256 of the server certificate, Proxmox style (`AA:BB:...`).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The lab's temporary directory (scenario, certificates, fakepve's stderr).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends one driver command (`{"cmd": ...}`, see `fakepve_lab.py`) and returns its result.
    pub fn command(&self, cmd: Value) -> Value {
        let mut io = self.io.lock().unwrap_or_else(|p| p.into_inner());
        let io = io.as_mut().expect("fakepve is stopped");
        writeln!(io.stdin, "{cmd}").and_then(|_| io.stdin.flush()).expect("fakepve driver is gone");
        let mut line = String::new();
        io.stdout.read_line(&mut line).expect("fakepve driver is gone");
        let answer: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("fakepve driver said {line:?}"));
        if answer["ok"] != json!(true) {
            panic!("fakepve command {cmd} failed: {}", answer["error"]);
        }
        answer["result"].clone()
    }

    /// Every request fakepve received so far, oldest first (failed logins included).
    pub fn requests(&self) -> Vec<Request> {
        let list = self.command(json!({"cmd": "requests"}));
        list.as_array()
            .into_iter()
            .flatten()
            .map(|r| Request {
                method: r["method"].as_str().unwrap_or_default().to_string(),
                path: r["path"].as_str().unwrap_or_default().to_string(),
                query: r["query"].as_str().unwrap_or_default().to_string(),
                body: r["body"].as_str().unwrap_or_default().to_string(),
            })
            .collect()
    }

    pub fn clear_requests(&self) {
        self.command(json!({"cmd": "clear_requests"}));
    }

    /// Forgets every login ticket: the next request with one gets 401.
    pub fn revoke_tickets(&self) {
        self.command(json!({"cmd": "revoke_tickets"}));
    }

    /// Takes a node offline (its VMs show `unknown`, its paths answer 595) or back online.
    pub fn set_node_offline(&self, node: &str, offline: bool) {
        self.command(json!({"cmd": "set_node_offline", "node": node, "offline": offline}));
    }

    /// Answers requests whose path ends with `path_suffix` with `status message`, `times` times
    /// (every time when `None`).
    pub fn fail(&self, method: &str, path_suffix: &str, status: u16, message: &str, times: Option<u32>) {
        self.command(json!({"cmd": "fail", "method": method, "path": path_suffix, "status": status,
                            "message": message, "times": times}));
    }

    /// Answers matching requests with one of PVE's own errors, by its catalogue name
    /// (`already_running`, `no_quorum`, ...; see fakepve's `errors_for`). Errors PVE raises inside a
    /// worker answer with a UPID whose task ends in `TASK ERROR`.
    pub fn fail_named(&self, method: &str, path_suffix: &str, error: &str, times: Option<u32>) {
        self.command(json!({"cmd": "fail", "method": method, "path": path_suffix, "error": error,
                            "times": times}));
    }

    pub fn clear_faults(&self) {
        self.command(json!({"cmd": "clear_faults"}));
    }

    /// The VM's state in the fake: status, lock, config, pending, agent requests, the holder of its
    /// config lock (`config_lock_holder`), the modelled cloud-init drive (`cloudinit`) and how often it
    /// was regenerated since the lab started (`cloudinit_regenerated`).
    pub fn vm(&self, vmid: u32) -> Value {
        self.command(json!({"cmd": "vm", "vmid": vmid}))
    }

    /// Every task fakepve ran, oldest first: `upid`, `type`, `id`, `status`, `exitstatus`, `log`.
    pub fn tasks(&self) -> Vec<Value> {
        self.command(json!({"cmd": "tasks"})).as_array().cloned().unwrap_or_default()
    }

    /// Another task takes the VM's config lock, for `secs` PVE seconds or until released:
    /// writes then wait `lock_wait` PVE seconds and fail with `can't lock file ... got timeout`.
    pub fn hold_config_lock(&self, vmid: u32, secs: Option<f64>) {
        self.command(json!({"cmd": "hold_config_lock", "vmid": vmid, "secs": secs}));
    }

    pub fn release_config_lock(&self, vmid: u32) {
        self.command(json!({"cmd": "release_config_lock", "vmid": vmid}));
    }

    /// Leaves the VM locked (`backup`, `snapshot`, ...), as an interrupted job does.
    pub fn lock_vm(&self, vmid: u32, lock: &str) {
        self.command(json!({"cmd": "lock", "vmid": vmid, "lock": lock}));
    }

    pub fn unlock_vm(&self, vmid: u32) {
        self.command(json!({"cmd": "unlock", "vmid": vmid}));
    }

    /// Starts a vzdump of the VM holding lock `backup` for `secs` PVE seconds; returns its UPID.
    pub fn backup(&self, vmid: u32, secs: f64) -> String {
        self.command(json!({"cmd": "backup", "vmid": vmid, "secs": secs})).as_str().unwrap_or_default().to_string()
    }

    /// Sets fakepve VM attributes: `shutdown_secs`, `start_secs`, `stop_secs`, `start_error`, `acpi`,
    /// `status`, `task_log`, `config_race`, ... (see `VM_ATTRS` in `fakepve_lab.py`).
    pub fn set_vm(&self, vmid: u32, attrs: Value) {
        let mut cmd = json!({"cmd": "set_vm", "vmid": vmid});
        if let (Some(cmd), Value::Object(attrs)) = (cmd.as_object_mut(), attrs) {
            cmd.extend(attrs);
        }
        self.command(cmd);
    }

    /// Changes the VM's config as another user would (a `null` value deletes the key): its digest changes.
    pub fn change_config(&self, vmid: u32, set: Value) {
        self.command(json!({"cmd": "change_config", "vmid": vmid, "set": set}));
    }

    /// After each of the next `times` config reads of the VM, another user writes `set`: a write
    /// with the digest just read meets a digest mismatch.
    pub fn race_config(&self, vmid: u32, set: Value, times: u32) {
        self.command(json!({"cmd": "config_race", "vmid": vmid, "set": set, "times": times}));
    }

    /// Real seconds per PVE second for task durations and latency (0: tasks end before their request does).
    pub fn set_time_scale(&self, scale: f64) {
        self.command(json!({"cmd": "time_scale", "value": scale}));
    }

    /// Adds `latency` PVE seconds to every answer (`node`: only to that node's paths). Needs time_scale > 0.
    pub fn slow_network(&self, latency: f64, node: Option<&str>) {
        self.command(json!({"cmd": "slow_network", "latency": latency, "node": node}));
    }
}

impl Drop for FakePve {
    fn drop(&mut self) {
        // Closing stdin ends the driver (and whatever wrapper started it) by itself;
        // kill it after a short grace so nothing lingers.
        drop(self.io.lock().unwrap_or_else(|p| p.into_inner()).take());
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
