//! The Kubernetes manifests k3sx deploys: kube-vip (RBAC + DaemonSet) for the control-plane
//! VIP, MetalLB's address pool, and Longhorn's default-disk settings.
//!
//! Generated as data and serialised with the YAML crate, never by pasting strings into a
//! template, so every value is escaped and every number-looking string stays a string.

use std::net::IpAddr;

use serde_json::{Value, json};

/// K3s applies every file here at start and whenever it changes (names RFC 1123: no `_`).
pub const MANIFESTS_DIR: &str = "/var/lib/rancher/k3s/server/manifests";
/// Where [`kube_vip_rbac`] goes on the bootstrap server, before K3s starts.
pub const KUBE_VIP_RBAC_PATH: &str = "/var/lib/rancher/k3s/server/manifests/kube-vip-rbac.yaml";
/// Where [`kube_vip_daemonset`] goes on the bootstrap server, before K3s starts.
pub const KUBE_VIP_PATH: &str = "/var/lib/rancher/k3s/server/manifests/kube-vip.yaml";

/// The ConfigMap in Longhorn's deployment manifest that holds its settings at install time.
pub const LONGHORN_DEFAULT_SETTING_CONFIGMAP: &str = "longhorn-default-setting";
pub const LONGHORN_NAMESPACE: &str = "longhorn-system";
/// With this setting `true`, Longhorn creates its default disk only on nodes that carry
/// [`longhorn_default_disk_label`]: storage stays on the storage nodes.
pub const LONGHORN_CREATE_DEFAULT_DISK_LABELED_NODES: &str = "create-default-disk-labeled-nodes";

const METALLB_NAMESPACE: &str = "metallb-system";

/// Why a manifest could not be made. Values shown here come from the configuration, which
/// holds no secret.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("kube-vip version `{version}` is not a version tag like v0.9.1")]
    InvalidVersion { version: String },

    #[error("`{interface}` is not a network interface name")]
    InvalidInterface { interface: String },

    #[error("MetalLB address {value:?}: {reason}")]
    InvalidAddress { value: String, reason: &'static str },

    #[error("{field} {name:?} is not a Kubernetes name (lowercase letters, digits, `-`, `.`)")]
    InvalidName { field: &'static str, name: String },

    #[error("Longhorn manifest is not valid YAML: {message}")]
    Yaml { message: String },

    #[error("Longhorn manifest: ConfigMap `longhorn-default-setting` in `longhorn-system`: {reason}")]
    NoDefaultSettings { reason: &'static str },
}

impl ManifestError {
    /// A short, stable name of the error class, for scripts (`#{kind: ...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            ManifestError::InvalidVersion { .. } => "invalid_version",
            ManifestError::InvalidInterface { .. } => "invalid_interface",
            ManifestError::InvalidAddress { .. } => "invalid_address",
            ManifestError::InvalidName { .. } => "invalid_name",
            ManifestError::Yaml { .. } => "yaml",
            ManifestError::NoDefaultSettings { .. } => "no_default_settings",
        }
    }
}

/// kube-vip's RBAC, as `https://kube-vip.io/manifests/rbac.yaml` has it: ServiceAccount
/// `kube-vip` in `kube-system`, ClusterRole `system:kube-vip-role`, ClusterRoleBinding
/// `system:kube-vip-binding`. Built in so that air-gapped sites need no download.
pub fn kube_vip_rbac() -> String {
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| json!({"apiGroups": groups, "resources": resources, "verbs": verbs});
    let read_update = ["list", "get", "watch", "update"];
    yaml_documents(&[
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "kube-vip", "namespace": "kube-system"},
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {
                "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
                "name": "system:kube-vip-role",
            },
            "rules": [
                rule(&[""], &["services/status"], &["update"]),
                rule(&[""], &["services", "endpoints"], &read_update),
                rule(&[""], &["nodes"], &["list", "get", "watch", "update", "patch"]),
                rule(&["coordination.k8s.io"], &["leases"], &["list", "get", "watch", "update", "create"]),
                rule(&["discovery.k8s.io"], &["endpointslices"], &read_update),
                rule(&[""], &["pods"], &["list"]),
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:kube-vip-binding"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:kube-vip-role"},
            "subjects": [{"kind": "ServiceAccount", "name": "kube-vip", "namespace": "kube-system"}],
        }),
    ])
}

/// The kube-vip DaemonSet for a control-plane VIP in ARP mode with leader election, as
/// `kube-vip manifest daemonset --interface IF --address VIP --inCluster --taint
/// --controlplane --arp --leaderElection` generates it, with services off (MetalLB does
/// those). Runs only on control-plane nodes and tolerates their taints.
///
/// kube-vip v0.9.0 renamed the `vip_cidr` variable to `vip_subnet`; the one that `version`
/// reads is set (32 for an IPv4 VIP, 128 for IPv6).
///
/// # Errors
///
/// [`ManifestError`] when `version` is not a tag like `v0.9.1` or `interface` is not a
/// network interface name.
pub fn kube_vip_daemonset(version: &str, vip: IpAddr, interface: &str) -> Result<String, ManifestError> {
    let (major, minor, _) =
        parse_tag(version).ok_or_else(|| ManifestError::InvalidVersion { version: version.into() })?;
    if !super::install::is_interface_name(interface) {
        return Err(ManifestError::InvalidInterface { interface: interface.into() });
    }
    let subnet_var = if (major, minor) >= (0, 9) { "vip_subnet" } else { "vip_cidr" };
    let host_prefix = if vip.is_ipv4() { "32" } else { "128" };
    let env = |name: &str, value: &str| json!({"name": name, "value": value});
    let labels = json!({"app.kubernetes.io/name": "kube-vip-ds", "app.kubernetes.io/version": version});
    let role_exists = |role: &str| json!({"matchExpressions": [{"key": format!("node-role.kubernetes.io/{role}"), "operator": "Exists"}]});
    let daemonset = json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"labels": labels, "name": "kube-vip-ds", "namespace": "kube-system"},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "kube-vip-ds"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        // Terms are ORed: older clusters label `master`, newer ones `control-plane`.
                        "nodeSelectorTerms": [role_exists("master"), role_exists("control-plane")],
                    }}},
                    "containers": [{
                        "args": ["manager"],
                        "env": [
                            env("vip_arp", "true"),
                            env("port", "6443"),
                            {"name": "vip_nodename", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                            env("vip_interface", interface),
                            env(subnet_var, host_prefix),
                            env("cp_enable", "true"),
                            env("cp_namespace", "kube-system"),
                            env("vip_leaderelection", "true"),
                            env("vip_leaseduration", "5"),
                            env("vip_renewdeadline", "3"),
                            env("vip_retryperiod", "1"),
                            env("address", &vip.to_string()),
                            env("svc_enable", "false"),
                        ],
                        "image": format!("ghcr.io/kube-vip/kube-vip:{version}"),
                        "imagePullPolicy": "IfNotPresent",
                        "name": "kube-vip",
                        "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
                    }],
                    "hostNetwork": true,
                    "serviceAccountName": "kube-vip",
                    "tolerations": [
                        {"effect": "NoSchedule", "operator": "Exists"},
                        {"effect": "NoExecute", "operator": "Exists"},
                    ],
                },
            },
        },
    });
    Ok(yaml_documents(&[daemonset]))
}

/// `vMAJOR.MINOR.PATCH` with an optional `-suffix` on the patch (`v1.0.0-rc1`).
fn parse_tag(version: &str) -> Option<(u64, u64, u64)> {
    let rest = version.strip_prefix('v')?;
    let mut parts = rest.splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch_text = parts.next()?;
    let (patch, suffix) = patch_text.split_once('-').unwrap_or((patch_text, ""));
    let suffix_ok = suffix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
    if !suffix_ok || (patch_text.contains('-') && suffix.is_empty()) {
        return None;
    }
    Some((major, minor, patch.parse().ok()?))
}

/// MetalLB's L2 setup: an `IPAddressPool` named `pool_name` with `addresses` (each
/// `FIRST-LAST` or a CIDR) and an `L2Advertisement` named `l2_name` announcing it, both in
/// `metallb-system`. Apply only once MetalLB's webhook is ready, or the API server refuses it.
///
/// # Errors
///
/// [`ManifestError`] when the list is empty, an entry is neither a range of two addresses of
/// one family (first not after last) nor a CIDR, or a name is not a Kubernetes name.
pub fn metallb_pool(addresses: &[String], pool_name: &str, l2_name: &str) -> Result<String, ManifestError> {
    validate_k8s_name("pool name", pool_name)?;
    validate_k8s_name("L2Advertisement name", l2_name)?;
    if addresses.is_empty() {
        return Err(ManifestError::InvalidAddress { value: String::new(), reason: "the pool has no addresses" });
    }
    for a in addresses {
        validate_pool_entry(a)?;
    }
    Ok(yaml_documents(&[
        json!({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": pool_name, "namespace": METALLB_NAMESPACE},
            "spec": {"addresses": addresses},
        }),
        json!({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": {"name": l2_name, "namespace": METALLB_NAMESPACE},
            "spec": {"ipAddressPools": [pool_name]},
        }),
    ]))
}

fn validate_pool_entry(entry: &str) -> Result<(), ManifestError> {
    let bad = |reason| Err(ManifestError::InvalidAddress { value: entry.into(), reason });
    if let Some((first, last)) = entry.split_once('-') {
        let (Ok(first), Ok(last)) = (first.trim().parse::<IpAddr>(), last.trim().parse::<IpAddr>()) else {
            return bad("expected FIRST-LAST with two IP addresses");
        };
        if first.is_ipv4() != last.is_ipv4() {
            return bad("the two ends are of different address families");
        }
        if first > last {
            return bad("the first address is after the last");
        }
        return Ok(());
    }
    if let Some((ip, prefix)) = entry.split_once('/') {
        let Ok(ip) = ip.parse::<IpAddr>() else { return bad("expected an address before the `/`") };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if !prefix.parse::<u8>().is_ok_and(|p| p <= max) {
            return bad("the prefix length is out of range");
        }
        return Ok(());
    }
    if entry.parse::<IpAddr>().is_ok() {
        return bad("a single address must be written as a /32 (or /128) CIDR");
    }
    bad("expected FIRST-LAST or a CIDR")
}

/// The node label Longhorn looks for when [`LONGHORN_CREATE_DEFAULT_DISK_LABELED_NODES`] is
/// on: `node.longhorn.io/create-default-disk=true` (label the storage nodes with it).
pub fn longhorn_default_disk_label() -> (&'static str, &'static str) {
    ("node.longhorn.io/create-default-disk", "true")
}

/// Longhorn's deployment manifest (`longhorn.yaml`) with `settings` written into its
/// `longhorn-default-setting` ConfigMap, the way Longhorn's docs customise a kubectl install.
///
/// This is the mechanism for [`LONGHORN_CREATE_DEFAULT_DISK_LABELED_NODES`]: the setting must
/// be in force when longhorn-manager first registers each node, or default disks are already
/// created everywhere; a `Setting` applied after the manifest ([`longhorn_setting`]) races
/// with that. Only the ConfigMap document is rewritten; every other document is kept byte for
/// byte. Values are written as strings, as Longhorn stores every setting.
///
/// # Errors
///
/// [`ManifestError`] when a document is not YAML, the ConfigMap is missing, or its
/// `default-setting.yaml` is not a YAML map.
pub fn longhorn_with_default_settings(manifest: &str, settings: &[(&str, &str)]) -> Result<String, ManifestError> {
    for (name, _) in settings {
        validate_k8s_name("Longhorn setting", name)?;
    }
    for (start, end) in document_ranges(manifest) {
        let text = &manifest[start..end];
        let doc: Value = match yaml_serde::from_str(text) {
            Ok(doc) => doc,
            Err(e) => return Err(ManifestError::Yaml { message: e.to_string() }),
        };
        let is_it = doc["kind"] == "ConfigMap"
            && doc["metadata"]["name"] == LONGHORN_DEFAULT_SETTING_CONFIGMAP
            && doc["metadata"]["namespace"] == LONGHORN_NAMESPACE;
        if !is_it {
            continue;
        }
        let mut doc = doc;
        let current = doc["data"]["default-setting.yaml"].as_str().unwrap_or_default();
        let mut values: serde_json::Map<String, Value> = match yaml_serde::from_str::<Value>(current) {
            Ok(Value::Object(map)) => map,
            Ok(Value::Null) => serde_json::Map::new(),
            _ => return Err(ManifestError::NoDefaultSettings { reason: "its `default-setting.yaml` is not a map" }),
        };
        for (name, value) in settings {
            values.insert((*name).into(), Value::String((*value).into()));
        }
        let inner = yaml_serde::to_string(&values).expect("a map of strings serialises");
        if !doc["data"].is_object() {
            doc["data"] = json!({});
        }
        doc["data"]["default-setting.yaml"] = Value::String(inner);
        let replaced = yaml_serde::to_string(&doc).expect("a parsed document serialises");
        return Ok(format!("{}{replaced}{}", &manifest[..start], &manifest[end..]));
    }
    Err(ManifestError::NoDefaultSettings { reason: "not found" })
}

/// A Longhorn `Setting` object (`longhorn.io/v1beta2`) setting `name` to `value`: for changing
/// a setting of a running Longhorn (`kubectl apply` after its CRDs exist). For settings that
/// must hold from the start use [`longhorn_with_default_settings`].
///
/// # Errors
///
/// [`ManifestError::InvalidName`] when `name` is not a setting name.
pub fn longhorn_setting(name: &str, value: &str) -> Result<String, ManifestError> {
    validate_k8s_name("Longhorn setting", name)?;
    Ok(yaml_documents(&[json!({
        "apiVersion": "longhorn.io/v1beta2",
        "kind": "Setting",
        "metadata": {"name": name, "namespace": LONGHORN_NAMESPACE},
        "value": value,
    })]))
}

/// Byte ranges of the documents of a multi-document YAML text, split at `---` lines.
/// Kubernetes manifests never have a `---` line inside a document (block scalars are indented).
fn document_ranges(text: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t") {
            ranges.push((start, offset));
            start = offset + line.len();
        }
        offset += line.len();
    }
    ranges.push((start, text.len()));
    ranges.retain(|&(s, e)| !text[s..e].trim().is_empty());
    ranges
}

/// An RFC 1123 subdomain: what Kubernetes accepts as an object name.
fn validate_k8s_name(field: &'static str, name: &str) -> Result<(), ManifestError> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(ManifestError::InvalidName { field, name: name.into() });
    }
    Ok(())
}

fn yaml_documents(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| yaml_serde::to_string(d).expect("JSON values always serialise as YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &str) -> Vec<Value> {
        document_ranges(text).into_iter().map(|(s, e)| yaml_serde::from_str(&text[s..e]).unwrap()).collect()
    }

    fn env_of(ds: &Value) -> Vec<(String, Value)> {
        ds["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap().to_string(), e.get("value").cloned().unwrap_or(Value::Null)))
            .collect()
    }

    fn env_value<'a>(env: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
        env.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    #[test]
    fn kube_vip_rbac_has_the_account_role_and_binding_kube_vip_expects() {
        let docs = parse_all(&kube_vip_rbac());
        let kinds: Vec<_> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]);
        assert_eq!(docs[0]["metadata"], json!({"name": "kube-vip", "namespace": "kube-system"}));
        assert_eq!(docs[1]["metadata"]["name"], "system:kube-vip-role");
        let rules = docs[1]["rules"].as_array().unwrap();
        let grants = |group: &str, resource: &str, verb: &str| {
            rules.iter().any(|r| {
                r["apiGroups"].as_array().unwrap().contains(&json!(group))
                    && r["resources"].as_array().unwrap().contains(&json!(resource))
                    && r["verbs"].as_array().unwrap().contains(&json!(verb))
            })
        };
        assert!(grants("", "services/status", "update"));
        assert!(grants("", "services", "watch") && grants("", "endpoints", "update"));
        assert!(grants("", "nodes", "patch"));
        assert!(grants("coordination.k8s.io", "leases", "create") && grants("coordination.k8s.io", "leases", "update"));
        assert!(grants("discovery.k8s.io", "endpointslices", "list"));
        assert_eq!(docs[2]["roleRef"]["name"], "system:kube-vip-role");
        assert_eq!(
            docs[2]["subjects"][0],
            json!({"kind": "ServiceAccount", "name": "kube-vip", "namespace": "kube-system"})
        );
        // The annotation value is the string "true", not a boolean.
        assert_eq!(docs[1]["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"], json!("true"));
    }

    #[test]
    fn kube_vip_daemonset_matches_the_generated_arp_control_plane_manifest() {
        let ds = &parse_all(&kube_vip_daemonset("v0.9.1", "10.10.0.150".parse().unwrap(), "ens18").unwrap())[0];
        assert_eq!(ds["kind"], "DaemonSet");
        assert_eq!(ds["metadata"]["name"], "kube-vip-ds");
        assert_eq!(ds["metadata"]["namespace"], "kube-system");
        let pod = &ds["spec"]["template"]["spec"];
        assert_eq!(ds["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"], "kube-vip-ds");
        assert_eq!(ds["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"], "kube-vip-ds");
        assert_eq!(pod["hostNetwork"], true);
        assert_eq!(pod["serviceAccountName"], "kube-vip");
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "ghcr.io/kube-vip/kube-vip:v0.9.1");
        assert_eq!(c["args"], json!(["manager"]));
        assert_eq!(c["securityContext"]["capabilities"]["add"], json!(["NET_ADMIN", "NET_RAW"]));
        assert_eq!(
            pod["tolerations"],
            json!([{"effect": "NoSchedule", "operator": "Exists"}, {"effect": "NoExecute", "operator": "Exists"}])
        );
        let terms =
            pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                .as_array()
                .unwrap();
        let keys: Vec<_> = terms.iter().map(|t| t["matchExpressions"][0]["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["node-role.kubernetes.io/master", "node-role.kubernetes.io/control-plane"]);
        assert!(terms.iter().all(|t| t["matchExpressions"][0]["operator"] == "Exists"));

        let env = env_of(ds);
        for (name, value) in [
            ("vip_arp", "true"),
            ("port", "6443"),
            ("vip_interface", "ens18"),
            ("vip_subnet", "32"),
            ("cp_enable", "true"),
            ("cp_namespace", "kube-system"),
            ("vip_leaderelection", "true"),
            ("vip_leaseduration", "5"),
            ("vip_renewdeadline", "3"),
            ("vip_retryperiod", "1"),
            ("address", "10.10.0.150"),
            ("svc_enable", "false"),
        ] {
            // Kubernetes requires env values to be strings: "6443", not 6443.
            assert_eq!(env_value(&env, name), Some(&json!(value)), "{name}");
        }
        assert!(env_value(&env, "vip_cidr").is_none());
    }

    #[test]
    fn kube_vip_before_0_9_gets_vip_cidr_and_ipv6_vips_a_128_prefix() {
        let ds = &parse_all(&kube_vip_daemonset("v0.8.9", "10.0.0.5".parse().unwrap(), "eth0").unwrap())[0];
        let env = env_of(ds);
        assert_eq!(env_value(&env, "vip_cidr"), Some(&json!("32")));
        assert!(env_value(&env, "vip_subnet").is_none());
        let ds = &parse_all(&kube_vip_daemonset("v1.0.0", "fd00::150".parse().unwrap(), "enp6s18").unwrap())[0];
        assert_eq!(env_value(&env_of(ds), "vip_subnet"), Some(&json!("128")));
    }

    #[test]
    fn kube_vip_refuses_bad_versions_and_interfaces() {
        for v in ["0.9.1", "v0.9", "latest", "v0.9.1-", "v0.9.1 ", "v0.9.1;x"] {
            assert_eq!(
                kube_vip_daemonset(v, "10.0.0.1".parse().unwrap(), "eth0").unwrap_err().kind(),
                "invalid_version",
                "{v}"
            );
        }
        kube_vip_daemonset("v1.0.0-rc1", "10.0.0.1".parse().unwrap(), "eth0").unwrap();
        for iface in ["", "eth0 ", "eth0\nx", "a-very-long-interface-name", "eth0'"] {
            assert_eq!(
                kube_vip_daemonset("v0.9.1", "10.0.0.1".parse().unwrap(), iface).unwrap_err().kind(),
                "invalid_interface",
                "{iface:?}"
            );
        }
    }

    #[test]
    fn metallb_pool_and_advertisement_parse_back_with_the_reference_fields() {
        let text =
            metallb_pool(&["10.10.0.151-10.10.0.199".into(), "10.10.1.0/28".into()], "k3sx-pool", "k3sx-l2").unwrap();
        let docs = parse_all(&text);
        assert_eq!(
            docs[0],
            json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                   "metadata": {"name": "k3sx-pool", "namespace": "metallb-system"},
                   "spec": {"addresses": ["10.10.0.151-10.10.0.199", "10.10.1.0/28"]}})
        );
        assert_eq!(
            docs[1],
            json!({"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
                   "metadata": {"name": "k3sx-l2", "namespace": "metallb-system"},
                   "spec": {"ipAddressPools": ["k3sx-pool"]}})
        );
    }

    #[test]
    fn metallb_pool_refuses_entries_metallb_would_refuse() {
        for bad in
            ["", "10.0.0.9-10.0.0.1", "10.0.0.1-fd00::1", "10.0.0.1", "10.0.0.0/33", "x-y", "10.0.0.1 - 10.0.0.9;"]
        {
            let err = metallb_pool(&[bad.into()], "p", "l").unwrap_err();
            assert_eq!(err.kind(), "invalid_address", "{bad}");
        }
        assert_eq!(metallb_pool(&[], "p", "l").unwrap_err().kind(), "invalid_address");
        assert_eq!(metallb_pool(&["10.0.0.0/24".into()], "K3sx_pool", "l").unwrap_err().kind(), "invalid_name");
        metallb_pool(&["fd00::10-fd00::20".into(), "10.0.0.5/32".into()], "p", "l").unwrap();
    }

    /// The part of Longhorn's `deploy/longhorn.yaml` that matters here, shaped as upstream.
    const LONGHORN_YAML: &str = "\
---
# Source: longhorn/templates/namespace.yaml
apiVersion: v1
kind: Namespace
metadata:
  name: longhorn-system
---
# Source: longhorn/templates/default-setting.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: longhorn-default-setting
  namespace: longhorn-system
  labels:
    app.kubernetes.io/name: longhorn
data:
  default-setting.yaml: |-
    priority-class: longhorn-critical
    disable-revision-counter: true
---
# Source: longhorn/templates/crds.yaml
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: settings.longhorn.io   # keep this comment
spec:
  group: longhorn.io
";

    #[test]
    fn longhorn_default_settings_are_written_into_its_configmap_and_nothing_else_changes() {
        let out =
            longhorn_with_default_settings(LONGHORN_YAML, &[(LONGHORN_CREATE_DEFAULT_DISK_LABELED_NODES, "true")])
                .unwrap();
        let docs = parse_all(&out);
        assert_eq!(docs.len(), 3);
        let settings: Value = yaml_serde::from_str(docs[1]["data"]["default-setting.yaml"].as_str().unwrap()).unwrap();
        assert_eq!(settings["create-default-disk-labeled-nodes"], json!("true"));
        assert_eq!(settings["priority-class"], "longhorn-critical");
        assert_eq!(settings["disable-revision-counter"], true, "existing settings keep their value");
        assert_eq!(docs[1]["metadata"]["labels"]["app.kubernetes.io/name"], "longhorn");
        // The other documents are untouched, comments included.
        assert!(out.starts_with("---\n# Source: longhorn/templates/namespace.yaml\napiVersion: v1\nkind: Namespace\n"));
        assert!(out.ends_with("---\n# Source: longhorn/templates/crds.yaml\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: settings.longhorn.io   # keep this comment\nspec:\n  group: longhorn.io\n"));
        // Applying twice changes nothing more.
        let again =
            longhorn_with_default_settings(&out, &[(LONGHORN_CREATE_DEFAULT_DISK_LABELED_NODES, "true")]).unwrap();
        assert_eq!(again, out);
    }

    #[test]
    fn a_longhorn_manifest_without_the_configmap_is_refused() {
        let without = LONGHORN_YAML.replace("longhorn-default-setting", "something-else");
        assert_eq!(longhorn_with_default_settings(&without, &[("a", "b")]).unwrap_err().kind(), "no_default_settings");
        assert_eq!(longhorn_with_default_settings("a: [\n", &[("a", "b")]).unwrap_err().kind(), "yaml");
        assert_eq!(
            longhorn_with_default_settings(LONGHORN_YAML, &[("Bad_Name", "b")]).unwrap_err().kind(),
            "invalid_name"
        );
    }

    #[test]
    fn a_longhorn_setting_object_has_its_value_as_a_string() {
        let doc = &parse_all(&longhorn_setting(LONGHORN_CREATE_DEFAULT_DISK_LABELED_NODES, "true").unwrap())[0];
        assert_eq!(
            doc,
            &json!({"apiVersion": "longhorn.io/v1beta2", "kind": "Setting",
                    "metadata": {"name": "create-default-disk-labeled-nodes", "namespace": "longhorn-system"},
                    "value": "true"})
        );
        assert_eq!(longhorn_default_disk_label(), ("node.longhorn.io/create-default-disk", "true"));
    }

    #[test]
    fn manifest_paths_are_in_the_k3s_manifests_dir_and_rfc_1123() {
        for path in [KUBE_VIP_RBAC_PATH, KUBE_VIP_PATH] {
            let file = path.strip_prefix(MANIFESTS_DIR).unwrap().strip_prefix('/').unwrap();
            let stem = file.strip_suffix(".yaml").unwrap();
            assert!(validate_k8s_name("file", stem).is_ok(), "{file}");
        }
    }
}
