//! The one place that builds the engine, for the CLI, the REPL, the docs and the tests.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use std::collections::HashMap;

use rhai::{Dynamic, Engine};

use super::api;
use super::host::Host;
use super::resolver::StdlibResolver;
use crate::ui::Level;

/// The engine with every primitive registered and the stdlib resolver in place.
pub fn build_engine(host: &Arc<Host>) -> Engine {
    let mut engine = Engine::new();
    // Depth limits guard against runaway recursion. No data-size limits: with any of them set,
    // Rhai re-measures a whole array after every `push`, which made building a 3,000-VM list
    // quadratic (docs/performance.md); a runaway script is stopped with Ctrl-C instead.
    engine.set_max_expr_depths(256, 128);
    engine.set_max_call_levels(96);
    // `CONFIG.netwrok` must be an error, not a silent `()`.
    engine.set_fail_on_invalid_map_property(true);

    let h = host.clone();
    engine.on_print(move |s| h.ui.print(s));
    let h = host.clone();
    engine.on_debug(move |s, src, pos| h.log(Level::Info, &format!("{}:{pos} {s}", src.unwrap_or("script"))));
    let cancel = host.cancel.clone();
    engine.on_progress(move |_| cancel.load(Ordering::Relaxed).then(|| Dynamic::from("cancelled")));

    // `CONFIG`, `ARGS` and `DRY_RUN` resolve everywhere: in the script, in its functions and
    // in imported modules (a scope constant would be invisible inside functions).
    let vars = script_vars(host);
    #[allow(deprecated)] // volatile, not deprecated: the documented way to inject variables
    engine.on_var(move |name, _, _| Ok(vars.get(name).cloned()));

    engine.register_global_module(api::core::module(host).into());
    engine.register_static_module("ipam", api::ipam::module(host).into());
    engine.register_static_module("k3s", api::k3s::module(host).into());
    engine.register_static_module("pve", api::pve::module(host).into());
    engine.register_static_module("ssh", api::ssh::module(host).into());
    engine.set_module_resolver(StdlibResolver::new(host.options.cwd.clone()));
    engine
}

/// The variables every script sees: `CONFIG` (secrets excluded), `ARGS`, `DRY_RUN`.
fn script_vars(host: &Host) -> HashMap<&'static str, Dynamic> {
    let config = rhai::serde::to_dynamic(host.config()).expect("the configuration converts to a map");
    let mut vars = HashMap::new();
    vars.insert("CONFIG", config);
    vars.insert("ARGS", Dynamic::from_map(host.args.clone()));
    vars.insert("DRY_RUN", Dynamic::from_bool(host.options.dry_run));
    vars
}
