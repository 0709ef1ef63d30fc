//! The session pool: connect, check the host key, log in, run commands.

use std::collections::HashMap;
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ssh2::{ErrorCode, MethodType, Session};

use super::known_hosts::{self, PublicKey};
use super::{Output, SshError, SshSettings, Target, mask, shell_quote};

/// libssh2's code for "timed out" (`LIBSSH2_ERROR_TIMEOUT`).
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;

/// Host key algorithms in the order OpenSSH prefers them; the types known_hosts
/// holds for a host go first (see `known_hosts::known_key_types`).
const HOST_KEY_PREFS: &str =
    "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256,ssh-rsa";

/// How many stderr lines an error shows.
const STDERR_TAIL_LINES: usize = 10;

/// Put before every command line: the remote shell reports its PID first, on stdout, so a
/// command that times out or is cancelled can be ended. sshd (OpenSSH) starts that shell with
/// `setsid()`, so the PID is also the process group of everything the command starts that
/// does not leave it on purpose (a daemon). The line is taken off stdout before anyone sees it.
/// A `;` rather than a newline keeps the shell's line numbers in error messages as they were.
const PGID_MARK: &str = "k3sx-pgid:";
const PGID_PREFIX: &str = "echo k3sx-pgid:$$; ";

/// How long an ended command has between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

type Slot = Arc<Mutex<Option<Session>>>;

/// Authenticated SSH sessions, one per host, opened on first use and reused for
/// the whole run. `Send + Sync`: threads may use it at once; calls for the same
/// host are serialized, calls for different hosts run in parallel.
pub struct SshPool {
    settings: SshSettings,
    slots: Mutex<HashMap<String, Slot>>,
    pinned: Mutex<HashMap<String, PublicKey>>,
    secrets: Mutex<Vec<String>>,
    /// Set by Ctrl-C: running commands and waits stop (see [`SshPool::with_cancel`]).
    cancel: Option<Arc<AtomicBool>>,
}

/// A command's output as bytes.
pub(crate) struct RawOutput {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl RawOutput {
    fn into_output(self) -> Output {
        Output {
            code: self.code,
            stdout: String::from_utf8_lossy(&self.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&self.stderr).into_owned(),
        }
    }
}

/// How to run one command, for [`SshPool::run_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CommandOptions<'a> {
    /// Through `sudo -n` (when the user is not root and sudo is enabled in the settings).
    pub sudo: bool,
    /// Sent to the command's stdin (then end of input).
    pub input: Option<&'a [u8]>,
    /// A non-zero exit is an error, as with [`SshPool::run`].
    pub check: bool,
    /// This command's limit instead of the configured command timeout.
    pub timeout: Option<Duration>,
}

/// Why an operation on a session failed; `stale` means nothing ran yet and a
/// fresh session may succeed (the cached one died, e.g. the host rebooted).
pub(crate) struct Fail {
    stale: bool,
    error: Box<SshError>,
}

impl Fail {
    pub(crate) fn stale(error: SshError) -> Fail {
        Fail { stale: true, error: Box::new(error) }
    }

    pub(crate) fn fatal(error: SshError) -> Fail {
        Fail { stale: false, error: Box::new(error) }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn millis(d: Duration) -> u32 {
    d.as_millis().clamp(1, u32::MAX as u128) as u32
}

/// Turns a libssh2 error into a timeout or a session error.
pub(crate) fn ssh_fail(host: &str, what: &str, e: &ssh2::Error, after: Duration) -> SshError {
    if e.code() == ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT) {
        SshError::Timeout { host: host.to_string(), what: what.to_string(), after }
    } else {
        SshError::Session { host: host.to_string(), reason: format!("{what}: {}", e.message()) }
    }
}

impl SshPool {
    pub fn new(settings: SshSettings) -> SshPool {
        SshPool {
            settings,
            slots: Mutex::new(HashMap::new()),
            pinned: Mutex::new(HashMap::new()),
            secrets: Mutex::new(Vec::new()),
            cancel: None,
        }
    }

    /// Makes commands and waits stop with [`SshError::Cancelled`] once `flag` is set (Ctrl-C),
    /// within a few milliseconds of a command's output poll. The remote command is ended as on
    /// a timeout (its process group gets SIGTERM, then SIGKILL), then its session is closed.
    pub fn with_cancel(mut self, flag: Arc<AtomicBool>) -> SshPool {
        self.cancel = Some(flag);
        self
    }

    fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
    }

    pub fn settings(&self) -> &SshSettings {
        &self.settings
    }

    /// Trusts exactly this key for `host` (an OpenSSH public key line such as the
    /// VM's `/etc/ssh/ssh_host_ed25519_key.pub`), ignoring known_hosts for it.
    /// An open session to the host is closed so the next call checks the new pin.
    pub fn pin_host_key(&self, host: &str, openssh_pub_line: &str) -> Result<(), SshError> {
        let target = self.target(host)?;
        let key = PublicKey::parse_openssh(openssh_pub_line)
            .map_err(|reason| SshError::InvalidKey { host: target.display(), reason })?;
        lock(&self.pinned).insert(target.display(), key);
        self.disconnect(host);
        Ok(())
    }

    /// Registers a secret: it is shown as `***` in every command and stderr an error shows.
    pub fn add_secret(&self, secret: &str) {
        if !secret.is_empty() {
            lock(&self.secrets).push(secret.to_string());
        }
    }

    /// Closes the session to `host`, if one is open.
    pub fn disconnect(&self, host: &str) {
        if let Ok(t) = self.target(host) {
            lock(&self.slots).remove(&t.display());
        }
    }

    /// Runs `cmd` on `host` (through the login user's shell); with `sudo` (and a
    /// non-root user, and sudo enabled in the settings) through `sudo -n sh -c`.
    /// A non-zero exit is an error carrying host, command (secrets masked), exit
    /// code and the stderr tail.
    pub fn run(&self, host: &str, cmd: &str, sudo: bool) -> Result<Output, SshError> {
        self.run_with(host, cmd, &CommandOptions { sudo, check: true, ..CommandOptions::default() })
    }

    /// [`SshPool::run`] with `input` on the command's stdin: the way to hand a
    /// secret to a command without putting it on a command line (`ps` shows those).
    pub fn run_with_input(&self, host: &str, cmd: &str, input: &[u8], sudo: bool) -> Result<Output, SshError> {
        self.run_with(host, cmd, &CommandOptions { sudo, input: Some(input), check: true, timeout: None })
    }

    /// Like [`SshPool::run`], but a non-zero exit is returned, not an error.
    /// (A sudo that wants a password is still an error.)
    pub fn run_unchecked(&self, host: &str, cmd: &str, sudo: bool) -> Result<Output, SshError> {
        self.run_with(host, cmd, &CommandOptions { sudo, ..CommandOptions::default() })
    }

    /// The general form of the `run` family: sudo, stdin, whether a non-zero exit
    /// is an error, and a timeout of its own for this one command.
    pub fn run_with(&self, host: &str, cmd: &str, opts: &CommandOptions) -> Result<Output, SshError> {
        let timeout = opts.timeout.unwrap_or(self.settings.command_timeout);
        let out = self.exec_for(host, cmd, opts.sudo, opts.input, timeout)?.into_output();
        if opts.check && out.code != 0 {
            return Err(SshError::Command {
                host: self.target(host)?.display(),
                command: self.shown_command(cmd, opts.sudo),
                code: out.code,
                stderr_tail: self.mask(&tail(&out.stderr, STDERR_TAIL_LINES)),
            });
        }
        Ok(out)
    }

    /// The host's own name (`uname -n`).
    pub fn hostname(&self, host: &str) -> Result<String, SshError> {
        Ok(self.run(host, "uname -n", false)?.stdout.trim().to_string())
    }

    /// Waits until `host` accepts an authenticated session and runs `true`,
    /// retrying with a growing pause (up to 5 s); progress goes to tracing.
    /// Host key problems fail at once: waiting does not fix them.
    pub fn wait(&self, host: &str, timeout: Duration) -> Result<(), SshError> {
        self.wait_with(host, timeout, |attempt, err| {
            tracing::info!(host, attempt, "waiting for ssh: {}", err.kind());
        })
    }

    /// [`SshPool::wait`] with a callback told about each failed attempt.
    pub fn wait_with(
        &self,
        host: &str,
        timeout: Duration,
        mut progress: impl FnMut(u32, &SshError),
    ) -> Result<(), SshError> {
        let target = self.target(host)?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(200);
        let mut attempt = 0;
        let cancelled = || SshError::Cancelled { host: target.display(), what: "waiting for an ssh login".into() };
        loop {
            if self.cancelled() {
                return Err(cancelled());
            }
            attempt += 1;
            // Each attempt's login may take only what is left of the wait.
            let left = timeout.saturating_sub(start.elapsed()).max(Duration::from_millis(100));
            let limit = self.settings.connect_timeout.min(left);
            let answered = self.ensure_session(&target, limit).and_then(|()| self.run_unchecked(host, "true", false));
            let err = match answered {
                Ok(_) => return Ok(()),
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => e,
            };
            progress(attempt, &err);
            if start.elapsed() + pause >= timeout {
                return Err(SshError::Timeout {
                    host: target.display(),
                    what: format!("waiting for an ssh login (last error: {err})"),
                    after: timeout,
                });
            }
            // In slices, so Ctrl-C is heard during the pause.
            let resume = Instant::now() + pause;
            while Instant::now() < resume {
                if self.cancelled() {
                    return Err(cancelled());
                }
                std::thread::sleep(Duration::from_millis(50).min(resume.saturating_duration_since(Instant::now())));
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// Opens the host's session unless one is open, within `limit`.
    fn ensure_session(&self, target: &Target, limit: Duration) -> Result<(), SshError> {
        let slot = lock(&self.slots).entry(target.display()).or_default().clone();
        let mut guard = lock(&slot);
        if guard.is_none() {
            *guard = Some(self.connect(target, limit)?);
        }
        Ok(())
    }

    pub(crate) fn target(&self, host: &str) -> Result<Target, SshError> {
        Target::parse(host, self.settings.port)
    }

    /// `host` (`addr` or `addr:port`) as the pool reaches it and names it in messages: with
    /// `ssh.port` when it gives none.
    ///
    /// # Errors
    /// [`SshError`] for a host that is not an address or name with an optional port.
    pub fn shown(&self, host: &str) -> Result<String, SshError> {
        Ok(self.target(host)?.display())
    }

    /// True when commands that need root must go through `sudo -n`.
    pub fn uses_sudo(&self) -> bool {
        self.settings.sudo && self.settings.user != "root"
    }

    pub(crate) fn mask(&self, text: &str) -> String {
        mask(text, &lock(&self.secrets))
    }

    fn shown_command(&self, cmd: &str, sudo: bool) -> String {
        let cmd = self.mask(cmd);
        if sudo && self.uses_sudo() { format!("sudo -n {cmd}") } else { cmd }
    }

    /// Runs a command, returning its raw output whatever the exit code.
    pub(crate) fn exec(&self, host: &str, cmd: &str, sudo: bool, stdin: Option<&[u8]>) -> Result<RawOutput, SshError> {
        self.exec_for(host, cmd, sudo, stdin, self.settings.command_timeout)
    }

    /// [`SshPool::exec`] with a timeout for this command.
    fn exec_for(
        &self,
        host: &str,
        cmd: &str,
        sudo: bool,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<RawOutput, SshError> {
        let target = self.target(host)?;
        let wrapped =
            if sudo && self.uses_sudo() { format!("sudo -n sh -c {}", shell_quote(cmd)) } else { cmd.to_string() };
        let shown = target.display();
        tracing::debug!(host = %shown, "run: {}", self.shown_command(cmd, sudo));
        let shown_cmd = self.shown_command(cmd, sudo);
        let cancel = self.cancel.as_deref();
        let line = format!("{PGID_PREFIX}{wrapped}");
        let as_root = sudo && self.uses_sudo();
        let run = RemoteCommand { host: &shown, line: &line, shown: &shown_cmd, stdin, timeout, cancel, as_root };
        let out = self.with_session(&target, |sess| run.exec_in(sess))?;
        if sudo && self.uses_sudo() && out.code == 1 {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("a password is required")
                || err.contains("a terminal is required")
                || err.contains("no tty present")
            {
                return Err(SshError::SudoPassword {
                    host: shown,
                    user: self.settings.user.clone(),
                    command: self.shown_command(cmd, sudo),
                });
            }
        }
        Ok(out)
    }

    /// Calls `f` with the host's session, connecting first if needed. A cached
    /// session that turns out dead before anything ran is replaced once; a
    /// session left in an unknown state (timeout, protocol error) is dropped.
    pub(crate) fn with_session<T>(
        &self,
        target: &Target,
        mut f: impl FnMut(&Session) -> Result<T, Fail>,
    ) -> Result<T, SshError> {
        let slot = lock(&self.slots).entry(target.display()).or_default().clone();
        let mut guard = lock(&slot);
        let mut fresh = false;
        loop {
            if guard.is_none() {
                *guard = Some(self.connect(target, self.settings.connect_timeout)?);
                fresh = true;
            }
            let Some(sess) = guard.as_ref() else { unreachable!("connected above") };
            match f(sess) {
                Ok(v) => return Ok(v),
                Err(Fail { stale: true, error }) if !fresh => {
                    tracing::debug!(host = %target.display(), "session lost ({error}), reconnecting");
                    *guard = None;
                }
                Err(Fail { error, .. }) => {
                    if matches!(
                        *error,
                        SshError::Timeout { .. } | SshError::Session { .. } | SshError::Cancelled { .. }
                    ) {
                        *guard = None;
                    }
                    return Err(*error);
                }
            }
        }
    }

    /// Opens a session: TCP, handshake, host key check, login.
    fn connect(&self, target: &Target, timeout: Duration) -> Result<Session, SshError> {
        let host = target.display();
        let connect_err = |reason: String| SshError::Connect { host: host.clone(), reason };
        let addrs: Vec<_> = (target.addr.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| connect_err(format!("cannot resolve the address: {e}")))?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = match (tcp, last) {
            (Some(s), _) => s,
            (None, Some(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(SshError::Timeout { host, what: "connecting".into(), after: timeout });
            }
            (None, Some(e)) => return Err(connect_err(e.to_string())),
            (None, None) => return Err(connect_err("the name has no address".into())),
        };
        let _ = tcp.set_nodelay(true);

        let mut sess = Session::new().map_err(|e| connect_err(e.to_string()))?;
        sess.set_timeout(millis(timeout));
        let pinned = lock(&self.pinned).get(&host).cloned();
        let prefs = match &pinned {
            Some(k) => host_key_prefs(std::slice::from_ref(&k.key_type), false),
            None => host_key_prefs(&known_hosts::known_key_types(&self.settings.known_hosts, target), true),
        };
        sess.method_pref(MethodType::HostKey, &prefs)
            .map_err(|e| ssh_fail(&host, "choosing host key types", &e, timeout))?;
        sess.set_tcp_stream(tcp);
        sess.handshake().map_err(|e| ssh_fail(&host, "ssh handshake", &e, timeout))?;
        known_hosts::verify(&sess, target, &self.settings, pinned.as_ref())?;
        self.authenticate(&sess, &host, timeout)?;
        tracing::debug!(host = %host, user = %self.settings.user, "ssh session open");
        Ok(sess)
    }

    /// Logs in: every key of the agent, then each identity file.
    fn authenticate(&self, sess: &Session, host: &str, timeout: Duration) -> Result<(), SshError> {
        let user = &self.settings.user;
        let mut tried = Vec::new();
        match &self.settings.agent_socket {
            None => tried.push("ssh-agent: none (SSH_AUTH_SOCK is not set)".to_string()),
            Some(sock) => match try_agent(sess, user, sock) {
                Ok(()) => return Ok(()),
                Err(why) => tried.push(format!("ssh-agent at {}: {why}", sock.display())),
            },
        }
        let passphrase = self.settings.passphrase.as_ref().map(|p| p.expose());
        for path in &self.settings.identity_files {
            if !path.exists() {
                tried.push(format!("{}: no such file", path.display()));
                continue;
            }
            match sess.userauth_pubkey_file(user, None, path, passphrase) {
                Ok(()) if sess.authenticated() => return Ok(()),
                Ok(()) => tried.push(format!("{}: not accepted", path.display())),
                Err(e) if e.code() == ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT) => {
                    return Err(ssh_fail(host, "logging in", &e, timeout));
                }
                Err(e) => tried.push(format!("{}: {}", path.display(), e.message())),
            }
        }
        if self.settings.identity_files.is_empty() {
            tried.push("identity files: none configured".to_string());
        }
        Err(SshError::Auth { host: host.to_string(), user: user.clone(), tried })
    }
}

/// The host key algorithms to offer: `first` (key types), then, with `others`,
/// the rest of OpenSSH's order. `ssh-rsa` keys sign with the SHA-2 algorithms.
fn host_key_prefs(first: &[String], others: bool) -> String {
    let mut prefs: Vec<&str> = Vec::new();
    for t in first {
        match t.as_str() {
            "ssh-rsa" => prefs.extend(["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]),
            t => prefs.push(t),
        }
    }
    if others || prefs.is_empty() {
        prefs.extend(HOST_KEY_PREFS.split(','));
    }
    let mut seen = std::collections::HashSet::new();
    prefs.retain(|p| seen.insert(*p));
    prefs.join(",")
}

fn try_agent(sess: &Session, user: &str, sock: &std::path::Path) -> Result<(), String> {
    let mut agent = sess.agent().map_err(|e| e.message().to_string())?;
    agent.set_identity_path(sock).map_err(|e| e.message().to_string())?;
    agent.connect().map_err(|e| format!("cannot connect: {}", e.message()))?;
    let result = (|| {
        agent.list_identities().map_err(|e| format!("cannot list keys: {}", e.message()))?;
        let ids = agent.identities().map_err(|e| e.message().to_string())?;
        if ids.is_empty() {
            return Err("holds no keys".to_string());
        }
        for id in &ids {
            if agent.userauth(user, id).is_ok() && sess.authenticated() {
                return Ok(());
            }
        }
        Err(format!("none of its {} key(s) was accepted", ids.len()))
    })();
    let _ = agent.disconnect();
    result
}

/// One command to run: the line sent to the host and the line shown in errors.
struct RemoteCommand<'a> {
    host: &'a str,
    /// Starts with [`PGID_PREFIX`].
    line: &'a str,
    shown: &'a str,
    stdin: Option<&'a [u8]>,
    timeout: Duration,
    cancel: Option<&'a AtomicBool>,
    /// The command runs through `sudo`: ending it needs root too.
    as_root: bool,
}

/// Takes the [`PGID_PREFIX`] line off the start of `stdout` once it is complete; returns the
/// process group it names. `None` while the line is incomplete, or when stdout does not start
/// with it (the shell could not even start the line) — then `stdout` is left as it is.
fn take_pgid(stdout: &mut Vec<u8>, done: &mut bool) -> Option<u32> {
    if *done {
        return None;
    }
    let mark = PGID_MARK.as_bytes();
    let common = stdout.len().min(mark.len());
    if stdout[..common] != mark[..common] {
        *done = true;
        return None;
    }
    let newline = stdout.iter().position(|&b| b == b'\n')?;
    *done = true;
    let pgid = std::str::from_utf8(&stdout[mark.len()..newline]).ok()?.parse().ok();
    stdout.drain(..=newline);
    pgid
}

/// The shell line that ends process group `pgid`: SIGTERM, up to [`TERM_GRACE`] for it to go,
/// then SIGKILL. Plain `kill -SIG -PGID` (no `--`) is what dash, bash and busybox all accept.
fn end_group_line(pgid: u32, as_root: bool) -> String {
    let steps = TERM_GRACE.as_millis() / 100;
    let script = format!(
        "p={pgid}; kill -TERM -$p 2>/dev/null || exit 0; i=0; \
         while [ $i -lt {steps} ] && kill -0 -$p 2>/dev/null; do sleep 0.1; i=$((i+1)); done; \
         kill -KILL -$p 2>/dev/null; exit 0"
    );
    let line = format!("sh -c {}", shell_quote(&script));
    if as_root { format!("sudo -n {line}") } else { line }
}

impl RemoteCommand<'_> {
    /// Runs the command on an open session, with a deadline for the whole command.
    fn exec_in(&self, sess: &Session) -> Result<RawOutput, Fail> {
        let RemoteCommand { host, line: cmd, shown, stdin, timeout, cancel, as_root } = *self;
        let deadline = Instant::now() + timeout;
        let fatal = |what: &str, e: &ssh2::Error| Fail::fatal(ssh_fail(host, what, e, timeout));
        sess.set_blocking(true);
        sess.set_timeout(millis(timeout));
        let mut ch =
            sess.channel_session().map_err(|e| Fail::stale(ssh_fail(host, "opening a channel", &e, timeout)))?;
        ch.exec(cmd).map_err(|e| Fail::stale(ssh_fail(host, "starting the command", &e, timeout)))?;
        if let Some(input) = stdin {
            std::io::Write::write_all(&mut ch, input).map_err(|e| {
                Fail::fatal(SshError::Session { host: host.into(), reason: format!("sending input: {e}") })
            })?;
        }
        ch.send_eof().map_err(|e| fatal("closing input", &e))?;

        // Poll both streams without blocking, so neither can fill its window while
        // we wait on the other, and so the deadline holds however quiet the command is.
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        let mut pgid = None;
        let mut header_done = false;
        sess.set_blocking(false);
        let polled = (|| {
            let mut idle = Duration::from_millis(1);
            loop {
                let mut progressed = false;
                for (stream_id, sink) in [(0, &mut stdout), (1, &mut stderr)] {
                    match ch.stream(stream_id).read(&mut buf) {
                        Ok(0) => {}
                        Ok(n) => {
                            sink.extend_from_slice(&buf[..n]);
                            progressed = true;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            return Err(SshError::Session {
                                host: host.into(),
                                reason: format!("reading output: {e}"),
                            });
                        }
                    }
                }
                if let Some(id) = take_pgid(&mut stdout, &mut header_done) {
                    pgid = Some(id);
                }
                if ch.eof() {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(SshError::Timeout {
                        host: host.into(),
                        what: format!("running `{shown}`"),
                        after: timeout,
                    });
                }
                if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                    return Err(SshError::Cancelled { host: host.into(), what: format!("running `{shown}`") });
                }
                if progressed {
                    idle = Duration::from_millis(1);
                } else {
                    std::thread::sleep(idle);
                    idle = (idle * 2).min(Duration::from_millis(20));
                }
            }
        })();
        if let Err(e @ (SshError::Timeout { .. } | SshError::Cancelled { .. })) = &polled {
            match pgid {
                Some(pgid) => end_group(sess, host, pgid, as_root),
                None => tracing::warn!(host, "{e}; the command did not report its process, so it may still run"),
            }
        }
        // A cancelled command's channel is abandoned: the session stays non-blocking, so closing
        // the channel (and the session, dropped next) waits for nothing.
        sess.set_blocking(!matches!(polled, Err(SshError::Cancelled { .. })));
        polled.map_err(Fail::fatal)?;

        let rest = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
        sess.set_timeout(millis(rest));
        let io_fail = |e: std::io::Error| {
            Fail::fatal(SshError::Session { host: host.into(), reason: format!("reading output: {e}") })
        };
        ch.read_to_end(&mut stdout).map_err(io_fail)?;
        take_pgid(&mut stdout, &mut header_done);
        ch.stderr().read_to_end(&mut stderr).map_err(io_fail)?;
        ch.wait_close().map_err(|e| fatal("closing the channel", &e))?;
        let mut code = ch.exit_status().map_err(|e| fatal("reading the exit status", &e))?;
        if let Ok(sig) = ch.exit_signal()
            && let Some(name) = sig.exit_signal
        {
            stderr.extend_from_slice(format!("\n(killed by signal {name})").as_bytes());
            code = if code == 0 { -1 } else { code };
        }
        Ok(RawOutput { code, stdout, stderr })
    }
}

/// Ends process group `pgid` on the host through a second channel of the same session,
/// waiting at most a few seconds; a failure is logged, the caller's error is what matters.
fn end_group(sess: &Session, host: &str, pgid: u32, as_root: bool) {
    sess.set_blocking(true);
    sess.set_timeout(millis(TERM_GRACE + Duration::from_secs(3)));
    let ended = (|| -> Result<i32, ssh2::Error> {
        let mut ch = sess.channel_session()?;
        ch.exec(&end_group_line(pgid, as_root))?;
        ch.send_eof()?;
        let mut sink = Vec::new();
        let _ = ch.read_to_end(&mut sink);
        ch.wait_close()?;
        ch.exit_status()
    })();
    match ended {
        Ok(0) => tracing::debug!(host, pgid, "ended the timed-out or cancelled command"),
        Ok(code) => tracing::warn!(host, pgid, code, "could not end the command's processes"),
        Err(e) => tracing::warn!(host, pgid, "could not end the command's processes: {}", e.message()),
    }
}

/// The last `n` lines of a command's stderr.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn pool_is_send_and_sync() {
        assert_send_sync::<SshPool>();
    }

    #[test]
    fn known_key_types_are_offered_first() {
        let prefs = host_key_prefs(&["ssh-rsa".into(), "ssh-ed25519".into()], true);
        assert!(prefs.starts_with("rsa-sha2-512,rsa-sha2-256,ssh-rsa,ssh-ed25519,ecdsa-sha2-nistp256"));
        assert_eq!(prefs.matches("ssh-ed25519").count(), 1);
        assert_eq!(host_key_prefs(&["ssh-ed25519".into()], false), "ssh-ed25519");
        assert_eq!(host_key_prefs(&[], true), HOST_KEY_PREFS);
    }

    #[test]
    fn the_pgid_line_is_taken_off_stdout_once_complete_and_only_when_it_is_ours() {
        let mut done = false;
        let mut out = b"k3sx-pg".to_vec();
        assert_eq!((take_pgid(&mut out, &mut done), done), (None, false), "incomplete: wait");
        out.extend_from_slice(b"id:4242\n\x00binary\nk3sx-pgid:1\n");
        assert_eq!(take_pgid(&mut out, &mut done), Some(4242));
        assert_eq!(out, b"\x00binary\nk3sx-pgid:1\n", "the command's own output is untouched");
        assert_eq!(take_pgid(&mut out, &mut done), None, "taken once");

        let (mut done, mut out) = (false, b"sh: syntax error\n".to_vec());
        assert_eq!(take_pgid(&mut out, &mut done), None);
        assert_eq!((out.as_slice(), done), (&b"sh: syntax error\n"[..], true));
    }

    #[test]
    fn ending_a_group_signals_the_group_and_needs_sudo_only_for_root_commands() {
        let line = end_group_line(77, false);
        assert!(line.starts_with("sh -c ") && line.contains("p=77") && line.contains("kill -TERM -$p"), "{line}");
        assert!(line.contains("kill -KILL -$p") && !line.contains("--"), "{line}");
        assert!(end_group_line(77, true).starts_with("sudo -n sh -c "));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn pinning_rejects_a_malformed_key_and_names_the_host() {
        let pool = SshPool::new(SshSettings::default());
        let e = pool.pin_host_key("10.0.0.5:2222", "ssh-ed25519 nope").unwrap_err();
        assert_eq!(e.kind(), "invalid_key");
        assert_eq!(e.host(), Some("10.0.0.5:2222"));
    }

    #[test]
    fn a_server_that_never_speaks_ssh_times_out_and_wait_keeps_its_own_limit() {
        // Accepts TCP connections (the kernel does, into the backlog) but never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
        let settings = SshSettings { connect_timeout: Duration::from_millis(500), ..SshSettings::default() };
        let e = SshPool::new(settings).run(&host, "true", false).unwrap_err();
        assert_eq!(e.kind(), "timeout", "{e}");

        let settings = SshSettings { connect_timeout: Duration::from_secs(30), ..SshSettings::default() };
        let start = Instant::now();
        let mut attempts = 0;
        let e = SshPool::new(settings).wait_with(&host, Duration::from_secs(1), |_, _| attempts += 1).unwrap_err();
        assert_eq!(e.kind(), "timeout", "{e}");
        assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
        assert!(attempts >= 1 && e.to_string().contains(&host), "{e}");
    }

    #[test]
    fn connection_refused_is_a_connect_error_naming_the_host() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let pool = SshPool::new(SshSettings { connect_timeout: Duration::from_secs(2), ..SshSettings::default() });
        let host = format!("127.0.0.1:{port}");
        let e = pool.run(&host, "true", false).unwrap_err();
        assert_eq!(e.kind(), "connect", "{e}");
        assert_eq!(e.host(), Some(host.as_str()));
    }
}
