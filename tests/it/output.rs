//! What reaches the terminal: tables of any size, control characters from outside escaped,
//! and the tracing layer's lines styled like every other line.

use serde_json::Value;

use crate::support::Test;

const LONG: usize = 70_000;

#[test]
fn config_show_prints_a_value_of_70000_characters_in_full() {
    let long = "c".repeat(LONG);
    let run = Test::new().args(&["--set", &format!("k3s.channel={long}"), "config", "show"]).run().status(0);
    let row = run.stdout.lines().find(|l| l.starts_with("k3s.channel ")).expect("a k3s.channel row");
    assert!(row.contains(&format!("\"{long}\"")) && row.ends_with("flag --set k3s.channel"), "{}", &row[..200]);
}

#[test]
fn a_script_table_with_a_70000_character_cell_prints_in_full() {
    // As in the power summary: the long cell (a task's error) is not in the last column.
    let script = format!(
        "let e = \"\"; e.pad({LONG}, \"e\");\n\
         table([#{{vm: \"a\", result: e, node: \"pve1\"}}, #{{vm: \"bb\", result: \"ok\", node: \"pve2\"}}], [\"vm\", \"result\", \"node\"]);\n\
         print(\"after\");"
    );
    let run = Test::new().file("t.rhai", &script).args(&["run", "t.rhai"]).run().status(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let pad = |cell: &str| format!("{cell}{}", " ".repeat(LONG - cell.len() + 2));
    assert_eq!(lines[0], format!("VM  {}NODE", pad("RESULT")));
    assert_eq!(lines[1], format!("a   {}  pve1", "e".repeat(LONG)));
    assert_eq!(lines[2], format!("bb  {}pve2", pad("ok")));
    assert_eq!(lines[3], "after");
}

/// A VM name as the API could return it: an ANSI clear-screen, a colour, a title change and a
/// newline that would start a fake line.
const HOSTILE: &str = r#""vm\x1b[2J\x1b[31m\x1b]0;pwned\x07\nok all good""#;
const HOSTILE_SHOWN: &str = r"vm\x1b[2J\x1b[31m\x1b]0;pwned\x07\nok all good";

#[test]
fn control_characters_in_table_cells_and_log_lines_are_shown_escaped() {
    let script = format!(
        "let n = {HOSTILE};\ninfo(n);\nwarn(`VM ${{n}} failed`);\ntable([#{{name: n, status: \"running\"}}], [\"name\", \"status\"]);"
    );
    let run = Test::new().file("t.rhai", &script).args(&["run", "t.rhai"]).run().status(0);
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(!text.contains(['\x1b', '\x07']), "raw control characters on {stream}: {text:?}");
    }
    assert_eq!(run.stdout.lines().nth(1), Some(format!("{HOSTILE_SHOWN}  running").as_str()));
    assert!(run.stderr.contains(&format!(" info {HOSTILE_SHOWN}\n")), "{}", run.stderr);
    assert!(run.stderr.contains(&format!(" warn VM {HOSTILE_SHOWN} failed\n")), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 2, "a newline in a message made a line of its own: {}", run.stderr);
}

#[test]
fn json_output_keeps_control_characters_exact() {
    let script = format!("table([#{{name: {HOSTILE}}}], [\"name\"]);");
    let run = Test::new().file("t.rhai", &script).args(&["--json", "run", "t.rhai"]).run().status(0);
    assert!(!run.stdout.contains('\x1b'), "JSON escapes control characters itself: {:?}", run.stdout);
    let rows: Value = serde_json::from_str(&run.stdout).expect("JSON on stdout");
    assert_eq!(rows[0]["name"], "vm\x1b[2J\x1b[31m\x1b]0;pwned\x07\nok all good");
}

/// A Proxmox API with TLS verification disabled on a port nothing listens on: the client is
/// built (and warns), the request fails.
fn insecure_pve(t: Test) -> Test {
    t.env("PROXMOX_HOST", "127.0.0.1")
        .env("PROXMOX_PORT", "9")
        .env("PROXMOX_USER", "root@pam")
        .env("PROXMOX_API_TOKEN_ID", "k3sx")
        .env("PROXMOX_API_TOKEN_SECRET", "s3cr3t-for-the-test")
        .env("PROXMOX_SSL_VERIFY", "false")
        .file("t.rhai", "pve::nodes();")
}

const TLS_WARNING: &str = " warn TLS verification of the Proxmox API is disabled (PROXMOX_SSL_VERIFY=false)";

#[test]
fn the_tls_warning_is_a_plain_warn_line_without_a_terminal_and_under_no_color() {
    // NO_COLOR empty counts as unset: colour would then depend on the terminal alone.
    for flags in [&["run", "t.rhai"][..], &["--no-color", "run", "t.rhai"][..]] {
        let run = insecure_pve(Test::new()).env("NO_COLOR", "").run_args(flags);
        assert!(!run.stderr.contains('\x1b'), "{flags:?}: colour on a pipe: {:?}", run.stderr);
        assert!(run.stderr.lines().any(|l| l.starts_with(TLS_WARNING)), "{flags:?}: {}", run.stderr);
    }
}

#[test]
fn quiet_does_not_hide_the_tls_warning() {
    let run = insecure_pve(Test::new()).run_args(&["-q", "run", "t.rhai"]);
    assert_ne!(run.code, 0, "nothing listens on port 9");
    assert_eq!(run.stderr.matches(TLS_WARNING).count(), 1, "{}", run.stderr);
}

#[test]
fn the_error_that_ends_a_run_shows_control_characters_escaped() {
    // Line breaks stay: an error's source excerpt and its hints are lines of their own (what
    // `runtime_error_prints_file_line_column_source_line_and_exits_1` sees).
    let script = format!("let n = {HOSTILE};\nfail(`VM ${{n}} did not start`);");
    let run = Test::new().file("t.rhai", &script).args(&["run", "t.rhai"]).run().status(1);
    assert!(!run.stderr.contains(['\x1b', '\x07']), "{:?}", run.stderr);
    let shown = HOSTILE_SHOWN.replace(r"\n", "\n");
    assert!(run.stderr.contains(&format!("error: VM {shown} did not start")), "{}", run.stderr);
}

#[test]
fn live_progress_lines_show_control_characters_escaped() {
    use expectrl::Expect;
    let script = format!(
        "let n = {HOSTILE};\nlet p = progress([n]);\np.update(n, `waiting on ${{n}}`);\nsleep(0.4);\n\
         p.finish(n, false, `failed: ${{n}}`);\nsleep(0.2);\np.close();\n"
    );
    let t = Test::new().file("t.rhai", &script);
    let mut cmd = t.command();
    cmd.args(["run", "t.rhai"]).env("TERM", "xterm");
    let mut s = expectrl::Session::spawn(cmd).expect("spawn k3sx in a pty");
    s.set_expect_timeout(Some(std::time::Duration::from_secs(10)));
    let seen = String::from_utf8_lossy(s.expect(expectrl::Eof).expect("the run ends").as_bytes()).into_owned();
    for raw in ["\x07", "\x1b[2J", "\x1b]0;", "\x1b[31m"] {
        assert!(!seen.contains(raw), "{raw:?} reached the terminal raw: {seen:?}");
    }
    assert!(seen.contains(&format!("waiting on {HOSTILE_SHOWN}")), "{seen:?}");
    assert!(seen.contains(&format!("failed: {HOSTILE_SHOWN}")), "{seen:?}");
}

#[test]
fn plain_progress_lines_keep_a_newline_in_a_vm_name_on_one_line() {
    let script = format!(
        "let n = {HOSTILE};\nlet p = progress([n]);\np.update(n, \"waiting\");\np.finish(n, true, \"done\");\np.close();\n"
    );
    let run = Test::new().file("t.rhai", &script).args(&["run", "t.rhai"]).run().status(0);
    assert!(!run.stderr.contains(['\x1b', '\x07']), "{:?}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 2, "a newline in a VM name made a line of its own: {}", run.stderr);
    assert!(run.stderr.contains(&format!("{HOSTILE_SHOWN}: waiting")), "{}", run.stderr);
}
