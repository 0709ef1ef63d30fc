//! Errors of the Proxmox client. Each names the host and the API path; none carries a secret.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// What went wrong talking to Proxmox VE.
#[derive(Debug, thiserror::Error)]
pub enum PveError {
    /// The credentials were refused (HTTP 401). Never holds the secret.
    #[error(
        "authentication failed for `{user}` at {host} ({path}): check PROXMOX_USER and \
         PROXMOX_PASSWORD, or PROXMOX_API_TOKEN_ID and PROXMOX_API_TOKEN_SECRET"
    )]
    Auth { user: String, host: String, path: String },

    /// The server's certificate was not trusted.
    #[error("{}", tls_message(host, path, reason, fingerprint.as_deref(), *pinned))]
    Tls {
        host: String,
        path: String,
        /// Why verification failed, as the TLS library put it.
        reason: String,
        /// SHA-256 of the certificate the server presented, Proxmox style (`AA:BB:...`).
        fingerprint: Option<String>,
        /// True when a pinned fingerprint was configured and did not match.
        pinned: bool,
    },

    /// HTTP 595/596: the Proxmox proxy could not reach (or lost) the node the path is about.
    #[error("Proxmox node `{}` is unreachable from {host} ({status} {message}) for {path}", node.as_deref().unwrap_or("?"))]
    NodeUnreachable { host: String, node: Option<String>, path: String, status: u16, message: String },

    /// Any other error answer: status, message and per-field parameter errors.
    #[error("{}", api_message(host, method, path, *status, message, field_errors))]
    Api {
        host: String,
        method: String,
        path: String,
        status: u16,
        message: String,
        field_errors: BTreeMap<String, String>,
    },

    /// No answer within the configured time.
    #[error("request to {host} timed out after {after:?} ({path}); the host or network is slow or down")]
    Timeout { host: String, path: String, after: Duration },

    /// The connection could not be made or broke.
    #[error("cannot reach Proxmox at {host} ({path}): {reason}")]
    Connect { host: String, path: String, reason: String },

    /// The QEMU guest agent does not answer (yet): retry later or read the IP elsewhere.
    #[error("QEMU guest agent of VM {vmid} on node `{node}` is not running ({host}, {path}): {message}")]
    AgentNotRunning { host: String, node: String, vmid: u32, path: String, message: String },

    /// The answer was not what the API documents.
    #[error("unexpected answer from {host} for {path}: {reason}")]
    Decode { host: String, path: String, reason: String },

    /// A client setting is unusable (bad fingerprint, unreadable CA file, missing credentials).
    #[error("{message}")]
    Config { host: String, message: String },

    /// The VM carries a lock (`backup`, `snapshot`, `clone`, `migrate`, ...) and refused the request
    /// (500 `VM is locked (backup)`). Retrying is pointless until whatever holds it is done.
    #[error("VM {vmid} on node `{node}` is locked ({lock}): {method} {path} at {host} was refused")]
    Locked { host: String, method: String, path: String, node: String, vmid: u32, lock: String },

    /// Another task held the VM's configuration lock longer than PVE waits for it
    /// (500 `can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout`).
    #[error(
        "VM {vmid} on node `{node}`: its configuration lock is held by another task \
         ({method} {path} at {host}: {message})"
    )]
    LockTimeout { host: String, method: String, path: String, node: String, vmid: u32, message: String },

    /// The configuration changed between reading its `digest` and writing: nothing was written.
    /// Never retried blindly; read the configuration again and recompute the change.
    #[error(
        "VM {vmid} on node `{node}`: the configuration was changed by someone else since it was read, \
         nothing was written ({method} {path} at {host}: {message})"
    )]
    DigestMismatch { host: String, method: String, path: String, node: String, vmid: u32, message: String },

    /// A power action the VM's run state refuses: `VM 101 not running` (shutdown, reboot of a
    /// stopped VM) or `VM 101 already running`.
    #[error(
        "VM {vmid} on node `{node}` is {}: {method} {path} at {host}: {message}",
        if *running { "already running" } else { "not running" }
    )]
    RunState { host: String, method: String, path: String, node: String, vmid: u32, running: bool, message: String },

    /// A snapshot of the name asked for exists already (`snapshot name 'pre' already used`):
    /// nothing was created. The name is read from PVE's message.
    #[error(
        "VM {vmid} on node `{node}` already has a snapshot {}: nothing was created ({method} {path} at \
         {host}: {message}); choose another name or delete that snapshot first",
        snapshot_name(message)
    )]
    SnapshotExists { host: String, method: String, path: String, node: String, vmid: u32, message: String },

    /// The VM has no snapshot of that name (`snapshot 'pre' does not exist`).
    #[error(
        "VM {vmid} on node `{node}` has no snapshot {} ({method} {path} at {host}: {message})",
        snapshot_name(message)
    )]
    SnapshotMissing { host: String, method: String, path: String, node: String, vmid: u32, message: String },

    /// A task ended with an error exit status. `kind()` tells a lock (`locked`, `lock_timeout`),
    /// a run state (`already_running`, `not_running`) or a snapshot name (`snapshot_exists`,
    /// `snapshot_missing`) from any other failure (`task_failed`).
    #[error("{}", task_failed_message(node, *vmid, upid, exitstatus, log_tail))]
    TaskFailed {
        node: String,
        vmid: Option<u32>,
        upid: String,
        exitstatus: String,
        /// The last lines of the task log.
        log_tail: Vec<String>,
    },

    /// A task was still running when the wait for it ended. It goes on in PVE.
    #[error(
        "{} did not finish within {after:?}; it is still running on node `{node}` ({upid}, {host})",
        task_name(upid, *vmid)
    )]
    TaskTimeout { host: String, node: String, vmid: Option<u32>, upid: String, after: Duration },

    /// The VM did not reach the wanted run state in time.
    #[error("VM {vmid} on node `{node}` did not become `{wanted}` within {after:?} (last seen `{last}`, {host})")]
    StatusTimeout { host: String, node: String, vmid: u32, wanted: String, last: String, after: Duration },

    /// The caller asked to stop waiting.
    #[error("cancelled while waiting for {what} ({host})")]
    Cancelled { host: String, what: String },

    /// The request was refused before anything was sent (e.g. a config key given twice).
    #[error("invalid request for {host}: {message}")]
    Invalid { host: String, message: String },
}

impl PveError {
    /// A short, stable name of the error class, for scripts (`#{kind: ...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            PveError::Auth { .. } => "auth",
            PveError::Tls { .. } => "tls",
            PveError::NodeUnreachable { .. } => "unreachable",
            PveError::Api { .. } => "api",
            PveError::Timeout { .. } => "timeout",
            PveError::Connect { .. } => "connect",
            PveError::AgentNotRunning { .. } => "agent_not_running",
            PveError::Decode { .. } => "decode",
            PveError::Config { .. } => "config",
            PveError::Locked { .. } => "locked",
            PveError::LockTimeout { .. } => "lock_timeout",
            PveError::DigestMismatch { .. } => "digest_mismatch",
            PveError::RunState { running: true, .. } => "already_running",
            PveError::RunState { running: false, .. } => "not_running",
            PveError::SnapshotExists { .. } => "snapshot_exists",
            PveError::SnapshotMissing { .. } => "snapshot_missing",
            PveError::TaskFailed { exitstatus, .. } => match Refusal::of(exitstatus) {
                Some(Refusal::Locked(_)) => "locked",
                Some(Refusal::LockTimeout) => "lock_timeout",
                Some(Refusal::AlreadyRunning) => "already_running",
                Some(Refusal::NotRunning) => "not_running",
                Some(Refusal::SnapshotExists) => "snapshot_exists",
                Some(Refusal::SnapshotMissing) => "snapshot_missing",
                _ => "task_failed",
            },
            PveError::TaskTimeout { .. } | PveError::StatusTimeout { .. } => "timeout",
            PveError::Cancelled { .. } => "cancelled",
            PveError::Invalid { .. } => "invalid",
        }
    }

    /// A short, one-line reason for a summary table, without the VM, host and path that
    /// `to_string()` names: `VM locked (backup)`, `node pve3 unreachable`, `task failed: ...`.
    pub fn reason(&self) -> String {
        let secs = |d: &Duration| format!("{}s", d.as_secs_f64().round());
        match self {
            PveError::Locked { lock, .. } => format!("VM locked ({lock})"),
            PveError::LockTimeout { .. } => "config lock held by another task".to_string(),
            PveError::DigestMismatch { .. } => "config changed since it was read (digest mismatch)".to_string(),
            PveError::RunState { running: true, .. } => "already running".to_string(),
            PveError::RunState { running: false, .. } => "not running".to_string(),
            PveError::SnapshotExists { message, .. } => snapshot_exists_reason(message),
            PveError::SnapshotMissing { message, .. } => snapshot_missing_reason(message),
            PveError::TaskFailed { exitstatus, .. } => match Refusal::of(exitstatus) {
                Some(Refusal::Locked(lock)) => format!("VM locked ({lock})"),
                Some(Refusal::LockTimeout) => "config lock held by another task".to_string(),
                Some(Refusal::SnapshotExists) => snapshot_exists_reason(exitstatus),
                Some(Refusal::SnapshotMissing) => snapshot_missing_reason(exitstatus),
                _ => format!("task failed: {}", exitstatus.trim()),
            },
            PveError::TaskTimeout { after, .. } => format!("timeout: task still running after {}", secs(after)),
            PveError::StatusTimeout { wanted, last, after, .. } => {
                format!("timeout: not {wanted} after {} (still {last})", secs(after))
            }
            PveError::NodeUnreachable { node, .. } => format!("node {} unreachable", node.as_deref().unwrap_or("?")),
            PveError::AgentNotRunning { .. } => "guest agent not running".to_string(),
            PveError::Api { status, message, .. } => format!("{status} {message}"),
            PveError::Timeout { after, .. } => format!("no answer from Proxmox within {}", secs(after)),
            PveError::Connect { reason, .. } => format!("cannot reach Proxmox: {reason}"),
            PveError::Cancelled { .. } => "cancelled".to_string(),
            other => other.to_string(),
        }
    }

    /// The VM (node, vmid) the error is about, when it is about one: named by the variant, or by
    /// the API path (`/nodes/{node}/qemu/{vmid}/...`).
    pub fn vm(&self) -> Option<(String, u32)> {
        match self {
            PveError::Locked { node, vmid, .. }
            | PveError::LockTimeout { node, vmid, .. }
            | PveError::DigestMismatch { node, vmid, .. }
            | PveError::RunState { node, vmid, .. }
            | PveError::SnapshotExists { node, vmid, .. }
            | PveError::SnapshotMissing { node, vmid, .. }
            | PveError::StatusTimeout { node, vmid, .. }
            | PveError::AgentNotRunning { node, vmid, .. } => Some((node.clone(), *vmid)),
            PveError::TaskFailed { node, vmid, .. } | PveError::TaskTimeout { node, vmid, .. } => {
                vmid.map(|v| (node.clone(), v))
            }
            PveError::Api { path, .. }
            | PveError::NodeUnreachable { path, .. }
            | PveError::Timeout { path, .. }
            | PveError::Connect { path, .. }
            | PveError::Decode { path, .. } => vm_of_path(path),
            _ => None,
        }
    }

    /// True for errors that no retry or other VM can fix: credentials, trust, settings.
    /// The CLI maps these to exit status 2.
    pub fn is_setup_error(&self) -> bool {
        matches!(self, PveError::Auth { .. } | PveError::Tls { .. } | PveError::Config { .. })
    }

    /// The HTTP status of an error answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            PveError::Api { status, .. } | PveError::NodeUnreachable { status, .. } => Some(*status),
            PveError::Auth { .. } => Some(401),
            // PVE answers these refusals with a 500 and the message they are recognised by.
            PveError::Locked { .. }
            | PveError::LockTimeout { .. }
            | PveError::DigestMismatch { .. }
            | PveError::RunState { .. }
            | PveError::SnapshotExists { .. }
            | PveError::SnapshotMissing { .. } => Some(500),
            _ => None,
        }
    }
}

/// What a PVE error message (or a task's exit status) says about a VM, when it is one of the
/// refusals a workflow reports by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `VM is locked (backup)`: the lock's name.
    Locked(String),
    /// `can't lock file '...' - got timeout`.
    LockTimeout,
    /// `checksum mismatch (file change by other user?)` (qemu-server),
    /// `detected modified configuration - file changed by other user? Try again.` (PVE::Tools).
    DigestMismatch,
    /// `VM 101 not running`.
    NotRunning,
    /// `VM 101 already running`.
    AlreadyRunning,
    /// `snapshot name 'pre' already used` (pve-guest-common), or a storage that refuses to make a
    /// snapshot whose name it holds already (ZFS: `cannot create snapshot '...@pre': dataset
    /// already exists`).
    SnapshotExists,
    /// `snapshot 'pre' does not exist`.
    SnapshotMissing,
}

impl Refusal {
    pub(crate) fn of(message: &str) -> Option<Refusal> {
        let m = message.trim();
        let lower = m.to_lowercase();
        for prefix in ["VM is locked (", "CT is locked ("] {
            if let Some(rest) = m.strip_prefix(prefix) {
                let lock = rest.split(')').next().unwrap_or_default().trim();
                return Some(Refusal::Locked(if lock.is_empty() { "unknown".into() } else { lock.into() }));
            }
        }
        if lower.contains("can't lock file") && lower.contains("got timeout") {
            return Some(Refusal::LockTimeout);
        }
        if lower.contains("checksum mismatch")
            || lower.contains("detected modified configuration")
            || (lower.contains("file change") && lower.contains("other user"))
        {
            return Some(Refusal::DigestMismatch);
        }
        let vm_state = |suffix: &str| {
            m.strip_prefix("VM ")
                .and_then(|r| r.strip_suffix(suffix))
                .is_some_and(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
        };
        if vm_state(" not running") {
            return Some(Refusal::NotRunning);
        }
        if vm_state(" already running") {
            return Some(Refusal::AlreadyRunning);
        }
        if lower.contains("snapshot") && (lower.contains("already used") || lower.contains("already exists")) {
            return Some(Refusal::SnapshotExists);
        }
        if lower.contains("snapshot '") && lower.contains("' does not exist") {
            return Some(Refusal::SnapshotMissing);
        }
        None
    }
}

/// The snapshot a PVE message names, for our messages: `` `pre` `` from `snapshot 'pre' does
/// not exist` (the first quoted text; of a storage snapshot `rpool/data/vm-101-disk-0@pre`, the
/// part after `@`), or `of that name` when it names none.
fn snapshot_name(message: &str) -> String {
    let quoted = message.split_once('\'').and_then(|(_, rest)| rest.split_once('\'')).map(|(q, _)| q);
    match quoted.map(|q| q.rsplit('@').next().unwrap_or(q).trim()).filter(|n| !n.is_empty()) {
        Some(name) => format!("`{}`", name.escape_default()),
        None => "of that name".to_string(),
    }
}

fn snapshot_exists_reason(message: &str) -> String {
    format!("snapshot {} already exists", snapshot_name(message))
}

fn snapshot_missing_reason(message: &str) -> String {
    format!("no snapshot {}", snapshot_name(message))
}

/// (node, vmid) of `/nodes/{node}/qemu/{vmid}/...` (or `/lxc/`).
pub(crate) fn vm_of_path(path: &str) -> Option<(String, u32)> {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("nodes"), Some(node), Some("qemu" | "lxc"), Some(vmid)) if !node.is_empty() => {
            vmid.parse().ok().map(|v| (node.to_string(), v))
        }
        _ => None,
    }
}

/// `qmstart task of VM 101`, from the UPID's type.
fn task_name(upid: &str, vmid: Option<u32>) -> String {
    let task_type = upid.split(':').nth(5).filter(|t| !t.is_empty()).unwrap_or("the");
    match vmid {
        Some(v) => format!("{task_type} task of VM {v}"),
        None => format!("{task_type} task"),
    }
}

fn task_failed_message(node: &str, vmid: Option<u32>, upid: &str, exitstatus: &str, log_tail: &[String]) -> String {
    let mut out = format!("{} on node `{node}` failed: {exitstatus}", task_name(upid, vmid));
    // The log's last line usually repeats the exit status as `TASK ERROR: ...`: show the rest.
    let lines: Vec<&str> = log_tail
        .iter()
        .map(|l| l.trim_end())
        .filter(|l| !l.is_empty() && l.trim_start_matches("TASK ERROR: ") != exitstatus.trim())
        .collect();
    if !lines.is_empty() {
        let _ = write!(out, "\n  task log (last lines):\n    {}", lines.join("\n    "));
    }
    let _ = write!(out, "\n  ({upid})");
    out
}

fn tls_message(host: &str, path: &str, reason: &str, fingerprint: Option<&str>, pinned: bool) -> String {
    let mut out = if pinned {
        format!("the certificate of {host} does not match PROXMOX_TLS_FINGERPRINT ({path})")
    } else {
        format!("the certificate of {host} is not trusted ({path}): {reason}")
    };
    if let Some(fp) = fingerprint {
        let _ = write!(out, "; the server presented SHA-256 fingerprint {fp}");
    }
    out.push_str(
        ". To trust it, set one of: PROXMOX_CA_FILE (the cluster CA, /etc/pve/pve-root-ca.pem), \
         PROXMOX_TLS_FINGERPRINT (the fingerprint above, after checking it on the node with \
         `pvenode cert info`), or PROXMOX_SSL_VERIFY=false (no verification; not recommended)",
    );
    out
}

fn api_message(
    host: &str,
    method: &str,
    path: &str,
    status: u16,
    message: &str,
    fields: &BTreeMap<String, String>,
) -> String {
    let mut out = format!("{method} {path} at {host} failed: {status} {message}");
    if !fields.is_empty() {
        let list: Vec<String> = fields.iter().map(|(k, v)| format!("`{k}`: {v}")).collect();
        let _ = write!(out, " ({})", list.join("; "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_error_names_the_three_settings_and_the_fingerprint() {
        let e = PveError::Tls {
            host: "pve1:8006".into(),
            path: "/cluster/resources".into(),
            reason: "invalid peer certificate: UnknownIssuer".into(),
            fingerprint: Some("AB:CD".into()),
            pinned: false,
        };
        let text = e.to_string();
        for needle in ["PROXMOX_CA_FILE", "PROXMOX_TLS_FINGERPRINT", "PROXMOX_SSL_VERIFY=false", "AB:CD", "pve1:8006"] {
            assert!(text.contains(needle), "{needle} missing in {text}");
        }
        assert_eq!(e.kind(), "tls");
        assert!(e.is_setup_error());
    }

    #[test]
    fn failed_task_is_classified_by_its_exit_status_and_shows_its_log() {
        let failed = |exitstatus: &str, log: &[&str]| PveError::TaskFailed {
            node: "pve1".into(),
            vmid: Some(101),
            upid: "UPID:pve1:00000001:00000007:65F0A1B2:qmstart:101:root@pam:".into(),
            exitstatus: exitstatus.into(),
            log_tail: log.iter().map(|l| l.to_string()).collect(),
        };
        let err = failed(
            "QEMU exited with code 1",
            &["kvm: -drive file=x: Could not open", "TASK ERROR: QEMU exited with code 1"],
        );
        assert_eq!(err.kind(), "task_failed");
        let text = err.to_string();
        assert!(text.starts_with("qmstart task of VM 101 on node `pve1` failed: QEMU exited with code 1"), "{text}");
        assert!(text.contains("Could not open") && !text.contains("TASK ERROR"), "{text}");
        assert_eq!(failed("VM is locked (snapshot)", &[]).kind(), "locked");
        assert_eq!(
            failed("can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout", &[]).kind(),
            "lock_timeout"
        );
        assert_eq!(failed("VM 101 already running", &[]).kind(), "already_running");
        assert_eq!(failed("x", &[]).vm(), Some(("pve1".to_string(), 101)));
        assert_eq!(failed("VM is locked (snapshot)", &[]).reason(), "VM locked (snapshot)");
        assert_eq!(failed("QEMU exited with code 1", &["x"]).reason(), "task failed: QEMU exited with code 1");
    }

    #[test]
    fn api_error_lists_field_errors() {
        let mut fields = BTreeMap::new();
        fields.insert("ipconfig0".to_string(), "invalid format".to_string());
        let e = PveError::Api {
            host: "h".into(),
            method: "PUT".into(),
            path: "/nodes/pve1/qemu/101/config".into(),
            status: 400,
            message: "Parameter verification failed.".into(),
            field_errors: fields,
        };
        assert!(e.to_string().contains("`ipconfig0`: invalid format"));
        assert_eq!(e.kind(), "api");
        assert!(!e.is_setup_error());
    }
}
