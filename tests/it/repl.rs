//! The REPL, driven through a pseudo-terminal as a person would use it.

use std::time::{Duration, Instant};

use expectrl::{Expect, Session};

use crate::support::Test;

const PROMPT: &str = "k3sx> ";

fn repl(t: &Test) -> expectrl::session::OsSession {
    let mut cmd = t.command();
    cmd.arg("repl").env("TERM", "xterm").env("XDG_STATE_HOME", t.path().join("state"));
    let mut s = Session::spawn(cmd).expect("spawn the REPL in a pty");
    s.set_expect_timeout(Some(Duration::from_secs(10)));
    s.expect(PROMPT).expect("first prompt");
    s
}

/// Types a line. Call it only once the prompt is shown: the line editor flushes input typed
/// while it switches the terminal mode.
fn line(s: &mut expectrl::session::OsSession, text: &str) {
    s.send(format!("{text}\r")).unwrap();
}

#[test]
fn keeps_one_scope_and_ctrl_c_cancels_a_running_loop() {
    let t = Test::new();
    let mut s = repl(&t);
    line(&mut s, "let x = 40;");
    s.expect(PROMPT).unwrap();
    line(&mut s, "x + 2");
    s.expect("42").unwrap();
    s.expect(PROMPT).unwrap();
    line(&mut s, "loop {}");
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    s.send(expectrl::ControlCode::EndOfText).unwrap();
    s.expect(PROMPT).unwrap();
    assert!(start.elapsed() < Duration::from_secs(1), "took {:?}", start.elapsed());
    line(&mut s, "x * 10");
    s.expect("400").unwrap();
    s.expect(PROMPT).unwrap();
    line(&mut s, "fn sq(n) { n * n }");
    s.expect(PROMPT).unwrap();
    line(&mut s, "sq(x)");
    s.expect("1600").unwrap();
    s.expect(PROMPT).unwrap();
    leave(&mut s);
}

/// Ctrl-D at the prompt; waits a moment so the line editor has the terminal in raw mode.
fn leave(s: &mut expectrl::session::OsSession) {
    std::thread::sleep(Duration::from_millis(200));
    s.send(expectrl::ControlCode::EndOfTransmission).unwrap();
    s.expect(expectrl::Eof).unwrap();
}

#[test]
fn multi_line_input_continues_until_brackets_close() {
    let t = Test::new();
    let mut s = repl(&t);
    line(&mut s, "fn add(a, b) {");
    line(&mut s, "  a + b");
    line(&mut s, "}");
    s.expect(PROMPT).unwrap();
    line(&mut s, "add(20, 22)");
    s.expect("42").unwrap();
}

#[test]
fn tab_completes_namespaced_functions() {
    let t = Test::new();
    let mut s = repl(&t);
    std::thread::sleep(Duration::from_millis(200));
    s.send("k3s::com\t").unwrap();
    s.expect("pare").unwrap();
    // Without the completion `k3s::com(..)` would be "function not found"; 1 proves it ran.
    s.send("(\"v1.32.10+k3s1\", \"v1.32.9+k3s2\")\r").unwrap();
    s.expect("\n1\r\n").unwrap();
}

#[test]
fn help_shows_the_doc_comment_and_maps_print_as_json() {
    let t = Test::new();
    let mut s = repl(&t);
    line(&mut s, ":help k3s::compare");
    s.expect("+k3sN").unwrap();
    s.expect(PROMPT).unwrap();
    line(&mut s, "#{a: 1}");
    s.expect("\"a\": 1").unwrap();
}

#[test]
fn history_survives_a_restart() {
    let t = Test::new();
    let mut s = repl(&t);
    line(&mut s, "let remembered = 7;");
    s.expect(PROMPT).unwrap();
    leave(&mut s);
    let history = std::fs::read_to_string(t.path().join("state/k3sx/history")).unwrap();
    assert!(history.contains("let remembered = 7;"), "{history}");
    let mut s = repl(&t);
    std::thread::sleep(Duration::from_millis(200));
    s.send("\x1b[A").unwrap(); // Up: the previous session's line
    s.send("\r").unwrap();
    s.expect(PROMPT).unwrap();
    line(&mut s, "remembered * 6");
    s.expect("42").unwrap();
}

#[test]
fn load_runs_a_file_into_the_session_and_vars_lists_the_scope() {
    let t = Test::new().file("lib.rhai", "fn triple(x) { x * 3 }\nlet loaded = 14;\n");
    let mut s = repl(&t);
    line(&mut s, ":load lib.rhai");
    s.expect(PROMPT).unwrap();
    line(&mut s, "triple(loaded)");
    s.expect("42").unwrap();
    s.expect(PROMPT).unwrap();
    line(&mut s, ":vars");
    s.expect("let loaded = 14").unwrap();
}

#[test]
fn stdlib_modules_are_loaded_and_comments_do_not_hold_the_line_open() {
    let t = Test::new();
    let mut s = repl(&t);
    line(&mut s, "versions::verdict(\"v1.2.3+k3s1\", \"v1.2.3+k3s1\").status // a comment (");
    s.expect("\"current\"").unwrap();
    s.expect(PROMPT).unwrap();
    line(&mut s, "nope(1)");
    s.expect("error: <repl>:1:1:").unwrap();
}

#[test]
fn help_lists_a_namespace_and_documents_stdlib_module_functions() {
    let t = Test::new();
    let mut s = repl(&t);
    line(&mut s, ":help k3s");
    s.expect("k3s::compare(a: &str, b: &str) -> i64").unwrap();
    s.expect("k3s::parse_version(version: &str)").unwrap();
    s.expect(PROMPT).unwrap();
    line(&mut s, ":help inventory::load");
    s.expect("inventory::load(include_unreachable)").unwrap();
    s.expect("The K3s VMs").unwrap();
    s.expect(PROMPT).unwrap();
    line(&mut s, ":help");
    s.expect("inventory").unwrap();
}
