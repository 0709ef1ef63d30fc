//! What a test does when a lab prerequisite (root, sshd, the fakepve venv, ...) is missing.
//!
//! By default it fails, naming the command that installs what is missing: a test that did
//! not run must not report "passed". `K3SX_SKIP_LAB=1` is the explicit opt-out: the test
//! then returns early, and the test binary prints how many tests were skipped, and which,
//! when it exits. Under `CI=true` the opt-out is refused: CI runs every lab test.
//!
//! The count is printed from an `atexit` handler. libtest has no hook after the last test:
//! tests run in any order on many threads, a "last test" cannot be placed, and statics are
//! never dropped. libtest's main returns (all passed) or calls `exit` (some failed); the C
//! runtime runs `atexit` handlers in both cases, after libtest's own summary, and output
//! there is not captured.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Mutex, Once};

/// The command that installs every prerequisite of the tests (as root, on Debian).
pub const INSTALL: &str = "bash tests/setup";

/// Skipped tests (their names) and why, for the summary at exit.
static SKIPPED: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
static REGISTER: Once = Once::new();

fn env_is(name: &str, values: &[&str]) -> bool {
    std::env::var(name).is_ok_and(|v| values.contains(&v.as_str()))
}

/// The `lab` cannot run here because `why`; `fix` says how to change that. Panics (the test
/// fails) unless `K3SX_SKIP_LAB=1` — then it records the skip and returns, and the caller
/// returns `None` so the test ends early. Under `CI=true` the opt-out is refused.
pub fn unavailable(lab: &str, why: &str, fix: &str) {
    let opt_out = env_is("K3SX_SKIP_LAB", &["1", "true"]);
    let ci = env_is("CI", &["1", "true"]);
    if opt_out && ci {
        panic!(
            "K3SX_SKIP_LAB=1 is refused under CI=true: CI runs every lab test.\n  \
             the {lab} cannot run: {why}\n  {fix}"
        );
    }
    if !opt_out {
        panic!(
            "the {lab} cannot run: {why}\n  {fix}\n  \
             or set K3SX_SKIP_LAB=1 to skip the lab tests (they are counted, and refused under CI=true)"
        );
    }
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let reason = format!("the {lab} cannot run: {why}");
    eprintln!("skipped: {test} ({reason})");
    SKIPPED.lock().unwrap_or_else(|e| e.into_inner()).entry(test).or_insert(reason);
    REGISTER.call_once(|| {
        // SAFETY: `atexit` only stores the pointer of a function that lives as long as the
        // program; `report_skipped` does not unwind (it only writes to stderr, ignoring errors).
        unsafe {
            atexit(report_skipped);
        }
    });
}

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

extern "C" fn report_skipped() {
    let skipped = match SKIPPED.lock() {
        Ok(s) => s,
        Err(e) => e.into_inner(),
    };
    let mut text = format!(
        "\nK3SX_SKIP_LAB=1: {} lab test{} SKIPPED, not run:\n",
        skipped.len(),
        if skipped.len() == 1 { "" } else { "s" }
    );
    for (test, reason) in skipped.iter() {
        text += &format!("  skipped: {test} ({reason})\n");
    }
    text += &format!("  install what they need with `{INSTALL}` (as root) and run them all\n");
    let _ = std::io::stderr().write_all(text.as_bytes());
}
