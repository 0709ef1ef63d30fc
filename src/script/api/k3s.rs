//! `k3s::` — versions and releases, the cluster token, the install invocation, node state,
//! the manifests k3sx deploys and the user's kubeconfig. The policy (which node when) is the
//! workflows'; here each step is one documented mechanism.

use std::sync::Arc;

use rhai::{Dynamic, INT, Map, Module};

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rhai::Array;

use super::core::write_local;
use super::{RhaiResult, register, remote, script_error, ssh_error};
use crate::config::InstallMode;
use crate::k3s::{
    InstallSource, InstallSpec, NodeRole, NodeState, ReleaseError, Version, kubeconfig, manifests, release,
};
use crate::script::Host;
use crate::secret::Secret;
use crate::ssh::CommandOptions;
use crate::ui::Level;

/// Where an air-gapped install script is uploaded on a node.
pub const AIRGAP_SCRIPT: &str = "/var/lib/rancher/k3sx/install.sh";

pub fn module(host: &Arc<Host>) -> Module {
    let mut m = Module::new();
    let h = host.clone();
    register(
        &mut m,
        "latest",
        &["channel: &str", "String"],
        "The latest K3s version in `channel` (`stable`, `latest`, `testing`, `v1.32`, ...), asked of the\n\
         channel server (`k3s.channel_url`).\n\n```rhai\nlet v = k3s::latest(\"stable\"); // \"v1.33.4+k3s1\"\n```",
        move |channel: &str| latest(&h, channel),
    );
    let h = host.clone();
    register(
        &mut m,
        "latest",
        &["String"],
        "The latest K3s version in the configured channel (`k3s.channel`).",
        move || latest(&h, &h.config().k3s.channel.clone()),
    );
    let h = host.clone();
    register(
        &mut m,
        "latest_github",
        &["Map"],
        "The latest K3s release on GitHub (`k3s.github_url`): `#{version, prerelease, draft, url}`.\n\
         GitHub allows 60 unauthenticated requests an hour; `GITHUB_TOKEN` raises that.\n\n\
         ```rhai\nlet r = k3s::latest_github(); print(r.version);\n```",
        move || -> RhaiResult<Map> {
            let url = &h.config().k3s.github_url;
            let token = std::env::var("GITHUB_TOKEN").ok().filter(|t| !t.is_empty()).map(Secret::new);
            let (version, rel) = release::latest_on_github(h.http(), url, token.as_ref())
                .map_err(|e| release_error(e, "k3s.github_url"))?;
            let mut m = Map::new();
            m.insert("version".into(), version.to_string().into());
            m.insert("prerelease".into(), rel.prerelease.into());
            m.insert("draft".into(), rel.draft.into());
            m.insert("url".into(), rel.html_url.into());
            Ok(m)
        },
    );
    register(
        &mut m,
        "compare",
        &["a: &str", "b: &str", "INT"],
        "Compares two K3s versions: -1, 0 or 1. The `+k3sN` suffix counts and release candidates\n\
         sort before their release.\n\n```rhai\nk3s::compare(\"v1.32.10+k3s1\", \"v1.32.9+k3s2\") // 1\n```",
        |a: &str, b: &str| -> RhaiResult<INT> { Ok(parse(a)?.cmp(&parse(b)?) as INT) },
    );
    register(
        &mut m,
        "parse_version",
        &["version: &str", "Map"],
        "Splits a K3s version into `#{major, minor, patch, rc, build, channel}` (`channel` is the\n\
         minor channel, e.g. `v1.32`; `rc` is `()` for releases). Fails on a malformed version.",
        |v: &str| -> RhaiResult<Map> {
            let v = parse(v)?;
            let mut m = Map::new();
            m.insert("major".into(), (v.major as INT).into());
            m.insert("minor".into(), (v.minor as INT).into());
            m.insert("patch".into(), (v.patch as INT).into());
            m.insert("rc".into(), v.rc.map(|r| Dynamic::from(r as INT)).unwrap_or(Dynamic::UNIT));
            m.insert("build".into(), (v.build as INT).into());
            m.insert("channel".into(), v.minor_channel().into());
            Ok(m)
        },
    );
    register_cluster(&mut m, host);
    register_day2(&mut m, host);
    m
}

fn parse(v: &str) -> RhaiResult<Version> {
    Version::parse(v).map_err(|e| script_error("version", e, Some(v)))
}

fn latest(host: &Host, channel: &str) -> RhaiResult<String> {
    let url = &host.config().k3s.channel_url;
    release::latest_in_channel(host.http(), url, channel)
        .map(|v| v.to_string())
        .map_err(|e| release_error(e, "k3s.channel_url"))
}

/// The error with what to do about it: the setting that holds the URL it names.
fn release_error(e: ReleaseError, setting: &str) -> Box<rhai::EvalAltResult> {
    let message = match &e {
        ReleaseError::Network { .. } => {
            format!("{e}: is this machine offline? The URL is the setting `{setting}`")
        }
        ReleaseError::NoSuchChannel { .. } => format!("{e}; the channel is the setting `k3s.channel`"),
        _ => format!("{e} (the setting `{setting}`)"),
    };
    script_error(e.kind(), message, None)
}

fn register_cluster(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    register(
        m,
        "token",
        &["Secret"],
        "The cluster token from `k3s.token_file`. When the file does not exist a strong one is made\n\
         (256 bits from the OS's CSPRNG) and written there, mode 0600, atomically (a change: under\n\
         `--dry-run` it is planned and the token not kept). A file readable by others is refused.\n\
         The token is a `Secret`: it never prints, and reaches a node only on stdin.\n\n\
         ```rhai\nlet token = k3s::token();\nk3s::install(ip, spec, token);\n```",
        move || token(&h),
    );
    register(
        m,
        "install_args",
        &["spec: Map", "Map"],
        "What `k3s::install(host, spec, token)` would run, without running it: `#{args, env,\n\
         cluster_wide}` — the full argument list, the installer's environment (never the token),\n\
         and the cluster-wide flags, which must be identical on every server.\n\
         `spec`: `#{role: \"server\"|\"agent\", ip, bootstrap, server, iface, name, version, labels, taints}`;\n\
         `server` is the URL joiners use (`https://VIP:6443`), `version` defaults to `k3s.version`.\n\
         TLS SANs (VIP, `k3s.tls_san`), `--disable servicelb` (MetalLB) and `k3s.server_args` /\n\
         `agent_args` come from the configuration.",
        {
            let h = host.clone();
            move |spec: Map| -> RhaiResult<Map> {
                let spec = install_spec(&h, &spec)?;
                let mut out = Map::new();
                out.insert("args".into(), strings(spec.args()));
                out.insert("cluster_wide".into(), strings(spec.cluster_wide_args()));
                let env: Map = spec.env().into_iter().map(|(k, v)| (k.into(), v.into())).collect();
                out.insert("env".into(), env.into());
                Ok(out)
            }
        },
    );
    let h = host.clone();
    register(
        m,
        "install",
        &["host: &str", "spec: Map", "token: Secret", "Map"],
        "Installs (or re-runs the installer of) K3s on `host` with the full argument set of\n\
         `install_args(spec)`: the install script (`k3s.install.url`, or in air-gap mode the script\n\
         uploaded to /var/lib/rancher/k3sx/install.sh with INSTALL_K3S_SKIP_DOWNLOAD) as root, the\n\
         token on stdin only. A change (planned under `--dry-run`). Waits up to\n\
         `k3s.install.timeout_secs`: a joining server's start blocks until its etcd join is done.\n\
         Returns `#{planned, changed, stdout}` (`changed` false when the installer said \"No change\n\
         detected\"); a failure is an error of kind `command` with host, code and stderr tail.",
        move |target: &str, spec: Map, token: Secret| install(&h, target, &spec, &token),
    );
    let h = host.clone();
    register(
        m,
        "facts",
        &["host: &str", "Map"],
        "What a node is, in one read as root (so it also proves `sudo -n` works): `#{hostname,\n\
         machine_id, version, unit, active, server_db, curl, iscsid, nfs, time, read_at, free_kb,\n\
         cloud_init}` — `version` of an installed\n\
         k3s or `()`, `unit` `server`/`agent`/`()`, `active` whether the service runs, `server_db`\n\
         whether etcd data exists, `curl` whether curl is installed, `iscsid` whether iscsid runs and\n\
         `nfs` whether an NFS client is there (Longhorn needs both), `time` the host's clock (Unix\n\
         seconds, as text; `read_at` is this machine's clock when the answer came), `free_kb` free\n\
         space under /var/lib/rancher, `cloud_init` the `cloud-init status` (`done`, `running`, ...; `()`\n\
         without cloud-init). A sudo that wants a password fails with kind `sudo_password`.",
        move |target: &str| facts(&h, target),
    );
    let h = host.clone();
    register(
        m,
        "interface",
        &["host: &str", "toward: &str", "Map"],
        "The NIC `host` reaches `toward` (e.g. the gateway) through, from `ip -j route get`:\n\
         `#{dev, src}` — kube-vip's `vip_interface` and flannel's interface; never assumed `eth0`.",
        move |target: &str, toward: &str| -> RhaiResult<Map> {
            let ip: IpAddr = toward
                .parse()
                .map_err(|_| script_error("argument", format!("`{toward}` is not an IP address"), None))?;
            let out = query(&h, target, &format!("ip -j route get {ip}"), false)?;
            let route = crate::k3s::default_interface_from_route_json(&out)
                .map_err(|e| script_error(e.kind(), format!("{target}: {e}"), Some(target)))?;
            let mut m = Map::new();
            m.insert("dev".into(), route.dev.into());
            m.insert("src".into(), route.prefsrc.map(|a| Dynamic::from(a.to_string())).unwrap_or(Dynamic::UNIT));
            Ok(m)
        },
    );
    let h = host.clone();
    register(
        m,
        "nodes",
        &["host: &str", "Array"],
        "The cluster's nodes as a server on `host` sees them (`k3s kubectl get nodes -o json`, as root):\n\
         `#{name, roles, version, ready, voter, ip, unschedulable, server}`. `ready` is the condition of\n\
         type Ready (never merely the last one); `voter` is `EtcdIsVoter` on servers (`()` elsewhere):\n\
         a joined or restarted server is a learner first, and the next may not join before it votes.",
        move |target: &str| -> RhaiResult<Array> { Ok(cluster_nodes(&h, target)?.iter().map(node_map).collect()) },
    );
    let h = host.clone();
    register(
        m,
        "wait_ready",
        &["host: &str", "names: Array", "voters: Array", "timeout: INT", "Array"],
        "Waits until every node in `names` is Ready and every one in `voters` is also an etcd voter, as\n\
         the server on `host` sees them, printing progress; returns the nodes. Kind `timeout` after\n\
         `timeout` seconds, naming each node that is not there yet and why. Under `--dry-run` it\n\
         looks once and does not wait (nothing was installed to wait for).",
        move |target: &str, names: Array, voters: Array, timeout: INT| wait_ready(&h, target, &names, &voters, timeout),
    );
    let h = host.clone();
    register(
        m,
        "kube_vip_manifests",
        &["iface: &str", "Map"],
        "kube-vip's RBAC and DaemonSet (ARP, leader election, control plane only) for `kube_vip.vip`\n\
         on `iface` (`kube_vip.interface` wins when set): `#{rbac, daemonset, rbac_path, path}`, to be\n\
         written into the bootstrap server's manifests directory before K3s starts.",
        move |iface: &str| -> RhaiResult<Map> {
            let kv = &h.config().kube_vip;
            let vip: IpAddr = kv
                .vip
                .parse()
                .map_err(|_| script_error("config", format!("kube_vip.vip `{}` is not an IP address", kv.vip), None))?;
            let iface = kv.interface.as_deref().unwrap_or(iface);
            let ds = manifests::kube_vip_daemonset(&kv.version, vip, iface)
                .map_err(|e| script_error(e.kind(), e.to_string(), None))?;
            let mut m = Map::new();
            m.insert("rbac".into(), manifests::kube_vip_rbac().into());
            m.insert("daemonset".into(), ds.into());
            m.insert("rbac_path".into(), manifests::KUBE_VIP_RBAC_PATH.into());
            m.insert("path".into(), manifests::KUBE_VIP_PATH.into());
            Ok(m)
        },
    );
    let h = host.clone();
    register(
        m,
        "metallb_pool",
        &["String"],
        "The MetalLB `IPAddressPool` (`k3sx-pool`, from `metallb.range`) and its `L2Advertisement`\n\
         (`k3sx-l2`) as YAML, to apply once MetalLB's webhook answers.",
        move || -> RhaiResult<String> {
            manifests::metallb_pool(&[h.config().metallb.range.clone()], "k3sx-pool", "k3sx-l2")
                .map_err(|e| script_error(e.kind(), e.to_string(), None))
        },
    );
    let h = host.clone();
    register(
        m,
        "kubeconfig",
        &["host: &str", "server: &str", "Map"],
        "Takes the kubeconfig of the server on `host` (/etc/rancher/k3s/k3s.yaml, as root), points it\n\
         at `server` (`https://VIP:6443`), names cluster, user and context `kubeconfig.context`, and\n\
         merges it into `kubeconfig.path` (else the first path of `$KUBECONFIG`, else ~/.kube/config):\n\
         other entries untouched, same-named ones replaced, `current-context` kept unless there was\n\
         none; atomic, mode 0600. A change. Returns `#{path, context, changed}`.",
        move |target: &str, server: &str| write_kubeconfig(&h, target, server),
    );
    let h = host.clone();
    register(
        m,
        "forget_kubeconfig",
        &["Map"],
        "Removes the `kubeconfig.context` cluster, user and context from the kubeconfig (other\n\
         entries untouched). A change. Returns `#{path, changed}`.",
        move || forget_kubeconfig(&h),
    );
    let h = host.clone();
    register(
        m,
        "longhorn_manifest",
        &["String"],
        "The Longhorn manifest (`longhorn.manifest`: a URL, fetched from this machine, or a local\n\
         file; `{version}` replaced by `longhorn.version`) with its default settings rewritten so\n\
         disks are created only on nodes labelled `node.longhorn.io/create-default-disk=true` —\n\
         the storage nodes. Set before Longhorn starts: a setting changed later races with the\n\
         default disks Longhorn creates as nodes register.",
        move || longhorn_manifest(&h),
    );
    register(
        m,
        "answers",
        &["ip: &str", "port: INT", "bool"],
        "True when something accepts a TCP connection on `ip:port` within a second (e.g. whether a\n\
         VIP is already taken before kube-vip claims it).",
        |ip: &str, port: INT| -> RhaiResult<bool> {
            let ip: IpAddr =
                ip.parse().map_err(|_| script_error("argument", format!("`{ip}` is not an IP address"), None))?;
            let port = u16::try_from(port).map_err(|_| script_error("argument", format!("port {port}"), None))?;
            Ok(std::net::TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(1)).is_ok())
        },
    );
}

fn strings(items: Vec<String>) -> Dynamic {
    items.into_iter().map(Dynamic::from).collect::<Array>().into()
}

/// A read on `host` (as root when `sudo`): its stdout.
fn query(host: &Host, target: &str, cmd: &str, sudo: bool) -> RhaiResult<String> {
    let run = CommandOptions { sudo, input: None, check: true, timeout: None };
    Ok(remote(host, target, cmd, &run, false)?.map(|o| o.stdout).unwrap_or_default())
}

fn token(host: &Host) -> RhaiResult<Secret> {
    let path = crate::config::expand_home(&host.config().k3s.token_file);
    let item = path.display().to_string();
    if let Some(t) = crate::k3s::read_token(&path).map_err(|e| script_error(e.kind(), e.to_string(), Some(&item)))? {
        return Ok(t);
    }
    let token = crate::k3s::generate_token();
    let content = crate::k3s::token_file_content(&token);
    if !host.changes.dry_run() {
        ensure_private_dir(&path)?;
    }
    if write_local(host, &path, content.expose().as_bytes(), 0o600, Some("K3s cluster token".into()))? == Some(true) {
        host.log(Level::Info, &format!("generated a new cluster token in {item}"));
    }
    Ok(token)
}

/// Creates a missing parent directory (mode 0700: it holds secrets) before a write.
fn ensure_private_dir(path: &std::path::Path) -> RhaiResult<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) else {
        return Ok(());
    };
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| script_error("io", format!("cannot create {}: {e}", dir.display()), None))
}

/// The install spec from a workflow's map and the configuration. Unknown keys are errors.
fn install_spec(host: &Host, spec: &Map) -> RhaiResult<InstallSpec> {
    const KEYS: [&str; 9] = ["role", "ip", "bootstrap", "server", "iface", "name", "version", "labels", "taints"];
    if let Some(k) = spec.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(script_error(
            "argument",
            format!("unknown install spec key `{k}` (known: {})", KEYS.join(", ")),
            None,
        ));
    }
    let text = |key: &str| -> Option<String> { spec.get(key).filter(|v| !v.is_unit()).map(|v| v.to_string()) };
    let list = |key: &str| -> Vec<String> {
        spec.get(key)
            .and_then(|v| v.read_lock::<Array>().map(|a| a.iter().map(|x| x.to_string()).collect()))
            .unwrap_or_default()
    };
    let role: NodeRole = text("role")
        .unwrap_or_default()
        .parse()
        .map_err(|e: crate::k3s::InstallError| script_error(e.kind(), e.to_string(), None))?;
    let ip = text("ip").unwrap_or_default();
    let node_ip: IpAddr = ip
        .parse()
        .map_err(|_| script_error("argument", format!("install spec: `ip` `{ip}` is not an IP address"), None))?;
    let c = host.config();
    let mut tls_san = Vec::new();
    if c.kube_vip.enabled {
        tls_san.push(c.kube_vip.vip.clone());
    }
    tls_san.extend(c.k3s.tls_san.iter().cloned());
    let source = match c.k3s.install.mode {
        InstallMode::Online => InstallSource::Online { url: c.k3s.install.url.clone() },
        InstallMode::Airgap => InstallSource::Airgap { script_path: AIRGAP_SCRIPT.into() },
    };
    let spec = InstallSpec {
        role,
        version: text("version").unwrap_or_else(|| c.k3s.version.clone()),
        bootstrap: spec.get("bootstrap").and_then(|b| b.as_bool().ok()).unwrap_or(false),
        server_url: text("server"),
        node_ip,
        node_name: text("name"),
        flannel_iface: text("iface"),
        tls_san,
        disable: if c.metallb.enabled { vec!["servicelb".into()] } else { vec![] },
        node_labels: list("labels"),
        node_taints: list("taints"),
        extra_args: match role {
            NodeRole::Server => c.k3s.server_args.clone(),
            NodeRole::Agent => c.k3s.agent_args.clone(),
        },
        source,
    };
    spec.validate().map_err(|e| script_error(e.kind(), e.to_string(), Some(&ip)))?;
    Ok(spec)
}

fn install(host: &Host, target: &str, spec: &Map, token: &Secret) -> RhaiResult<Map> {
    let spec = install_spec(host, spec)?;
    let input = crate::k3s::token_file_content(token);
    host.ssh().add_secret(token.expose());
    let timeout = Duration::from_secs(host.config().k3s.install.timeout_secs);
    let run =
        CommandOptions { sudo: true, input: Some(input.expose().as_bytes()), check: true, timeout: Some(timeout) };
    let out = remote(host, target, &spec.command(), &run, true)?;
    let mut m = Map::new();
    m.insert("planned".into(), out.is_none().into());
    let stdout = out.map(|o| o.stdout).unwrap_or_default();
    m.insert("changed".into(), (!stdout.contains("No change detected")).into());
    m.insert("stdout".into(), stdout.into());
    Ok(m)
}

/// One read as root that tells what a node is; `key=value` lines.
const FACTS: &str = r#"echo "hostname=$(uname -n)"
echo "machine_id=$(cat /etc/machine-id 2>/dev/null)"
if [ -x /usr/local/bin/k3s ]; then echo "version=$(/usr/local/bin/k3s --version 2>/dev/null | head -n 1 | cut -d ' ' -f 3)"; fi
if [ -f /etc/systemd/system/k3s.service ]; then echo unit=server; elif [ -f /etc/systemd/system/k3s-agent.service ]; then echo unit=agent; fi
if systemctl is-active --quiet k3s 2>/dev/null || systemctl is-active --quiet k3s-agent 2>/dev/null; then echo active=true; fi
if [ -d /var/lib/rancher/k3s/server/db ]; then echo server_db=true; fi
if command -v curl >/dev/null 2>&1; then echo curl=true; fi
if systemctl is-active --quiet iscsid 2>/dev/null; then echo iscsid=true; fi
if command -v mount.nfs >/dev/null 2>&1 || [ -x /sbin/mount.nfs ]; then echo nfs=true; fi
echo "time=$(date +%s.%N)"
dir=/var/lib/rancher; [ -d "$dir" ] || dir=/var/lib
echo "free_kb=$(df -Pk "$dir" 2>/dev/null | awk 'NR==2 {print $4}')"
if command -v cloud-init >/dev/null 2>&1; then echo "cloud_init=$(cloud-init status 2>/dev/null | sed -n 's/^status: //p')"; fi"#;

fn facts(host: &Host, target: &str) -> RhaiResult<Map> {
    let out = query(host, target, FACTS, true)?;
    let mut m = Map::new();
    for key in ["hostname", "machine_id", "version", "unit", "time", "free_kb", "cloud_init"] {
        m.insert(key.into(), Dynamic::UNIT);
    }
    for key in ["active", "server_db", "curl", "iscsid", "nfs"] {
        m.insert(key.into(), false.into());
    }
    m.insert(
        "read_at".into(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
            .into(),
    );
    for line in out.lines() {
        let Some((k, v)) = line.split_once('=') else { continue };
        let v = v.trim();
        let value: Dynamic = match v {
            "true" => true.into(),
            "" => Dynamic::UNIT,
            other => other.to_string().into(),
        };
        m.insert(k.trim().into(), value);
    }
    Ok(m)
}

fn cluster_nodes(host: &Host, target: &str) -> RhaiResult<Vec<NodeState>> {
    let out = query(host, target, "k3s kubectl get nodes -o json", true)?;
    crate::k3s::parse_nodes(&out).map_err(|e| script_error(e.kind(), format!("{target}: {e}"), Some(target)))
}

fn node_map(n: &NodeState) -> Dynamic {
    let mut m = Map::new();
    m.insert("name".into(), n.name.clone().into());
    m.insert("roles".into(), strings(n.roles.clone()));
    m.insert("version".into(), n.kubelet_version.clone().into());
    m.insert("ready".into(), n.ready.into());
    m.insert("voter".into(), n.etcd_voter.map(Dynamic::from).unwrap_or(Dynamic::UNIT));
    m.insert("ip".into(), n.internal_ip.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT));
    m.insert("unschedulable".into(), n.unschedulable.into());
    m.insert("server".into(), n.is_server().into());
    m.into()
}

/// Why `name` is not where the wait wants it, or `None` when it is.
fn not_yet(nodes: &[NodeState], name: &str, voter: bool) -> Option<String> {
    match nodes.iter().find(|n| n.name == name) {
        None => Some(format!("{name}: not registered")),
        Some(n) if !n.ready => Some(format!("{name}: not Ready")),
        Some(n) if voter && n.etcd_voter != Some(true) => Some(format!("{name}: etcd learner, not yet a voter")),
        Some(_) => None,
    }
}

fn wait_ready(host: &Host, target: &str, names: &Array, voters: &Array, timeout: INT) -> RhaiResult<Array> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let voters: Vec<String> = voters.iter().map(|n| n.to_string()).collect();
    poll_nodes(host, target, target, timeout, "not ready", |nodes| {
        let mut missing: Vec<String> = names.iter().filter_map(|n| not_yet(nodes, n, false)).collect();
        missing.extend(voters.iter().filter_map(|n| not_yet(nodes, n, true)));
        missing.dedup();
        let why = (!missing.is_empty()).then(|| missing.join("; "));
        (nodes.iter().map(node_map).collect(), why)
    })
}

/// The one wait on the cluster: reads its nodes through the server on `target` every 250 ms
/// until `check` finds no reason to wait (`(value, None)`), printing the reason every 5 s; a
/// server that does not answer for a moment (restarting) is "not yet". Kind `timeout` after
/// `timeout` seconds, `"{what} after Ns: {why}"`, naming `item`. Under `--dry-run` it looks
/// once and does not wait (nothing was installed to wait for).
fn poll_nodes<T>(
    host: &Host,
    target: &str,
    item: &str,
    timeout: INT,
    what: &str,
    check: impl Fn(&[NodeState]) -> (T, Option<String>),
) -> RhaiResult<T> {
    let timeout = Duration::from_secs(u64::try_from(timeout).unwrap_or(0).clamp(1, 86_400));
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let (value, why) = match cluster_nodes(host, target) {
            Ok(nodes) => check(&nodes),
            Err(e) => (check(&[]).0, Some(format!("the API on {target} does not answer: {}", message_of(&e)))),
        };
        let Some(why) = why else { return Ok(value) };
        if host.changes.dry_run() {
            return Ok(value);
        }
        if started.elapsed() >= timeout {
            return Err(script_error("timeout", format!("{what} after {}s: {why}", timeout.as_secs()), Some(item)));
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            host.log(Level::Info, &format!("waiting ({}s): {why}", started.elapsed().as_secs()));
            last_report = Instant::now();
        }
        if !host.sleep(Duration::from_millis(250)) {
            return Err(rhai::EvalAltResult::ErrorTerminated("cancelled".into(), rhai::Position::NONE).into());
        }
    }
}

/// The message of a script error: `e.message` for our maps, the text otherwise.
fn message_of(e: &rhai::EvalAltResult) -> String {
    match e {
        rhai::EvalAltResult::ErrorRuntime(v, _) => super::error_message(v),
        other => other.to_string(),
    }
}

/// The kubeconfig k3sx writes: `kubeconfig.path`, else the first path of `$KUBECONFIG`, else
/// `~/.kube/config`.
fn kubeconfig_path(host: &Host) -> PathBuf {
    if let Some(p) = &host.config().kubeconfig.path {
        return crate::config::expand_home(p);
    }
    if let Some(first) = std::env::var_os("KUBECONFIG").and_then(|v| std::env::split_paths(&v).next())
        && !first.as_os_str().is_empty()
    {
        return first;
    }
    crate::config::expand_home(std::path::Path::new("~/.kube/config"))
}

fn read_existing(path: &std::path::Path) -> RhaiResult<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(script_error("io", format!("cannot read {}: {e}", path.display()), None)),
    }
}

fn write_kubeconfig(host: &Host, target: &str, server: &str) -> RhaiResult<Map> {
    let context = host.config().kubeconfig.context.clone();
    let path = kubeconfig_path(host);
    let kc_error = |e: crate::k3s::KubeconfigError| script_error(e.kind(), e.to_string(), Some(target));
    let mut m = Map::new();
    m.insert("path".into(), path.display().to_string().into());
    m.insert("context".into(), context.clone().into());
    let k3s_yaml = match host.ssh().read(target, "/etc/rancher/k3s/k3s.yaml") {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        // Under --dry-run on a cluster still to be installed there is nothing to read yet.
        Err(e) if host.changes.dry_run() => {
            tracing::debug!("no kubeconfig to read on {target} yet: {e}");
            let change = crate::change::Change::LocalFile(crate::change::LocalFile {
                path: path.clone(),
                mode: 0o600,
                size: 0,
                what: Some(format!("kubeconfig context `{context}` from {target}, once installed")),
            });
            host.changes.apply(None, change, |_| Ok::<_, String>(())).map_err(|e| script_error("io", e, None))?;
            m.insert("changed".into(), true.into());
            return Ok(m);
        }
        Err(e) => return Err(ssh_error(&e)),
    };
    let mine = kubeconfig::for_user(&k3s_yaml, server, &context).map_err(kc_error)?;
    let merged = kubeconfig::merge(read_existing(&path)?.as_deref(), &mine).map_err(kc_error)?;
    if !host.changes.dry_run() {
        ensure_private_dir(&path)?;
    }
    let written = write_local(host, &path, merged.as_bytes(), 0o600, Some(format!("kubeconfig context `{context}`")))?;
    m.insert("changed".into(), written.is_some().into());
    Ok(m)
}

fn forget_kubeconfig(host: &Host) -> RhaiResult<Map> {
    let context = host.config().kubeconfig.context.clone();
    let path = kubeconfig_path(host);
    let mut m = Map::new();
    m.insert("path".into(), path.display().to_string().into());
    let Some(existing) = read_existing(&path)? else {
        m.insert("changed".into(), false.into());
        return Ok(m);
    };
    let (text, changed) = kubeconfig::remove(&existing, &context)
        .map_err(|e| script_error(e.kind(), e.to_string(), Some(&path.display().to_string())))?;
    let written = if changed {
        write_local(host, &path, text.as_bytes(), 0o600, Some(format!("kubeconfig without context `{context}`")))?
    } else {
        None
    };
    m.insert("changed".into(), written.is_some().into());
    Ok(m)
}

fn longhorn_manifest(host: &Host) -> RhaiResult<String> {
    let c = &host.config().longhorn;
    let source = c.manifest.replace("{version}", &c.version);
    let text = if source.starts_with("https://") || source.starts_with("http://") {
        let fetch =
            || -> Result<String, reqwest::Error> { host.http().get(&source).send()?.error_for_status()?.text() };
        fetch().map_err(|e| {
            script_error(
                "network",
                format!("cannot fetch the Longhorn manifest {source} (longhorn.manifest): {e}"),
                None,
            )
        })?
    } else {
        let path = crate::config::expand_home(std::path::Path::new(&source));
        std::fs::read_to_string(&path)
            .map_err(|e| script_error("io", format!("cannot read {} (longhorn.manifest): {e}", path.display()), None))?
    };
    manifests::longhorn_with_default_settings(&text, &[(manifests::LONGHORN_CREATE_DEFAULT_DISK_LABELED_NODES, "true")])
        .map_err(|e| script_error(e.kind(), format!("{source}: {e}"), None))
}

/// Day 2: upgrades, node removal and teardown.
fn register_day2(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    register(
        m,
        "wait_version",
        &["host: &str", "name: &str", "version: &str", "voter: bool", "timeout: INT", "Dynamic"],
        "Waits until node `name` — as the server on `host` sees it — reports kubelet `version`, is\n\
         Ready and, when `voter` is true (a server), is an etcd voter again (`EtcdIsVoter`): what an\n\
         upgraded node must be before the next one restarts. A server that does not answer for a\n\
         moment (restarting) counts as \"not yet\". Prints progress; returns the node\n\
         (`k3s::nodes` shape). Kind `timeout` after `timeout` seconds, saying where the node is.\n\
         Under `--dry-run` it looks once and does not wait (nothing was installed): the node as it\n\
         is, or `()`.\n\n\
         ```rhai\nk3s::install(n.ip, spec, token);\nk3s::wait_version(other.ip, n.name, \"v1.31.12+k3s1\", true, 300);\n```",
        move |target: &str, name: &str, version: &str, voter: bool, timeout: INT| {
            wait_version(&h, target, name, version, voter, timeout)
        },
    );
    let h = host.clone();
    register(
        m,
        "etcd_snapshot",
        &["host: &str", "prefix: &str", "Map"],
        "Saves an on-demand etcd snapshot on the server `host` (`k3s etcd-snapshot save --name\n\
         PREFIX-YYYYMMDD-HHMMSS`, UTC, as root): a change (planned under `--dry-run`). Returns\n\
         `#{name, file, planned}`: `name` as given to K3s, `file` the snapshot K3s wrote under\n\
         /var/lib/rancher/k3s/server/db/snapshots/ (K3s appends the node and the time; `()` when\n\
         planned or not reported) — what a cluster restore (`k3s server --cluster-reset\n\
         --cluster-reset-restore-path=FILE`) needs.\n\n\
         ```rhai\nlet s = k3s::etcd_snapshot(live.ip, \"k3sx-pre-upgrade\");\ninfo(`etcd snapshot ${s.name}`);\n```",
        move |target: &str, prefix: &str| etcd_snapshot(&h, target, prefix),
    );
    let h = host.clone();
    register(
        m,
        "kubeconfig_entry",
        &["Map"],
        "Whether the kubeconfig k3sx writes (see `k3s::kubeconfig`) has the `kubeconfig.context`\n\
         cluster, user or context: `#{path, context, present}`. A read.\n\n\
         ```rhai\nlet kc = k3s::kubeconfig_entry();\nif kc.present { info(`would remove '${kc.context}' from ${kc.path}`); }\n```",
        move || kubeconfig_entry(&h),
    );
    register(
        m,
        "uninstall_script",
        &["role: &str", "String"],
        "The script K3s's installer leaves on a node to remove it: `/usr/local/bin/k3s-uninstall.sh`\n\
         for `server`, `/usr/local/bin/k3s-agent-uninstall.sh` for `agent`. It stops K3s and removes\n\
         its files, but leaves the kube-vip VIP on the NIC and the Node in the cluster.\n\n\
         ```rhai\nssh::run(n.ip, k3s::uninstall_script(n.facts.unit));\n```",
        |role: &str| -> RhaiResult<String> {
            let role: NodeRole =
                role.parse().map_err(|e: crate::k3s::InstallError| script_error(e.kind(), e.to_string(), None))?;
            Ok(crate::k3s::uninstall_command(role).to_string())
        },
    );
}

fn kubeconfig_entry(host: &Host) -> RhaiResult<Map> {
    let context = host.config().kubeconfig.context.clone();
    let path = kubeconfig_path(host);
    let item = path.display().to_string();
    let present = match read_existing(&path)? {
        None => false,
        Some(text) => {
            kubeconfig::remove(&text, &context).map_err(|e| script_error(e.kind(), e.to_string(), Some(&item)))?.1
        }
    };
    let mut m = Map::new();
    m.insert("path".into(), item.into());
    m.insert("context".into(), context.into());
    m.insert("present".into(), present.into());
    Ok(m)
}

fn wait_version(
    host: &Host,
    target: &str,
    name: &str,
    version: &str,
    voter: bool,
    timeout: INT,
) -> RhaiResult<Dynamic> {
    poll_nodes(host, target, name, timeout, "not back", |nodes| {
        let found = nodes.iter().find(|n| n.name == name).map(node_map).unwrap_or(Dynamic::UNIT);
        (found, crate::k3s::lifecycle::not_upgraded(nodes, name, version, voter))
    })
}

fn etcd_snapshot(host: &Host, target: &str, prefix: &str) -> RhaiResult<Map> {
    let name = format!("{prefix}-{}", crate::k3s::lifecycle::utc_stamp(std::time::SystemTime::now()));
    let cmd =
        crate::k3s::lifecycle::etcd_snapshot_command(&name).map_err(|e| script_error("argument", e, Some(target)))?;
    let timeout = Duration::from_secs(host.config().k3s.install.timeout_secs);
    let run = CommandOptions { sudo: true, input: None, check: true, timeout: Some(timeout) };
    let out = remote(host, target, &cmd, &run, true)?;
    let mut m = Map::new();
    m.insert("name".into(), name.into());
    m.insert("planned".into(), out.is_none().into());
    let file = out.and_then(|o| {
        crate::k3s::lifecycle::saved_snapshot(&o.stderr).or_else(|| crate::k3s::lifecycle::saved_snapshot(&o.stdout))
    });
    m.insert("file".into(), file.map(Dynamic::from).unwrap_or(Dynamic::UNIT));
    Ok(m)
}
