//! Merging configuration layers as JSON trees, checking keys against the schema that the
//! defaults define, and remembering the origin of every leaf.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{Config, JsonFile, Origin};
use crate::error::{Error, Result};

/// Environment variables (the seed's names) and the keys they set. Secrets are not here:
/// they never enter the configuration tree.
const ENV_KEYS: &[(&str, &str)] = &[
    ("PROXMOX_HOST", "proxmox.host"),
    ("PROXMOX_PORT", "proxmox.port"),
    ("PROXMOX_USER", "proxmox.user"),
    ("PROXMOX_API_TOKEN_ID", "proxmox.token_id"),
    ("PROXMOX_SSL_VERIFY", "proxmox.verify_tls"),
    ("PROXMOX_CA_FILE", "proxmox.ca_file"),
    ("PROXMOX_TLS_FINGERPRINT", "proxmox.fingerprint"),
];

pub struct Layers {
    value: Value,
    schema: Value,
    origins: BTreeMap<String, Origin>,
}

/// The shape every config must fit: the defaults, plus one example element for arrays of
/// objects so their keys can be checked too.
fn schema() -> Value {
    let mut schema = serde_json::to_value(Config::default()).expect("defaults serialise");
    schema["nodes"] = json!([{"id": "", "vms": [{"vmid": 0, "role": "", "name": "", "ip": ""}]}]);
    schema
}

impl Layers {
    pub fn new() -> Result<Self> {
        Ok(Layers {
            value: serde_json::to_value(Config::default()).expect("defaults serialise"),
            schema: schema(),
            origins: BTreeMap::new(),
        })
    }

    pub fn is_default(&self, key: &str) -> bool {
        !self.origins.keys().any(|k| k == key || k.starts_with(&format!("{key}.")) || k.starts_with(&format!("{key}[")))
    }

    /// Merges a file; `only` restricts it to some top-level keys (the seed's inventory file).
    pub fn apply_file(&mut self, file: &JsonFile, only: Option<&[&str]>) -> Result<()> {
        let mut errors = Vec::new();
        let schema = match only {
            Some(keys) => Value::Object(keys.iter().map(|k| (k.to_string(), self.schema[*k].clone())).collect()),
            None => self.schema.clone(),
        };
        check_keys(&file.value, &schema, "", file, &mut errors);
        if !errors.is_empty() {
            return Err(Error::Config(errors));
        }
        let Value::Object(map) = &file.value else { unreachable!("checked by JsonFile") };
        for (k, v) in map {
            merge(&mut self.value[k.as_str()], v, k, &mut |key| {
                self.origins.insert(key.to_string(), Origin::File { path: file.path.clone(), line: file.line_of(key) });
            });
        }
        Ok(())
    }

    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        let mut errors = Vec::new();
        for (var, key) in ENV_KEYS {
            let Some(raw) = env(var).filter(|v| !v.is_empty()) else {
                continue;
            };
            match self.parse_for(key, &raw) {
                Ok(v) => {
                    *pointer_mut(&mut self.value, key) = v;
                    self.origins.insert(key.to_string(), Origin::Env(var.to_string()));
                }
                Err(m) => errors.push(format!("{var}: {m}")),
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(Error::Config(errors)) }
    }

    /// `--set key=value`, e.g. `--set network.cidr=16` or `--set k3s.tls_san=["a","b"]`.
    pub fn apply_sets(&mut self, sets: &[String]) -> Result<()> {
        let mut errors = Vec::new();
        for set in sets {
            let Some((key, raw)) = set.split_once('=') else {
                errors.push(format!("--set {set}: expected KEY=VALUE, e.g. --set k3s.channel=latest"));
                continue;
            };
            let key = key.trim();
            if pointer(&self.schema, key).is_none() || key.starts_with("nodes") {
                let hint = suggestion(key.rsplit('.').next().unwrap_or(key), &known_leaf_keys(&self.schema));
                errors.push(format!("--set {key}: unknown key{hint}"));
                continue;
            }
            match self.parse_for(key, raw) {
                Ok(v) => {
                    *pointer_mut(&mut self.value, key) = v;
                    self.origins.insert(key.to_string(), Origin::Flag(format!("--set {key}")));
                }
                Err(m) => errors.push(format!("--set {key}: {m}")),
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(Error::Config(errors)) }
    }

    /// A text value from the environment or a flag, typed like the key's default.
    fn parse_for(&self, key: &str, raw: &str) -> std::result::Result<Value, String> {
        let raw = raw.trim();
        match pointer(&self.schema, key) {
            Some(Value::Bool(_)) => match raw.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(Value::Bool(true)),
                "0" | "false" | "no" | "off" => Ok(Value::Bool(false)),
                _ => Err(format!("expected true or false, got `{raw}`")),
            },
            Some(Value::Number(_)) => {
                raw.parse::<u64>().map(Value::from).map_err(|_| format!("expected a whole number, got `{raw}`"))
            }
            Some(Value::Array(_)) if raw.starts_with('[') => {
                serde_json::from_str(raw).map_err(|e| format!("expected a JSON array: {e}"))
            }
            Some(Value::Array(_)) => {
                Ok(Value::Array(raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Value::from).collect()))
            }
            _ => Ok(Value::String(raw.to_string())),
        }
    }

    pub fn finish(self) -> Result<(Config, BTreeMap<String, Origin>)> {
        match serde_path_to_error::deserialize::<_, Config>(self.value) {
            Ok(config) => Ok((config, self.origins)),
            Err(e) => {
                let key = e.path().to_string();
                let origin = self.origins.get(&key).cloned().unwrap_or(Origin::Default);
                Err(Error::Config(vec![format!("`{key}` ({origin}): {}", e.inner())]))
            }
        }
    }
}

/// Reports every key of `value` that the schema does not know, with its position and a
/// "did you mean" for a near miss.
fn check_keys(value: &Value, schema: &Value, path: &str, file: &JsonFile, errors: &mut Vec<String>) {
    match (value, schema) {
        (Value::Object(map), Value::Object(known)) => {
            for (k, v) in map {
                let key = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match known.get(k) {
                    Some(sub) => check_keys(v, sub, &key, file, errors),
                    None => {
                        let names: Vec<&str> = known.keys().map(String::as_str).collect();
                        errors.push(format!("{}: unknown key `{key}`{}", file.locate(&key), suggestion(k, &names)));
                    }
                }
            }
        }
        (Value::Array(items), Value::Array(example)) => {
            if let Some(sub @ Value::Object(_)) = example.first() {
                for (i, item) in items.iter().enumerate() {
                    check_keys(item, sub, &format!("{path}[{i}]"), file, errors);
                }
            }
        }
        _ => {}
    }
}

/// `; did you mean `network`?` when one known name is close to `name`.
fn suggestion(name: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default()
}

fn known_leaf_keys(schema: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    if let Value::Object(sections) = schema {
        for section in sections.values() {
            if let Value::Object(keys) = section {
                out.extend(keys.keys().map(String::as_str));
            }
        }
    }
    out
}

/// Deep merge: objects member by member, everything else replaced. `mark` gets each leaf set.
fn merge(target: &mut Value, src: &Value, path: &str, mark: &mut dyn FnMut(&str)) {
    match (target, src) {
        (Value::Object(t), Value::Object(s)) => {
            for (k, v) in s {
                let key = format!("{path}.{k}");
                merge(t.entry(k.clone()).or_insert(Value::Null), v, &key, mark);
            }
        }
        (t, s) => {
            *t = s.clone();
            for_each_leaf(s, path, &mut |k, _| mark(k));
            mark(path);
        }
    }
}

/// Calls `f(key, value)` for every leaf (scalars, and empty or scalar arrays as one leaf).
pub fn for_each_leaf(value: &Value, path: &str, f: &mut dyn FnMut(&str, &Value)) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                for_each_leaf(v, &key, f);
            }
        }
        Value::Array(items) if items.iter().any(|i| i.is_object()) => {
            for (i, item) in items.iter().enumerate() {
                for_each_leaf(item, &format!("{path}[{i}]"), f);
            }
        }
        leaf => f(path, leaf),
    }
}

fn pointer<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(value, |v, k| v.as_object()?.get(k))
}

fn pointer_mut<'a>(value: &'a mut Value, key: &str) -> &'a mut Value {
    key.split('.').fold(value, |v, k| {
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        v.as_object_mut().expect("made an object").entry(k.to_string()).or_insert(Value::Null)
    })
}
