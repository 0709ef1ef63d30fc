//! The script API reference, generated from the engine's own metadata: `k3sx doc`,
//! `docs/api.md` and the REPL's `:help` all come from here.

use std::sync::Arc;

use rhai::Engine;
use serde::Deserialize;

use super::diagnostics::{Hints, render_eval_error};
use super::engine::build_engine;
use super::host::Host;
use super::resolver::register_modules;
use crate::ui::Level;

#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    #[serde(default)]
    functions: Vec<FnMeta>,
    #[serde(default)]
    modules: std::collections::BTreeMap<String, ModuleMeta>,
}

#[derive(Debug, Clone, Deserialize)]
struct ModuleMeta {
    #[serde(default)]
    functions: Vec<FnMeta>,
}

#[derive(Debug, Clone, Deserialize)]
struct FnMeta {
    name: String,
    signature: String,
    #[serde(default, rename = "docComments")]
    doc_comments: Vec<String>,
    /// `script` for a function of a Rhai module (the stdlib), `native` for a primitive.
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, rename = "isAnonymous")]
    is_anonymous: bool,
}

/// One documented function.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FnDoc {
    /// `core`, `k3s`, `pve`, ...
    pub namespace: String,
    pub name: String,
    /// `k3s::compare(a: &str, b: &str) -> INT`
    pub signature: String,
    /// The doc comment, without comment markers.
    pub doc: String,
    /// A function of a Rhai module (`stdlib/`), which scripts `import`.
    pub module: bool,
}

impl FnDoc {
    pub fn qualified_name(&self) -> String {
        if self.namespace == "core" { self.name.clone() } else { format!("{}::{}", self.namespace, self.name) }
    }
}

/// The engine the reference describes: every primitive and every module (`stdlib/`, local and
/// user modules too), registered under its own name as the REPL has them.
pub fn engine(host: &Arc<Host>) -> Engine {
    let mut engine = build_engine(host);
    let cwd = &host.options.cwd;
    for (name, e) in register_modules(&mut engine, cwd) {
        let hints = Hints { engine: &engine, cwd, scope: None };
        host.log(Level::Warn, &format!("module `{name}` left out: {}", render_eval_error(&e, "<doc>", &hints).0));
    }
    engine
}

/// Rhai definition files for editors (`k3sx doc --definitions DIR`). Rhai writes the modules'
/// script functions without their doc comments and with their closures; each module's file is
/// written from its docs instead.
pub fn write_definitions(engine: &Engine, dir: &std::path::Path) -> std::io::Result<()> {
    engine.definitions().with_headers(true).write_to_dir(dir)?;
    let docs = functions(engine);
    let mut modules: Vec<&str> = docs.iter().filter(|d| d.module).map(|d| d.namespace.as_str()).collect();
    modules.dedup();
    for module in modules {
        let mut text = format!("module {module};\n");
        for d in docs.iter().filter(|d| d.namespace == module) {
            let params = d.signature.split_once('(').and_then(|(_, rest)| rest.strip_suffix(')')).unwrap_or("");
            let params: Vec<String> = params.split(", ").filter(|p| !p.is_empty()).map(|p| format!("{p}: ?")).collect();
            text.push('\n');
            for line in d.doc.lines() {
                text.push_str(format!("/// {line}").trim_end());
                text.push('\n');
            }
            text.push_str(&format!("fn {}({}) -> ?;\n", d.name, params.join(", ")));
        }
        std::fs::write(dir.join(format!("{module}.d.rhai")), text)?;
    }
    Ok(())
}

/// Every function k3sx registers and every module function (not Rhai's standard library),
/// grouped and sorted. Closures inside modules are not API and are left out.
pub fn functions(engine: &Engine) -> Vec<FnDoc> {
    let json = engine.gen_fn_metadata_to_json(false).expect("metadata serialises");
    let meta: Metadata = serde_json::from_str(&json).expect("rhai metadata has the documented shape");
    let mut out: Vec<FnDoc> = meta.functions.into_iter().map(|f| doc("core", f)).collect();
    for (ns, m) in meta.modules {
        out.extend(m.functions.into_iter().filter(|f| !f.is_anonymous).map(|f| doc(&ns, f)));
    }
    out.sort_by(|a, b| {
        (a.namespace != "core", &a.namespace, &a.name, &a.signature).cmp(&(
            b.namespace != "core",
            &b.namespace,
            &b.name,
            &b.signature,
        ))
    });
    out
}

fn doc(namespace: &str, f: FnMeta) -> FnDoc {
    let text = f
        .doc_comments
        .iter()
        .flat_map(|c| c.lines())
        .map(|l| {
            l.trim_start()
                .trim_start_matches("///")
                .strip_prefix(' ')
                .unwrap_or(l.trim_start().trim_start_matches("///"))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let signature = if namespace == "core" { f.signature } else { format!("{namespace}::{}", f.signature) };
    let module = f.kind == "script";
    FnDoc { namespace: namespace.into(), name: f.name, signature, doc: text.trim().to_string(), module }
}

/// The whole reference as Markdown (what `docs/api.md` holds).
pub fn markdown(docs: &[FnDoc]) -> String {
    let mut out = String::from(
        "# k3sx script API\n\n<!-- Generated by `k3sx doc --markdown`; do not edit by hand. -->\n\n\
         Scripts also see `CONFIG` (the merged configuration, secrets excluded), `ARGS` (the\n\
         `--arg k=v` values and the command's flags) and `DRY_RUN`.\n",
    );
    let mut current = "";
    for d in docs {
        if d.namespace != current {
            current = &d.namespace;
            if current == "core" {
                out.push_str("\n## Core functions\n");
            } else if d.module {
                out.push_str(&format!(
                    "\n## Module `{current}::`\n\nA Rhai module (`stdlib/{current}.rhai`): `import \"{current}\" as {current};`\n"
                ));
            } else {
                out.push_str(&format!("\n## `{current}::`\n"));
            }
        }
        out.push_str(&format!("\n### `{}`\n\n{}\n", d.signature, d.doc));
    }
    out
}

/// Plain-text help for a name: a function (`compare`, `k3s::compare`, every overload) or a
/// namespace or module (`k3s`, `inventory`: all of its functions); None if unknown.
pub fn help(docs: &[FnDoc], name: &str) -> Option<String> {
    let name = name.trim_end_matches("::");
    let matches: Vec<&FnDoc> =
        docs.iter().filter(|d| d.qualified_name() == name || d.name == name || d.namespace == name).collect();
    if matches.is_empty() {
        return None;
    }
    Some(matches.iter().map(|d| format!("{}\n{}\n", d.signature, indent(&d.doc))).collect::<Vec<_>>().join("\n"))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| if l.is_empty() { String::new() } else { format!("    {l}") }).collect::<Vec<_>>().join("\n")
}
