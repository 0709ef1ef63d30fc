//! A lab of real OpenSSH servers standing in for the cluster's VMs.
//!
//! Each host is one `/usr/sbin/sshd -D` on its own 127.0.1.x address and a
//! free port, started as PID 1 of its own mount, UTS and PID namespaces
//! (`unshare --mount --uts --pid --fork --mount-proc --propagation private`):
//! - its own hostname (`k3sx-lab-N`), `/etc/hosts` and `/etc/hostname`;
//! - private, writable `/etc/rancher`, `/var/lib/rancher`, `/usr/local/bin`,
//!   `/etc/systemd/system`, `/var/lib/kubelet`, bind-mounted from a per-host
//!   directory ([`LabHost::root`]), and a private tmpfs `/run` (sshd's `/run/sshd`);
//! - everything started inside (sessions, background daemons) dies with sshd,
//!   because sshd is the namespace's init; the mounts die with the namespace and,
//!   being private, are never seen by the machine.
//!
//! The lab also generates host keys per host, a client key loaded into its own
//! `ssh-agent` (socket from [`SshLab::agent_socket`], the test process's
//! environment is not touched), and makes sure two users exist: [`USER_NOPASSWD`]
//! (sudo without password) and [`USER_SUDO_PASSWORD`] (sudo wants a password).
//!
//! Each host also has its own `/etc/machine-id` and its own copy of the lab's sudoers
//! rules (bind-mounted over `/etc/sudoers.d/k3sx-lab`, see [`SshLab::set_sudo_password`]).
//! [`SshLab::start_with`] takes [`LabOptions`]: all hosts on one port (as VMs all
//! listen on 22), chosen hostnames (duplicates allowed), chosen machine-ids, and a
//! shell snippet per host run inside its namespaces before sshd starts (how the
//! K3s stand-in lab, `k3s_lab.rs`, mounts its files into each host), and, for a lab
//! at documented addresses (`examples/demo_lab.rs`), fixed addresses and one fixed port.
//!
//! Addresses are claimed across processes (a lock file per address under
//! `/tmp/k3sx-lab-locks`), so labs of concurrent test processes never share one.
//!
//! Needs root, `sshd`, `unshare`, `ssh-keygen`, `ssh-agent`, `sudo` (CI installs
//! `sudo openssh-server openssh-client`). When they are missing [`SshLab::start`]
//! fails the test naming `bash tests/setup`; under `K3SX_SKIP_LAB=1` it returns `None`
//! and the skip is counted (see `pve::skip`).
//! Side effects kept on the machine: the two users, `/etc/sudoers.d/k3sx-lab`,
//! empty mount-point directories for the private paths that did not exist, and
//! the (empty) lock files in `/tmp/k3sx-lab-locks`.

#![allow(dead_code)] // each test uses a different part of the lab

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use k3sx::ssh::{HostKeyPolicy, SshSettings};

/// A user whose sudo needs no password.
pub const USER_NOPASSWD: &str = "k3sx-lab";
/// A user whose sudo asks for a password.
pub const USER_SUDO_PASSWORD: &str = "k3sx-lab-pw";

/// The paths each host has to itself.
pub const PRIVATE_DIRS: [&str; 5] =
    ["/etc/rancher", "/var/lib/rancher", "/usr/local/bin", "/etc/systemd/system", "/var/lib/kubelet"];

/// The host key types every host has, in sshd's order.
const HOST_KEY_KINDS: [&str; 2] = ["ed25519", "ecdsa"];

/// Which entries a known_hosts file made by [`SshLab::known_hosts`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownHosts {
    Empty,
    /// `[addr]:port ssh-ed25519 ...` for every host.
    Plain,
    /// The same, hashed as `ssh-keygen -H` does (`|1|salt|hash ...`).
    Hashed,
}

/// A shell snippet for one host, run as root inside its namespaces before sshd starts.
pub type HostSetup = Arc<dyn Fn(&LabHost) -> String + Send + Sync>;

/// How [`SshLab::start_with`] builds its hosts; the default is what [`SshLab::start`] does.
#[derive(Default, Clone)]
pub struct LabOptions {
    /// Every host listens on the same port, each on its own address (k3sx has one `ssh.port`).
    pub same_port: bool,
    /// The hostname of host `i` (counting from 0); `k3sx-lab-{i+1}` when missing or empty.
    /// Duplicates are allowed (a rebuilt VM, a cloned template).
    pub hostnames: Vec<String>,
    /// The `/etc/machine-id` of host `i`; a random one when missing or empty.
    pub machine_ids: Vec<String>,
    /// Run inside each host's namespaces (after its private mounts and `/run`), before sshd.
    pub setup: Option<HostSetup>,
    /// The address of host `i` (claimed like the others; the start fails naming it when another
    /// lab holds it); a free 127.0.1.x when missing. For a lab at documented addresses (the demo).
    pub addresses: Vec<Ipv4Addr>,
    /// Every host listens on this port (the start fails naming it when it is taken on one of the
    /// addresses); `None`: a free port, shared when [`LabOptions::same_port`].
    pub port: Option<u16>,
}

/// An address (or other name) this process holds for the lab's lifetime: an exclusive
/// `flock` on `/tmp/k3sx-lab-locks/<name>`, released when dropped (or the process dies).
pub struct AddressLock {
    _file: File,
}

/// Claims `name` against other processes; `None` when another one holds it.
pub fn lock_address(name: &str) -> Option<AddressLock> {
    let dir = Path::new("/tmp/k3sx-lab-locks");
    std::fs::create_dir_all(dir).ok()?;
    let file = File::create(dir.join(name)).ok()?;
    // SAFETY: flock on a file descriptor this function owns.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    locked.then_some(AddressLock { _file: file })
}

/// One sshd in its namespaces.
pub struct LabHost {
    pub index: usize,
    pub name: String,
    pub addr: Ipv4Addr,
    pub port: u16,
    dir: PathBuf,
    config: PathBuf,
    unshare: Option<Child>,
    setup: Option<HostSetup>,
    _lock: AddressLock,
}

impl LabHost {
    /// `addr:port`, as k3sx takes hosts.
    pub fn target(&self) -> String {
        format!("{}:{}", self.addr, self.port)
    }

    /// The directory whose subdirectories are the host's private paths:
    /// the host's `/usr/local/bin` is `root().join("usr/local/bin")`.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The host's directory on the machine (keys, logs, [`LabHost::root`]); harnesses
    /// built on the lab keep per-host files of their own here.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The host's current Ed25519 public key, an OpenSSH line (`ssh-ed25519 AAAA... comment`).
    pub fn public_key(&self) -> String {
        std::fs::read_to_string(self.dir.join("ssh_host_ed25519_key.pub")).expect("host key exists").trim().to_string()
    }

    /// The sshd log (sshd `-e` output, plus the namespace setup's errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    pub fn is_running(&self) -> bool {
        self.unshare.is_some()
    }

    /// The PID (as the machine sees it) of the host's sshd, its namespaces' init.
    pub fn init_pid(&self) -> Option<u32> {
        namespace_init(self.unshare.as_ref()?)
    }

    /// The host's current key of another type: `"ecdsa"` (every host has an
    /// Ed25519 and an ECDSA P-256 key, like a stock Debian VM).
    pub fn public_key_of(&self, kind: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("ssh_host_{kind}_key.pub")))
            .expect("host key exists")
            .trim()
            .to_string()
    }

    fn generate_host_key(&self) {
        for kind in HOST_KEY_KINDS {
            let key = self.dir.join(format!("ssh_host_{kind}_key"));
            let _ = std::fs::remove_file(&key);
            let _ = std::fs::remove_file(key.with_extension("pub"));
            run_ok(Command::new("ssh-keygen").args(["-q", "-t", kind, "-N", "", "-C", &self.name, "-f"]).arg(&key));
        }
    }

    fn spawn(&mut self) {
        let root = self.root();
        let mut script = format!("set -e\nhostname {}\n", self.name);
        for d in PRIVATE_DIRS {
            script += &format!("mkdir -p {d}\nmount --bind {}{d} {d}\n", root.display());
        }
        script += &format!(
            "mount --bind {dir}/hosts /etc/hosts\n\
             if [ -e /etc/hostname ]; then mount --bind {dir}/hostname /etc/hostname; fi\n\
             if [ -e /etc/machine-id ]; then mount --bind {dir}/machine-id /etc/machine-id; fi\n\
             mount --bind {dir}/sudoers {SUDOERS}\n\
             mount -t tmpfs -o mode=755 k3sx-lab-run /run\n\
             mkdir -p /run/sshd\n",
            dir = self.dir.display(),
        );
        if let Some(setup) = &self.setup {
            script += &setup(self);
            script += "\n";
        }
        script += &format!("exec /usr/sbin/sshd -D -e -f {}\n", self.config.display());
        let log = std::fs::File::create(self.dir.join("sshd.log")).expect("create sshd log");
        let child = Command::new("unshare")
            .args(["--mount", "--uts", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private"])
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn unshare");
        self.unshare = Some(child);
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = (self.addr, self.port).into();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let exited = self.unshare.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                panic!("lab host {} ({}) did not start:\n{}", self.name, self.target(), self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ends sshd and with it every process and mount of the host.
    fn stop(&mut self) {
        let Some(mut child) = self.unshare.take() else {
            return;
        };
        // Killing the namespace's init makes the kernel kill everything else in
        // it; unshare, waiting for its child, returns once they are all gone.
        match namespace_init(&child) {
            Some(init) => unsafe {
                libc::kill(init as i32, libc::SIGKILL);
            },
            None => {
                let _ = child.kill();
            }
        }
        let _ = child.wait();
    }
}

/// The process `unshare --fork` started: PID 1 of the host's namespaces.
fn namespace_init(unshare: &Child) -> Option<u32> {
    let pid = unshare.id();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// A set of lab hosts and the client side (agent, keys) to reach them.
pub struct SshLab {
    hosts: Vec<LabHost>,
    agent: Child,
    agent_socket: PathBuf,
    client_key: PathBuf,
    known_hosts_files: AtomicU32,
    dir: tempfile::TempDir,
}

static NEXT_ADDRESS: AtomicU32 = AtomicU32::new(0);
static MACHINE_SETUP: OnceLock<Result<(), String>> = OnceLock::new();

/// The machine's sudoers file for the lab users; each host sees its own copy there.
const SUDOERS: &str = "/etc/sudoers.d/k3sx-lab";

fn sudoers_rules(nopasswd_needs_password: bool) -> String {
    let tag = if nopasswd_needs_password { "" } else { "NOPASSWD: " };
    format!("{USER_NOPASSWD} ALL=(ALL) {tag}ALL\n{USER_SUDO_PASSWORD} ALL=(ALL) ALL\n")
}

/// A free 127.0.1.x address, claimed against the other labs of this and other processes.
fn claim_host_address() -> (Ipv4Addr, AddressLock) {
    for _ in 0..250 {
        let n = NEXT_ADDRESS.fetch_add(1, Ordering::Relaxed);
        let addr = Ipv4Addr::new(127, 0, 1, 2 + (n % 250) as u8);
        if let Some(lock) = lock_address(&format!("host-{addr}")) {
            return (addr, lock);
        }
    }
    panic!("no free 127.0.1.x address for a lab host (250 in use?)");
}

/// `addr`, claimed against the other labs; panics naming it when another one holds it.
fn claim_fixed_address(addr: Ipv4Addr) -> (Ipv4Addr, AddressLock) {
    match lock_address(&format!("host-{addr}")) {
        Some(lock) => (addr, lock),
        None => panic!(
            "the lab host address {addr} is held by another k3sx lab (a running `cargo test` or demo; \
             lock /tmp/k3sx-lab-locks/host-{addr})"
        ),
    }
}

/// Panics naming the first of `addrs` where `port` cannot be bound.
fn check_port_free(addrs: &[Ipv4Addr], port: u16) {
    for a in addrs {
        if let Err(e) = TcpListener::bind((*a, port)) {
            panic!("the lab's SSH port {a}:{port} cannot be used: {e} (something else listens there)");
        }
    }
}

/// A port free on every one of `addrs`.
fn common_free_port(addrs: &[Ipv4Addr]) -> u16 {
    for _ in 0..100 {
        let port = TcpListener::bind((addrs[0], 0)).and_then(|l| l.local_addr()).expect("free port").port();
        if addrs[1..].iter().all(|a| TcpListener::bind((*a, port)).is_ok()) {
            return port;
        }
    }
    panic!("no port free on all of {addrs:?}");
}

impl SshLab {
    /// Starts `n` hosts (`k3sx-lab-1` ... `k3sx-lab-n`). When the machine cannot run the
    /// lab the test fails, or, under `K3SX_SKIP_LAB=1`, this is `None` (a counted skip).
    pub fn start(n: usize) -> Option<SshLab> {
        SshLab::start_with(n, LabOptions::default())
    }

    /// [`SshLab::start`] with options (one port for all, hostnames, machine-ids, a setup snippet).
    pub fn start_with(n: usize, opts: LabOptions) -> Option<SshLab> {
        if let Some(why) = missing_prerequisite() {
            let fix = format!("run the tests as root; `{}` installs the packages", super::pve::skip::INSTALL);
            super::pve::skip::unavailable("sshd lab", &why, &fix);
            return None;
        }
        if let Err(why) = MACHINE_SETUP.get_or_init(setup_machine) {
            panic!("the sshd lab could not set up the machine: {why}");
        }

        let dir = tempfile::Builder::new().prefix("k3sx-sshlab-").tempdir().expect("create lab dir");
        chmod(dir.path(), 0o755); // sshd reads authorized_keys as the lab users

        let client_key = dir.path().join("client_ed25519");
        run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "k3sx-lab-client", "-f"])
                .arg(&client_key),
        );
        let client_pub = std::fs::read_to_string(client_key.with_extension("pub")).expect("client public key");
        let authorized = dir.path().join("authorized_keys");
        std::fs::write(&authorized, &client_pub).expect("write authorized_keys");
        chmod(&authorized, 0o644);

        let agent_socket = dir.path().join("agent.sock");
        let agent = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&agent_socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ssh-agent");
        // From here on, a panic drops the lab, which ends what it started.
        let mut lab =
            SshLab { hosts: Vec::new(), agent, agent_socket, client_key, known_hosts_files: AtomicU32::new(0), dir };
        let deadline = Instant::now() + Duration::from_secs(5);
        // The socket file appears before the agent listens on it: wait for a connection.
        while std::os::unix::net::UnixStream::connect(&lab.agent_socket).is_err() {
            assert!(Instant::now() < deadline, "ssh-agent did not start listening on its socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        run_ok(Command::new("ssh-add").arg("-q").arg(&lab.client_key).env("SSH_AUTH_SOCK", &lab.agent_socket));

        let claimed: Vec<(Ipv4Addr, AddressLock)> = (0..n)
            .map(|i| match opts.addresses.get(i) {
                Some(addr) => claim_fixed_address(*addr),
                None => claim_host_address(),
            })
            .collect();
        let addrs: Vec<Ipv4Addr> = claimed.iter().map(|(a, _)| *a).collect();
        let shared_port = match opts.port {
            Some(port) => {
                check_port_free(&addrs, port);
                Some(port)
            }
            None => (opts.same_port && n > 0).then(|| common_free_port(&addrs)),
        };
        for (i, (addr, lock)) in claimed.into_iter().enumerate() {
            let port = shared_port.unwrap_or_else(|| {
                TcpListener::bind((addr, 0)).and_then(|l| l.local_addr()).expect("free port").port()
            });
            let name = opts.hostnames.get(i).filter(|s| !s.is_empty()).cloned();
            let name = name.unwrap_or_else(|| format!("k3sx-lab-{}", i + 1));
            let machine_id = opts.machine_ids.get(i).filter(|s| !s.is_empty()).cloned();
            let machine_id = machine_id.unwrap_or_else(random_machine_id);
            let host = lab.new_host(HostSpec { index: i + 1, addr, port, name, machine_id, lock }, &authorized);
            lab.hosts.push(LabHost { setup: opts.setup.clone(), ..host });
        }
        for host in &mut lab.hosts {
            host.spawn();
        }
        for host in &mut lab.hosts {
            host.wait_listening();
        }
        Some(lab)
    }

    fn new_host(&self, spec: HostSpec, authorized: &Path) -> LabHost {
        let HostSpec { index, addr, port, name, machine_id, lock } = spec;
        // The directory is named by index: hostnames may repeat.
        let dir = self.dir.path().join(format!("host-{index}"));
        for d in PRIVATE_DIRS {
            std::fs::create_dir_all(dir.join("root").join(d.trim_start_matches('/'))).expect("create host dirs");
        }
        write_names(&dir, addr, &name);
        std::fs::write(dir.join("machine-id"), format!("{machine_id}\n")).unwrap();
        std::fs::write(dir.join("sudoers"), sudoers_rules(false)).unwrap();
        chmod(&dir.join("sudoers"), 0o440);
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {addr}:{port}\n\
                 HostKey {key}\n\
                 HostKey {ecdsa_key}\n\
                 PidFile none\n\
                 AuthorizedKeysFile {authorized}\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 UseDNS no\n\
                 MaxStartups 100:30:200\n\
                 MaxSessions 100\n\
                 LogLevel VERBOSE\n\
                 Subsystem sftp internal-sftp\n",
                key = dir.join("ssh_host_ed25519_key").display(),
                ecdsa_key = dir.join("ssh_host_ecdsa_key").display(),
                authorized = authorized.display(),
            ),
        )
        .unwrap();
        let host = LabHost { index, name, addr, port, dir, config, unshare: None, setup: None, _lock: lock };
        host.generate_host_key();
        host
    }

    pub fn hosts(&self) -> &[LabHost] {
        &self.hosts
    }

    /// Host `i`, counting from 0.
    pub fn host(&self, i: usize) -> &LabHost {
        &self.hosts[i]
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The lab's ssh-agent (holds [`SshLab::client_key`]); pass it as `agent_socket`.
    pub fn agent_socket(&self) -> &Path {
        &self.agent_socket
    }

    /// The client's private key file, accepted by every host for every user.
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// Writes a new known_hosts file with the current keys of all hosts.
    pub fn known_hosts(&self, kind: KnownHosts) -> PathBuf {
        let n = self.known_hosts_files.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("known_hosts.{n}"));
        let mut text = String::new();
        if kind != KnownHosts::Empty {
            for h in &self.hosts {
                text += &format!("[{}]:{} {}\n", h.addr, h.port, h.public_key());
            }
        }
        std::fs::write(&path, text).expect("write known_hosts");
        if kind == KnownHosts::Hashed {
            run_ok(Command::new("ssh-keygen").arg("-q").arg("-H").arg("-f").arg(&path));
            let _ = std::fs::remove_file(path.with_extension(format!("{n}.old")));
        }
        path
    }

    /// Settings that reach the lab as `user` through the lab's agent, strict
    /// host key checking against `known_hosts`, short timeouts.
    pub fn settings(&self, user: &str, known_hosts: &Path) -> SshSettings {
        SshSettings {
            user: user.to_string(),
            port: 22,
            identity_files: Vec::new(),
            passphrase: None,
            agent_socket: Some(self.agent_socket.clone()),
            known_hosts: known_hosts.to_path_buf(),
            policy: HostKeyPolicy::Strict,
            sudo: true,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(20),
        }
    }

    /// Stops host `i` (its address then refuses connections).
    pub fn stop_host(&mut self, i: usize) {
        self.hosts[i].stop();
    }

    /// Starts host `i` again, same address, port, key and files.
    pub fn start_host(&mut self, i: usize) {
        let host = &mut self.hosts[i];
        if !host.is_running() {
            host.spawn();
            host.wait_listening();
        }
    }

    /// Gives host `i` a new host key and restarts it (a re-created VM on a reused address).
    pub fn regenerate_host_key(&mut self, i: usize) {
        self.stop_host(i);
        self.hosts[i].generate_host_key();
        self.start_host(i);
    }

    /// Gives host `i` another hostname; takes effect at its next start.
    pub fn set_hostname(&mut self, i: usize, name: &str) {
        let host = &mut self.hosts[i];
        host.name = name.to_string();
        write_names(&host.dir, host.addr, name);
    }

    /// Makes sudo ask `USER_NOPASSWD` for a password on host `i` (`true`), or not (`false`).
    /// Takes effect at once: the host's sudoers copy is rewritten in place.
    pub fn set_sudo_password(&self, i: usize, required: bool) {
        // In place (same inode): the host's bind mount keeps showing this file.
        std::fs::write(self.hosts[i].dir.join("sudoers"), sudoers_rules(required)).expect("write host sudoers");
    }
}

struct HostSpec {
    index: usize,
    addr: Ipv4Addr,
    port: u16,
    name: String,
    machine_id: String,
    lock: AddressLock,
}

fn write_names(dir: &Path, addr: Ipv4Addr, name: &str) {
    std::fs::write(dir.join("hosts"), format!("127.0.0.1 localhost\n{addr} {name}\n::1 localhost\n")).unwrap();
    std::fs::write(dir.join("hostname"), format!("{name}\n")).unwrap();
}

/// 32 hex digits, as systemd writes `/etc/machine-id`.
fn random_machine_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("random bytes");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Drop for SshLab {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            host.stop();
        }
        let _ = self.agent.kill();
        let _ = self.agent.wait();
    }
}

/// Why the lab cannot run here, if it cannot.
pub fn missing_prerequisite() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref() != Some("0") {
        return Some("it must run as root (mount namespaces, test users)".into());
    }
    for tool in ["/usr/sbin/sshd", "unshare", "ssh-keygen", "ssh-agent", "ssh-add", "useradd"] {
        let found = if tool.starts_with('/') { Path::new(tool).exists() } else { which(tool) };
        if !found {
            return Some(format!("`{tool}` is missing (packages `openssh-server openssh-client util-linux`)"));
        }
    }
    // Can this machine make namespaces at all (containers may forbid it)?
    let probe = Command::new("unshare").args(["--mount", "--uts", "--pid", "--fork", "true"]).status();
    if !probe.map(|s| s.success()).unwrap_or(false) {
        return Some("`unshare --mount --uts --pid` is not permitted here".into());
    }
    None
}

/// Users and sudo rules the lab needs; installs sudo when it is missing.
fn setup_machine() -> Result<(), String> {
    if !which("sudo") {
        let ok = Command::new("apt-get")
            .args(["install", "-y", "-q", "sudo"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Err("`sudo` is missing and `apt-get install sudo` failed".into());
        }
    }
    for user in [USER_NOPASSWD, USER_SUDO_PASSWORD] {
        let exists = Command::new("id").arg("-u").arg(user).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !exists.map(|s| s.success()).unwrap_or(false) {
            let status = Command::new("useradd").args(["-m", "-s", "/bin/sh", user]).status();
            if !status.map(|s| s.success()).unwrap_or(false) {
                return Err(format!("useradd {user} failed"));
            }
        }
        // `*`: no password login, and (unlike `!`) not "locked" for sshd's key login.
        let status = Command::new("usermod").args(["-p", "*", user]).status();
        if !status.map(|s| s.success()).unwrap_or(false) {
            return Err(format!("usermod {user} failed"));
        }
    }
    let path = Path::new(SUDOERS);
    std::fs::write(path, sudoers_rules(false)).map_err(|e| format!("write {}: {e}", path.display()))?;
    chmod(path, 0o440);
    Ok(())
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file())).unwrap_or(false)
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}
