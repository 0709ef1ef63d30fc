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
    #[error("invalid Proxmox setting for {host}: {message}")]
    Config { host: String, message: String },
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
            _ => None,
        }
    }
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
