//! `progress(keys)` — a live line per item (VM, host) while long work runs: spinners on a
//! terminal, plain log lines otherwise (CI logs, pipes), nothing under `--json` or `-q`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rhai::{Array, Module};

use super::register;
use crate::script::Host;
use crate::ui::{Level, Ui, printable};

/// The handle scripts hold: `let p = progress(keys); p.update(k, "waiting"); p.finish(k, true, "done");`
#[derive(Clone)]
pub struct Progress(Arc<State>);

struct State {
    ui: Ui,
    mode: Mode,
    bars: Mutex<HashMap<String, ProgressBar>>,
    multi: MultiProgress,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Live,
    Plain,
    Silent,
}

impl Progress {
    fn new(host: &Host, keys: &[String]) -> Progress {
        let mode = if host.options.json || host.options.quiet {
            Mode::Silent
        } else if std::io::stderr().is_terminal() {
            Mode::Live
        } else {
            Mode::Plain
        };
        let multi = MultiProgress::with_draw_target(if mode == Mode::Live {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        // Keys and messages come from outside (VM names from the API): escaped when shown.
        let width = keys.iter().map(|k| printable(k).chars().count()).max().unwrap_or(0);
        let style = ProgressStyle::with_template(&format!("{{spinner}} {{prefix:<{width}}}  {{elapsed:>4}}  {{msg}}"))
            .expect("a valid template");
        let mut bars = HashMap::new();
        if mode == Mode::Live {
            host.ui.set_live(Some(multi.clone()));
            for key in keys {
                let bar = multi
                    .add(ProgressBar::new_spinner().with_style(style.clone()).with_prefix(printable(key).into_owned()));
                bar.enable_steady_tick(Duration::from_millis(120));
                bars.insert(key.clone(), bar);
            }
        }
        Progress(Arc::new(State { ui: host.ui.clone(), mode, bars: Mutex::new(bars), multi }))
    }

    fn update(&self, key: &str, message: &str) {
        match self.0.mode {
            Mode::Live => {
                if let Some(bar) = self.0.bars.lock().expect("not poisoned").get(key) {
                    bar.set_message(printable(message).into_owned());
                }
            }
            Mode::Plain => self.0.ui.log(Level::Info, &format!("{}: {}", printable(key), printable(message))),
            Mode::Silent => {}
        }
    }

    fn finish(&self, key: &str, ok: bool, message: &str) {
        match self.0.mode {
            Mode::Live => {
                if let Some(bar) = self.0.bars.lock().expect("not poisoned").get(key) {
                    let mark = if ok { "✓" } else { "✗" };
                    bar.set_style(ProgressStyle::with_template("{prefix} {msg}").expect("a valid template"));
                    bar.set_prefix(format!("{mark} {}", bar.prefix()));
                    bar.finish_with_message(printable(message).into_owned());
                }
            }
            // The summary names every failure as an error; here it is the moment it happened.
            Mode::Plain if ok => self.0.ui.log(Level::Ok, &format!("{}: {}", printable(key), printable(message))),
            Mode::Plain => self.0.ui.log(Level::Warn, &format!("{}: failed: {}", printable(key), printable(message))),
            Mode::Silent => {}
        }
    }

    fn close(&self) {
        for bar in self.0.bars.lock().expect("not poisoned").values() {
            if !bar.is_finished() {
                bar.finish();
            }
        }
        let _ = self.0.multi.clear();
        self.0.ui.set_live(None);
    }
}

pub fn register_all(m: &mut Module, host: &Arc<Host>) {
    m.set_custom_type::<Progress>("Progress");
    let h = host.clone();
    register(
        m,
        "progress",
        &["keys: Array", "Progress"],
        "Shows one live line per key (e.g. VM names) on a terminal while work runs; on a pipe or in\n\
         CI each update is a plain log line; nothing under `--json` or `-q`. Update it from\n\
         `parallel` workers; `close` it before printing the summary table.\n\n\
         ```rhai\nlet p = progress(vms.map(|vm| vm.name));\np.update(vm.name, \"shutting down\");\np.finish(vm.name, true, \"stopped in 4 s\");\np.close();\n```",
        move |keys: Array| Progress::new(&h, &keys.iter().map(|k| k.to_string()).collect::<Vec<_>>()),
    );
    register(
        m,
        "update",
        &["progress: &mut Progress", "key: &str", "message: &str", "()"],
        "Sets the state shown for `key` (\"waiting for task\", \"rebooting\").",
        |p: &mut Progress, key: &str, msg: &str| p.update(key, msg),
    );
    register(
        m,
        "finish",
        &["progress: &mut Progress", "key: &str", "ok: bool", "message: &str", "()"],
        "Marks `key` done, successfully or not, with a final message.",
        |p: &mut Progress, key: &str, ok: bool, msg: &str| p.finish(key, ok, msg),
    );
    register(
        m,
        "close",
        &["progress: &mut Progress", "()"],
        "Removes the live lines (call before printing a summary).",
        |p: &mut Progress| p.close(),
    );
}
