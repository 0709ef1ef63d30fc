//! The built-in scripts and modules, embedded in the binary.

use include_dir::{Dir, include_dir};

static SCRIPTS: Dir = include_dir!("$CARGO_MANIFEST_DIR/scripts");
static STDLIB: Dir = include_dir!("$CARGO_MANIFEST_DIR/stdlib");

/// Source names of built-ins start with this, so diagnostics can find their text.
pub const PREFIX: &str = "built-in:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Script,
    Module,
}

impl Kind {
    pub fn dir_name(self) -> &'static str {
        match self {
            Kind::Script => "scripts",
            Kind::Module => "stdlib",
        }
    }

    fn dir(self) -> &'static Dir<'static> {
        match self {
            Kind::Script => &SCRIPTS,
            Kind::Module => &STDLIB,
        }
    }
}

/// The text of a built-in script or module by name (without `.rhai`).
pub fn get(kind: Kind, name: &str) -> Option<&'static str> {
    kind.dir().get_file(format!("{name}.rhai"))?.contents_utf8()
}

/// Names of all built-ins of a kind, sorted.
pub fn names(kind: Kind) -> Vec<String> {
    let mut names: Vec<String> =
        kind.dir().files().filter_map(|f| f.path().to_str()?.strip_suffix(".rhai").map(str::to_string)).collect();
    names.sort();
    names
}

/// `built-in:stdlib/inventory.rhai`
pub fn source_name(kind: Kind, name: &str) -> String {
    format!("{PREFIX}{}/{name}.rhai", kind.dir_name())
}

/// The text behind a source name, whether built-in or a file on disk; `<repl>` and other
/// `<...>` names have no file behind them.
pub fn source_text(source: &str) -> Option<String> {
    if source.starts_with('<') {
        return None;
    }
    match source.strip_prefix(PREFIX) {
        Some(rest) => {
            let (dir, file) = rest.split_once('/')?;
            let kind = if dir == "scripts" { Kind::Script } else { Kind::Module };
            get(kind, file.strip_suffix(".rhai")?).map(str::to_string)
        }
        None => std::fs::read_to_string(source).ok(),
    }
}
