//! What can go wrong talking to a host, each case saying what to do about it.

use std::path::PathBuf;
use std::time::Duration;

/// An SSH failure. Every variant names the host; [`SshError::kind`] gives a stable
/// short name that scripts can match on.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("invalid host `{input}`: {reason}")]
    InvalidHost { input: String, reason: String },

    #[error("invalid host key for `{host}`: {reason}")]
    InvalidKey { host: String, reason: String },

    #[error("cannot connect to `{host}`: {reason}")]
    Connect { host: String, reason: String },

    #[error("timed out after {}s on `{host}` while {what}", after.as_secs_f32())]
    Timeout { host: String, what: String, after: Duration },

    #[error(
        "host key of `{host}` is unknown ({key}) and the host key policy is strict\n  \
         check the fingerprint on the host (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), then record it with\n  \
         `{keyscan} >> {}`\n  \
         or set the ssh host key policy to `accept-new` to record it on first connection",
        known_hosts.display()
    )]
    HostKeyUnknown {
        host: String,
        /// Key type and SHA-256 fingerprint, e.g. `ssh-ed25519 SHA256:...`.
        key: String,
        keyscan: String,
        known_hosts: PathBuf,
    },

    #[error(
        "host key of `{host}` has CHANGED: it now presents {key}, not the key recorded in `{}`\n  \
         this can be a man-in-the-middle, or the machine was re-created or its address reused\n  \
         if you know why it changed, remove the old key with `ssh-keygen -R '{entry}' -f {}` and connect again",
        known_hosts.display(), known_hosts.display()
    )]
    HostKeyChanged {
        host: String,
        entry: String,
        /// Key type and SHA-256 fingerprint, e.g. `ssh-ed25519 SHA256:...`.
        key: String,
        known_hosts: PathBuf,
    },

    #[error(
        "host key of `{host}` is not the pinned key: it presents {key}, the pinned key is {pinned}\n  \
         the pinned key was read from the VM itself; refusing to connect"
    )]
    HostKeyMismatch {
        host: String,
        /// Key type and SHA-256 fingerprint, e.g. `ssh-ed25519 SHA256:...`.
        key: String,
        pinned: String,
    },

    #[error(
        "host key of `{host}` is REVOKED: it presents {key}, which `{}:{line}` marks `@revoked`\n  \
         a revoked key is never accepted, whatever the host key policy: someone may be impersonating the host\n  \
         get the host's new key from its administrator (or reinstall its host keys) and record that one",
        known_hosts.display()
    )]
    HostKeyRevoked {
        host: String,
        /// Key type and SHA-256 fingerprint, e.g. `ssh-ed25519 SHA256:...`.
        key: String,
        known_hosts: PathBuf,
        /// The 1-based line of the `@revoked` entry.
        line: usize,
    },

    #[error(
        "cannot log in to `{host}` as `{user}`; tried:\n{}\n  \
         add a key to the agent (`ssh-add`), set the ssh identity file, or check `~{user}/.ssh/authorized_keys` on the host",
        tried.iter().map(|t| format!("  - {t}")).collect::<Vec<_>>().join("\n")
    )]
    Auth { host: String, user: String, tried: Vec<String> },

    #[error("command failed on `{host}` with exit code {code}: `{command}`{}", tail_block(stderr_tail))]
    Command { host: String, command: String, code: i32, stderr_tail: String },

    #[error(
        "sudo on `{host}` wants a password for `{user}` (command `{command}`); k3sx runs `sudo -n` and never types one\n  \
         allow it without a password on the host, e.g.\n  \
         `echo '{user} ALL=(ALL) NOPASSWD: ALL' | sudo tee /etc/sudoers.d/k3sx && sudo chmod 0440 /etc/sudoers.d/k3sx`\n  \
         or connect as root"
    )]
    SudoPassword { host: String, user: String, command: String },

    #[error("file transfer on `{host}` failed for `{path}`: {reason}")]
    Sftp { host: String, path: String, reason: String },

    #[error("cancelled on `{host}` while {what}")]
    Cancelled { host: String, what: String },

    #[error("ssh session with `{host}` failed: {reason}")]
    Session { host: String, reason: String },

    #[error("cannot use local file `{}`: {source}", path.display())]
    Local { path: PathBuf, source: std::io::Error },
}

fn tail_block(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        let lines: Vec<String> = tail.lines().map(|l| format!("  | {l}")).collect();
        format!("\n  stderr (last lines):\n{}", lines.join("\n"))
    }
}

impl SshError {
    /// A stable short name for the kind of failure.
    pub fn kind(&self) -> &'static str {
        match self {
            SshError::InvalidHost { .. } => "invalid_host",
            SshError::InvalidKey { .. } => "invalid_key",
            SshError::Connect { .. } => "connect",
            SshError::Timeout { .. } => "timeout",
            SshError::HostKeyUnknown { .. } => "host_key_unknown",
            SshError::HostKeyChanged { .. } => "host_key_changed",
            SshError::HostKeyMismatch { .. } => "host_key_mismatch",
            SshError::HostKeyRevoked { .. } => "host_key_revoked",
            SshError::Auth { .. } => "auth",
            SshError::Command { .. } => "command",
            SshError::SudoPassword { .. } => "sudo_password",
            SshError::Sftp { .. } => "sftp",
            SshError::Session { .. } => "session",
            SshError::Cancelled { .. } => "cancelled",
            SshError::Local { .. } => "local",
        }
    }

    /// The host the failure is about (none for a local file problem).
    pub fn host(&self) -> Option<&str> {
        match self {
            SshError::InvalidHost { input: host, .. }
            | SshError::InvalidKey { host, .. }
            | SshError::Connect { host, .. }
            | SshError::Timeout { host, .. }
            | SshError::HostKeyUnknown { host, .. }
            | SshError::HostKeyChanged { host, .. }
            | SshError::HostKeyMismatch { host, .. }
            | SshError::HostKeyRevoked { host, .. }
            | SshError::Auth { host, .. }
            | SshError::Command { host, .. }
            | SshError::SudoPassword { host, .. }
            | SshError::Sftp { host, .. }
            | SshError::Session { host, .. }
            | SshError::Cancelled { host, .. } => Some(host),
            SshError::Local { .. } => None,
        }
    }

    /// True for failures that a later attempt may not see (host still booting,
    /// sshd not up yet, keys not installed yet); host key problems are never retried.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SshError::Connect { .. } | SshError::Timeout { .. } | SshError::Auth { .. } | SshError::Session { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_error_shows_host_command_code_and_stderr_tail() {
        let e = SshError::Command {
            host: "10.0.0.5".into(),
            command: "exit 3".into(),
            code: 3,
            stderr_tail: "boom\nbang".into(),
        };
        let text = e.to_string();
        assert!(text.contains("`10.0.0.5`") && text.contains("exit code 3") && text.contains("`exit 3`"));
        assert!(text.contains("  | boom\n  | bang"));
        assert_eq!(e.kind(), "command");
        assert_eq!(e.host(), Some("10.0.0.5"));
    }

    #[test]
    fn stays_small_enough_to_return_by_value() {
        assert!(std::mem::size_of::<SshError>() <= 112, "{}", std::mem::size_of::<SshError>());
    }

    #[test]
    fn auth_error_lists_every_attempt() {
        let e = SshError::Auth {
            host: "h".into(),
            user: "ubuntu".into(),
            tried: vec!["ssh-agent: not running".into(), "/k/id: not found".into()],
        };
        let text = e.to_string();
        assert!(text.contains("  - ssh-agent: not running\n  - /k/id: not found"), "{text}");
    }
}
