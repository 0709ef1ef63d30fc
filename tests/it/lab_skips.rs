//! A lab test whose prerequisite is missing fails, naming the install command; with
//! `K3SX_SKIP_LAB=1` it is skipped and counted at the end; under `CI=true` that is refused.
//! Proved on this very test binary, run again with fakepve made unavailable.

use std::process::Command;

/// Two tests that need the fakepve lab.
const LAB_TESTS: [&str; 2] =
    ["discover::classifies_by_tags_in_one_api_call", "discover::password_auth_adds_only_the_ticket_request"];

struct Outcome {
    code: i32,
    /// The child's stdout and stderr together (libtest prints a failure's output on stdout).
    output: String,
}

fn run_lab_tests_without_fakepve(env: &[(&str, &str)]) -> Outcome {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
    cmd.args(["--exact", "--test-threads", "2"]).args(LAB_TESTS);
    cmd.env("K3SX_TEST_PYTHON", "/nonexistent/k3sx-test/python3").env_remove("CI").env_remove("K3SX_SKIP_LAB");
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("the test binary runs");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        output: format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    }
}

#[test]
fn a_missing_fakepve_fails_the_test_naming_the_install_command() {
    let run = run_lab_tests_without_fakepve(&[]);
    assert_ne!(run.code, 0, "{}", run.output);
    assert!(run.output.contains("2 failed"), "{}", run.output);
    assert!(run.output.contains("/nonexistent/k3sx-test/python3"), "{}", run.output);
    assert!(run.output.contains("`bash tests/setup`") && run.output.contains("K3SX_SKIP_LAB=1"), "{}", run.output);
}

#[test]
fn k3sx_skip_lab_skips_and_prints_how_many_tests_were_skipped() {
    let run = run_lab_tests_without_fakepve(&[("K3SX_SKIP_LAB", "1")]);
    assert_eq!(run.code, 0, "{}", run.output);
    let summary = run.output.find("K3SX_SKIP_LAB=1: 2 lab tests SKIPPED").expect("the count at the end");
    assert!(run.output[..summary].contains("test result: ok"), "the count comes after libtest's: {}", run.output);
    for test in LAB_TESTS {
        assert!(run.output[summary..].contains(&format!("skipped: {test} (the fakepve lab")), "{}", run.output);
    }
}

#[test]
fn k3sx_skip_lab_is_refused_under_ci() {
    let run = run_lab_tests_without_fakepve(&[("K3SX_SKIP_LAB", "1"), ("CI", "true")]);
    assert_ne!(run.code, 0, "{}", run.output);
    assert!(run.output.contains("K3SX_SKIP_LAB=1 is refused under CI=true"), "{}", run.output);
    assert!(!run.output.contains("SKIPPED"), "{}", run.output);
}
