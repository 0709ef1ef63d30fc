//! One door for every side effect: a typed [`Change`] and the run's [`ChangeLog`].
//!
//! Every change a run makes — a Proxmox write, a remote command, a remote or local file — is
//! described first as a [`Change`] and handed to [`ChangeLog::apply`], the one place that
//! decides between doing it and, under `--dry-run`, only recording it. The log keeps the
//! run's plan in the order the workflow planned it (not the order worker threads finished),
//! which `--dry-run` prints, `--json` includes and `--expect-no-changes` counts.
//!
//! Secrets are masked by type: a change holds them as [`Secret`]s (or as stdin, which is
//! never shown), so the `Display` of a change cannot reveal one.

mod plan;

use std::fmt;
use std::path::PathBuf;

pub use plan::{Applied, ChangeLog, Counts, Entry, Outcome, Position};

use crate::pve::WriteRequest;

/// A side effect, described completely before it is made.
#[derive(Debug, Clone)]
pub enum Change {
    /// A write to the Proxmox API.
    Pve(WriteRequest),
    /// A command that changes something on a host.
    Command(RemoteCommand),
    /// A file written on a host (SFTP).
    RemoteFile(RemoteFile),
    /// A file written on this machine.
    LocalFile(LocalFile),
    /// A file deleted on this machine.
    LocalRemove(LocalRemove),
}

/// A shell command run on `host`; its stdin (which may hold a secret) is never shown.
#[derive(Debug, Clone)]
pub struct RemoteCommand {
    pub host: String,
    pub command: String,
    pub sudo: bool,
    /// Bytes sent on stdin, if any: only their count is ever shown.
    pub stdin_len: Option<usize>,
}

/// A file written on `host` from `source` (a local file) or from text the script made.
#[derive(Debug, Clone)]
pub struct RemoteFile {
    pub host: String,
    pub path: String,
    pub mode: u32,
    pub owner: Option<String>,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    pub size: u64,
    /// The local file uploaded, when it is an upload.
    pub source: Option<PathBuf>,
}

/// A file written on this machine.
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub path: PathBuf,
    pub mode: u32,
    pub size: u64,
    /// What the file is, for the reader of a plan: `kubeconfig`, `config k3s.version`, ...
    pub what: Option<String>,
}

/// A file deleted on this machine.
#[derive(Debug, Clone)]
pub struct LocalRemove {
    pub path: PathBuf,
    /// What the file is, for the reader of a plan: `K3s cluster token`, ...
    pub what: Option<String>,
}

impl Change {
    /// A short name of the change's class: `pve`, `command`, `remote_file`, `local_file`.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Pve(_) => "pve",
            Change::Command(_) => "command",
            Change::RemoteFile(_) => "remote_file",
            Change::LocalFile(_) => "local_file",
            Change::LocalRemove(_) => "local_remove",
        }
    }

    /// The change as JSON for `--json` plans: the same facts as `Display`, secrets masked.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Change::Pve(r) => json!({
                "kind": self.kind(),
                "method": r.method.as_str(),
                "path": r.path.to_string(),
                "params": r.params.iter().map(|(k, v)| json!([k, match v {
                    crate::pve::ParamValue::Plain(v) => v.as_str(),
                    crate::pve::ParamValue::Secret(_) => "***",
                }])).collect::<Vec<_>>(),
            }),
            Change::Command(c) => json!({
                "kind": self.kind(), "host": c.host, "command": c.command, "sudo": c.sudo, "stdin_bytes": c.stdin_len,
            }),
            Change::RemoteFile(f) => json!({
                "kind": self.kind(), "host": f.host, "path": f.path, "mode": format!("{:04o}", f.mode),
                "owner": f.owner, "sha256": f.sha256, "size": f.size,
                "source": f.source.as_ref().map(|p| p.display().to_string()),
            }),
            Change::LocalFile(f) => json!({
                "kind": self.kind(), "path": f.path.display().to_string(), "mode": format!("{:04o}", f.mode),
                "size": f.size, "what": f.what,
            }),
            Change::LocalRemove(f) => json!({
                "kind": self.kind(), "path": f.path.display().to_string(), "what": f.what,
            }),
        }
    }
}

impl fmt::Display for Change {
    /// What the change does, as one line after `would ` (dry run) or `done: ` (log):
    /// `POST /nodes/pve1/qemu/101/status/start`, `run on 10.0.0.5: sudo -n systemctl ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Pve(r) => write!(f, "{r}"),
            Change::Command(c) => {
                write!(f, "run on {}: {}{}", c.host, if c.sudo { "sudo -n " } else { "" }, one_line(&c.command))?;
                if let Some(n) = c.stdin_len {
                    write!(f, " (with {n} bytes on stdin)")?;
                }
                Ok(())
            }
            Change::RemoteFile(r) => {
                match &r.source {
                    Some(src) => write!(f, "upload {} to {}:{}", src.display(), r.host, r.path)?,
                    None => write!(f, "write {}:{}", r.host, r.path)?,
                }
                write!(f, " (mode {:04o}, {} bytes", r.mode, r.size)?;
                if let Some(o) = &r.owner {
                    write!(f, ", owner {o}")?;
                }
                write!(f, ", sha256 {})", &r.sha256[..r.sha256.len().min(12)])
            }
            Change::LocalFile(l) => {
                write!(f, "write {} (mode {:04o}, {} bytes", l.path.display(), l.mode, l.size)?;
                match &l.what {
                    Some(w) => write!(f, ", {w})"),
                    None => write!(f, ")"),
                }
            }
            Change::LocalRemove(l) => match &l.what {
                Some(w) => write!(f, "delete {} ({w})", l.path.display()),
                None => write!(f, "delete {}", l.path.display()),
            },
        }
    }
}

/// A command on one line: newlines shown as `\n`, so one change is one line of a plan.
fn one_line(text: &str) -> String {
    text.trim_end().replace('\n', "\\n")
}

/// Hex SHA-256 of `bytes`, as a [`RemoteFile`] names its content.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::{ApiPath, ParamValue, WriteMethod};
    use crate::secret::Secret;

    #[test]
    fn each_change_prints_as_one_line_and_never_shows_a_secret() {
        let pve = Change::Pve(
            WriteRequest::new(
                WriteMethod::Put,
                ApiPath::parse("/nodes/pve1/qemu/101/config").unwrap(),
                [
                    ("ciuser".to_string(), ParamValue::Plain("k3s".into())),
                    ("cipassword".to_string(), ParamValue::Plain("hunter2".into())),
                    ("x".to_string(), ParamValue::Secret(Secret::new("tok3n"))),
                ],
            )
            .unwrap(),
        );
        let cmd = Change::Command(RemoteCommand {
            host: "10.0.0.5".into(),
            command: "IFS= read -r K3S_TOKEN\nexport K3S_TOKEN".into(),
            sudo: true,
            stdin_len: Some(65),
        });
        let file = Change::RemoteFile(RemoteFile {
            host: "10.0.0.5".into(),
            path: "/usr/local/bin/k3s".into(),
            mode: 0o755,
            owner: None,
            sha256: sha256_hex(b"binary"),
            size: 6,
            source: Some("airgap/k3s".into()),
        });
        let local = Change::LocalFile(LocalFile {
            path: "/root/.kube/config".into(),
            mode: 0o600,
            size: 10,
            what: Some("kubeconfig".into()),
        });
        assert_eq!(pve.to_string(), "PUT /nodes/pve1/qemu/101/config ciuser=k3s cipassword=*** x=***");
        assert_eq!(
            cmd.to_string(),
            "run on 10.0.0.5: sudo -n IFS= read -r K3S_TOKEN\\nexport K3S_TOKEN (with 65 bytes on stdin)"
        );
        assert!(file.to_string().starts_with("upload airgap/k3s to 10.0.0.5:/usr/local/bin/k3s (mode 0755, 6 bytes"));
        assert_eq!(local.to_string(), "write /root/.kube/config (mode 0600, 10 bytes, kubeconfig)");
        let removal = Change::LocalRemove(LocalRemove { path: "/root/k3s-token".into(), what: Some("token".into()) });
        assert_eq!(removal.to_string(), "delete /root/k3s-token (token)");
        assert_eq!(removal.to_json()["kind"], "local_remove");
        for c in [&pve, &cmd, &file, &local] {
            let all = format!("{c} {c:?} {}", c.to_json());
            assert!(!all.contains("hunter2") && !all.contains("tok3n") && !all.contains('\n'), "{all}");
        }
    }
}
