//! Reading a JSON config file with the position of every key, and rewriting one value in
//! place without disturbing the rest of the file (order, formatting, comments).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jsonc_parser::ast::{self, ObjectPropName};
use jsonc_parser::{CollectOptions, ParseOptions};
use serde_json::Value;

use crate::error::{Error, Result};

/// A parsed JSON file: its value and where each key path starts (1-based line and column).
#[derive(Debug, Clone)]
pub struct JsonFile {
    pub path: PathBuf,
    pub value: Value,
    pub positions: HashMap<String, (usize, usize)>,
}

fn parse_options() -> ParseOptions {
    // Plain JSON, plus comments: people annotate their site config.
    ParseOptions {
        allow_comments: true,
        allow_loose_object_property_names: false,
        allow_trailing_commas: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        ..Default::default()
    }
}

impl JsonFile {
    pub fn read(path: &Path) -> Result<JsonFile> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::Config(vec![format!("{}: {e}", path.display())]))?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<JsonFile> {
        let parsed = jsonc_parser::parse_to_ast(text, &CollectOptions::default(), &parse_options()).map_err(|e| {
            Error::Config(vec![format!(
                "{}:{}:{}: invalid JSON: {}",
                path.display(),
                e.line_display(),
                e.column_display(),
                e.kind()
            )])
        })?;
        let Some(root) = parsed.value else {
            return Ok(JsonFile {
                path: path.into(),
                value: Value::Object(Default::default()),
                positions: HashMap::new(),
            });
        };
        let lines = LineIndex::new(text);
        let mut positions = HashMap::new();
        let value = convert(&root, "", &lines, &mut positions);
        if !value.is_object() {
            return Err(Error::Config(vec![format!(
                "{}:1:1: the configuration must be a JSON object",
                path.display()
            )]));
        }
        Ok(JsonFile { path: path.into(), value, positions })
    }

    /// `file:line:col` of a key path, or just the file when the key is not in it.
    pub fn locate(&self, key: &str) -> String {
        match self.positions.get(key) {
            Some((line, col)) => format!("{}:{line}:{col}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }

    pub fn line_of(&self, key: &str) -> usize {
        self.positions.get(key).map(|p| p.0).unwrap_or(1)
    }
}

struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> Self {
        LineIndex(std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect())
    }

    /// Byte offset → 1-based (line, column).
    fn at(&self, offset: usize) -> (usize, usize) {
        let line = self.0.partition_point(|&start| start <= offset);
        (line, offset - self.0[line - 1] + 1)
    }
}

fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

fn convert(node: &ast::Value, path: &str, lines: &LineIndex, pos: &mut HashMap<String, (usize, usize)>) -> Value {
    match node {
        ast::Value::Object(obj) => {
            let mut map = serde_json::Map::new();
            for prop in &obj.properties {
                let name = prop_name(&prop.name);
                let key = child(path, &name);
                pos.insert(key.clone(), lines.at(prop.range.start));
                map.insert(name, convert(&prop.value, &key, lines, pos));
            }
            Value::Object(map)
        }
        ast::Value::Array(arr) => Value::Array(
            arr.elements
                .iter()
                .enumerate()
                .map(|(i, el)| {
                    let key = format!("{path}[{i}]");
                    pos.insert(key.clone(), lines.at(element_start(el)));
                    convert(el, &key, lines, pos)
                })
                .collect(),
        ),
        ast::Value::StringLit(s) => Value::String(s.value.to_string()),
        ast::Value::NumberLit(n) => serde_json::from_str(n.value).unwrap_or(Value::Null),
        ast::Value::BooleanLit(b) => Value::Bool(b.value),
        ast::Value::NullKeyword(_) => Value::Null,
    }
}

fn prop_name(name: &ObjectPropName) -> String {
    match name {
        ObjectPropName::String(s) => s.value.to_string(),
        ObjectPropName::Word(w) => w.value.to_string(),
    }
}

fn element_start(v: &ast::Value) -> usize {
    value_range(v).start
}

fn value_range(v: &ast::Value) -> jsonc_parser::common::Range {
    match v {
        ast::Value::StringLit(x) => x.range,
        ast::Value::NumberLit(x) => x.range,
        ast::Value::BooleanLit(x) => x.range,
        ast::Value::Object(x) => x.range,
        ast::Value::Array(x) => x.range,
        ast::Value::NullKeyword(x) => x.range,
    }
}

/// Sets `section.key` to `new_value` in the JSON file at `path`, changing only that value's
/// text (or inserting the key/section when absent), and writes the file atomically with its
/// mode kept. A missing file is created with just that key. See [`plan_value_in_file`] for
/// what is checked first.
pub fn set_value_in_file(path: &Path, section: &str, key: &str, new_value: &Value) -> Result<()> {
    plan_value_in_file(path, section, key, new_value)?.write()?;
    Ok(())
}

/// A checked edit of one value in a config file, not yet written.
#[derive(Debug, Clone)]
pub struct ValueEdit {
    pub path: PathBuf,
    /// The whole new document.
    pub text: String,
    /// The file's mode, kept (`0o644` for a new file).
    pub mode: u32,
}

impl ValueEdit {
    /// Writes the new document (atomically; nothing is done when it is what the file holds).
    pub fn write(&self) -> Result<crate::fsutil::WriteOutcome> {
        Ok(crate::fsutil::write_atomic(&self.path, self.text.as_bytes(), self.mode)?)
    }
}

/// The edit [`set_value_in_file`] would make, with the whole new document checked as the
/// loader checks a config file (known keys, types, validation; over the defaults only, as
/// the file will be read by the next run). Nothing is written.
///
/// # Errors
/// [`Error::Config`] naming the key path and what is wrong (`unknown key`, a wrong type, a
/// value validation refuses), or the file cannot be read or is not valid JSON.
pub fn plan_value_in_file(path: &Path, section: &str, key: &str, new_value: &Value) -> Result<ValueEdit> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "{}\n".to_string(),
        Err(e) => return Err(Error::io(path, e)),
    };
    let updated =
        rewrite(&text, section, key, new_value).map_err(|m| Error::Config(vec![format!("{}: {m}", path.display())]))?;
    let checked = JsonFile::parse(path, &updated).and_then(|doc| super::check_document(&doc));
    if let Err(e) = checked {
        let mut lines = vec![format!("`{section}.{key}` not saved in {}: the file would not load:", path.display())];
        lines.extend(match e {
            Error::Config(errors) => errors,
            other => vec![other.to_string()],
        });
        return Err(Error::Config(lines));
    }
    let mode = std::fs::metadata(path).ok().map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    Ok(ValueEdit { path: path.to_path_buf(), text: updated, mode: mode.unwrap_or(0o644) })
}

fn rewrite(text: &str, section: &str, key: &str, new_value: &Value) -> std::result::Result<String, String> {
    let parsed = jsonc_parser::parse_to_ast(text, &CollectOptions::default(), &parse_options())
        .map_err(|e| format!("{}:{}: invalid JSON: {}", e.line_display(), e.column_display(), e.kind()))?;
    let root = parsed.value.as_ref().and_then(|v| v.as_object()).ok_or("the configuration must be a JSON object")?;
    let rendered = serde_json::to_string(new_value).expect("a JSON value serialises");
    let mut out = text.to_string();
    let Some(section_prop) = root.properties.iter().find(|p| prop_name(&p.name) == section) else {
        insert_member(&mut out, text, root, section, &format!("{{\"{key}\": {rendered}}}"));
        return Ok(out);
    };
    let section_obj = section_prop.value.as_object().ok_or_else(|| format!("`{section}` is not an object"))?;
    match section_obj.properties.iter().find(|p| prop_name(&p.name) == key) {
        Some(prop) => {
            let r = value_range(&prop.value);
            out.replace_range(r.start..r.end, &rendered);
        }
        None => insert_member(&mut out, text, section_obj, key, &rendered),
    }
    Ok(out)
}

/// Inserts `"name": value` as the first member of `obj`, indented like its siblings.
fn insert_member(out: &mut String, text: &str, obj: &ast::Object, name: &str, value: &str) {
    let indent = member_indent(text, obj);
    let sep = if obj.properties.is_empty() { "\n" } else { "," };
    out.insert_str(obj.range.start + 1, &format!("\n{indent}\"{name}\": {value}{sep}"));
}

/// The indentation of an object's first member, to insert a sibling that looks like it.
fn member_indent(text: &str, obj: &ast::Object) -> String {
    match obj.properties.first() {
        Some(p) => {
            let line_start = text[..p.range.start].rfind('\n').map(|i| i + 1).unwrap_or(0);
            text[line_start..p.range.start].chars().take_while(|c| c.is_whitespace()).collect()
        }
        None => "  ".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_recorded_for_nested_keys_and_array_elements() {
        let f = JsonFile::parse(
            Path::new("k.json"),
            "{\n  \"network\": {\n    \"gateway\": \"10.0.0.1\"\n  },\n  \"nodes\": [{\"id\": \"pve1\"}]\n}\n",
        )
        .unwrap();
        assert_eq!(f.positions["network.gateway"], (3, 5));
        assert_eq!(f.positions["nodes[0].id"], (5, 14));
        assert_eq!(f.locate("network"), "k.json:2:3");
    }

    #[test]
    fn syntax_error_names_file_line_and_column() {
        let err = JsonFile::parse(Path::new("k.json"), "{\n  \"a\": ,\n}").unwrap_err().to_string();
        assert!(err.starts_with("k.json:2:8: invalid JSON"), "{err}");
    }

    #[test]
    fn rewrite_changes_only_the_value_text() {
        let text = "{\n  // site\n  \"proxmox\": {\"host\": \"pve\"},\n  \"k3s\": {\n    \"channel\": \"stable\",\n    \"version\": \"v1.30.0+k3s1\"\n  }\n}\n";
        let out = rewrite(text, "k3s", "version", &Value::from("v1.33.4+k3s1")).unwrap();
        assert_eq!(out, text.replace("v1.30.0+k3s1", "v1.33.4+k3s1"));
    }

    #[test]
    fn rewrite_inserts_a_missing_key_or_section() {
        let text = "{\n  \"k3s\": {\n    \"channel\": \"stable\"\n  }\n}\n";
        let out = rewrite(text, "k3s", "version", &Value::from("v1")).unwrap();
        assert_eq!(out, "{\n  \"k3s\": {\n    \"version\": \"v1\",\n    \"channel\": \"stable\"\n  }\n}\n");
        let out = rewrite("{\n  \"tags\": {}\n}\n", "k3s", "version", &Value::from("v1")).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["k3s"]["version"], "v1");
        assert_eq!(v["tags"], serde_json::json!({}));
        let out = rewrite("{}\n", "k3s", "version", &Value::from("v1")).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["k3s"]["version"], "v1");
    }
}
