//! SSH to the cluster's VMs over `ssh2`: one authenticated session per host,
//! host keys checked (known_hosts or a key pinned from the VM itself), commands
//! with timeouts and `sudo -n`, and atomic, idempotent file transfer.
//!
//! Nothing here knows about Rhai; `src/script/api/ssh.rs` adapts it.

mod error;
mod known_hosts;
mod session;
mod sftp;

use std::path::PathBuf;
use std::time::Duration;

pub use error::SshError;
pub use known_hosts::{PublicKey, fingerprint};
pub use session::{CommandOptions, SshPool};
pub use sftp::{PutNeed, local_sha256};

use crate::secret::Secret;

/// What to do with a host key that is not in known_hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// Unknown and changed keys are refused (the default).
    #[default]
    Strict,
    /// Unknown keys are recorded in known_hosts; changed keys are still refused.
    AcceptNew,
}

/// How to reach and log in to the hosts.
#[derive(Debug, Clone)]
pub struct SshSettings {
    /// Login user on every host.
    pub user: String,
    /// Port used when a host is given without one.
    pub port: u16,
    /// Private keys tried after the agent, in order (missing files are skipped and reported).
    pub identity_files: Vec<PathBuf>,
    /// Passphrase of the identity files, if they have one.
    pub passphrase: Option<Secret>,
    /// The ssh-agent socket tried first; `None` means no agent.
    pub agent_socket: Option<PathBuf>,
    /// OpenSSH known_hosts file (read, and appended under `AcceptNew`).
    pub known_hosts: PathBuf,
    pub policy: HostKeyPolicy,
    /// Run commands that need root through `sudo -n` when `user` is not root.
    pub sudo: bool,
    /// Limit for TCP connect, handshake and login.
    pub connect_timeout: Duration,
    /// Limit for one command or one file transfer.
    pub command_timeout: Duration,
}

impl Default for SshSettings {
    /// The current user's OpenSSH defaults: `$USER`, port 22, the agent from
    /// `SSH_AUTH_SOCK`, `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`, `~/.ssh/known_hosts`.
    fn default() -> Self {
        let ssh_dir = dirs::home_dir().unwrap_or_else(|| PathBuf::from("/root")).join(".ssh");
        SshSettings {
            user: std::env::var("USER").unwrap_or_else(|_| "root".to_string()),
            port: 22,
            identity_files: ["id_ed25519", "id_ecdsa", "id_rsa"].iter().map(|f| ssh_dir.join(f)).collect(),
            passphrase: None,
            agent_socket: std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()).map(PathBuf::from),
            known_hosts: ssh_dir.join("known_hosts"),
            policy: HostKeyPolicy::Strict,
            sudo: true,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(600),
        }
    }
}

/// What a command printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A host as given (`addr` or `addr:port`, IPv6 as `[addr]:port`), split.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Target {
    pub addr: String,
    pub port: u16,
}

impl Target {
    pub(crate) fn parse(input: &str, default_port: u16) -> Result<Target, SshError> {
        let invalid = |reason: &str| SshError::InvalidHost { input: input.to_string(), reason: reason.to_string() };
        let input_trimmed = input.trim();
        if input_trimmed.is_empty() {
            return Err(invalid("empty"));
        }
        let (addr, port) = if let Some(rest) = input_trimmed.strip_prefix('[') {
            let (addr, after) = rest.split_once(']').ok_or_else(|| invalid("missing `]`"))?;
            match after.strip_prefix(':') {
                Some(p) => (addr, Some(p)),
                None if after.is_empty() => (addr, None),
                None => return Err(invalid("expected `:port` after `]`")),
            }
        } else if input_trimmed.matches(':').count() == 1 {
            let (a, p) = input_trimmed.split_once(':').unwrap_or((input_trimmed, ""));
            (a, Some(p))
        } else {
            // a bare name, IPv4 address, or an IPv6 address without brackets
            (input_trimmed, None)
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid("the port is not a number from 1 to 65535"))?,
            None => default_port,
        };
        if addr.is_empty() || addr.chars().any(|c| c.is_whitespace()) {
            return Err(invalid("no address"));
        }
        Ok(Target { addr: addr.to_string(), port })
    }

    /// The name used in messages and as the pool key: `addr` for port 22, else `addr:port`.
    pub(crate) fn display(&self) -> String {
        match (self.port, self.addr.contains(':')) {
            (22, _) => self.addr.clone(),
            (p, true) => format!("[{}]:{p}", self.addr),
            (p, false) => format!("{}:{p}", self.addr),
        }
    }
}

/// Replaces every secret with `***` in text that will be shown.
pub(crate) fn mask(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s.as_str(), "***");
    }
    out
}

/// Quotes a string for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_and_without_port() {
        let t = Target::parse("10.0.0.5", 22).unwrap();
        assert_eq!((t.addr.as_str(), t.port, t.display()), ("10.0.0.5", 22, "10.0.0.5".to_string()));
        let t = Target::parse("10.0.0.5:2222", 22).unwrap();
        assert_eq!((t.addr.as_str(), t.port, t.display()), ("10.0.0.5", 2222, "10.0.0.5:2222".to_string()));
        let t = Target::parse("[fe80::1]:2200", 22).unwrap();
        assert_eq!((t.addr.as_str(), t.port, t.display()), ("fe80::1", 2200, "[fe80::1]:2200".to_string()));
        let t = Target::parse("fe80::1", 2200).unwrap();
        assert_eq!((t.addr.as_str(), t.port), ("fe80::1", 2200));
        assert_eq!(Target::parse("h:0", 22).unwrap_err().kind(), "invalid_host");
        assert_eq!(Target::parse("h:x", 22).unwrap_err().kind(), "invalid_host");
        assert_eq!(Target::parse(" ", 22).unwrap_err().kind(), "invalid_host");
    }

    #[test]
    fn secrets_are_masked() {
        let s = mask("K3S_TOKEN=abc123 sh -s - --token abc123", &["abc123".into(), String::new()]);
        assert_eq!(s, "K3S_TOKEN=*** sh -s - --token ***");
    }

    #[test]
    fn shell_quote_quotes_only_when_needed() {
        assert_eq!(shell_quote("/usr/local/bin/k3s"), "/usr/local/bin/k3s");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
