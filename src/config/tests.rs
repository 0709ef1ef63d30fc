use std::collections::HashMap;
use std::net::IpAddr;

use super::*;

/// Loads `file` (written as `k3sx.json` in a temp dir) with `env` as the environment.
fn load_with(file: &str, env: &[(&str, &str)]) -> Result<Loaded> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k3sx.json");
    std::fs::write(&path, file).unwrap();
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    load(&LoadOptions {
        config_file: Some(path),
        sets: vec![],
        env: &|k| env.get(k).cloned(),
        cwd: dir.path().to_path_buf(),
    })
}

fn errors(file: &str, env: &[(&str, &str)]) -> String {
    match load_with(file, env) {
        Ok(_) => panic!("accepted: {file} {env:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn proxmox_host_with_a_path_or_user_part_is_refused_naming_the_env_var() {
    for bad in ["127.0.0.47/x", "evil@host/", "pve1/api2", "user@pve1", "pve 1", "https://pve1:8006"] {
        let e = errors("{}", &[("PROXMOX_HOST", bad), ("PROXMOX_PORT", "18041")]);
        assert!(e.contains("`proxmox.host` (env PROXMOX_HOST)") && e.contains(bad), "{bad}: {e}");
        assert!(e.contains("host name or IP address"), "{bad}: {e}");
    }
}

#[test]
fn proxmox_host_with_a_port_points_to_proxmox_port() {
    for bad in ["pve1:8006", "10.0.0.5:8006", "[2001:db8::5]:8006"] {
        let e = errors("{}", &[("PROXMOX_HOST", bad)]);
        assert!(e.contains("`proxmox.host` (env PROXMOX_HOST)"), "{bad}: {e}");
        assert!(e.contains("PROXMOX_PORT") && !e.contains("IPv6"), "{bad}: {e}");
    }
    let e = errors("{\n  \"proxmox\": {\n    \"host\": \"pve1:8006\"\n  }\n}\n", &[]);
    assert!(e.contains("`proxmox.host` (") && e.contains("k3sx.json:3)") && e.contains("proxmox.port"), "{e}");
}

#[test]
fn proxmox_host_accepts_names_and_addresses_as_typed_values() {
    let cases: [(&str, ProxmoxHost); 6] = [
        ("pve1", ProxmoxHost::Name("pve1".into())),
        ("pve-1.lab.example.com", ProxmoxHost::Name("pve-1.lab.example.com".into())),
        ("pve1.example.com.", ProxmoxHost::Name("pve1.example.com.".into())),
        ("10.0.0.5", ProxmoxHost::Ip("10.0.0.5".parse::<IpAddr>().unwrap())),
        ("2001:db8::5", ProxmoxHost::Ip("2001:db8::5".parse::<IpAddr>().unwrap())),
        ("[2001:db8::5]", ProxmoxHost::Ip("2001:db8::5".parse::<IpAddr>().unwrap())),
    ];
    for (text, expected) in cases {
        let loaded = load_with("{}", &[("PROXMOX_HOST", text)]).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(loaded.proxmox_host, Some(expected), "{text}");
    }
    assert_eq!(load_with("{}", &[]).unwrap().proxmox_host, None, "no host is not an error until one is needed");
}

#[test]
fn proxmox_host_names_follow_rfc_1123() {
    let long_label = "a".repeat(64);
    let long_name = format!("{}.com", vec!["a".repeat(60); 5].join("."));
    for bad in ["-pve", "pve-", "pve..lab", "pve_1", "999.1.1.1", "10.0.0.300", long_label.as_str(), &long_name] {
        let e = errors("{}", &[("PROXMOX_HOST", bad)]);
        assert!(e.contains("`proxmox.host` (env PROXMOX_HOST)"), "{bad}: {e}");
    }
}

#[test]
fn the_typed_host_reaches_the_proxmox_settings() {
    let env = [("PROXMOX_HOST", "[2001:db8::5]"), ("PROXMOX_PASSWORD", "pw")];
    let s = pve_settings(&load_with("{}", &env).unwrap()).unwrap();
    assert_eq!((s.host.as_str(), s.address()), ("2001:db8::5", "[2001:db8::5]:8006".to_string()));
}

#[test]
fn port_zero_and_zero_or_absurd_timeouts_are_refused_naming_each_key() {
    let file = r#"{"proxmox": {"port": 0, "timeout_secs": 0, "connect_timeout_secs": 86401, "retries": 1000},
                   "ssh": {"port": 0, "connect_timeout_secs": 0, "command_timeout_secs": 99999999}}"#;
    let e = errors(file, &[]);
    for key in [
        "proxmox.port",
        "proxmox.timeout_secs",
        "proxmox.connect_timeout_secs",
        "proxmox.retries",
        "ssh.port",
        "ssh.connect_timeout_secs",
        "ssh.command_timeout_secs",
    ] {
        assert!(e.contains(&format!("`{key}` (")), "{key} missing from:\n{e}");
    }
    assert!(e.contains("k3sx.json:1)"), "{e}");
    let e = errors("{}", &[("PROXMOX_PORT", "0")]);
    assert!(e.contains("`proxmox.port` (env PROXMOX_PORT)"), "{e}");
}

#[test]
fn limits_at_their_edges_are_accepted() {
    let file = r#"{"proxmox": {"port": 65535, "timeout_secs": 86400, "connect_timeout_secs": 1, "retries": 0},
                   "ssh": {"port": 1, "connect_timeout_secs": 1, "command_timeout_secs": 86400}}"#;
    load_with(file, &[]).unwrap();
}

#[test]
fn ssh_settings_come_from_the_config() {
    let file = r#"{"ssh": {"user": "ops", "port": 2222, "connect_timeout_secs": 3, "command_timeout_secs": 40,
                           "host_keys": "guest-agent", "host_key_policy": "accept-new", "passphrase_env": "K3SX_NO_SUCH_VAR_X"}}"#;
    let warned = std::cell::RefCell::new(Vec::new());
    let s = ssh_settings(&load_with(file, &[]).unwrap(), &|m: &str| warned.borrow_mut().push(m.to_string()));
    assert_eq!((s.user.as_str(), s.port), ("ops", 2222));
    assert_eq!((s.connect_timeout.as_secs(), s.command_timeout.as_secs()), (3, 40));
    assert_eq!(s.policy, crate::ssh::HostKeyPolicy::Strict, "guest-agent keys: nothing trusted on first use");
    assert!(s.passphrase.is_none());
    assert_eq!(warned.borrow().len(), 1);
    assert!(warned.borrow()[0].contains("K3SX_NO_SUCH_VAR_X"), "{:?}", warned.borrow());
}

/// A config file with a comment, as a user keeps it, in a temp dir.
fn site_file() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k3sx.json");
    let text = "{\n  // site\n  \"k3s\": {\n    \"version\": \"v1.32.4+k3s1\"\n  }\n}\n".to_string();
    std::fs::write(&path, &text).unwrap();
    (dir, path, text)
}

#[test]
fn set_value_refuses_what_the_loader_would_refuse_and_leaves_the_file_untouched() {
    let (_dir, path, text) = site_file();
    let cases: [(&str, &str, serde_json::Value, &str); 5] = [
        ("k3s", "versoin", "v1".into(), "unknown key `k3s.versoin`; did you mean `version`?"),
        ("nosuch", "key", 1.into(), "unknown key `nosuch`"),
        ("network", "cidr", "twenty".into(), "`network.cidr`"),
        ("network", "cidr", 99.into(), "`network.cidr`"),
        ("k3s", "version", 5.into(), "`k3s.version`"),
    ];
    for (section, key, value, says) in cases {
        let e = set_value_in_file(&path, section, key, &value).unwrap_err().to_string();
        assert!(e.contains(says), "{section}.{key} = {value}: {e}");
        assert!(e.contains(&format!("`{section}.{key}` not saved in {}", path.display())), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "{section}.{key}: file untouched");
    }
    set_value_in_file(&path, "k3s", "version", &"v1.33.4+k3s1".into()).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text.replace("v1.32.4+k3s1", "v1.33.4+k3s1"));
}

#[test]
fn a_missing_file_is_created_only_with_a_valid_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k3sx.json");
    assert!(set_value_in_file(&path, "k3s", "chanel", &"latest".into()).is_err());
    assert!(!path.exists());
    set_value_in_file(&path, "k3s", "channel", &"latest".into()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["k3s"]["channel"], "latest");
}
