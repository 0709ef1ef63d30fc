//! The K3s install invocation for one node: the install script's environment, the **full**
//! argument set (the script forgets any argument a re-run does not repeat), and the one shell
//! command that runs it with the token read from stdin, so the token is never on a command
//! line, in `ps` or in `/proc/*/cmdline`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::Version;
use crate::ssh::shell_quote;

/// Whether a node runs the control plane (and embedded etcd) or only workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeRole {
    Server,
    Agent,
}

impl NodeRole {
    /// The install script's first argument and K3s's subcommand: `server` or `agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Server => "server",
            NodeRole::Agent => "agent",
        }
    }
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeRole {
    type Err = InstallError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "server" => Ok(NodeRole::Server),
            "agent" => Ok(NodeRole::Agent),
            other => Err(InstallError::InvalidValue {
                field: "role",
                value: other.to_string(),
                reason: "expected `server` or `agent`".into(),
            }),
        }
    }
}

/// Where the install script comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallSource {
    /// Downloaded on the node (`curl`) from `url`, e.g. `https://get.k3s.io`; the script then
    /// downloads the K3s binary itself.
    Online { url: String },
    /// Already uploaded to `script_path` on the node, with the binary and images in place;
    /// runs with `INSTALL_K3S_SKIP_DOWNLOAD=true`.
    Airgap { script_path: String },
}

/// Everything that decides one node's K3s installation. Build it from the configuration and
/// the node's detected facts, [`validate`](InstallSpec::validate) it, then run
/// [`command`](InstallSpec::command) as root with the token on stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallSpec {
    pub role: NodeRole,
    /// Exact K3s version, `vX.Y.Z+k3sN` (or `vX.Y.Z-rcN+k3sN`).
    pub version: String,
    /// The first server of a new cluster: `--cluster-init` (embedded etcd). Servers only.
    pub bootstrap: bool,
    /// `https://HOST:6443` of a live server or the VIP: required for joining servers and agents,
    /// refused for the bootstrap server.
    pub server_url: Option<String>,
    /// The address K3s advertises for this node (`--node-ip`).
    pub node_ip: IpAddr,
    /// `--node-name`; K3s uses the hostname when absent.
    pub node_name: Option<String>,
    /// The NIC that holds `node_ip` (`--flannel-iface`), detected rather than assumed.
    pub flannel_iface: Option<String>,
    /// Extra names/addresses in the API server certificate, e.g. the VIP. Servers only
    /// (ignored for agents, so one cluster-wide list can be given to every node).
    pub tls_san: Vec<String>,
    /// Packaged components to leave out, e.g. `servicelb` when MetalLB is used. Servers only
    /// (ignored for agents).
    pub disable: Vec<String>,
    /// `--node-label key=value`.
    pub node_labels: Vec<String>,
    /// `--node-taint key=value:Effect`.
    pub node_taints: Vec<String>,
    /// `k3s.server_args` / `k3s.agent_args`, appended after everything k3sx sets.
    pub extra_args: Vec<String>,
    pub source: InstallSource,
}

/// Why an install specification was refused. Nothing here ever holds the token (the spec
/// has none), so values may be shown.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("K3s version `{version}` is not exact: {reason}")]
    InvalidVersion { version: String, reason: String },

    #[error("server URL `{url}` is not usable: {reason} (expected https://HOST:6443)")]
    InvalidServerUrl { url: String, reason: String },

    #[error("invalid install for a {role}: {reason}")]
    InvalidRole { role: NodeRole, reason: String },

    #[error("invalid {field} {value:?}: {reason}")]
    InvalidValue { field: &'static str, value: String, reason: String },

    #[error("`{flag}` in the extra {role} arguments is not allowed: {reason}")]
    ManagedFlag { role: NodeRole, flag: String, reason: &'static str },
}

impl InstallError {
    /// A short, stable name of the error class, for scripts (`#{kind: ...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            InstallError::InvalidVersion { .. } => "invalid_version",
            InstallError::InvalidServerUrl { .. } => "invalid_server_url",
            InstallError::InvalidRole { .. } => "invalid_role",
            InstallError::InvalidValue { .. } => "invalid_value",
            InstallError::ManagedFlag { .. } => "managed_flag",
        }
    }
}

/// Flags whose value must be the same on every server, or a joining server fails with
/// "critical configuration value mismatch". From K3s's critical control args (`--disable*`,
/// CIDRs, cluster DNS/domain, flannel backend, secrets encryption, ...); value flags first.
const CLUSTER_WIDE_VALUE_FLAGS: &[&str] = &[
    "--disable",
    "--cluster-cidr",
    "--service-cidr",
    "--cluster-dns",
    "--cluster-domain",
    "--service-node-port-range",
    "--flannel-backend",
    "--egress-selector-mode",
];
const CLUSTER_WIDE_BOOL_FLAGS: &[&str] = &[
    "--secrets-encryption",
    "--disable-cloud-controller",
    "--disable-helm-controller",
    "--disable-network-policy",
    "--disable-kube-proxy",
    "--flannel-ipv6-masq",
    "--flannel-external-ip",
    "--embedded-registry",
    "--supervisor-metrics",
];

/// Flags k3sx sets itself (from the spec) or that would put a secret on the command line.
const TOKEN_FLAGS: &[&str] = &["--token", "-t", "--token-file", "--agent-token", "--agent-token-file"];
const MANAGED_FLAGS: &[&str] =
    &["--cluster-init", "--server", "-s", "--node-ip", "-i", "--node-name", "--flannel-iface"];

impl InstallSpec {
    /// Checks the spec before anything runs, so a bad value is refused here, named, and not by
    /// the install script halfway through.
    ///
    /// # Errors
    ///
    /// [`InstallError`] for a version that is not exact, a role/bootstrap/server URL combination
    /// that cannot work (bootstrap agent, bootstrap with a server URL, joiner without one), a
    /// server URL that is not `https://HOST:PORT`, a source URL that is not http(s), a control
    /// character or line break in any value, a malformed node name, interface, label or taint,
    /// or an extra argument that k3sx sets itself or that carries the token.
    pub fn validate(&self) -> Result<(), InstallError> {
        validate_version(&self.version)?;
        let role = self.role;
        let bad_role = |reason: &str| Err(InstallError::InvalidRole { role, reason: reason.into() });
        match (role, self.bootstrap, &self.server_url) {
            (NodeRole::Agent, true, _) => return bad_role("only a server can bootstrap a cluster (--cluster-init)"),
            (_, true, Some(_)) => {
                return bad_role("the bootstrap server starts a new cluster and must not be given a server URL");
            }
            (_, false, None) => return bad_role("a joining node needs the URL of a live server or the VIP"),
            _ => {}
        }
        if let Some(url) = &self.server_url {
            validate_server_url(url)?;
        }
        if self.node_ip.is_unspecified() || self.node_ip.is_multicast() {
            return Err(invalid("node_ip", &self.node_ip.to_string(), "not a unicast address of this node"));
        }
        if let Some(name) = &self.node_name {
            validate_node_name(name)?;
        }
        if let Some(iface) = &self.flannel_iface {
            validate_interface_name("flannel_iface", iface)?;
        }
        for san in &self.tls_san {
            validate_word("tls_san", san)?;
        }
        for component in &self.disable {
            if component.is_empty()
                || !component.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(invalid(
                    "disable",
                    component,
                    "expected a component name such as `servicelb` or `traefik`",
                ));
            }
        }
        for label in &self.node_labels {
            validate_word("node_label", label)?;
            if label.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
                return Err(invalid("node_label", label, "expected key=value"));
            }
        }
        for taint in &self.node_taints {
            validate_taint(taint)?;
        }
        self.validate_extra_args()?;
        match &self.source {
            InstallSource::Online { url } => validate_script_url(url)?,
            InstallSource::Airgap { script_path } => {
                no_control_chars("script_path", script_path)?;
                if !script_path.starts_with('/') {
                    return Err(invalid("script_path", script_path, "must be an absolute path on the node"));
                }
            }
        }
        Ok(())
    }

    fn validate_extra_args(&self) -> Result<(), InstallError> {
        for arg in &self.extra_args {
            no_control_chars("extra argument", arg)?;
            if arg.is_empty() {
                return Err(invalid("extra argument", arg, "empty argument"));
            }
            let flag = arg.split_once('=').map_or(arg.as_str(), |(f, _)| f);
            if TOKEN_FLAGS.contains(&flag) {
                return Err(InstallError::ManagedFlag {
                    role: self.role,
                    flag: flag.into(),
                    reason: "the token reaches K3s through K3S_TOKEN from k3s.token_file, never on a command line",
                });
            }
            if MANAGED_FLAGS.contains(&flag) {
                return Err(InstallError::ManagedFlag {
                    role: self.role,
                    flag: flag.into(),
                    reason: "k3sx sets it from the inventory and the detected node facts; remove it",
                });
            }
        }
        Ok(())
    }

    /// The install script's arguments, the full set every time, in a stable order: role,
    /// `--cluster-init` (bootstrap server), `--server URL` (joining server), `--node-ip`,
    /// `--node-name`, `--flannel-iface`, `--tls-san` each and `--disable` each (servers),
    /// `--node-label` each, `--node-taint` each, then the extra arguments.
    ///
    /// Agents get the server URL as `K3S_URL` in [`env`](InstallSpec::env) instead.
    pub fn args(&self) -> Vec<String> {
        let server = self.role == NodeRole::Server;
        let mut args = vec![self.role.as_str().to_string()];
        if server && self.bootstrap {
            args.push("--cluster-init".into());
        }
        let mut flag = |name: &str, value: &str| {
            args.push(name.to_string());
            args.push(value.to_string());
        };
        if let (true, false, Some(url)) = (server, self.bootstrap, &self.server_url) {
            flag("--server", url);
        }
        flag("--node-ip", &self.node_ip.to_string());
        if let Some(name) = &self.node_name {
            flag("--node-name", name);
        }
        if let Some(iface) = &self.flannel_iface {
            flag("--flannel-iface", iface);
        }
        if server {
            for san in &self.tls_san {
                flag("--tls-san", san);
            }
            for component in &self.disable {
                flag("--disable", component);
            }
        }
        for label in &self.node_labels {
            flag("--node-label", label);
        }
        for taint in &self.node_taints {
            flag("--node-taint", taint);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// The cluster-wide settings among [`args`](InstallSpec::args), normalised so that two
    /// servers agree exactly when K3s would: each as `--flag=value` (comma lists split, one
    /// entry per value), boolean flags as `--flag=true|false`, sorted and without duplicates.
    /// A workflow compares this across servers before joining one. Empty for agents.
    ///
    /// The list of cluster-wide flags follows K3s's "critical configuration" checks; it may
    /// lag behind a K3s release that adds one.
    pub fn cluster_wide_args(&self) -> Vec<String> {
        if self.role != NodeRole::Server {
            return Vec::new();
        }
        let args = self.args();
        let mut found = Vec::new();
        let mut i = 1; // skip the role
        while i < args.len() {
            let arg = &args[i];
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f, Some(v.to_string())),
                None => (arg.as_str(), None),
            };
            if CLUSTER_WIDE_VALUE_FLAGS.contains(&flag) {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        args.get(i).cloned().unwrap_or_default()
                    }
                };
                for v in value.split(',').filter(|v| !v.is_empty()) {
                    found.push(format!("{flag}={v}"));
                }
            } else if CLUSTER_WIDE_BOOL_FLAGS.contains(&flag) {
                found.push(format!("{flag}={}", inline.as_deref().unwrap_or("true")));
            }
            i += 1;
        }
        found.sort();
        found.dedup();
        found
    }

    /// The install script's environment, in a stable order, never the token:
    /// `INSTALL_K3S_VERSION`; `K3S_URL` for agents; `INSTALL_K3S_SKIP_DOWNLOAD=true` for air-gap.
    ///
    /// Joining servers get `--server` as an argument, not `K3S_URL`: the script would write
    /// `K3S_URL` into `k3s.service.env`, where K3s reads it as `--server` again — two places
    /// for one setting, and an explicit `server` first argument is needed anyway because the
    /// script takes `K3S_URL` to mean "agent" otherwise. For agents, `K3S_URL` is the script's
    /// documented interface (it names the unit `k3s-agent` and requires a token with it).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("INSTALL_K3S_VERSION".to_string(), self.version.clone())];
        if let (NodeRole::Agent, Some(url)) = (self.role, &self.server_url) {
            env.push(("K3S_URL".into(), url.clone()));
        }
        if matches!(self.source, InstallSource::Airgap { .. }) {
            env.push(("INSTALL_K3S_SKIP_DOWNLOAD".into(), "true".into()));
        }
        env
    }

    /// The POSIX `sh` command (dash too) to run on the node as root, with the token and a
    /// newline on stdin ([`super::token_file_content`] gives exactly that).
    ///
    /// The token is read into a shell variable and handed to the install script alone, as
    /// `K3S_TOKEN="$K3S_TOKEN"`, so it is never part of any process's command line. Online, the
    /// script is downloaded to a temporary file first rather than piped into `sh`: with a pipe,
    /// a failed download (404, proxy error) feeds `sh` nothing and "succeeds" with exit 0.
    /// Every value is single-quoted; call [`validate`](InstallSpec::validate) first so that bad
    /// values are refused with a name rather than passed along quoted.
    pub fn command(&self) -> String {
        let mut assignments: Vec<String> = vec![r#"K3S_TOKEN="$K3S_TOKEN""#.into()];
        assignments.extend(self.env().iter().map(|(k, v)| format!("{k}={}", shell_quote(v))));
        let args: Vec<String> = self.args().iter().map(|a| shell_quote(a)).collect();
        let read_token = "IFS= read -r K3S_TOKEN; \
             [ -n \"$K3S_TOKEN\" ] || { echo 'k3sx: no K3s token on stdin' >&2; exit 2; }";
        let run = |script: &str| format!("{} sh {script} {}", assignments.join(" "), args.join(" "));
        match &self.source {
            InstallSource::Online { url } => {
                let url = shell_quote(url);
                format!(
                    "{read_token}; k3sx_script=$(mktemp) || exit 1; trap 'rm -f \"$k3sx_script\"' EXIT; \
                     curl -fsSL --retry 3 -o \"$k3sx_script\" {url} || \
                     {{ echo \"k3sx: cannot download the K3s install script from \"{url} >&2; exit 1; }}; {}",
                    run("\"$k3sx_script\"")
                )
            }
            InstallSource::Airgap { script_path } => format!("{read_token}; {}", run(&shell_quote(script_path))),
        }
    }
}

/// The script K3s's installer leaves for removing the node: `k3s-uninstall.sh` on servers,
/// `k3s-agent-uninstall.sh` on agents.
pub fn uninstall_command(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Server => "/usr/local/bin/k3s-uninstall.sh",
        NodeRole::Agent => "/usr/local/bin/k3s-agent-uninstall.sh",
    }
}

fn invalid(field: &'static str, value: &str, reason: &str) -> InstallError {
    InstallError::InvalidValue { field, value: value.to_string(), reason: reason.to_string() }
}

fn no_control_chars(field: &'static str, value: &str) -> Result<(), InstallError> {
    if value.chars().any(char::is_control) {
        return Err(invalid(field, value, "contains a control character or line break"));
    }
    Ok(())
}

/// A single word: non-empty, no whitespace, no control characters.
fn validate_word(field: &'static str, value: &str) -> Result<(), InstallError> {
    no_control_chars(field, value)?;
    if value.is_empty() || value.chars().any(char::is_whitespace) {
        return Err(invalid(field, value, "must be one non-empty word without spaces"));
    }
    Ok(())
}

/// An exact version (`v1.32.4+k3s1`), exactly as K3s publishes it: the install script passes
/// it into a download URL, so `1.32.4+k3s1` or ` v1.32.4+k3s1` would not do.
fn validate_version(version: &str) -> Result<(), InstallError> {
    let parsed =
        Version::parse(version).map_err(|reason| InstallError::InvalidVersion { version: version.into(), reason })?;
    if parsed.to_string() != version {
        return Err(InstallError::InvalidVersion {
            version: version.into(),
            reason: format!("write it exactly as K3s publishes it: `{parsed}`"),
        });
    }
    Ok(())
}

/// `https://HOST:PORT` with an optional trailing `/`: what `K3S_URL` and `--server` accept.
/// The port is required: K3s listens on 6443, and `https://HOST` would mean 443.
pub(crate) fn validate_server_url(url: &str) -> Result<(), InstallError> {
    let bad = |reason: &str| Err(InstallError::InvalidServerUrl { url: url.into(), reason: reason.into() });
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("contains whitespace or a control character");
    }
    let Some(rest) = url.strip_prefix("https://") else { return bad("must start with https://") };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, port)) = v6.split_once("]:") else { return bad("expected [IPv6]:PORT") };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("the host is not an IPv6 address");
        }
        (host, port)
    } else {
        let Some((host, port)) = authority.rsplit_once(':') else { return bad("the port is missing") };
        if !is_dns_name(host) && host.parse::<std::net::Ipv4Addr>().is_err() {
            return bad("the host is neither an address nor a DNS name");
        }
        (host, port)
    };
    if host.is_empty() {
        return bad("the host is missing");
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) || !port.parse::<u16>().is_ok_and(|p| p > 0) {
        return bad("the port is not a number from 1 to 65535 (and no path is allowed)");
    }
    Ok(())
}

fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// http or https, and nothing a URL does not need (no quotes, spaces or control characters).
fn validate_script_url(url: &str) -> Result<(), InstallError> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let Some(rest) = rest else {
        return Err(invalid("install script URL", url, "must be an http:// or https:// URL"));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(invalid("install script URL", url, "the host is missing"));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&()*+,;=%".contains(&b);
    if !url.bytes().all(allowed) {
        return Err(invalid("install script URL", url, "contains a character a URL must not have unescaped"));
    }
    Ok(())
}

/// A Kubernetes node name: an RFC 1123 subdomain (lowercase).
fn validate_node_name(name: &str) -> Result<(), InstallError> {
    if name != name.to_ascii_lowercase() || !is_dns_name(name) {
        return Err(invalid("node_name", name, "must be lowercase letters, digits, `-` and `.` (RFC 1123)"));
    }
    Ok(())
}

/// A Linux interface name: 1 to 15 characters (IFNAMSIZ), no `/`, whitespace or `:`.
pub(crate) fn is_interface_name(iface: &str) -> bool {
    !iface.is_empty() && iface.len() <= 15 && iface.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

fn validate_interface_name(field: &'static str, iface: &str) -> Result<(), InstallError> {
    if !is_interface_name(iface) {
        return Err(invalid(field, iface, "not a network interface name (1-15 of A-Z a-z 0-9 - _ . @)"));
    }
    Ok(())
}

/// `key[=value]:Effect` with a Kubernetes taint effect.
fn validate_taint(taint: &str) -> Result<(), InstallError> {
    validate_word("node_taint", taint)?;
    let ok = taint.rsplit_once(':').is_some_and(|(kv, effect)| {
        !kv.is_empty() && !kv.starts_with('=') && matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
    });
    if !ok {
        return Err(invalid(
            "node_taint",
            taint,
            "expected key=value:Effect (NoSchedule, PreferNoSchedule, NoExecute)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bootstrap() -> InstallSpec {
        InstallSpec {
            role: NodeRole::Server,
            version: "v1.32.4+k3s1".into(),
            bootstrap: true,
            server_url: None,
            node_ip: "10.10.0.51".parse().unwrap(),
            node_name: Some("k3s-1".into()),
            flannel_iface: Some("ens18".into()),
            tls_san: vec!["10.10.0.150".into()],
            disable: vec!["servicelb".into()],
            node_labels: vec!["tier=control".into()],
            node_taints: vec![],
            extra_args: vec!["--cluster-cidr=10.42.0.0/16".into()],
            source: InstallSource::Online { url: "https://get.k3s.io".into() },
        }
    }

    fn joiner() -> InstallSpec {
        InstallSpec {
            bootstrap: false,
            server_url: Some("https://10.10.0.150:6443".into()),
            node_ip: "10.10.0.52".parse().unwrap(),
            node_name: Some("k3s-2".into()),
            ..bootstrap()
        }
    }

    fn agent() -> InstallSpec {
        InstallSpec {
            role: NodeRole::Agent,
            bootstrap: false,
            server_url: Some("https://10.10.0.150:6443".into()),
            node_ip: "10.10.0.61".parse().unwrap(),
            node_name: Some("k3s-a1".into()),
            node_labels: vec!["storage=true".into()],
            node_taints: vec!["dedicated=storage:NoSchedule".into()],
            extra_args: vec!["--kubelet-arg=max-pods=200".into()],
            ..bootstrap()
        }
    }

    /// Runs `cmd` with `sh -c` and `stdin`, with an install "script" that prints its
    /// arguments, K3S_TOKEN and the env it got, one per line.
    fn run_in_sh(shell: &str, cmd: &str, stdin: &str) -> (i32, String, String) {
        use std::io::Write;
        let mut child = std::process::Command::new(shell)
            .arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn fake_script(dir: &std::path::Path) -> String {
        let path = dir.join("install.sh");
        std::fs::write(
            &path,
            "for a in \"$@\"; do printf 'arg:%s\\n' \"$a\"; done\n\
             printf 'token:%s\\n' \"$K3S_TOKEN\"\n\
             printf 'version:%s\\n' \"$INSTALL_K3S_VERSION\"\n\
             printf 'url:%s\\n' \"${K3S_URL-unset}\"\n\
             printf 'skip:%s\\n' \"${INSTALL_K3S_SKIP_DOWNLOAD-unset}\"\n",
        )
        .unwrap();
        path.display().to_string()
    }

    #[test]
    fn the_bootstrap_server_gets_cluster_init_and_no_server_url() {
        let s = bootstrap();
        s.validate().unwrap();
        assert_eq!(
            s.args(),
            [
                "server",
                "--cluster-init",
                "--node-ip",
                "10.10.0.51",
                "--node-name",
                "k3s-1",
                "--flannel-iface",
                "ens18",
                "--tls-san",
                "10.10.0.150",
                "--disable",
                "servicelb",
                "--node-label",
                "tier=control",
                "--cluster-cidr=10.42.0.0/16"
            ]
        );
        assert_eq!(s.env(), [("INSTALL_K3S_VERSION".to_string(), "v1.32.4+k3s1".to_string())]);
    }

    #[test]
    fn a_joining_server_gets_server_as_an_argument_and_no_k3s_url() {
        let s = joiner();
        s.validate().unwrap();
        let args = s.args();
        assert_eq!(args[..5], ["server", "--server", "https://10.10.0.150:6443", "--node-ip", "10.10.0.52"]);
        assert!(!args.contains(&"--cluster-init".to_string()));
        assert!(s.env().iter().all(|(k, _)| k != "K3S_URL"));
    }

    #[test]
    fn an_agent_gets_k3s_url_in_env_and_no_server_only_flags() {
        let s = agent();
        s.validate().unwrap();
        assert_eq!(
            s.args(),
            [
                "agent",
                "--node-ip",
                "10.10.0.61",
                "--node-name",
                "k3s-a1",
                "--flannel-iface",
                "ens18",
                "--node-label",
                "storage=true",
                "--node-taint",
                "dedicated=storage:NoSchedule",
                "--kubelet-arg=max-pods=200"
            ]
        );
        assert_eq!(
            s.env(),
            [
                ("INSTALL_K3S_VERSION".to_string(), "v1.32.4+k3s1".to_string()),
                ("K3S_URL".to_string(), "https://10.10.0.150:6443".to_string())
            ]
        );
        assert!(s.cluster_wide_args().is_empty());
    }

    #[test]
    fn airgap_installs_skip_the_download_and_run_the_uploaded_script() {
        let s =
            InstallSpec { source: InstallSource::Airgap { script_path: "/var/tmp/k3sx/install.sh".into() }, ..agent() };
        s.validate().unwrap();
        assert_eq!(s.env().last().unwrap(), &("INSTALL_K3S_SKIP_DOWNLOAD".to_string(), "true".to_string()));
        let cmd = s.command();
        assert!(cmd.contains(" sh /var/tmp/k3sx/install.sh agent "), "{cmd}");
        assert!(!cmd.contains("curl"), "{cmd}");
    }

    #[test]
    fn cluster_wide_args_are_equal_across_servers_whatever_their_node_facts() {
        let mut b = bootstrap();
        b.extra_args =
            vec!["--disable=traefik,local-storage".into(), "--secrets-encryption".into(), "--kubelet-arg=x=y".into()];
        let mut j = joiner();
        j.extra_args = vec![
            "--secrets-encryption=true".into(),
            "--disable".into(),
            "local-storage".into(),
            "--disable=traefik".into(),
        ];
        assert_eq!(b.cluster_wide_args(), j.cluster_wide_args());
        assert_eq!(
            b.cluster_wide_args(),
            ["--disable=local-storage", "--disable=servicelb", "--disable=traefik", "--secrets-encryption=true"]
        );
        j.disable.clear();
        assert_ne!(b.cluster_wide_args(), j.cluster_wide_args());
        j.disable = vec!["servicelb".into()];
        j.extra_args.push("--cluster-cidr=10.52.0.0/16".into());
        assert_ne!(b.cluster_wide_args(), j.cluster_wide_args());
    }

    #[test]
    fn the_command_reads_the_token_from_stdin_and_never_contains_it() {
        let dir = tempfile::tempdir().unwrap();
        let script = fake_script(dir.path());
        let s = InstallSpec { source: InstallSource::Airgap { script_path: script }, ..agent() };
        let cmd = s.command();
        let token = "K10deadbeef::server:not-on-the-command-line";
        assert!(!cmd.contains("not-on-the-command-line"));
        for shell in ["sh", "dash", "bash"] {
            if std::process::Command::new(shell).arg("-c").arg("true").status().is_err() {
                continue;
            }
            let (code, out, err) = run_in_sh(shell, &cmd, &format!("{token}\n"));
            assert_eq!(code, 0, "{shell}: {err}");
            assert!(out.contains(&format!("token:{token}\n")), "{shell}: {out}");
            assert!(out.starts_with("arg:agent\narg:--node-ip\narg:10.10.0.61\n"), "{shell}: {out}");
            assert!(out.contains("url:https://10.10.0.150:6443\n") && out.contains("skip:true\n"), "{out}");
            // Without the trailing newline the token is still read.
            let (code, out, _) = run_in_sh(shell, &cmd, token);
            assert_eq!(code, 0);
            assert!(out.contains(&format!("token:{token}\n")), "{out}");
        }
    }

    #[test]
    fn the_command_refuses_to_run_without_a_token_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let s = InstallSpec { source: InstallSource::Airgap { script_path: fake_script(dir.path()) }, ..agent() };
        let (code, out, err) = run_in_sh("sh", &s.command(), "");
        assert_eq!(code, 2);
        assert!(out.is_empty() && err.contains("no K3s token on stdin"), "{out} {err}");
    }

    #[test]
    fn a_failed_download_fails_the_command_instead_of_running_an_empty_script() {
        // A prerequisite of the tests (bash tests/setup installs it): no silent skip.
        assert!(
            std::process::Command::new("curl").arg("--version").output().is_ok(),
            "curl is missing: run `bash tests/setup`"
        );
        let s = InstallSpec {
            source: InstallSource::Online { url: "http://127.0.0.1:9/install.sh".into() },
            ..bootstrap()
        };
        let (code, _, err) = run_in_sh("sh", &s.command(), "tok\n");
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("cannot download the K3s install script from http://127.0.0.1:9/install.sh"), "{err}");
    }

    #[test]
    fn online_command_downloads_then_runs_with_the_version_in_env() {
        let cmd = bootstrap().command();
        assert!(cmd.starts_with("IFS= read -r K3S_TOKEN; "), "{cmd}");
        assert!(cmd.contains("curl -fsSL --retry 3 -o \"$k3sx_script\" https://get.k3s.io "), "{cmd}");
        assert!(
            cmd.ends_with(
                "K3S_TOKEN=\"$K3S_TOKEN\" INSTALL_K3S_VERSION=v1.32.4+k3s1 sh \"$k3sx_script\" server --cluster-init \
                 --node-ip 10.10.0.51 --node-name k3s-1 --flannel-iface ens18 --tls-san 10.10.0.150 --disable servicelb \
                 --node-label tier=control --cluster-cidr=10.42.0.0/16"
            ),
            "{cmd}"
        );
    }

    #[test]
    fn hostile_extra_values_are_quoted_so_the_shell_passes_them_literally() {
        let dir = tempfile::tempdir().unwrap();
        let hostile = ["--kubelet-arg=a'b", "--x=$(touch /tmp/k3sx-pwned)", "--y=`id`;rm -rf /", "--z=a b\"c"];
        let s = InstallSpec {
            extra_args: hostile.iter().map(|s| s.to_string()).collect(),
            source: InstallSource::Airgap { script_path: fake_script(dir.path()) },
            ..agent()
        };
        s.validate().unwrap();
        let (code, out, err) = run_in_sh("sh", &s.command(), "tok\n");
        assert_eq!(code, 0, "{err}");
        for h in hostile {
            assert!(out.contains(&format!("arg:{h}\n")), "{h}: {out}");
        }
        assert!(!std::path::Path::new("/tmp/k3sx-pwned").exists());
    }

    #[test]
    fn newlines_and_control_characters_are_refused_in_every_value() {
        let cases: Vec<fn(&mut InstallSpec)> = vec![
            |s| s.extra_args.push("--x=a\nb".into()),
            |s| s.node_labels.push("a=b\rc".into()),
            |s| s.tls_san.push("vip\u{0}".into()),
            |s| s.node_name = Some("k3s\n1".into()),
            |s| s.flannel_iface = Some("eth0\n".into()),
            |s| s.source = InstallSource::Online { url: "https://get.k3s.io/\n".into() },
            |s| s.source = InstallSource::Airgap { script_path: "/tmp/a\u{1b}b".into() },
        ];
        for (i, case) in cases.iter().enumerate() {
            let mut s = bootstrap();
            case(&mut s);
            assert_eq!(s.validate().unwrap_err().kind(), "invalid_value", "case {i}");
        }
        let mut s = joiner();
        s.server_url = Some("https://10.10.0.150:6443\n".into());
        assert_eq!(s.validate().unwrap_err().kind(), "invalid_server_url");
    }

    #[test]
    fn versions_must_be_exact() {
        for v in ["1.32.4+k3s1", "v1.32.4", "v1.32", "latest", " v1.32.4+k3s1", "v1.32.4+k3s1\n"] {
            let s = InstallSpec { version: v.into(), ..bootstrap() };
            assert_eq!(s.validate().unwrap_err().kind(), "invalid_version", "{v:?}");
        }
        InstallSpec { version: "v1.33.0-rc1+k3s1".into(), ..bootstrap() }.validate().unwrap();
    }

    #[test]
    fn server_urls_must_be_https_with_a_port() {
        for url in [
            "http://10.0.0.1:6443",
            "https://10.0.0.1",
            "https://10.0.0.1:6443/path",
            "https://10.0.0.1:0",
            "https://10.0.0.1:70000",
            "https://:6443",
            "https://a b:6443",
            "https://x';id;':6443",
            "https://[::1:6443",
        ] {
            let s = InstallSpec { server_url: Some(url.into()), ..joiner() };
            assert_eq!(s.validate().unwrap_err().kind(), "invalid_server_url", "{url}");
        }
        for url in ["https://10.0.0.1:6443", "https://k3s.lab.example:6443/", "https://[fd00::1]:6443"] {
            InstallSpec { server_url: Some(url.into()), ..joiner() }.validate().unwrap();
        }
    }

    #[test]
    fn impossible_role_combinations_are_refused() {
        let cases = [
            InstallSpec { bootstrap: true, ..agent() },
            InstallSpec { server_url: Some("https://10.0.0.1:6443".into()), ..bootstrap() },
            InstallSpec { server_url: None, ..joiner() },
            InstallSpec { server_url: None, ..agent() },
        ];
        for s in cases {
            assert_eq!(s.validate().unwrap_err().kind(), "invalid_role", "{s:?}");
        }
    }

    #[test]
    fn token_and_managed_flags_in_extra_args_are_refused() {
        for flag in ["--token=abc", "-t", "--agent-token", "--token-file=/x"] {
            let s = InstallSpec { extra_args: vec![flag.into()], ..bootstrap() };
            let err = s.validate().unwrap_err();
            assert_eq!(err.kind(), "managed_flag", "{flag}");
            assert!(!err.to_string().contains("abc"), "{err}");
        }
        for flag in ["--cluster-init", "--server=https://x:6443", "--node-ip", "--flannel-iface=eth1"] {
            let s = InstallSpec { extra_args: vec![flag.into()], ..agent() };
            assert_eq!(s.validate().unwrap_err().kind(), "managed_flag", "{flag}");
        }
    }

    #[test]
    fn source_urls_may_be_http_or_https_only() {
        for url in ["ftp://x/install.sh", "file:///tmp/install.sh", "https://", "get.k3s.io", "https://x/'a'"] {
            let s = InstallSpec { source: InstallSource::Online { url: url.into() }, ..bootstrap() };
            assert_eq!(s.validate().unwrap_err().kind(), "invalid_value", "{url}");
        }
        InstallSpec { source: InstallSource::Online { url: "http://127.0.0.1:8080/install.sh".into() }, ..bootstrap() }
            .validate()
            .unwrap();
    }

    #[test]
    fn labels_taints_names_and_interfaces_are_checked() {
        let bad: Vec<InstallSpec> = vec![
            InstallSpec { node_labels: vec!["novalue".into()], ..agent() },
            InstallSpec { node_taints: vec!["key=v:Sometimes".into()], ..agent() },
            InstallSpec { node_taints: vec!["key=v".into()], ..agent() },
            InstallSpec { node_name: Some("K3S_1".into()), ..agent() },
            InstallSpec { flannel_iface: Some("a-very-long-interface-name".into()), ..agent() },
            InstallSpec { disable: vec!["Service LB".into()], ..bootstrap() },
            InstallSpec { node_ip: "0.0.0.0".parse().unwrap(), ..agent() },
        ];
        for s in bad {
            assert_eq!(s.validate().unwrap_err().kind(), "invalid_value", "{s:?}");
        }
        InstallSpec { node_taints: vec!["CriticalAddonsOnly:NoExecute".into()], ..bootstrap() }.validate().unwrap();
    }

    #[test]
    fn roles_parse_and_uninstall_scripts_match_them() {
        assert_eq!("server".parse::<NodeRole>().unwrap(), NodeRole::Server);
        assert_eq!("agent".parse::<NodeRole>().unwrap(), NodeRole::Agent);
        assert_eq!("master".parse::<NodeRole>().unwrap_err().kind(), "invalid_value");
        assert_eq!(uninstall_command(NodeRole::Server), "/usr/local/bin/k3s-uninstall.sh");
        assert_eq!(uninstall_command(NodeRole::Agent), "/usr/local/bin/k3s-agent-uninstall.sh");
    }
}
