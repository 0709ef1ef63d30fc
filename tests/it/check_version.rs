//! `check-version` and the `k3s::` version primitives against a local HTTP server.

use crate::support::{FixtureServer, Test};

fn channels(stable: &str) -> String {
    format!(
        r#"{{"type": "collection", "data": [
            {{"id": "stable", "type": "channel", "name": "stable", "latest": "{stable}"}},
            {{"id": "latest", "type": "channel", "name": "latest", "latest": "v1.34.1+k3s1"}},
            {{"id": "v1.32", "type": "channel", "name": "v1.32", "latest": "v1.32.10+k3s1"}}]}}"#
    )
}

fn server(stable: &str) -> FixtureServer {
    FixtureServer::start(vec![
        ("/v1-release/channels", 200, channels(stable), vec![]),
        (
            "/repos/k3s-io/k3s/releases/latest",
            200,
            r#"{"tag_name": "v1.34.1+k3s1", "prerelease": false, "draft": false, "html_url": "https://example.invalid/r"}"#.into(),
            vec![],
        ),
        ("/limited", 403, r#"{"message": "API rate limit exceeded"}"#.into(), vec![("X-RateLimit-Remaining", "0")]),
    ])
}

fn config(srv: &FixtureServer, version: &str) -> String {
    format!(
        "{{\n  \"proxmox\": {{\"host\": \"pve1.lan\"}},\n  \"k3s\": {{\n    \"channel\": \"stable\",\n    \"version\": \"{version}\",\n    \"channel_url\": \"{0}/v1-release/channels\",\n    \"github_url\": \"{0}/repos/k3s-io/k3s/releases/latest\"\n  }}\n}}\n",
        srv.base
    )
}

#[test]
fn reports_an_older_configured_version_as_outdated() {
    let srv = server("v1.33.4+k3s1");
    Test::new()
        .file("k3sx.json", &config(&srv, "v1.32.4+k3s1"))
        .args(&["check-version"])
        .run()
        .status(0)
        .stdout_has("v1.32.4+k3s1")
        .stdout_has("v1.33.4+k3s1")
        .stderr_has("v1.33.4+k3s1 is available");
}

#[test]
fn reports_equal_and_newer_versions() {
    let srv = server("v1.32.9+k3s2");
    Test::new()
        .file("k3sx.json", &config(&srv, "v1.32.9+k3s2"))
        .args(&["check-version"])
        .run()
        .status(0)
        .stderr_has("is the latest");
    Test::new()
        .file("k3sx.json", &config(&srv, "v1.32.10+k3s1"))
        .args(&["check-version"])
        .run()
        .status(0)
        .stderr_has("newer than the channel's latest");
    Test::new()
        .file("k3sx.json", &config(&srv, "v1.32.9+k3s1"))
        .args(&["check-version"])
        .run()
        .status(0)
        .stderr_has("v1.32.9+k3s2 is available");
}

#[test]
fn update_with_yes_rewrites_only_k3s_version() {
    let srv = server("v1.33.4+k3s1");
    let original = config(&srv, "v1.32.4+k3s1");
    let t = Test::new().file("k3sx.json", &original).args(&["check-version", "--update", "--yes"]);
    t.run().status(0).stderr_has("k3s.version is now v1.33.4+k3s1");
    assert_eq!(t.read("k3sx.json"), original.replace("v1.32.4+k3s1", "v1.33.4+k3s1"));
    // Up to date now: a second run changes nothing.
    t.run().status(0).stderr_has("is the latest");
    assert_eq!(t.read("k3sx.json"), original.replace("v1.32.4+k3s1", "v1.33.4+k3s1"));
}

#[test]
fn update_under_dry_run_changes_nothing() {
    let srv = server("v1.33.4+k3s1");
    let original = config(&srv, "v1.32.4+k3s1");
    let t = Test::new().file("k3sx.json", &original).args(&["--dry-run", "check-version", "--update", "--yes"]);
    t.run().status(0).stderr_has("set k3s.version = \"v1.33.4+k3s1\"");
    assert_eq!(t.read("k3sx.json"), original);
}

#[test]
fn update_without_yes_and_without_a_terminal_refuses() {
    let srv = server("v1.33.4+k3s1");
    let original = config(&srv, "v1.32.4+k3s1");
    let t = Test::new().file("k3sx.json", &original).args(&["check-version", "--update"]);
    t.run().status(1).stderr_has("--yes");
    assert_eq!(t.read("k3sx.json"), original);
}

#[test]
fn server_down_exits_1_naming_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/v1-release/channels");
    Test::new()
        .file("k3sx.json", &format!("{{\"k3s\": {{\"channel_url\": \"{url}\"}}}}"))
        .args(&["check-version"])
        .run()
        .status(1)
        .stderr_has(&format!("cannot reach {url}"));
}

#[test]
fn unknown_channel_lists_the_available_ones() {
    let srv = server("v1.33.4+k3s1");
    Test::new()
        .file("k3sx.json", &config(&srv, "v1.32.4+k3s1"))
        .args(&["--set", "k3s.channel=v1.99", "check-version"])
        .run()
        .status(1)
        .stderr_has("no channel `v1.99` (channels: stable, latest, v1.32)");
}

#[test]
fn github_release_and_rate_limit_are_reported() {
    let srv = server("v1.33.4+k3s1");
    Test::new()
        .file("k3sx.json", &config(&srv, "v1.32.4+k3s1"))
        .file("g.rhai", "let r = k3s::latest_github(); print(`${r.version} ${r.prerelease}`);")
        .args(&["run", "g.rhai"])
        .run()
        .status(0)
        .stdout_has("v1.34.1+k3s1 false");
    Test::new()
        .file("g.rhai", "k3s::latest_github();")
        .args(&["--set", &format!("k3s.github_url={}/limited", srv.base), "run", "g.rhai"])
        .run()
        .status(1)
        .stderr_has("rate limit");
}

#[test]
fn compare_orders_build_suffixes_numerically() {
    Test::new()
        .file(
            "c.rhai",
            r#"print(k3s::compare("v1.32.10+k3s1", "v1.32.9+k3s2"));
print(k3s::compare("v1.32.9+k3s2", "v1.32.9+k3s1"));
print(k3s::compare("v1.32.9+k3s1", "v1.32.10+k3s1"));
print(k3s::compare("v1.32.9+k3s1", "v1.32.9+k3s1"));"#,
        )
        .args(&["run", "c.rhai"])
        .run()
        .status(0)
        .stdout_has("1\n1\n-1\n0\n");
}

#[test]
fn json_output_is_one_object() {
    let srv = server("v1.33.4+k3s1");
    let run =
        Test::new().file("k3sx.json", &config(&srv, "v1.32.4+k3s1")).args(&["--json", "check-version"]).run().status(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"configured": "v1.32.4+k3s1", "latest": "v1.33.4+k3s1", "channel": "stable", "status": "outdated"})
    );
}

fn closed_port_url(path: &str) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}{path}")
}

#[test]
fn offline_says_so_names_the_url_once_and_the_setting_without_a_script_excerpt() {
    let url = closed_port_url("/v1-release/channels");
    let run = Test::new()
        .file("k3sx.json", &format!("{{\"k3s\": {{\"channel_url\": \"{url}\"}}}}"))
        .args(&["check-version"])
        .run()
        .status(1);
    assert_eq!(run.stderr.matches(&url).count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("offline"), "{}", run.stderr);
    assert!(run.stderr.contains("`k3s.channel_url`"), "{}", run.stderr);
    assert!(!run.stderr.contains("check-version.rhai") && !run.stderr.contains(" | "), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

#[test]
fn offline_under_json_prints_a_json_error_object() {
    let url = closed_port_url("/v1-release/channels");
    let run = Test::new()
        .file("k3sx.json", &format!("{{\"k3s\": {{\"channel_url\": \"{url}\"}}}}"))
        .args(&["--json", "check-version"])
        .run()
        .status(1);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("a JSON document on stdout");
    assert_eq!(v["error"]["kind"], "network", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains(&url), "{v}");
}

#[test]
fn github_unreachable_names_the_github_url_setting() {
    let url = closed_port_url("/repos/k3s-io/k3s/releases/latest");
    let run = Test::new()
        .file("g.rhai", "k3s::latest_github();")
        .args(&["--set", &format!("k3s.github_url={url}"), "run", "g.rhai"])
        .run()
        .status(1);
    assert_eq!(run.stderr.matches(&url).count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("`k3s.github_url`"), "{}", run.stderr);
}
