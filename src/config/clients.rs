//! Client settings built from the merged configuration: the one place that turns the
//! `proxmox` and `ssh` sections into [`PveSettings`] and [`SshSettings`].

use std::time::Duration;

use super::{HostKeyPolicy, HostKeySource, Loaded, ProxmoxHost, expand_home};
use crate::pve::{PveError, PveSettings};
use crate::secret::Secret;
use crate::ssh::SshSettings;

/// Proxmox client settings from the `proxmox` section and the secrets.
///
/// # Errors
/// [`PveError::Config`] when no host is set, or no credentials (a token id without its
/// secret, or neither a token nor a password), each saying which variable to set.
pub fn pve_settings(loaded: &Loaded) -> Result<PveSettings, PveError> {
    let p = &loaded.config.proxmox;
    let missing = |message: &str| PveError::Config { host: p.host.clone(), message: message.to_string() };
    let host = match &loaded.proxmox_host {
        Some(host) => host.clone(),
        None if p.host.trim().is_empty() => {
            return Err(missing("no Proxmox host: set PROXMOX_HOST (or proxmox.host in the config file)"));
        }
        // Settings not made by `load` (which validated the host): check it rather than trust it.
        None => p.host.trim().parse::<ProxmoxHost>().map_err(|why| missing(&format!("`proxmox.host`: {why}")))?,
    };
    let secrets = &loaded.secrets;
    if p.token_id.is_some() && secrets.proxmox_token_secret.is_none() {
        return Err(missing("PROXMOX_API_TOKEN_ID is set but PROXMOX_API_TOKEN_SECRET is not"));
    }
    if p.token_id.is_none() && secrets.proxmox_password.is_none() {
        return Err(missing(
            "no Proxmox credentials: set PROXMOX_API_TOKEN_ID and PROXMOX_API_TOKEN_SECRET, or PROXMOX_PASSWORD",
        ));
    }
    let mut s = PveSettings::new(host.to_string(), p.user.trim());
    s.port = p.port;
    s.token_id = p.token_id.clone();
    s.token_secret = secrets.proxmox_token_secret.clone();
    s.password = if p.token_id.is_some() { None } else { secrets.proxmox_password.clone() };
    s.verify_tls = p.verify_tls;
    s.ca_file = p.ca_file.as_deref().map(expand_home);
    s.fingerprint = p.fingerprint.clone();
    s.connect_timeout = Duration::from_secs(p.connect_timeout_secs);
    s.timeout = Duration::from_secs(p.timeout_secs);
    s.retries = p.retries;
    Ok(s)
}

/// SSH settings from the `ssh` section; the agent and default key files are OpenSSH's.
/// `warn` is told when `ssh.passphrase_env` names a variable that is not set.
pub fn ssh_settings(loaded: &Loaded, warn: &dyn Fn(&str)) -> SshSettings {
    let s = &loaded.config.ssh;
    let defaults = SshSettings::default(); // the agent from SSH_AUTH_SOCK, OpenSSH's key files
    let passphrase = s.passphrase_env.as_deref().and_then(|var| match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(Secret::new(v)),
        _ => {
            warn(&format!("ssh.passphrase_env names `{var}`, which is not set"));
            None
        }
    });
    SshSettings {
        user: s.user.clone(),
        port: s.port,
        identity_files: match &s.identity_file {
            Some(f) => vec![expand_home(f)],
            None => defaults.identity_files,
        },
        passphrase,
        agent_socket: defaults.agent_socket,
        known_hosts: expand_home(&s.known_hosts),
        // With keys pinned through the guest agent nothing is trusted on first use: a host
        // no `ssh::trust_vm` pinned must already be in known_hosts.
        policy: match (s.host_keys, s.host_key_policy) {
            (HostKeySource::GuestAgent, _) | (_, HostKeyPolicy::Strict) => crate::ssh::HostKeyPolicy::Strict,
            (_, HostKeyPolicy::AcceptNew) => crate::ssh::HostKeyPolicy::AcceptNew,
        },
        sudo: s.sudo,
        connect_timeout: Duration::from_secs(s.connect_timeout_secs),
        command_timeout: Duration::from_secs(s.command_timeout_secs),
    }
}
