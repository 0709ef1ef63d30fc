//! `k3sx repl`: one scope across lines, multi-line input, completion, `:help` from the
//! engine's docs, Ctrl-C that cancels the running evaluation but not the session.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rhai::{AST, Array, Dynamic, Engine, Map, Scope};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::{FileHistory, History};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Editor, Helper};

use super::api::core::{maps_as_table, to_json_text};
use super::diagnostics::{Hints, render_eval_error, render_parse_error};
use super::doc::{self, FnDoc};
use super::engine::build_engine;
use super::host::Host;
use super::resolver::register_modules;
use crate::error::{Error, Result};

const SOURCE: &str = "<repl>";

pub fn run(host: &Arc<Host>) -> Result<()> {
    let mut engine = build_engine(host);
    preload_modules(&mut engine, host);
    let docs = doc::functions(&engine);
    let mut scope = Scope::new();
    let mut editor: Editor<ReplHelper, FileHistory> =
        Editor::new().map_err(|e| Error::Usage(format!("cannot start the line editor: {e}")))?;
    editor.set_helper(Some(ReplHelper { names: completion_names(&docs), vars: Vec::new() }));
    let history = history_path();
    if let Some(p) = &history {
        let _ = editor.load_history(p);
    }
    eprintln!("k3sx {} — Rhai REPL. :help for help, Ctrl-D to leave.", env!("CARGO_PKG_VERSION"));
    let mut main_ast = AST::empty();
    loop {
        if let Some(h) = editor.helper_mut() {
            h.vars = scope.iter_raw().map(|(name, _, _)| name.to_string()).collect();
        }
        match editor.readline("k3sx> ") {
            Ok(line) => {
                let input = line.trim();
                if input.is_empty() {
                    continue;
                }
                let _ = editor.add_history_entry(input);
                if let Some(p) = &history {
                    save_history(editor.history_mut(), p);
                }
                if let Some(cmd) = input.strip_prefix(':') {
                    if !command(cmd, host, &engine, &docs, &mut scope, &mut main_ast) {
                        break;
                    }
                    continue;
                }
                eval(input, SOURCE, host, &engine, &mut scope, &mut main_ast);
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(Error::Usage(format!("line editor: {e}"))),
        }
    }
    Ok(())
}

/// Every stdlib module (built-in, user, local) under its own name, so `inventory::load(false)`
/// works without an `import` (an import on one line would not outlive that line).
fn preload_modules(engine: &mut Engine, host: &Host) {
    let cwd = &host.options.cwd;
    for (name, e) in register_modules(engine, cwd) {
        let hints = Hints { engine, cwd, scope: None };
        eprintln!("warning: module `{name}` not loaded: {}", render_eval_error(&e, "<repl>", &hints).0);
    }
}

/// Compiles and evaluates one input; functions it defines stay for later lines.
fn eval(input: &str, source: &str, host: &Host, engine: &Engine, scope: &mut Scope, main_ast: &mut AST) {
    let ast = match engine.compile_with_scope(scope, input) {
        Ok(ast) => ast,
        Err(e) => {
            eprintln!("error: {}", render_parse_error(&e, source));
            return;
        }
    };
    *main_ast += ast;
    host.cancel.store(false, Ordering::SeqCst);
    let result = engine.eval_ast_with_scope::<Dynamic>(scope, main_ast);
    host.cancel.store(false, Ordering::SeqCst);
    main_ast.clear_statements();
    match result {
        Ok(value) => {
            if let Some(text) = render_value(&value) {
                host.ui.print(&text);
            }
        }
        Err(err) => {
            let hints = Hints { engine, cwd: &host.options.cwd, scope: Some(scope) };
            eprintln!("error: {}", render_eval_error(&err, source, &hints).0);
        }
    }
}

/// REPL commands; false means leave.
fn command(cmd: &str, host: &Host, engine: &Engine, docs: &[FnDoc], scope: &mut Scope, main_ast: &mut AST) -> bool {
    let (name, arg) = cmd.split_once(char::is_whitespace).map(|(n, a)| (n, a.trim())).unwrap_or((cmd, ""));
    match name {
        "q" | "quit" | "exit" => return false,
        "help" | "h" if arg.is_empty() => {
            let mut namespaces: Vec<&str> = docs.iter().map(|d| d.namespace.as_str()).collect();
            namespaces.dedup();
            println!(
                ":help NAME   documentation of a function (e.g. :help k3s::compare)\n\
                 :load FILE   run a script file in this session\n\
                 :vars        the variables in scope\n\
                 :quit        leave (or Ctrl-D)\n\
                 namespaces: {}\n\
                 Ctrl-C cancels a running evaluation; Tab completes names.",
                namespaces.join(", ")
            );
        }
        "help" | "h" => match doc::help(docs, arg) {
            Some(text) => print!("{text}"),
            None => eprintln!("no function named `{arg}`"),
        },
        "vars" => {
            for (name, constant, value) in scope.iter_raw() {
                let kind = if constant { "const" } else { "let" };
                println!("{kind} {name} = {}", one_line(value));
            }
        }
        "load" => match std::fs::read_to_string(arg) {
            Ok(text) => eval(&text, arg, host, engine, scope, main_ast),
            Err(e) => eprintln!("error: {arg}: {e}"),
        },
        other => eprintln!("unknown command :{other}; :help lists them"),
    }
    true
}

/// Readable values: maps as pretty JSON, arrays of maps as a table, VMs one line each.
pub fn render_value(value: &Dynamic) -> Option<String> {
    if value.is_unit() {
        return None;
    }
    if let Some(arr) = value.read_lock::<Array>()
        && !arr.is_empty()
        && arr.iter().all(|v| v.is_map())
    {
        if arr.iter().all(is_vm) {
            return Some(arr.iter().map(vm_line).collect::<Vec<_>>().join("\n"));
        }
        let columns: Vec<String> =
            arr[0].read_lock::<Map>().map(|m| m.keys().map(|k| k.to_string()).collect()).unwrap_or_default();
        return Some(maps_as_table(&arr, &columns));
    }
    if is_vm(value) {
        return Some(vm_line(value));
    }
    if value.is_map() {
        return to_json_text(value, true).ok();
    }
    Some(one_line(value))
}

fn is_vm(v: &Dynamic) -> bool {
    v.read_lock::<Map>().is_some_and(|m| m.contains_key("vmid") && m.contains_key("node"))
}

/// `pve1/101  k3s-master-01  running  k3s-server  10.10.0.201`
fn vm_line(v: &Dynamic) -> String {
    let m = v.read_lock::<Map>().expect("checked is_vm");
    let get = |k: &str| m.get(k).filter(|v| !v.is_unit()).map(one_line).unwrap_or_else(|| "-".into());
    format!("{}/{}  {}  {}  {}  {}", get("node"), get("vmid"), get("name"), get("status"), get("tags"), get("ip"))
}

fn one_line(v: &Dynamic) -> String {
    if v.is_string() {
        format!("{:?}", v.to_string())
    } else if v.is_map() || v.is_array() {
        to_json_text(v, false).unwrap_or_else(|_| v.to_string())
    } else {
        v.to_string()
    }
}

fn history_path() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))?;
    let dir = state.join("k3sx");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir.join("history"))
}

/// Saved after every line, so a killed session keeps its history.
fn save_history(history: &mut FileHistory, path: &std::path::Path) {
    if let Err(e) = history.save(path) {
        tracing::debug!("cannot save REPL history to {}: {e}", path.display());
    }
}

fn completion_names(docs: &[FnDoc]) -> Vec<String> {
    let mut names: Vec<String> = docs.iter().map(FnDoc::qualified_name).collect();
    names.extend(docs.iter().filter(|d| d.namespace != "core").map(|d| format!("{}::", d.namespace)));
    names.extend(
        [
            "let", "const", "fn", "if", "else", "for", "in", "while", "loop", "break", "continue", "return", "throw",
            "try", "catch", "import", "as", "true", "false",
        ]
        .map(String::from),
    );
    names.extend(["CONFIG", "ARGS", "DRY_RUN"].map(String::from));
    names.sort();
    names.dedup();
    names
}

struct ReplHelper {
    names: Vec<String>,
    vars: Vec<String>,
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == ':')
            .last()
            .map(|(i, _)| i)
            .unwrap_or(pos);
        let word = &line[start..pos];
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let mut out: Vec<Pair> = self
            .names
            .iter()
            .chain(self.vars.iter())
            .filter(|n| n.starts_with(word))
            .map(|n| Pair { display: n.clone(), replacement: n.clone() })
            .collect();
        out.dedup_by(|a, b| a.replacement == b.replacement);
        Ok((start, out))
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if is_incomplete(ctx.input()) { ValidationResult::Incomplete } else { ValidationResult::Valid(None) })
    }
}

/// Open brackets, an unterminated string or an unclosed block comment mean the expression goes
/// on on the next line. Brackets inside strings, characters and comments do not count.
fn is_incomplete(input: &str) -> bool {
    let mut depth: i32 = 0;
    let mut quote: Option<char> = None;
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '/') if chars.peek() == Some(&'/') => {
                chars.by_ref().take_while(|&c| c != '\n').for_each(drop);
            }
            (None, '/') if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                let closed = chars.by_ref().any(|c| std::mem::replace(&mut prev, c) == '*' && c == '/');
                if !closed {
                    return true;
                }
            }
            (None, '"' | '`' | '\'') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth -= 1,
            _ => {}
        }
    }
    depth > 0 || quote.is_some()
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(&'s self, prompt: &'p str, _default: bool) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_brackets_and_strings_continue_on_the_next_line() {
        assert!(is_incomplete("fn f(x) {"));
        assert!(is_incomplete("let s = `a"));
        assert!(!is_incomplete("let s = \"{\";"));
        assert!(!is_incomplete("f(1)"));
        assert!(!is_incomplete("let x = 1; // note ("));
        assert!(!is_incomplete("let c = '{';"));
        assert!(!is_incomplete("let x = /* ( */ 1;"));
        assert!(is_incomplete("let x = /* still open"));
    }
}
