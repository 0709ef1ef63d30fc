//! What the user sees on the terminal: log lines on stderr, data on stdout, tables.
//!
//! Log lines go through one place so `-q`, `--no-color` and `NO_COLOR` hold everywhere, and
//! so do the lines of the `tracing` layer ([`LogLayer`]). Text from outside k3sx (VM names,
//! task errors, anything the Proxmox API or a host returns) is shown with its control
//! characters escaped ([`printable`]), here and nowhere else: a name cannot recolour the
//! terminal, move the cursor or fake a line. Data printed as JSON is left to serde, which
//! escapes them the JSON way.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::MultiProgress;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Ok,
    Info,
}

/// How a log line is labelled: the tag in front and its ANSI colour.
#[derive(Debug, Clone, Copy)]
struct Tag {
    name: &'static str,
    color: &'static str,
}

impl Level {
    fn tag(self) -> Tag {
        match self {
            Level::Error => Tag { name: "error", color: "31" },
            Level::Warn => Tag { name: "warn", color: "33" },
            Level::Ok => Tag { name: "ok", color: "32" },
            Level::Info => Tag { name: "info", color: "36" },
        }
    }
}

/// The live progress display while one is shown: log lines go above it, not through it.
/// One per process, as there is one terminal: every `Ui` and the tracing layer see it.
static LIVE: Mutex<Option<MultiProgress>> = Mutex::new(None);

#[derive(Debug, Clone)]
pub struct Ui {
    pub quiet: bool,
    pub color: bool,
    pub json: bool,
}

impl Ui {
    pub fn new(quiet: bool, no_color: bool, json: bool) -> Self {
        let color =
            !no_color && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal();
        Ui { quiet, color, json }
    }

    /// One log line on stderr. `-q` keeps only warnings and errors.
    pub fn log(&self, level: Level, message: &str) {
        if self.quiet && level > Level::Warn {
            return;
        }
        self.write_line(level.tag(), message);
    }

    fn write_line(&self, tag: Tag, message: &str) {
        let line = log_line(self.color, tag, message);
        match LIVE.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
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
        *LIVE.lock().unwrap_or_else(|e| e.into_inner()) = multi;
    }

    /// Data for the user (or a pipe) on stdout.
    pub fn print(&self, text: &str) {
        out(text);
    }
}

/// A log line as printed: the tag right-aligned in five columns, then the message with its
/// control characters escaped.
fn log_line(color: bool, tag: Tag, message: &str) -> String {
    let Tag { name, color: code } = tag;
    // One call, one line: a newline inside a value (a VM name) must not fake a line of its own.
    // Multi-line reports log each line (see `cluster::log_failure`).
    let message = printable(message);
    if color { format!("\x1b[1;{code}m{name:>5}\x1b[0m {message}\n") } else { format!("{name:>5} {message}\n") }
}

/// `text` with every control character (C0, DEL, C1) escaped: `\n`, `\r`, `\t` as such,
/// the others as `\x1b` (C0 and DEL) or `\u{9b}` (C1). Other text is returned as it is.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(shown, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(shown, "\\u{{{:x}}}", c as u32);
            }
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

/// The error that ends a run, on stderr after `error: `, with control characters escaped as
/// in [`printable`] except line breaks: an error's hints and source excerpt are lines.
pub fn print_error(text: &str) {
    let shown: Vec<Cow<'_, str>> = text.split('\n').map(printable).collect();
    let _ = writeln!(std::io::stderr().lock(), "error: {}", shown.join("\n"));
}

/// A line of data on stdout. A closed pipe (`k3sx doc | head`) is not an error worth a panic.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.write_all(b"\n");
    let _ = stdout.flush();
}

/// Renders rows as an aligned text table with a header line; cells are already strings, and
/// are shown [`printable`]. Cells may be of any length.
pub fn render_table(columns: &[String], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    let shown = |cells: &[String]| -> Vec<String> {
        (0..columns.len()).map(|i| cells.get(i).map(|c| printable(c).into_owned()).unwrap_or_default()).collect()
    };
    let mut lines: Vec<Vec<String>> = vec![shown(&header)];
    lines.extend(rows.iter().map(|r| shown(r)));
    let mut widths = vec![0; columns.len()];
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let render = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            s.push_str(cell);
            if i + 1 < widths.len() {
                // Padded by hand: `format!("{cell:<width$}")` panics from a width of 65,536 on.
                s.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
            }
        }
        s.truncate(s.trim_end().len());
        s
    };
    lines.iter().map(|l| render(l)).collect::<Vec<_>>().join("\n")
}

/// The `tracing` events — k3sx's own diagnostics and those of the HTTP and TLS crates — as
/// log lines of a [`Ui`]: the same tags (` warn`), the same colour decision (`--no-color`,
/// `NO_COLOR`, not a terminal), escaped, and above live progress like every other line.
/// Which events arrive is the subscriber's filter's business, not `-q`'s.
pub struct LogLayer {
    ui: Ui,
}

impl LogLayer {
    pub fn new(ui: Ui) -> Self {
        LogLayer { ui }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let tag = match *event.metadata().level() {
            tracing::Level::ERROR => Level::Error.tag(),
            tracing::Level::WARN => Level::Warn.tag(),
            tracing::Level::INFO => Level::Info.tag(),
            tracing::Level::DEBUG => Tag { name: "debug", color: "2" },
            tracing::Level::TRACE => Tag { name: "trace", color: "2" },
        };
        let mut text = EventText::default();
        event.record(&mut text);
        self.ui.write_line(tag, &text.message);
    }
}

/// An event's message followed by its fields as `key=value`.
#[derive(Default)]
struct EventText {
    message: String,
}

impl tracing::field::Visit for EventText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" if self.message.is_empty() => {
                let _ = write!(self.message, "{value:?}");
            }
            "message" => {
                let fields = std::mem::replace(&mut self.message, format!("{value:?}"));
                self.message.push_str(&fields);
            }
            // Where a `log` record came from, added by the log-to-tracing bridge.
            name if name.starts_with("log.") => {}
            name => {
                let _ = write!(self.message, " {name}={value:?}");
            }
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
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

    #[test]
    fn a_cell_of_70000_characters_is_rendered_in_full_and_aligns_the_next_column() {
        // `format!("{:<w$}")` takes the width as u16: 65,535 and more panicked.
        let long = "x".repeat(70_000);
        let t = render_table(
            &["key".into(), "value".into(), "origin".into()],
            &[vec![long.clone(), "v".into(), "file".into()], vec!["k".into(), "w".into(), "default".into()]],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[1], format!("{long}  v      file"));
        assert_eq!(lines[2], format!("k{}  w      default", " ".repeat(69_999)));
        assert_eq!(lines[0].find("VALUE"), Some(70_002));
    }

    #[test]
    fn printable_shows_c0_c1_and_del_escaped_and_leaves_other_text_alone() {
        assert_eq!(printable("a\x1b[2Jb\r\n\t\x07\x00\x7f\u{9b}31m é ✓"), r"a\x1b[2Jb\r\n\t\x07\x00\x7f\u{9b}31m é ✓");
        assert!(matches!(printable("k3s-master-01 ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn control_characters_in_a_cell_are_escaped_and_the_columns_stay_aligned() {
        let t = render_table(
            &["name".into(), "status".into()],
            &[vec!["evil\x1b[2J\nvm".into(), "running".into()], vec!["ok".into(), "stopped".into()]],
        );
        assert!(!t.contains('\x1b'), "{t:?}");
        assert_eq!(t, "NAME             STATUS\nevil\\x1b[2J\\nvm  running\nok               stopped");
    }

    #[test]
    fn a_log_line_escapes_control_characters_in_the_message_with_and_without_color() {
        let plain = log_line(false, Level::Warn.tag(), "vm \x1b]0;title\x07 rebooted\nfake line");
        assert_eq!(plain, " warn vm \\x1b]0;title\\x07 rebooted\\nfake line\n");
        let colored = log_line(true, Level::Warn.tag(), "x\x1by");
        assert_eq!(colored, "\x1b[1;33m warn\x1b[0m x\\x1by\n");
    }
}
