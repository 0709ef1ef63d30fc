//! Dispatch: parse the command line, load the configuration, run the script or command.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{CommandFactory, FromArgMatches};
use rhai::{Dynamic, Map};
use serde::Serialize;

use crate::cli::{
    ArgFlags, CheckVersionFlags, Cli, Command, ConfigCommand, ConfigureIpsFlags, DiscoverFlags, PowerFlags,
    ProvisionFlags, RemoveNodeFlags, ScriptsCommand, TeardownFlags, UpgradeFlags, Workflow,
};
use crate::config::{self, LoadOptions, Loaded};
use crate::error::{Error, ExitCode, Result};
use crate::script::embedded::{self, Kind};
use crate::script::{Host, RunOptions, doc, resolver, runner};
use crate::ui::{out, render_table};

/// Runs the CLI and returns the process exit status.
pub fn main() -> std::process::ExitCode {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let matches = offered_commands(&cwd).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_tracing(cli.verbose, crate::ui::Ui::new(cli.quiet, cli.no_color, cli.json));
    // In the REPL a second Ctrl-C must not end the session: only the evaluation.
    let cancel = install_ctrlc(!matches!(cli.command, Command::Repl));
    let code = match dispatch(cli, cancel) {
        Ok(()) => ExitCode::Ok,
        Err(err) => {
            let code = err.exit_code();
            let text = err.to_string();
            if !text.is_empty() {
                crate::ui::print_error(&text);
            }
            code
        }
    };
    std::process::ExitCode::from(code as u8)
}

/// The workflow shortcuts whose script can be found (built in, `./scripts/`, the user's
/// scripts): only those are offered in `--help` and completions. The others still parse, and
/// answer that there is no such script and how to add one.
pub const WORKFLOWS: [&str; 14] = [
    "discover",
    "start",
    "stop",
    "restart",
    "configure-ips",
    "provision",
    "kubeconfig",
    "check-version",
    "upgrade",
    "remove-node",
    "teardown",
    "doctor",
    "snapshot",
    "rollback",
];

/// The command line with the workflows that have no script hidden.
pub fn offered_commands(cwd: &Path) -> clap::Command {
    let mut cmd = Cli::command();
    for name in WORKFLOWS {
        if cmd.find_subcommand(name).is_some() && resolver::find_script(name, cwd).is_err() {
            cmd = cmd.mut_subcommand(name, |c| c.hide(true));
        }
    }
    cmd
}

/// `tracing` is the one logging stack: our own diagnostics and those of reqwest/rustls go
/// through it, and out as log lines of `ui` (tags, colour, escaping, as every other line).
/// User-facing progress lines use `ui::Ui` directly, not tracing.
fn init_tracing(verbose: u8, ui: crate::ui::Ui) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // By default only k3sx's own warnings: the TLS and HTTP crates log failures that k3sx
    // reports itself, with the setting to fix. `-q` keeps them too: a warning may be about
    // security (TLS verification disabled), and `-q` never hides one.
    let level = match verbose {
        0 => "off,k3sx=warn",
        1 => "warn,k3sx=debug",
        _ => "debug,k3sx=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("K3SX_LOG").unwrap_or_else(|_| level.into());
    let _ = tracing_subscriber::registry().with(filter).with(crate::ui::LogLayer::new(ui)).try_init();
}

/// First Ctrl-C asks the running script to stop (the engine terminates at its next step);
/// a second one exits at once when `second_exits`.
fn install_ctrlc(second_exits: bool) -> Arc<AtomicBool> {
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) && second_exits {
            std::process::exit(ExitCode::Cancelled as i32);
        }
    });
    cancel
}

fn run_options(cli: &Cli) -> RunOptions {
    RunOptions {
        dry_run: cli.dry_run || cli.expect_no_changes,
        expect_no_changes: cli.expect_no_changes,
        yes: cli.yes,
        json: cli.json,
        verbose: cli.verbose,
        quiet: cli.quiet,
        no_color: cli.no_color,
        cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    }
}

fn load_config(cli: &Cli, cwd: &Path) -> Result<Loaded> {
    let env = |name: &str| std::env::var(name).ok();
    config::load(&LoadOptions {
        config_file: cli.config.clone(),
        sets: cli.sets.clone(),
        env: &env,
        cwd: cwd.to_path_buf(),
    })
}

fn dispatch(cli: Cli, cancel: Arc<AtomicBool>) -> Result<()> {
    let opts = run_options(&cli);
    let cwd = opts.cwd.clone();
    let workflow = |name: &str, flags: Map| (name.to_string(), flags);
    let (script, args) = match &cli.command {
        Command::Run { script, args, argv } => {
            let mut map = parse_arg_flags(args)?;
            map.insert("argv".into(), argv.iter().cloned().map(Dynamic::from).collect::<rhai::Array>().into());
            (script.clone(), map)
        }
        Command::Discover(w) => workflow("discover", workflow_args(w)?),
        Command::Start(w) => workflow("start", workflow_args(w)?),
        Command::Stop(w) => workflow("stop", workflow_args(w)?),
        Command::Restart(w) => workflow("restart", workflow_args(w)?),
        Command::ConfigureIps(w) => workflow("configure-ips", workflow_args(w)?),
        Command::Provision(w) => workflow("provision", workflow_args(w)?),
        Command::Kubeconfig(w) => workflow("kubeconfig", workflow_args(w)?),
        Command::CheckVersion(w) => workflow("check-version", workflow_args(w)?),
        Command::Upgrade(w) => workflow("upgrade", workflow_args(w)?),
        Command::RemoveNode(w) => workflow("remove-node", workflow_args(w)?),
        Command::Teardown(w) => workflow("teardown", workflow_args(w)?),
        Command::Doctor(w) => workflow("doctor", workflow_args(w)?),
        Command::Repl => {
            let host = Host::new(load_config(&cli, &cwd)?, opts, Map::new(), cancel);
            return crate::script::repl::run(&host);
        }
        Command::Scripts { action } => return scripts_command(action, &cwd),
        Command::Doc { name, definitions, markdown } => {
            return doc_command(name.as_deref(), definitions.as_deref(), *markdown, cli.json, opts, cancel);
        }
        Command::Config { action: ConfigCommand::Show } => return config_show(&load_config(&cli, &cwd)?, cli.json),
        Command::Completions { shell } => {
            // Completion generators list hidden subcommands too: leave those out altogether.
            let full = offered_commands(&cwd);
            let mut offered = clap::Command::new("k3sx")
                .args(full.get_arguments().cloned())
                .subcommands(full.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
            clap_complete::generate(*shell, &mut offered, "k3sx", &mut std::io::stdout());
            return Ok(());
        }
    };
    let found = resolver::find_script(&script, &cwd)?;
    // `k3sx run stop` sees the same ARGS as `k3sx stop`: the workflow's flag defaults first.
    let args = match &cli.command {
        Command::Run { .. } => with_workflow_defaults(&found.name, args),
        _ => args,
    };
    let host = Host::new(load_config(&cli, &cwd)?, opts, args, cancel);
    runner::run(&host, &found)
}

/// A workflow's own flags and its `--arg` values, as the script's `ARGS`. An `--arg` may not
/// stand in for one of the flags: it would arrive untyped (`--arg vm=101` is not `--vm 101`).
fn workflow_args<F: clap::Args + Serialize>(w: &Workflow<F>) -> Result<Map> {
    let mut map = flags_map(&w.flags);
    for (key, value) in parse_arg_flags(&w.extra)? {
        if map.contains_key(&key) {
            return Err(Error::Usage(format!(
                "--arg {key}=...: `{key}` is a flag of this command; use --{}",
                key.replace('_', "-")
            )));
        }
        map.insert(key, value);
    }
    Ok(map)
}

fn flags_map<F: Serialize>(flags: &F) -> Map {
    let value = serde_json::to_value(flags).expect("flags serialise");
    rhai::serde::to_dynamic(value).ok().and_then(|d| d.try_cast::<Map>()).unwrap_or_default()
}

/// The defaults of a built-in workflow's flags under `args`, so its script finds every key.
fn with_workflow_defaults(name: &str, args: Map) -> Map {
    let mut map = match name {
        "discover" => flag_defaults::<DiscoverFlags>(),
        "start" | "stop" | "restart" => flag_defaults::<PowerFlags>(),
        "configure-ips" => flag_defaults::<ConfigureIpsFlags>(),
        "provision" => flag_defaults::<ProvisionFlags>(),
        "check-version" => flag_defaults::<CheckVersionFlags>(),
        "upgrade" => flag_defaults::<UpgradeFlags>(),
        "teardown" => flag_defaults::<TeardownFlags>(),
        "remove-node" => {
            // Every flag but the VM, which `--arg vm=...` must give.
            let mut map = flag_defaults_with::<RemoveNodeFlags>(&["-"]);
            map.remove("vm");
            map
        }
        _ => Map::new(),
    };
    for (key, value) in args {
        // `--arg vm=101` for a list flag means the list [101].
        let value = match map.get(&key) {
            Some(default) if default.is_array() && !value.is_array() => Dynamic::from_array(vec![value]),
            _ => value,
        };
        map.insert(key, value);
    }
    map
}

fn flag_defaults<F: clap::Args + clap::FromArgMatches + Serialize>() -> Map {
    let matches = F::augment_args(clap::Command::new("k3sx")).get_matches_from(["k3sx"]);
    flags_map(&F::from_arg_matches(&matches).expect("every flag has a default"))
}

/// [`flag_defaults`] of flags with required positional arguments, given as `positional`.
fn flag_defaults_with<F: clap::Args + clap::FromArgMatches + Serialize>(positional: &[&str]) -> Map {
    let argv = std::iter::once("k3sx").chain(positional.iter().copied());
    let matches = F::augment_args(clap::Command::new("k3sx")).get_matches_from(argv);
    flags_map(&F::from_arg_matches(&matches).expect("every flag has a default"))
}

/// `--arg k=v`: integers and `true`/`false` are typed, everything else is a string.
fn parse_arg_flags(flags: &ArgFlags) -> Result<Map> {
    let mut map = Map::new();
    for arg in &flags.args {
        let (k, v) = arg.split_once('=').ok_or_else(|| Error::Usage(format!("--arg {arg}: expected KEY=VALUE")))?;
        let value = if let Ok(i) = v.parse::<rhai::INT>() {
            Dynamic::from(i)
        } else if let Ok(b) = v.parse::<bool>() {
            Dynamic::from(b)
        } else {
            Dynamic::from(v.to_string())
        };
        map.insert(k.trim().into(), value);
    }
    Ok(map)
}

fn scripts_command(action: &ScriptsCommand, cwd: &Path) -> Result<()> {
    match action {
        ScriptsCommand::List => {
            let mut rows = Vec::new();
            for kind in [Kind::Script, Kind::Module] {
                for name in resolver::names(kind, cwd) {
                    let found = resolver::find_all(kind, &name, cwd);
                    let Some(used) = found.first() else { continue };
                    let note = match found.get(1) {
                        Some(shadowed) if shadowed.location == resolver::Location::BuiltIn => {
                            "overrides built-in".to_string()
                        }
                        Some(shadowed) => format!("overrides {}", shadowed.location.label()),
                        None => String::new(),
                    };
                    let kind_name = if kind == Kind::Script { "script" } else { "module" };
                    rows.push(vec![kind_name.to_string(), name, used.location.label(), note]);
                }
            }
            out(&render_table(&["kind".into(), "name".into(), "source".into(), "note".into()], &rows));
            Ok(())
        }
        ScriptsCommand::Show { name, builtin } => {
            for kind in [Kind::Script, Kind::Module] {
                let found = resolver::find_all(kind, name, cwd);
                let pick = if *builtin {
                    found.into_iter().find(|f| f.location == resolver::Location::BuiltIn)
                } else {
                    found.into_iter().next()
                };
                if let Some(f) = pick {
                    out(f.text.trim_end());
                    return Ok(());
                }
            }
            Err(Error::Usage(format!("no script or module named `{name}`")))
        }
        ScriptsCommand::Eject { names, to, force } => eject(names, to.as_deref(), *force, cwd),
    }
}

fn eject(names: &[String], to: Option<&Path>, force: bool, cwd: &Path) -> Result<()> {
    let mut items: Vec<(Kind, String)> = Vec::new();
    if names.is_empty() {
        for kind in [Kind::Script, Kind::Module] {
            items.extend(embedded::names(kind).into_iter().map(|n| (kind, n)));
        }
    }
    for name in names {
        let name = name.strip_suffix(".rhai").unwrap_or(name);
        let kind = [Kind::Script, Kind::Module]
            .into_iter()
            .find(|k| embedded::get(*k, name).is_some())
            .ok_or_else(|| Error::Usage(format!("no built-in script or module named `{name}`")))?;
        items.push((kind, name.to_string()));
    }
    // Check every target first: nothing is written when any would be overwritten.
    let targets: Vec<(PathBuf, &str)> = items
        .iter()
        .map(|(kind, name)| {
            let dir = to.map(|d| cwd.join(d)).unwrap_or_else(|| cwd.join(kind.dir_name()));
            (dir.join(format!("{name}.rhai")), embedded::get(*kind, name).expect("checked above"))
        })
        .collect();
    let existing: Vec<String> =
        targets.iter().filter(|(p, _)| p.exists()).map(|(p, _)| p.display().to_string()).collect();
    if !existing.is_empty() && !force {
        return Err(Error::Usage(format!("{} already exist(s); pass --force to overwrite", existing.join(", "))));
    }
    for (path, text) in targets {
        // Ejecting makes the directory; the file writer itself never creates one.
        let dir = path.parent().expect("a file in a directory");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        crate::fsutil::write_atomic(&path, text.as_bytes(), 0o644)?;
        eprintln!("ejected {}", path.display());
    }
    Ok(())
}

fn doc_command(
    name: Option<&str>,
    definitions: Option<&Path>,
    markdown: bool,
    json: bool,
    opts: RunOptions,
    cancel: Arc<AtomicBool>,
) -> Result<()> {
    // The docs describe the engine, not a site: build it with the default configuration so
    // a broken config file does not hide the reference.
    let host = Host::new(Loaded::defaults(), opts, Map::new(), cancel);
    let engine = doc::engine(&host);
    if let Some(dir) = definitions {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        doc::write_definitions(&engine, dir).map_err(|e| Error::io(dir, e))?;
        eprintln!("wrote Rhai definition files to {}", dir.display());
        return Ok(());
    }
    let docs = doc::functions(&engine);
    let selected: Vec<doc::FnDoc> = match name {
        None => docs,
        Some(n) => {
            let picked: Vec<_> =
                docs.into_iter().filter(|d| d.namespace == n || d.name == n || d.qualified_name() == n).collect();
            if picked.is_empty() {
                return Err(Error::Usage(format!("no function or namespace named `{n}`; `k3sx doc` lists them all")));
            }
            picked
        }
    };
    if json {
        out(&serde_json::to_string_pretty(&selected).expect("docs serialise"));
    } else if markdown {
        out(doc::markdown(&selected).trim_end());
    } else {
        for d in &selected {
            out(&format!(
                "{}\n{}\n",
                d.signature,
                d.doc.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
            ));
        }
    }
    Ok(())
}

fn config_show(loaded: &Loaded, json: bool) -> Result<()> {
    let rows = loaded.show();
    if json {
        let map: serde_json::Map<String, serde_json::Value> = rows
            .into_iter()
            .map(|(k, v, o)| {
                let value: serde_json::Value = serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v));
                (k, serde_json::json!({"value": value, "origin": o}))
            })
            .collect();
        out(&serde_json::to_string_pretty(&map).expect("serialises"));
    } else {
        let rows: Vec<Vec<String>> = rows.into_iter().map(|(k, v, o)| vec![k, v, o]).collect();
        out(&render_table(&["key".into(), "value".into(), "origin".into()], &rows));
    }
    Ok(())
}
