//! The user's kubeconfig: K3s's `/etc/rancher/k3s/k3s.yaml` made usable from the workstation,
//! merged into an existing kubeconfig without a local `kubectl`.
//!
//! The merge replaces same-named entries (k3sup's merge keeps the stale ones, so a rebuilt
//! cluster's new credentials lose: k3sup #95, #316) and leaves every other entry, key and
//! order alone. A kubeconfig holds client keys: no error here carries a value from it, only
//! key names, entry names and positions.

use yaml_serde::{Mapping, Value};

use super::install::validate_server_url;

/// The three named lists of a kubeconfig.
const LISTS: [&str; 3] = ["clusters", "users", "contexts"];

/// K3s names its cluster, user and context `default`.
const K3S_NAME: &str = "default";

/// Why a kubeconfig could not be read or changed. Never holds a value from the file.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("{what} is not valid YAML: {message}{}", at(*line, *column))]
    Yaml { what: &'static str, message: String, line: Option<usize>, column: Option<usize> },

    #[error("{what} is not a kubeconfig: {reason}")]
    NotAKubeconfig { what: &'static str, reason: String },

    #[error("{what} has no {entry} named `{name}`")]
    MissingEntry { what: &'static str, entry: &'static str, name: String },

    #[error("invalid context name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error("invalid API server URL: {reason}")]
    InvalidServer { reason: String },

    #[error("cannot write the kubeconfig as YAML: {message}")]
    Serialize { message: String },
}

impl KubeconfigError {
    /// A short, stable name of the error class, for scripts (`#{kind: ...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            KubeconfigError::Yaml { .. } => "yaml",
            KubeconfigError::NotAKubeconfig { .. } => "not_a_kubeconfig",
            KubeconfigError::MissingEntry { .. } => "missing_entry",
            KubeconfigError::InvalidName { .. } => "invalid_name",
            KubeconfigError::InvalidServer { .. } => "invalid_server",
            KubeconfigError::Serialize { .. } => "serialize",
        }
    }
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
        (Some(l), None) => format!(" (line {l})"),
        _ => String::new(),
    }
}

/// Makes K3s's `k3s.yaml` the kubeconfig a user needs: every cluster's `server:` becomes
/// `server_url` (K3s writes `https://127.0.0.1:6443`), and the cluster, user and context
/// named `default` — and the context's references to them, and `current-context` — become
/// `name`.
///
/// # Errors
///
/// [`KubeconfigError`] when `name` is empty or has whitespace or control characters,
/// `server_url` is not `https://HOST:PORT`, the text is not YAML or not a kubeconfig, or it
/// lacks the cluster, user or context named `default`.
pub fn for_user(k3s_yaml: &str, server_url: &str, name: &str) -> Result<String, KubeconfigError> {
    const WHAT: &str = "k3s.yaml";
    validate_name(name)?;
    validate_server_url(server_url).map_err(|e| KubeconfigError::InvalidServer { reason: e.to_string() })?;
    let mut doc = parse(WHAT, k3s_yaml)?;
    for list in LISTS {
        let entries = list_mut(WHAT, &mut doc, list)?;
        let mut renamed = false;
        for (index, entry) in entries.iter_mut().enumerate() {
            let map = entry_map_mut(WHAT, list, index, entry)?;
            if map.get("name").and_then(Value::as_str) == Some(K3S_NAME) {
                map.insert("name".into(), name.into());
                renamed = true;
            }
            let body = match list {
                "clusters" => "cluster",
                "users" => "user",
                _ => "context",
            };
            let Some(Value::Mapping(body)) = map.get_mut(body) else {
                return Err(not_a_kubeconfig(WHAT, format!("entry {index} of `{list}` has no `{body}` map")));
            };
            match list {
                "clusters" => {
                    body.insert("server".into(), server_url.into());
                }
                "contexts" => {
                    for reference in ["cluster", "user"] {
                        if body.get(reference).and_then(Value::as_str) == Some(K3S_NAME) {
                            body.insert(reference.into(), name.into());
                        }
                    }
                }
                _ => {}
            }
        }
        if !renamed {
            return Err(KubeconfigError::MissingEntry { what: WHAT, entry: singular(list), name: K3S_NAME.into() });
        }
    }
    let current = doc.get("current-context").and_then(Value::as_str);
    if current.is_none_or(|c| c == K3S_NAME || c.is_empty()) {
        doc.insert("current-context".into(), name.into());
    }
    serialize(&doc)
}

/// Merges the kubeconfig `new` into `existing` (the file's text, `None` when there is no
/// file): entries of `clusters`, `users` and `contexts` with a name `new` also has are
/// **replaced** by `new`'s, where they stood; the others keep their place, their content and
/// any fields k3sx does not know; `new`'s other entries are appended. `current-context` is
/// left alone unless `existing` has none (then it becomes `new`'s). `preferences`,
/// `extensions` and unknown top-level keys are kept.
///
/// # Errors
///
/// [`KubeconfigError`] when either text is not YAML or not a kubeconfig (a list that is not a
/// list, an entry without a name).
pub fn merge(existing: Option<&str>, new: &str) -> Result<String, KubeconfigError> {
    let incoming = parse("the new kubeconfig", new)?;
    let mut doc = match existing {
        Some(text) => parse("the existing kubeconfig", text)?,
        // Nothing to keep: the new kubeconfig is the whole file.
        None => incoming.clone(),
    };
    for (key, default) in [("apiVersion", "v1"), ("kind", "Config")] {
        if !doc.contains_key(key) {
            doc.insert(key.into(), default.into());
        }
    }
    for list in LISTS {
        let new_entries = list_of("the new kubeconfig", &incoming, list)?;
        let new_names = names("the new kubeconfig", list, new_entries)?;
        // Validate the existing list once, so that an unnamed entry is an error, not skipped.
        names("the existing kubeconfig", list, list_of("the existing kubeconfig", &doc, list)?)?;
        let entries = list_mut("the existing kubeconfig", &mut doc, list)?;
        for (entry, name) in new_entries.iter().zip(&new_names) {
            let same = |e: &Value| e.get("name").and_then(Value::as_str) == Some(name.as_str());
            match entries.iter().position(same) {
                Some(first) => {
                    entries[first] = entry.clone();
                    // Later duplicates would win when client-go loads the file: drop them.
                    let mut index = 0;
                    entries.retain(|e| {
                        index += 1;
                        index - 1 <= first || !same(e)
                    });
                }
                None => entries.push(entry.clone()),
            }
        }
    }
    let has_current = doc.get("current-context").and_then(Value::as_str).is_some_and(|c| !c.is_empty());
    if !has_current && let Some(current) = current_context_of(&incoming) {
        doc.insert("current-context".into(), current.into());
    }
    serialize(&doc)
}

/// Removes the cluster, user and context named `name` from `existing`, and clears
/// `current-context` when it was `name`. Returns the new text and whether anything changed;
/// unchanged text is returned exactly as given.
///
/// # Errors
///
/// [`KubeconfigError`] when `existing` is not YAML or not a kubeconfig.
pub fn remove(existing: &str, name: &str) -> Result<(String, bool), KubeconfigError> {
    const WHAT: &str = "the kubeconfig";
    let mut doc = parse(WHAT, existing)?;
    let mut changed = false;
    for list in LISTS {
        if list_of(WHAT, &doc, list)?.is_empty() {
            continue;
        }
        let entries = list_mut(WHAT, &mut doc, list)?;
        let before = entries.len();
        entries.retain(|e| e.get("name").and_then(Value::as_str) != Some(name));
        changed |= entries.len() != before;
    }
    if doc.get("current-context").and_then(Value::as_str) == Some(name) {
        doc.insert("current-context".into(), "".into());
        changed = true;
    }
    if !changed {
        return Ok((existing.to_string(), false));
    }
    Ok((serialize(&doc)?, true))
}

/// The API server URL of context `name` (through the cluster it refers to), or of the cluster
/// named `name` when there is no such context. `None` when neither exists or the text is not
/// a readable kubeconfig.
pub fn server_of(existing: &str, name: &str) -> Option<String> {
    let doc = parse("the kubeconfig", existing).ok()?;
    let find = |list: &str, wanted: &str| -> Option<Value> {
        let entries = list_of("the kubeconfig", &doc, list).ok()?;
        entries.iter().find(|e| e.get("name").and_then(Value::as_str) == Some(wanted)).cloned()
    };
    let cluster_name = find("contexts", name)
        .and_then(|c| c.get("context")?.get("cluster")?.as_str().map(str::to_string))
        .unwrap_or_else(|| name.to_string());
    find("clusters", &cluster_name)?.get("cluster")?.get("server")?.as_str().map(str::to_string)
}

fn validate_name(name: &str) -> Result<(), KubeconfigError> {
    if name.is_empty() {
        return Err(KubeconfigError::InvalidName { name: name.into(), reason: "it is empty" });
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(KubeconfigError::InvalidName {
            name: name.into(),
            reason: "it contains whitespace or control characters",
        });
    }
    Ok(())
}

fn singular(list: &str) -> &'static str {
    match list {
        "clusters" => "cluster",
        "users" => "user",
        _ => "context",
    }
}

fn not_a_kubeconfig(what: &'static str, reason: String) -> KubeconfigError {
    KubeconfigError::NotAKubeconfig { what, reason }
}

/// The document's top-level map. An empty document (no content, or only comments) is an
/// empty map, as kubectl treats an empty file.
fn parse(what: &'static str, text: &str) -> Result<Mapping, KubeconfigError> {
    let value: Value = yaml_serde::from_str(text).map_err(|e| yaml_error(what, &e))?;
    match value {
        Value::Mapping(map) => Ok(map),
        Value::Null => Ok(Mapping::new()),
        other => Err(not_a_kubeconfig(what, format!("the top level is {}, not a map", type_name(&other)))),
    }
}

/// The parser's message without its position (given separately) and without anything quoted
/// from the input: a message about a bad line may otherwise quote a key's data.
fn yaml_error(what: &'static str, e: &yaml_serde::Error) -> KubeconfigError {
    let text = e.to_string();
    let text = text.split(" at line ").next().unwrap_or_default();
    let mut message = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => {
                message.push('…');
                message.push(c);
                quote = None;
            }
            Some(_) => {}
            None if c == '"' || c == '`' || c == '\'' => {
                message.push(c);
                quote = Some(c);
            }
            None => message.push(c),
        }
    }
    if quote.is_some() {
        message.push('…');
    }
    let location = e.location();
    KubeconfigError::Yaml {
        what,
        message,
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

/// The entries of `list`; a missing or `null` list (kubectl writes `clusters: null`) is empty.
fn list_of<'a>(what: &'static str, doc: &'a Mapping, list: &str) -> Result<&'a [Value], KubeconfigError> {
    match doc.get(list) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Sequence(entries)) => Ok(entries),
        Some(other) => Err(not_a_kubeconfig(what, format!("`{list}` is {}, not a list", type_name(other)))),
    }
}

fn list_mut<'a>(what: &'static str, doc: &'a mut Mapping, list: &str) -> Result<&'a mut Vec<Value>, KubeconfigError> {
    let slot = doc.entry(list.into()).or_insert(Value::Sequence(Vec::new()));
    if slot.is_null() {
        *slot = Value::Sequence(Vec::new());
    }
    match slot {
        Value::Sequence(entries) => Ok(entries),
        other => Err(not_a_kubeconfig(what, format!("`{list}` is {}, not a list", type_name(other)))),
    }
}

fn entry_map_mut<'a>(
    what: &'static str,
    list: &str,
    index: usize,
    entry: &'a mut Value,
) -> Result<&'a mut Mapping, KubeconfigError> {
    match entry {
        Value::Mapping(map) => Ok(map),
        other => Err(not_a_kubeconfig(what, format!("entry {index} of `{list}` is {}, not a map", type_name(other)))),
    }
}

/// Every entry's name, in order; an entry without a string `name` is an error.
fn names(what: &'static str, list: &str, entries: &[Value]) -> Result<Vec<String>, KubeconfigError> {
    entries
        .iter()
        .enumerate()
        .map(|(index, e)| {
            e.get("name")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| not_a_kubeconfig(what, format!("entry {index} of `{list}` has no name")))
        })
        .collect()
}

/// `current-context`, or the only context's name when there is exactly one.
fn current_context_of(doc: &Mapping) -> Option<String> {
    if let Some(current) = doc.get("current-context").and_then(Value::as_str).filter(|c| !c.is_empty()) {
        return Some(current.to_string());
    }
    match doc.get("contexts") {
        Some(Value::Sequence(contexts)) if contexts.len() == 1 => {
            contexts[0].get("name").and_then(Value::as_str).map(str::to_string)
        }
        _ => None,
    }
}

fn serialize(doc: &Mapping) -> Result<String, KubeconfigError> {
    yaml_serde::to_string(doc).map_err(|e| KubeconfigError::Serialize { message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What K3s writes to /etc/rancher/k3s/k3s.yaml (keys shortened).
    const K3S_YAML: &str = "\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJkakNDQVIyZ0F3SUJBZ0lCQURBS0JnZ3Foa2pPUFFRREFqQWpNU0V3SHdZRFZRUUREQmhyTTNNdGMyVnkK
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0xJRU5UQ0VSVE5FVw==
    client-key-data: S0VZTkVXU0VDUkVU
";

    /// A kubeconfig as kubectl writes it, with an unrelated cluster (exec credentials,
    /// extensions) and a stale `k3sx` from a cluster that has since been rebuilt.
    const EXISTING: &str = "\
apiVersion: v1
clusters:
- cluster:
    certificate-authority: /home/me/.minikube/ca.crt
    extensions:
    - extension:
        last-update: Mon, 01 Jan 2024 10:00:00 UTC
        provider: minikube.sigs.k8s.io
        version: v1.32.0
      name: cluster_info
    server: https://192.168.49.2:8443
  name: minikube
- cluster:
    certificate-authority-data: T0xEQ0E=
    server: https://10.10.0.150:6443
  name: k3sx
contexts:
- context:
    cluster: minikube
    namespace: default
    user: minikube
  name: minikube
- context:
    cluster: k3sx
    user: k3sx
  name: k3sx
current-context: minikube
kind: Config
preferences:
  colors: true
users:
- name: minikube
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: gke-gcloud-auth-plugin
      interactiveMode: IfAvailable
      provideClusterInfo: true
- name: k3sx
  user:
    client-certificate-data: T0xEQ0VSVA==
    client-key-data: T0xES0VZ
x-custom-top-level: keep me
";

    fn yaml(text: &str) -> Value {
        yaml_serde::from_str(text).unwrap()
    }

    fn entry<'a>(doc: &'a Value, list: &str, name: &str) -> &'a Value {
        doc[list].as_sequence().unwrap().iter().find(|e| e["name"].as_str() == Some(name)).unwrap()
    }

    fn names_in(doc: &Value, list: &str) -> Vec<String> {
        doc[list].as_sequence().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect()
    }

    fn user_config() -> String {
        for_user(K3S_YAML, "https://10.10.0.150:6443", "k3sx").unwrap()
    }

    #[test]
    fn for_user_points_at_the_vip_and_renames_default_everywhere() {
        let doc = yaml(&user_config());
        assert_eq!(entry(&doc, "clusters", "k3sx")["cluster"]["server"], "https://10.10.0.150:6443");
        assert!(
            entry(&doc, "clusters", "k3sx")["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap()
                .starts_with("LS0t")
        );
        assert_eq!(entry(&doc, "contexts", "k3sx")["context"]["cluster"], "k3sx");
        assert_eq!(entry(&doc, "contexts", "k3sx")["context"]["user"], "k3sx");
        assert_eq!(entry(&doc, "users", "k3sx")["user"]["client-key-data"], "S0VZTkVXU0VDUkVU");
        assert_eq!(doc["current-context"], "k3sx");
        assert_eq!(doc["preferences"], Value::Mapping(Mapping::new()));
        assert!(!user_config().contains("127.0.0.1") && !user_config().contains("default"));
    }

    #[test]
    fn for_user_refuses_bad_names_urls_and_a_file_without_default_entries() {
        assert_eq!(for_user(K3S_YAML, "https://10.0.0.1:6443", "").unwrap_err().kind(), "invalid_name");
        assert_eq!(for_user(K3S_YAML, "https://10.0.0.1:6443", "a b").unwrap_err().kind(), "invalid_name");
        assert_eq!(for_user(K3S_YAML, "http://10.0.0.1:6443", "k3sx").unwrap_err().kind(), "invalid_server");
        let renamed = K3S_YAML.replace("name: default", "name: other");
        let err = for_user(&renamed, "https://10.0.0.1:6443", "k3sx").unwrap_err();
        assert_eq!(err.kind(), "missing_entry");
        assert!(err.to_string().contains("no cluster named `default`"), "{err}");
    }

    #[test]
    fn merge_into_no_file_gives_the_new_config_with_its_current_context() {
        let merged = yaml(&merge(None, &user_config()).unwrap());
        assert_eq!(merged, yaml(&user_config()));
    }

    #[test]
    fn merge_replaces_the_stale_same_named_entries_in_place() {
        let merged = yaml(&merge(Some(EXISTING), &user_config()).unwrap());
        for list in LISTS {
            assert_eq!(names_in(&merged, list), ["minikube", "k3sx"], "{list}");
        }
        assert_eq!(entry(&merged, "users", "k3sx")["user"]["client-key-data"], "S0VZTkVXU0VDUkVU");
        assert!(
            entry(&merged, "clusters", "k3sx")["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap()
                .starts_with("LS0t")
        );
        let text = merge(Some(EXISTING), &user_config()).unwrap();
        assert!(!text.contains("T0xES0VZ") && !text.contains("T0xEQ0E="), "stale credentials survived:\n{text}");
    }

    #[test]
    fn merge_leaves_unrelated_entries_and_top_level_keys_unchanged() {
        let before = yaml(EXISTING);
        let merged = yaml(&merge(Some(EXISTING), &user_config()).unwrap());
        for list in LISTS {
            assert_eq!(entry(&merged, list, "minikube"), entry(&before, list, "minikube"), "{list}");
        }
        assert_eq!(merged["current-context"], "minikube");
        assert_eq!(merged["preferences"], before["preferences"]);
        assert_eq!(merged["x-custom-top-level"], "keep me");
        let keys: Vec<_> = merged.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap().to_string()).collect();
        let keys_before: Vec<_> =
            before.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap().to_string()).collect();
        assert_eq!(keys, keys_before, "top-level key order");
    }

    #[test]
    fn merge_sets_current_context_only_when_the_file_had_none() {
        let without = EXISTING.replace("current-context: minikube\n", "");
        assert_eq!(yaml(&merge(Some(&without), &user_config()).unwrap())["current-context"], "k3sx");
        let empty = EXISTING.replace("current-context: minikube", "current-context: \"\"");
        assert_eq!(yaml(&merge(Some(&empty), &user_config()).unwrap())["current-context"], "k3sx");
    }

    #[test]
    fn merge_appends_to_a_file_without_the_name_and_accepts_null_lists() {
        let other = EXISTING.replace("k3sx", "lab");
        let merged = yaml(&merge(Some(&other), &user_config()).unwrap());
        assert_eq!(names_in(&merged, "contexts"), ["minikube", "lab", "k3sx"]);
        let nulls = "apiVersion: v1\nclusters: null\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {}\nusers: null\n";
        let merged = yaml(&merge(Some(nulls), &user_config()).unwrap());
        assert_eq!(names_in(&merged, "users"), ["k3sx"]);
        assert_eq!(merged["current-context"], "k3sx");
        let merged = yaml(&merge(Some("# only a comment\n"), &user_config()).unwrap());
        assert_eq!(merged["kind"], "Config");
        assert_eq!(names_in(&merged, "clusters"), ["k3sx"]);
    }

    #[test]
    fn merge_drops_later_duplicates_of_the_replaced_name() {
        let dup = EXISTING.replace(
            "x-custom-top-level: keep me\n",
            "- name: k3sx\n  user:\n    token: T0xEVE9LRU4=\nx-custom-top-level: keep me\n",
        );
        // The extra entry ends the `users` list, which comes just before the custom key.
        let merged = merge(Some(&dup), &user_config()).unwrap();
        assert_eq!(names_in(&yaml(&merged), "users"), ["minikube", "k3sx"]);
        assert!(!merged.contains("T0xEVE9LRU4="));
    }

    #[test]
    fn merging_twice_is_the_same_as_merging_once() {
        let once = merge(Some(EXISTING), &user_config()).unwrap();
        assert_eq!(merge(Some(&once), &user_config()).unwrap(), once);
    }

    #[test]
    fn remove_takes_out_the_named_entries_and_clears_current_context() {
        let (text, changed) = remove(EXISTING, "k3sx").unwrap();
        assert!(changed);
        let doc = yaml(&text);
        for list in LISTS {
            assert_eq!(names_in(&doc, list), ["minikube"], "{list}");
        }
        assert_eq!(doc["current-context"], "minikube");
        let current = EXISTING.replace("current-context: minikube", "current-context: k3sx");
        assert_eq!(yaml(&remove(&current, "k3sx").unwrap().0)["current-context"], "");
    }

    #[test]
    fn remove_of_an_absent_name_changes_nothing_at_all() {
        assert_eq!(remove(EXISTING, "nope").unwrap(), (EXISTING.to_string(), false));
    }

    #[test]
    fn server_of_follows_the_context_to_its_cluster() {
        let merged = merge(Some(EXISTING), &user_config()).unwrap();
        assert_eq!(server_of(&merged, "k3sx").as_deref(), Some("https://10.10.0.150:6443"));
        assert_eq!(server_of(&merged, "minikube").as_deref(), Some("https://192.168.49.2:8443"));
        assert_eq!(server_of(&merged, "nope"), None);
        assert_eq!(server_of("{{{", "k3sx"), None);
        let renamed = EXISTING.replace("cluster: k3sx", "cluster: minikube");
        assert_eq!(server_of(&renamed, "k3sx").as_deref(), Some("https://192.168.49.2:8443"));
    }

    #[test]
    fn garbage_is_refused_with_a_position_and_without_any_value() {
        let secret = "S0VZTkVXU0VDUkVU";
        let garbage = format!("users:\n- name: x\n  user:\n    client-key-data: \"{secret}\n");
        let err = merge(Some(&garbage), &user_config()).unwrap_err();
        assert_eq!(err.kind(), "yaml");
        let text = format!("{err} {err:?}");
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("line "), "{text}");

        let bad_tab = format!("clusters:\n\t- client-key-data: {secret}\n");
        let err = merge(Some(&bad_tab), &user_config()).unwrap_err();
        assert!(!format!("{err} {err:?}").contains(secret), "{err}");

        let dup_key = format!("users: []\nusers: [{{name: {secret}}}]\n");
        let err = merge(Some(&dup_key), &user_config()).unwrap_err();
        assert!(!format!("{err} {err:?}").contains(secret), "{err}");
    }

    #[test]
    fn wrong_shapes_are_refused_by_name() {
        for (text, expected) in [
            ("- a\n- b\n", "the top level is a list"),
            ("clusters: 3\n", "`clusters` is a number"),
            ("users:\n- user: {}\n", "entry 0 of `users` has no name"),
        ] {
            let err = merge(Some(text), &user_config()).unwrap_err();
            assert_eq!(err.kind(), "not_a_kubeconfig");
            assert!(err.to_string().contains(expected), "{err}");
        }
        assert_eq!(merge(None, "just text").unwrap_err().kind(), "not_a_kubeconfig");
    }

    #[test]
    fn kubectl_reads_the_merged_file() {
        // A prerequisite of the tests (bash tests/setup installs it): no silent skip.
        let out = std::process::Command::new("kubectl").arg("version").arg("--client").output();
        assert!(out.is_ok_and(|o| o.status.success()), "kubectl is missing: run `bash tests/setup`");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, merge(Some(EXISTING), &user_config()).unwrap()).unwrap();
        let out = std::process::Command::new("kubectl")
            .args(["config", "get-contexts", "-o", "name", "--kubeconfig"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "k3sx\nminikube\n");
        let out = std::process::Command::new("kubectl")
            .args(["config", "view", "--raw", "-o", "jsonpath={.clusters[?(@.name==\"k3sx\")].cluster.server}"])
            .arg("--kubeconfig")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "https://10.10.0.150:6443");
    }
}
