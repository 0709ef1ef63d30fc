//! Running one script: compile (syntax errors exit 2), evaluate, render any error.

use std::sync::Arc;

use rhai::{EvalAltResult, Scope};

use super::diagnostics::{render_eval_error, render_parse_error};
use super::engine::build_engine;
use super::host::Host;
use super::resolver::Found;
use crate::error::{Error, ExitCode, Result};

pub fn run(host: &Arc<Host>, script: &Found) -> Result<()> {
    let engine = build_engine(host);
    let mut scope = Scope::new();
    let mut ast = engine
        .compile_with_scope(&scope, &script.text)
        .map_err(|e| Error::Script { rendered: render_parse_error(&e, &script.source), code: ExitCode::Usage })?;
    ast.set_source(script.source.clone());
    tracing::debug!(script = %script.source, location = %script.location.label(), "running");
    match engine.run_ast_with_scope(&mut scope, &ast) {
        Ok(()) => Ok(()),
        Err(err) => match script_failure(&err, &script.source) {
            Error::Script { code: ExitCode::Ok, .. } => Ok(()),
            failure => Err(failure),
        },
    }
}

pub fn script_failure(err: &EvalAltResult, source: &str) -> Error {
    let (rendered, code) = render_eval_error(err, source);
    if code == ExitCode::Cancelled {
        return Error::Cancelled;
    }
    Error::Script { rendered, code }
}
