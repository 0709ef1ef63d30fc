//! A fake Proxmox VE for tests and benchmarks: `fakepve` (PyPI) driven by `fakepve_lab.py`,
//! on its own 127.x.y.z address and a free port, with a generated CA and server certificate.
//!
//! ```ignore
//! let Some(pve) = FakePve::start(json!({"vms": [{"vmid": 101, "name": "a", "tags": "k3s-server"}]})) else {
//!     return; // no Python with fakepve here, and not in CI
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
/// `None` when it does not exist — then a test is skipped, except under `CI=true`, where it panics.
pub fn python() -> Option<PathBuf> {
    let path = std::env::var_os("K3SX_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3"));
    if path.exists() {
        return Some(path);
    }
    let why = format!("no Python for fakepve at {} (set K3SX_TEST_PYTHON or create .venv)", path.display());
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    None
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
    /// until it answers. `None` (test skipped) when no Python is available; panics on any other failure.
    pub fn start(scenario: Value) -> Option<FakePve> {
        let python = python()?;
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

    /// The VM's state in the fake: status, lock, config, pending, agent requests.
    pub fn vm(&self, vmid: u32) -> Value {
        self.command(json!({"cmd": "vm", "vmid": vmid}))
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
