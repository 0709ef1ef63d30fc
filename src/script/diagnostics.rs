//! Turning script errors into what the user reads: `file:line:col: message`, the source
//! line and a caret, plus where the failing call came from, a hint that says what to do
//! (the import a module needs, the signatures a function has, the keys a map has); and the
//! exit status.

use std::path::Path;

use rhai::{Dynamic, Engine, EvalAltResult, Map, ParseError, Position, Scope};

use super::api::{error_kind, error_message};
use super::embedded::{self, Kind};
use super::resolver;
use crate::error::ExitCode;

/// What hints may consult: the engine that ran the script (its functions and modules), the
/// directory modules are found from, and the top-level scope the script ran in (if any).
pub struct Hints<'a> {
    pub engine: &'a Engine,
    pub cwd: &'a Path,
    pub scope: Option<&'a Scope<'a>>,
}

/// Rhai's string methods that change the string in place and return `()`.
const IN_PLACE: &[&str] =
    &["trim", "replace", "make_upper", "make_lower", "pad", "truncate", "crop", "remove", "clear", "retain", "reverse"];

/// Error kinds of primitives that reach the network: from a built-in script the message says
/// it all (the URL and the setting), a source excerpt of our script would not help.
const NETWORK_KINDS: &[&str] = &["network"];

/// Error kinds from primitives that mean "fix your configuration", not "something failed".
const CONFIG_KINDS: &[&str] = &["auth", "tls", "config"];

pub fn render_parse_error(err: &ParseError, source: &str) -> String {
    let mut out = format!("{}: syntax error: {}", at(source, err.position()), err.err_type());
    excerpt(&mut out, source, err.position());
    out
}

/// The rendered message and the exit status for an uncaught error of a script named `source`.
pub fn render_eval_error(err: &EvalAltResult, source: &str, hints: &Hints) -> (String, ExitCode) {
    let mut notes = Vec::new();
    let (leaf, leaf_source) = unwrap(err, source.to_string(), &mut notes);
    let pos = leaf.position();
    let (message, code) = match leaf {
        EvalAltResult::ErrorRuntime(value, _) => match error_kind(value).as_deref() {
            Some("exit") => return (String::new(), exit_status(value)),
            // `fail("...")` is the script's own verdict, and a setup error (credentials, TLS,
            // configuration) is fixed in a setting, not in the script: the message alone.
            Some("failed") => return (error_message(value), ExitCode::Failed),
            Some(k) if CONFIG_KINDS.contains(&k) => return (error_message(value), ExitCode::Usage),
            Some(k) if NETWORK_KINDS.contains(&k) && leaf_source.starts_with(embedded::PREFIX) => {
                return (error_message(value), ExitCode::Failed);
            }
            _ => (error_message(value), ExitCode::Failed),
        },
        EvalAltResult::ErrorParsing(kind, _) => (format!("syntax error: {kind}"), ExitCode::Usage),
        EvalAltResult::ErrorTerminated(..) => return ("cancelled".into(), ExitCode::Cancelled),
        other => (strip_position(&other.to_string()), ExitCode::Failed),
    };
    let hint = hint(leaf, &leaf_source, notes.is_empty(), hints);
    let mut out = format!("{}: {}", at(&leaf_source, pos), readable(&message));
    excerpt(&mut out, &leaf_source, pos);
    if let Some(hint) = hint {
        out.push_str(&format!("\nhint: {hint}"));
    }
    for note in notes.iter().rev() {
        out.push_str(&format!("\nnote: {}", readable(note)));
    }
    (out, code)
}

/// Rhai's internal names and type spellings in what a person reads: a closure is
/// `anon$e54e9fe0b9e6b98e` inside, "a closure" outside; a string parameter is `string`.
fn readable(text: &str) -> String {
    let text = text.replace("&str | ImmutableString | String", "string");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("anon$") {
        let (before, after) = rest.split_at(i);
        let hex = after["anon$".len()..].chars().take_while(char::is_ascii_hexdigit).count();
        let quoted = before.ends_with('`') && after["anon$".len() + hex..].starts_with('`');
        out.push_str(if quoted { &before[..before.len() - 1] } else { before });
        out.push_str("a closure");
        rest = &after["anon$".len() + hex + usize::from(quoted)..];
    }
    out.push_str(rest);
    out
}

/// A line that says what to do about an error, when there is one to say.
fn hint(err: &EvalAltResult, source: &str, top_level: bool, hints: &Hints) -> Option<String> {
    match err {
        EvalAltResult::ErrorModuleNotFound(name, _) => Some(module_hint(name, hints)),
        EvalAltResult::ErrorFunctionNotFound(sig, pos) => function_hint(sig, &line_before(source, *pos), hints),
        EvalAltResult::ErrorPropertyNotFound(prop, pos) => property_hint(prop, source, *pos, top_level, hints),
        _ => None,
    }
}

fn module_hint(name: &str, hints: &Hints) -> String {
    let modules = resolver::names(Kind::Module, hints.cwd);
    let list = format!("modules: {}", modules.join(", "));
    if modules.iter().any(|m| m == name) {
        return format!(
            "a module is imported before use: add `import \"{name}\" as {name};` at the top of the script; {list}"
        );
    }
    match near_miss(name, modules.iter().map(String::as_str)) {
        Some(m) => format!("did you mean `{m}`? {list}"),
        None => list,
    }
}

/// `name (arg types)` from Rhai: the overloads that exist under the name, else a near miss;
/// for a string method called on `()`, why it got `()`.
fn function_hint(sig: &str, line_before: &str, hints: &Hints) -> Option<String> {
    let (name, args) = sig.split_once(" (").unwrap_or((sig, ""));
    if name.starts_with("anon$") {
        return Some("the closure takes a different number of arguments".into());
    }
    // `text.trim().len()`: the method before this one returned `()`.
    let on_unit = args == "())" || args.starts_with("(),");
    let after_in_place = IN_PLACE.iter().any(|m| line_before.contains(&format!(".{m}(")));
    if on_unit && (IN_PLACE.contains(&name) || after_in_place) {
        return Some(format!(
            "`{name}` was called on `()`. Rhai's `trim`, `replace`, `make_upper`, `make_lower`, `pad`, \
             `truncate`, `crop`, `remove` ... change a string in place and return `()`, so \
             `text.replace(a, b).replace(c, d)` calls the second on `()`: write \
             `text.replace(a, b); text.replace(c, d);` (on a copy: `let t = text; t.trim(); t`)"
        ));
    }
    let signatures = signatures(name, hints);
    let exact: Vec<&String> = signatures.iter().filter(|s| fn_name(s) == name).collect();
    if !exact.is_empty() {
        let shown: Vec<String> = exact.iter().take(12).map(|s| format!("\n    {}", readable(s))).collect();
        let more = if exact.len() > 12 { format!("\n    ... and {} more", exact.len() - 12) } else { String::new() };
        return Some(format!("`{name}` takes:{}{more}", shown.concat()));
    }
    let names: Vec<&str> = signatures.iter().map(|s| fn_name(s)).collect();
    near_miss(name, names.into_iter()).map(|m| format!("did you mean `{m}`?"))
}

/// The text of the error's line up to its position (empty when unknown).
fn line_before(source: &str, pos: Position) -> String {
    let (Some(line), Some(col), Some(text)) = (pos.line(), pos.position(), embedded::source_text(source)) else {
        return String::new();
    };
    text.lines().nth(line - 1).map(|l| l.chars().take(col - 1).collect()).unwrap_or_default()
}

/// The name part of a signature: `pve::status` of `pve::status(vm: Map) -> Map`.
fn fn_name(signature: &str) -> &str {
    signature.split('(').next().unwrap_or(signature).trim()
}

/// Signatures in the namespace of `name`: the engine's (primitives, Rhai's standard library,
/// modules it has registered) and, for an imported module, the module's.
fn signatures(name: &str, hints: &Hints) -> Vec<String> {
    let namespace = name.rsplit_once("::").map(|(ns, _)| ns);
    let prefix = |s: &String| match namespace {
        Some(ns) => s.starts_with(&format!("{ns}::")),
        None => !fn_name(s).contains("::"),
    };
    // k3sx's own as `k3sx doc` shows them, then Rhai's standard library.
    let mut all: Vec<String> = super::doc::functions(hints.engine).into_iter().map(|d| d.signature).collect();
    let ours: std::collections::HashSet<String> = all.iter().map(|s| fn_name(s).to_string()).collect();
    all.extend(hints.engine.gen_fn_signatures(true).into_iter().filter(|s| !ours.contains(fn_name(s))));
    all.retain(prefix);
    if let Some(ns) = namespace.filter(|_| all.is_empty()) {
        let resolver = resolver::StdlibResolver::new(hints.cwd.to_path_buf());
        if let Ok(module) = rhai::ModuleResolver::resolve(&resolver, hints.engine, None, ns, Position::NONE) {
            all.extend(module.iter_script_fn_info().filter(|(_, _, name, _, _)| !name.starts_with("anon$")).map(
                |(_, _, name, _, def)| {
                    let params: Vec<&str> = def.params.iter().map(|p| p.as_str()).collect();
                    format!("{ns}::{name}({})", params.join(", "))
                },
            ));
        }
    }
    all.sort();
    all.dedup();
    all
}

/// The closest of `candidates` to `name`, if it is close enough to be a typo.
fn near_miss<'c>(name: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    fn short(s: &str) -> &str {
        s.rsplit("::").next().unwrap_or(s)
    }
    let target = short(name);
    candidates
        .filter(|c| *c != name)
        .map(|c| (strsim::damerau_levenshtein(target, short(c)), c))
        .filter(|(d, c)| *d <= (target.len().max(short(c).len()) / 3).max(1))
        .min_by_key(|(d, c)| (*d, c.len()))
        .map(|(_, c)| c)
}

/// The keys of the map a missing property was read from: found again by evaluating the
/// receiver (`m` in `m.abc`) when it is a plain path of names and that is safe to redo: rooted
/// at `CONFIG`/`ARGS` (the same everywhere), or at a top-level variable of the script.
fn property_hint(prop: &str, source: &str, pos: Position, top_level: bool, hints: &Hints) -> Option<String> {
    let receiver = receiver_before(&embedded::source_text(source)?, pos)?;
    let root = receiver.split(['.', '[']).next().unwrap_or("");
    let global = matches!(root, "CONFIG" | "ARGS");
    if !global && !top_level {
        return None;
    }
    let mut scope = if global { Scope::new() } else { hints.scope?.clone() };
    let value: Dynamic = hints.engine.eval_expression_with_scope(&mut scope, &receiver).ok()?;
    let map = value.read_lock::<Map>()?;
    let keys: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
    let listed = if keys.is_empty() {
        "the map is empty".to_string()
    } else if keys.len() > 30 {
        format!("the map has: {}, ... ({} keys)", keys[..30].join(", "), keys.len())
    } else {
        format!("the map has: {}", keys.join(", "))
    };
    let test = format!("`\"{prop}\" in {receiver}` tests for a key");
    Some(match near_miss(prop, keys.iter().copied()) {
        Some(k) => format!("did you mean `{k}`? {listed}; {test}"),
        None => format!("{listed}; {test}"),
    })
}

/// `a.b[0]` in `x = a.b[0].prop` given the position of `prop`: names, dots and literal
/// indexes only, so evaluating it again cannot call anything.
fn receiver_before(text: &str, pos: Position) -> Option<String> {
    let line = text.lines().nth(pos.line()? - 1)?;
    let col = pos.position()?;
    let before: Vec<char> = line.chars().take(col - 1).collect();
    let (dot, rest) = before.split_last()?;
    if *dot != '.' {
        return None;
    }
    let start = rest
        .iter()
        .rposition(|c| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '[' | ']' | '"')))
        .map_or(0, |i| i + 1);
    let receiver: String = rest[start..].iter().collect();
    let first = receiver.chars().next()?;
    let simple = (first.is_alphabetic() || first == '_')
        && receiver.matches('[').count() == receiver.matches(']').count()
        && !receiver.ends_with('.');
    simple.then_some(receiver)
}

/// The status `exit(code)` asked for.
fn exit_status(value: &rhai::Dynamic) -> ExitCode {
    match value.read_lock::<rhai::Map>().and_then(|m| m.get("code").and_then(|c| c.as_int().ok())) {
        Some(0) => ExitCode::Ok,
        Some(2) => ExitCode::Usage,
        Some(130) => ExitCode::Cancelled,
        _ => ExitCode::Failed,
    }
}

/// Follows function-call and module wrappers to the error that happened, noting each hop.
fn unwrap<'a>(err: &'a EvalAltResult, source: String, notes: &mut Vec<String>) -> (&'a EvalAltResult, String) {
    match err {
        EvalAltResult::ErrorInFunctionCall(name, fn_source, inner, pos) => {
            notes.push(format!("in `{name}`, called at {}", at(&source, *pos)));
            let next = if fn_source.is_empty() { source } else { fn_source.clone() };
            unwrap(inner, next, notes)
        }
        EvalAltResult::ErrorInModule(module_source, inner, pos) => {
            notes.push(format!("in module {module_source}, imported at {}", at(&source, *pos)));
            unwrap(inner, module_source.clone(), notes)
        }
        other => (other, source),
    }
}

fn at(source: &str, pos: Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{source}:{l}:{c}"),
        (Some(l), None) => format!("{source}:{l}"),
        _ => source.to_string(),
    }
}

/// Rhai's messages end with ` (line 3, position 5)`; we print the position up front instead.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" (line ") {
        Some(i) if msg.ends_with(')') => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

/// Appends the source line and a caret under the column.
fn excerpt(out: &mut String, source: &str, pos: Position) {
    let (Some(line), Some(text)) = (pos.line(), embedded::source_text(source)) else {
        return;
    };
    let Some(src_line) = text.lines().nth(line - 1) else {
        return;
    };
    let gutter = line.to_string().len();
    out.push_str(&format!("\n{line} | {src_line}"));
    if let Some(col) = pos.position() {
        out.push_str(&format!("\n{:gutter$} | {:>col$}", "", "^"));
    }
}
