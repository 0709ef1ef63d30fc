//! Turning script errors into what the user reads: `file:line:col: message`, the source
//! line and a caret, plus where the failing call came from; and the exit status.

use rhai::{EvalAltResult, ParseError, Position};

use super::api::{error_kind, error_message};
use super::embedded;
use crate::error::ExitCode;

/// Error kinds from primitives that mean "fix your configuration", not "something failed".
const CONFIG_KINDS: &[&str] = &["auth", "tls", "config"];

pub fn render_parse_error(err: &ParseError, source: &str) -> String {
    let mut out = format!("{}: syntax error: {}", at(source, err.position()), err.err_type());
    excerpt(&mut out, source, err.position());
    out
}

/// The rendered message and the exit status for an uncaught error of a script named `source`.
pub fn render_eval_error(err: &EvalAltResult, source: &str) -> (String, ExitCode) {
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
            _ => (error_message(value), ExitCode::Failed),
        },
        EvalAltResult::ErrorParsing(kind, _) => (format!("syntax error: {kind}"), ExitCode::Usage),
        EvalAltResult::ErrorTerminated(..) => return ("cancelled".into(), ExitCode::Cancelled),
        other => (strip_position(&other.to_string()), ExitCode::Failed),
    };
    let mut out = format!("{}: {message}", at(&leaf_source, pos));
    excerpt(&mut out, &leaf_source, pos);
    for note in notes.iter().rev() {
        out.push_str(&format!("\nnote: {note}"));
    }
    (out, code)
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
