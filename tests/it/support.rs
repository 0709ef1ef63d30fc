//! Runs the real `k3sx` binary in a temp directory with an isolated environment
//! (HOME, XDG dirs, no PROXMOX_* or K3SX_* from the caller).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_k3sx");

pub struct Test {
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Test {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Test { dir, args: Vec::new(), env: Vec::new() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Writes a file relative to the test directory.
    pub fn file(self, rel: &str, contents: &str) -> Self {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
        self
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(rel)).unwrap()
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// The command with the environment set up and the `args` given so far.
    pub fn command(&self) -> Command {
        let mut cmd = self.bare_command();
        cmd.args(&self.args);
        cmd
    }

    fn bare_command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("PROXMOX_") || k.starts_with("K3SX_") || k.starts_with("XDG_") || k == "GITHUB_TOKEN" {
                cmd.env_remove(k);
            }
        }
        cmd.env("HOME", self.home()).env("NO_COLOR", "1");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs with these arguments instead of the ones set with `args`.
    pub fn run_args(&self, args: &[&str]) -> Run {
        let mut cmd = self.bare_command();
        cmd.args(args);
        Self::finish(cmd)
    }

    pub fn run(&self) -> Run {
        Self::finish(self.command())
    }

    fn finish(mut cmd: Command) -> Run {
        cmd.stdin(Stdio::null());
        let Output { status, stdout, stderr } = cmd.output().expect("k3sx runs");
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the exit status, showing the output when it differs.
    pub fn status(self, code: i32) -> Self {
        assert_eq!(self.code, code, "exit status\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }

    pub fn stderr_has(self, needle: &str) -> Self {
        assert!(self.stderr.contains(needle), "stderr lacks {needle:?}:\n{}", self.stderr);
        self
    }

    pub fn stdout_has(self, needle: &str) -> Self {
        assert!(self.stdout.contains(needle), "stdout lacks {needle:?}:\n{}", self.stdout);
        self
    }
}

/// A local HTTP server answering fixed routes: `(path, status, body, extra headers)`.
pub struct FixtureServer {
    pub base: String,
    server: std::sync::Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub type Route = (&'static str, u16, String, Vec<(&'static str, &'static str)>);

impl FixtureServer {
    pub fn start(routes: Vec<Route>) -> Self {
        let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind a loopback port"));
        let base = format!("http://{}", server.server_addr().to_ip().unwrap());
        let s = server.clone();
        let thread = std::thread::spawn(move || {
            for req in s.incoming_requests() {
                let route = routes.iter().find(|r| r.0 == req.url());
                let resp = match route {
                    Some((_, status, body, headers)) => {
                        let mut resp = tiny_http::Response::from_string(body.clone()).with_status_code(*status);
                        for (k, v) in headers {
                            resp.add_header(tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap());
                        }
                        resp
                    }
                    None => tiny_http::Response::from_string("not found").with_status_code(404),
                };
                let _ = req.respond(resp);
            }
        });
        FixtureServer { base, server, thread: Some(thread) }
    }
}

impl Drop for FixtureServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The API token the Proxmox lab scenarios of the CLI tests accept.
pub const PVE_TOKEN_ID: &str = "k3sx";
pub const PVE_TOKEN_SECRET: &str = "5f0c-lab-token-secret-77a1";

impl Test {
    /// Points k3sx at a fakepve lab: host, port, CA file and (unless `password` is given) the
    /// lab's API token.
    pub fn pve(self, pve: &crate::lab::pve::FakePve, password: Option<&str>) -> Self {
        let t = self
            .env("PROXMOX_HOST", pve.host())
            .env("PROXMOX_PORT", &pve.port().to_string())
            .env("PROXMOX_USER", crate::lab::pve::USER)
            .env("PROXMOX_CA_FILE", pve.ca_file().to_str().unwrap());
        match password {
            Some(pw) => t.env("PROXMOX_PASSWORD", pw),
            None => t.env("PROXMOX_API_TOKEN_ID", PVE_TOKEN_ID).env("PROXMOX_API_TOKEN_SECRET", PVE_TOKEN_SECRET),
        }
    }
}
