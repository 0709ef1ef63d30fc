//! Adapters from the domain modules to Rhai: one file per namespace. Each registers its
//! functions with a doc comment and parameter names, so `k3sx doc` and the REPL's `:help`
//! show them.

pub mod core;
pub mod ipam;
pub mod k3s;
pub mod progress;
pub mod pve;
pub mod ssh;

use rhai::{
    Array, Dynamic, EvalAltResult, FnNamespace, FuncRegistration, INT, Map, Module, NativeCallContext, Position,
    RhaiFunc, RhaiNativeFunc, Shared, Variant,
};

use crate::change::{Applied, Change, RemoteCommand};
use crate::pve::{PveError, check_segment};
use crate::script::Host;
use crate::ssh::{CommandOptions, Output, SshError};

/// Registers `f` as `name` in `module` with its parameter names (`"name: Type"`, the last entry
/// being the return type) and its doc comment (plain text; each line becomes a `///` line).
pub fn register<A: 'static, const N: usize, const X: bool, R: Variant + Clone, const F: bool, FUNC>(
    module: &mut Module,
    name: &str,
    params: &[&str],
    doc: &str,
    f: FUNC,
) where
    FUNC: RhaiNativeFunc<A, N, X, R, F> + Send + Sync + 'static,
{
    register_in(module, FnNamespace::Internal, name, params, doc, f);
}

/// Like [`register`], for a method of a type a namespace returns (`task.planned()`): exposed
/// globally so method-call syntax finds it outside the namespace.
pub fn register_method<A: 'static, const N: usize, const X: bool, R: Variant + Clone, const F: bool, FUNC>(
    module: &mut Module,
    name: &str,
    params: &[&str],
    doc: &str,
    f: FUNC,
) where
    FUNC: RhaiNativeFunc<A, N, X, R, F> + Send + Sync + 'static,
{
    register_in(module, FnNamespace::Global, name, params, doc, f);
}

fn register_in<A: 'static, const N: usize, const X: bool, R: Variant + Clone, const F: bool, FUNC>(
    module: &mut Module,
    namespace: FnNamespace,
    name: &str,
    params: &[&str],
    doc: &str,
    f: FUNC,
) where
    FUNC: RhaiNativeFunc<A, N, X, R, F> + Send + Sync + 'static,
{
    let comment = doc.trim().lines().map(|l| format!("/// {l}").trim_end().to_string()).collect::<Vec<_>>().join("\n");
    // Pure and not volatile: what `FuncRegistration::set_into_module` assumes for these names.
    let func = with_call_position(f.into_rhai_function(true, false));
    FuncRegistration::new(name)
        .with_namespace(namespace)
        .with_params_info(params)
        .with_comments([comment])
        .set_into_module_raw(module, FUNC::param_types(), func);
}

/// The native function type Rhai stores.
type NativeFn =
    dyn Fn(Option<NativeCallContext>, &mut [&mut Dynamic]) -> Result<Dynamic, Box<EvalAltResult>> + Send + Sync;

/// Rhai leaves an error raised by a namespaced native function (`k3s::compare(..)`) without a
/// position, so the user would not learn which line failed. The wrapper asks for the call
/// context and puts the call's position on such an error.
fn with_call_position(func: RhaiFunc) -> RhaiFunc {
    let wrap = |inner: Shared<NativeFn>, has_context: bool| -> Shared<NativeFn> {
        Shared::new(move |ctx: Option<NativeCallContext>, args: &mut [&mut Dynamic]| {
            let pos = ctx.as_ref().map(NativeCallContext::call_position).unwrap_or(Position::NONE);
            inner(if has_context { ctx } else { None }, args).map_err(|mut err| {
                if err.position().is_none() {
                    err.set_position(pos);
                }
                err
            })
        })
    };
    match func {
        RhaiFunc::Pure { func, has_context, is_pure, is_volatile } => {
            RhaiFunc::Pure { func: wrap(func, has_context), has_context: true, is_pure, is_volatile }
        }
        RhaiFunc::Method { func, has_context, is_pure, is_volatile } => {
            RhaiFunc::Method { func: wrap(func, has_context), has_context: true, is_pure, is_volatile }
        }
        other => other,
    }
}

/// A script-catchable error carrying `#{kind, message, item}`: `try { .. } catch (e) { e.kind }`.
pub fn script_error(kind: &str, message: impl Into<String>, item: Option<&str>) -> Box<EvalAltResult> {
    let mut map = Map::new();
    map.insert("kind".into(), kind.into());
    map.insert("message".into(), message.into().into());
    map.insert("item".into(), item.map(|s| Dynamic::from(s.to_string())).unwrap_or(Dynamic::UNIT));
    EvalAltResult::ErrorRuntime(map.into(), Position::NONE).into()
}

/// `(node, vmid, "node/vmid name")` of a VM map, for calls and error messages. The node must
/// be a valid API path segment: a forged map cannot redirect a request.
pub fn vm_ref(vm: &Map) -> RhaiResult<(String, u32, String)> {
    let node = vm.get("node").and_then(|n| n.clone().into_string().ok());
    let vmid = vm.get("vmid").and_then(|v| v.as_int().ok()).and_then(|v| u32::try_from(v).ok());
    let (Some(node), Some(vmid)) = (node, vmid) else {
        return Err(script_error("argument", "expected a VM map with `node` and `vmid` (as pve::vms() returns)", None));
    };
    check_segment(&node).map_err(|e| script_error("argument", format!("VM node name: {e}"), None))?;
    let name = vm.get("name").filter(|n| !n.is_unit()).map(|n| format!(" {n}")).unwrap_or_default();
    Ok((node.clone(), vmid, format!("{node}/{vmid}{name}")))
}

/// A Proxmox error as a catchable script error `#{kind, message, item, reason}`; a failed task
/// also carries `exitstatus` and `log_tail`. Setup kinds (auth, TLS, config) exit 2 uncaught.
pub fn pve_error(item: Option<&str>) -> impl Fn(PveError) -> Box<EvalAltResult> + '_ {
    move |e| {
        let mut err = script_error(e.kind(), e.to_string(), item);
        with_fields(&mut err, |map| {
            map.insert("reason".into(), e.reason().into());
            if let PveError::TaskFailed { exitstatus, log_tail, .. } = &e {
                map.insert("exitstatus".into(), exitstatus.clone().into());
                map.insert("log_tail".into(), log_tail.iter().cloned().map(Dynamic::from).collect::<Array>().into());
            }
            if let Some(status) = e.status() {
                map.insert("status".into(), (status as INT).into());
            }
        });
        err
    }
}

/// An SSH failure as a catchable script error; a failed command also carries `host`,
/// `command`, `code` and `stderr` (its last lines). The pool masks registered secrets (a
/// `Secret` sent on stdin is registered) in what a remote host printed.
/// Ctrl-C ends the whole script, as it does between statements.
fn ssh_error(e: &SshError) -> Box<EvalAltResult> {
    if let SshError::Cancelled { .. } = e {
        return EvalAltResult::ErrorTerminated("cancelled".into(), rhai::Position::NONE).into();
    }
    let message = e.to_string();
    let mut err = script_error(e.kind(), message.clone(), e.host());
    // The one-line form for a table: the first line, without the command it ran.
    let first = message.lines().next().unwrap_or_default();
    let reason = first.split(" (command `").next().unwrap_or(first).to_string();
    with_fields(&mut err, |map| {
        map.insert("reason".into(), reason.into());
    });
    if let SshError::Command { host, command, code, stderr_tail } = e {
        with_fields(&mut err, |map| {
            map.insert("host".into(), host.clone().into());
            map.insert("command".into(), command.clone().into());
            map.insert("code".into(), (*code as INT).into());
            map.insert("stderr".into(), stderr_tail.clone().into());
        });
    }
    err
}

/// A command on `target`: a read (`change` false) always runs; a change goes through the
/// change log and returns `None` when only planned (`--dry-run`).
pub fn remote(host: &Host, target: &str, cmd: &str, run: &CommandOptions, change: bool) -> RhaiResult<Option<Output>> {
    let pool = host.ssh();
    if !change {
        return pool.run_with(target, cmd, run).map(Some).map_err(|e| ssh_error(&e));
    }
    let shown = pool.shown(target).map_err(|e| ssh_error(&e))?;
    let described = Change::Command(RemoteCommand {
        host: shown,
        command: cmd.to_string(),
        sudo: run.sudo && pool.uses_sudo(),
        stdin_len: run.input.map(<[u8]>::len),
    });
    match host.changes.apply(None, described, |_| pool.run_with(target, cmd, run)).map_err(|e| ssh_error(&e))? {
        Applied::Planned => Ok(None),
        Applied::Made(out) => Ok(Some(out)),
    }
}

/// Adds fields to the map of a [`script_error`].
pub fn with_fields(err: &mut Box<EvalAltResult>, add: impl FnOnce(&mut Map)) {
    if let EvalAltResult::ErrorRuntime(value, _) = err.as_mut()
        && let Some(mut map) = value.write_lock::<Map>()
    {
        add(&mut map);
    }
}

/// The message of a script error: `e.message` for our maps, the text otherwise.
pub fn error_message(value: &Dynamic) -> String {
    if let Some(map) = value.read_lock::<Map>()
        && let Some(m) = map.get("message")
    {
        return m.to_string();
    }
    value.to_string()
}

/// The `kind` of a script error map, if it is one of ours.
pub fn error_kind(value: &Dynamic) -> Option<String> {
    value.read_lock::<Map>()?.get("kind").map(|k| k.to_string())
}

pub type RhaiResult<T> = Result<T, Box<EvalAltResult>>;
