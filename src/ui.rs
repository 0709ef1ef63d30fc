//! What the user sees on the terminal: log lines on stderr, data on stdout, tables.
//!
//! Log lines go through one place so `-q`, `--no-color` and `NO_COLOR` hold everywhere.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use indicatif::MultiProgress;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Ok,
    Info,
}

#[derive(Debug, Clone)]
pub struct Ui {
    pub quiet: bool,
    pub color: bool,
    pub json: bool,
    /// The live progress display while one is shown: log lines go above it, not through it.
    live: Arc<Mutex<Option<MultiProgress>>>,
}

impl Ui {
    pub fn new(quiet: bool, no_color: bool, json: bool) -> Self {
        let color =
            !no_color && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal();
        Ui { quiet, color, json, live: Arc::new(Mutex::new(None)) }
    }

    /// One log line on stderr. `-q` keeps only warnings and errors.
    pub fn log(&self, level: Level, message: &str) {
        if self.quiet && level > Level::Warn {
            return;
        }
        let (tag, color) = match level {
            Level::Error => ("error", "31"),
            Level::Warn => ("warn", "33"),
            Level::Ok => ("ok", "32"),
            Level::Info => ("info", "36"),
        };
        let line = if self.color {
            format!("\x1b[1;{color}m{tag:>5}\x1b[0m {message}\n")
        } else {
            format!("{tag:>5} {message}\n")
        };
        match self.live.lock().expect("not poisoned").as_ref() {
            Some(multi) => {
                let _ = multi.println(line.trim_end());
            }
            None => {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
        }
    }

    /// While `multi` is drawn, log lines are printed above it (`None` when it is gone).
    pub fn set_live(&self, multi: Option<MultiProgress>) {
        *self.live.lock().expect("not poisoned") = multi;
    }

    /// Data for the user (or a pipe) on stdout.
    pub fn print(&self, text: &str) {
        out(text);
    }
}

/// A line of data on stdout. A closed pipe (`k3sx doc | head`) is not an error worth a panic.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.write_all(b"\n");
    let _ = stdout.flush();
}

/// Renders rows as an aligned text table with a header line; cells are already strings.
pub fn render_table(columns: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(widths.len()) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, w) in widths.iter().enumerate() {
            let cell = cells.get(i).map(String::as_str).unwrap_or("");
            if i + 1 == widths.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    let mut out = vec![line(&header)];
    out.extend(rows.iter().map(|r| line(r)));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_are_aligned_to_the_widest_cell() {
        let t = render_table(
            &["vm".into(), "status".into()],
            &[vec!["k3s-master-01".into(), "running".into()], vec!["a".into(), "stopped".into()]],
        );
        assert_eq!(t, "VM             STATUS\nk3s-master-01  running\na              stopped");
    }
}
