//! Core functions every script has without a namespace: logging, tables, confirmation,
//! files, JSON, `parallel`, `fail`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rhai::{Array, Dynamic, EvalAltResult, FnPtr, INT, Map, Module, NativeCallContext};

use super::{RhaiResult, error_kind, error_message, register, script_error};
use crate::change::{Change, ChangeLog, LocalFile, LocalRemove};
use crate::script::Host;
use crate::secret::Secret;
use crate::ui::{Level, render_table};

/// How many items `parallel` runs at once when the script does not say.
pub const DEFAULT_PARALLEL: INT = 8;

pub fn module(host: &Arc<Host>) -> Module {
    let mut m = Module::new();
    register_logging(&mut m, host);
    register_output(&mut m, host);
    register_files(&mut m, host);
    register_destructive(&mut m, host);
    register_json(&mut m);
    register_parallel(&mut m, host);
    register_misc(&mut m, host);
    register_sorting(&mut m);
    register_join(&mut m);
    register_secret(&mut m);
    super::progress::register_all(&mut m, host);
    m
}

fn register_logging(m: &mut Module, host: &Arc<Host>) {
    let levels = [
        (
            "info",
            Level::Info,
            "Logs an informational line on stderr (hidden by `-q`).\n\n```rhai\ninfo(`found ${vms.len()} VMs`);\n```",
        ),
        (
            "ok",
            Level::Ok,
            "Logs a success line on stderr, in green (hidden by `-q`).\n\n```rhai\nok(\"cluster ready\");\n```",
        ),
        ("warn", Level::Warn, "Logs a warning on stderr, in yellow.\n\n```rhai\nwarn(\"node pve3 is offline\");\n```"),
        (
            "error",
            Level::Error,
            "Logs an error line on stderr, in red. Does not stop the script: use `fail` for that.\n\n```rhai\nerror(`${vm.name}: ${r.error}`);\n```",
        ),
    ];
    for (name, level, doc) in levels {
        let h = host.clone();
        register(m, name, &["message: &str", "()"], doc, move |msg: &str| h.log(level, msg));
    }
}

fn register_output(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    register(
        m,
        "table",
        &["rows: Array", "columns: Array", "()"],
        "Prints `rows` (an array of maps) as an aligned table with the given `columns` (map keys),\n\
         or as a JSON array under `--json`.\n\n```rhai\ntable(vms, [\"role\", \"node\", \"vmid\", \"name\"]);\n```",
        move |rows: Array, columns: Array| print_table(&h, &rows, &columns),
    );
    let h = host.clone();
    register(
        m,
        "table",
        &["rows: Array", "()"],
        "Prints `rows` (an array of maps) as a table whose columns are the keys of the first row.",
        move |rows: Array| {
            let columns: Array =
                match rows.first().and_then(|r| r.read_lock::<Map>().map(|m| m.keys().cloned().collect::<Vec<_>>())) {
                    Some(keys) => keys.into_iter().map(|k| Dynamic::from(k.to_string())).collect(),
                    None => Array::new(),
                };
            print_table(&h, &rows, &columns)
        },
    );
    let h = host.clone();
    register(
        m,
        "print_json",
        &["value: Dynamic", "()"],
        "Prints `value` as pretty JSON on stdout (what `--json` output uses).\n\n```rhai\nprint_json(#{servers: servers});\n```",
        move |v: Dynamic| -> RhaiResult<()> {
            h.ui.print(&to_json_text(&v, true)?);
            Ok(())
        },
    );
    let h = host.clone();
    register(
        m,
        "json_output",
        &["bool"],
        "True under `--json`: print data with `print_json` (or `table`, which follows it) and keep\n\
         human text on stderr.\n\n```rhai\nif json_output() { print_json(result); } else { table(rows); }\n```",
        move || h.options.json,
    );
    let h = host.clone();
    register(
        m,
        "confirm",
        &["message: &str", "bool"],
        "Asks a yes/no question on the terminal; true under `--yes`. Without a terminal and\n\
         without `--yes` it fails, so nothing unattended proceeds by accident.\n\n```rhai\nif !confirm(\"uninstall K3s from 5 nodes?\") { fail(\"cancelled\"); }\n```",
        move |msg: &str| confirm(&h, msg),
    );
}

fn print_table(host: &Host, rows: &Array, columns: &Array) -> RhaiResult<()> {
    if host.options.json {
        host.ui.print(&to_json_text(&Dynamic::from_array(rows.clone()), true)?);
        return Ok(());
    }
    let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    host.ui.print(&maps_as_table(rows, &columns));
    Ok(())
}

/// Maps as an aligned table of the given columns (keys); a missing key is an empty cell.
pub fn maps_as_table(rows: &Array, columns: &[String]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let map = row.read_lock::<Map>();
            columns
                .iter()
                .map(|c| map.as_ref().and_then(|m| m.get(c.as_str())).map(cell_text).unwrap_or_default())
                .collect()
        })
        .collect();
    render_table(columns, &cells)
}

/// A table cell: `()` as `-`, arrays joined by commas, everything else as printed.
fn cell_text(v: &Dynamic) -> String {
    if v.is_unit() {
        "-".into()
    } else if let Some(arr) = v.read_lock::<Array>() {
        arr.iter().map(cell_text).collect::<Vec<_>>().join(",")
    } else {
        v.to_string()
    }
}

fn confirm(host: &Host, msg: &str) -> RhaiResult<bool> {
    if host.options.yes {
        return Ok(true);
    }
    let answer = ask(msg, &format!("{msg} [y/N] "))?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// Shows `prompt` on the terminal and reads one line. Without a terminal it fails naming
/// `msg`: nothing unattended proceeds by accident (`--yes` answers instead).
fn ask(msg: &str, prompt: &str) -> RhaiResult<String> {
    if !std::io::stdin().is_terminal() {
        return Err(script_error(
            "confirmation",
            format!("{msg} — no terminal to ask on; pass --yes to confirm non-interactively"),
            None,
        ));
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| script_error("io", e.to_string(), None))?;
    Ok(answer)
}

fn register_files(m: &mut Module, host: &Arc<Host>) {
    register(
        m,
        "read_file",
        &["path: &str", "String"],
        "Reads a local text file (`~` expands to the home directory).\n\n```rhai\nlet token = read_file(\"~/.config/k3sx/k3s-token\");\n```",
        |path: &str| -> RhaiResult<String> {
            let p = expand(path);
            std::fs::read_to_string(&p).map_err(|e| script_error("io", format!("{}: {e}", p.display()), Some(path)))
        },
    );
    register(
        m,
        "file_exists",
        &["path: &str", "bool"],
        "True when a local file (or directory) exists.",
        |path: &str| expand(path).exists(),
    );
    let h = host.clone();
    let write = move |path: &str, text: &str, mode: INT| -> RhaiResult<()> {
        let mode = u32::try_from(mode).map_err(|_| script_error("argument", format!("bad mode {mode}"), Some(path)))?;
        write_local(&h, &expand(path), text.as_bytes(), mode, None).map(drop)
    };
    let plain = write.clone();
    register(
        m,
        "write_file",
        &["path: &str", "text: &str", "()"],
        "Writes a local file atomically with mode `0o644`. A change: printed, not made, under `--dry-run`.",
        move |path: &str, text: &str| plain(path, text, 0o644),
    );
    register(
        m,
        "write_file",
        &["path: &str", "text: &str", "mode: INT", "()"],
        "Writes a local file atomically (temp file + rename) with `mode` (e.g. `0o600` for secrets).\n\
         A change: under `--dry-run` it is printed and not made.\n\n```rhai\nwrite_file(\"token\", t, 0o600);\n```",
        write,
    );
    let h = host.clone();
    register(
        m,
        "save_config",
        &["key: &str", "value: Dynamic", "bool"],
        "Sets `section.key` in the config file in use (else `./k3sx.json`), changing only that value's\n\
         text and keeping every other key, its order and formatting; written atomically. The whole\n\
         new file is checked as the loader checks it first (unknown keys, types): on error nothing\n\
         is written. True when written; false when the file already held the value or the write\n\
         was only planned (`--dry-run`, where it is printed and not made).\n\n\
         ```rhai\nif save_config(\"k3s.version\", \"v1.33.4+k3s1\") { ok(\"saved\"); }\n```",
        move |key: &str, value: Dynamic| save_config(&h, key, value),
    );
}

fn save_config(host: &Host, key: &str, value: Dynamic) -> RhaiResult<bool> {
    let Some((section, name)) = key.split_once('.') else {
        return Err(script_error("argument", format!("`{key}`: expected section.key, e.g. k3s.version"), Some(key)));
    };
    let path = host.loaded.file.clone().unwrap_or_else(|| host.options.cwd.join("k3sx.json"));
    let json: serde_json::Value =
        rhai::serde::from_dynamic(&value).map_err(|e| script_error("argument", e.to_string(), Some(key)))?;
    // Checked against the schema before anything is written (a read, also under --dry-run).
    let edit = crate::config::plan_value_in_file(&path, section, name, &json)
        .map_err(|e| script_error("config", e.to_string(), Some(key)))?;
    let written = write_local(host, &edit.path, edit.text.as_bytes(), edit.mode, Some(format!("set {key} = {json}")))?;
    Ok(written == Some(true))
}

/// A local file write through the change log: checked and compared first (a read, also under
/// `--dry-run`), so a file that already holds `bytes` with `mode` is no change (`None`).
/// `Some(true)` when written, `Some(false)` when only planned (`--dry-run`).
pub fn write_local(
    host: &Host,
    path: &Path,
    bytes: &[u8],
    mode: u32,
    what: Option<String>,
) -> RhaiResult<Option<bool>> {
    let item = path.display().to_string();
    let fs_error = |e: crate::fsutil::FsError| script_error(e.kind(), e.to_string(), Some(&item));
    if !crate::fsutil::plan_write(path, bytes, mode).map_err(fs_error)?.changed() {
        return Ok(None);
    }
    let change = Change::LocalFile(LocalFile { path: path.to_path_buf(), mode, size: bytes.len() as u64, what });
    let applied =
        host.changes.apply(None, change, |_| crate::fsutil::write_atomic(path, bytes, mode)).map_err(fs_error)?;
    Ok(Some(matches!(applied, crate::change::Applied::Made(_))))
}

/// What destructive workflows (teardown) need: deleting a local file through the change log,
/// and a confirmation that takes typing a name.
fn register_destructive(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    register(
        m,
        "remove_file",
        &["path: &str", "what: &str", "bool"],
        "Deletes a local file (`~` expands to the home directory); `what` says what it is in the\n\
         plan. A change: printed, not made, under `--dry-run`. True when deleted (or, under\n\
         `--dry-run`, when it would be); false when there is no such file. Directories are refused.\n\n\
         ```rhai\nif remove_file(CONFIG.k3s.token_file, \"K3s cluster token\") { ok(\"token deleted\"); }\n```",
        move |path: &str, what: &str| remove_local(&h, &expand(path), what),
    );
    let h = host.clone();
    register(
        m,
        "confirm_typed",
        &["message: &str", "answer: &str", "bool"],
        "Asks on the terminal to type `answer` (e.g. the cluster's name) to go ahead: true only when\n\
         exactly that is typed. True under `--yes`, and under `--dry-run` (nothing will change; it\n\
         is not asked). Without a terminal it fails, so nothing unattended proceeds by accident.\n\n\
         ```rhai\nif !confirm_typed(\"uninstall K3s from 9 nodes\", \"k3sx\") { fail(\"cancelled\"); }\n```",
        move |msg: &str, answer: &str| confirm_typed(&h, msg, answer),
    );
}

fn remove_local(host: &Host, path: &Path, what: &str) -> RhaiResult<bool> {
    let item = path.display().to_string();
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(script_error("io", format!("cannot read {item}: {e}"), Some(&item))),
        Ok(meta) if meta.is_dir() => {
            return Err(script_error("io", format!("{item} is a directory, not a file"), Some(&item)));
        }
        Ok(_) => {}
    }
    let what = (!what.is_empty()).then(|| what.to_string());
    let change = Change::LocalRemove(LocalRemove { path: path.to_path_buf(), what });
    host.changes
        .apply(None, change, |_| std::fs::remove_file(path))
        .map_err(|e| script_error("io", format!("cannot delete {item}: {e}"), Some(&item)))?;
    Ok(true)
}

fn confirm_typed(host: &Host, msg: &str, answer: &str) -> RhaiResult<bool> {
    // Under --dry-run nothing will change: there is nothing to confirm.
    if host.options.yes || host.changes.dry_run() {
        return Ok(true);
    }
    Ok(ask(msg, &format!("{msg}\ntype '{answer}' to go ahead: "))?.trim() == answer)
}

fn expand(path: &str) -> PathBuf {
    crate::config::expand_home(std::path::Path::new(path))
}

fn register_json(m: &mut Module) {
    register(
        m,
        "to_json",
        &["value: Dynamic", "String"],
        "Serialises a value as compact JSON.\n\n```rhai\nlet s = to_json(#{a: 1}); // {\"a\":1}\n```",
        |v: Dynamic| to_json_text(&v, false),
    );
    register(
        m,
        "to_json",
        &["value: Dynamic", "pretty: bool", "String"],
        "Serialises a value as JSON, indented when `pretty` is true.",
        |v: Dynamic, pretty: bool| to_json_text(&v, pretty),
    );
    register(
        m,
        "from_json",
        &["text: &str", "Dynamic"],
        "Parses JSON text into maps, arrays and values.\n\n```rhai\nlet v = from_json(\"{\\\"a\\\": [1, 2]}\"); v.a[1] == 2\n```",
        |text: &str| -> RhaiResult<Dynamic> {
            let v: serde_json::Value =
                serde_json::from_str(text).map_err(|e| script_error("json", format!("invalid JSON: {e}"), None))?;
            rhai::serde::to_dynamic(v)
        },
    );
}

pub fn to_json_text(v: &Dynamic, pretty: bool) -> RhaiResult<String> {
    let json: serde_json::Value = rhai::serde::from_dynamic(v)?;
    let text = if pretty { serde_json::to_string_pretty(&json) } else { serde_json::to_string(&json) };
    text.map_err(|e| script_error("json", e.to_string(), None))
}

fn register_parallel(m: &mut Module, host: &Arc<Host>) {
    let doc = "Calls `f(item)` for every item on worker threads, at most `limit` at a time, and returns\n\
               one result per item in input order: `#{item, ok: true, value}` or\n\
               `#{item, ok: false, error, kind, reason}` (`reason`: the error's one-line form for a\n\
               table). One failing item never hides the others. Changes the items make are planned\n\
               and printed in item order, whichever finishes first.\n\n\
               ```rhai\nlet results = parallel(hosts, |h| ssh::query(h, \"uptime\"), 8);\n\
               for r in results { if !r.ok { error(`${r.item}: ${r.error}`); } }\n```";
    let h = host.clone();
    register(
        m,
        "parallel",
        &["items: Array", "f: FnPtr", "limit: INT", "Array"],
        doc,
        move |ctx: NativeCallContext, items: Array, f: FnPtr, limit: INT| parallel(&h, ctx, items, f, limit),
    );
    let h = host.clone();
    register(
        m,
        "parallel",
        &["items: Array", "f: FnPtr", "Array"],
        "`parallel(items, f, 8)`.",
        move |ctx: NativeCallContext, items: Array, f: FnPtr| parallel(&h, ctx, items, f, DEFAULT_PARALLEL),
    );
    let ints = |range: std::ops::Range<INT>| range.map(Dynamic::from_int).collect::<Array>();
    let h = host.clone();
    register(
        m,
        "parallel",
        &["items: Range<INT>", "f: FnPtr", "limit: INT", "Array"],
        "`parallel` over the integers of a range: `parallel(0..16, |i| ..., 4)`.",
        move |ctx: NativeCallContext, items: std::ops::Range<INT>, f: FnPtr, limit: INT| {
            parallel(&h, ctx, ints(items), f, limit)
        },
    );
    let h = host.clone();
    register(
        m,
        "parallel",
        &["items: Range<INT>", "f: FnPtr", "Array"],
        "`parallel(0..n, f, 8)`.",
        move |ctx: NativeCallContext, items: std::ops::Range<INT>, f: FnPtr| {
            parallel(&h, ctx, ints(items), f, DEFAULT_PARALLEL)
        },
    );
    let h = host.clone();
    register(
        m,
        "parallel",
        &["items: RangeInclusive<INT>", "f: FnPtr", "limit: INT", "Array"],
        "`parallel` over the integers of an inclusive range: `parallel(0..=3, |i| ..., 2)`.",
        move |ctx: NativeCallContext, items: std::ops::RangeInclusive<INT>, f: FnPtr, limit: INT| {
            parallel(&h, ctx, items.map(Dynamic::from_int).collect(), f, limit)
        },
    );
    let h = host.clone();
    register(
        m,
        "parallel",
        &["items: RangeInclusive<INT>", "f: FnPtr", "Array"],
        "`parallel(0..=n, f, 8)`.",
        move |ctx: NativeCallContext, items: std::ops::RangeInclusive<INT>, f: FnPtr| {
            parallel(&h, ctx, items.map(Dynamic::from_int).collect(), f, DEFAULT_PARALLEL)
        },
    );
}

/// Runs the items on worker threads. The changes they make keep plan order: item by item, as
/// if run one after the other (see `ChangeLog`).
fn parallel(host: &Host, ctx: NativeCallContext, items: Array, f: FnPtr, limit: INT) -> RhaiResult<Array> {
    if limit < 1 {
        return Err(script_error("argument", format!("parallel: limit must be at least 1, got {limit}"), None));
    }
    let workers = (limit as usize).min(items.len());
    // The stored context lets each worker thread call the script closure with the caller's
    // environment (captured variables, script functions). These APIs are marked volatile.
    #[allow(deprecated)]
    let store = ctx.store_data();
    let engine = ctx.engine();
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Dynamic>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let group = host.changes.begin_group();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                #[allow(deprecated)]
                let c = store.create_context(engine);
                // The closure's captured variables are shared cells: threads calling through
                // them at once contend ("Data race detected"). Each worker gets its own copy.
                let f = detached_fn(&f);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    #[allow(deprecated)]
                    let outcome =
                        ChangeLog::in_item(&group, i, || f.call_within_context::<Dynamic>(&c, (detached(item),)));
                    *results[i].lock().expect("no worker panics holding it") = Some(item_result(item, outcome));
                }
            });
        }
    });
    host.changes.end_group(&group);
    let results: Array =
        results.into_iter().map(|r| r.into_inner().expect("not poisoned").unwrap_or(Dynamic::UNIT)).collect();
    // Ctrl-C stops the whole script, not just the items that were running.
    if let Some(terminated) =
        results.iter().find_map(|r| r.read_lock::<Map>().and_then(|m| m.get("terminated").cloned()))
    {
        return Err(EvalAltResult::ErrorTerminated(terminated, rhai::Position::NONE).into());
    }
    Ok(results)
}

/// A deep copy that shares nothing with `value`: shared cells (captured variables) become
/// plain values, also inside arrays, maps and the captures of closures.
fn detached(value: &Dynamic) -> Dynamic {
    let value = value.flatten_clone();
    if value.is_fnptr() {
        return Dynamic::from(detached_fn(&value.cast::<FnPtr>()));
    }
    if value.is_array() {
        return Dynamic::from_array(value.cast::<Array>().iter().map(detached).collect());
    }
    if value.is_map() {
        return Dynamic::from_map(value.cast::<Map>().into_iter().map(|(k, v)| (k, detached(&v))).collect());
    }
    value
}

/// A closure whose captured variables are [`detached`] copies.
fn detached_fn(f: &FnPtr) -> FnPtr {
    let mut copy = f.clone();
    copy.set_curry(f.iter_curry().map(detached).collect::<Vec<_>>());
    copy
}

fn item_result(item: &Dynamic, outcome: RhaiResult<Dynamic>) -> Dynamic {
    let mut m = Map::new();
    m.insert("item".into(), item.clone());
    match outcome {
        Ok(value) => {
            m.insert("ok".into(), true.into());
            m.insert("value".into(), value);
        }
        Err(err) => {
            m.insert("ok".into(), false.into());
            let err = innermost(*err);
            if let EvalAltResult::ErrorTerminated(token, _) = &err {
                m.insert("terminated".into(), token.clone());
            }
            let (message, kind, reason) = match &err {
                EvalAltResult::ErrorRuntime(v, _) => {
                    let reason = v.read_lock::<Map>().and_then(|m| m.get("reason").map(|r| r.to_string()));
                    (error_message(v), error_kind(v).unwrap_or_else(|| "error".into()), reason)
                }
                other => (other.to_string(), "error".into(), None),
            };
            // `reason` is the one-line form for a table; the full message when there is none.
            m.insert("reason".into(), reason.unwrap_or_else(|| message.clone()).into());
            m.insert("error".into(), message.into());
            m.insert("kind".into(), kind.into());
        }
    }
    m.into()
}

/// The error inside function-call and module wrappers: what the script author threw.
pub fn innermost(err: EvalAltResult) -> EvalAltResult {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) | EvalAltResult::ErrorInModule(_, inner, _) => {
            innermost(*inner)
        }
        other => other,
    }
}

fn register_sorting(m: &mut Module) {
    register(
        m,
        "sort_by",
        &["items: Array", "keys: Array", "Array"],
        "Sorts maps by the values of `keys`, first key first (numbers numerically, strings by\n\
         character code, `()` first); stable, and native: use it rather than a comparator closure\n\
         on large lists.\n\n```rhai\nlet vms = sort_by(pve::vms(), [\"node\", \"vmid\"]);\n```",
        |mut items: Array, keys: Array| -> Array {
            let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            items.sort_by(|a, b| {
                let (a, b) = (a.read_lock::<Map>(), b.read_lock::<Map>());
                keys.iter()
                    .map(|k| {
                        let field = |m: &Option<_>| -> Option<Dynamic> {
                            m.as_ref().and_then(|m: &rhai::DynamicReadLock<Map>| m.get(k.as_str()).cloned())
                        };
                        compare_values(field(&a), field(&b))
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            items
        },
    );
}

/// `Secret`: a value scripts pass around (the K3s token, a password) that prints as
/// `<redacted>` everywhere, also inside strings, so it cannot reach a log or a command line.
fn register_secret(m: &mut Module) {
    m.set_custom_type::<Secret>("Secret");
    for name in ["to_string", "to_debug"] {
        register(m, name, &["secret: &mut Secret", "String"], "A `Secret` shows as `<redacted>`.", |s: &mut Secret| {
            s.to_string()
        });
    }
    register(
        m,
        "is_empty",
        &["secret: &mut Secret", "bool"],
        "True when the secret is the empty string.",
        |s: &mut Secret| s.is_empty(),
    );
}

fn register_join(m: &mut Module) {
    register(
        m,
        "join",
        &["items: Array", "separator: &str", "String"],
        "The items as text, separated by `separator`.\n\n```rhai\njoin([\"pve1/101\", \"pve1/102\"], \", \") // \"pve1/101, pve1/102\"\n```",
        |items: Array, sep: &str| items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(sep),
    );
}

fn compare_values(a: Option<Dynamic>, b: Option<Dynamic>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a, b) = (a.filter(|v| !v.is_unit()), b.filter(|v| !v.is_unit()));
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => match (a.as_int(), b.as_int()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => match (a.as_float(), b.as_float()) {
                (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
                _ => a.to_string().cmp(&b.to_string()),
            },
        },
    }
}

fn register_misc(m: &mut Module, host: &Arc<Host>) {
    let h = host.clone();
    register(
        m,
        "run_lock",
        &["name: &str", "()"],
        "Holds the workstation-wide lock `name` until the script ends, first waiting (with a line\n\
         saying so; Ctrl-C stops) while another k3sx run holds it: runs that plan from what they\n\
         read and then write (configure-ips) must not interleave. Not a change: nothing outside\n\
         this machine is touched.\n\n```rhai\nrun_lock(`configure-ips-${CONFIG.proxmox.host}`);\n```",
        move |name: &str| -> RhaiResult<()> {
            let waiting = |path: &std::path::Path| {
                h.log(Level::Info, &format!("waiting for another k3sx run that holds {}", path.display()))
            };
            match h.run_lock(name, &waiting) {
                Ok(true) => Ok(()),
                Ok(false) => Err(EvalAltResult::ErrorTerminated("cancelled".into(), rhai::Position::NONE).into()),
                Err(e) => Err(script_error("io", format!("cannot take the lock `{name}`: {e}"), Some(name))),
            }
        },
    );
    let h = host.clone();
    register(
        m,
        "sleep",
        &["seconds: FLOAT", "()"],
        "Waits `seconds` (fractions allowed); Ctrl-C interrupts it.\n\n```rhai\nsleep(0.5);\n```",
        move |secs: rhai::FLOAT| sleep(&h, secs),
    );
    let h = host.clone();
    register(m, "sleep", &["seconds: INT", "()"], "Waits `seconds`; Ctrl-C interrupts it.", move |secs: INT| {
        sleep(&h, secs as rhai::FLOAT)
    });
    register(
        m,
        "env",
        &["name: &str", "Dynamic"],
        "The value of an environment variable, or `()` when unset.\n\n```rhai\nlet token = env(\"GITHUB_TOKEN\");\nif token == () { warn(\"unauthenticated\"); }\n```",
        |name: &str| std::env::var(name).map(Dynamic::from).unwrap_or(Dynamic::UNIT),
    );
    register(
        m,
        "exit",
        &["code: INT", "()"],
        "Ends the script now with exit status `code` (0 ok, 1 failed, 2 usage); nothing is printed.\n\n\
         ```rhai\nif vms.is_empty() { exit(0); }\n```",
        exit,
    );
    register(m, "exit", &["()"], "Ends the script now with exit status 0.", || exit(0));
    register(
        m,
        "fail",
        &["message: &str", "()"],
        "Stops the script with an error message and exit status 1 (catchable with `try`).\n\n```rhai\nif failed > 0 { fail(`${failed} VMs failed`); }\n```",
        |msg: &str| -> RhaiResult<()> { Err(script_error("failed", msg, None)) },
    );
}

/// `exit(code)`: a script error of kind `exit` that the runner turns into that exit status.
fn exit(code: INT) -> RhaiResult<()> {
    let mut map = Map::new();
    map.insert("kind".into(), "exit".into());
    map.insert("code".into(), code.into());
    map.insert("message".into(), format!("exit({code})").into());
    Err(EvalAltResult::ErrorRuntime(map.into(), rhai::Position::NONE).into())
}

fn sleep(host: &Host, secs: rhai::FLOAT) -> RhaiResult<()> {
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(script_error("argument", format!("sleep: {secs} seconds is out of range"), None));
    }
    if host.sleep(Duration::from_secs_f64(secs)) {
        Ok(())
    } else {
        Err(EvalAltResult::ErrorTerminated("cancelled".into(), rhai::Position::NONE).into())
    }
}
