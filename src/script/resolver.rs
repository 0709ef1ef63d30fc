//! Finding scripts and modules: a local copy wins over the user's, which wins over the
//! built-in one.
//!
//! Scripts: `./scripts/` → `$K3SX_SCRIPTS` (else `~/.config/k3sx/scripts/`) → built-in.
//! Modules: `./stdlib/` → `$K3SX_STDLIB` (else `~/.config/k3sx/stdlib/`) → built-in.
//! One resolver does all three levels (rather than a `ModuleResolversCollection`) so every
//! module's source is named by the file it came from, which diagnostics print.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

use super::embedded::{self, Kind};
use crate::error::{Error, Result};

/// A script or module found by name.
#[derive(Debug, Clone)]
pub struct Found {
    pub name: String,
    /// The source name diagnostics show: a path, or `built-in:scripts/NAME.rhai`.
    pub source: String,
    pub text: String,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    User(PathBuf),
    BuiltIn,
}

impl Location {
    pub fn label(&self) -> String {
        match self {
            Location::Local(p) | Location::User(p) => p.display().to_string(),
            Location::BuiltIn => "built-in".into(),
        }
    }
}

fn user_dir(kind: Kind) -> Option<PathBuf> {
    let var = match kind {
        Kind::Script => "K3SX_SCRIPTS",
        Kind::Module => "K3SX_STDLIB",
    };
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(dirs::config_dir()?.join("k3sx").join(kind.dir_name())),
    }
}

/// The directories searched for a kind, most specific first, as `Local(dir)` / `User(dir)`.
pub fn search_dirs(kind: Kind, cwd: &Path) -> Vec<Location> {
    let mut dirs = vec![Location::Local(cwd.join(kind.dir_name()))];
    dirs.extend(user_dir(kind).map(Location::User));
    dirs
}

/// Every place `name` is found, most specific first (the first one is used).
pub fn find_all(kind: Kind, name: &str, cwd: &Path) -> Vec<Found> {
    let name = name.strip_suffix(".rhai").unwrap_or(name);
    let file = format!("{name}.rhai");
    let mut found = Vec::new();
    for dir in search_dirs(kind, cwd) {
        let location = match dir {
            Location::Local(d) => Location::Local(d.join(&file)),
            Location::User(d) => Location::User(d.join(&file)),
            Location::BuiltIn => continue,
        };
        let (Location::Local(path) | Location::User(path)) = &location else {
            continue;
        };
        if let Ok(text) = std::fs::read_to_string(path) {
            found.push(Found { name: name.into(), source: path.display().to_string(), text, location });
        }
    }
    if let Some(text) = embedded::get(kind, name) {
        found.push(Found {
            name: name.into(),
            source: embedded::source_name(kind, name),
            text: text.into(),
            location: Location::BuiltIn,
        });
    }
    found
}

/// Names of scripts or modules: built-ins plus those in the local and user dirs, sorted.
pub fn names(kind: Kind, cwd: &Path) -> Vec<String> {
    let mut names = embedded::names(kind);
    for dir in search_dirs(kind, cwd) {
        let (Location::Local(dir) | Location::User(dir)) = dir else { continue };
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for e in entries.flatten() {
            if let Some(n) = e.file_name().to_str().and_then(|n| n.strip_suffix(".rhai")) {
                names.push(n.to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Resolves `k3sx run SCRIPT`: an existing path first, then the script search order.
pub fn find_script(script: &str, cwd: &Path) -> Result<Found> {
    let as_path = cwd.join(script);
    let looks_like_path = script.contains('/') || script.ends_with(".rhai");
    if looks_like_path && as_path.is_file() {
        let text = std::fs::read_to_string(&as_path).map_err(|e| Error::io(&as_path, e))?;
        let name = as_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok(Found { name, source: script.to_string(), text, location: Location::Local(as_path) });
    }
    if script.contains('/') {
        return Err(Error::Usage(format!("no such script file: {script}")));
    }
    find_all(Kind::Script, script, cwd).into_iter().next().ok_or_else(|| {
        let known = embedded::names(Kind::Script).join(", ");
        Error::Usage(format!(
            "no script named `{script}` in ./scripts, the user scripts dir or the built-ins ({known}); \
             a `{script}.rhai` of your own in ./scripts would run"
        ))
    })
}

/// Registers every module (`names(Kind::Module, cwd)`, each resolved as `import` would) as a
/// static module of `engine`, so `inventory::load` works without an import and the docs and
/// definitions list the modules' functions. Returns the modules that failed to load.
pub fn register_modules(engine: &mut Engine, cwd: &Path) -> Vec<(String, Box<EvalAltResult>)> {
    let resolver = StdlibResolver::new(cwd.to_path_buf());
    let mut failed = Vec::new();
    let mut loaded = Vec::new();
    for name in names(Kind::Module, cwd) {
        match resolver.resolve(engine, None, &name, Position::NONE) {
            Ok(module) => loaded.push((name, module)),
            Err(e) => failed.push((name, e)),
        }
    }
    for (name, module) in loaded {
        engine.register_static_module(name, module);
    }
    failed
}

/// The module resolver: local → user → built-in, each module compiled once per engine.
pub struct StdlibResolver {
    cwd: PathBuf,
    cache: Mutex<HashMap<String, Shared<Module>>>,
}

impl StdlibResolver {
    pub fn new(cwd: PathBuf) -> Self {
        StdlibResolver { cwd, cache: Mutex::new(HashMap::new()) }
    }
}

impl ModuleResolver for StdlibResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        if let Some(m) = self.cache.lock().expect("not poisoned").get(path) {
            return Ok(m.clone());
        }
        let found = if path.contains('/') {
            let p = self.cwd.join(path).with_extension("rhai");
            let text = std::fs::read_to_string(&p).map_err(|_| EvalAltResult::ErrorModuleNotFound(path.into(), pos))?;
            Found { name: path.into(), source: p.display().to_string(), text, location: Location::Local(p) }
        } else {
            find_all(Kind::Module, path, &self.cwd)
                .into_iter()
                .next()
                .ok_or_else(|| EvalAltResult::ErrorModuleNotFound(path.into(), pos))?
        };
        let in_module = |err: Box<EvalAltResult>| -> Box<EvalAltResult> {
            EvalAltResult::ErrorInModule(found.source.clone(), err, pos).into()
        };
        let mut ast = engine.compile(&found.text).map_err(|e| in_module(e.into()))?;
        ast.set_source(found.source.clone());
        let module: Shared<Module> = Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(in_module)?.into();
        self.cache.lock().expect("not poisoned").insert(path.to_string(), module.clone());
        Ok(module)
    }
}
