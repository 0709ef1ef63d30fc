//! Configuration errors and `config show`.

use crate::support::Test;

#[test]
fn unknown_key_names_file_line_column_and_a_near_miss() {
    Test::new()
        .file("k3sx.json", "{\"netwrok\": {}}")
        .args(&["config", "show"])
        .run()
        .status(2)
        .stderr_has("k3sx.json:1:2: unknown key `netwrok`; did you mean `network`?");
}

#[test]
fn unknown_nested_key_and_inventory_key_are_reported_together() {
    Test::new()
        .file("k3sx.json", "{\n  \"network\": {\"gatway\": \"10.10.0.1\"},\n  \"nodes\": [{\"id\": \"pve1\", \"vms\": [{\"vmid\": 101, \"rol\": \"SERVER\"}]}]\n}\n")
        .args(&["config", "show"])
        .run()
        .status(2)
        .stderr_has("k3sx.json:2:15: unknown key `network.gatway`; did you mean `gateway`?")
        .stderr_has("unknown key `nodes[0].vms[0].rol`; did you mean `role`?");
}

#[test]
fn vip_inside_the_node_range_names_both_keys() {
    Test::new()
        .file("k3sx.json", "{\n  \"kube_vip\": {\n    \"vip\": \"10.10.0.210\"\n  }\n}\n")
        .args(&["config", "show"])
        .run()
        .status(2)
        .stderr_has("`kube_vip.vip` (")
        .stderr_has("k3sx.json:3)")
        .stderr_has("`network.range_start`")
        .stderr_has("`network.range_end`");
}

#[test]
fn semantic_errors_are_all_reported_before_anything_runs() {
    let run = Test::new()
        .file(
            "k3sx.json",
            r#"{"network": {"range_start": "10.10.0.229", "range_end": "10.10.0.201", "gateway": "10.10.0.1"},
                "tags": {"server": "k3s server", "agent": "K3S-SERVER"},
                "metallb": {"range": "10.10.0.100-10.10.0.210"},
                "nodes": [{"id": "pve1", "vms": [{"vmid": 101, "role": "boss"}, {"vmid": 101, "role": "agent"}]}]}"#,
        )
        .file("t.rhai", "print(\"ran\");")
        .args(&["run", "t.rhai"])
        .run()
        .status(2)
        .stderr_has("`network.range_start`")
        .stderr_has("is after")
        .stderr_has("`tags.server`")
        .stderr_has("not a valid Proxmox tag")
        .stderr_has("role `boss`")
        .stderr_has("vmid 101 is listed twice");
    assert!(!run.stdout.contains("ran"));
}

#[test]
fn type_errors_name_the_key_and_origin() {
    Test::new()
        .file("k3sx.json", "{\"network\": {\"cidr\": \"twenty\"}}")
        .args(&["config", "show"])
        .run()
        .status(2)
        .stderr_has("`network.cidr`")
        .stderr_has("k3sx.json:1");
}

#[test]
fn invalid_json_names_the_position() {
    Test::new()
        .file("k3sx.json", "{\n  \"tags\": {,\n}")
        .args(&["config", "show"])
        .run()
        .status(2)
        .stderr_has("k3sx.json:2:");
}

#[test]
fn precedence_is_flag_over_env_over_file_over_default_and_show_says_where() {
    let run = Test::new()
        .file(
            "k3sx.json",
            "{\n  \"proxmox\": {\"host\": \"file-host\", \"port\": 8007},\n  \"k3s\": {\"channel\": \"latest\"}\n}\n",
        )
        .env("PROXMOX_HOST", "env-host")
        .env("PROXMOX_PASSWORD", "hunter2-secret")
        .args(&["--set", "k3s.channel=v1.32", "config", "show"])
        .run()
        .status(0);
    let row = |key: &str| {
        run.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("{key} missing:\n{}", run.stdout))
            .to_string()
    };
    assert!(row("proxmox.host").contains("\"env-host\"") && row("proxmox.host").ends_with("env PROXMOX_HOST"));
    assert!(row("proxmox.port").contains("8007") && row("proxmox.port").contains("k3sx.json:2"));
    assert!(row("k3s.channel").contains("v1.32") && row("k3s.channel").contains("flag --set k3s.channel"));
    assert!(row("tags.server").ends_with("default"));
    assert!(row("proxmox.password").contains("<redacted>"));
    assert!(!run.stdout.contains("hunter2-secret") && !run.stderr.contains("hunter2-secret"));
}

#[test]
fn seed_inventory_config_json_is_read_as_written() {
    let run = Test::new()
        .file(
            "config.json",
            r#"{"nodes": [{"id": "pve1", "vms": [{"vmid": 101, "role": "SERVER", "name": "k3s-master-01", "ip": "10.10.0.50"}, {"vmid": 102, "role": "AGENT"}]}]}"#,
        )
        .file("t.rhai", "print(`${CONFIG.nodes[0].vms[0].name} ${CONFIG.nodes[0].vms[1].role}`);")
        .args(&["run", "t.rhai"])
        .run()
        .status(0);
    assert_eq!(run.stdout.trim(), "k3s-master-01 AGENT");
}

#[test]
fn unknown_set_key_is_a_usage_error() {
    Test::new()
        .args(&["--set", "k3s.chanel=x", "config", "show"])
        .run()
        .status(2)
        .stderr_has("did you mean `channel`?");
}

#[test]
fn inventory_addresses_must_be_unique_and_not_reserved() {
    Test::new()
        .file(
            "config.json",
            r#"{"nodes": [{"id": "pve1", "vms": [{"vmid": 101, "role": "SERVER", "ip": "10.10.0.50"},
                                                {"vmid": 102, "role": "AGENT", "ip": "10.10.0.50"},
                                                {"vmid": 103, "role": "AGENT", "ip": "10.10.0.150"}]}]}"#,
        )
        .args(&["config", "show"])
        .run()
        .status(2)
        .stderr_has("`nodes[0].vms[1].ip`")
        .stderr_has("10.10.0.50 is given to two VMs (also nodes[0].vms[0].ip)")
        .stderr_has("10.10.0.150 is the control-plane VIP (`kube_vip.vip`)");
}

#[test]
fn a_proxmox_host_with_a_path_user_or_port_is_refused_before_anything_runs() {
    let cases =
        [("127.0.0.47/x", "`/` is not allowed"), ("evil@host/", "`@` is not allowed"), ("pve1:8006", "PROXMOX_PORT")];
    for (host, says) in cases {
        let run = Test::new()
            .file("t.rhai", "print(\"ran\");")
            .env("PROXMOX_HOST", host)
            .env("PROXMOX_PORT", "18041")
            .args(&["run", "t.rhai"])
            .run()
            .status(2)
            .stderr_has("`proxmox.host` (env PROXMOX_HOST)")
            .stderr_has(says);
        assert!(!run.stdout.contains("ran"), "{host}");
    }
}

#[test]
fn port_zero_and_a_zero_timeout_are_refused_naming_the_key() {
    Test::new()
        .file("k3sx.json", "{\n  \"ssh\": {\n    \"command_timeout_secs\": 0\n  }\n}\n")
        .env("PROXMOX_PORT", "0")
        .args(&["config", "show"])
        .run()
        .status(2)
        .stderr_has("`proxmox.port` (env PROXMOX_PORT)")
        .stderr_has("`ssh.command_timeout_secs` (")
        .stderr_has("k3sx.json:3)");
}

#[test]
fn save_config_of_an_unknown_key_or_a_wrong_type_fails_and_leaves_the_file_as_it_was() {
    let text = "{\n  \"k3s\": {\n    \"version\": \"v1.32.4+k3s1\"\n  }\n}\n";
    for (call, says) in [
        ("save_config(\"k3s.versoin\", \"v1.33.4+k3s1\");", "unknown key `k3s.versoin`"),
        ("save_config(\"network.cidr\", \"twenty\");", "`network.cidr`"),
    ] {
        let t = Test::new().file("k3sx.json", text).file("s.rhai", call).args(&["run", "s.rhai"]);
        // Exit 1 or 2: how the adapter classifies a refused edit is not this test's concern.
        let run = t.run().stderr_has(says).stderr_has("not saved");
        assert_ne!(run.code, 0, "{call}");
        assert_eq!(t.read("k3sx.json"), text, "{call}");
        let t = t.args(&["config", "show"]);
        t.run().status(0);
    }
}

#[test]
fn an_unrelated_config_json_is_ignored_with_or_without_config_and_said_so_at_verbose() {
    let t = Test::new()
        .file("config.json", r#"{"name": "x", "version": "1.0.0"}"#)
        .file("site.json", r#"{"k3s": {"channel": "latest"}}"#);
    t.run_args(&["config", "show"]).status(0).stdout_has("tags.server");
    t.run_args(&["--config", "site.json", "config", "show"]).status(0).stdout_has("\"latest\"");
    let run = t.run_args(&["-v", "config", "show"]).status(0);
    assert!(
        run.stderr.lines().any(|l| l.starts_with("debug ") && l.contains("config.json") && l.contains("`nodes`")),
        "{}",
        run.stderr
    );
}

#[test]
fn a_config_json_in_the_seed_shape_with_a_typo_is_still_an_error() {
    Test::new()
        .file("config.json", r#"{"nodes": [{"id": "pve1", "vms": [{"vmid": 101, "role": "SERVER"}]}], "tgas": {}}"#)
        .args(&["config", "show"])
        .run()
        .status(2)
        .stderr_has("unknown key `tgas`");
}
