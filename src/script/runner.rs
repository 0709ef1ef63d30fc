//! Running one script: compile (syntax errors exit 2), evaluate, render any error.

use std::sync::Arc;

use rhai::{EvalAltResult, Scope};

use super::diagnostics::{Hints, render_eval_error, render_parse_error};
use super::engine::build_engine;
use super::host::Host;
use super::resolver::Found;
use crate::error::{Error, ExitCode, Result};
use crate::ui::Level;

pub fn run(host: &Arc<Host>, script: &Found) -> Result<()> {
    let engine = build_engine(host);
    let mut scope = Scope::new();
    let mut ast = engine
        .compile_with_scope(&scope, &script.text)
        .map_err(|e| Error::Script { rendered: render_parse_error(&e, &script.source), code: ExitCode::Usage })?;
    ast.set_source(script.source.clone());
    tracing::debug!(script = %script.source, location = %script.location.label(), "running");
    let outcome = match engine.run_ast_with_scope(&mut scope, &ast) {
        Ok(()) => Ok(()),
        Err(err) => match script_failure(
            &err,
            &script.source,
            &Hints { engine: &engine, cwd: &host.options.cwd, scope: Some(&scope) },
        ) {
            Error::Script { code: ExitCode::Ok, .. } => Ok(()),
            failure => Err(failure),
        },
    };
    report_changes(host);
    outcome?;
    let counts = host.changes.counts();
    if host.options.expect_no_changes && counts.planned > 0 {
        return Err(Error::ChangesPending(counts.planned));
    }
    Ok(())
}

/// The end of the run's plan: anything not printed yet, one summary line, and under `--json`
/// the plan as the last JSON document on stdout.
fn report_changes(host: &Host) {
    host.changes.flush();
    let counts = host.changes.counts();
    if host.options.dry_run {
        let line = match counts.planned {
            0 => "dry run: nothing to change".to_string(),
            n => format!("dry run: {n} change(s) planned, none made"),
        };
        host.log(Level::Info, &line);
    } else if counts.failed > 0 {
        host.log(Level::Info, &format!("{} change(s) made, {} failed", counts.made, counts.failed));
    }
    if host.options.json && (host.options.dry_run || counts.made + counts.failed > 0) {
        let plan: Vec<serde_json::Value> = host.changes.entries().iter().map(|e| e.to_json()).collect();
        let doc = serde_json::json!({"plan": plan, "dry_run": host.options.dry_run});
        host.ui.print(&serde_json::to_string_pretty(&doc).expect("the plan serialises"));
    }
}

pub fn script_failure(err: &EvalAltResult, source: &str, hints: &Hints) -> Error {
    let (rendered, code) = render_eval_error(err, source, hints);
    if code == ExitCode::Cancelled {
        return Error::Cancelled;
    }
    Error::Script { rendered, code }
}
