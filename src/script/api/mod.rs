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
    Dynamic, EvalAltResult, FuncRegistration, Map, Module, NativeCallContext, Position, RhaiFunc, RhaiNativeFunc,
    Shared, Variant,
};

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
    let comment = doc.trim().lines().map(|l| format!("/// {l}").trim_end().to_string()).collect::<Vec<_>>().join("\n");
    // Pure and not volatile: what `FuncRegistration::set_into_module` assumes for these names.
    let func = with_call_position(f.into_rhai_function(true, false));
    FuncRegistration::new(name).with_params_info(params).with_comments([comment]).set_into_module_raw(
        module,
        FUNC::param_types(),
        func,
    );
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

/// The message of a script error: `e.message` for our maps, the text otherwise.
pub fn error_message(value: &Dynamic) -> String {
    if let Some(map) = value.read_lock::<Map>() {
        if let Some(m) = map.get("message") {
            return m.to_string();
        }
    }
    value.to_string()
}

/// The `kind` of a script error map, if it is one of ours.
pub fn error_kind(value: &Dynamic) -> Option<String> {
    value.read_lock::<Map>()?.get("kind").map(|k| k.to_string())
}

pub type RhaiResult<T> = Result<T, Box<EvalAltResult>>;
