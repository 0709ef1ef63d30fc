//! The demo: a user's whole day with k3sx on a lab that needs no Proxmox and no VMs.
//!
//! ```text
//! sudo bash tests/lab/demo            # setup, build, then this program: the whole day, then clean up
//! sudo bash tests/lab/demo --keep     # the same, but the cluster stays up (no teardown) until Enter/Ctrl-C
//! sudo bash tests/lab/demo --lab-only # only the lab (VMs fresh from the template), until Enter/Ctrl-C
//! ```
//! (`cargo build --release --bin k3sx --example demo_lab && target/release/examples/demo_lab`
//! is what `tests/lab/demo` runs after `tests/setup`.)
//!
//! The lab is the one the integration tests use (`tests/lab/`), at fixed addresses:
//!
//! | what                                   | where                                   |
//! |----------------------------------------|-----------------------------------------|
//! | fakepve (Proxmox VE API, nodes pve1+2) | `https://127.0.0.80:8006`               |
//! | lab HTTP (install script, channels)    | `http://127.0.0.80:8080`                |
//! | one sshd "VM" per K3s VM               | `127.0.1.11` ... `127.0.1.16`, port 2222 |
//! | gateway (nothing answers)              | `127.0.1.1`, network 127.0.0.0/16       |
//! | configure-ips range                    | `127.0.1.11` - `127.0.1.17`             |
//! | kube-vip VIP (API on :6443)            | `127.0.2.10`                            |
//! | MetalLB pool                           | `127.0.3.10-127.0.3.20`                 |
//! | k3sx.json, kubeconfig, CA, agent socket| `/tmp/k3sx-demo/`                       |
//!
//! Nothing is guessed: a port already taken, or an address another lab (a running
//! `cargo test`) holds, stops the demo before it starts anything, naming it.
//!
//! The VMs (sorted by node and vmid, the order `configure-ips` hands out addresses in) are
//! running clones of a cloud-init template with DHCP addresses and a guest agent; the template
//! (tagged too: templates are never nodes) and an untagged VM are there as well. The sshd host of
//! VM `i` in that order listens on `127.0.1.(11+i)` with the VM's name as hostname: `configure-ips`
//! must give each VM exactly its host's address, and `provision` then reaches the hosts through
//! the addresses it reads back from Proxmox. Between the two, the demo plays the guest: after the
//! reboot each VM's cloud-init drive must hold its host's address (checked, and said), and the VM's
//! guest agent then reports that address.
//!
//! Each step runs the real release binary (`target/release/k3sx`, next to this example) in
//! `/tmp/k3sx-demo` with the `PROXMOX_*` environment a user exports, output straight to the
//! terminal. `upgrade`, `remove-node` and `teardown` run only when this build has them
//! (`k3sx --help` lists the command and `k3sx scripts show NAME` finds its workflow), else they are
//! shown as "skipped: not in this build". The first failing step ends the run (exit 1).
//!
//! Cleanup: every lab process (fakepve, sshd hosts in their namespaces with everything started on
//! them, ssh-agent, the HTTP server) ends and the lab's directories and `/tmp/k3sx-demo` are removed
//! when the demo ends: normally, on a failure or panic (Drop), and on Ctrl-C, SIGTERM or SIGHUP
//! (the handler only sets a flag; every wait here polls it, so the same Drop path runs). The hosts'
//! mounts exist only inside their namespaces and end with them. Only SIGKILL leaves anything.

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::io::{BufRead, IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use lab::k3s_lab::{K3sLab, K3sOptions};
use lab::pve::{self, FakePve};
use lab::sshd::{self, AddressLock, USER_NOPASSWD};

const PVE_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 80);
const PVE_PORT: u16 = 8006;
const HTTP_PORT: u16 = 8080;
const SSH_PORT: u16 = 2222;
const GATEWAY: &str = "127.0.1.1";
const RANGE_START: &str = "127.0.1.11";
const RANGE_END: &str = "127.0.1.17";
const VIP: Ipv4Addr = Ipv4Addr::new(127, 0, 2, 10);
const METALLB_RANGE: &str = "127.0.3.10-127.0.3.20";
const WORK_DIR: &str = "/tmp/k3sx-demo";
/// The fake Proxmox's API token (`root@pam!k3sx`); a demo value, printed on purpose.
const TOKEN_ID: &str = "k3sx";
const TOKEN_SECRET: &str = "demo-5f0c-77a1-k3sx-lab";
/// K3s as provisioned, and the one minor up that `upgrade` goes to (both lab releases).
const K3S_VERSION: &str = "v1.32.8+k3s1";
const UPGRADE_TO: &str = "v1.33.4+k3s1";
/// The agent `remove-node` takes out.
const REMOVED_AGENT: &str = "k3s-agent-2";

/// A K3s VM of the demo: vmid, name, node, tags; in (node, vmid) order.
const VMS: [(u32, &str, &str, &str); 6] = [
    (101, "k3s-server-1", "pve1", "k3s-server"),
    (102, "k3s-server-2", "pve1", "k3s-server"),
    (103, "k3s-agent-1", "pve1", "k3s-agent"),
    (201, "k3s-server-3", "pve2", "k3s-server"),
    (202, "k3s-agent-2", "pve2", "k3s-agent"),
    (203, "k3s-agent-3", "pve2", "k3s-agent;k3s-storage"),
];

/// Set by Ctrl-C, SIGTERM, SIGHUP; every wait polls it.
static STOP: AtomicBool = AtomicBool::new(false);
/// Set by Enter under `--keep` and `--lab-only`: stop the lab, a normal end.
static ENTER: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The address of lab host `i` (VM `VMS[i]`).
fn host_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, 11 + i as u8)
}

struct Opts {
    keep: bool,
    lab_only: bool,
}

const USAGE: &str = "usage: demo_lab [--keep] [--lab-only]
  (no flag)   start the lab, run the whole day (discover ... teardown), stop the lab
  --keep      the same without teardown; the lab and the cluster stay up until Enter or Ctrl-C,
              with the environment to paste into another shell (k3sx repl, kubectl, ...)
  --lab-only  only start the lab (VMs fresh from the template) and keep it up until Enter/Ctrl-C";

fn main() -> ExitCode {
    let mut opts = Opts { keep: false, lab_only: false };
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--keep" => opts.keep = true,
            "--lab-only" => opts.lab_only = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("demo: unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    if let Err(e) = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst)) {
        eprintln!("demo: cannot install the Ctrl-C handler: {e}");
        return ExitCode::from(2);
    }
    for sig in [libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
    // A lab part that fails panics (the lab is test code); its Drop still ends everything.
    std::panic::set_hook(Box::new(|info| {
        if stopping() {
            eprintln!("\ndemo: interrupted");
        } else {
            eprintln!("\ndemo: the lab failed: {info}");
        }
    }));
    match std::panic::catch_unwind(|| demo_main(&opts)) {
        Ok(code) => code,
        Err(_) if stopping() => ExitCode::from(130),
        Err(_) => ExitCode::from(1),
    }
}

fn demo_main(opts: &Opts) -> ExitCode {
    let bin = match k3sx_binary() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = preflight() {
        eprintln!("demo: {e}");
        return ExitCode::from(2);
    }

    let t0 = Instant::now();
    let ui = Ui::new();
    ui.banner("k3sx demo: starting the lab (fake Proxmox + one sshd host per VM, all on loopback)");
    let demo = match Demo::start(bin) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::from(1);
        }
    };
    let lab_secs = t0.elapsed().as_secs_f64();
    demo.describe(&ui, lab_secs);
    if stopping() {
        return ExitCode::from(130);
    }
    let code = if opts.lab_only {
        demo.hold(&ui);
        0
    } else {
        let code = demo.day(&ui, opts);
        let total = t0.elapsed().as_secs_f64();
        let end = if stopping() {
            "demo interrupted"
        } else if code == 0 {
            "demo finished"
        } else {
            "demo failed"
        };
        println!("\n{} (lab start {lab_secs:.1} s, total {total:.1} s)", ui.bold(end));
        if opts.keep && code == 0 && !stopping() {
            demo.hold(&ui);
        }
        code
    };
    drop(demo);
    if stopping() {
        return ExitCode::from(130);
    }
    ExitCode::from(code)
}

/// `target/release/k3sx`, next to this example's directory (`target/release/examples/`), or
/// `$K3SX_DEMO_BIN`.
fn k3sx_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("K3SX_DEMO_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join("k3sx")).unwrap_or_default();
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "no k3sx binary at {}: build it first (`cargo build --release --bin k3sx --example demo_lab`; \
             tests/lab/demo does) or point K3SX_DEMO_BIN at one",
            bin.display()
        ))
    }
}

/// Everything the lab needs, and every fixed address and port free, before anything starts.
fn preflight() -> Result<(), String> {
    if let Some(why) = sshd::missing_prerequisite() {
        return Err(format!("the lab cannot run here: {why}; run as root after `bash tests/setup`"));
    }
    if pve::python().is_none() {
        return Err(format!(
            "no Python with fakepve at {}: `bash tests/setup` installs it",
            pve::python_path().display()
        ));
    }
    for tool in ["/usr/bin/python3", "/usr/bin/curl", "/usr/bin/nsenter"] {
        if !Path::new(tool).exists() {
            return Err(format!("{tool} is missing: `bash tests/setup` installs it"));
        }
    }
    let mut ports: Vec<(Ipv4Addr, u16, String)> = vec![
        (PVE_ADDR, PVE_PORT, "the fake Proxmox API".into()),
        (PVE_ADDR, HTTP_PORT, "the lab's HTTP server".into()),
        (VIP, 6443, "the kube-vip VIP's API port".into()),
    ];
    for (i, (_, name, _, _)) in VMS.iter().enumerate() {
        ports.push((host_addr(i), SSH_PORT, format!("{name}'s SSH port")));
        ports.push((host_addr(i), 6443, format!("{name}'s K3s API port")));
    }
    for (addr, port, what) in ports {
        if let Err(e) = TcpListener::bind((addr, port)) {
            return Err(format!("{addr}:{port} ({what}) is taken: {e}; stop what listens there (`ss -ltnp`)"));
        }
    }
    // The lab's addresses are claimed with lock files; a running `cargo test` may hold one.
    let names = (0..VMS.len()).map(|i| format!("host-{}", host_addr(i))).chain([format!("vip-{VIP}")]);
    for name in names {
        if sshd::lock_address(&name).is_none() {
            return Err(format!(
                "{} is in use by another k3sx lab (lock /tmp/k3sx-lab-locks/{name}): wait for the running \
                 `cargo test` or demo to end",
                name.split_once('-').map_or(name.as_str(), |(_, a)| a)
            ));
        }
    }
    Ok(())
}

/// Titles and emphasis; plain when stdout is not a terminal or NO_COLOR is set.
struct Ui {
    color: bool,
}

impl Ui {
    fn new() -> Ui {
        Ui { color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() }
    }

    fn bold(&self, s: &str) -> String {
        if self.color { format!("\x1b[1m{s}\x1b[0m") } else { s.to_string() }
    }

    fn dim(&self, s: &str) -> String {
        if self.color { format!("\x1b[2m{s}\x1b[0m") } else { s.to_string() }
    }

    fn banner(&self, title: &str) {
        let rule = "=".repeat(78);
        println!("{}", self.bold(&format!("{rule}\n{title}\n{rule}")));
    }

    fn title(&self, n: usize, total: usize, title: &str) {
        let head = format!("── {n}/{total} {title} ");
        let pad = 78usize.saturating_sub(head.chars().count());
        println!("\n{}", self.bold(&format!("{head}{}", "─".repeat(pad))));
    }

    /// A line of the demo's own (not k3sx's): what the lab did.
    fn note(&self, s: &str) {
        println!("{}", self.dim(&format!("[lab] {s}")));
    }
}

/// One step of the day: a command as the user types it.
struct Step {
    title: String,
    program: &'static str,
    args: Vec<&'static str>,
    /// The workflow this build must have (else the step is skipped).
    needs: Option<&'static str>,
    /// Afterwards the guests boot with their new cloud-init drives ([`Demo::guests_boot`]).
    then_boot: bool,
}

impl Step {
    fn k3sx(title: &str, args: &[&'static str]) -> Step {
        Step { title: title.to_string(), program: "k3sx", args: args.to_vec(), needs: None, then_boot: false }
    }
}

/// How one step ended.
enum Outcome {
    Passed(f64),
    Failed(String, f64),
    Skipped(String),
}

/// The running lab and the demo's directory.
struct Demo {
    pve: Option<FakePve>,
    lab: Option<K3sLab>,
    bin: PathBuf,
    work: PathBuf,
    _lock: AddressLock,
}

impl Demo {
    fn start(bin: PathBuf) -> Result<Demo, String> {
        let lock = sshd::lock_address("demo")
            .ok_or("another demo is running (lock /tmp/k3sx-lab-locks/demo): stop it first")?;
        let work = PathBuf::from(WORK_DIR);
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(|e| format!("cannot remove the old {WORK_DIR}: {e}"))?;
        }
        std::fs::create_dir_all(work.join("kube")).map_err(|e| format!("cannot create {WORK_DIR}: {e}"))?;
        let mut demo = Demo { pve: None, lab: None, bin, work, _lock: lock };

        let opts = K3sOptions {
            hostnames: VMS.iter().map(|v| v.1.to_string()).collect(),
            addresses: (0..VMS.len()).map(host_addr).collect(),
            ssh_port: Some(SSH_PORT),
            http_addr: Some(SocketAddrV4::new(PVE_ADDR, HTTP_PORT)),
            vip: Some(VIP),
            ..K3sOptions::default()
        };
        let lab = K3sLab::start(VMS.len(), opts)
            .ok_or("the K3s stand-in lab cannot run here (see above): run as root after `bash tests/setup`")?;
        assert_eq!(lab.vip(), VIP);
        demo.lab = Some(lab);
        if stopping() {
            return Ok(demo);
        }
        let pve = FakePve::start(scenario()).ok_or("fakepve cannot run here: `bash tests/setup` installs it")?;
        std::fs::copy(pve.ca_file(), demo.work.join("pve-root-ca.pem")).map_err(|e| format!("copy the CA: {e}"))?;
        demo.pve = Some(pve);
        std::os::unix::fs::symlink(demo.lab().ssh().agent_socket(), demo.work.join("agent.sock"))
            .map_err(|e| format!("link the agent socket: {e}"))?;
        demo.write_config()?;
        std::fs::write(demo.work.join("env"), demo.env_file()).map_err(|e| format!("write the env file: {e}"))?;
        Ok(demo)
    }

    fn lab(&self) -> &K3sLab {
        self.lab.as_ref().expect("the lab runs")
    }

    fn pve(&self) -> &FakePve {
        self.pve.as_ref().expect("fakepve runs")
    }

    fn write_config(&self) -> Result<(), String> {
        let lab = self.lab();
        let w = &self.work;
        let config = json!({
            "network": {"gateway": GATEWAY, "cidr": 16, "range_start": RANGE_START, "range_end": RANGE_END,
                        "dns_servers": [GATEWAY]},
            "k3s": {"version": K3S_VERSION, "token_file": w.join("k3s-token"), "channel_url": lab.channel_url(),
                    "install": {"url": lab.install_url(), "timeout_secs": 60}},
            "kube_vip": {"vip": VIP.to_string()},
            "metallb": {"range": METALLB_RANGE, "manifest": lab.metallb_manifest()},
            "ssh": {"user": USER_NOPASSWD, "port": SSH_PORT, "known_hosts": w.join("known_hosts"),
                    "host_key_policy": "accept-new"},
            "kubeconfig": {"path": w.join("kube/config")},
        });
        let text = serde_json::to_string_pretty(&config).unwrap() + "\n";
        std::fs::write(w.join("k3sx.json"), text).map_err(|e| format!("write k3sx.json: {e}"))
    }

    /// What a user exports: the Proxmox API, the SSH agent, the kubeconfig.
    fn env_vars(&self) -> Vec<(&'static str, String)> {
        let w = &self.work;
        vec![
            ("PROXMOX_HOST", PVE_ADDR.to_string()),
            ("PROXMOX_PORT", PVE_PORT.to_string()),
            ("PROXMOX_USER", pve::USER.to_string()),
            ("PROXMOX_API_TOKEN_ID", TOKEN_ID.to_string()),
            ("PROXMOX_API_TOKEN_SECRET", TOKEN_SECRET.to_string()),
            ("PROXMOX_CA_FILE", w.join("pve-root-ca.pem").display().to_string()),
            ("SSH_AUTH_SOCK", w.join("agent.sock").display().to_string()),
            ("KUBECONFIG", w.join("kube/config").display().to_string()),
        ]
    }

    fn env_file(&self) -> String {
        let mut text = String::from("# k3sx demo lab: . /tmp/k3sx-demo/env (while the demo runs)\n");
        for (k, v) in self.env_vars() {
            text += &format!("export {k}={v}\n");
        }
        if let Some(dir) = self.bin.parent() {
            text += &format!("export PATH={}:$PATH\n", dir.display());
        }
        text += &format!("cd {WORK_DIR}\n");
        text
    }

    fn describe(&self, ui: &Ui, secs: f64) {
        if self.pve.is_none() {
            return;
        }
        ui.note(&format!("fake Proxmox VE 9 API  https://{PVE_ADDR}:{PVE_PORT}  (nodes pve1, pve2)"));
        for (i, (vmid, name, node, tags)) in VMS.iter().enumerate() {
            ui.note(&format!("VM {vmid} {name:<13} on {node}  tags {tags:<21}  sshd host {}:{SSH_PORT}", host_addr(i)));
        }
        ui.note("VM 9000 debian-12-cloud on pve1 (template, tagged k3s-agent), VM 110 nextcloud on pve2 (untagged)");
        ui.note(&format!("VIP {VIP}, MetalLB {METALLB_RANGE}, addresses {RANGE_START}-{RANGE_END}, gateway {GATEWAY}"));
        ui.note(&format!("k3sx.json, kubeconfig, CA, agent socket in {WORK_DIR}  (lab up in {secs:.1} s)"));
        println!("\n{}", ui.dim(&format!("{WORK_DIR}/k3sx.json:")));
        print!("{}", std::fs::read_to_string(self.work.join("k3sx.json")).unwrap_or_default());
        println!("{}", ui.dim("and the environment a user exports:"));
        for (k, v) in self.env_vars() {
            println!("export {k}={v}");
        }
    }

    /// The whole day; the exit status (0, or 1 when a step failed).
    fn day(&self, ui: &Ui, opts: &Opts) -> u8 {
        let help = Command::new(&self.bin).arg("--help").output().map(|o| o.stdout).unwrap_or_default();
        let help = String::from_utf8_lossy(&help).into_owned();
        // A command line of `--help` ("  upgrade   Upgrade K3s ...") and its workflow in the build.
        let in_build = |name: &str| -> bool {
            let listed = help.lines().any(|l| {
                l.strip_prefix("  ").is_some_and(|r| !r.starts_with(' ') && r.split_whitespace().next() == Some(name))
            });
            listed
                && self
                    .k3sx(&["scripts", "show", name])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
        };
        let steps = [
            Step::k3sx("discover: the K3s VMs by tag, where they run, their addresses", &["discover"]),
            Step::k3sx("configure-ips --dry-run: the static IP plan, nothing changed", &["configure-ips", "--dry-run"]),
            Step {
                then_boot: true,
                ..Step::k3sx(
                    "configure-ips --restart: write cloud-init, reboot to apply",
                    &["configure-ips", "--restart"],
                )
            },
            Step::k3sx("provision: HA K3s (3 servers, kube-vip), agents, MetalLB, kubeconfig", &["provision"]),
            Step {
                program: "kubectl",
                ..Step::k3sx(
                    "kubectl reads the kubeconfig k3sx wrote (the real kubectl)",
                    &["--context", "k3sx", "config", "view", "--minify"],
                )
            },
            Step {
                needs: Some("upgrade"),
                ..Step::k3sx(
                    &format!("upgrade one minor: {K3S_VERSION} -> {UPGRADE_TO}"),
                    &["upgrade", "--to", UPGRADE_TO],
                )
            },
            Step {
                needs: Some("remove-node"),
                ..Step::k3sx(
                    &format!("remove-node {REMOVED_AGENT}: drain, delete its Node, uninstall K3s"),
                    &["remove-node", REMOVED_AGENT, "--yes"],
                )
            },
            Step {
                needs: Some("teardown"),
                ..Step::k3sx("teardown: K3s uninstalled everywhere, VIP and context removed", &["teardown", "--yes"])
            },
        ];
        let total = steps.len();
        let mut results: Vec<(String, Outcome)> = Vec::new();
        let mut failed = false;
        for (i, step) in steps.iter().enumerate() {
            let shown = format!("{} {}", step.program, step.args.join(" "));
            if failed || stopping() {
                results.push((shown, Outcome::Skipped("not run".into())));
                continue;
            }
            ui.title(i + 1, total, &step.title);
            if let Some(name) = step.needs
                && !in_build(name)
            {
                println!(
                    "skipped: not in this build (`k3sx --help` does not list `{name}`, or its workflow is missing)"
                );
                results.push((shown, Outcome::Skipped("not in this build".into())));
                continue;
            }
            if step.needs == Some("teardown") && opts.keep {
                println!(
                    "skipped under --keep: the cluster stays up for you to explore (`k3sx teardown --yes` removes it)"
                );
                results.push((shown, Outcome::Skipped("--keep".into())));
                continue;
            }
            println!("{}", ui.bold(&format!("$ {shown}")));
            let _ = std::io::stdout().flush();
            let cmd = if step.program == "kubectl" { self.kubectl(&step.args) } else { self.k3sx(&step.args) };
            let started = Instant::now();
            let mut outcome = match run(cmd) {
                Ok(0) => Outcome::Passed(started.elapsed().as_secs_f64()),
                Ok(code) if stopping() => {
                    Outcome::Failed(format!("interrupted (exit {code})"), started.elapsed().as_secs_f64())
                }
                Ok(code) => Outcome::Failed(format!("exit {code}"), started.elapsed().as_secs_f64()),
                Err(e) => Outcome::Failed(e, started.elapsed().as_secs_f64()),
            };
            if let (true, Outcome::Passed(secs)) = (step.then_boot && !stopping(), &outcome)
                && let Err(e) = self.guests_boot(ui)
            {
                println!("error: {e}");
                outcome = Outcome::Failed(e, *secs);
            }
            failed = matches!(outcome, Outcome::Failed(..));
            results.push((shown, outcome));
        }
        println!("\n{}", ui.bold("summary"));
        for (shown, outcome) in &results {
            let (mark, what) = match outcome {
                Outcome::Passed(s) => ("ok     ", format!("{s:5.1} s")),
                Outcome::Failed(why, s) => ("FAILED ", format!("{s:5.1} s  {why}")),
                Outcome::Skipped(why) => ("skipped", format!("         {why}")),
            };
            println!("  {mark}  {shown:<48} {what}");
        }
        u8::from(failed)
    }

    /// The guests boot with their new cloud-init drives: each drive must hold the VM's host
    /// address; the guest agents then report it.
    fn guests_boot(&self, ui: &Ui) -> Result<(), String> {
        let mut shown = Vec::new();
        for (i, (vmid, name, _, _)) in VMS.iter().enumerate() {
            let state = self.pve().vm(*vmid);
            let ipconfig = state["cloudinit"]["ipconfig0"].as_str().unwrap_or("(none)").to_string();
            let ip = ipconfig.split(',').find_map(|kv| kv.strip_prefix("ip=")).unwrap_or("");
            let (addr, prefix) = ip.split_once('/').unwrap_or((ip, "16"));
            if addr != host_addr(i).to_string() || state["status"] != "running" {
                return Err(format!(
                    "VM {vmid} {name} is {} with ipconfig0 {ipconfig:?} on its cloud-init drive, but its lab host \
                     is {}: provision would not reach it",
                    state["status"].as_str().unwrap_or("?"),
                    host_addr(i)
                ));
            }
            let prefix: u32 = prefix.parse().unwrap_or(16);
            self.pve().set_vm(*vmid, json!({"agent": {"interfaces": interfaces(*vmid, addr, prefix)}}));
            shown.push(format!("{name} {addr}"));
        }
        ui.note(&format!(
            "the VMs booted with their new cloud-init drives, each at its sshd host's address: {}",
            shown.join(", ")
        ));
        Ok(())
    }

    fn k3sx(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        self.user_env(&mut cmd);
        cmd
    }

    fn kubectl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.args(args);
        self.user_env(&mut cmd);
        cmd
    }

    /// In the demo directory, with the user's exports and none of the caller's PROXMOX_*/K3SX_*.
    fn user_env(&self, cmd: &mut Command) {
        cmd.current_dir(&self.work).stdin(Stdio::null());
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("PROXMOX_") || k.starts_with("K3SX_") || k == "KUBECONFIG" {
                cmd.env_remove(k.as_ref());
            }
        }
        for (k, v) in self.env_vars() {
            cmd.env(k, v);
        }
    }

    /// Under `--keep`/`--lab-only`: what to paste, then wait for Enter or Ctrl-C.
    fn hold(&self, ui: &Ui) {
        println!("\n{}", ui.bold("the lab stays up: in another shell, as root"));
        println!("  . {WORK_DIR}/env     # or paste:");
        for line in self.env_file().lines().skip(1) {
            println!("  {line}");
        }
        println!("  k3sx discover; k3sx repl; kubectl config get-contexts; ...");
        println!("config: {WORK_DIR}/k3sx.json");
        println!("{}", ui.bold("press Enter or Ctrl-C here to stop the lab"));
        std::thread::spawn(|| {
            let mut line = String::new();
            // Ctrl-D on a terminal counts as Enter; stdin at EOF from the start (/dev/null, a closed
            // pipe: run in the background) does not: then only a line or a signal stops the lab.
            let interactive = std::io::stdin().is_terminal();
            let read = std::io::stdin().lock().read_line(&mut line);
            if interactive || read.is_ok_and(|n| n > 0) {
                ENTER.store(true, Ordering::SeqCst);
            }
        });
        while !stopping() && !ENTER.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        println!("\nstopping the lab ...");
        let t = Instant::now();
        drop(self.pve.take());
        drop(self.lab.take());
        let _ = std::fs::remove_dir_all(&self.work);
        println!(
            "lab stopped in {:.1} s: fakepve, every sshd host (with all it ran), ssh-agent and the HTTP server ended; \
             {WORK_DIR} removed",
            t.elapsed().as_secs_f64()
        );
    }
}

/// Runs `cmd` with the terminal for its output; its exit status. Polls [`STOP`]: on a signal the
/// child (which got Ctrl-C itself from the terminal) has 10 s to end, then it is killed.
fn run(mut cmd: Command) -> Result<i32, String> {
    let mut child: Child = cmd.spawn().map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    let mut stop_seen: Option<Instant> = None;
    let mut interrupted = false;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status.code().unwrap_or(128)),
            Ok(None) => {}
            Err(e) => return Err(format!("wait: {e}")),
        }
        if stopping() {
            let since = *stop_seen.get_or_insert_with(Instant::now);
            // A SIGTERM/SIGHUP reached only the demo: pass it on as the Ctrl-C k3sx handles.
            if !interrupted && since.elapsed() > Duration::from_secs(2) {
                interrupted = true;
                // SAFETY: signalling our own child by its pid.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGINT);
                }
            }
            if since.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a VM's guest agent reports: `lo` and `ens18` with `addr`.
fn interfaces(vmid: u32, addr: &str, prefix: u32) -> Value {
    json!([
        {"name": "lo", "hardware-address": "00:00:00:00:00:00",
         "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
        {"name": "ens18", "hardware-address": format!("bc:24:11:00:{:02x}:{:02x}", vmid / 100, vmid % 100),
         "ip-addresses": [{"ip-address": addr, "ip-address-type": "ipv4", "prefix": prefix}]},
    ])
}

/// The fake Proxmox: two nodes, the six K3s VMs running with DHCP addresses and a guest agent,
/// a tagged template, an untagged VM.
fn scenario() -> Value {
    let mut vms: Vec<Value> = VMS
        .iter()
        .enumerate()
        .map(|(i, (vmid, name, node, tags))| {
            let dhcp = format!("192.168.100.{}", 150 + i);
            json!({"vmid": vmid, "name": name, "node": node, "status": "running", "tags": tags,
                   "config": {"agent": "1", "ipconfig0": "ip=dhcp", "ciuser": "debian", "cores": 2, "memory": 4096},
                   "agent": {"interfaces": interfaces(*vmid, &dhcp, 24)}})
        })
        .collect();
    vms.push(json!({"vmid": 9000, "name": "debian-12-cloud", "node": "pve1", "status": "stopped",
                    "tags": "k3s-agent", "template": true, "config": {"agent": "1", "ipconfig0": "ip=dhcp"}}));
    vms.push(json!({"vmid": 110, "name": "nextcloud", "node": "pve2", "status": "running",
                    "config": {"ipconfig0": "ip=192.168.100.20/24,gw=192.168.100.1"}}));
    json!({
        "host": PVE_ADDR.to_string(), "port": PVE_PORT,
        "tokens": {format!("{}!{TOKEN_ID}", pve::USER): TOKEN_SECRET},
        "nodes": ["pve1", "pve2"],
        "vms": vms,
    })
}
